"""How a pool of OpenAI-compatible servers shares the work, and what a dead server costs.

Servers are played by ``httpx2.MockTransport`` with a fixed latency per request (``--latency``,
as a GPU server's time per answer), below the real ``openai`` client and simrec's backend, so
the figures are the scheduling's, not a model's. Prints requests/s for 1, 2 and 4 servers
(``llm.concurrency`` in flight each) and the ratio to one server, then the same batch with one
of two servers dying after a tenth of it (failovers, wall time, ratio to two healthy servers).

    python benchmarks/bench_llm_pool.py [--requests 800] [--latency 0.02] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx2

from simrec.llm import ChatRequest
from simrec.llm.openai_backend import OpenAIBackend

ANSWER = json.dumps({"watch": [1], "feeling": "happy"})


def _servers(latency: float, die_after: int | None):
    served: dict[str, int] = {}

    async def handler(request):
        host = request.url.host
        if request.url.path.endswith("/models"):
            return httpx2.Response(404, json={"error": "none"})
        served[host] = served.get(host, 0) + 1
        if die_after is not None and host == "127.0.0.1" and served[host] > die_after:
            raise httpx2.ConnectError("connection refused")
        await asyncio.sleep(latency)
        body = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": ANSWER},
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
        return httpx2.Response(200, json=body)

    return handler, served


def _requests(n: int) -> list[ChatRequest]:
    return [
        ChatRequest(
            messages=({"role": "user", "content": f"Page {i}"},),
            max_tokens=20,
            json_schema={"type": "object"},
            seed=i,
        )
        for i in range(n)
    ]


def measure(n_servers: int, args, die_after: int | None = None) -> tuple[float, int, int]:
    """(wall seconds, failovers, failed requests) for one batch over ``n_servers``."""
    handler, _ = _servers(args.latency, die_after)
    urls = [f"http://127.0.0.{k + 1}:800{k + 1}/v1" for k in range(n_servers)]
    backend = OpenAIBackend(
        "m",
        base_url=urls if n_servers > 1 else urls[0],
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
        concurrency=args.concurrency,
        max_retries=0,
        response_format="json_object",
    )
    requests = _requests(args.requests)
    t = time.perf_counter()
    results = backend.complete(requests)
    wall = time.perf_counter() - t
    backend.close()
    return wall, backend.failovers, sum(not r.ok for r in results)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=800)
    p.add_argument("--latency", type=float, default=0.02, help="seconds per answer")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight per server")
    args = p.parse_args()
    print(
        f"{args.requests} requests, {args.latency * 1000:.0f} ms per answer, "
        f"{args.concurrency} in flight per server"
    )
    base = None
    for n in (1, 2, 4):
        wall, _, failed = measure(n, args)
        base = base or wall
        ideal = args.requests * args.latency / (n * args.concurrency)
        print(
            f"  {n} server(s): {args.requests / wall:8.0f} requests/s, {wall:6.2f} s "
            f"(ideal {ideal:.2f} s), x{base / wall:.2f} vs one server, {failed} failed"
        )
    healthy, _, _ = measure(2, args)
    wall, failovers, failed = measure(2, args, die_after=args.requests // 10)
    print(
        f"  2 servers, one dies after {args.requests // 10} answers: {wall:.2f} s "
        f"(x{wall / healthy:.2f} of two healthy servers), {failovers} failovers, {failed} failed"
    )


if __name__ == "__main__":
    main()
