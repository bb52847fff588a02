"""Intranet sites as a source: `rag ingest https://intranet.example/wiki/` crawls the site (ingest/sources.py).

Scope: the start address's scheme, host, port and path prefix, plus the prefixes a site's `also` adds; pages
are found from the start page's links (breadth first, `max_depth` links deep, at most `max_pages` requests)
and from the sitemaps robots.txt names (or /sitemap.xml). robots.txt is honoured (its Disallow rules and its
Crawl-delay) and so are a page's `<meta name="robots">` noindex and nofollow; requests are spaced to
`requests_per_s`.

Incremental: each page is stored with its ETag, Last-Modified and links (`source_state`); the next crawl sends
If-None-Match / If-Modified-Since, so an unchanged page costs a 304 and its links come from the index; a page
fetched whole whose bytes did not change costs a content hash, no parse or embedding. A page that now answers
404 or 410, that robots.txt now forbids, that the site refuses (401, 403) or that no page links to any more
(a crawl that saw the whole site: no page limit hit) is removed; one that failed for a while (5xx, a timeout)
keeps its stored copy.

Safety, for a hostile page or a site turned hostile: requests only to the site's scope (a redirect out of it
is not followed; credentials are only ever sent in scope); never to a link-local or cloud metadata address,
checked on the address actually connected to (a name that resolves there, a redirect, DNS rebinding), while
the site's own host may be on any private address (intranets are); responses bounded in size
(RAG_MAX_FILE_MB) and time; TLS verified, with the site's CA bundle for an internal CA. The fetched bytes are
parsed in the parser sandbox like files (the crawl spools them); this process reads links only, with the
standard library's pure-Python HTML parser, and sitemaps with defusedxml. No environment proxy is used.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import ssl
import time
import urllib.robotparser
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import TYPE_CHECKING
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

import httpcore

from ingest.acl import parse_acl
from ingest.parsers import PARSER_VERSION
from ingest.secrets import Secret, named_secret
from ingest.sources import FetchingSource
from ingest.walk import FoundFile, Skipped
from rag.settings import SUPPORTED_EXTENSIONS
from rag.store import StoredDocument

if TYPE_CHECKING:
    from rag.settings import IngestSettings

log = logging.getLogger(__name__)

USER_AGENT = "rag-ingest"  # the name robots.txt rules address
MAX_REDIRECTS_QUEUED = 10_000
MAX_LINKS_KEPT = 5_000  # links stored per page (for the next crawl's pages answered 304)
MAX_SITEMAPS = 50
MAX_META_BYTES = 10 * 2**20  # robots.txt, sitemaps
# Never connected to, whatever a name resolves to: link-local (cloud metadata at 169.254.169.254, fd00:ec2::254),
# unspecified, multicast and broadcast addresses.
FORBIDDEN_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32", "0.0.0.0/8", "::/128",
    "224.0.0.0/4", "ff00::/8", "255.255.255.255/32",
))
# What a content type is parsed as; other types are parsed by the address's extension when it has a known one.
CONTENT_TYPES = {
    "text/html": ".html", "application/xhtml+xml": ".html", "text/plain": ".txt", "text/markdown": ".md",
    "application/pdf": ".pdf", "text/csv": ".csv",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
}
SITE_KEYS = {"url", "also", "groups", "groups_by_prefix", "max_pages", "max_depth", "requests_per_s", "timeout_s",
             "secret", "ca_bundle", "sitemaps"}


class ForbiddenAddress(httpcore.ConnectError):
    """A connection to an address no crawl may reach (link-local, metadata, multicast)."""


def forbidden_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == n.version and ip in n for n in FORBIDDEN_NETWORKS)


def guarded_connection(host: str, port: int, timeout: float | None) -> socket.socket:
    """A TCP socket to `host`, connected only to an address `forbidden_address` allows (resolved once, each
    answer checked, the socket connected to that address, the peer checked again): for clients other than
    httpcore's (IMAP)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectionError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:
        if forbidden_address(str(sockaddr[0])):
            error = error or ConnectionRefusedError(f"{host} resolves to {sockaddr[0]}, a link-local or metadata "
                                                    "address: refused")
            continue
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        if forbidden_address(sock.getpeername()[0]):
            sock.close()
            raise ConnectionRefusedError(f"{host} connected to a link-local or metadata address: refused")
        return sock
    raise error or ConnectionError(f"cannot connect to {host}")


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's own sockets, connected only to an address checked here: the name is resolved once, each
    address checked, the connection made to that address (so a second, different answer cannot slip in) and
    the connected peer checked again. TLS still verifies the certificate against the name."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: object = None) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from None
        refused: str | None = None
        error: Exception | None = None
        for _, _, _, _, sockaddr in infos:
            address = str(sockaddr[0])
            if forbidden_address(address):
                refused = address
                continue
            try:
                stream = self._inner.connect_tcp(address, port, timeout, local_address, socket_options)  # type: ignore[arg-type]
            except httpcore.ConnectError as exc:
                error = exc
                continue
            peer = stream.get_extra_info("socket").getpeername()[0]
            if forbidden_address(peer):
                stream.close()
                raise ForbiddenAddress(f"{host} connected to {peer}, a link-local or metadata address: refused")
            return stream
        if refused is not None and error is None:
            raise ForbiddenAddress(f"{host} resolves to {refused}, a link-local or metadata address: refused")
        raise error or httpcore.ConnectError(f"cannot connect to {host}")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# -- addresses and scope ----------------------------------------------------------------------------------
def normalize(url: str) -> str | None:
    """The canonical form of an http(s) address (lower-case scheme and host, no default port, no fragment,
    "/" for an empty path), or None for anything else (mailto:, javascript:, a malformed address)."""
    url = urldefrag(url.strip())[0]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != (443 if scheme == "https" else 80):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", parts.query, ""))


@dataclass(frozen=True)
class Site:
    """A site's entry in RAG_SOURCES_FILE (a [[site]] table), or the defaults for an address without one."""

    url: str
    also: tuple[str, ...] = ()  # more prefixes (on this host or others) the crawl may follow links into
    groups: tuple[str, ...] = ()  # who may read its pages (empty: admins only)
    groups_by_prefix: tuple[tuple[str, tuple[str, ...]], ...] = ()  # longest matching prefix wins
    max_pages: int = 10_000
    max_depth: int = 20
    requests_per_s: float = 10.0  # 0: as fast as the site answers
    timeout_s: float = 30.0  # a response, whole
    secret: str = ""  # the entry of RAG_SECRETS_FILE whose credentials every request in scope carries
    ca_bundle: str = ""  # PEM file of the internal CA that signed the site's certificate
    sitemaps: bool = True

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (self.url, *self.also)

    def in_scope(self, url: str) -> bool:
        return any(_under(url, prefix) for prefix in self.prefixes)

    def groups_for(self, url: str) -> tuple[str, ...]:
        best: tuple[int, tuple[str, ...]] = (-1, self.groups)
        for prefix, groups in self.groups_by_prefix:
            if _under(url, prefix) and len(prefix) > best[0]:
                best = (len(prefix), groups)
        return best[1]


def _under(url: str, prefix: str) -> bool:
    """Whether `url` lies under `prefix`: same origin, and a path at or below the prefix's (by whole segments)."""
    if url == prefix:
        return True
    base = prefix if prefix.endswith("/") else prefix + "/"
    return url.startswith(base) or url == prefix.rstrip("/")


def load_sites(ingest: "IngestSettings") -> list[Site]:
    """The sites of RAG_SOURCES_FILE ([] without one); ValueError naming the entry and key that are wrong."""
    from ingest.sources import read_sources_table

    path = ingest.sources_file
    table = read_sources_table(ingest)
    sites = []
    for i, entry in enumerate(table.get("site", [])):
        where = f"sources file {path}, site {i + 1}"
        unknown = set(entry) - SITE_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(SITE_KEYS)})")
        url = normalize(str(entry.get("url", "")))
        if url is None:
            raise ValueError(f"{where}: url must be an http:// or https:// address")
        also = []
        for prefix in entry.get("also", []):
            if normalize(str(prefix)) is None:
                raise ValueError(f"{where}: also holds {prefix!r}, not an http(s) address")
            also.append(normalize(str(prefix)))
        by_prefix = []
        for prefix, groups in dict(entry.get("groups_by_prefix", {})).items():
            full = normalize(urljoin(url, prefix))
            if full is None:
                raise ValueError(f"{where}: groups_by_prefix holds {prefix!r}, not a path or an address")
            by_prefix.append((full, parse_acl(" ".join(groups), where)))
        sites.append(Site(
            url=url, also=tuple(a for a in also if a), groups=parse_acl(" ".join(entry.get("groups", [])), where),
            groups_by_prefix=tuple(by_prefix), max_pages=int(entry.get("max_pages", Site.max_pages)),
            max_depth=int(entry.get("max_depth", Site.max_depth)),
            requests_per_s=float(entry.get("requests_per_s", Site.requests_per_s)),
            timeout_s=float(entry.get("timeout_s", Site.timeout_s)), secret=str(entry.get("secret", "")),
            ca_bundle=str(entry.get("ca_bundle", "")), sitemaps=bool(entry.get("sitemaps", True))))
    return sites


# -- reading pages ------------------------------------------------------------------------------------------
class _Links(HTMLParser):
    """A page's links (a, area, frames) resolved against its address or <base>, and its robots meta tag."""

    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.links: list[str] = []
        self.noindex = self.nofollow = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "base" and a.get("href"):
            self.base = urljoin(self.base, a["href"])
        elif tag in ("a", "area") and a.get("href") and "nofollow" not in a.get("rel", "").lower().split():
            self.links.append(urljoin(self.base, a["href"]))
        elif tag in ("iframe", "frame") and a.get("src"):
            self.links.append(urljoin(self.base, a["src"]))
        elif tag == "meta" and a.get("name", "").lower() in ("robots", USER_AGENT):
            words = {w.strip() for w in a.get("content", "").lower().split(",")}
            self.noindex |= bool(words & {"noindex", "none"})
            self.nofollow |= bool(words & {"nofollow", "none"})


def page_links(body: bytes, url: str, charset: str) -> _Links:
    parser = _Links(url)
    try:
        text = body.decode(charset or "utf-8", "replace")
    except LookupError:
        text = body.decode("utf-8", "replace")
    parser.feed(text)
    parser.close()
    return parser


def _kind(content_type: str, url: str) -> str | None:
    """The extension a response is parsed as, or None when no parser reads it."""
    if content_type in CONTENT_TYPES:
        return CONTENT_TYPES[content_type]
    ext = os.path.splitext(urlsplit(url).path)[1].lower()
    if content_type in ("", "application/octet-stream", "binary/octet-stream") and ext in SUPPORTED_EXTENSIONS:
        return ext
    return None


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    error: str = ""  # why there is no response (a network error, a limit)
    too_large: bool = False


class _Fetcher:
    """Requests to one site: one connection pool, its credentials, its pace and its bounds."""

    def __init__(self, site: Site, secret: Secret | None, max_bytes: int) -> None:
        context = ssl.create_default_context(cafile=site.ca_bundle or None)
        self.pool = httpcore.ConnectionPool(ssl_context=context, network_backend=GuardedBackend(),
                                            max_connections=2, keepalive_expiry=30.0)
        self.site = site
        self.auth = secret.headers() if secret is not None else {}
        self.max_bytes = max_bytes
        self.interval = 1.0 / site.requests_per_s if site.requests_per_s > 0 else 0.0
        self._next = 0.0
        self.requests = 0

    def get(self, url: str, conditional: Mapping[str, str] | None = None, limit: int | None = None) -> Response:
        wait = self._next - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._next = time.monotonic() + self.interval
        self.requests += 1
        limit = self.max_bytes if limit is None else limit
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **(conditional or {})}
        if self.site.in_scope(url) or _same_origin(url, self.site.url):
            headers.update(self.auth)  # credentials go to the site's own scope and robots/sitemaps, nowhere else
        t = self.site.timeout_s
        started = time.monotonic()
        try:
            with self.pool.stream("GET", url, headers=list(headers.items()),
                                  extensions={"timeout": {"connect": t, "read": t, "write": t, "pool": t}}) as response:
                got = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
                length = got.get("content-length", "")
                too_large = f"larger than the {limit / 2**20:g} MiB limit (RAG_MAX_FILE_MB)"
                if length.isdigit() and int(length) > limit:
                    return Response(response.status, got, error=too_large, too_large=True)
                parts, size = [], 0
                for part in response.iter_stream():
                    parts.append(part)
                    size += len(part)
                    if size > limit:
                        return Response(response.status, got, error=too_large, too_large=True)
                    if time.monotonic() - started > t:
                        return Response(response.status, got, error=f"took longer than {t:g} s")
                return Response(response.status, got, b"".join(parts))
        except ForbiddenAddress as exc:
            return Response(0, {}, error=str(exc))
        except httpcore.TimeoutException:
            return Response(0, {}, error=f"no answer within {t:g} s")
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
            return Response(0, {}, error=f"{type(exc).__name__}: {exc or 'connection failed'}")

    def close(self) -> None:
        self.pool.close()


def _same_origin(url: str, other: str) -> bool:
    a, b = urlsplit(url), urlsplit(other)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


# -- the source -----------------------------------------------------------------------------------------------
@dataclass
class CrawlStats:
    """What a crawl did, beyond the ingest summary: requests by answer, and its time."""

    requests: int = 0
    pages_fetched: int = 0  # 200s
    pages_unchanged: int = 0  # 304s
    redirects: int = 0
    seconds: float = 0.0
    by_status: dict[int, int] = field(default_factory=dict)


class WebSource(FetchingSource):
    """An intranet site (see the module's docstring)."""

    kind = "web"

    def __init__(self, site: Site, max_bytes: int, secret: Secret | None = None) -> None:
        self.site = site
        self.name = site.url
        self.max_bytes = max_bytes
        self.secret = secret
        self.complete = False  # whether the last scan saw the whole site (what it did not see is gone)
        self.gone: set[str] = set()  # stored pages the site now says are gone (404, 410, 401, 403, robots)
        self.kept: set[str] = set()  # stored pages not reached for a passing reason (5xx, timeout): kept
        self.stats = CrawlStats()

    @classmethod
    def configured(cls, url: str, sites: list[Site], ingest: "IngestSettings") -> "WebSource":
        """The source for `rag ingest URL`: the sources file's entry for this address, or the defaults."""
        start = normalize(url)
        if start is None:
            raise ValueError(f"{url} is not an http:// or https:// address")
        site = next((s for s in sites if s.url == start), Site(start))
        secret = named_secret(ingest.secrets_file, site.secret, f"site {start}") if site.secret else None
        return cls(site, int(ingest.max_file_mb * 2**20), secret)

    # -- the Source protocol -----------------------------------------------------------------------------
    def owns(self, key: str) -> bool:
        return self.site.in_scope(key) and (key in self.gone or (self.complete and key not in self.kept))

    def groups_for(self, key: str) -> tuple[str, ...]:
        return self.counted(self.site.groups_for(key))

    def scan(self, known: Mapping[bytes, StoredDocument]) -> Iterator[FoundFile | Skipped]:
        started = time.monotonic()
        self.new_spool("rag-crawl-")
        self.complete, self.gone, self.kept, self.stats = False, set(), set(), CrawlStats()
        stored = {k: doc for key, doc in known.items() if self.site.in_scope(k := os.fsdecode(key))}
        fetcher = _Fetcher(self.site, self.secret, self.max_bytes)
        try:
            yield from self._crawl(fetcher, stored)
        finally:
            fetcher.close()
            self.stats.requests = fetcher.requests
            self.stats.seconds = time.monotonic() - started
            log.info("crawl of %s: %d requests (%d pages fetched, %d unchanged, %d redirects) in %.1f s",
                     self.site.url, self.stats.requests, self.stats.pages_fetched, self.stats.pages_unchanged,
                     self.stats.redirects, self.stats.seconds)

    # -- the crawl ------------------------------------------------------------------------------------------
    def _crawl(self, fetcher: _Fetcher, stored: dict[str, StoredDocument]) -> Iterator[FoundFile | Skipped]:
        robots, unreadable = self._robots(fetcher)
        if unreadable:
            yield Skipped(self.site.url, f"robots.txt could not be read ({unreadable}): nothing crawled or removed "
                                         "this run", True)
            return
        if robots is not None:
            delay = robots.crawl_delay(USER_AGENT)
            if delay:
                fetcher.interval = max(fetcher.interval, float(delay))
        queue: deque[tuple[str, int]] = deque([(self.site.url, 0)])
        queued = {self.site.url}
        for url in self._sitemap_urls(fetcher, robots):
            if url not in queued:
                queued.add(url)
                queue.append((url, 1))
        requests = 0
        limited = False
        while queue:
            url, depth = queue.popleft()
            if robots is not None and not robots.can_fetch(USER_AGENT, url):
                if url in stored:
                    self.gone.add(url)
                yield Skipped(url, "robots.txt does not let the crawler read it", False)
                continue
            if requests >= self.site.max_pages:
                limited = True
                break
            requests += 1
            doc = stored.get(url)
            # a page an earlier release's parsers read is fetched whole (no 304): the plan reads it again
            fresh = doc is not None and doc.parser_version >= PARSER_VERSION
            state = json.loads(doc.source_state) if fresh and doc.source_state else {}
            conditional = {}
            if state.get("etag"):
                conditional["If-None-Match"] = state["etag"]
            if state.get("last_modified"):
                conditional["If-Modified-Since"] = state["last_modified"]
            response = fetcher.get(url, conditional)
            self.stats.by_status[response.status] = self.stats.by_status.get(response.status, 0) + 1
            links: list[str] = []
            if response.error:
                if doc is not None:  # too large now: gone, as a file over the limit; a network error: kept
                    (self.gone if response.too_large else self.kept).add(url)
                yield Skipped(url, response.error, True)
                continue
            status = response.status
            if status in (301, 302, 303, 307, 308):
                self.stats.redirects += 1
                target = normalize(urljoin(url, response.headers.get("location", "")))
                if target is None or not self.site.in_scope(target):
                    if doc is not None:
                        self.gone.add(url)
                    where = target or "an address that is not http(s)"
                    yield Skipped(url, f"redirects out of the site's scope (to {where}); not followed", False)
                elif target not in queued and len(queued) < self.site.max_pages + MAX_REDIRECTS_QUEUED:
                    queued.add(target)
                    queue.appendleft((target, depth))  # the page it names, as if linked from here
                continue
            if status == 304 and doc is not None:
                self.stats.pages_unchanged += 1
                links = list(state.get("links", []))
                yield FoundFile(url, doc.size, doc.mtime_ns, source_state=doc.source_state)
            elif status == 200:
                self.stats.pages_fetched += 1
                item, links = self._page(url, response, doc)
                if item is not None:
                    yield item
            elif status in (404, 410):
                if doc is not None:
                    self.gone.add(url)
                yield Skipped(url, f"HTTP {status}: no such page (a broken link)", False)
                continue
            elif status in (401, 403):
                if doc is not None:
                    self.gone.add(url)  # the crawler may no longer read it: neither may anyone through us
                hint = "" if self.secret else " (credentials: a `secret` for this site in RAG_SOURCES_FILE)"
                yield Skipped(url, f"HTTP {status}: the site refused the crawler{hint}", True)
                continue
            else:
                if doc is not None:
                    self.kept.add(url)
                yield Skipped(url, f"HTTP {status}: not read (kept as indexed, tried again next run)", True)
                continue
            if depth < self.site.max_depth:
                for link in links:
                    target = normalize(link)
                    if target is not None and target not in queued and self.site.in_scope(target):
                        queued.add(target)
                        queue.append((target, depth + 1))
        if limited:
            yield Skipped(self.site.url, f"stopped at max_pages={self.site.max_pages} requests: pages not reached "
                                         "are kept as indexed (raise max_pages in RAG_SOURCES_FILE)", True)
        self.complete = not limited

    def _page(self, url: str, response: Response, doc: StoredDocument | None) -> tuple[FoundFile | Skipped | None,
                                                                                     list[str]]:
        """A 200's item (the bytes spooled, its validators and links kept) and its links."""
        content_type, _, params = response.headers.get("content-type", "").partition(";")
        content_type = content_type.strip().lower()
        charset = next((p.split("=", 1)[1].strip().strip('"') for p in params.split(";")
                        if p.strip().lower().startswith("charset=")), "")
        kind = _kind(content_type, url)
        links: list[str] = []
        noindex = False
        if kind == ".html":
            parsed = page_links(response.body, url, charset)
            noindex = parsed.noindex
            links = [] if parsed.nofollow else parsed.links
        if kind is None or noindex:
            if doc is not None:
                self.gone.add(url)
            why = "the page asks not to be indexed (robots meta noindex)" if noindex else \
                f"content type {content_type or '(none)'} is not one the parsers read"
            return Skipped(url, why, False), links
        kept_links = sorted({n for link in links if (n := normalize(link)) and self.site.in_scope(n)})[:MAX_LINKS_KEPT]
        state = {k: v for k, v in (("etag", response.headers.get("etag", "")),
                                   ("last_modified", response.headers.get("last-modified", ""))) if v}
        state["links"] = kept_links
        item = self.spool.add(url, response.body, kind, _modified_ns(state.get("last_modified", "")),
                              json.dumps(state, sort_keys=True))
        return item, links

    def _robots(self, fetcher: _Fetcher) -> tuple[urllib.robotparser.RobotFileParser | None, str]:
        """The site's robots.txt rules (None: none, everything allowed), or why it could not be read: then, as
        RFC 9309 says, nothing may be crawled, and the run removes nothing."""
        parts = urlsplit(self.site.url)
        robots_url = urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))
        response = fetcher.get(robots_url, limit=MAX_META_BYTES)
        if not response.error and 400 <= response.status < 500:
            return None, ""  # no rules (RFC 9309: a 4xx robots.txt allows everything)
        if response.error or response.status != 200:
            return None, response.error or f"HTTP {response.status}"
        rules = urllib.robotparser.RobotFileParser(robots_url)
        rules.parse(response.body.decode("utf-8", "replace").splitlines())
        return rules, ""

    def _sitemap_urls(self, fetcher: _Fetcher, robots: urllib.robotparser.RobotFileParser | None) -> list[str]:
        """The in-scope page addresses of the site's sitemaps (those robots.txt names, else /sitemap.xml),
        following sitemap indexes, at most MAX_SITEMAPS files."""
        if not self.site.sitemaps:
            return []
        from defusedxml import ElementTree

        parts = urlsplit(self.site.url)
        todo = deque((robots.site_maps() if robots is not None else None)
                     or [urlunsplit((parts.scheme, parts.netloc, "/sitemap.xml", "", ""))])
        seen: set[str] = set()
        urls: list[str] = []
        while todo and len(seen) < MAX_SITEMAPS:
            sitemap = normalize(todo.popleft())
            if sitemap is None or sitemap in seen or not _same_origin(sitemap, self.site.url):
                continue
            seen.add(sitemap)
            response = fetcher.get(sitemap, limit=MAX_META_BYTES)
            if response.status != 200 or response.error:
                continue
            try:
                root = ElementTree.fromstring(response.body)
            except Exception as exc:  # defusedxml's refusals and ParseError: a bad sitemap is skipped
                log.warning("sitemap %s not read: %s", sitemap, exc)
                continue
            index = root.tag.endswith("sitemapindex")
            for loc in root.iter():
                if loc.tag.endswith("}loc") or loc.tag == "loc":
                    target = normalize(urljoin(sitemap, (loc.text or "").strip()))
                    if target is None:
                        continue
                    if index:
                        todo.append(target)
                    elif self.site.in_scope(target):
                        urls.append(target)
        return urls


def _modified_ns(value: str) -> int:
    if not value:
        return 0
    try:
        return int(parsedate_to_datetime(value).timestamp() * 1e9)
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0

