"""Optional re-ranking of retrieved passages by a local cross-encoder (e.g. a bge-reranker or ms-marco folder).

A cross-encoder reads question and passage together, so it ranks better than the embedding alone, at the
cost of one forward pass per candidate: it runs only when `RAG_RERANKER_MODEL` names a local folder.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rag.embedding import ModelNotFoundError, model_fingerprint, resolve_device, set_offline_mode
from rag.settings import RerankSettings
from rag.types import Hit

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

log = logging.getLogger(__name__)


class Reranker(Protocol):
    """Re-orders hits for a question, best first, with the reranker's score in `score`."""

    model_id: str

    def rerank_batch(self, questions: Sequence[str], hits: Sequence[Sequence[Hit]]) -> list[list[Hit]]: ...


class CrossEncoderReranker:
    """sentence-transformers' CrossEncoder over a local folder; loads on first use."""

    def __init__(self, settings: RerankSettings) -> None:
        folder = Path(settings.model).expanduser()
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(
                f"reranker folder {folder} not found or not a model (no config.json): on a connected machine run "
                f"`huggingface-cli download BAAI/bge-reranker-base --local-dir <folder>`, copy the folder here "
                f"and set RAG_RERANKER_MODEL to it (or leave it empty to rank without a reranker)")
        self.folder = folder
        self.model_id = model_fingerprint(folder)
        self._settings = settings
        self._model: CrossEncoder | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> "CrossEncoder":
        if self._model is None:
            with self._lock:
                if self._model is None:
                    set_offline_mode()
                    from sentence_transformers import CrossEncoder

                    self._model = CrossEncoder(str(self.folder), device=resolve_device(self._settings.device),
                                               local_files_only=True, trust_remote_code=False)
                    log.info("reranker %s loaded", self.model_id)
        return self._model

    def warm_up(self) -> None:
        """Load the model now rather than at the first question."""
        _ = self.model

    def rerank_batch(self, questions: Sequence[str], hits: Sequence[Sequence[Hit]]) -> list[list[Hit]]:
        """Score every (question, passage) pair in one batch and sort each question's hits by it."""
        pairs = [(q, h.text) for q, row in zip(questions, hits) for h in row]
        if not pairs:
            return [[] for _ in questions]
        scores = self.model.predict(pairs, batch_size=32, show_progress_bar=False, convert_to_numpy=True)
        out, start = [], 0
        for row in hits:
            scored = [replace(h, score=float(s)) for h, s in zip(row, scores[start:start + len(row)])]
            start += len(row)
            out.append(sorted(scored, key=lambda h: -h.score))
        return out

    def rerank(self, question: str, hits: Sequence[Hit]) -> list[Hit]:
        """Re-rank one question's hits."""
        return self.rerank_batch([question], [hits])[0]


def make_reranker(settings: RerankSettings) -> Reranker | None:
    """The configured reranker, or None when `reranker_model` is empty."""
    return CrossEncoderReranker(settings) if settings.model else None
