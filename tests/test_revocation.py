"""Revocation takes effect at the next request, against the running processes: a real `rag api` and a real
`rag ui` in Chromium, whose users file an admin edits while they run (with `rag user add` and by hand).

Attackers: a user an admin removed, who still holds an API token or an open page session; an admin who was
demoted and keeps using an admin token or the admin pages; someone who learned a password that was then
reset. None of them may outlive the edit by a single request.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import (HR_MARK, AclSite, acl_site, browser_sign_in as sign_in, rag_cli, require_chromium,
                            serve_api, serve_page)

pytestmark = pytest.mark.slow  # real servers with the real models


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, embedder, model_cache: Path) -> AclSite:  # type: ignore[no-untyped-def]
    return acl_site(tmp_path_factory.mktemp("revocation"), embedder, model_cache, [("ada", ["user", "admin"], [])],
                    RAG_MAX_NEW_TOKENS="24")


def set_user(site: AclSite, name: str, *flags: str) -> None:
    """`rag user add` as an admin runs it (the file replaced atomically)."""
    rag_cli("user", "add", name, "--password-stdin", *flags, env=site.env, stdin=f"{name} password\n")


def edit_by_hand(site: AclSite, name: str, roles: list[str] | None = None) -> None:
    """The user deleted (or given `roles`) in an editor: the file rewritten in place (same inode, maybe
    within the same second as the last change), the password hash left as it was."""
    data = yaml.safe_load(site.users.read_text())
    if roles is None:
        del data["credentials"]["usernames"][name]
    else:
        data["credentials"]["usernames"][name]["roles"] = roles
    with open(site.users, "w", encoding="utf-8") as f:
        f.write(yaml.safe_dump(data))


@pytest.fixture()
def api(site: AclSite) -> Iterator[str]:
    before = site.users.read_bytes()
    with serve_api(site.base, site.index, site.env) as url:
        yield url
    site.users.write_bytes(before)  # the next test starts from the three users


def test_the_api_applies_the_users_file_at_the_next_request(site: AclSite, api: str) -> None:
    tokens = {who: rag_cli("token", "create", f"{who}-token", "--user", who, *(["--scope", "admin"] if who == "ada"
                                                                             else []), env=site.env).strip()
              for who in ("ada", "hanna", "sam")}

    def get(who: str, path: str) -> httpx.Response:
        return httpx.get(f"{api}{path}", headers={"Authorization": f"Bearer {tokens[who]}"}, timeout=60)

    [hr] = get("hanna", "/v1/documents?contains=salary").json()["documents"]
    assert get("hanna", f"/v1/documents/{hr['id']}").status_code == 200
    assert get("ada", "/v1/audit").status_code == 200
    assert get("sam", f"/v1/documents/{hr['id']}").status_code == 404

    set_user(site, "ada")  # demoted: no --admin
    edit_by_hand(site, "hanna")
    set_user(site, "sam", "--group", "sales", "--group", "hr")  # a group added

    refused = get("ada", "/v1/audit")
    assert refused.status_code == 403 and "admin" in refused.json()["error"]["message"]
    assert httpx.post(f"{api}/v1/ingest", json={"folder": str(site.base / "docs")}, timeout=60,
                      headers={"Authorization": f"Bearer {tokens['ada']}"}).status_code == 403
    gone = get("hanna", f"/v1/documents/{hr['id']}")
    assert gone.status_code == 401 and "no longer exists" in gone.json()["error"]["message"]
    assert HR_MARK not in gone.text
    assert get("sam", f"/v1/documents/{hr['id']}").status_code == 200

    # a file broken by a careless edit closes the door for everyone until it is fixed
    good = site.users.read_bytes()
    site.users.write_text("credentials: [not, a, mapping\n")
    broken = get("sam", f"/v1/documents/{hr['id']}")
    assert broken.status_code == 503 and "users file" in broken.json()["error"]["message"]
    assert HR_MARK not in broken.text
    site.users.unlink()
    assert get("ada", "/v1/documents").status_code == 503
    site.users.write_bytes(good)
    assert get("sam", f"/v1/documents/{hr['id']}").status_code == 200


def test_an_open_page_session_ends_when_its_user_is_removed_or_their_password_reset_and_demotion_applies(site: AclSite) -> None:
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    with serve_page(site.base, site.index, site.env) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(require_chromium()), args=["--no-sandbox"])
        try:
            hanna, ada, sam = (browser.new_context().new_page() for _ in range(3))
            for page, name in ((hanna, "hanna"), (ada, "ada"), (sam, "sam")):
                sign_in(page, url, name)
            assert ada.get_by_role("link", name="Index a folder").count() == 1

            edit_by_hand(site, "hanna")
            edit_by_hand(site, "ada", roles=["user"])  # demoted, her password unchanged
            set_user(site, "sam")  # saved again with `rag user add`: a new password hash ends his session

            for page in (hanna, ada, sam):  # the next interaction is a new run of the page's script
                page.get_by_role("button", name="New conversation").click()
            # (each waits: the warning is drawn before the form, and the menu after the sidebar's line)
            hanna.get_by_text("You were signed out").wait_for(timeout=30_000)
            expect(hanna.get_by_label("User name")).to_have_count(1, timeout=30_000)
            sam.get_by_text("You were signed out").wait_for(timeout=30_000)
            ada.get_by_text("Signed in as Ada (user)").wait_for(timeout=30_000)
            expect(ada.get_by_role("link", name="Index a folder")).to_have_count(0, timeout=30_000)

            # the removed user cannot sign in again, the demoted one signs in without the admin pages
            hanna.get_by_label("User name").fill("hanna")
            hanna.get_by_label("Password", exact=True).fill("hanna password")
            hanna.get_by_role("button", name="Sign in").click()
            hanna.get_by_text("Unknown user name or wrong password").wait_for(timeout=30_000)
        finally:
            browser.close()

