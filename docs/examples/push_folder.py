"""Feed the push API from a folder of exported pages: the shape of an integration for SharePoint, Confluence or a
ticketing system that exports its pages (or whose API a script can read page by page).

    RAG_TOKEN=rag_... python push_folder.py https://rag.example:8000 wiki ./export --group staff

Each file under the folder is pushed as one document: its path is the document's id, so a re-run replaces what
changed, and the server answers 204 for what did not (nothing is embedded again). The ids pushed are kept in a
state file beside the folder: a file gone since the last run is deleted from the index. The token is an ingest
token (`rag token create wiki-feed --user svc-wiki --scope ingest --source wiki`): it can push to `wiki`, and
read nothing. Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

TEXT = {".md", ".txt"}
FILES = {".html", ".htm", ".pdf", ".docx", ".pptx", ".xlsx", ".csv", ".rst", ".json", ".eml"}


def call(method: str, url: str, token: str, body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", **({"Content-Type": "application/json"} if data else {})})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and method == "DELETE":
            return 404
        message = json.loads(exc.read() or b"{}").get("error", {}).get("message", exc.reason)
        raise SystemExit(f"{method} {url}: {exc.code} {message}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("api", help="the API's address, e.g. https://rag.example:8000")
    parser.add_argument("source", help="the push source's name, e.g. wiki")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--group", action="append", default=[], help="a group that may read the pages (repeat)")
    parser.add_argument("--publish", action="store_true", help="make the last push wait until all is searchable")
    args = parser.parse_args()
    token = os.environ.get("RAG_TOKEN") or sys.exit("set RAG_TOKEN to an ingest token")
    base = f"{args.api.rstrip('/')}/v1/sources/{args.source}/documents/"
    state = args.folder.with_name(args.folder.name + ".pushed.json")
    before = set(json.loads(state.read_text())) if state.exists() else set()
    pushed, counts = set(), {201: 0, 200: 0, 204: 0}
    files = sorted(p for p in args.folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT | FILES)
    for n, path in enumerate(files, start=1):
        doc_id = path.relative_to(args.folder).as_posix()
        if path.suffix.lower() in TEXT:
            body = {"title": path.stem.replace("-", " "), "text": path.read_text(encoding="utf-8", errors="replace")}
        else:
            body = {"filename": path.name, "content_base64": base64.b64encode(path.read_bytes()).decode()}
        body["groups"] = args.group
        last = args.publish and n == len(files)
        status = call("PUT", base + urllib.parse.quote(doc_id, safe="") + ("?publish=true" if last else ""), token, body)
        counts[status] = counts.get(status, 0) + 1
        pushed.add(doc_id)
    gone = before - pushed
    for doc_id in sorted(gone):
        call("DELETE", base + urllib.parse.quote(doc_id, safe=""), token)
    state.write_text(json.dumps(sorted(pushed)))
    print(f"{counts[201]} created, {counts[200]} replaced, {counts[204]} unchanged, {len(gone)} deleted")


if __name__ == "__main__":
    main()
