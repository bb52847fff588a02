"""One set of generation rules for every backend: slots, stop strings, the loop cut and the time limit."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from rag.generation.base import Backend, GenerationParams, GenerationSlots, GenerationTimeoutError
from rag.generation.cleanup import cut_at_stops
from rag.generation.formats import PromptFormat

log = logging.getLogger(__name__)


class Generation:
    """A `Generator` over any `Backend`: what the QA service, the page and the generation server call.

    `stream` takes a slot before the first piece (GeneratorBusyError when none frees up), ends at the
    format's stop strings or when the text starts looping (`cut_at_stops`), ends at `params.timeout_s`
    with what it has, and on any of these, or when the consumer closes it early, tells the backend to
    stop and gives the slot back.
    """

    def __init__(self, backend: Backend, prompt_format: PromptFormat, slots: GenerationSlots) -> None:
        self.backend = backend
        self.format = prompt_format
        self.slots = slots
        self.model_id = backend.model_id
        self.is_demo = backend.is_demo
        self.prompt_format = prompt_format.name

    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def context_window(self) -> int:
        return self.backend.context_window

    def warm_up(self) -> None:
        self.backend.warm_up()

    def render(self, instruction: str, context: str) -> str:
        return self.format.render(instruction, context)

    def count_tokens(self, text: str) -> int:
        return self.backend.count_tokens(text)

    def truncate(self, text: str, tokens: int) -> str:
        return self.backend.truncate(text, tokens)

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        """The answer in pieces, as the backend produces them."""
        return self.slots.stream(self._stream(prompt, params), params.owner)

    def _stream(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        cancel = threading.Event()
        deadline = time.monotonic() + params.timeout_s
        # the request's own first: a server that takes only a few (OpenAI's API: four) gets those
        stops = (*(s for s in params.stops if s and s not in self.format.stops), *self.format.stops)
        pieces = self.backend.produce(prompt, params, stops, cancel)
        written: list[str] = []
        try:
            for piece in cut_at_stops(pieces, stops):
                yield piece
                written.append(piece)
                if time.monotonic() > deadline:
                    break
            # a backend also ends its stream at the limit (waiting on a slow server): over time is the limit
            if time.monotonic() > deadline:
                log.warning("generation stopped at its time limit of %g s (RAG_GENERATION_TIMEOUT_S)",
                            params.timeout_s)
                if params.fail_on_time_limit:
                    raise GenerationTimeoutError(params.timeout_s, "".join(written))
        finally:
            cancel.set()
            pieces.close()  # the backend's own cleanup: its model thread stops, its connection closes

    def generate(self, prompt: str, params: GenerationParams) -> str:
        """The whole answer at once."""
        return "".join(self.stream(prompt, params))
