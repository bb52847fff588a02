"""Mailboxes as a source: `rag ingest imaps://mail.example/Shared/Support`, `maildir:/path` or `mbox:/path`.

Each message is a document (its subject, from, to, date and body, read by the .eml parser in the sandbox); each
attachment a parser reads is a document of its own, cited as the message's part (`…;UID=42/;SECTION=2/name`).
Keys follow RFC 5092's IMAP URLs: `imaps://host/Mailbox;UIDVALIDITY=v/;UID=u`, so a message, whose content an
IMAP server never changes under its UID, is fetched once; a re-run lists the UIDs (one command), fetches only
the new ones and removes the ones gone; a new UIDVALIDITY (the mailbox recreated) replaces them all. Messages
are fetched with BODY.PEEK (nothing is marked read), in a read-only EXAMINE session.

Readers: the mailbox's own ACL (RFC 4314 GETACL) where the server offers it: every identifier with the read
right `r` (`anyone` and `authenticated`: everyone; a group, Dovecot's `group=name` or `$name`: that group; an account: the
reader `user:<name>`, as for file-system permissions), the service account itself excluded; else the
`groups` of the mailbox's entry in RAG_SOURCES_FILE; else admins only. Local maildir and mbox folders take
their entry's `groups`. Messages are keyed by the maildir's unique name, or in an mbox by a hash of the message
(an mbox has no stable numbering).

Safety: the password comes from RAG_SECRETS_FILE (`username`, `password` of the entry the mailbox's `secret`
names); `imap://` without TLS is refused unless the server offers STARTTLS or is on loopback; the same
address guard as the web source (no link-local or metadata address, checked on the address connected to);
messages larger than RAG_MAX_FILE_MB are listed by size and never fetched. This process splits a message
into its parts with the standard library's pure-Python e-mail parser; every part is parsed in the sandbox.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import imaplib
import json
import logging
import mailbox
import os
import re
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from ingest.acl import parse_acl
from ingest.parsers import PARSER_VERSION
from ingest.secrets import Secret, named_secret
from ingest.sources import FetchingSource
from ingest.walk import FoundFile, Skipped
from ingest.web import guarded_connection
from rag.network import is_loopback
from rag.settings import SUPPORTED_EXTENSIONS
from rag.store import StoredDocument
from rag.types import EVERYONE, USER_READER

if TYPE_CHECKING:
    from rag.settings import IngestSettings

log = logging.getLogger(__name__)

SCHEMES = ("imap", "imaps", "maildir", "mbox")
MAILBOX_KEYS = {"url", "groups", "secret", "ca_bundle", "timeout_s", "use_acl"}
FETCH_BATCH = 50  # messages per UID FETCH


def is_mailbox(target: str) -> bool:
    return target.split(":", 1)[0].lower() in SCHEMES and ":" in target


@dataclass(frozen=True)
class Mailbox:
    """A mailbox's entry in RAG_SOURCES_FILE (a [[mailbox]] table), or the defaults for one without."""

    url: str  # imaps://host[:port]/Mailbox/Name, imap://…, maildir:/path, mbox:/path
    groups: tuple[str, ...] = ()
    secret: str = ""
    ca_bundle: str = ""
    timeout_s: float = 60.0
    use_acl: bool = True  # readers from the server's ACL when it offers them (IMAP)


def normalize_mailbox(url: str) -> str | None:
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("maildir", "mbox"):
        path = url.split(":", 1)[1]
        return f"{scheme}:{os.path.realpath(path)}" if path.startswith("/") else None
    parts = urlsplit(url)
    if scheme not in ("imap", "imaps") or not parts.hostname or parts.username or parts.password:
        return None
    name = unquote(parts.path.lstrip("/")).rstrip("/")
    if not name:
        return None
    host = parts.hostname.lower()
    port = parts.port
    netloc = host if port in (None, 993 if scheme == "imaps" else 143) else f"{host}:{port}"
    return f"{scheme}://{netloc}/{quote(name, safe='/')}"


def load_mailboxes(ingest: "IngestSettings") -> list[Mailbox]:
    from ingest.sources import read_sources_table

    boxes = []
    for i, entry in enumerate(read_sources_table(ingest).get("mailbox", [])):
        where = f"sources file {ingest.sources_file}, mailbox {i + 1}"
        unknown = set(entry) - MAILBOX_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(MAILBOX_KEYS)})")
        url = normalize_mailbox(str(entry.get("url", "")))
        if url is None:
            raise ValueError(f"{where}: url must be imaps://host/Mailbox, imap://…, maildir:/path or mbox:/path")
        boxes.append(Mailbox(url, parse_acl(" ".join(entry.get("groups", [])), where), str(entry.get("secret", "")),
                             str(entry.get("ca_bundle", "")), float(entry.get("timeout_s", 60.0)),
                             bool(entry.get("use_acl", True))))
    return boxes


# -- IMAP ---------------------------------------------------------------------------------------------------
class _IMAP(imaplib.IMAP4):
    def _create_socket(self, timeout: float | None) -> "object":
        return guarded_connection(self.host, self.port, timeout)


class _IMAPS(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout: float | None) -> "object":
        sock = guarded_connection(self.host, self.port, timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')


def acl_readers(line: bytes, own: str) -> tuple[str, ...]:
    """Readers from a GETACL answer (`mailbox id rights id rights…`): the identifiers with the `r` right."""
    tokens = [a if a else b for a, b in _TOKEN.findall(line.decode("utf-8", "replace"))][1:]
    readers: set[str] = set()
    denied: set[str] = set()
    for ident, rights in zip(tokens[0::2], tokens[1::2]):
        if "r" not in rights:
            continue
        if ident.startswith("-"):
            denied.add(ident[1:])
            continue
        if ident in ("anyone", "authenticated"):
            readers.add(EVERYONE)
        elif group := _group(ident):
            readers.add(group)
        elif ident != own:
            readers.add(USER_READER + ident)
    readers -= {USER_READER + d for d in denied} | {g for d in denied if (g := _group(d))}
    return tuple(sorted(readers))


def _group(ident: str) -> str:
    """The group an ACL identifier names ('' for an account): Dovecot's `group=name` (and `group-override=`),
    Cyrus's and RFC 4314's examples' `$name`."""
    for prefix in ("group=", "group-override=", "$"):
        if ident.startswith(prefix):
            return ident[len(prefix):]
    return ""


# -- the source ----------------------------------------------------------------------------------------------
class MailSource(FetchingSource):
    """A mailbox (see the module's docstring)."""

    kind = "mail"

    def __init__(self, box: Mailbox, max_bytes: int, secret: Secret | None = None) -> None:
        self.box = box
        self.name = box.url
        self.max_bytes = max_bytes
        self.secret = secret
        self.complete = False
        self.readers: tuple[str, ...] = box.groups

    @classmethod
    def configured(cls, url: str, boxes: list[Mailbox], ingest: "IngestSettings") -> "MailSource":
        name = normalize_mailbox(url)
        if name is None:
            raise ValueError(f"{url} is not a mailbox address (imaps://host/Mailbox, imap://…, maildir:/path, "
                             "mbox:/path)")
        box = next((b for b in boxes if b.url == name), Mailbox(name))
        secret = None
        if name.startswith("imap"):
            if not box.secret:
                raise ValueError(f"mailbox {name} needs its login: a [[mailbox]] entry in RAG_SOURCES_FILE with "
                                 "`secret` naming a username and password in RAG_SECRETS_FILE")
            secret = named_secret(ingest.secrets_file, box.secret, f"mailbox {name}")
            if secret.login() is None:
                raise ValueError(f"mailbox {name}: {ingest.secrets_file} holds no username and password under "
                                 f"[{box.secret}]")
        return cls(box, int(ingest.max_file_mb * 2**20), secret)

    # -- the Source protocol ------------------------------------------------------------------------------
    def owns(self, key: str) -> bool:
        return self.complete and key.startswith(self.name + ";")

    def groups_for(self, key: str) -> tuple[str, ...]:
        return self.counted(self.readers)

    def scan(self, known: Mapping[bytes, StoredDocument]) -> Iterator[FoundFile | Skipped]:
        self.new_spool("rag-mail-")
        self.complete, self.readers = False, self.box.groups
        mine: dict[str, StoredDocument] = {}
        for raw, doc in known.items():  # an earlier release's parsers read it: fetched and read again
            if (key := os.fsdecode(raw)).startswith(self.name + ";") and doc.parser_version >= PARSER_VERSION:
                mine[key] = doc
        started = time.monotonic()
        try:
            if self.name.startswith("imap"):
                yield from self._imap(mine)
            else:
                yield from self._local(mine)
        except (imaplib.IMAP4.error, OSError, ssl.SSLError, mailbox.Error) as exc:
            self.complete = False
            yield Skipped(self.name, f"mailbox not read ({type(exc).__name__}: {exc}); nothing removed this run",
                          True)
        log.info("mailbox %s read in %.1f s", self.name, time.monotonic() - started)

    def _unchanged(self, key: str, mine: dict[str, StoredDocument]) -> Iterator[FoundFile]:
        """A message already indexed, and its parts, as stored (an IMAP message never changes under its UID)."""
        doc = mine[key]
        yield FoundFile(key, doc.size, doc.mtime_ns, source_state=doc.source_state)
        for part in json.loads(doc.source_state or "{}").get("parts", []):
            if part in mine:
                stored = mine[part]
                yield FoundFile(part, stored.size, stored.mtime_ns, source_state=stored.source_state)

    def _imap(self, mine: dict[str, StoredDocument]) -> Iterator[FoundFile | Skipped]:
        parts = urlsplit(self.name)
        host, port = parts.hostname or "", parts.port or (993 if parts.scheme == "imaps" else 143)
        mailbox_name = unquote(parts.path.lstrip("/"))
        context = ssl.create_default_context(cafile=self.box.ca_bundle or None)
        if parts.scheme == "imaps":
            conn: imaplib.IMAP4 = _IMAPS(host, port, ssl_context=context, timeout=self.box.timeout_s)
        else:
            conn = _IMAP(host, port, timeout=self.box.timeout_s)
            if "STARTTLS" in conn.capabilities:
                conn.starttls(ssl_context=context)
            elif not is_loopback(host):
                conn.shutdown()
                raise imaplib.IMAP4.error(f"{host} offers no TLS: the password is never sent in clear off this "
                                          "machine (use imaps://)")
        try:
            assert self.secret is not None and self.secret.login() is not None
            user, password = self.secret.login()  # type: ignore[misc]
            conn.login(user, password)
            quoted = '"' + mailbox_name.replace("\\", "\\\\").replace('"', '\\"') + '"'
            typ, data = conn.select(quoted, readonly=True)
            if typ != "OK":
                raise imaplib.IMAP4.error(f"cannot open {mailbox_name}: {data[0]!r}")
            validity = int(conn.response("UIDVALIDITY")[1][0] or 0)
            if self.box.use_acl:
                self.readers = self._acl(conn, quoted, user) or self.box.groups
            typ, data = conn.uid("SEARCH", None, "ALL")
            uids = [int(u) for u in (data[0] or b"").split()]
            base = f"{self.name};UIDVALIDITY={validity}/;UID="
            new = []
            for uid in uids:
                if base + str(uid) in mine:
                    yield from self._unchanged(base + str(uid), mine)
                else:
                    new.append(uid)
            for start in range(0, len(new), FETCH_BATCH):
                batch = new[start:start + FETCH_BATCH]
                sizes = self._sizes(conn, batch)
                wanted = [u for u in batch if sizes.get(u, (0, 0))[0] <= self.max_bytes]
                for uid in batch:
                    if uid not in wanted:
                        yield Skipped(base + str(uid), f"message of {sizes[uid][0] / 2**20:.0f} MiB is larger than "
                                                       f"the {self.max_bytes / 2**20:g} MiB limit (RAG_MAX_FILE_MB)",
                                      True)
                if not wanted:
                    continue
                typ, data = conn.uid("FETCH", ",".join(map(str, wanted)), "(UID BODY.PEEK[])")
                for item in data:
                    if not isinstance(item, tuple):
                        continue
                    found = re.search(rb"UID (\d+)", item[0])
                    if found is None:
                        continue
                    uid = int(found.group(1))
                    yield from self._message(base + str(uid), item[1], sizes.get(uid, (0, 0))[1])
            self.complete = True
        finally:
            try:
                conn.logout()
            except (imaplib.IMAP4.error, OSError):
                pass

    def _acl(self, conn: imaplib.IMAP4, quoted: str, user: str) -> tuple[str, ...]:
        try:
            typ, data = conn.getacl(quoted)
        except imaplib.IMAP4.error:  # no ACL extension: the configured groups
            return ()
        if typ != "OK" or not data or not isinstance(data[0], bytes):
            return ()
        return acl_readers(data[0], user)

    def _sizes(self, conn: imaplib.IMAP4, uids: list[int]) -> dict[int, tuple[int, int]]:
        """(size, arrival time in ns) of each message, before any is fetched."""
        typ, data = conn.uid("FETCH", ",".join(map(str, uids)), "(UID RFC822.SIZE INTERNALDATE)")
        out = {}
        for line in data:
            if not isinstance(line, bytes):
                continue
            uid = re.search(rb"UID (\d+)", line)
            size = re.search(rb"RFC822\.SIZE (\d+)", line)
            if uid and size:
                arrived = imaplib.Internaldate2tuple(line)
                when = int(time.mktime(arrived) * 1e9) if arrived else 0
                out[int(uid.group(1))] = (int(size.group(1)), when)
        return out

    def _local(self, mine: dict[str, StoredDocument]) -> Iterator[FoundFile | Skipped]:
        scheme, path = self.name.split(":", 1)
        if scheme == "maildir":
            box: mailbox.Mailbox = mailbox.Maildir(path, factory=None, create=False)
        else:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"no mbox file at {path}")
            box = mailbox.mbox(path, factory=None, create=False)
        try:
            for key in box.keys():
                with box.get_file(key) as f:
                    data = f.read(self.max_bytes + 1)
                ident = key if scheme == "maildir" else hashlib.sha256(data).hexdigest()[:24]
                item = f"{self.name};UID={ident}"
                if len(data) > self.max_bytes:
                    yield Skipped(item, f"message larger than the {self.max_bytes / 2**20:g} MiB limit", True)
                elif item in mine:
                    yield from self._unchanged(item, mine)
                else:
                    yield from self._message(item, data, 0)
        finally:
            box.close()
        self.complete = True

    def _message(self, key: str, data: bytes, arrived_ns: int) -> Iterator[FoundFile]:
        """The message as an .eml item, and each attachment a parser reads as a part of its own."""
        message = email.message_from_bytes(data, policy=email.policy.default)
        parts: list[FoundFile] = []
        for number, part in _sections(message):
            if part.get_content_disposition() != "attachment":
                continue
            filename = os.path.basename(part.get_filename() or "")
            ext = os.path.splitext(filename)[1].lower()
            if not filename or ext not in SUPPORTED_EXTENSIONS or ext == ".eml":
                continue
            payload = part.get_payload(decode=True) or b""
            if not payload or len(payload) > self.max_bytes:
                continue
            parts.append(self.spool.add(f"{key}/;SECTION={number}/{quote(filename)}", payload, ext, arrived_ns, ""))
        state = json.dumps({"parts": [p.path for p in parts]}) if parts else ""
        yield self.spool.add(key, data, ".eml", arrived_ns, state)
        yield from parts


def _sections(message: "email.message.Message", prefix: str = "") -> Iterator[tuple[str, "email.message.Message"]]:
    """Each leaf part with its IMAP section number (RFC 3501: "1", "2", "2.1", …), as a mail client cites it."""
    if not message.is_multipart():
        yield prefix or "1", message
        return
    for i, part in enumerate(message.get_payload(), start=1):  # type: ignore[arg-type]
        yield from _sections(part, f"{prefix}.{i}" if prefix else str(i))
