"""What every part of generation shares: the request, the errors, the slots and the two Protocols.

`Generator` is what callers use (the QA service, the page, the command line, the generation server);
`Backend` is what a model runtime implements (it only produces text pieces). `rag.generation.wrapper`
turns any backend into a generator with one set of rules.
"""

from __future__ import annotations

import threading
from collections.abc import Generator as PieceGenerator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class GeneratorBusyError(RuntimeError):
    """All generation slots are taken."""


class GenerationTimeoutError(TimeoutError):
    """The time limit ended a generation that asked to fail on it (`GenerationParams.fail_on_time_limit`);
    `text` holds what was generated until then."""

    def __init__(self, timeout_s: float, text: str) -> None:
        super().__init__(f"generation stopped at its time limit of {timeout_s:g} s with {len(text)} characters "
                         f"written: raise the limit (RAG_GENERATION_TIMEOUT_S) or ask for fewer tokens")
        self.text = text


@dataclass(frozen=True)
class GenerationParams:
    """Per-request generation settings.

    `stops`: strings that end this answer, beside the prompt format's own. `fail_on_time_limit`: raise
    GenerationTimeoutError at the time limit instead of ending quietly with the text so far (the QA
    service keeps what it has and marks it; a LangChain caller gets an exception, as from any model).
    """

    max_new_tokens: int = 200
    temperature: float = 0.0
    timeout_s: float = 60.0
    stops: tuple[str, ...] = ()
    fail_on_time_limit: bool = False
    owner: str = ""  # who asks (a user, a token): waiting questions are served in turn between owners


class GenerationSlots:
    """The bound on concurrent generations. Beyond it a question waits up to `wait_s` for a slot, then gets a
    clear "busy" error. Waiting questions are served in turn between their owners, not first come first
    served: one user's batch of 32 questions, each taking a slot in turn, cannot keep another user's single
    question waiting behind all of them (the owner served longest ago goes first; one owner's questions in
    the order they came)."""

    def __init__(self, limit: int, wait_s: float) -> None:
        self.limit = limit
        self.wait_s = wait_s
        self.in_use = 0  # generations running now (the API's metrics)
        self._lock = threading.Lock()
        self._waiting: list[tuple[str, threading.Event]] = []  # in arrival order
        self._served: dict[str, float] = {}  # owner -> when a slot was last given to them
        self._turn = 0  # a counter standing for time (no clock: ties between owners are broken by arrival)

    def acquire(self, owner: str = "") -> None:
        """Take a slot, waiting up to `wait_s` (in turn between owners); GeneratorBusyError when none frees up."""
        with self._lock:
            if self.in_use < self.limit and not self._waiting:
                self._grant(owner)
                return
            if self.wait_s <= 0:
                raise self._busy()
            event = threading.Event()
            entry = (owner, event)
            self._waiting.append(entry)
        if event.wait(self.wait_s):
            return  # granted by a release (in_use counted there)
        with self._lock:
            if event.is_set():  # granted just as the wait ended
                return
            self._waiting.remove(entry)
        raise self._busy()

    def _grant(self, owner: str) -> None:
        self.in_use += 1
        self._turn += 1
        self._served[owner] = self._turn
        if len(self._served) > 10_000:
            for key in sorted(self._served, key=self._served.__getitem__)[:5_000]:
                del self._served[key]

    def refuse_if_full(self) -> None:
        """GeneratorBusyError now if every slot is taken and questions do not queue: for a caller that
        must answer "busy" before it starts (a stream whose headers would already be sent)."""
        if self.in_use >= self.limit and self.wait_s <= 0:
            raise self._busy()

    def _busy(self) -> GeneratorBusyError:
        return GeneratorBusyError(
            f"the answer generator is busy ({self.limit} question(s) at a time); try again in a moment")

    def release(self) -> None:
        with self._lock:
            self.in_use -= 1
            if self._waiting and self.in_use < self.limit:
                # the owner served longest ago (never served: first), their earliest question
                owners = list(dict.fromkeys(owner for owner, _ in self._waiting))
                owner = min(owners, key=lambda o: self._served.get(o, 0))
                entry = next(e for e in self._waiting if e[0] == owner)
                self._waiting.remove(entry)
                self._grant(owner)
                entry[1].set()

    def stream(self, pieces: Iterator[str], owner: str = "") -> Iterator[str]:
        """`pieces` run while holding a slot; the slot is taken before the first piece is asked for and
        given back when they end, fail or the consumer closes the stream."""
        self.acquire(owner)
        try:
            yield from pieces
        finally:
            self.release()


@runtime_checkable
class Generator(Protocol):
    """A model that completes prompts, as every caller sees it (see `rag.generation.wrapper.Generation`)."""

    model_id: str
    is_demo: bool  # the embedded 135M model: the page and the CLI say so, and auto mode leads with quotes
    prompt_format: str  # "dolly" or "chat"
    slots: GenerationSlots

    @property
    def device(self) -> str: ...

    @property
    def context_window(self) -> int: ...

    def warm_up(self) -> None: ...

    def render(self, instruction: str, context: str) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    def truncate(self, text: str, tokens: int) -> str: ...

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[str]: ...

    def generate(self, prompt: str, params: GenerationParams) -> str: ...


class Backend(Protocol):
    """A model runtime: loads a model and produces the text pieces of a completion, nothing more.

    Slots, stop strings, the loop cut and the time limit are the wrapper's, the same for every backend.
    `produce` must end soon after `cancel` is set (the wrapper sets it when it has what it needs or the
    consumer went away) and must honour `params.timeout_s` itself while it waits for a first piece.
    """

    model_id: str
    is_demo: bool
    chat_template_known: bool  # False: the runtime cannot render the model's chat template

    @property
    def device(self) -> str: ...

    @property
    def context_window(self) -> int: ...

    def warm_up(self) -> None: ...

    def count_tokens(self, text: str) -> int: ...

    def truncate(self, text: str, tokens: int) -> str: ...

    def chat_prompt(self, message: str) -> str: ...

    def produce(self, prompt: str, params: GenerationParams, stops: Sequence[str],
                cancel: threading.Event) -> PieceGenerator[str, None, None]: ...
