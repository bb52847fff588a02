"""Saved conversations keep sources by reference and show them only to whoever may read them now (issue 26,
finding 7), against an app database the last release wrote (tests/data/appdb-release) and a running `rag api`.

Attacker: a user who once read a document and then lost it (an admin removed the document, or took the user
out of its group) and reopens an old conversation to read it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ingest.job import run_ingest
from rag.passages import join_overlapping
from rag.settings import load_settings
from rag.types import Hit, Principal
from tests.conftest import serve_api
from ui.appdb import SCHEMA_VERSION, AppDB
from ui.auth import add_user
from ui.conversations import AVAILABLE, CHANGED, UNAVAILABLE, find_passage, shown_answer, stored_answer

DATA = Path(__file__).resolve().parent / "data"
FIXTURE = DATA / "appdb-release"
WRITTEN_AT = "/tmp/rag-index-v1/docs"  # where the documents were when the release answered


def release_turns(path: Path) -> list[dict]:
    """The turns' answers as the release stored them (read directly, before any migration)."""
    conn = sqlite3.connect(path)
    try:
        return [json.loads(r[0]) for r in conn.execute("SELECT answer FROM turns ORDER BY rowid")]
    finally:
        conn.close()


def secret_phrase(answers: list[dict]) -> str:
    """Five words of a stored passage that the answers, quotes and questions never say: what only the
    passage's text could give away."""
    said = " ".join(str(a.get(k, "")) for a in answers for k in ("answer", "quote", "generated", "question")).lower()
    for answer in answers:
        for source in answer.get("sources", []):
            words = re.findall(r"\w+", source["text"])
            for i in range(len(words) - 5):
                phrase = " ".join(words[i:i + 5])
                if phrase.lower() not in said and " ".join(words[i:i + 5]) in source["text"]:
                    return phrase
    raise AssertionError("no passage text to look for")


def moved_copy(folder: Path, docs: Path) -> Path:
    """The fixture's app database copied into `folder`, its stored paths pointing at `docs` (the documents
    the release answered from, copied there), as the release left it."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "app.sqlite"
    shutil.copy(FIXTURE / "app.sqlite", target)
    conn = sqlite3.connect(target)
    with conn:
        conn.execute("UPDATE turns SET answer = replace(answer, ?, ?)", (WRITTEN_AT, str(docs)))
    conn.close()
    return target


def test_the_release_app_database_migrates_without_the_passages_text(tmp_path: Path) -> None:
    path = moved_copy(tmp_path, tmp_path / "docs")
    before = [a for a in release_turns(path) if a]
    phrase = secret_phrase(before)
    assert phrase.encode() in path.read_bytes()  # the release kept the passages' text in the file
    tokens = json.loads((FIXTURE / "tokens.json").read_text())

    db = AppDB(path)
    assert db.schema_version() == SCHEMA_VERSION
    ada = db.conversations("ada")
    assert [c.turns for c in ada] == [2] and [c.turns for c in db.conversations("hanna")] == [1]
    stored = [t.answer for c in (*ada, *db.conversations("hanna")) for t in db.turns(c.username, c.id)]
    for old, new in zip(before, [a for a in stored if a]):
        assert new["answer"] == old["answer"] and len(new["sources"]) == len(old["sources"])
        for o, n in zip(old["sources"], new["sources"]):
            assert "text" not in n and n["text_sha256"] == hashlib.sha256(o["text"].encode()).hexdigest()
            assert n["path"] == o["path"] and n["chunk_ids"] == o["chunk_ids"]
        for o, n in zip(old["support"], new["support"]):
            assert "evidence" not in n and (not o["evidence"] or n["evidence_span"])
    # nothing of the passages is left in the file or its write-ahead log
    for part in (path, path.with_name("app.sqlite-wal")):
        assert not part.exists() or phrase.encode() not in part.read_bytes(), part
    # the rest of the organisation's record is as it was
    assert {t.username for t in db.tokens()} == {"ada", "hanna"}
    assert all(db.token_for(secret) is not None for secret in tokens.values())
    assert db.feedback_count() == 1 and len(db.audit_entries(0, 2e9)) == 3
    # opened again: nothing more to migrate, the answers stay as they are
    assert [t.answer for t in db.turns("ada", ada[0].id)] == [t.answer for t in AppDB(path).turns("ada", ada[0].id)]


def test_a_merged_passage_is_found_again_by_its_hash_and_the_evidence_by_its_place() -> None:
    chunks = [Hit(10 + i, "/d.txt", "d", 1, i, 0.0, text) for i, text in enumerate(
        ["Alpha beta gamma delta epsilon zeta eta theta. ", "Lunch is served from 11:30 to 14:00 every day. ",
         "Dinner is not served. Breakfast starts at 7:00."])]
    passage = join_overlapping(chunks[1].text, chunks[2].text)  # as merge_neighbours joins them
    assert [c.chunk_id for c in find_passage(chunks, 1, hashlib.sha256(passage.encode()).hexdigest(), 3)] == [11, 12]
    answer = {"answer": "Lunch is served from 11:30 [1].", "sources": [
        {"number": 1, "chunk_id": 1, "chunk_ids": [1, 2], "path": "/d.txt", "title": "d", "page": 1, "score": 1.0,
         "text": passage, "cited": True}],
        "support": [{"sentence": "Lunch is served from 11:30.", "supported": True, "source": 1,
                     "evidence": "Lunch is served from 11:30 to 14:00 every day."}]}
    stored = stored_answer(answer)
    assert "text" not in stored["sources"][0] and stored["support"][0]["evidence_span"] == [0, 46]


# -- against a running API ---------------------------------------------------------------------------


@dataclass
class Site:
    base: Path
    docs: Path
    index: Path
    users: Path
    env: dict[str, str]
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, embedder, model_cache: Path) -> Site:  # type: ignore[no-untyped-def]
    """The release's documents with permissions (HR's for hr, finance's for finance), indexed by today's
    code (new parsers: every chunk id differs from the ones the release stored), and its app database."""
    base = tmp_path_factory.mktemp("conversations")
    docs = base / "docs"
    shutil.copytree(DATA / "index-v1" / "docs", docs)
    (docs / "hr" / ".rag-acl").write_text("hr\n")
    (docs / "finance" / ".rag-acl").write_text("finance\n")
    (docs / "archive").mkdir()
    for i in range(3):  # read first: every later chunk id moves on
        (docs / "archive" / f"note-{i}.txt").write_text(f"Archived note {i}: the old canteen menu, kept for reference.")
    index = base / "index"
    run_ingest(load_settings(index_dir=index, device="cpu"), [docs], embedder=embedder, progress=False)
    moved_copy(base, docs)
    users = base / "users.yaml"
    add_user(users, "ada", "ada password", "Ada", ["user"], ["hr"])
    add_user(users, "hanna", "hanna password", "Hanna", ["user"], ["finance"])
    env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache), "RAG_UI_USERS_FILE": str(users),
           "RAG_APP_DB": str(base / "app.sqlite"), "RAG_MAX_NEW_TOKENS": "24"}
    return Site(base, docs, index, users, env, json.loads((FIXTURE / "tokens.json").read_text()))


@pytest.fixture(scope="module")
def api(site: Site) -> Iterator[str]:
    with serve_api(site.base, site.index, site.env) as url:
        yield url


def conversation(api: str, token: str) -> tuple[dict, str]:
    """The caller's one conversation as the API shows it, and the response's raw text."""
    headers = {"Authorization": f"Bearer {token}"}
    [listed] = httpx.get(f"{api}/v1/conversations", headers=headers, timeout=30).json()["conversations"]
    response = httpx.get(f"{api}/v1/conversations/{listed['id']}", headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return response.json(), response.text


@pytest.mark.slow
def test_old_sources_open_after_a_reindex_and_close_when_the_reader_loses_them(site: Site, api: str) -> None:
    ada = {"Authorization": f"Bearer {site.tokens['ada']}"}
    shown, _ = conversation(api, site.tokens["ada"])
    first = shown["turns"][0]["answer"]
    assert not first["withheld"] and "25 days" in first["answer"]
    [source] = first["sources"]
    # the release's chunk 5 is gone (new parsers, new index); the passage is found again, and it opens
    assert source["status"] == AVAILABLE and source["path"].endswith("hr/leave-policy.pdf")
    assert "25 days" in source["text"] and source["chunk_id"] != 5
    page = httpx.get(f"{api}/v1/chunks/{source['chunk_id']}/page", headers=ada, timeout=60)
    assert page.status_code == 200, page.text

    # an admin takes ada out of hr: at the next request, the old answer and its source are gone for her
    add_user(site.users, "ada", "ada password", "Ada", ["user"], [])
    shown, raw = conversation(api, site.tokens["ada"])
    for turn in shown["turns"]:
        answer = turn["answer"]
        assert answer["withheld"] and answer["answer"] == "" and answer["support"] == []
        assert {s["status"] for s in answer["sources"]} == {UNAVAILABLE}
    phrase = secret_phrase([a for a in release_turns(FIXTURE / "app.sqlite") if a])
    assert "leave-policy" not in raw and "25 days" not in raw and phrase not in raw
    assert turn["question"] == "Who approves vacation requests?"  # her own questions stay hers
    assert httpx.get(f"{api}/v1/chunks/{source['chunk_id']}/page", headers=ada, timeout=30).status_code == 404


@pytest.mark.slow
def test_a_removed_document_and_an_edited_one_say_so(site: Site, api: str, embedder) -> None:  # type: ignore[no-untyped-def]
    shown, _ = conversation(api, site.tokens["hanna"])
    [source] = shown["turns"][0]["answer"]["sources"]
    assert source["status"] == AVAILABLE and "220 EUR" in source["text"]

    # the passage rewritten: the document is still hers, the passage no longer in it
    policy = site.docs / "finance" / "travel-policy.txt"
    original = policy.read_text()
    policy.write_text("Travel policy, rewritten: every trip is booked by the travel office, which pays the hotel.\n")
    run_ingest(load_settings(index_dir=site.index, device="cpu"), [site.docs], embedder=embedder, progress=False)
    answer = conversation(api, site.tokens["hanna"])[0]["turns"][0]["answer"]
    assert answer["sources"][0]["status"] == CHANGED and answer["sources"][0]["text"] == ""
    assert not answer["withheld"] and "220 EUR" in answer["answer"]  # she may still read the document

    # the document removed from the index: its answer is withheld
    policy.unlink()
    run_ingest(load_settings(index_dir=site.index, device="cpu"), [site.docs], embedder=embedder, progress=False)
    shown, raw = conversation(api, site.tokens["hanna"])
    answer = shown["turns"][0]["answer"]
    assert answer["withheld"] and answer["sources"][0]["status"] == UNAVAILABLE and "travel-policy" not in raw
    policy.write_text(original)


def test_an_answer_shown_without_an_index_withholds_everything() -> None:
    answer = {"answer": "It is 25 days [1].", "sources": [
        {"number": 1, "chunk_id": 3, "chunk_ids": [3], "path": "/x/leave.pdf", "title": "Leave", "page": 1,
         "score": 1.0, "text": "Employees get 25 days.", "cited": True}], "support": []}
    shown = shown_answer(stored_answer(answer), None, Principal(admin=True))
    assert shown["withheld"] and shown["answer"] == "" and shown["sources"][0]["path"] == ""
