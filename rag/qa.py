"""The question-answering service: retrieve, decide whether to answer, prompt, generate, check support."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from rag.generation import GenerationParams, TransformersGenerator, make_generator
from rag.http_generation import HttpGenerator
from rag.passages import collapse_near_duplicates, merge_neighbours
from rag.prompt import pack_prompt
from rag.rerank import Reranker, make_reranker
from rag.search import STOPWORDS, Searcher, SearchMode, build_searcher, keyword_terms
from rag.settings import Settings
from rag.types import Hit, Principal

NOT_FOUND = "I could not find this in the indexed documents."
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_CITATION = re.compile(r"\[(\d{1,2})\]")
_WORD = re.compile(r"\w+")


@dataclass
class Source:
    """A passage given to the model, numbered as in the prompt."""

    number: int
    chunk_id: int
    path: str
    title: str
    page: int | None
    score: float
    text: str
    cited: bool = False
    chunk_ids: tuple[int, ...] = ()  # every chunk in the passage (neighbours merged into one)


@dataclass
class SentenceSupport:
    """How well one answer sentence is backed by the passages."""

    sentence: str
    supported: bool
    score: float  # best cosine similarity with a passage sentence
    overlap: float  # share of the sentence's content words found in the passages
    source: int | None  # number of the passage holding the best evidence
    evidence: str
    start: int = -1  # where the sentence lies in the answer text (with its citations)
    end: int = -1


@dataclass
class Retrieved:
    """The passages chosen for a question and how relevant they look."""

    hits: list[Hit]
    relevance: float
    timings_ms: dict[str, float]
    index_version: int = 0


@dataclass
class Answer:
    """An answer with its sources and per-sentence support."""

    question: str
    answer: str
    abstained: bool
    sources: list[Source] = field(default_factory=list)
    support: list[SentenceSupport] = field(default_factory=list)
    model: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    relevance: float = 0.0  # what abstention was decided on (see QAService.relevance)
    index_version: int = 0  # the published index version that was searched


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence in `text`, surrounding white space excluded."""
    bounds, start = [], 0
    for m in _SENTENCE.finditer(text):
        bounds.append((start, m.start()))
        start = m.end()
    bounds.append((start, len(text)))
    spans = []
    for a, b in bounds:
        piece = text[a:b]
        if piece.strip():
            a += len(piece) - len(piece.lstrip())
            spans.append((a, a + len(piece.strip())))
    return spans


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOPWORDS}


class QAService:
    """Answers questions from the index with a local model; one instance serves many questions."""

    def __init__(self, searcher: Searcher, generator: TransformersGenerator | HttpGenerator,
                 settings: Settings, reranker: Reranker | None = None) -> None:
        self.searcher = searcher
        self.generator = generator
        self.settings = settings
        self.reranker = reranker

    def warm_up(self) -> None:
        """Load the index, the embedding model, the reranker and the generator."""
        self.searcher.warm_up()
        warm = getattr(self.reranker, "warm_up", None)
        if warm is not None:
            warm()
        self.generator.warm_up()

    def retrieve(self, question: str, passages: int | None = None, mode: SearchMode | None = None,
                 principal: Principal | None = None) -> Retrieved:
        """The passages for the model: search, collapse near-duplicates, re-rank (when configured),
        keep the best `passages`, merge neighbouring chunks; with the relevance abstention is decided on.
        Only passages `principal` may read are considered (None: an admin or a trusted local caller)."""
        s = self.settings
        n = passages or s.answer_passages
        # headroom so the passages dropped as duplicates leave `n` distinct ones
        k = max(s.rerank_candidates, n) if self.reranker else n + 4
        result = self.searcher.search(question, k, mode, principal)
        timings = {"embed": result.timings_ms.get("embed", 0.0), "search": result.timings_ms.get("search", 0.0)}
        hits = collapse_near_duplicates(result.hits, s.duplicate_threshold)
        if self.reranker is not None and hits:
            t0 = time.perf_counter()
            hits = self.reranker.rerank_batch([question], [hits])[0]
            timings["rerank"] = (time.perf_counter() - t0) * 1000
        hits = hits[:n]
        return Retrieved(merge_neighbours(hits), self.relevance(question, hits, principal), timings, result.version)

    def relevance(self, question: str, hits: list[Hit], principal: Principal | None = None) -> float:
        """How likely the passages answer the question, 0-1: the mean of the best cosine similarity and
        the share of the question's words (weighted by rarity, IDF) that the passages contain.

        The cosine alone cannot tell "a passage on a neighbouring topic" from "the passage": a question
        whose rare words (names, products, codes) appear in no passage is most likely not covered.
        """
        if not hits:
            return 0.0
        # keyword-only search has no cosines: the word coverage alone decides then
        cosine = max((h.dense_score for h in hits if h.dense_score is not None), default=None)
        terms = keyword_terms(question)
        if not terms:
            return cosine or 0.0
        # word rarity over what the asker may read: never a signal from documents they cannot see
        total, presence = self.searcher.term_statistics(terms, [h.chunk_id for h in hits], principal)
        total = max(total, 1)
        weights = {t: float(np.log((total + 1) / (count + 0.5))) for t, (count, _) in presence.items()}
        weight_sum = sum(max(w, 0.0) for w in weights.values())
        found = sum(max(weights[t], 0.0) for t, (_, present) in presence.items() if present)
        coverage = found / weight_sum if weight_sum > 0 else 0.0
        return coverage if cosine is None else 0.5 * cosine + 0.5 * coverage

    def params(self) -> GenerationParams:
        s = self.settings
        return GenerationParams(max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                                timeout_s=s.generation_timeout_s)

    def ask_stream(self, question: str, params: GenerationParams | None = None, passages: int | None = None,
                   mode: SearchMode | None = None, principal: Principal | None = None) -> Iterator[str | Answer]:
        """Yield the answer's text pieces as they are generated, then the finished `Answer`.

        `passages` and `mode` override the settings' number of passages and search mode for this question;
        `principal` limits the passages (and so everything the model reads) to what that user may read.
        """
        if len(question) > self.settings.max_question_chars:
            raise ValueError(f"the question has {len(question)} characters, more than the limit of "
                             f"{self.settings.max_question_chars} (RAG_MAX_QUESTION_CHARS): shorten it")
        params = params or self.params()
        started = time.perf_counter()
        retrieved = self.retrieve(question, passages, mode, principal)
        timings, hits = dict(retrieved.timings_ms), retrieved.hits
        if not hits or retrieved.relevance < self.settings.abstain_threshold:
            timings.update(generate=0.0, total=(time.perf_counter() - started) * 1000)
            yield NOT_FOUND
            # no sources: passages this far from the question would only look like evidence
            yield Answer(question, NOT_FOUND, True, [], [], self.generator.model_id, _rounded(timings),
                         round(retrieved.relevance, 4), retrieved.index_version)
            return
        g = self.generator
        packed = pack_prompt(question, hits, g.render, g.count_tokens, g.context_window, params.max_new_tokens,
                             g.truncate)
        t0 = time.perf_counter()
        pieces = []
        for piece in g.stream(packed.text, params):
            pieces.append(piece)
            yield piece
        timings["generate"] = (time.perf_counter() - t0) * 1000
        text = "".join(pieces).strip()
        sources = [self._source(i, h) for i, h in enumerate(packed.passages, start=1)]
        for number in {int(n) for n in _CITATION.findall(text)}:
            if 1 <= number <= len(sources):
                sources[number - 1].cited = True
        support = self.check_support(text, sources)
        timings["total"] = (time.perf_counter() - started) * 1000
        yield Answer(question, text, False, sources, support, g.model_id, _rounded(timings),
                     round(retrieved.relevance, 4), retrieved.index_version)

    def ask(self, question: str, params: GenerationParams | None = None, passages: int | None = None,
            mode: SearchMode | None = None, principal: Principal | None = None) -> Answer:
        """Answer one question (the stream, collected)."""
        *_, answer = self.ask_stream(question, params, passages, mode, principal)
        assert isinstance(answer, Answer)
        return answer

    def check_support(self, answer: str, sources: list[Source]) -> list[SentenceSupport]:
        """For each answer sentence, its best supporting passage sentence (embedding cosine) and word overlap."""
        spans = [(a, b, " ".join(_CITATION.sub("", answer[a:b]).split())) for a, b in sentence_spans(answer)]
        spans = [(a, b, sentence) for a, b, sentence in spans if content_words(sentence)]
        sentences = [sentence for _, _, sentence in spans]
        evidence = [(src.number, sent) for src in sources for sent in split_sentences(src.text)]
        if not sentences or not evidence:
            return [SentenceSupport(s, False, 0.0, 0.0, None, "", a, b) for a, b, s in spans]
        vectors = self.searcher.embedder.embed_batch(sentences + [e for _, e in evidence])
        similarity = vectors[: len(sentences)] @ vectors[len(sentences):].T
        passage_words = set().union(*(content_words(src.text) for src in sources))
        out = []
        for row, (start, end, sentence) in enumerate(spans):
            best = int(np.argmax(similarity[row]))
            words = content_words(sentence)
            overlap = len(words & passage_words) / len(words)
            score = float(similarity[row, best])
            supported = score >= self.settings.support_threshold or overlap >= 0.75
            out.append(SentenceSupport(sentence, supported, round(score, 4), round(overlap, 4),
                                       evidence[best][0], evidence[best][1], start, end))
        return out

    @staticmethod
    def _source(number: int, hit: Hit) -> Source:
        return Source(number, hit.chunk_id, hit.path, hit.title, hit.page, hit.score, hit.text,
                      chunk_ids=(hit.chunk_id, *hit.merged_ids))


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in timings.items()}


def build_service(settings: Settings) -> QAService:
    """The QA service over `settings.index_dir` with the configured models (loaded lazily)."""
    return QAService(build_searcher(settings), make_generator(settings), settings, make_reranker(settings))
