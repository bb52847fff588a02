"""Load test of the HTTP generation path on loopback: simulated staff asking at once, bounded in time.

`rag serve-llm` serves the configured generator (the embedded default unless RAG_GENERATOR_MODEL says
otherwise) on 127.0.0.1; one QA service, as one `ui` replica would hold it, sends every generation
there through the HTTP backend, with its concurrency bound and queue. Each simulated user asks the
golden questions back to back (no think time) for `--seconds`; reported per user count: answers per
minute, latency p50/p95, and the share refused as busy.

`--target api` asks through a `rag api` process instead (the same service behind HTTP, a bearer token
per request, `POST /v1/ask`), and measures the API's own cost per `/v1/search` call: its p50 minus the
in-process search's p50 on the same index (`--target both`: one after the other, same run).

`--target appdb` measures what a shared PostgreSQL app database costs the API (tests/pgserver.py starts a real
server on loopback): one `rag api` on a SQLite app database and one on PostgreSQL, same index, asked in
alternation, request by request: `/v1/search` (the token checked, the search, the audit row written) and
`/v1/conversations` (the token checked, the user's conversations read); each request's latency less the search
time the server reports, p50 and p95 per backend. Then throughput: `--users` clients searching for `--seconds`
through one PostgreSQL replica, then through two (round robin), requests per second.

    .venv/bin/python bench/load_test.py [--users 1 2 4 8] [--seconds 60] [--slots 2] [--queue-s 30]
                                        [--target service|api|both|appdb]
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

from ingest.job import run_ingest
from rag.generation import GeneratorBusyError
from rag.qa import build_service
from rag.settings import Settings, load_settings

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
    parser.add_argument("--target", choices=["service", "api", "both", "appdb"], default="service")
    parser.add_argument("--search-calls", type=int, default=300, help="/v1/search calls timed (api)")
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
            if args.target in ("service", "both"):
                for users in args.users:
                    print(json.dumps(run(service.ask, users, args.seconds) | {
                        "target": "service", "slots": args.slots, "queue_s": args.queue_s}), flush=True)
            if args.target == "appdb":
                for figures in appdb_cost(env, settings, Path(tmp), args.search_calls, args.users, args.seconds):
                    print(json.dumps(figures), flush=True)
            if args.target in ("api", "both"):
                with api_server(env, settings, Path(tmp)) as (base, token):
                    print(json.dumps(search_overhead(service, base, token, args.search_calls)), flush=True)
                    ask = api_asker(base, token)
                    ask(QUESTIONS[0])
                    for users in args.users:
                        print(json.dumps(run(ask, users, args.seconds) | {
                            "target": "api", "slots": args.slots, "queue_s": args.queue_s}), flush=True)
    finally:
        server.terminate()
        server.wait(10)


@contextmanager
def api_server(env: dict[str, str], settings: Settings, tmp: Path, app_db: str = "",
               password_file: Path | None = None) -> Iterator[tuple[str, str]]:
    """`rag api` over the same index and model server, with one user and a read token; its app database a
    SQLite file in `tmp` (or `app_db`, a PostgreSQL URL with its `password_file`)."""
    from ui.appdb import AppDB
    from ui.auth import add_user

    users = tmp / "users.yaml"
    if not users.exists():
        add_user(users, "bench", "bench password", roles=["user", "admin"])
    location = app_db or str(tmp / "app" / "app.sqlite")
    db = AppDB(location, password_file=password_file)
    name = f"bench-{len(db.tokens())}"
    token = db.create_token(name, "bench", "read")
    db.close()
    api_env = {**env, "RAG_INDEX_DIR": str(settings.index_dir), "RAG_GENERATOR_BACKEND": "http",
               "RAG_GENERATOR_URL": settings.generator_url, "RAG_UI_USERS_FILE": str(users),
               "RAG_APP_DB": location, "RAG_APP_DB_PASSWORD_FILE": str(password_file or ""),
               "RAG_MAX_NEW_TOKENS": str(settings.max_new_tokens),
               "RAG_GENERATION_QUEUE_S": str(settings.generation_queue_s),
               "RAG_API_RATE_PER_MINUTE": "1000000"}
    process = subprocess.Popen([sys.executable, "-m", "ui.cli", "api", "--host", "127.0.0.1", "--port", "0"],
                               env=api_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().split()[4], token  # "serving the API on http://127.0.0.1:N (...)"
    finally:
        process.terminate()
        process.wait(10)


def appdb_cost(env: dict[str, str], settings: Settings, tmp: Path, calls: int, users: list[int],
               seconds: float) -> Iterator[dict]:
    """See the module's docstring (`--target appdb`)."""
    sys.path.insert(0, str(REPO))
    from tests.pgserver import postgres
    from ui.appdb import AppDB

    with postgres() as server:
        url, password_file = server.database(tmp)
        with api_server(env, settings, tmp) as (lite, lite_token), \
                api_server(env, settings, tmp, url, password_file) as (shared, shared_token):
            clients = {"sqlite": httpx.Client(base_url=lite, headers={"Authorization": f"Bearer {lite_token}"}),
                       "postgresql": httpx.Client(base_url=shared, headers={"Authorization": f"Bearer {shared_token}"})}
            for location, pw in ((str(tmp / "app" / "app.sqlite"), None), (url, password_file)):
                db = AppDB(location, password_file=pw)  # a user with 20 conversations of 3 turns
                for n in range(20):
                    conversation = db.start_conversation("bench", f"conversation {n}")
                    for turn in range(3):
                        db.add_turn("bench", conversation, f"question {turn}", "", {})
                db.close()
            added: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
            listed: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
            for client in clients.values():  # warm: the first search loads what it loads
                client.post("/v1/search", json={"query": QUESTIONS[0]})
            for i in range(calls):  # alternating, so both see the same machine state
                for backend, client in clients.items():
                    started = time.perf_counter()
                    response = client.post("/v1/search", json={"query": QUESTIONS[i % len(QUESTIONS)], "k": 5})
                    latency = time.perf_counter() - started
                    assert response.status_code == 200, response.text
                    added[backend].append(latency - response.json()["results"][0]["timings_ms"]["total"] / 1000)
                    started = time.perf_counter()
                    response = client.get("/v1/conversations")
                    listed[backend].append(time.perf_counter() - started)
                    assert response.status_code == 200 and len(response.json()["conversations"]) == 20
            ms = lambda xs, q=50: round(float(np.percentile(xs, q)) * 1000, 2)  # noqa: E731
            yield {"target": "appdb", "calls": calls,
                   **{f"search_overhead_{b}_p50_ms": ms(v) for b, v in added.items()},
                   **{f"search_overhead_{b}_p95_ms": ms(v, 95) for b, v in added.items()},
                   **{f"conversations_{b}_p50_ms": ms(v) for b, v in listed.items()},
                   **{f"conversations_{b}_p95_ms": ms(v, 95) for b, v in listed.items()},
                   "postgresql_minus_sqlite_search_p50_ms": round(ms(added["postgresql"]) - ms(added["sqlite"]), 2),
                   "postgresql_minus_sqlite_conversations_p50_ms":
                       round(ms(listed["postgresql"]) - ms(listed["sqlite"]), 2)}
            for client in clients.values():
                client.close()
            with api_server(env, settings, tmp, url, password_file) as second:
                replicas = [(shared, shared_token), second]
                for count in users:
                    for used in (replicas[:1], replicas):
                        yield {"target": "appdb throughput", "replicas": len(used), "users": count,
                               **throughput(used, count, seconds)}


def throughput(replicas: list[tuple[str, str]], users: int, seconds: float) -> dict:
    """`users` clients, each on replica number (its index mod the replicas), searching back to back."""
    done: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def user(n: int) -> None:
        nonlocal errors
        base, token = replicas[n % len(replicas)]
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            i = n
            while time.monotonic() < deadline:
                started = time.perf_counter()
                response = client.post("/v1/search", json={"query": QUESTIONS[i % len(QUESTIONS)], "k": 5})
                with lock:
                    if response.status_code == 200:
                        done.append(time.perf_counter() - started)
                    else:
                        errors += 1
                i += 1

    elapsed = in_threads(user, users)
    return {"searches_per_s": round(len(done) / elapsed, 1), "p50_ms": round(float(np.percentile(done, 50)) * 1000, 1),
            "p95_ms": round(float(np.percentile(done, 95)) * 1000, 1), "errors": errors}


def api_asker(base: str, token: str) -> Callable[[str], object]:
    """`ask(question)` through POST /v1/ask, one connection per simulated user (thread)."""
    local = threading.local()

    def ask(question: str) -> object:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=300)
        response = local.client.post("/v1/ask", json={"question": question})
        if response.status_code == 429:
            raise GeneratorBusyError(response.json()["error"]["message"])
        if response.status_code != 200:
            raise RuntimeError(response.text)
        return response.json()

    return ask


def search_overhead(service, base: str, token: str, calls: int) -> dict:  # type: ignore[no-untyped-def]
    """What the API adds to a search (k 5, hybrid): each call's latency minus the search time the server
    reports for it (`timings_ms.total`, measured inside the API process), p50 over `calls`. Beside it,
    the same queries searched in this process (alternating), whose p50 also carries the two processes'
    torch threads contending for the same cores."""
    queries = [QUESTIONS[i % len(QUESTIONS)] for i in range(calls)]
    inprocess, api, added = [], [], []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
        client.post("/v1/search", json={"query": queries[0]})
        for query in queries:  # alternating, so both see the same machine state
            started = time.perf_counter()
            service.searcher.search(query, 5, "hybrid")
            inprocess.append(time.perf_counter() - started)
            started = time.perf_counter()
            response = client.post("/v1/search", json={"query": query, "k": 5, "mode": "hybrid"})
            latency = time.perf_counter() - started
            assert response.status_code == 200
            api.append(latency)
            added.append(latency - response.json()["results"][0]["timings_ms"]["total"] / 1000)
    ms = lambda xs, q=50: round(float(np.percentile(xs, q)) * 1000, 2)  # noqa: E731
    return {"target": "api /v1/search", "calls": calls, "api_p50_ms": ms(api), "api_p95_ms": ms(api, 95),
            "added_by_api_p50_ms": ms(added), "added_by_api_p95_ms": ms(added, 95),
            "inprocess_p50_ms": ms(inprocess), "api_minus_inprocess_p50_ms": round(ms(api) - ms(inprocess), 2)}


def in_threads(user: Callable[[int], None], users: int) -> float:
    """`user(n)` for n in range(users), each in a thread of its own, all at once; the seconds until all ended."""
    threads = [threading.Thread(target=user, args=(n,)) for n in range(users)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - started


def run(ask: Callable[[str], object], users: int, seconds: float) -> dict:
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
                ask(QUESTIONS[i % len(QUESTIONS)])
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

    elapsed = in_threads(user, users)
    total = len(latencies) + busy + errors
    return {
        "users": users, "answers_per_min": round(len(latencies) * 60 / elapsed, 1),
        "p50_s": round(float(np.percentile(latencies, 50)), 2) if latencies else None,
        "p95_s": round(float(np.percentile(latencies, 95)), 2) if latencies else None,
        "busy_share": round(busy / total, 3) if total else 0.0, "errors": errors,
    }


if __name__ == "__main__":
    main()
