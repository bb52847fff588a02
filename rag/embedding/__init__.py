"""Text embedding: the `Embedder` protocol, its backends, and the one factory that picks a backend."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from rag.embedding.base import (
    DEFAULT_NAME,
    Embedder,
    ModelNotFoundError,
    base_model_id,
    default_embedding_folder,
    may_have_gpu,
    model_fingerprint,
    model_max_tokens,
    resolve_device,
    resolve_embedding_folder,
    set_offline_mode,
    space_model_id,
    vector_space,
    without_space,
)
from rag.embedding.onnx_backend import OnnxEmbedder, onnx_runtime_available, onnx_unsupported
from rag.embedding.torch_backend import SentenceTransformerEmbedder
from rag.settings import ConfigError, EmbeddingSettings

__all__ = [
    "DEFAULT_NAME", "BackendChoice", "Embedder", "ModelNotFoundError", "OnnxEmbedder", "SentenceTransformerEmbedder",
    "base_model_id", "choose_backend", "cpu_flags", "default_embedding_folder", "embedding_model_id",
    "make_embedder", "model_fingerprint", "model_max_tokens", "resolve_backend", "resolve_device",
    "resolve_embedding_folder", "set_offline_mode", "vector_space", "without_space",
]

log = logging.getLogger(__name__)

SPACE = {"torch": "fp32", "onnx": "fp32", "onnx-int8": "int8"}


@dataclass(frozen=True)
class BackendChoice:
    """The backend an embedder uses, and why (logged, and shown by `rag doctor`)."""

    backend: str
    reason: str

    @property
    def space(self) -> str:
        return SPACE[self.backend]


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where unknown."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def choose_backend(settings: EmbeddingSettings, index_model: str | None = None, *,
                   flags: frozenset[str] | None = None) -> BackendChoice:
    """RAG_EMBEDDING_BACKEND, or for "auto" the fastest backend measured acceptable here.

    `index_model`: the model id the index records, when there is one. "auto" keeps an existing index's
    kind of vectors (never a surprise re-embedding of a whole share because a service moved to another
    CPU); only an explicit RAG_EMBEDDING_BACKEND switches an index, and `rag ingest` then re-embeds it.
    """
    if settings.backend != "auto":
        return BackendChoice(settings.backend, f"RAG_EMBEDDING_BACKEND={settings.backend}")
    if may_have_gpu(settings.device) and resolve_device(settings.device) == "cuda":
        if index_model is not None and vector_space(index_model) == "int8":
            return _int8_or_fail("the index holds int8 vectors (made on a CPU)")
        return BackendChoice("torch", "a CUDA GPU: PyTorch fp16")
    onnx_problem = "" if onnx_runtime_available() else "onnxruntime is not installed"
    onnx_problem = onnx_problem or onnx_unsupported(resolve_embedding_folder(settings))
    if index_model is not None:
        if vector_space(index_model) == "int8":
            return _int8_or_fail("the index holds int8 vectors", onnx_problem)
        if onnx_problem:
            return BackendChoice("torch", f"the index holds fp32 vectors; ONNX Runtime unusable: {onnx_problem}")
        return BackendChoice("onnx", "the index holds fp32 vectors: ONNX Runtime fp32 gives the same ones faster")
    if onnx_problem:
        return BackendChoice("torch", f"ONNX Runtime unusable ({onnx_problem}): PyTorch fp32")
    flags = cpu_flags() if flags is None else flags
    vnni = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    if vnni:
        return BackendChoice("onnx-int8", f"a new index on a CPU with {', '.join(vnni)}: int8 measured 1.9-2.2x "
                                          f"PyTorch fp32 within the recall bar")
    # int8 without VNNI can saturate (ONNX Runtime's quantization notes) and was not measured here
    return BackendChoice("onnx", "a new index on a CPU without VNNI: ONNX Runtime fp32")


def _int8_or_fail(why: str, problem: str = "") -> BackendChoice:
    problem = problem or ("" if onnx_runtime_available() else "onnxruntime is not installed")
    if problem:
        raise ConfigError(f"{why}, which need ONNX Runtime, but {problem}: install onnxruntime and onnx, or set "
                          f"RAG_EMBEDDING_BACKEND=torch and run `rag ingest` to re-embed the index in fp32")
    return BackendChoice("onnx-int8", why)


def resolve_backend(settings: EmbeddingSettings, index_model: str | None = None) -> EmbeddingSettings:
    """`settings` with "auto" replaced by the concrete choice, for processes that must agree with this one
    (Ray's embedding actors run on other CPUs, where "auto" could choose otherwise)."""
    choice = choose_backend(settings, index_model)
    log.info("embedding backend %s: %s", choice.backend, choice.reason)
    return replace(settings, backend=choice.backend)  # type: ignore[arg-type]


def embedding_model_id(settings: EmbeddingSettings, index_model: str | None = None) -> str:
    """The id the configured embedder's vectors carry (model and kind); loads nothing."""
    return space_model_id(base_model_id(settings), choose_backend(settings, index_model).space)


def make_embedder(settings: EmbeddingSettings, index_model: str | None = None) -> Embedder:
    """The embedder the settings ask for; `index_model`: the id the index to be used records, if any
    (see `choose_backend`). Cheap: the model loads (and converts, once) on first use."""
    choice = choose_backend(settings, index_model)
    if settings.backend == "auto":
        log.info("embedding backend %s: %s", choice.backend, choice.reason)
    if choice.backend == "torch":
        return SentenceTransformerEmbedder(settings)
    return OnnxEmbedder(settings, choice.space)

