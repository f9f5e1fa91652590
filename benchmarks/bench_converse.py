"""Conversational users: dialogues per second, and what the LLM path adds to the model's time.

    python benchmarks/bench_converse.py [--users 943] [--turns 5] [--llm-users 4]

1. Agenda users on real MovieLens-100k (all users by default, held-out targets), against a
   CRS that does no work (the catalog in order, less what was rejected) so the figure is the
   users' and the loop's, then against the builtin CRS (item-kNN prior): dialogues/s.
2. The LLM path: the llm user and the openai:smollm2 CRS over a real llama.cpp server on
   loopback (the embedded SmolLM2 model, no cache), recording every batch of requests both
   sides sent; then the same batches sent straight to a fresh backend. The overhead is the
   conversation's time over the straight time (target <= 10%).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import simrec
from simrec.conversation import Reply

DATA = {"data": {"format": "recbole", "path": "ml-100k"}}


class Catalogue:
    """A CRS that does no work: the first 50 catalog items the user has not turned down."""

    name = "catalogue"

    def fit(self, interactions, catalog) -> None:
        self.n = catalog.n_items

    def respond(self, dialogues):
        out = []
        for d in dialogues:
            rejected = d.rejected()
            head = range(min(self.n, 50 + len(rejected)))
            items = [i for i in head if i not in rejected][:50]
            out.append(Reply("How about these?", tuple(items)))
        return out


def agenda(users: int, turns: int, tmp: Path) -> None:
    for label, crs in (("a CRS that does no work", Catalogue()), ("builtin:itemknn", None)):
        arms = {"A": crs} if crs is not None else ["A=builtin:itemknn"]
        t = time.perf_counter()
        res = simrec.converse(DATA, arms, users=users, turns=turns, out=tmp / label)
        wall = time.perf_counter() - t
        arm = res.manifest["timings"]["A_s"]
        n = res.manifest["users"]
        print(
            f"agenda users, {label}: {n} dialogues x {turns} turns in {arm:.2f} s "
            f"({n / arm:,.0f} dialogues/s); whole command {wall:.1f} s "
            f"(data, targets, writing included)"
        )


class Recording:
    """A backend wrapper that keeps every batch it was asked, in order."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.batches = inner, inner.name, []

    def complete(self, requests):
        self.batches.append(list(requests))
        return self.inner.complete(requests)


def llm_overhead(users: int, turns: int, tmp: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from simrec.conversation.llm import LLMCRS
    from simrec.llm import make_backend
    from tests.conftest import start_llama_server

    proc, url = start_llama_server(tmp / "server.log")
    try:
        user_b = Recording(make_backend("openai:smollm2", base_url=url))
        crs_b = Recording(make_backend("openai:smollm2", base_url=url))
        cfg = {**DATA, "llm": {"backend": "openai:smollm2", "cache": None, "max_tokens": 120}}
        res = simrec.converse(
            cfg,
            {"S": LLMCRS(crs_b, "openai:smollm2", max_tokens=200)},
            users=users,
            turns=turns,
            out=tmp / "llm",
            user_brain="llm",
            backend=user_b,
        )
        conv = res.manifest["timings"]["S_s"]
        straight = make_backend("openai:smollm2", base_url=url)
        t = time.perf_counter()
        n = 0
        for batch in [*user_b.batches, *crs_b.batches]:
            straight.complete(batch)
            n += len(batch)
        direct = time.perf_counter() - t
        print(
            f"LLM path, {res.manifest['users']} llm users x {turns} turns against the "
            f"openai:smollm2 CRS: {n} requests; conversation {conv:.1f} s, the same requests "
            f"straight to the backend {direct:.1f} s: overhead {conv / direct - 1:+.1%} "
            f"(target <= +10%); fallbacks {res.manifest['llm']['S']['user']['fallbacks']}"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=943)
    ap.add_argument("--turns", type=int, default=5)
    ap.add_argument("--llm-users", type=int, default=4)
    ap.add_argument("--llm-turns", type=int, default=2)
    ap.add_argument("--no-llm", action="store_true", help="skip the LLM path")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        agenda(a.users, a.turns, Path(d))
        if not a.no_llm:
            llm_overhead(a.llm_users, a.llm_turns, Path(d))


if __name__ == "__main__":
    main()
