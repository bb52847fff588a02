"""The ONNX Runtime backend: the packaged model exported to ONNX once, offline, fp32 or with int8 weights
(int8 for the index's vectors only: questions and what is compared with them stay fp32, see INT8_FILE).

Measured on a 2-core AVX-512 (VNNI) CPU (bench/embedding_backends.py, docs/benchmarks.md): fp32 gives
the same vectors as PyTorch at about the same chunk rate but a third of the question latency; int8
(dynamic quantization) embeds chunks 1.9-2.2x faster than PyTorch and keeps recall@5 and MRR@10 within
0.003 on both eval sets.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from rag.embedding.base import (
    base_model_id,
    model_fingerprint,
    model_max_tokens,
    model_prompts,
    resolve_embedding_folder,
    set_offline_mode,
    space_model_id,
)
from rag.files import atomic_replace, private_dir
from rag.settings import ConfigError, EmbeddingSettings

log = logging.getLogger(__name__)

# Batches of 8 length-sorted texts: measured fastest for both precisions on 2 cores (32: 0.8-0.95x).
DEFAULT_BATCH = 8
OPSET = 17
# The int8 recipe: dynamic quantization with per-channel weights (per-tensor weights lost 0.0035 MRR@10
# on BoolQ, outside the bar; per-channel 0.002, at the same speed). Another recipe makes other vectors:
# it must get its own file name here and its own kind of vectors ("+int8" in rag.embedding.base).
INT8_FILE = "model-int8-per-channel.onnx"
# Only the index's vectors are int8: what is embedded while a question is answered (the question, the
# sentences a quote is chosen from, claims and their evidence) is fp32, from the same export. Questions
# and their sentences in int8 lost 6 of 161 facts in the answer, 3 right pages and an abstention on the
# real-document dev sets; in fp32 over the same int8 index they lose 1 (docs/benchmarks.md). Int8 quantizes
# each batch's activations with one scale (weights alone in int8 keep cosine 0.9996 to fp32; all of it
# 0.994), and smoothing the activations into the weights (SmoothQuant) did not help this model.


def onnx_runtime_available() -> bool:
    try:
        importlib.metadata.version("onnxruntime")
        importlib.metadata.version("onnx")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def onnx_unsupported(folder: Path) -> str:
    """Why this sentence-transformers folder cannot be exported here ("" when it can): the export covers
    a transformer, mean or CLS pooling and normalisation, which is what the common retrieval models are."""
    return _export_plan(folder)[1]


def _export_plan(folder: Path) -> tuple[str, str]:
    """(pooling, "mean" or "cls"; why the folder cannot be exported, "" when it can), from its modules."""
    if not (folder / "tokenizer.json").is_file():
        return "", "it has no tokenizer.json (a fast tokenizer)"
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return "", "it has no modules.json (not a sentence-transformers folder)"
    pooling = "mean"
    for module in json.loads(modules_file.read_text()):
        kind = module.get("type", "").rsplit(".", 1)[-1]
        if kind not in {"Transformer", "Pooling", "Normalize"}:
            return "", f"its {kind} module has no ONNX export here"
        if kind == "Pooling":
            config = json.loads((folder / module["path"] / "config.json").read_text())
            modes = {k for k, v in config.items() if k.startswith("pooling_mode_") and v}
            if modes - {"pooling_mode_mean_tokens", "pooling_mode_cls_token"} or len(modes) != 1:
                return "", f"its pooling ({', '.join(sorted(modes))}) has no ONNX export here"
            pooling = "cls" if "pooling_mode_cls_token" in modes else "mean"
    return pooling, ""


QUICK_QUESTIONS = 4  # up to this many questions at once are embedded on one thread (the "quick" session)


class OnnxEmbedder:
    """ONNX Runtime on the CPU; the ONNX file is made on first use into the model cache, then reused."""

    def __init__(self, settings: EmbeddingSettings, precision: str = "fp32") -> None:
        if precision not in ("fp32", "int8"):
            raise ValueError(f"precision {precision!r}: fp32 or int8")
        self.folder = resolve_embedding_folder(settings)
        self._pooling, reason = _export_plan(self.folder)
        if reason:
            raise ConfigError(f"the embedding model in {self.folder} cannot run on ONNX Runtime: {reason}; "
                              f"set RAG_EMBEDDING_BACKEND=torch")
        self.precision = precision
        self.model_id = space_model_id(base_model_id(settings), precision)
        self.prompts = model_prompts(self.folder, settings)
        self.batch_size = settings.batch_size or DEFAULT_BATCH
        self.device = "unloaded"
        self._cache_dir = settings.model_cache_dir.expanduser()
        # two sessions of the one model file, each made at its first use: "batch" (passages, sentences, many
        # questions) on every core, its threads spinning between operators, for throughput; "quick" (a few
        # questions: a user's search) on one thread, because a hybrid search embeds its question while its
        # keyword side runs on the other core (bench/retrieval_latency.py; docs/benchmarks.md has both)
        self._sessions: dict[tuple[str, str], Any] = {}
        self._tokenizer: Any = None
        self._inputs: tuple[str, ...] = ()
        self._dim = 0
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        if not self._sessions:
            self._session("batch", self.precision)
        return self._dim

    def warm_up(self) -> None:
        """Convert (once) and load the model for questions now rather than at the first question."""
        self._session("quick", "fp32")

    def _session(self, kind: str, precision: str) -> Any:
        session = self._sessions.get((kind, precision))
        if session is None:
            with self._lock:
                session = self._sessions.get((kind, precision))
                if session is None:
                    session = self._sessions[kind, precision] = self._load(kind, precision)
        return session

    def _load(self, kind: str, precision: str) -> Any:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = converted_model(self.folder, self._cache_dir, precision)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if kind == "quick":
            options.intra_op_num_threads = 1
        elif os.environ.get("OMP_NUM_THREADS", "").isdigit():
            # the operator's cap on a process's threads, as PyTorch and FAISS (OpenMP) follow it
            options.intra_op_num_threads = int(os.environ["OMP_NUM_THREADS"])
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        if self._tokenizer is None:
            tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
            # as sentence-transformers: truncate at the model's max_seq_length, pad to the longest in the batch
            tokenizer.enable_truncation(max_length=model_max_tokens(self.folder))
            tokenizer.enable_padding()
            self._inputs = tuple(i.name for i in session.get_inputs())
            self._dim = int(session.get_outputs()[0].shape[-1])
            self._tokenizer = tokenizer
            self.device = "cpu"
        log.info("embedding model %s: %s session loaded on ONNX Runtime %s (%s)", self.model_id, kind,
                 ort.__version__, precision)
        return session

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Passages to store, with the model's passage prompt, at the index's precision."""
        return self._embed_sorted(self.prompts.passages(texts), self._session("batch", self.precision))

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Questions, with the model's query prompt, in fp32 whatever the index holds (see INT8_FILE)."""
        session = self._session("quick" if len(texts) <= QUICK_QUESTIONS else "batch", "fp32")
        return self._embed_sorted(self.prompts.queries(texts), session)

    def embed_to_compare(self, texts: list[str]) -> np.ndarray:
        """Passages compared with a question at question time, never stored: in fp32, as the question."""
        return self._embed_sorted(self.prompts.passages(texts), self._session("batch", "fp32"))

    def _embed_sorted(self, texts: list[str], session: Any) -> np.ndarray:
        """Embed texts in length-sorted batches (less padding), rows in input order."""
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            rows = order[start:start + self.batch_size]
            out[rows] = self._embed([texts[i] for i in rows], session)
        return out

    def _embed(self, texts: list[str], session: Any) -> np.ndarray:
        encoded = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = session.run(None, {name: feed[name] for name in self._inputs})[0]
        if self._pooling == "cls":
            vectors = hidden[:, 0]
        else:
            weights = mask[:, :, None].astype(np.float32)
            vectors = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def converted_model(folder: Path, cache_dir: Path, precision: str) -> Path:
    """The ONNX file for `folder` at `precision`, made once from the local weights (never downloaded).

    Kept under the model cache, keyed by the model's fingerprint and the onnxruntime version (the
    quantizer's output may change with it); written under a temporary name and renamed, so services
    starting together never read a half-written file. A read-only cache (a mounted volume) gets the
    conversion in a private temporary folder for this process instead, with a warning.
    """
    import onnxruntime

    fingerprint = model_fingerprint(folder).rsplit("@", 1)[-1]
    name = f"embedding-{folder.name}-{fingerprint}-ort{onnxruntime.__version__}"
    target_dir = cache_dir / name
    target = target_dir / (INT8_FILE if precision == "int8" else "model.onnx")
    if target.is_file():
        return target
    try:
        private_dir(target_dir)  # a model file others could replace would decide every vector
        probe = tempfile.NamedTemporaryFile(dir=target_dir, prefix=".probe")
        probe.close()
    except OSError as exc:
        fallback = Path(tempfile.mkdtemp(prefix="rag-onnx-"))
        log.warning("model cache %s is not writable (%s): converting the embedding model into %s for this "
                    "process; make RAG_MODEL_CACHE_DIR writable to convert once", cache_dir, exc, fallback)
        target_dir, target = fallback, fallback / target.name
    fp32 = target_dir / "model.onnx"
    if not fp32.is_file():
        log.info("exporting %s to ONNX (once) in %s", folder, target_dir)
        atomic_replace(fp32, lambda tmp: _export(folder, tmp))
    if precision == "int8" and not target.is_file():
        log.info("quantizing %s to int8 (once)", fp32)
        atomic_replace(target, lambda tmp: _quantize(fp32, tmp))
    return target


def _export(folder: Path, out: Path) -> None:
    set_offline_mode()
    import torch
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]
    sample = tokenizer(["an example sentence", "another"], padding=True, return_tensors="pt")

    class Encoder(torch.nn.Module):
        """Keyword arguments only: transformers 5's forward takes other parameters positionally."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, inputs))).last_hidden_state

    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "hidden"]}
    # the tracer's warnings concern shapes the dynamic axes cover; checked by the equivalence test instead
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the TorchScript exporter: the dynamo one needs onnxscript, and gives the same graph here
        torch.onnx.export(Encoder(), tuple(sample[n] for n in names), str(out), input_names=names,
                          output_names=["hidden"], dynamic_axes=axes, opset_version=OPSET, dynamo=False)


def _quantize(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # the quantizer's root-logger advice to pre-process images
    try:
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
