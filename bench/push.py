"""How fast `rag api` accepts pushed documents, and what a re-push of unchanged documents costs.

A real `rag api` (a subprocess, on loopback, a users file, an ingest token) receives N small documents (a ticket
of about 80 words each) from 4 client threads: the acceptance rate is requests answered 201 per second. Then
the time until all are searchable (the committer's runs: parse in the sandbox, embed, publish), and a re-push
of the same N documents (each a 204: nothing queued, nothing embedded). The baseline, in the same run: the same
clients calling GET /v1/models (the cheapest authenticated route) as many times.

    python bench/push.py [--documents 1000] [--clients 4] [--json]

Target (issue 30): 100 documents/s accepted on this machine; a re-push of an unchanged document embeds nothing.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import print_figures  # noqa: E402 - after the path is set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--interval", type=float, default=2.0,
                        help="RAG_API_PUSH_INTERVAL_S: how often the committer runs beside the pushes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import httpx

    from tests.conftest import rag_cli, serve_api, write
    from ui.auth import add_user

    words = ("printer laptop badge vpn password invoice refund shipment parking canteen meeting room projector "
             "network wifi phone headset monitor dock keyboard").split()
    out: dict[str, object] = {"documents": args.documents, "clients": args.clients, "interval_s": args.interval}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        write(base / "docs" / "seed.txt", "The first document of the index.")
        users = base / "users.yaml"
        add_user(users, "feed", "feed password", "Feed", ["user"], ["support"])
        env = {**__import__("os").environ, "RAG_DEVICE": "cpu", "RAG_UI_USERS_FILE": str(users),
               "RAG_APP_DB": str(base / "app.sqlite"), "RAG_API_PUSH_INTERVAL_S": str(args.interval),
               # the capacity, not the per-token limits (12,000 pushes and 120 reads a minute by default)
               "RAG_API_PUSH_PER_MINUTE": "1000000", "RAG_API_RATE_PER_MINUTE": "1000000"}
        rag_cli("ingest", str(base / "docs"), "--index", str(base / "index"), env=env)
        token = rag_cli("token", "create", "feed", "--user", "feed", "--scope", "ingest", env=env).strip()
        reader = rag_cli("token", "create", "reader", "--user", "feed", env=env).strip()
        with serve_api(base, base / "index", env) as url:
            headers = {"Authorization": f"Bearer {token}"}
            bodies = [{"title": f"Ticket {i}", "groups": ["support"],
                       "text": f"Ticket {i}: " + " ".join(words[(i * 3 + j) % len(words)] for j in range(80)) + "."}
                      for i in range(args.documents)]

            def run(call) -> tuple[float, list[int]]:  # type: ignore[no-untyped-def]
                with ThreadPoolExecutor(args.clients) as pool, httpx.Client(timeout=120) as client:
                    t = time.perf_counter()
                    codes = list(pool.map(lambda i: call(client, i), range(args.documents)))
                    return time.perf_counter() - t, codes

            read = {"Authorization": f"Bearer {reader}"}
            baseline_s, codes = run(lambda c, i: c.get(f"{url}/v1/models", headers=read).status_code)
            assert set(codes) == {200}, set(codes)
            push_s, codes = run(lambda c, i: c.put(f"{url}/v1/sources/tickets/documents/T-{i}", json=bodies[i],
                                                   headers=headers).status_code)
            assert set(codes) == {201}, set(codes)
            t = time.perf_counter()
            if args.interval > 60:  # the committer would wait: one push with ?publish=true drains the queue now
                c = httpx.put(f"{url}/v1/sources/tickets/documents/T-0", json=bodies[0], headers=headers,
                              params={"publish": "true"}, timeout=600)
                assert c.status_code in (200, 201, 204), c.text
            while any((base / "index" / "push-queue").glob("*.json")):
                time.sleep(0.2)
            searchable_s = time.perf_counter() - t
            repush_s, codes = run(lambda c, i: c.put(f"{url}/v1/sources/tickets/documents/T-{i}", json=bodies[i],
                                                     headers=headers).status_code)
            assert set(codes) == {204}, set(codes)
            time.sleep(5)  # two committer intervals: a re-push must leave it nothing to do
            queued_after_repush = len(list((base / "index" / "push-queue").glob("*.json")))
        out["baseline_models_per_s"] = round(args.documents / baseline_s, 1)
        out["push_accepted_per_s"] = round(args.documents / push_s, 1)
        out["push_vs_baseline"] = round(baseline_s / push_s, 2)
        out["all_searchable_after_s"] = round(searchable_s, 1)
        out["repush_unchanged_per_s"] = round(args.documents / repush_s, 1)
        out["queued_after_repush"] = queued_after_repush
        with sqlite3.connect(base / "index" / "chunks.sqlite") as db:
            out["documents_indexed"] = db.execute("SELECT count(*) FROM documents WHERE path LIKE 'push://%' AND "
                                                  "removed_version IS NULL").fetchone()[0]
    print_figures(out, args.json)


if __name__ == "__main__":
    main()
