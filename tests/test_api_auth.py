"""Who an API call acts as (fast tier: the token store and the rules, no server; tests/test_api.py drives a
real one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.types import ADMIN, UNIX_OTHER, Principal
from ui.api.auth import ApiError, RateLimiter, authenticate
from ui.appdb import AppDB
from ui.auth import User, StoredUser


@pytest.fixture()
def db(app_db_at: tuple[Path | str, Path | None]) -> AppDB:
    """The token store on each backend (SQLite, PostgreSQL)."""
    now = [1_800_000_000.0]
    store = AppDB(app_db_at[0], password_file=app_db_at[1], clock=lambda: now[0])
    store.now = now  # type: ignore[attr-defined]  # the test moves time on
    return store


def users(*entries: User) -> dict[str, StoredUser]:
    return {u.username: StoredUser(u, b"$2b$unused") for u in entries}


def test_tokens_are_stored_as_hashes_and_checked_for_state(db: AppDB) -> None:
    token = db.create_token("portal", "sam", "read", expires_days=1)
    assert token.startswith("rag_") and len(token) > 40
    with db._db.tx() as c:  # only its hash is kept, on either database
        assert token not in repr(c.execute("SELECT * FROM api_tokens").fetchall())
    if db.kind == "sqlite":
        assert token.encode() not in db._db.path.read_bytes()  # type: ignore[attr-defined]
    people = users(User("sam", "Sam", ("user",), ("sales",)))
    caller = authenticate(f"Bearer {token}", db, people, False, db.now[0])  # type: ignore[attr-defined]
    # a user without a system account is POSIX's "other" for documents read with RAG_ACL_SOURCE=filesystem
    assert caller.principal == Principal.member_of(["sales", UNIX_OTHER, "login:sam"]) and caller.scope == "read"
    with pytest.raises(ApiError, match="expired"):
        authenticate(f"Bearer {token}", db, people, False, db.now[0] + 2 * 86400)  # type: ignore[attr-defined]
    db.revoke_token("portal")
    with pytest.raises(ApiError, match="revoked"):
        authenticate(f"Bearer {token}", db, people, False, db.now[0])  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="exists"):
        db.create_token("portal", "sam", "read")
    with pytest.raises(ValueError, match="scope"):
        db.create_token("other", "sam", "root")


def test_the_users_file_decides_groups_and_roles_at_every_request(db: AppDB) -> None:
    token = db.create_token("ops", "ada", "admin")
    admin = authenticate(f"Bearer {token}", db, users(User("ada", "Ada", ("user", "admin"))), False, 0)
    assert admin.scope == "admin" and admin.principal == ADMIN and admin.groups is None
    demoted = authenticate(f"Bearer {token}", db, users(User("ada", "Ada", ("user",), ("hr",))), False, 0)
    assert demoted.scope == "read" and demoted.groups == sorted({"hr", "everyone", UNIX_OTHER, "login:ada"})
    with pytest.raises(ApiError, match="no longer exists"):
        authenticate(f"Bearer {token}", db, users(User("bob", "Bob")), False, 0)


def test_without_a_users_file_the_token_carries_the_groups(db: AppDB) -> None:
    token = db.create_token("sso-bot", "sam@example.org", "read", ("sales",))
    caller = authenticate(f"Bearer {token}", db, None, False, 0)
    assert caller.user.username == "sam@example.org"
    assert caller.groups == ["everyone", "login:sam@example.org", "sales", UNIX_OTHER]


def test_no_token_is_refused_unless_single_user(db: AppDB) -> None:
    for header in ("", "Basic abc", "Bearer ", "Bearer rag_unknown", "Bearer not-even-ours"):
        with pytest.raises(ApiError) as refused:
            authenticate(header, db, users(), False, 0)
        assert refused.value.status == 401
    local = authenticate("Bearer anything", db, None, True, 0)  # loopback-only single-user mode
    assert local.scope == "admin" and local.principal == ADMIN


def test_the_rate_limit_is_a_bucket_per_token() -> None:
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])  # one a second, bursts of 6
    for _ in range(6):
        limiter.take("a")
    with pytest.raises(ApiError) as refused:
        limiter.take("a")
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "1"
    limiter.take("b")  # another token is not slowed
    now[0] += 1.0
    limiter.take("a")


def test_the_users_file_is_read_again_whenever_it_changes(tmp_path: Path) -> None:
    from rag.settings import ConfigError
    from ui.auth import UsersFile, add_user

    path = tmp_path / "users.yaml"
    add_user(path, "ada", "ada password", "Ada", ["user", "admin"])
    users = UsersFile(path)
    first = users.current()
    assert users.current() is first  # unchanged: one stat, no parse
    text = path.read_text()
    with open(path, "w", encoding="utf-8") as f:  # in place, same inode, same size, same second
        f.write(text.replace("- admin", "- user "))
    assert not users.current()["ada"].user.is_admin
    path.write_text("credentials: {usernames: {ada: {password: plain}}}\n")
    with pytest.raises(ConfigError, match="not a bcrypt hash"):
        users.current()
    with pytest.raises(ConfigError, match="not a bcrypt hash"):  # never the last good copy
        users.current()
    path.unlink()
    with pytest.raises(ConfigError, match="cannot be read"):
        users.current()
    add_user(path, "bob", "bob password")
    assert set(users.current()) == {"bob"}


def test_links_and_images_from_documents_are_inert_in_api_answers() -> None:
    from ui.api.links import StreamNeutraliser, neutralise

    text = ("See ![logo](http://evil.example/p.png?q=secret) and [the wiki](https://evil.example/x), or "
            "https://evil.example/y. Ours: [handbook](https://intranet.example.org/h) <img src=x onerror=y>")
    inert = neutralise(text, ["intranet.example.org"])
    assert inert == ("See [image: logo] and the wiki (`https://evil.example/x`), or `https://evil.example/y`. "
                     "Ours: [handbook](https://intranet.example.org/h) \\<img src=x onerror=y>")
    stream = StreamNeutraliser(["intranet.example.org"])  # however the model's pieces split a link
    pieces = [text[i:i + 3] for i in range(0, len(text), 3)]
    assert "".join(stream.feed(p) for p in pieces) + stream.flush() == inert
