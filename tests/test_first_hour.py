"""A newcomer's first hour, replayed: `make demo` in a fresh clone, then the page in a real browser (Debian's
chromium): ask a question, index a folder of one's own (allowed through RAG_UI_ALLOWED_ROOTS, which
`make demo` keeps), remove a document with its confirmation. Screenshots of each step go to
$RAG_FIRST_HOUR_SHOTS (default data/first-hour/ in this checkout); the README's screenshot comes from there.

Slow tier: `make test-all` or `pytest -m slow tests/test_first_hour.py`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, browser_ask, browser_index, free_port, require_chromium, wait_for_page
SHOTS = Path(os.environ.get("RAG_FIRST_HOUR_SHOTS") or REPO / "data" / "first-hour")


@pytest.mark.slow
def test_first_hour_in_a_fresh_clone(tmp_path: Path, model_cache: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = require_chromium()
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    # the clone uses this checkout's virtual environment (installing needs the package registry, which
    # tests may not reach); `make -o` keeps make from re-installing it
    (clone / ".venv").symlink_to(REPO / ".venv")
    mine = tmp_path / "my-documents"
    mine.mkdir()
    (mine / "garden.md").write_text("# Roof garden\n\nThe roof garden on building B is open to staff from May to "
                                    "September, 8:00 to 18:00.\n")
    (mine / "bikes.md").write_text("# Bicycles\n\nBicycles are parked in the basement of building C.\n")
    port = free_port()
    env = {**os.environ, "PORT": str(port), "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache),
           "RAG_MAX_NEW_TOKENS": "40",
           "RAG_UI_ALLOWED_ROOTS": f'["{clone / "samples"}", "{mine}"]'}  # the newcomer's own setting, kept
    env.pop("RAG_INDEX_DIR", None)
    log = open(tmp_path / "demo.log", "wb")
    demo = subprocess.Popen(["make", "-o", ".venv/.installed", "demo"], cwd=clone, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        try:
            wait_for_page(url, demo, timeout_s=600)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}:\n{(tmp_path / 'demo.log').read_text()}") from None
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            assert "11:30" in browser_ask(page, "When is lunch served in the cafeteria?", 180_000)
            page.screenshot(path=str(SHOTS / "1-ask.png"), full_page=True)

            browser_index(page, mine, "2 indexed", 180_000)
            assert str(mine) in page.get_by_text("Allowed folders").inner_text()
            # the runs table says done without a reload (its grid cells are an accessibility layer: attached, not visible)
            page.locator("td[role=gridcell]", has_text="done").first.wait_for(state="attached", timeout=30_000)
            page.screenshot(path=str(SHOTS / "2-index.png"), full_page=True)

            page.get_by_role("link", name="Documents").click()
            page.get_by_text("Indexed documents").wait_for(timeout=30_000)
            typo = page.get_by_label("Or remove a folder (every indexed document under it)")
            typo.fill(str(mine / "gardn.md"))
            page.get_by_role("button", name="Remove…").click()
            page.get_by_text("nothing to remove").wait_for(timeout=30_000)
            page.keyboard.press("Escape")
            typo.fill(str(mine / "garden.md"))
            page.get_by_role("button", name="Remove…").click()
            page.get_by_text("1 document(s) will be taken out of the index").wait_for(timeout=30_000)
            page.screenshot(path=str(SHOTS / "3-confirm-removal.png"), full_page=True)
            page.get_by_role("button", name="Remove", exact=True).click()
            page.get_by_text("1 document(s) removed").wait_for(timeout=120_000)
            page.get_by_text("Removed from the index").wait_for(timeout=30_000)
            page.screenshot(path=str(SHOTS / "4-removed.png"), full_page=True)
            browser.close()
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(20)
        log.close()
    # what `make demo` printed before serving: the sample index built and one question answered
    printed = (tmp_path / "demo.log").read_text()
    assert "12 indexed" in printed and "11:30" in printed, printed
    assert (clone / "data" / "demo-index" / "manifest.json").is_file()
    shutil.rmtree(clone / "data", ignore_errors=True)
