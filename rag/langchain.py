"""LangChain adapters: the index as a `BaseRetriever`, the QA service as a `Runnable`, so teams can compose them."""

from __future__ import annotations

from collections.abc import Iterator

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda
from pydantic import ConfigDict

from rag.qa import Answer, QAService
from rag.search import Searcher, SearchMode
from rag.types import Hit


def hit_to_document(hit: Hit) -> Document:
    """A LangChain Document for a retrieved chunk (text as content; path, page, score, ids as metadata)."""
    return Document(page_content=hit.text, metadata={
        "chunk_id": hit.chunk_id, "path": hit.path, "title": hit.title, "page": hit.page,
        "position": hit.position, "score": hit.score, "dense_score": hit.dense_score,
    })


class IndexRetriever(BaseRetriever):
    """Retrieves chunks from a published index (hybrid search by default)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    searcher: Searcher
    k: int = 5
    mode: SearchMode | None = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun
                                ) -> list[Document]:
        return [hit_to_document(h) for h in self.searcher.search(query, self.k, self.mode).hits]


def qa_runnable(service: QAService) -> Runnable[str, Answer]:
    """question -> `Answer` (sources, support and timings included); `.batch` answers in order.

    Batches run no more questions at once than the generator has slots, so they queue instead of
    getting "busy" errors.
    """
    return RunnableLambda(service.ask, name="OnPremQA").with_config(
        max_concurrency=service.generator.slots.limit)


def qa_stream_runnable(service: QAService) -> Runnable[str, str]:
    """question -> the answer text, streamed piece by piece with `.stream`."""

    def pieces(questions: Iterator[str]) -> Iterator[str]:
        for question in questions:
            for item in service.ask_stream(question):
                if isinstance(item, str):
                    yield item

    return RunnableGenerator(pieces, name="OnPremQAStream")
