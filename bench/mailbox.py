"""A 2,000-message shared mailbox indexed from a real Dovecot IMAP server on loopback, then kept in step.

The mailbox is filled over IMAP (APPEND; every 20th message carries a PDF attachment), indexed by one `rag
ingest imap://…` run (listing, fetching and splitting messages reported apart from parsing and embedding),
then one message is added and one deleted and the run repeated: it must fetch, parse and embed only the new
one and remove the deleted one. The baseline: the same messages fetched by a plain imaplib loop (one UID FETCH
of BODY.PEEK[] per 50 messages), the floor for reading them over IMAP.

    python bench/mailbox.py [--messages 2000] [--json]

Target (issue 30): 2,000 messages indexed; a re-run with 1 new and 1 deleted message touches only those.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import print_figures  # noqa: E402 - after the path is set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from ingest.job import run_ingest
    from ingest.mail import MailSource, load_mailboxes
    from ingest.walk import FoundFile
    from rag.settings import load_settings
    from tests.docgen import write_pdf
    from tests.mailserver import append, dovecot, message

    words = ("invoice refund shipment delayed carrier warehouse pallet damaged replacement order customer "
             "address portal password reset licence renewal").split()
    out: dict[str, object] = {"messages": args.messages}
    with tempfile.TemporaryDirectory() as tmp, dovecot({"svc": "pw"}) as server:
        pdf = write_pdf(Path(tmp) / "note.pdf", ["Credit notes are issued within five days of a return."]).read_bytes()
        conn = server.client()
        conn.create("Shared/Support")
        t = time.perf_counter()
        batch = []
        for i in range(args.messages):
            body = f"Ticket {i}: " + " ".join(words[(i * 5 + j) % len(words)] for j in range(80)) + "."
            batch.append(message(f"Ticket {i}", body, ("note.pdf", pdf, "application/pdf") if i % 20 == 0 else None))
        append(conn, "Shared/Support", batch)
        out["fill_s"] = round(time.perf_counter() - t, 1)

        conn.select("Shared/Support", readonly=True)
        uids = conn.uid("SEARCH", None, "ALL")[1][0].split()
        t = time.perf_counter()
        fetched = 0
        for start in range(0, len(uids), 50):
            typ, data = conn.uid("FETCH", b",".join(uids[start:start + 50]).decode(), "(UID BODY.PEEK[])")
            assert typ == "OK", data
            fetched += sum(1 for d in data if isinstance(d, tuple))
        out["plain_imaplib_fetch_s"] = round(time.perf_counter() - t, 2)
        assert fetched == args.messages, fetched

        url = server.url("Shared/Support")
        sources = Path(tmp) / "sources.toml"
        sources.write_text(f'[[mailbox]]\nurl = "{url}"\nsecret = "m"\ngroups = ["support"]\nuse_acl = false\n')
        secrets = Path(tmp) / "secrets.toml"
        secrets.write_text('[m]\nusername = "svc"\npassword = "pw"\n')
        secrets.chmod(0o600)
        settings = load_settings(index_dir=Path(tmp) / "index", device="cpu", sources_file=sources,
                                 secrets_file=secrets)
        source = MailSource.configured(url, load_mailboxes(settings.ingest), settings.ingest)
        t = time.perf_counter()
        items = [i for i in source.scan({}) if isinstance(i, FoundFile)]
        out["scan_s"] = round(time.perf_counter() - t, 2)
        out["scan_items"] = len(items)
        source.close()
        first = run_ingest(settings, [url], progress=False)
        out["ingest_s"] = round(first.seconds, 1)
        out["ingest_documents"] = first.files_indexed
        out["ingest_failed"] = len(first.files_failed)
        out["chunks"] = first.chunks_added

        append(conn, "Shared/Support", [message("Ticket new", "The new ticket: a courier lost parcel 4711.")])
        conn.select("Shared/Support")
        conn.uid("STORE", uids[1].decode(), "+FLAGS", r"(\Deleted)")
        conn.expunge()
        again = run_ingest(settings, [url], progress=False)
        out["rerun_s"] = round(again.seconds, 2)
        out["rerun_indexed"] = again.files_indexed
        out["rerun_removed"] = again.files_removed
        out["rerun_unchanged"] = again.files_unchanged
        out["rerun_chunks_embedded"] = again.chunks_embedded
        conn.logout()
    print_figures(out, args.json)


if __name__ == "__main__":
    main()
