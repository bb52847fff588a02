"""Dataclasses passed between stages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


# What a numbered part of a document is called, by format (the parsers number slides and sheets as pages).
PAGE_UNITS = {".pptx": "slide", ".xlsx": "sheet"}


def page_unit(path: str) -> str:
    """"page", "slide" or "sheet": the word for a chunk's `page` number in this file's format."""
    dot = path.rfind(".")
    return PAGE_UNITS.get(path[dot:].lower(), "page") if dot >= 0 else "page"


@dataclass(frozen=True)
class ChunkInput:
    """A piece of a document ready to embed and store, under its heading path ("Backups › Retention")."""

    text: str
    position: int
    page: int | None = None
    section: str = ""

    @property
    def embed_input(self) -> str:
        """What is embedded (and the key its vector is reused under): the heading path, then the text."""
        return embed_input(self.text, self.section)


def embed_input(text: str, section: str) -> str:
    """A passage as the embedding model reads it: its heading path on a first line, when it has one (a
    chunk of "OPTIONS › --amend" is found by "amend the last commit" even where its text says "the tip
    of the current branch")."""
    return f"{section}\n{text}" if section else text


@dataclass(frozen=True)
class OcrPageInput:
    """A page (or image frame) whose text OCR read: which engine, how sure it was, and where each word is
    (x0, y0, x1, y1 as fractions of the page, and the word), so a viewer can highlight a cited passage."""

    page: int
    engine: str
    confidence: float
    seconds: float = 0.0
    words: tuple[tuple[float, float, float, float, str], ...] = ()

    @classmethod
    def from_json(cls, data: dict) -> "OcrPageInput":
        return cls(int(data["page"]), str(data["engine"]), float(data["confidence"]), float(data.get("seconds", 0)),
                   tuple((float(w[0]), float(w[1]), float(w[2]), float(w[3]), str(w[4])) for w in data["words"]))


@dataclass(frozen=True)
class DocumentInput:
    """A parsed document with its chunks, as the ingest job hands it to the index writer."""

    path_key: bytes  # the raw file-system path: identity, works for names that are not UTF-8
    path: str  # printable form of the path
    title: str
    size: int
    mtime_ns: int
    content_hash: str
    chunks: tuple[ChunkInput, ...]
    groups: tuple[str, ...] = ()  # who may read it; empty: unknown, admins only
    ocr_pages: tuple[OcrPageInput, ...] = ()
    parser_version: int = 0  # which release's parsers read it (an older one's documents are read again)
    source_state: str = ""  # what its source keeps to tell a change next time (a web page's ETag and links)


# between the headings of a heading path ("Backups › Retention"): written by the chunker, read by quotes
SECTION_SEPARATOR = " › "


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk."""

    chunk_id: int
    path: str
    title: str
    page: int | None
    position: int
    score: float
    text: str
    mtime: float = 0.0
    dense_score: float | None = None  # cosine similarity to the query, when the dense search saw it
    merged_ids: tuple[int, ...] = ()  # the following chunks of the document joined into this passage
    duplicate_ids: tuple[int, ...] = ()  # near-identical chunks left out in favour of this one
    doc_id: int = 0
    ocr_confidence: float | None = None  # set when the chunk's page was read by OCR
    section: str = ""  # the heading path the chunk stands under ("Backups › Retention"), "" when none
    # a passage merged from chunks under other headings: (the heading line written into `text` where the next
    # chunk begins, the heading path from there on), in order (rag.passages.merge_neighbours)
    sections: tuple[tuple[str, str], ...] = ()

    @property
    def last_section(self) -> str:
        """The heading path the end of this passage stands under."""
        return self.sections[-1][1] if self.sections else self.section

    def metadata(self) -> dict[str, object]:
        """Where the chunk is and how it ranked: the fields of `rag search --json` (without the text), also
        a LangChain Document's metadata. OCR'd chunks add `ocr` and the engine's `ocr_confidence`."""
        out: dict[str, object] = {"chunk_id": self.chunk_id, "path": self.path, "page": self.page,
                                  "unit": page_unit(self.path), "score": round(self.score, 6), "title": self.title,
                                  "section": self.section}
        if self.ocr_confidence is not None:
            out.update(ocr=True, ocr_confidence=round(self.ocr_confidence, 3))
        return out


@dataclass
class SearchResult:
    """The answer to one search query."""

    query: str
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    version: int = 0  # the index version searched


# The group every signed-in user belongs to: a folder marked "everyone" is open to all staff.
EVERYONE = "everyone"
# Readers from file-system permissions (ingest/fs_acl.py): an account that may read a file, and POSIX's
# "other" (whoever is no account of the system's user database)
USER_READER = "user:"
UNIX_OTHER = "unix-other"
# A reader by sign-in name (the users file's or the identity provider's), for documents pushed with `users`
# (ui/api/routes/push.py): every signed-in user is this reader of their own name.
LOGIN_READER = "login:"


def is_system_account(name: str) -> bool:
    """Whether the system's user database (NSS) knows an account by this name."""
    import pwd

    try:
        pwd.getpwnam(name)
    except (KeyError, ValueError):
        return False
    return True


def system_groups(account: str) -> frozenset[str]:
    """The groups the system's group database (NSS: /etc/group, sssd, winbind) puts `account` in, its
    primary group included; empty for an unknown account."""
    import grp
    import os
    import pwd

    try:
        gids = os.getgrouplist(account, pwd.getpwnam(account).pw_gid)
    except (KeyError, ValueError, OSError):
        return frozenset()
    names = set()
    for gid in gids:
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:  # a gid without a name: nothing a .rag-acl can name
            continue
    return frozenset(names)


@dataclass(frozen=True)
class Accounts:
    """How a sign-in name becomes a system account (RAG_ACCOUNT_MAP), and whether that account's groups in the
    system's database count as the user's groups (RAG_GROUPS_FROM_SYSTEM), so that a .rag-acl naming a file
    server's group and the sign-in agree."""

    names: tuple[tuple[str, str], ...] = ()  # sign-in name -> account; a name not listed is its own account
    system_groups: bool = False

    def account(self, username: str) -> str:
        return dict(self.names).get(username, username)


@dataclass(frozen=True)
class Principal:
    """Who is asking: their groups, or an admin, who may read everything (unknown permissions included)."""

    groups: frozenset[str] = frozenset()
    admin: bool = False

    @property
    def document_groups(self) -> list[str] | None:
        """The groups a document must be readable by for this principal to see it (None: an admin, who reads
        everything), as the stores' readers take them."""
        return None if self.admin else sorted(self.groups)

    @classmethod
    def member_of(cls, groups: "Iterable[str]") -> "Principal":
        """A user in `groups` (and in "everyone")."""
        return cls(frozenset(groups) | {EVERYONE})

    @classmethod
    def signed_in(cls, username: str, groups: "Iterable[str]", accounts: Accounts = Accounts()) -> "Principal":
        """A signed-in user in `groups`, and the reader `login:<username>` of documents pushed for them by name:
        also the reader `user:<account>` of documents whose file-system
        permissions let their system account read them, or, with no such account, POSIX's "other" (the
        account: the one `accounts` names, else the account of the same name); with `accounts.system_groups`
        also in the account's groups of the system's database."""
        account = accounts.account(username)
        login = f"{LOGIN_READER}{username}"
        if not is_system_account(account):
            return cls(frozenset(groups) | {EVERYONE, UNIX_OTHER, login})
        own = {f"{USER_READER}{account}"} | (system_groups(account) if accounts.system_groups else set())
        return cls(frozenset(groups) | {EVERYONE, login} | own)


ADMIN = Principal(admin=True)
