"""Links and images from documents, neutralised in the API's answers.

A document (anyone with write access to a share chooses its text) can carry Markdown links and images; an
answer quotes it, and chat clients that render Markdown would fetch an image at once (a request to any
server, with whatever the URL carries) or show a link the answer never meant. The page never renders them;
the API's clients might, so the answer text they get is plain: an image becomes "[image: its alt text]",
a link becomes "its text (its address)", an address is written as code (`https://...`, which no Markdown
renderer links or fetches), and an HTML tag is escaped. Addresses on the organisation's own hosts
(`RAG_API_LINK_HOSTS`) stay links.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(([^)\n]*)\)")
_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)(?:\s+\"[^\"\n]*\")?\)")
_AUTOLINK = re.compile(r"<((?:https?|ftp)://[^>\s]+)>", re.IGNORECASE)
_URL = re.compile(r"(?<![`\w])((?:https?|ftp)://[^\s<>`\"')\]]+)", re.IGNORECASE)
_TAG = re.compile(r"<(?=[A-Za-z/!?])")


def _allowed(url: str, hosts: Iterable[str]) -> bool:
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return False
    return any(host == h or host.endswith("." + h) for h in (h.lower().lstrip(".") for h in hosts) if h)


def neutralise(text: str, allowed_hosts: Iterable[str] = ()) -> str:
    """`text` with its Markdown images, links, addresses and HTML tags made inert (see the module)."""
    hosts = tuple(allowed_hosts)
    text = _IMAGE.sub(lambda m: f"[image: {m.group(1).strip() or 'no description'}]", text)
    text = _LINK.sub(lambda m: m.group(0) if _allowed(m.group(2), hosts) else f"{m.group(1)} ({m.group(2)})", text)
    text = _AUTOLINK.sub(lambda m: m.group(0) if _allowed(m.group(1), hosts) else m.group(1), text)
    out, last = [], 0
    for match in _URL.finditer(text):
        inside_link = text[max(0, match.start() - 2):match.start()] == "](" and _allowed(match.group(1), hosts)
        if inside_link or _allowed(match.group(1), hosts):
            continue
        url = match.group(1).rstrip(".,;:!?")  # a sentence's full stop is not part of the address
        out.append(text[last:match.start()])
        out.append(f"`{url}`")
        last = match.start() + len(url)
    out.append(text[last:])
    return _TAG.sub(r"\\<", "".join(out))


def _safe_cut(text: str) -> int:
    """The last space of `text` before which no link, image or tag is left unfinished; -1 when none."""
    for i in range(len(text) - 1, -1, -1):
        if text[i] != " ":
            continue
        prefix = text[:i + 1]
        if prefix.count("[") != prefix.count("]") or prefix.rfind("<") > prefix.rfind(">"):
            continue
        opened = prefix.rfind("](")
        if opened >= 0 and prefix.find(")", opened + 2) < 0:
            continue
        return i
    return -1


class StreamNeutraliser:
    """`neutralise` over a stream of text pieces (a link may be split across pieces): `feed` lets text through
    up to its last space outside an unfinished "[...](" or "<..." construct; the rest waits for the next
    piece, or for `flush` at the end."""

    def __init__(self, allowed_hosts: Iterable[str] = ()) -> None:
        self.hosts = tuple(allowed_hosts)
        self.pending = ""

    def feed(self, piece: str) -> str:
        self.pending += piece
        cut = _safe_cut(self.pending)
        if cut <= 0:
            return ""
        ready, self.pending = self.pending[:cut + 1], self.pending[cut + 1:]
        return neutralise(ready, self.hosts)

    def flush(self) -> str:
        ready, self.pending = self.pending, ""
        return neutralise(ready, self.hosts) if ready else ""
