"""A real Dovecot IMAP server on loopback (Debian's dovecot-imapd), started per test in a temporary folder: plain
IMAP on a free port (loopback only, so the client may log in without TLS), users from a passwd-file, maildirs
under the folder, the ACL plugins on (GETACL, SETACL: RFC 4314). Messages are added over IMAP as a mail client
would (APPEND), never by writing the server's files."""

from __future__ import annotations

import email.message
import imaplib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port, require_tool

CONFIG = """base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
instance_name = rag-test-{port}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
default_login_user = dovenull
default_internal_user = dovecot
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {base}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={base}/home/%u
}}
mail_location = maildir:~/Maildir
mail_plugins = acl
protocol imap {{
  mail_plugins = $mail_plugins imap_acl
}}
plugin {{
  acl = vfile
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


@dataclass
class MailServer:
    port: int
    users: dict[str, str]
    log: Path  # Dovecot's log: logins are listed there

    def logins(self) -> int:
        return self.log.read_text().count("Login: user=") if self.log.exists() else 0

    def client(self, user: str = "svc") -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        conn.login(user, self.users[user])
        return conn

    def url(self, mailbox: str) -> str:
        return f"imap://127.0.0.1:{self.port}/{mailbox}"


def message(subject: str, body: str, attachment: tuple[str, bytes, str] | None = None, sender: str = "ann@example.org",
            ) -> bytes:
    msg = email.message.EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = subject, sender, "support@example.org"
    msg["Date"] = "Tue, 01 Dec 2026 09:00:00 +0000"
    msg.set_content(body)
    if attachment is not None:
        name, data, mime = attachment
        main, sub = mime.split("/")
        msg.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return msg.as_bytes()


def append(conn: imaplib.IMAP4, mailbox: str, messages: list[bytes]) -> None:
    for data in messages:
        typ, answer = conn.append(mailbox, None, imaplib.Time2Internaldate(time.time()), data)
        assert typ == "OK", answer


@contextmanager
def dovecot(users: dict[str, str]) -> Iterator[MailServer]:
    """Dovecot serving `users` (name: password) until the block ends, from a folder of its own under /tmp
    (pytest's are 0700 to root: the mail user could not reach them)."""
    binary = require_tool("dovecot", "dovecot-imapd")
    base = Path(tempfile.mkdtemp(prefix="rag-dovecot-"))
    (base / "home").mkdir()
    uid, gid = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    port = free_port()
    (base / "passwd").write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in users.items()))
    (base / "dovecot.conf").write_text(CONFIG.format(base=base, port=port, uid=uid, gid=gid))
    # Dovecot's auth process runs as its own user: readable whatever umask the run has (and mkdtemp's folder is
    # 0700 in any case)
    for path, mode in ((base, 0o755), (base / "home", 0o755), (base / "passwd", 0o644), (base / "dovecot.conf", 0o644)):
        os.chmod(path, mode)
    if os.geteuid() == 0:
        try:
            os.chown(base / "home", uid, gid)
        except OSError as exc:  # a user namespace that maps root only
            pytest.skip(f"Dovecot's mail user cannot own its folder here ({exc})")
    # the daemon keeps its inherited descriptors: no pipes to wait on
    subprocess.run([binary, "-c", str(base / "dovecot.conf")], check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                imaplib.IMAP4("127.0.0.1", port, timeout=2).logout()
                break
            except OSError:
                if time.monotonic() > deadline:
                    log = (base / "dovecot.log").read_text() if (base / "dovecot.log").exists() else ""
                    pytest.fail(f"Dovecot did not start: {log[-2000:]}")
                time.sleep(0.1)
        yield MailServer(port, users, base / "dovecot.log")
    finally:
        subprocess.run([binary, "-c", str(base / "dovecot.conf"), "stop"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        shutil.rmtree(base, ignore_errors=True)
