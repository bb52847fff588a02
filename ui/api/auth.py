"""Who is calling the API: a bearer token (acting as its user, with that user's groups), or, with no
users configured at all, the one person at this machine (the API then listens on loopback only)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rag.types import ADMIN, Accounts, Principal
from ui.appdb import AppDB
from ui.auth import LOCAL_ADMIN, StoredUser, User


class ApiError(Exception):
    """An error the API answers with: its HTTP status and one line saying what to do."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.headers = headers or {}


@dataclass(frozen=True)
class Caller:
    """The user a request acts as, what the token allows, and the key its rate limit is counted under."""

    user: User
    scope: str  # read | admin | ingest (push documents, never read)
    key: str
    accounts: Accounts = Accounts()  # sign-in name -> system account (RAG_ACCOUNT_MAP, RAG_GROUPS_FROM_SYSTEM)
    sources: tuple[str, ...] = ()  # an ingest token's push sources (empty: any)

    @property
    def principal(self) -> Principal:
        """What the caller may read: everything for admins, else their groups' documents (as on the page)."""
        return ADMIN if self.user.is_admin else Principal.signed_in(self.user.username, self.user.groups,
                                                                    self.accounts)

    @property
    def groups(self) -> list[str] | None:
        """The groups a document must be readable by to be shown (None: an admin, who reads everything)."""
        return self.principal.document_groups


def authenticate(header: str, db: AppDB, users: dict[str, StoredUser] | None, single_user: bool,
                 now: float) -> Caller:
    """The caller for an Authorization header, or ApiError 401 saying why not. In single-user mode (no
    users configured; loopback only) every caller is the local admin, whatever it sends (OpenAI's
    clients always send some key)."""
    if single_user:
        return Caller(LOCAL_ADMIN, "admin", "local")
    if not header:
        raise ApiError(401, "an API token is required: send 'Authorization: Bearer <token>' (an admin creates "
                            "one with `rag token create`)", "authentication_error")
    scheme, _, secret = header.partition(" ")
    token = db.token_for(secret.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        raise ApiError(401, "unknown API token: check it, or ask an admin for a new one", "authentication_error")
    state = token.state(now)
    if state != "active":
        raise ApiError(401, f"this API token is {state}: ask an admin for a new one", "authentication_error")
    if users is not None:  # the users file says who the user is now: removed users and changed groups apply
        stored = users.get(token.username)
        if stored is None:
            raise ApiError(401, f"this API token's user {token.username!r} no longer exists", "authentication_error")
        user = stored.user
    else:
        user = User(token.username, token.username, ("user", "admin") if token.scope == "admin" else ("user",),
                    token.groups)
    if token.scope == "ingest":  # pushes only, whatever the user's role: it reads nothing
        return Caller(user, "ingest", f"token:{token.id}", sources=token.sources)
    scope = token.scope if user.is_admin else "read"  # a user who lost the admin role loses the admin scope
    return Caller(user, scope, f"token:{token.id}")


class RateLimiter:
    """A token bucket per caller: `per_minute` requests a minute, bursts of a tenth of that."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic, burst: float | None = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst if burst is not None else max(1.0, per_minute / 10)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, cost: int = 1, what: str = "requests") -> None:
        """Count `cost` (requests, or questions of a batch) for `key`; ApiError 429 with Retry-After when its
        bucket holds less."""
        now = self.clock()
        with self._lock:
            level, last = self._buckets.get(key, (self.burst, now))
            level = min(self.burst, level + (now - last) * self.rate)
            if level < cost:
                wait = (cost - level) / self.rate
                self._buckets[key] = (level, now)
                raise ApiError(429, f"too many {what}: at most {round(self.rate * 60)} a minute per token; "
                                    f"retry in {wait:.0f} s", "rate_limit_error",
                               {"Retry-After": str(max(1, math.ceil(wait)))})
            self._buckets[key] = (level - cost, now)
