"""LLM brain throughput with the embedded model, and the simulator's overhead around it.

Runs ``simrec.run`` with ``--llm local`` (SmolLM2-135M in-process, no cache) on a small
synthetic population, recording every batch of requests the brain sends. Then, in the same
process, sends the very same batches to the same backend directly. Prints page decisions per
second, tokens per decision, and the overhead: (simulation time) / (direct backend time) - 1,
target <= 10%.

    python benchmarks/bench_llm.py [--users 40] [--ticks 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import simrec
import simrec.llm as llm_module


class Recording:
    """Wraps a backend; keeps each batch of requests and the time spent inside the backend."""

    def __init__(self, backend) -> None:
        self.backend, self.name = backend, backend.name
        self.batches: list[list] = []
        self.inside = 0.0

    def complete(self, requests):
        self.batches.append(list(requests))
        t = time.perf_counter()
        out = self.backend.complete(requests)
        self.inside += time.perf_counter() - t
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--ticks", type=int, default=2)
    args = ap.parse_args()
    recorded: list[Recording] = []
    real = llm_module.make_backend

    def recording_backend(spec, **kw):
        rec = Recording(real(spec, **kw))
        recorded.append(rec)
        return rec

    llm_module.make_backend = recording_backend
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {
            "seed": 3,
            "data": {"synthetic": {"users": 200, "items": 300}},
            "population": {"users": args.users},
            "simulation": {"ticks": args.ticks, "page_size": 5, "max_pages": 3},
            "brain": {"name": "llm"},
            "llm": {"backend": "local", "cache": None, "max_tokens": 120},
            "output": {"dir": str(Path(tmp) / "run")},
        }
        res = simrec.run(cfg)
    rec = recorded[0]
    sim_s = res.manifest["timings"]["simulate_s"]
    llm = res.manifest["llm"]
    pages = sum(len(b) for b in rec.batches)
    t = time.perf_counter()
    for batch in rec.batches:  # the same prompts, straight to the same backend
        rec.backend.complete(batch)
    direct = time.perf_counter() - t
    tokens = llm["prompt_tokens"] + llm["completion_tokens"]
    print(f"{args.users} agents x {args.ticks} ticks, model {llm['model']}")
    print(f"  page decisions               {pages:>10,}")
    print(f"  fallbacks                    {sum(res.manifest['fallbacks'].values()):>10,}")
    print(f"  simulate time                {sim_s:>10.2f} s")
    print(f"  page decisions / s           {pages / sim_s:>10.2f}")
    print(
        f"  tokens / decision            {tokens / max(pages, 1):>10.1f}"
        f"   (prompt {llm['prompt_tokens'] / max(pages, 1):.1f}, "
        f"completion {llm['completion_tokens'] / max(pages, 1):.1f})"
    )
    print(f"  same prompts, backend direct {direct:>10.2f} s")
    print(f"  simulator overhead           {sim_s / direct - 1:>+10.1%}   (target <= +10%)")


if __name__ == "__main__":
    main()
