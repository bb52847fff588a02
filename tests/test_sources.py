"""The contract every `Source` (ingest/sources.py) passes: a folder, a web site, an IMAP mailbox, a maildir and the
push queue, each on real files or a real server on loopback (HTTP, Dovecot). A new kind of source adds its case to `SOURCES` and passes the same tests."""

from __future__ import annotations

import mailbox
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.mail import MailSource, load_mailboxes
from ingest.push import Entry, PushQueue, PushSource, content_hash, push_key
from ingest.sources import FolderSource, Source
from ingest.walk import FoundFile
from ingest.web import WebSource, load_sites
from ingest.worker import Task
from rag.store import StoredDocument
from tests.mailserver import dovecot, message
from tests.sitegen import Page, Site, html, serve

TEXTS = {"handbook": "Holidays are booked in the HR portal.", "printers": "The third-floor printer is P-301."}


@dataclass
class Case:
    source: Source
    keys: dict[str, str]  # a name of TEXTS -> the item's key
    groups: tuple[str, ...]  # the readers configured for every item
    remove: Callable[[str], None]  # take the named item away at its origin
    foreign: str  # a key another source would hold


@contextmanager
def folder_case(tmp_path: Path, make_settings) -> Iterator[Case]:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in TEXTS.items():
        (docs / f"{name}.txt").write_text(text)
    settings = make_settings(acl_roots={str(docs): ["staff"]})
    source = FolderSource(settings.ingest, [docs])
    keys = {name: str(docs.resolve() / f"{name}.txt") for name in TEXTS}
    yield Case(source, keys, ("staff",), lambda name: os.unlink(keys[name]), "/elsewhere/notes.txt")


@contextmanager
def web_case(tmp_path: Path, make_settings) -> Iterator[Case]:  # type: ignore[no-untyped-def]
    site = Site(pages={"/wiki/": Page(html("Wiki", "Start.", [f"/wiki/{n}" for n in TEXTS]))})
    site.pages.update({f"/wiki/{n}": Page(html(n, t)) for n, t in TEXTS.items()})
    with serve(site):
        sources = tmp_path / "sources.toml"
        sources.write_text(f'[[site]]\nurl = "{site.url("/wiki/")}"\ngroups = ["staff"]\nrequests_per_s = 0\n')
        settings = make_settings(sources_file=sources)
        source = WebSource.configured(site.url("/wiki/"), load_sites(settings.ingest), settings.ingest)
        keys = {n: site.url(f"/wiki/{n}") for n in TEXTS}
        yield Case(source, keys, ("staff",), lambda name: site.pages.pop(f"/wiki/{name}"), "http://other.example/x")


@contextmanager
def imap_case(tmp_path: Path, make_settings) -> Iterator[Case]:  # type: ignore[no-untyped-def]
    with dovecot({"svc": "pw"}) as server:
        conn = server.client()
        conn.create("Shared")
        keys = {}
        for name, text in TEXTS.items():
            typ, answer = conn.append("Shared", None, None, message(name, text))
            validity, uid = re.search(rb"APPENDUID (\d+) (\d+)", answer[0]).groups()  # type: ignore[union-attr]
            keys[name] = f"{server.url('Shared')};UIDVALIDITY={int(validity)}/;UID={int(uid)}"
        sources = tmp_path / "sources.toml"
        sources.write_text(f'[[mailbox]]\nurl = "{server.url("Shared")}"\nsecret = "m"\ngroups = ["staff"]\n'
                           "use_acl = false\n")
        secrets = tmp_path / "secrets.toml"
        secrets.write_text('[m]\nusername = "svc"\npassword = "pw"\n')
        secrets.chmod(0o600)
        settings = make_settings(sources_file=sources, secrets_file=secrets)
        source = MailSource.configured(server.url("Shared"), load_mailboxes(settings.ingest), settings.ingest)

        def remove(name: str) -> None:
            conn.select("Shared")
            conn.uid("STORE", keys[name].rsplit("=", 1)[1], "+FLAGS", r"(\Deleted)")
            conn.expunge()

        yield Case(source, keys, ("staff",), remove, "imap://other.example/INBOX;UIDVALIDITY=1/;UID=1")
        conn.logout()


@contextmanager
def maildir_case(tmp_path: Path, make_settings) -> Iterator[Case]:  # type: ignore[no-untyped-def]
    box = mailbox.Maildir(tmp_path / "maildir")
    ids = {name: box.add(message(name, text)) for name, text in TEXTS.items()}
    url = f"maildir:{(tmp_path / 'maildir').resolve()}"
    sources = tmp_path / "sources.toml"
    sources.write_text(f'[[mailbox]]\nurl = "{url}"\ngroups = ["staff"]\n')
    settings = make_settings(sources_file=sources)
    source = MailSource.configured(url, load_mailboxes(settings.ingest), settings.ingest)
    yield Case(source, {n: f"{url};UID={i}" for n, i in ids.items()}, ("staff",), lambda name: box.remove(ids[name]),
               "maildir:/elsewhere;UID=1")


@contextmanager
def push_case(tmp_path: Path, make_settings) -> Iterator[Case]:  # type: ignore[no-untyped-def]
    queue = PushQueue(tmp_path / "push-queue")
    keys = {}
    for name, text in TEXTS.items():
        data = text.encode()
        keys[name] = push_key("tickets", name)
        queue.put(Entry(0, keys[name], "tickets", extension=".txt", groups=("staff",), content_hash=content_hash(data),
                        size=len(data)), data)
    queue.put(Entry(0, push_key("crm", "a"), "crm", extension=".txt", groups=("sales",), size=1), b"a")
    yield Case(PushSource("tickets", queue), keys, ("staff",),
               lambda name: queue.put(Entry(0, keys[name], "tickets", deleted=True), None), push_key("crm", "a"))


SOURCES = {"folder": folder_case, "web": web_case, "imap": imap_case, "maildir": maildir_case, "push": push_case}


@pytest.fixture(params=sorted(SOURCES))
def case(request, tmp_path: Path, make_settings) -> Iterator[Case]:  # type: ignore[no-untyped-def]
    with SOURCES[request.param](tmp_path, make_settings) as made:
        try:
            yield made
        finally:
            made.source.close()
            made.source.close()  # twice: closing is idempotent


def found(case: Case, known: dict[bytes, StoredDocument] | None = None) -> dict[str, FoundFile]:
    return {i.path: i for i in case.source.scan(known or {}) if isinstance(i, FoundFile)}


def read(item: FoundFile) -> bytes:
    with os.fdopen(Task.of(item).open(), "rb") as f:
        return f.read()


def test_the_scan_finds_every_item_with_bytes_that_open(case: Case) -> None:
    items = found(case)
    for name, key in case.keys.items():
        assert key in items, (key, sorted(items))
        assert TEXTS[name].encode() in read(items[key])
        assert items[key].extension in (".txt", ".html", ".eml")


def test_keys_are_stable_and_readers_come_from_the_configuration(case: Case) -> None:
    first, second = found(case), found(case)
    assert set(first) == set(second)
    for key in case.keys.values():
        assert case.source.groups_for(key) == case.groups
    assert not case.source.owns(case.foreign)


def test_an_item_taken_away_is_owned_and_not_found(case: Case) -> None:
    before = found(case)
    known = {os.fsencode(k): StoredDocument(i, v.size, v.mtime_ns, "h") for i, (k, v) in enumerate(before.items())}
    case.remove("printers")
    after = found(case, known)
    gone = case.keys["printers"]
    assert gone not in after and case.keys["handbook"] in after
    assert case.source.owns(gone)  # so the plan removes its stored copy
