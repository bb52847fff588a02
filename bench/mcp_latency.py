"""MCP against REST on one running `rag api`: the latency of `tools/list` and of a `search` tool call through
the official SDK's client (one connection, streamable HTTP at /mcp), beside `POST /v1/search` through httpx
(one connection) for the same queries, one at a time, in one run.

The index is the samples (single-user mode: no token); the queries are the golden questions.

    .venv/bin/python bench/mcp_latency.py [--rounds 3]

Prints one JSON line: p50 and p95 in ms of each, and the MCP search's p50 minus REST's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
RAG = Path(sys.executable).with_name("rag")


def p(times: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(float(np.percentile(times, 95)), 2)}


async def mcp_times(url: str, queries: list[str], rounds: int) -> tuple[list[float], list[float]]:
    from mcp import Client

    listing, searching = [], []
    async with Client(f"{url}/mcp") as client:
        await client.call_tool("search", {"query": queries[0]})  # warm
        for _ in range(rounds):
            for query in queries:
                started = time.perf_counter()
                await client.list_tools(cache_mode="bypass")
                listing.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                result = await client.call_tool("search", {"query": query, "k": 5})
                searching.append((time.perf_counter() - started) * 1000)
                assert not result.is_error, result
    return listing, searching


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    queries = [json.loads(line)["question"] for line in (REPO / "samples" / "questions.jsonl").read_text().splitlines()
               if line.strip()]
    with tempfile.TemporaryDirectory(prefix="rag-mcp-bench-") as tmp:
        index = Path(tmp) / "index"
        env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_APP_DB": str(Path(tmp) / "app.sqlite"),
               "RAG_API_RATE_PER_MINUTE": "1000000"}  # the latency, not the rate limit
        subprocess.run([str(RAG), "ingest", str(REPO / "samples"), "--index", str(index)], env=env, check=True,
                       capture_output=True)
        server = subprocess.Popen([str(RAG), "api", "--index", str(index), "--port", "0"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert server.stdout is not None
            url = server.stdout.readline().split(" on ", 1)[1].split()[0]
            rest = []
            with httpx.Client(base_url=url, timeout=60) as http:
                for _ in range(50):
                    try:
                        http.get("/readyz")
                        break
                    except httpx.TransportError:
                        time.sleep(0.2)
                http.post("/v1/search", json={"query": queries[0]})  # warm
                for _ in range(args.rounds):
                    for query in queries:
                        started = time.perf_counter()
                        response = http.post("/v1/search", json={"query": query, "k": 5})
                        rest.append((time.perf_counter() - started) * 1000)
                        assert response.status_code == 200, response.text
            listing, searching = asyncio.run(mcp_times(url, queries, args.rounds))
        finally:
            server.terminate()
            server.wait(10)
    out = {"queries": len(rest), "rest_search": p(rest), "mcp_search": p(searching), "mcp_tools_list": p(listing),
           "mcp_minus_rest_search_p50_ms": round(statistics.median(searching) - statistics.median(rest), 2)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
