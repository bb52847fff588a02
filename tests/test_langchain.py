"""Our LangChain parts pass LangChain's own standard suites (`langchain-tests`), and compose into the
same answer as `rag ask`.

The chat model suites run against a scripted backend (the adapter's logic, fast tier), the embedded
model in this process and the same model behind a real `rag serve-llm` process (slow tier).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import RunnablePassthrough
from langchain_tests.integration_tests import ChatModelIntegrationTests, RetrieversIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from ingest.job import run_ingest
from rag.generation import make_generator
from rag.generation.base import GenerationParams, GenerationTimeoutError, Generator, GeneratorBusyError
from rag.generation.cleanup import clean_answer
from rag.index import IndexReader
from rag.langchain import IndexRetriever, LocalChatModel, closed_qa_prompt, format_documents
from rag.qa import QAService
from rag.search import Searcher
from rag.settings import Settings, load_settings
from rag.types import Principal
from tests.conftest import SAMPLES, scripted_generator, serve_llm
from tests.docgen import HANGAR_QUESTION, write_hangar_pages

QUESTION = "How long is parental leave?"


@pytest.fixture(scope="module")
def sample_settings(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Settings:
    return load_settings(index_dir=tmp_path_factory.mktemp("lc") / "index", model_cache_dir=model_cache, device="cpu",
                         answer_passages=1, answer_mode="generative", max_new_tokens=40,
                         acl_roots={SAMPLES: ["everyone"]})


@pytest.fixture(scope="module")
def sample_searcher(sample_settings: Settings, embedder) -> Searcher:  # type: ignore[no-untyped-def]
    run_ingest(sample_settings, [SAMPLES], embedder=embedder, progress=False)
    return Searcher(embedder, IndexReader(sample_settings.index), sample_settings.search)


@pytest.fixture(scope="module")
def local_generator(sample_settings: Settings) -> Generator:
    """The embedded demo model (SmolLM2-135M-Instruct), in this process."""
    generator = make_generator(sample_settings.generation)
    generator.warm_up()
    return generator


# -- the retriever -----------------------------------------------------------------------------------
@pytest.mark.slow
class TestIndexRetriever(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _searcher(self, sample_searcher: Searcher) -> None:
        self.searcher = sample_searcher

    @property
    def retriever_constructor(self) -> type[IndexRetriever]:
        return IndexRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"searcher": self.searcher}

    @property
    def retriever_query_example(self) -> str:
        return QUESTION


@pytest.mark.slow
def test_retriever_takes_mode_and_reader_at_call_time(sample_searcher: Searcher) -> None:
    retriever = IndexRetriever(searcher=sample_searcher, k=3)
    [doc] = retriever.invoke(QUESTION, k=1, mode="keyword")
    assert set(doc.metadata) == {"chunk_id", "path", "page", "unit", "score", "title", "section"}  # `rag search --json`'s
    assert doc.metadata["path"].endswith("leave-policy.pdf") and doc.metadata["unit"] == "page"
    # a reader in no group that may read the samples gets nothing, inside the search
    assert retriever.invoke(QUESTION, principal=Principal(frozenset({"nobody"}))) == []
    assert len(retriever.invoke(QUESTION, principal=Principal.member_of([]))) == 3
    narrow = IndexRetriever(searcher=sample_searcher, principal=Principal(frozenset({"nobody"})))
    assert narrow.invoke(QUESTION) == []
    with pytest.raises(PermissionError):  # made for one reader: cannot be widened at call time
        narrow.invoke(QUESTION, principal=Principal(admin=True))
    with pytest.raises(ValueError, match="positive"):
        retriever.invoke(QUESTION, k=0)


def test_retriever_gives_each_pages_best_chunk_first_or_chunks_by_score(make_settings, embedder,  # type: ignore[no-untyped-def]
                                                                        tmp_path: Path) -> None:
    settings = make_settings(chunk_tokens=24, chunk_overlap_tokens=0)
    run_ingest(settings, [write_hangar_pages(tmp_path / "docs")], embedder=embedder, progress=False)
    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)

    def names(retriever: IndexRetriever, **call: Any) -> list[str]:
        return [Path(d.metadata["path"]).name for d in retriever.invoke(HANGAR_QUESTION, **call)]

    assert sorted(names(IndexRetriever(searcher=searcher, k=2))) == ["gate.txt", "hangar.txt"]
    by_score = IndexRetriever(searcher=searcher, k=2, distinct=False)
    assert names(by_score) == ["hangar.txt", "hangar.txt"]
    assert sorted(names(by_score, distinct=True)) == ["gate.txt", "hangar.txt"]  # for one call


class _SlowSearcher:
    """Stands in for a searcher whose search blocks (a cold model, a large index) for 0.3 s."""

    def search(self, query: str, k: int, mode: Any = None, principal: Any = None, distinct: Any = None) -> Any:
        from rag.types import Hit, SearchResult

        time.sleep(0.3)
        return SearchResult(query, [Hit(1, "/d/a.txt", "a", None, 0, 1.0, "text")][:k])


def test_async_retrieval_leaves_the_event_loop_free() -> None:
    retriever = IndexRetriever.model_construct(searcher=_SlowSearcher(), k=1, mode=None, principal=None)

    async def main() -> tuple[list[Document], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        docs = await retriever.ainvoke("q")
        task.cancel()
        return docs, ticks

    docs, ticks = asyncio.run(main())
    assert [d.metadata["path"] for d in docs] == ["/d/a.txt"]
    assert ticks >= 10  # the loop ran other tasks while the search blocked its worker thread


# -- the chat model ----------------------------------------------------------------------------------
class _ChatSuite:
    """What the standard suites need to know about our chat model (shared by its backends)."""

    generator: Generator

    @property
    def chat_model_class(self) -> type[LocalChatModel]:
        return LocalChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"generator": self.generator}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # short answers keep the real models' runs short; the rest as the suite sets it
        return {**super().standard_chat_model_params, "max_tokens": 24}  # type: ignore[misc]

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def supports_image_inputs(self) -> bool:
        return False

    @property
    def supports_model_override(self) -> bool:
        return False  # one model per generator: `model=` at call time is refused, not ignored

    @property
    def returns_usage_metadata(self) -> bool:
        return True


class TestChatModelUnit(_ChatSuite, ChatModelUnitTests):
    generator = scripted_generator("Hello! How can I help you today?")


class TestChatModelScripted(_ChatSuite, ChatModelIntegrationTests):
    generator = scripted_generator("Hello! How can I help you today?", slots=4)


@pytest.mark.slow
class TestChatModelInProcess(_ChatSuite, ChatModelIntegrationTests):
    @pytest.fixture(autouse=True)
    def _generator(self, local_generator: Generator) -> None:
        self.generator = local_generator


@pytest.fixture(scope="module")
def served_default_model(model_cache: Path) -> Iterator[str]:
    yield from serve_llm(None, RAG_MODEL_CACHE_DIR=str(model_cache), RAG_MAX_CONCURRENT_GENERATIONS="2")


@pytest.fixture(scope="module")
def http_generator(served_default_model: str, sample_settings: Settings) -> Generator:
    """The same model behind a real `rag serve-llm` process."""
    settings = sample_settings.model_copy(update={"generator_backend": "http", "generator_url": served_default_model})
    return make_generator(settings.generation)


@pytest.mark.slow
class TestChatModelOverHttp(_ChatSuite, ChatModelIntegrationTests):
    @pytest.fixture(autouse=True)
    def _generator(self, http_generator: Generator) -> None:
        self.generator = http_generator


def test_chat_model_stops_where_asked_and_reports_usage() -> None:
    model = LocalChatModel(generator=scripted_generator("Hello there, how can you help? ### End more"))
    answer = model.invoke("Hello")
    assert answer.content == "Hello there, how can you help? "  # Dolly's end key ends it
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] == 6
    assert answer.response_metadata["model_name"] == "scripted"
    assert model.invoke("Hello", stop=["you"]).content == "Hello there, how can "
    assert LocalChatModel(generator=model.generator, stop=["how"]).invoke("Hello").content == "Hello there, "
    with pytest.raises(ValueError, match="unsupported argument"):
        model.invoke("Hello", model="gpt-4")


def test_chat_model_errors_are_exceptions_a_caller_can_catch() -> None:
    busy = scripted_generator("one two three", slots=1)
    held = busy.stream("x", GenerationParams())
    next(held)  # takes the only slot
    started = time.monotonic()
    with pytest.raises(GeneratorBusyError):
        LocalChatModel(generator=busy, max_retries=1).invoke("Hello")
    assert time.monotonic() - started >= 1.0  # it waited and tried once more before giving up
    held.close()
    assert LocalChatModel(generator=busy).invoke("Hello").content == "one two three"

    slow = scripted_generator(" ".join(f"w{i}" for i in range(100)), delay_s=0.02)
    with pytest.raises(GenerationTimeoutError) as caught:
        LocalChatModel(generator=slow, timeout=0.2).invoke("Hello")
    assert caught.value.text.startswith("w0 w1") and "w99" not in caught.value.text


def test_conversation_becomes_one_prompt_in_the_generators_format() -> None:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    model = LocalChatModel(generator=scripted_generator("ok"))
    prompt = model.render([SystemMessage("[1] Lunch is at noon."), HumanMessage("When is lunch?"),
                           AIMessage("At noon [1]."), HumanMessage("And dinner?")])
    instruction, context = prompt.split("### Instruction:\n")[1].split("\n\nInput:\n")
    assert instruction == "And dinner?"
    assert context.startswith("[1] Lunch is at noon.\n\nUser: When is lunch?\nAssistant: At noon [1].")


# -- a chain of LangChain parts gives `rag ask`'s answer -------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local_generator", "http_generator"])
def test_chain_of_our_parts_answers_as_rag_ask(backend: str, request: pytest.FixtureRequest,
                                               sample_settings: Settings, sample_searcher: Searcher) -> None:
    generator: Generator = request.getfixturevalue(backend)
    service = QAService(sample_searcher, generator, sample_settings.answers)
    retriever = IndexRetriever(searcher=sample_searcher, k=1)
    chat = LocalChatModel(generator=generator, max_tokens=sample_settings.answers.max_new_tokens)
    chain = ({"context": retriever | format_documents, "question": RunnablePassthrough()}
             | closed_qa_prompt(passages=1) | chat | StrOutputParser())
    for question in ("When is lunch served in the cafeteria?", QUESTION):
        answer = service.ask(question)
        assert answer.mode == "generative" and answer.answer
        # `rag ask` tidies the model's text (clean_answer) before showing it; the chain returns it raw
        assert clean_answer(chain.invoke(question)) == answer.answer, question
