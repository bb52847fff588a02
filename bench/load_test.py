"""Load test of the HTTP generation path on loopback: simulated staff asking at once, bounded in time.

`rag serve-llm` serves the configured generator (the embedded default unless RAG_GENERATOR_MODEL says
otherwise) on 127.0.0.1; one QA service, as one `ui` replica would hold it, sends every generation
there through the HTTP backend, with its concurrency bound and queue. Each simulated user asks the
golden questions back to back (no think time) for `--seconds`; reported per user count: answers per
minute, latency p50/p95, and the share refused as busy.

    .venv/bin/python bench/load_test.py [--users 1 2 4 8] [--seconds 60] [--slots 2] [--queue-s 30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ingest.job import run_ingest
from rag.generation import GeneratorBusyError
from rag.qa import build_service
from rag.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "When is lunch served in the cafeteria?", "How many vacation days do new employees get?",
    "How do I connect to the VPN?", "When is salary paid?", "What is the hotel limit in London?",
    "Which team owns the billing service?", "When does the office move to the Harbour Building?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--slots", type=int, default=2, help="generations in flight per ui replica")
    parser.add_argument("--queue-s", type=float, default=30, help="how long a question waits for a slot")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()
    # the model server allows as many generations at once as the replica sends
    env = {**os.environ, "RAG_DEVICE": "cpu", "PYTHONPATH": str(REPO),
           "RAG_MAX_CONCURRENT_GENERATIONS": str(args.slots)}
    server = subprocess.Popen([sys.executable, "-m", "ui.cli", "serve-llm", "--port", "0"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip().rsplit(" ", 1)[-1]
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(index_dir=Path(tmp) / "index", device="cpu", generator_backend="http",
                                     generator_url=url, max_concurrent_generations=args.slots,
                                     generation_queue_s=args.queue_s, max_new_tokens=args.max_new_tokens)
            run_ingest(settings, [REPO / "samples"], progress=False)
            service = build_service(settings)
            service.warm_up()
            service.ask(QUESTIONS[0])  # warm the server too
            for users in args.users:
                print(json.dumps(run(service, users, args.seconds) | {"slots": args.slots,
                                                                     "queue_s": args.queue_s}), flush=True)
    finally:
        server.terminate()
        server.wait(10)


def run(service, users: int, seconds: float) -> dict:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    busy = errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def user(n: int) -> None:
        nonlocal busy, errors
        i = n
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                service.ask(QUESTIONS[i % len(QUESTIONS)])
                with lock:
                    latencies.append(time.perf_counter() - started)
            except GeneratorBusyError:
                with lock:
                    busy += 1
                time.sleep(1.0)  # a person would try again a moment later
            except (TimeoutError, ConnectionError, RuntimeError):
                with lock:
                    errors += 1
                time.sleep(1.0)
            i += 1

    threads = [threading.Thread(target=user, args=(n,)) for n in range(users)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    total = len(latencies) + busy + errors
    return {
        "users": users, "answers_per_min": round(len(latencies) * 60 / elapsed, 1),
        "p50_s": round(float(np.percentile(latencies, 50)), 2) if latencies else None,
        "p95_s": round(float(np.percentile(latencies, 95)), 2) if latencies else None,
        "busy_share": round(busy / total, 3) if total else 0.0, "errors": errors,
    }


if __name__ == "__main__":
    main()
