"""The PyTorch backend: sentence-transformers in fp32 on a CPU, fp16 on a GPU."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import numpy as np

from rag.embedding.base import (base_model_id, model_prompts, resolve_device, resolve_embedding_folder,
                                set_offline_mode)
from rag.settings import EmbeddingSettings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)


# Up to this many texts, embed_batch skips sentence-transformers' encode (see _embed_small).
SMALL_BATCH = 4


class SentenceTransformerEmbedder:
    """sentence-transformers on CPU (fp32) or GPU (fp16); the model loads on first use."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        self.folder = resolve_embedding_folder(settings)
        self.model_id = base_model_id(settings)  # the fp32 space (fp16 on a GPU shares it)
        self.prompts = model_prompts(self.folder, settings)
        self.batch_size = settings.batch_size  # 0: chosen by device at load time
        self._settings = settings
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()
        self.device = "unloaded"

    @property
    def dim(self) -> int:
        model = self.model
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get_dim())

    @property
    def model(self) -> "SentenceTransformer":
        """The loaded model (loads it once, thread-safe)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def warm_up(self) -> None:
        """Load the model now rather than at the first embedding."""
        _ = self.model

    def _load(self) -> "SentenceTransformer":
        set_offline_mode()
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        device = resolve_device(self._settings.device)
        model = SentenceTransformer(str(self.folder), device=device, local_files_only=True,
                                    trust_remote_code=False)
        if device == "cuda":
            model.half()
        if not self.batch_size:
            # bench/embed_batch_size.py: on a 2-core CPU, batches of 8 run ~1.25x faster than 32
            self.batch_size = 128 if device == "cuda" else 8
        self.device = device
        log.info("embedding model %s loaded on %s", self.model_id, device)
        return model

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Passages, with the model's passage prompt."""
        return self._embed(self.prompts.passages(texts))

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Questions, with the model's query prompt."""
        return self._embed(self.prompts.queries(texts))

    def embed_to_compare(self, texts: list[str]) -> np.ndarray:
        """Passages compared at question time: the same vectors as `embed_batch` (one precision here)."""
        return self.embed_batch(texts)

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts (prompts already in them); sentence-transformers sorts them by length internally and
        restores order."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) <= SMALL_BATCH:
            return self._embed_small(texts)
        vectors = self.model.encode(
            texts,
            prompt="",  # the prompts are ours (Prompts): never the model's default prompt on top
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _embed_small(self, texts: list[str]) -> np.ndarray:
        """A search question or two: the model's modules called directly, without `encode`'s batching
        machinery, which costs ~1.8 ms of a 13 ms question on a CPU (same vectors)."""
        import torch

        model = self.model
        features = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in model.preprocess(texts).items()}
        with torch.inference_mode():
            vectors = torch.nn.functional.normalize(model(features)["sentence_embedding"].float(), dim=1)
        return np.ascontiguousarray(vectors.cpu().numpy(), dtype=np.float32)
