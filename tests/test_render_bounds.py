"""The source viewer's page images, bounded, against a running `rag api`: a 1 KB PDF whose page declares
600 x 60,000 points (121 megapixels at the viewer's width) is drawn within the viewer's pixel bound, in the
sandboxed renderer with its highlight, and three views of it at once neither grow the server's memory by
hundreds of megabytes nor wait: each gets its image, or a refusal, within five seconds.

Attacker: staff with write access to an indexed share, who drops that PDF where readers will open it.
"""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from ingest.job import run_ingest
from rag.settings import load_settings
from tests.conftest import rag_cli, serve_api
from ui.auth import add_user

pytestmark = pytest.mark.slow  # a real server


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_three_views_of_a_hostile_page_are_bounded(tmp_path: Path, embedder, model_cache: Path) -> None:  # type: ignore[no-untyped-def]
    from fpdf import FPDF
    from PIL import Image

    docs = tmp_path / "docs"
    docs.mkdir()
    pdf = FPDF(unit="pt", format=(600, 60000))
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 14, "The tall page holds the escalation matrix for the night shift and the phone numbers "
                          "of the duty managers.")
    pdf.output(str(docs / "tall.pdf"))
    assert (docs / "tall.pdf").stat().st_size < 2000
    (docs / ".rag-acl").write_text("everyone\n")
    users = tmp_path / "users.yaml"
    add_user(users, "sam", "sam password", "Sam", ["user"], ["sales"])
    index = tmp_path / "index"
    run_ingest(load_settings(index_dir=index, device="cpu"), [docs], embedder=embedder, progress=False)
    env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache), "RAG_UI_USERS_FILE": str(users),
           "RAG_APP_DB": str(tmp_path / "app.sqlite")}
    token = rag_cli("token", "create", "sam-token", "--user", "sam", env=env).strip()
    processes: list = []
    with serve_api(tmp_path, index, env, processes) as url:
        headers = {"Authorization": f"Bearer {token}"}
        hits = httpx.post(f"{url}/v1/search", json={"query": "escalation matrix night shift"}, headers=headers,
                          timeout=60).json()["results"][0]["hits"]
        chunk = hits[0]["chunk_id"]
        before = peak_rss_mb(processes[0].pid)
        answers: list[tuple[int, float, bytes]] = []

        def view() -> None:
            started = time.monotonic()
            response = httpx.get(f"{url}/v1/chunks/{chunk}/page", headers=headers, timeout=60)
            answers.append((response.status_code, time.monotonic() - started, response.content))

        threads = [threading.Thread(target=view) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        grown = peak_rss_mb(processes[0].pid) - before
    assert len(answers) == 3 and all(status in (200, 503) and seconds < 5 for status, seconds, _ in answers), \
        [(s, round(t, 2)) for s, t, _ in answers]
    images = [Image.open(io.BytesIO(body)) for status, _, body in answers if status == 200]
    assert images and all(i.width * i.height <= 8_000_000 for i in images)  # the viewer's bound, not 121 MP
    assert grown < 400, f"the server grew by {grown:.0f} MB"
