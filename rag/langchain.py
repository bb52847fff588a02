"""LangChain adapters, so teams can compose our parts with theirs: the index as a retriever, the local
generator as a chat model, the QA service as runnables.

Each behaves like any LangChain integration: tests/test_langchain.py runs LangChain's own standard
suites (`langchain-tests`) against them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForLLMRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda
from langchain_core.runnables.config import RunnableConfig, run_in_executor
from pydantic import ConfigDict, Field

from rag.generation.base import GenerationParams, GenerationTimeoutError, Generator, GeneratorBusyError
from rag.prompt import CITE_HINT, CITE_HINT_MANY, context_budget, number_passages
from rag.qa import Answer, QAService
from rag.search import Searcher, SearchMode
from rag.types import Hit, Principal

BUSY_RETRY_S = 1.0  # between tries when every generation slot is taken

__all__ = ["IndexRetriever", "LocalChatModel", "GeneratorBusyError", "GenerationTimeoutError", "hit_to_document",
           "format_documents", "closed_qa_prompt", "qa_runnable", "qa_stream_runnable"]


def hit_to_document(hit: Hit) -> Document:
    """A LangChain Document for a retrieved chunk: its text as content, and as metadata the fields of
    `rag search --json` (chunk_id, path, page, unit, score, title)."""
    return Document(page_content=hit.text, metadata=hit.metadata())


class IndexRetriever(BaseRetriever):
    """Retrieves chunks from a published index (hybrid search by default).

    `k`, `mode`, `distinct` and `principal` are set at construction and may be given again to `invoke` for
    one call. `principal` (None: a trusted caller, who reads everything) restricts the search to what that
    user's groups may read, inside the search, as on the page. A retriever made for a principal cannot be
    widened at call time: another principal given to `invoke` is refused. `distinct` (None: the index's
    setting `distinct_pages`, on by default) gives each page's best chunk before any page's second; False
    gives the chunks by score, as the service takes them for its own answers (a page's neighbouring chunks
    together held the answer more often on our dev sets: 139 against 125 of 231).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    searcher: Searcher
    k: int = Field(5, ge=1)
    mode: SearchMode | None = None
    distinct: bool | None = None
    principal: Principal | None = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                k: int | None = None, mode: SearchMode | None = None,
                                principal: Principal | None = None, distinct: bool | None = None) -> list[Document]:
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be a positive integer, not {k!r}")
        if principal is not None and self.principal is not None and principal != self.principal:
            raise PermissionError("this retriever was made for one reader; it cannot search as another")
        result = self.searcher.search(query, k or self.k, mode or self.mode, principal or self.principal,
                                      distinct=self.distinct if distinct is None else distinct)
        return [hit_to_document(h) for h in result.hits]

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
                                       k: int | None = None, mode: SearchMode | None = None,
                                       principal: Principal | None = None,
                                       distinct: bool | None = None) -> list[Document]:
        # embedding, FAISS and SQLite are blocking (and the searcher is thread-safe): a worker thread
        # keeps the event loop free
        return await run_in_executor(None, self._get_relevant_documents, query, run_manager=run_manager.get_sync(),
                                     k=k, mode=mode, principal=principal, distinct=distinct)


class LocalChatModel(BaseChatModel):
    """The service's generator as a LangChain chat model: the in-process model or an on-prem completions
    server, whichever `generator` wraps (`rag.generation.make_generator`).

    The messages become one prompt in the generator's format (Dolly's closed-QA by default): the last
    human message is the instruction; the system messages, then the earlier turns, are its input. So a
    prompt with the passages as the system message and the question as the human one is exactly what
    `rag ask` sends (`closed_qa_prompt`).

    When every generation slot is taken, the call waits a second and tries again, `max_retries` times,
    then raises `GeneratorBusyError`; the time limit (`timeout`, seconds) raises `GenerationTimeoutError`
    (its `text` is what was written until then). No tool calling, structured output or images: the
    model has none.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    generator: Generator
    max_tokens: int = Field(200, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0, le=2)
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(0, ge=0, le=10)
    stop: list[str] | None = None

    @property
    def _llm_type(self) -> str:
        return "rag-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.generator.model_id, "prompt_format": self.generator.prompt_format,
                "max_tokens": self.max_tokens, "temperature": self.temperature}

    def batch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None, *,
              return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """As LangChain's, with no more inputs at once than the generator has slots: a batch queues
        instead of failing with "busy"."""
        return super().batch(inputs, self._bounded(config), return_exceptions=return_exceptions, **kwargs)

    async def abatch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None, *,
                     return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        return await super().abatch(inputs, self._bounded(config), return_exceptions=return_exceptions, **kwargs)

    def _bounded(self, config: RunnableConfig | list[RunnableConfig] | None
                 ) -> RunnableConfig | list[RunnableConfig]:
        limit = self.generator.slots.limit

        def bound(one: RunnableConfig | None) -> RunnableConfig:
            given = (one or {}).get("max_concurrency")
            return {**(one or {}), "max_concurrency": min(given, limit) if given else limit}

        return [bound(c) for c in config] if isinstance(config, list) else bound(config)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params.update(ls_provider="rag", ls_model_name=kwargs.get("model", self.generator.model_id),
                      ls_temperature=kwargs.get("temperature", self.temperature),
                      ls_max_tokens=kwargs.get("max_tokens", self.max_tokens))
        return params

    def render(self, messages: Sequence[BaseMessage], max_tokens: int | None = None) -> str:
        """The prompt for `messages`, its input cut to what the model's window leaves room for."""
        if not messages:
            raise ValueError("no messages to answer")
        system = [m.text for m in messages if isinstance(m, SystemMessage) and m.text]
        turns = [m for m in messages if not isinstance(m, SystemMessage)]
        if not turns and not system:
            raise ValueError("the messages hold no text to answer")
        instruction = turns[-1].text if turns else system.pop()
        earlier = [f"{'User' if isinstance(m, HumanMessage) else 'Assistant'}: {m.text}" for m in turns[:-1]]
        context = "\n\n".join([*system, "\n".join(earlier)] if earlier else system)
        g = self.generator
        budget = context_budget(instruction, g.render, g.count_tokens, g.context_window, max_tokens or self.max_tokens)
        if budget <= 0:
            raise ValueError(f"the message leaves no room in the model's window ({g.context_window} tokens) for "
                             f"{max_tokens or self.max_tokens} new tokens: shorten it or lower max_tokens")
        if context and g.count_tokens(context) > budget:
            context = g.truncate(context, budget)
        return g.render(instruction, context)

    def _params(self, stop: list[str] | None, kwargs: dict[str, Any]) -> GenerationParams:
        unknown = set(kwargs) - {"max_tokens", "temperature", "timeout"}
        if unknown:
            raise ValueError(f"unsupported argument(s) {', '.join(sorted(unknown))}: this model takes max_tokens, "
                             f"temperature, timeout and stop")
        return GenerationParams(max_new_tokens=kwargs.get("max_tokens", self.max_tokens),
                                temperature=kwargs.get("temperature", self.temperature),
                                timeout_s=kwargs.get("timeout", self.timeout),
                                stops=tuple([*(self.stop or []), *(stop or [])]), fail_on_time_limit=True)

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        params = self._params(stop, kwargs)
        prompt = self.render(messages, params.max_new_tokens)
        written: list[str] = []
        for piece in self._pieces(prompt, params):
            written.append(piece)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        # counted once the answer is whole; only this last chunk carries the usage and the model's name
        input_tokens = self.generator.count_tokens(prompt)
        output_tokens = self.generator.count_tokens("".join(written)) if written else 0
        usage = UsageMetadata(input_tokens=input_tokens, output_tokens=output_tokens,
                              total_tokens=input_tokens + output_tokens)
        yield ChatGenerationChunk(message=AIMessageChunk(
            content="", chunk_position="last", usage_metadata=usage,
            response_metadata={"model_name": self.generator.model_id, "finish_reason": "stop"}))

    def _pieces(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        """The generator's stream, its first piece retried while the slots are busy."""
        for attempt in range(self.max_retries + 1):
            stream = self.generator.stream(prompt, params)
            try:
                first = next(stream, None)  # the slot is taken here, or GeneratorBusyError
            except GeneratorBusyError:
                if attempt == self.max_retries:
                    raise
                time.sleep(BUSY_RETRY_S)
                continue
            if first is not None:
                yield first
                yield from stream
            return

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))


def format_documents(documents: Sequence[Document]) -> str:
    """Retrieved documents as the numbered passages `rag ask` gives the model ([1] ..., [2] ...)."""
    return number_passages([d.page_content for d in documents])


def closed_qa_prompt(passages: int = 1) -> ChatPromptTemplate:
    """The question-answering prompt of `rag ask` as a LangChain prompt: the numbered passages
    (`{context}`, see `format_documents`) as the system message, the question and the citation hint as
    the human one; `LocalChatModel` renders them in the generator's format."""
    hint = CITE_HINT if passages <= 1 else CITE_HINT_MANY
    return ChatPromptTemplate.from_messages([("system", "{context}"), ("human", "{question}\n\n" + hint)])


def qa_runnable(service: QAService) -> Runnable[str, Answer]:
    """question -> `Answer` (sources, support and timings included); `.batch` answers in order.

    Batches run no more questions at once than the generator has slots, so they queue instead of
    getting "busy" errors.
    """
    return RunnableLambda(service.ask, name="OnPremQA").with_config(max_concurrency=service.generator.slots.limit)


def qa_stream_runnable(service: QAService) -> Runnable[str, str]:
    """question -> the answer text, streamed piece by piece with `.stream`."""

    def pieces(questions: Iterator[str]) -> Iterator[str]:
        for question in questions:
            for item in service.ask_stream(question):
                if isinstance(item, str):
                    yield item

    return RunnableGenerator(pieces, name="OnPremQAStream")
