"""The API's request bodies and its error responses (answers are the `rag ... --json` shapes, documented in
the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

SearchModeName = Literal["dense", "keyword", "hybrid"]
MAX_BATCH = 32


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def one_or_many(one: str | None, many: list[str] | None, names: tuple[str, str]) -> list[str]:
    """The texts of a request that takes one (`names[0]`) or a batch (`names[1]`), never both or neither."""
    if (one is None) == (many is None):
        raise ValueError(f"give either '{names[0]}' (one) or '{names[1]}' (a list)")
    return [one] if one is not None else list(many or [])


def exactly_one(*names: str) -> ConfigDict:
    """Extra fields refused, and the schema saying that exactly one of `names` is given (never null)."""
    return ConfigDict(extra="forbid", json_schema_extra={"oneOf": [{"required": [n]} for n in names]})


class SearchRequest(BaseModel):
    """One query (`query`) or a batch (`queries`)."""

    model_config = exactly_one("query", "queries")

    # typed without None: an explicit null is refused like a wrong type; left out, the field is None
    query: str = Field(None, min_length=1, pattern=r"\S")  # type: ignore[assignment]
    queries: list[Annotated[str, Field(min_length=1, pattern=r"\S")]] = Field(  # type: ignore[assignment]
        None, min_length=1, max_length=MAX_BATCH)
    k: int = Field(5, ge=1, le=100)
    mode: SearchModeName | None = None
    # each page's best chunk before any page's second; false: chunks strictly by score (default: the
    # server's `distinct_pages`)
    distinct: StrictBool | None = None  # true or false, not "yes" or 1 (the schema says boolean)

    @model_validator(mode="after")
    def _one_of(self) -> "SearchRequest":
        self.texts  # noqa: B018 - raises for neither or both
        return self

    @property
    def texts(self) -> list[str]:
        return one_or_many(self.query, self.queries, ("query", "queries"))


class AskRequest(BaseModel):
    """One question (`question`) or a batch (`questions`)."""

    model_config = exactly_one("question", "questions")

    question: str = Field(None, min_length=1, pattern=r"\S")  # type: ignore[assignment]
    questions: list[Annotated[str, Field(min_length=1, pattern=r"\S")]] = Field(  # type: ignore[assignment]
        None, min_length=1, max_length=MAX_BATCH)
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


MODEL_NAME = "rag"  # the one model this API offers, as OpenAI clients name it
# a user message with text: in its content, or in a text part of it
USER_TEXT = {"type": "object", "required": ["role", "content"], "properties": {
    "role": {"const": "user"},
    "content": {"anyOf": [{"type": "string", "pattern": r"\S"},
                          {"type": "array", "contains": {"type": "object", "required": ["type", "text"], "properties": {
                              "type": {"const": "text"}, "text": {"type": "string", "pattern": r"\S"}}}}]}}}


class ChatRequest(BaseModel):
    """OpenAI's chat completions request; fields this service does not use are accepted and ignored,
    except those that would change what an OpenAI client expects back (n > 1, tools)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description=f"{MODEL_NAME!r}, the one model of this service (another is a 404, as OpenAI says)")
    messages: list[ChatMessage] = Field(min_length=1, max_length=200, json_schema_extra={"contains": USER_TEXT},
                                        description="The last user message with text is the question")
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


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong and what to do, in one line")
    type: str = Field(description="OpenAI's error type: invalid_request_error, authentication_error, "
                                  "permission_error, not_found_error, conflict, rate_limit_error, ...")


class ErrorResponse(BaseModel):
    """Every error, in OpenAI's shape so its clients show the message."""

    error: ErrorDetail


ERROR_MEANINGS = {
    400: "The request is not valid (a field, a parameter or the body), said in one line",
    401: "No token, or a token that is unknown, revoked or expired",
    403: "The token's scope or the user's role does not allow this",
    404: "Not found, or not readable by the caller (the two are not told apart)",
    409: "In conflict with the current state (a file changed since it was indexed, a job already running)",
    413: "The request body is larger than RAG_API_MAX_BODY_KB",
    415: "The body is not JSON (or, for a page image, the document's format has none)",
    421: "Single-user mode answers only at localhost",
    429: "Over the token's request or answer budget, or the generator is busy: retry after Retry-After",
    503: "Not available now (nothing indexed yet, the users file invalid, every renderer busy): retry later",
    504: "The model took too long to answer",
}


def errors(*codes: int) -> dict[int | str, dict]:
    """The OpenAPI `responses` entries of these error status codes."""
    return {code: {"model": ErrorResponse, "description": ERROR_MEANINGS[code]} for code in codes}
