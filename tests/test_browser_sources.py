"""The source viewer and the Insights page end to end in a real headless browser (Debian's chromium through
Playwright), with users from a users file: an HR user opens the cited page of a scanned PDF and sees the
passage highlighted, downloads the original, and a salesperson gets neither; an admin reads the Insights
page. The browser contacts no origin but the page's own."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.job import run_ingest
from ingest.ocr import find_tessdata
from rag.index import IndexReader
from rag.settings import load_settings
from rag.types import Principal
from tests.conftest import browser_ask, browser_sign_in as sign_in, require_chromium, serve_page, until_it_lands
from tests.docgen import write_scanned_pdf
from ui.appdb import AppDB
from ui.auth import add_user
from ui.sources import SourceChangedError, SourceViewer

pytestmark = pytest.mark.slow  # a real browser against a real page

LEAVE = ["Parental leave policy, page two.", "Parental leave is 26 weeks at full pay for the primary carer,",
         "followed by 13 weeks at half pay. Apply to HR two months ahead."]
QUESTION = "How many weeks of parental leave at full pay?"
DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embedder, model_cache: Path) -> Iterator[tuple[str, Path]]:  # type: ignore[no-untyped-def]
    require_chromium()
    if find_tessdata(None) is None:
        if os.environ.get("RAG_CI"):
            pytest.fail("Tesseract's language files not found: apt-get install tesseract-ocr-eng")
        pytest.skip("Tesseract's language files not found (apt-get install tesseract-ocr-eng)")
    base = tmp_path_factory.mktemp("sources")
    docs = base / "docs"
    (docs / "hr").mkdir(parents=True)
    (docs / "handbook").mkdir()
    write_scanned_pdf(docs / "hr" / "parental-leave-scan.pdf",
                      [("scan", ["Parental leave policy.", "This policy applies to all employees."]), ("scan", LEAVE)])
    (docs / "handbook" / "canteen.md").write_text("# Canteen\n\nThe canteen serves lunch from 11:30 to 14:00.\n")
    users = base / "users.yaml"
    add_user(users, "ada", "ada password", "Ada", ["user", "admin"])
    add_user(users, "hanna", "hanna password", "Hanna", ["user"], ["hr"])
    add_user(users, "sam", "sam password", "Sam", ["user"], ["sales"])
    acl = f'{{"{docs / "hr"}": ["hr"], "{docs / "handbook"}": ["everyone"]}}'
    index = base / "index"
    run_ingest(load_settings(index_dir=index, device="cpu", acl_roots={docs / "hr": ["hr"],
                                                                        docs / "handbook": ["everyone"]}),
               [docs], embedder=embedder, progress=False)
    seed_history(base / "app.sqlite", str(docs / "hr" / "parental-leave-scan.pdf"), str(docs / "handbook" / "canteen.md"))
    env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache), "RAG_ACL_ROOTS": acl,
           "RAG_APP_DB": str(base / "app.sqlite"), "RAG_UI_USERS_FILE": str(users), "RAG_MAX_NEW_TOKENS": "40"}
    with serve_page(base, index, env) as url:
        yield url, base


SEEDED = 24  # questions in the seeded history


def seed_history(path: Path, scan: str, canteen: str) -> None:
    """Two weeks of use before today, as the page would have logged it: answers, abstentions, feedback."""
    now = time.time()
    for n in range(SEEDED):
        clock = now - (14 - n // 2) * 86400 - 3600
        db = AppDB(path, clock=lambda: clock)
        answered = n % 4 != 3
        shown = [{"path": scan if n % 3 else canteen, "page": 2, "chunk_id": 1, "cited": answered}]
        db.audit(f"user{n % 5}", f"question {n}" if answered else f"Is there a bike shed? ({n})", "",
                 "answered" if answered else "abstained", shown if answered else [], "demo", 1, 0.5 + n / 10)
        if n % 5 == 0:
            db.add_feedback(f"user{n % 5}", f"question {n}", "an answer", shown, -1 if n % 10 == 0 else 1,
                            "wrong figure" if n % 10 == 0 else "")
        db.close()


def highlighted_pixels(png: bytes) -> int:
    """Pixels of the viewer's marker colour (translucent yellow over white or black ink)."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return int(((r > 200) & (g > 200) & (b < 150)).sum())


def test_sources_and_insights_in_a_real_browser(server: tuple[str, Path]) -> None:
    from playwright.sync_api import sync_playwright

    url, base = server
    original = (base / "docs" / "hr" / "parental-leave-scan.pdf").read_bytes()
    requested: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(require_chromium()), args=["--no-sandbox"])
        # -- an HR user: the cited page of the scan, highlighted, and the original file
        hanna = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
        page = hanna.new_page()
        page.on("request", lambda request: requested.append(request.url))
        sign_in(page, url, "hanna")
        browser_ask(page, QUESTION, 120_000)
        message = page.locator('[data-testid="stChatMessage"]').last
        source = message.locator('[data-testid="stExpander"]').filter(has_text="parental-leave-scan.pdf").first
        # the answer's last rerun may still be under way (the page inert): an expander open now can come back
        # closed, and a click can land and be undone; so open it and click until the dialog is there
        button = source.get_by_role("button", name="Open the source")
        dialog = page.get_by_role("dialog")

        def open_source() -> None:
            if dialog.count() == 0:
                if not button.is_visible():
                    source.locator("summary").click(timeout=10_000)
                button.click(timeout=10_000)
            dialog.wait_for(timeout=10_000)

        until_it_lands(open_source, "the source's dialog never opened")
        try:
            dialog.get_by_text("page 2 of 2").wait_for(timeout=60_000)
        except Exception as exc:  # say what the dialog shows instead
            raise AssertionError(f"the dialog shows no 'page 2 of 2': {dialog.inner_text(timeout=5_000)!r}") from exc
        image = dialog.locator("img").first
        image.wait_for(timeout=30_000)
        png = page.request.get(image.get_attribute("src")).body()  # type: ignore[arg-type]
        assert highlighted_pixels(png) > 2000, "no highlight on the cited page"
        page.screenshot(path=str(DOCS / "source-viewer.png"))
        dialog.get_by_role("button", name="Previous").click()
        dialog.get_by_text("page 1 of 2").wait_for(timeout=60_000)
        dialog.get_by_text("The cited passage is on another page").wait_for(timeout=30_000)
        with page.expect_download(timeout=60_000) as download:
            dialog.get_by_role("button", name="Download original").click()
        assert Path(download.value.path()).read_bytes() == original
        assert download.value.suggested_filename == "parental-leave-scan.pdf"
        hanna.close()

        # -- a salesperson: the scan is never a source, so never viewable
        sam = browser.new_context(viewport={"width": 1280, "height": 900})
        page = sam.new_page()
        page.on("request", lambda request: requested.append(request.url))
        sign_in(page, url, "sam")
        answer = browser_ask(page, QUESTION, 120_000)
        assert "parental-leave-scan" not in page.content() and "26 weeks" not in answer
        sam.close()

        # -- an admin: the Insights page counts both questions
        ada = browser.new_context(viewport={"width": 1280, "height": 1100})
        page = ada.new_page()
        page.on("request", lambda request: requested.append(request.url))
        sign_in(page, url, "ada")
        page.get_by_role("link", name="Insights").click()
        page.get_by_text("Questions per day").wait_for(timeout=60_000)
        metric = page.locator('[data-testid="stMetric"]').filter(has_text="Questions").first
        assert metric.locator('[data-testid="stMetricValue"]').inner_text().strip() == str(SEEDED + 2)
        page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=30_000)
        page.get_by_text("Content gaps").wait_for()
        page.screenshot(path=str(DOCS / "insights.png"), full_page=True)
        ada.close()
        browser.close()
    origins = {u.split("/")[2] for u in requested if u.startswith(("http://", "https://", "ws://", "wss://"))}
    assert origins == {url.split("/")[2]}, sorted(set(requested))


def test_a_reader_of_another_group_gets_nothing(server: tuple[str, Path], embedder) -> None:  # type: ignore[no-untyped-def]
    """Without the browser: the viewer answers a salesperson exactly as for a chunk that does not exist."""
    _, base = server
    reader = IndexReader(load_settings(index_dir=base / "index").index)
    reader.refresh()
    view = reader.view
    assert view is not None
    [scan] = [d for d in view.list_documents() if d.path.endswith("parental-leave-scan.pdf")]
    chunk = view.document_chunks(scan.doc_id)[-1].chunk_id
    viewer = SourceViewer(64 * 2**20)
    sales, hr = Principal.member_of(["sales"]), Principal.member_of(["hr"])
    assert viewer.page(view, chunk, sales) is None and viewer.page(view, 10**9, sales) is None
    assert viewer.page(view, chunk, sales, page=1) is None
    assert viewer.original(view, scan.doc_id, sales) is None
    shown = viewer.page(view, chunk, hr)
    assert shown is not None and shown.highlighted and shown.page == 2 and shown.pages == 2
    assert viewer.original(view, scan.doc_id, hr) is not None
    # the file changes after indexing: no download, and the page says why; a link swapped in is not followed
    path = Path(scan.path)
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n% edited")
        assert "changed since it was indexed" in viewer.file_changed(scan)
        with pytest.raises(SourceChangedError, match="changed since it was indexed"):
            viewer.original(view, scan.doc_id, hr)
        path.unlink()
        path.symlink_to(base / "users.yaml")
        with pytest.raises(SourceChangedError, match="no longer where it was indexed"):
            viewer.original(view, scan.doc_id, hr)
        fresh = SourceViewer(64 * 2**20)  # nothing cached: the page cannot be rendered, its text is shown
        shown = fresh.page(view, chunk, hr)
        assert shown is not None and shown.kind == "text" and "no longer where it was indexed" in shown.note
        assert "26 weeks" in shown.text and shown.highlighted
    finally:
        path.unlink()
        path.write_bytes(original)


def test_the_api_serves_the_highlighted_page_to_readers_only(server: tuple[str, Path], embedder) -> None:  # type: ignore[no-untyped-def]
    """GET /v1/chunks/{id}/page: the viewer's PNG for a reader, a 404 like a missing chunk for anyone else."""
    import httpx

    from tests.test_api import make_state, serve

    _, base = server
    docs = base / "docs"
    settings = load_settings(index_dir=base / "index", device="cpu", ui_users_file=base / "users.yaml",
                             app_db=base / "api.sqlite", acl_roots={docs / "hr": ["hr"], docs / "handbook": ["everyone"]})
    state = make_state(settings, embedder)
    view = state.service.searcher.current()
    [scan] = [d for d in view.list_documents() if d.path.endswith("parental-leave-scan.pdf")]
    [canteen] = [d for d in view.list_documents() if d.path.endswith("canteen.md")]
    chunk = view.document_chunks(scan.doc_id)[-1].chunk_id
    tokens = {who: state.db.create_token(who, who, "read") for who in ("hanna", "sam")}
    with serve(state) as url:
        def get(who: str, path: str, **params: object) -> httpx.Response:
            return httpx.get(url + path, params=params, headers={"Authorization": f"Bearer {tokens[who]}"}, timeout=60)

        page = get("hanna", f"/v1/chunks/{chunk}/page")
        assert page.status_code == 200 and page.headers["content-type"] == "image/png"
        assert page.headers["x-page"] == "2" and page.headers["x-pages"] == "2" and page.headers["x-highlighted"] == "true"
        assert highlighted_pixels(page.content) > 2000
        first = get("hanna", f"/v1/chunks/{chunk}/page", page=1)
        assert first.status_code == 200 and first.headers["x-highlighted"] == "false"
        for who, target in (("sam", chunk), ("hanna", 10**9)):
            refused = get(who, f"/v1/chunks/{target}/page")
            assert refused.status_code == 404 and refused.json()["error"]["message"] == "no such chunk"
        text_only = get("sam", f"/v1/chunks/{view.document_chunks(canteen.doc_id)[0].chunk_id}/page")
        assert text_only.status_code == 415


def test_image_pages_render_in_the_sandbox_within_bounds(tmp_path: Path) -> None:
    """An indexed TIFF's frames render as pages; a bomb is refused by the renderer before decoding."""
    import hashlib

    from rag.store import DocumentInfo
    from tests.docgen import write_bomb_png, write_tiff

    def indexed(path: Path) -> DocumentInfo:
        data = path.read_bytes()
        return DocumentInfo(str(path), path.stem, 1, len(data), path.stat().st_mtime, 1, 1,
                            hashlib.sha256(data).hexdigest())

    viewer = SourceViewer(64 * 2**20)
    fax = indexed(write_tiff(tmp_path / "fax.tif", [LEAVE, LEAVE[:1]]))
    second = viewer.render(fax, 2, "image")
    assert not second.error and second.pages == 2 and second.png.startswith(b"\x89PNG")
    assert viewer.render(fax, 3, "image").error == "page 3 of 2"
    bomb = viewer.render(indexed(write_bomb_png(tmp_path / "bomb.png", 12_000, 12_000)), 1, "image")
    assert "image refused before decoding: 12000 x 12000 pixels" in bomb.error
