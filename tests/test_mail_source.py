"""Mailboxes as a source (ingest/mail.py) against a real Dovecot IMAP server on loopback (tests/mailserver.py),
and local maildir and mbox folders.

Attackers: a sender (a hostile attachment, a huge message), a staff member who may not read the shared
mailbox (its ACL must hold in search), someone reading the process list or logs for the password."""

from __future__ import annotations

import mailbox
import os
from pathlib import Path

import pytest

from ingest.job import run_ingest
from ingest.mail import acl_readers
from rag.index import IndexReader
from rag.search import Searcher
from rag.types import Principal
from tests.docgen import write_pdf
from tests.mailserver import append, dovecot, message


def configure(tmp_path: Path, make_settings, url: str, extra: str = ""):  # type: ignore[no-untyped-def]
    sources = tmp_path / "sources.toml"
    sources.write_text(f'[[mailbox]]\nurl = "{url}"\nsecret = "mail"\n{extra}\n')
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[mail]\nusername = "svc"\npassword = "svc-password"\n')
    secrets.chmod(0o600)
    return make_settings(sources_file=sources, secrets_file=secrets)


def documents(settings) -> dict[str, tuple[str, ...]]:  # type: ignore[no-untyped-def]
    reader = IndexReader(settings.index)
    reader.refresh()
    assert reader.view is not None
    return {os.fsdecode(k): d.groups for k, d in reader.view.live_documents().items()}


def test_a_shared_mailbox_is_indexed_with_its_acl_and_kept_in_step(make_settings, embedder, tmp_path: Path) -> None:
    pdf = write_pdf(tmp_path / "rma.pdf", ["Returned laptops are wiped and sent to the refurbishing partner Rebit."])
    with dovecot({"svc": "svc-password", "alice": "a"}) as server:
        conn = server.client()
        conn.create("Shared/Support")
        conn.setacl("Shared/Support", "alice", "lr")
        conn.setacl("Shared/Support", "group=support", "lr")
        append(conn, "Shared/Support", [
            message("Printer jam on floor 3", "The Kyocera on floor 3 jams when duplex printing; use tray 2."),
            message("Laptop return", "See the attached procedure.", ("rma.pdf", pdf.read_bytes(), "application/pdf")),
            message("VPN drops", "Reinstall the Northwind VPN profile if the tunnel drops every hour."),
        ])
        url = server.url("Shared/Support")
        settings = configure(tmp_path, make_settings, url)
        summary = run_ingest(settings, [url], embedder=embedder, progress=False)
        assert summary.files_failed == [] and summary.files_indexed == 4  # three messages and the PDF part
        docs = documents(settings)
        assert set(docs.values()) == {("support", "user:alice")}  # the ACL's readers, not the service account
        keys = sorted(docs)
        assert all(k.startswith(url + ";UIDVALIDITY=") for k in keys)
        assert any(k.endswith("/;SECTION=2/rma.pdf") for k in keys)

        searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
        support = Principal.member_of(["support"])
        hit = searcher.search("which partner refurbishes returned laptops", k=1, principal=support).hits[0]
        assert hit.path.endswith("/rma.pdf")
        assert searcher.search("printer jams duplex", k=1, principal=Principal.member_of(["sales"])).hits == []
        # nothing was marked read: the crawl fetched with BODY.PEEK in a read-only session
        conn.select("Shared/Support", readonly=True)
        assert conn.uid("SEARCH", None, "SEEN")[1] == [b""]

        # one new message, one deleted: only those are touched
        append(conn, "Shared/Support", [message("Badge lost", "Lost badges are blocked at the reception desk.")])
        conn.select("Shared/Support")
        conn.uid("STORE", "1", "+FLAGS", r"(\Deleted)")
        conn.expunge()
        again = run_ingest(settings, [url], embedder=embedder, progress=False)
        assert (again.files_indexed, again.files_removed, again.files_unchanged) == (1, 1, 3)
        assert again.files_failed == []
        docs = documents(settings)
        assert len(docs) == 4 and not any(k.endswith(";UID=1") for k in docs)

        # ACL change: alice loses read; applied without fetching or embedding anything
        conn.deleteacl("Shared/Support", "alice")
        third = run_ingest(settings, [url], embedder=embedder, progress=False)
        assert third.chunks_embedded == 0 and third.permissions_changed == 4
        assert set(documents(settings).values()) == {("support",)}
        conn.logout()


def test_a_mailbox_without_acl_takes_its_configured_groups_and_a_bad_password_is_one_line(
        make_settings, embedder, tmp_path: Path) -> None:
    with dovecot({"svc": "svc-password"}) as server:
        conn = server.client()
        conn.create("Sales")
        append(conn, "Sales", [message("Quote 17", "The discount for Contoso is twelve percent.")])
        url = server.url("Sales")
        settings = configure(tmp_path, make_settings, url, 'groups = ["sales"]\nuse_acl = false')
        run_ingest(settings, [url], embedder=embedder, progress=False)
        assert set(documents(settings).values()) == {("sales",)}

        (tmp_path / "secrets.toml").write_text('[mail]\nusername = "svc"\npassword = "wrong"\n')
        summary = run_ingest(settings, [url], embedder=embedder, progress=False)
        [failed] = summary.files_failed
        assert "mailbox not read" in failed.error and "wrong" not in failed.error
        assert summary.files_removed == 0 and len(documents(settings)) == 1  # nothing removed on a failed login


def test_acl_answers_become_readers() -> None:
    line = b'"Shared/Support Team" anyone lr alice lrs svc lrswipkxte group=support lr $hr lr bob w -carol r carol lr'
    assert acl_readers(line, own="svc") == ("everyone", "hr", "support", "user:alice")


def test_no_password_in_clear_to_a_server_off_this_machine(make_settings, embedder, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import ingest.mail

    with dovecot({"svc": "svc-password"}) as server:  # no TLS offered, as a misconfigured server
        conn = server.client()
        conn.create("Sales")
        conn.logout()
        before = server.logins()
        monkeypatch.setattr(ingest.mail, "is_loopback", lambda host: False)  # as if it were another host
        url = server.url("Sales")
        settings = configure(tmp_path, make_settings, url)
        summary = run_ingest(settings, [url], embedder=embedder, progress=False)
        [failed] = summary.files_failed
        assert "offers no TLS" in failed.error and "imaps://" in failed.error
        assert server.logins() == before  # the password was never sent


@pytest.mark.parametrize("kind", ["maildir", "mbox"])
def test_local_maildir_and_mbox(kind: str, make_settings, embedder, tmp_path: Path) -> None:
    path = tmp_path / kind
    box: mailbox.Mailbox = mailbox.Maildir(path) if kind == "maildir" else mailbox.mbox(path)
    keys = [box.add(message(f"Memo {i}", f"Memo {i}: the canteen closes at {14 + i} o'clock.")) for i in range(3)]
    box.flush()
    url = f"{kind}:{path}"
    settings = configure(tmp_path, make_settings, url, 'groups = ["staff"]')
    first = run_ingest(settings, [url], embedder=embedder, progress=False)
    assert first.files_indexed == 3 and set(documents(settings).values()) == {("staff",)}
    box.remove(keys[0])
    box.flush()
    again = run_ingest(settings, [url], embedder=embedder, progress=False)
    assert (again.files_indexed, again.files_removed, again.files_unchanged, again.chunks_embedded) == (0, 1, 2, 0)
    box.close()
