"""The API's request bodies (responses are the `rag ... --json` shapes, documented in the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SearchModeName = Literal["dense", "keyword", "hybrid"]
MAX_BATCH = 32


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def one_or_many(one: str | None, many: list[str] | None, names: tuple[str, str]) -> list[str]:
    """The texts of a request that takes one (`names[0]`) or a batch (`names[1]`), never both or neither."""
    if (one is None) == (many is None):
        raise ValueError(f"give either '{names[0]}' (one) or '{names[1]}' (a list)")
    return [one] if one is not None else list(many or [])


class SearchRequest(_Strict):
    """One query (`query`) or a batch (`queries`)."""

    query: str | None = Field(None, min_length=1)
    queries: list[str] | None = Field(None, min_length=1, max_length=MAX_BATCH)
    k: int = Field(5, ge=1, le=100)
    mode: SearchModeName | None = None

    @model_validator(mode="after")
    def _one_of(self) -> "SearchRequest":
        self.texts  # noqa: B018 - raises for neither or both
        return self

    @property
    def texts(self) -> list[str]:
        return one_or_many(self.query, self.queries, ("query", "queries"))


class AskRequest(_Strict):
    """One question (`question`) or a batch (`questions`)."""

    question: str | None = Field(None, min_length=1)
    questions: list[str] | None = Field(None, min_length=1, max_length=MAX_BATCH)
    mode: SearchModeName | None = None
    passages: int | None = Field(None, ge=1, le=10)

    @model_validator(mode="after")
    def _one_of(self) -> "AskRequest":
        self.texts  # noqa: B018 - raises for neither or both
        return self

    @property
    def texts(self) -> list[str]:
        return one_or_many(self.question, self.questions, ("question", "questions"))


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str = ""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id...: accepted, not used

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content if p.type == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """OpenAI's chat completions request; fields this service does not use are accepted and ignored,
    except those that would change what an OpenAI client expects back (n > 1, tools)."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    temperature: float | None = Field(None, ge=0, le=2)
    n: int = Field(1, ge=1, le=1)
    tools: list[dict] | None = Field(None, max_length=0)
    conversation_id: str | None = Field(None, max_length=64, description="Continue this stored conversation "
                                        "(our extension; the OpenAI client sends it with extra_body).")


class IngestRequest(_Strict):
    folder: str = Field(min_length=1, max_length=4096)


class RenameRequest(_Strict):
    title: str = Field(min_length=1, max_length=120)
