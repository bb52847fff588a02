"""A real HTTP server on loopback serving a generated intranet site, for the web source's tests and benchmark.

Pages are bytes in a dict the test may change while the server runs. The server answers as a well-behaved
intranet server does: an ETag (a hash of the bytes) and a Last-Modified on every page, 304 to a matching
If-None-Match or If-Modified-Since, robots.txt and sitemap.xml, redirects, a login-protected area (401 without
the right Authorization header). Every request is logged (path, status, whether it was conditional, whether it
carried credentials) for the tests to check what the crawler asked.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Page:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    modified: float = 1_780_000_000.0  # seconds since the epoch
    status: int = 200
    location: str = ""  # a redirect's target


@dataclass
class Logged:
    path: str
    status: int
    conditional: bool
    authorized: bool


@dataclass
class Site:
    """The site's content and what the server saw; `port` once it serves."""

    pages: dict[str, Page] = field(default_factory=dict)
    protected: tuple[str, ...] = ()  # path prefixes that need `token`
    token: str = ""
    log: list[Logged] = field(default_factory=list)
    port: int = 0
    host: str = "127.0.0.1"
    tls: tuple[str, str] | None = None  # (certificate, key) PEM files: served over HTTPS
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/") -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}{path}"

    def requests(self, path: str | None = None) -> list[Logged]:
        with self.lock:
            return [r for r in self.log if path is None or r.path == path]

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()


def html(title: str, body: str, links: Sequence[str] = ()) -> bytes:
    nav = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (f"<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{title}</h1>"
            f"<p>{body}</p><ul>{nav}</ul></body></html>").encode()


class _Handler(BaseHTTPRequestHandler):
    site: Site
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: without it, 40 ms of delayed ACK each

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        site = self.site
        path = self.path
        authorized = bool(site.token) and self.headers.get("Authorization") == f"Bearer {site.token}"
        conditional = bool(self.headers.get("If-None-Match") or self.headers.get("If-Modified-Since"))
        with site.lock:
            page = site.pages.get(path)
        status, headers, body = 404, {"Content-Type": "text/plain"}, b"not found"
        if page is not None and any(path.startswith(p) for p in site.protected) and not authorized:
            status, body = 401, b"sign in"
            headers["WWW-Authenticate"] = 'Bearer realm="intranet"'
        elif page is not None and page.location:
            status, body = page.status, b""
            headers["Location"] = page.location
        elif page is not None and page.status != 200:
            status, body = page.status, b"error"
        elif page is not None:
            etag = '"' + hashlib.sha256(page.body).hexdigest()[:16] + '"'
            modified = formatdate(page.modified, usegmt=True)
            headers = {"Content-Type": page.content_type, "ETag": etag, "Last-Modified": modified}
            status, body = 200, page.body
            if self.headers.get("If-None-Match"):
                if self.headers["If-None-Match"] == etag:
                    status, body = 304, b""
            elif self.headers.get("If-Modified-Since"):
                try:
                    since = parsedate_to_datetime(self.headers["If-Modified-Since"]).timestamp()
                except (TypeError, ValueError):
                    since = 0
                if int(page.modified) <= since:
                    status, body = 304, b""
        with site.lock:
            site.log.append(Logged(path, status, conditional, authorized))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serve(site: Site) -> Iterator[Site]:
    """Serve `site` on a free port of its host until the block ends."""
    handler = type("Handler", (_Handler,), {"site": site})
    server = ThreadingHTTPServer((site.host, 0), handler)
    server.daemon_threads = True
    if site.tls is not None:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*site.tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    site.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()


def wiki(pages: int, words: int = 120) -> dict[str, Page]:
    """A generated wiki of `pages` pages under /wiki/: the start page links to a category page per 50 pages,
    each category to its pages, each page to the start page, its category and the next three pages."""
    vocabulary = ("server backup policy retention invoice holiday badge printer laptop network vpn request "
                  "approval manager budget travel expense office meeting room schedule").split()
    categories = (pages + 49) // 50
    site = {"/wiki/": Page(html("Wiki", "Start page.", [f"/wiki/c{c}" for c in range(categories)]))}
    for c in range(categories):
        members = [f"/wiki/p{i}" for i in range(c * 50, min(pages, c * 50 + 50))]
        site[f"/wiki/c{c}"] = Page(html(f"Category {c}", f"Pages of category {c}.", ["/wiki/", *members]))
    for i in range(pages):
        text = " ".join(vocabulary[(i * 7 + j * 3) % len(vocabulary)] for j in range(words))
        links = ["/wiki/", f"/wiki/c{i // 50}"] + [f"/wiki/p{(i + k) % pages}" for k in (1, 2, 3)]
        site[f"/wiki/p{i}"] = Page(html(f"Page {i}", f"Page {i} is about {text}.", links))
    return site


def self_signed(folder: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and localhost, signed by itself (an internal CA's stand-in), made with
    the openssl tool: (certificate, key) PEM paths."""
    import subprocess

    cert, key = folder / "site.pem", folder / "site.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)
