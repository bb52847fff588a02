"""Answer generation with a locally hosted model.

- `base`: the `Generator` Protocol callers use, the `Backend` Protocol runtimes implement, the request,
  the errors and the slots;
- `wrapper.Generation`: one set of rules over any backend (slots, stop strings, loop cut, time limit);
- `formats`: Dolly's closed-QA prompt or the model's chat template;
- backends: `transformers_backend` (in process), `http` (an OpenAI-compatible server on-prem);
- `cleanup`: stop strings, loop cut and filler rules; `server`: `rag serve-llm`.
"""

from __future__ import annotations

from typing import Literal

from rag.generation.base import (Backend, GenerationParams, GenerationSlots, GenerationTimeoutError, Generator,
                                 GeneratorBusyError)
from rag.generation.cleanup import STOP_STRINGS, clean_answer, cut_at_stops, repetition_cut
from rag.generation.formats import make_prompt_format
from rag.generation.transformers_backend import ModelLocation, resolve_generator_model
from rag.generation.wrapper import Generation
from rag.settings import GenerationSettings

__all__ = ["Backend", "GenerationParams", "GenerationSlots", "GenerationTimeoutError", "Generator",
           "GeneratorBusyError", "STOP_STRINGS",
           "clean_answer", "cut_at_stops", "repetition_cut", "ModelLocation", "resolve_generator_model",
           "Generation", "make_backend", "make_generator"]


def make_backend(settings: GenerationSettings, kind: Literal["transformers", "http"] | None = None) -> Backend:
    """The backend the settings name (or `kind`): in-process transformers, or an on-prem completions server."""
    if (kind or settings.backend) == "http":
        from rag.generation.http import HttpBackend

        return HttpBackend(settings)
    from rag.generation.transformers_backend import TransformersBackend

    return TransformersBackend(settings)


def make_generator(settings: GenerationSettings, kind: Literal["transformers", "http"] | None = None) -> Generator:
    """A generator over the configured backend, with the configured prompt format and slots; a format the
    backend cannot render fails here, at start-up, with the fix."""
    backend = make_backend(settings, kind)
    return Generation(backend, make_prompt_format(settings, backend),
                      GenerationSlots(settings.max_concurrent, settings.queue_s))
