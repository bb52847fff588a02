"""Prompt formats: Dolly's closed-QA prompt, or the model's own chat template; chosen by the factory."""

from __future__ import annotations

from typing import Protocol

from rag.generation.base import Backend
from rag.generation.cleanup import STOP_STRINGS
from rag.prompt import dolly_prompt
from rag.settings import ConfigError, GenerationSettings


class PromptFormat(Protocol):
    """Renders an instruction and its context as the model's prompt; `stops` end the model's answer."""

    @property
    def name(self) -> str: ...

    @property
    def stops(self) -> tuple[str, ...]: ...

    def render(self, instruction: str, context: str) -> str: ...


class DollyFormat:
    """Dolly's closed-QA format (databricks-dolly-15k); any model follows it well enough to answer."""

    name = "dolly"
    stops = STOP_STRINGS

    def render(self, instruction: str, context: str) -> str:
        return dolly_prompt(instruction, context)


class ChatTemplateFormat:
    """One user message (context, then instruction) in the model's own chat template."""

    name = "chat"
    # a chat model ends at its end-of-turn token; Dolly's keys still end one that drifts into them
    stops = STOP_STRINGS

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def render(self, instruction: str, context: str) -> str:
        return self.backend.chat_prompt(f"{context}\n\n{instruction}" if context else instruction)


def make_prompt_format(settings: GenerationSettings, backend: Backend) -> PromptFormat:
    """Dolly's format unless the settings ask for the chat template (on the sample questions SmolLM2
    answered in Dolly's format and drifted with its own template; see docs/benchmarks.md)."""
    if settings.prompt_format != "chat":
        return DollyFormat()
    if not backend.chat_template_known:
        raise ConfigError(f"RAG_PROMPT_FORMAT=chat, but the {settings.backend} backend cannot render "
                          f"{backend.model_id}'s chat template (a completions endpoint takes the prompt as text): "
                          "set RAG_PROMPT_FORMAT=dolly")
    return ChatTemplateFormat(backend)
