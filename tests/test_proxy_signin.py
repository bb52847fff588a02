"""Sign-in behind the documented reverse proxy, against a real `rag ui` in Chromium through a real nginx on the
same host (docs/deployment.md's location block): every connection reaches the page from 127.0.0.1, and
nginx says who the client is in X-Forwarded-For. Each client address is one nginx server (its own port)
writing that address, as `$remote_addr` would for a client there: a browser cannot pick its source address.

Attacker: a person guessing passwords for made-up names through the proxy. Before, the page throttled by
the proxy's address, so six guesses refused every other user's correct password; now their own address
is slowed, the other users sign in, and the spraying is in the audit log for the admins.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import acl_site, browser_sign_in, free_port, require_chromium, require_tool, serve_page

pytestmark = pytest.mark.slow  # a real page in a real browser

ATTACKER, HANNA, SAM = "203.0.113.7", "198.51.100.2", "198.51.100.3"


@contextmanager
def nginx_in_front(base: Path, page_url: str, clients: list[str]) -> Iterator[dict[str, str]]:
    """nginx proxying to the page as docs/deployment.md configures it, one server per client address;
    yields {client address: the URL that client uses}."""
    nginx = require_tool("nginx", "nginx-light")
    servers, urls = [], {}
    for address in clients:
        port = free_port()
        urls[address] = f"http://127.0.0.1:{port}"
        servers.append(f"""
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {page_url};
            proxy_set_header X-Forwarded-For {address};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;  proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_read_timeout 1h;
        }}
    }}""")
    root = base / "nginx"
    root.mkdir()
    user = "user root;" if os.getuid() == 0 else ""  # workers otherwise drop to nobody, who cannot enter base
    (root / "nginx.conf").write_text(f"""{user}
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {root}/body; proxy_temp_path {root}/proxy; fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;
{"".join(servers)}
}}
""")
    process = subprocess.Popen([nginx, "-p", str(root), "-c", str(root / "nginx.conf")], stderr=subprocess.STDOUT,
                               stdout=open(root / "stdout.log", "wb"))
    try:
        deadline = time.monotonic() + 30
        for url in urls.values():
            while True:
                try:
                    urllib.request.urlopen(url + "/_stcore/health", timeout=5).read()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"nginx did not start: {(root / 'error.log').read_text()}") from None
                    time.sleep(0.2)
        yield urls
    finally:
        process.terminate()
        process.wait(10)


def test_one_person_guessing_names_behind_the_proxy_locks_nobody_else_out(tmp_path: Path, embedder,  # type: ignore[no-untyped-def]
                                                                         model_cache: Path) -> None:
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    site = acl_site(tmp_path, embedder, model_cache, RAG_TRUSTED_PROXIES=json.dumps(["127.0.0.1"]))
    index, env = site.index, site.env
    with serve_page(tmp_path, index, env) as page_url, nginx_in_front(tmp_path, page_url, [ATTACKER, HANNA, SAM]) as via, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        try:
            attacker = browser.new_context().new_page()
            attacker.goto(via[ATTACKER])
            refused = 0
            for name in ("zed", "yan", "xia", "wim", "vic", "una", "tom", "sol", "rik", "quy", "pam", "oto"):
                attacker.get_by_label("User name").fill(name)
                attacker.get_by_label("Password", exact=True).fill("Winter2026!")
                attacker.get_by_role("button", name="Sign in").click()
                attacker.locator('[data-testid="stAlert"]').first.wait_for(timeout=30_000)
                attacker.wait_for_timeout(1500)  # the page's run for this try has drawn its answer
                refused += attacker.get_by_text("Sign-in refused").count()
            assert refused >= 3  # five free tries, then a wait that doubles
            # the attacker's address is slowed; the others, through the same proxy, sign in at once
            for name, address in (("hanna", HANNA), ("sam", SAM)):
                browser_sign_in(browser.new_context().new_page(), via[address], name, timeout_ms=60_000)
        finally:
            browser.close()
    rows = sqlite3.connect(tmp_path / "app.sqlite").execute(
        "SELECT question, outcome FROM audit WHERE outcome = 'sign-in spraying'").fetchall()
    assert rows and f"from {ATTACKER}" in rows[0][0]
