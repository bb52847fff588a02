"""Readers from file-system permissions (`RAG_ACL_SOURCE=filesystem`, ingest/fs_acl.py), with real Unix
accounts and groups (useradd, groupadd), real mode bits and real POSIX ACLs (setfacl, Debian's `acl`).

Attackers: a staff member who may not read a file on the share (a group-only file, a named-user ACL, a
folder they cannot enter, a file whose owner took their own read bit away) and asks for it anyway; one who
makes a hard link or a symbolic link to a protected file in a folder they can enter. A chmod, chgrp or
setfacl changes who sees a document at the next run, without re-embedding.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.fs_acl import Account, Permissions, parse_acl_xattr, synthetic_permissions
from ingest.job import run_ingest
from rag.index import IndexReader
from rag.search import Searcher
from rag.settings import load_settings
from rag.types import UNIX_OTHER, Accounts, Principal

PREFIX = "ragt"  # the test accounts' prefix: removed again after the tests
NAMES = {"alice": f"{PREFIX}alice", "bob": f"{PREFIX}bob", "carol": f"{PREFIX}carol"}
HR = f"{PREFIX}hr"


def tools_missing() -> str:
    if os.geteuid() != 0:
        return "needs root to create accounts and change owners"
    for tool in ("useradd", "groupadd", "userdel", "groupdel", "setfacl"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install passwd acl)"
    return ""


if tools_missing() and not os.environ.get("RAG_CI"):
    pytestmark = pytest.mark.skip(reason=tools_missing())


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@dataclass
class Share:
    docs: Path
    files: dict[str, Path]


@pytest.fixture(scope="module")
def accounts() -> Iterator[dict[str, str]]:
    assert not tools_missing(), tools_missing()
    for name in (*NAMES.values(), HR):  # left over by a killed run
        subprocess.run(["userdel", name], capture_output=True)
    subprocess.run(["groupdel", HR], capture_output=True)
    run("groupadd", HR)
    run("useradd", "--no-create-home", "--groups", HR, NAMES["alice"])
    run("useradd", "--no-create-home", NAMES["bob"])
    run("useradd", "--no-create-home", NAMES["carol"])
    try:
        yield NAMES
    finally:
        for name in NAMES.values():
            subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", HR], capture_output=True)


@pytest.fixture()
def share(accounts: dict[str, str]) -> Iterator[Share]:
    # under /var/tmp: pytest's own temporary folders cannot be entered by other accounts (0700)
    base = Path(tempfile.mkdtemp(prefix="rag-fs-acl-", dir="/var/tmp"))
    base.chmod(0o755)
    docs = base / "docs"
    files = {
        "public": docs / "public.txt",
        "hr": docs / "hr" / "salary.txt",
        "named": docs / "acl" / "named.txt",
        "closed": docs / "closed" / "inner.txt",
        "owner": docs / "owner-denied.txt",
    }
    texts = {"public": "The canteen opens at noon.", "hr": "The salary band rises by seven percent.",
             "named": "Bob's review is in May.", "closed": "The closed folder holds the merger plan.",
             "owner": "Carol's draft of the budget."}
    for key, path in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o755)
        path.write_text(f"{texts[key]} Marker {key}word.")
        path.chmod(0o644)
    docs.chmod(0o755)
    os.chown(files["hr"], 0, _gid(HR))
    files["hr"].chmod(0o640)  # group hr only
    files["named"].chmod(0o600)
    run("setfacl", "-m", f"u:{accounts['bob']}:r", str(files["named"]))  # and bob, by a named-user entry
    (docs / "closed").chmod(0o700)  # nobody but root may enter: its file is admins-only whatever its bits
    os.chown(files["owner"], _uid(accounts["carol"]), 0)
    files["owner"].chmod(0o044)  # its owner took her own read bit away; group and others may read
    # a hard link to the HR file in a folder everyone may enter: the inode's bits still say hr only
    (docs / "pub").mkdir(mode=0o755)
    os.link(files["hr"], docs / "pub" / "link.txt")
    files["hardlink"] = docs / "pub" / "link.txt"
    (docs / "pub" / "symlink.txt").symlink_to(files["hr"])  # never followed
    try:
        yield Share(docs, files)
    finally:
        shutil.rmtree(base)


def _uid(name: str) -> int:
    import pwd

    return pwd.getpwnam(name).pw_uid


def _gid(name: str) -> int:
    import grp

    return grp.getgrnam(name).gr_gid


def readable(index: Path, embedder, principal: Principal) -> set[str]:  # type: ignore[no-untyped-def]
    settings = load_settings(index_dir=index)
    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
    hits = searcher.search("marker", 50, "keyword", principal).hits
    return {Path(h.path).name for h in hits}


def test_readers_follow_the_files_permissions(share: Share, accounts: dict[str, str], make_settings,  # type: ignore[no-untyped-def]
                                              embedder) -> None:
    settings = make_settings(acl_source="filesystem")
    summary = run_ingest(settings, [share.docs], embedder=embedder, progress=False)
    assert not summary.files_failed and summary.files_indexed == 6  # the symbolic link is not followed
    assert summary.files_admins_only == 1  # the file in the folder nobody may enter
    index = settings.index_dir
    alice = Principal.signed_in(accounts["alice"], [])
    bob = Principal.signed_in(accounts["bob"], [])
    carol = Principal.signed_in(accounts["carol"], [])
    stranger = Principal.signed_in("someone-without-an-account", [])
    assert UNIX_OTHER in stranger.groups and UNIX_OTHER not in alice.groups
    assert readable(index, embedder, alice) == {"public.txt", "salary.txt", "link.txt", "owner-denied.txt"}
    assert readable(index, embedder, bob) == {"public.txt", "named.txt", "owner-denied.txt"}
    assert readable(index, embedder, carol) == {"public.txt"}  # her own file refused her: first match
    assert readable(index, embedder, stranger) == {"public.txt", "owner-denied.txt"}
    assert "inner.txt" in readable(index, embedder, Principal(admin=True))
    # a group of the users file does not open a file the file system closes
    assert readable(index, embedder, Principal.signed_in(accounts["bob"], [HR])) == readable(index, embedder, bob)

    # chmod, chgrp and setfacl change the readers at the next run, without re-embedding
    share.files["hr"].chmod(0o644)
    run("setfacl", "-x", f"u:{accounts['bob']}", str(share.files["named"]))
    (share.docs / "closed").chmod(0o711)
    again = run_ingest(settings, [share.docs], embedder=embedder, progress=False)
    assert again.files_indexed == 0 and again.chunks_embedded == 0
    assert again.permissions_changed == 4, again  # salary.txt and its hard link, named.txt, inner.txt
    assert readable(index, embedder, bob) == {"public.txt", "salary.txt", "link.txt", "owner-denied.txt",
                                              "inner.txt"}


def test_a_sign_in_name_reads_as_the_account_the_map_names(share: Share, accounts: dict[str, str],  # type: ignore[no-untyped-def]
                                                            make_settings, embedder, model_cache: Path) -> None:
    """RAG_ACCOUNT_MAP: an OIDC or directory sign-in name reads as the account it names; a name not listed
    is the account of the same name, never a domain stripped (a guest is not the local account)."""
    import json

    from tests.conftest import rag_cli

    settings = make_settings(acl_source="filesystem")
    run_ingest(settings, [share.docs], embedder=embedder, progress=False)
    mapping = Accounts((("ada@corp.example", accounts["alice"]),))
    ada = Principal.signed_in("ada@corp.example", [], mapping)
    guest = Principal.signed_in(f"{accounts['alice']}@partner.example", [], mapping)
    assert readable(settings.index_dir, embedder, ada) == {"public.txt", "salary.txt", "link.txt", "owner-denied.txt"}
    assert readable(settings.index_dir, embedder, guest) == {"public.txt", "owner-denied.txt"}  # POSIX's other
    # the command line reads the same setting
    env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache),
           "RAG_ACCOUNT_MAP": json.dumps({"ada@corp.example": accounts["alice"]})}
    found = [json.loads(line) for line in rag_cli("search", "salary band", "--index", str(settings.index_dir),
                                                  "--mode", "keyword", "--as-user", "ada@corp.example", "--json",
                                                  env=env).splitlines()]
    assert any(h["path"].endswith("salary.txt") for h in found[0]["hits"])


def test_groups_from_the_system_database_open_a_rag_acl(share: Share, accounts: dict[str, str], make_settings,  # type: ignore[no-untyped-def]
                                                       embedder, model_cache: Path) -> None:
    """RAG_GROUPS_FROM_SYSTEM under RAG_ACL_SOURCE=files: a .rag-acl naming the file server's group opens to
    the accounts NSS puts in it (through the account map too), not to others; off, the users file decides."""
    import json

    from tests.conftest import rag_cli

    (share.docs / "hr" / ".rag-acl").write_text(f"{HR}\n")
    settings = make_settings(acl_source="files")
    run_ingest(settings, [share.docs], embedder=embedder, progress=False)
    system = Accounts((("ada@corp.example", accounts["alice"]),), system_groups=True)
    assert HR in Principal.signed_in("ada@corp.example", [], system).groups
    assert "salary.txt" in readable(settings.index_dir, embedder, Principal.signed_in("ada@corp.example", [], system))
    assert "salary.txt" not in readable(settings.index_dir, embedder, Principal.signed_in(accounts["bob"], [], system))
    assert "salary.txt" not in readable(settings.index_dir, embedder, Principal.signed_in(accounts["alice"], []))
    # a sign-in name that is no account gains no group, whatever its name looks like
    assert HR not in Principal.signed_in(f"{accounts['alice']}@partner.example", [], system).groups

    def search_as(user: str, **extra: str) -> set[str]:
        env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache), **extra}
        out = rag_cli("search", "salary band", "--index", str(settings.index_dir), "--mode", "keyword",
                      "--as-user", user, "--json", env=env)
        return {Path(h["path"]).name for h in json.loads(out.splitlines()[0])["hits"]}

    assert "salary.txt" in search_as(accounts["alice"], RAG_GROUPS_FROM_SYSTEM="true")
    assert "salary.txt" not in search_as(accounts["alice"])
    assert "salary.txt" not in search_as(accounts["bob"], RAG_GROUPS_FROM_SYSTEM="true")


@pytest.mark.slow
def test_a_running_api_reads_as_the_mapped_account(share: Share, accounts: dict[str, str], make_settings,  # type: ignore[no-untyped-def]
                                                   embedder, model_cache: Path, tmp_path: Path) -> None:
    """Through a running `rag api`: a token of ada@corp.example reads what the account RAG_ACCOUNT_MAP names
    may read; a guest with the account's name at another domain reads what others may."""
    import json

    import httpx

    from tests.conftest import rag_cli, serve_api
    from ui.auth import add_user

    settings = make_settings(acl_source="filesystem")
    run_ingest(settings, [share.docs], embedder=embedder, progress=False)
    users = tmp_path / "users.yaml"
    guest = f"{accounts['alice']}@partner.example"
    for name in ("ada@corp.example", guest):
        add_user(users, name, "a password", name, ["user"])
    env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache), "RAG_UI_USERS_FILE": str(users),
           "RAG_APP_DB": str(tmp_path / "app.sqlite"), "RAG_ACCOUNT_MAP": json.dumps({"ada@corp.example": accounts["alice"]})}
    tokens = {name: rag_cli("token", "create", f"t{i}", "--user", name, env=env).strip()
              for i, name in enumerate(("ada@corp.example", guest))}
    with serve_api(tmp_path, settings.index_dir, env) as url:
        def found(name: str) -> set[str]:
            response = httpx.post(f"{url}/v1/search", json={"query": "marker", "k": 50, "mode": "keyword"},
                                  headers={"Authorization": f"Bearer {tokens[name]}"}, timeout=60)
            assert response.status_code == 200, response.text
            return {Path(h["path"]).name for h in response.json()["results"][0]["hits"]}

        assert found("ada@corp.example") == {"public.txt", "salary.txt", "link.txt", "owner-denied.txt"}
        assert found(guest) == {"public.txt", "owner-denied.txt"}


def test_both_keeps_the_accounts_in_both(share: Share, accounts: dict[str, str], make_settings, embedder) -> None:  # type: ignore[no-untyped-def]
    """RAG_ACL_SOURCE=both: what the file system lets an account read, and only if NSS puts the account in a
    group the folder's .rag-acl names (`everyone`: all the file system's readers, other included)."""
    (share.docs / ".rag-acl").write_text(f"{HR}\n")
    (share.docs / "acl" / ".rag-acl").write_text("everyone\n")
    settings = make_settings(acl_source="both")
    summary = run_ingest(settings, [share.docs], embedder=embedder, progress=False)
    assert not summary.files_failed and summary.files_indexed == 6
    index = settings.index_dir
    alice = Principal.signed_in(accounts["alice"], [])
    bob = Principal.signed_in(accounts["bob"], [])
    stranger = Principal.signed_in("someone-without-an-account", [])
    assert readable(index, embedder, alice) == {"public.txt", "salary.txt", "link.txt", "owner-denied.txt"}
    assert readable(index, embedder, bob) == {"named.txt"}  # the file system and `everyone`
    assert readable(index, embedder, stranger) == set()  # the .rag-acl names hr, not everyone
    # a group in the users file is not a group of the system's database: it opens nothing here
    assert readable(index, embedder, Principal.signed_in(accounts["bob"], [HR])) == {"named.txt"}


def test_a_mount_whose_permission_bits_are_synthetic_is_refused(tmp_path: Path, make_settings, embedder) -> None:  # type: ignore[no-untyped-def]
    mountinfo = ("22 1 0:21 / / rw,relatime - ext4 /dev/sda1 rw\n"
                 "40 22 0:40 / /srv/share rw,relatime - cifs //files/share rw,vers=3.1.1,file_mode=0755\n"
                 "41 22 0:41 / /srv/acl rw,relatime - cifs //files/acl rw,vers=3.1.1,cifsacl\n"
                 "42 22 0:42 / /mnt/fuse rw - fuse.sshfs host: rw,user_id=0\n"
                 "43 22 0:43 / /mnt/fuse2 rw - fuse.sshfs host: rw,default_permissions\n")
    assert "cifsacl" in synthetic_permissions(Path("/srv/share/hr"), mountinfo)
    assert synthetic_permissions(Path("/srv/acl/hr"), mountinfo) == ""
    assert "default_permissions" in synthetic_permissions(Path("/mnt/fuse/x"), mountinfo)
    assert synthetic_permissions(Path("/mnt/fuse2/x"), mountinfo) == ""
    assert synthetic_permissions(Path("/home/x"), mountinfo) == ""
    # the run refuses before reading anything on such a mount; this machine's own folders are fine
    (tmp_path / "docs").mkdir()
    assert run_ingest(make_settings(acl_source="filesystem"), [tmp_path / "docs"], embedder=embedder,
                      progress=False).files_seen == 0


def test_posix_first_match_rules() -> None:
    alice, bob, other = Account("a", 1001, frozenset({1001, 2000})), Account("b", 1002, frozenset({1002})), \
        Account("", -1, frozenset())
    plain = Permissions(uid=1001, gid=2000, mode=0o044)  # the owner without r: refused despite her group's r
    assert not plain.allows(alice, 4) and plain.allows(bob, 4) and plain.allows(other, 4)
    # an ACL: bob named with r, masked to nothing; the group entry r; the mask ---
    acl = Permissions(1000, 2000, 0o600, ((0x01, 0, 6), (0x02, 1002, 4), (0x04, 0, 4), (0x10, 0, 0), (0x20, 0, 0)))
    assert not acl.allows(bob, 4) and not acl.allows(alice, 4)
    widened = Permissions(1000, 2000, 0o640, ((0x01, 0, 6), (0x02, 1002, 4), (0x04, 0, 4), (0x10, 0, 4),
                                              (0x20, 0, 0)))
    assert widened.allows(bob, 4) and widened.allows(alice, 4) and not widened.allows(other, 4)
    assert parse_acl_xattr(b"\x02\x00\x00\x00" + b"\x01\x00\x06\x00\xff\xff\xff\xff") == ((1, 0xFFFFFFFF, 6),)
    with pytest.raises(ValueError):
        parse_acl_xattr(b"\x01\x00\x00\x00")


@pytest.mark.slow
def test_the_watcher_applies_a_permission_change_within_seconds(share: Share, accounts: dict[str, str],  # type: ignore[no-untyped-def]
                                                                tmp_path: Path, model_cache: Path) -> None:
    import json
    import time

    from rag.search import build_searcher
    from tests.conftest import RAG

    index = tmp_path / "index"
    env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache), "RAG_ACL_SOURCE": "filesystem"}
    watcher = subprocess.Popen([str(RAG), "ingest", str(share.docs), "--watch", "--index", str(index), "--json"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert watcher.stdout is not None and json.loads(watcher.stdout.readline())["files_indexed"] == 6
        searcher = build_searcher(load_settings(index_dir=index, device="cpu", model_cache_dir=model_cache))
        bob = Principal.signed_in(accounts["bob"], [])

        def bob_reads_salary() -> bool:
            return any(h.path == str(share.files["hr"]) for h in searcher.search("marker", 50, "keyword", bob).hits)

        assert not bob_reads_salary()
        changed = time.monotonic()
        share.files["hr"].chmod(0o644)  # an attribute change: inotify's IN_ATTRIB, no new content
        while not bob_reads_salary():
            assert time.monotonic() - changed < 10, "the chmod was not applied within 10 s"
            time.sleep(0.05)
        batch = json.loads(watcher.stdout.readline())
        assert batch["permissions_changed"] >= 1 and batch["chunks_embedded"] == 0
    finally:
        watcher.terminate()
        watcher.wait(30)
