"""The question-answering service: retrieve, decide whether to answer, prompt, generate, check support."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from rag.analysis import analyzer
from rag.extractive import ScoredCandidates, choose_quote, score_candidates, scorer_for
from rag.generation import GenerationParams, Generator, clean_answer, make_generator
from rag.embedding import Embedder
from rag.embedding.base import embedding_languages
from rag.passages import collapse_near_duplicates, merge_neighbours
from rag.prompt import pack_prompt
from rag.rerank import Reranker, make_reranker
from rag.search import Searcher, SearchMode, build_searcher
from rag.sentences import evidence_sentences, sentence_spans
from rag.settings import AnswerSettings, Settings
from rag.support import (check_facts, code_part, content_words, done_without, extract_facts, fuzzy_words,
                          missing_identifier, set_aside, stem, stems, subject_missing, word_forms)
from rag.types import Hit, Principal, page_unit

NOT_FOUND = "I could not find this in the indexed documents."
UNSURE_NOTE = "The documents may not answer this question; this is the closest passage."
DEMO_NOTE = ("Demo model: small and often wrong — rely on the quoted sources; see the README to connect a real "
             "model.")
_CITATION = re.compile(r"\[(\d{1,2})\]")
VERDICT_CLAUSE_SHARE = 1.0  # of the statement's words one clause of the quote must hold (BoolQ: 0.65 commits 3x as often, 79% right; 1.0: 91% right)
_YES_NO = re.compile(r"^\s*(is|are|was|were|does|do|did|can|could|has|have|had|will|would|should|shall|may|"
                     r"must)\b(\s+(not|n't))?", re.IGNORECASE)
_CITED = re.compile(r"\s*\[\d{1,2}\]")


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
    unit: str = "page"  # what `page` counts in this format: page, slide or sheet
    section: str = ""  # the heading path the passage stands under ("Backups › Retention")


@dataclass
class SentenceSupport:
    """How well one answer sentence is backed by the passages."""

    sentence: str
    supported: bool
    score: float  # best cosine similarity with a passage sentence
    overlap: float  # share of the sentence's content words found in the passages
    source: int | None  # number of the passage holding the best evidence
    evidence: str  # the passage sentence that supports it ("" when none does)
    start: int = -1  # where the sentence lies in the answer text (with its citations)
    end: int = -1
    reason: str = ""  # why it is not supported: "number 10 EUR is not in the passages"


@dataclass
class Retrieved:
    """The passages chosen for a question and how relevant they look."""

    hits: list[Hit]
    relevance: float
    timings_ms: dict[str, float]
    index_version: int = 0
    more: list[Hit] = field(default_factory=list)  # the next best passages, candidates for a quote
    scored: ScoredCandidates | None = None  # the quotable sentences of hits and more, scored for the question


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
    mode: str = "generative"  # what `answer` is: generative (the model's), extractive (a quote), abstained
    generated: str = ""  # the model's own answer when a quote is shown instead
    generated_support: list[SentenceSupport] = field(default_factory=list)
    note: str = ""  # one line for the reader: why a quote is shown, that the model is the demo model
    quote: str = ""  # the passage sentence(s) answering the question, when answer_mode computed one
    hedged: bool = False  # the documents may not answer the question: only the closest passage is quoted

    def to_dict(self) -> dict[str, Any]:
        """The answer as `rag ask --json` and the HTTP API give it."""
        data = asdict(self)
        for source in data["sources"]:
            source["score"] = round(source["score"], 6)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Answer":
        """An answer `to_dict` wrote (a stored conversation reopened); fields it does not know are left out."""
        def known(kind: type, item: dict[str, Any]) -> dict[str, Any]:
            names = {f.name for f in fields(kind)}
            return {k: v for k, v in item.items() if k in names}

        return cls(**{**known(cls, data),
                      "sources": [Source(**{**known(Source, s), "chunk_ids": tuple(s.get("chunk_ids", ()))})
                                  for s in data.get("sources", [])],
                      "support": [SentenceSupport(**known(SentenceSupport, s)) for s in data.get("support", [])],
                      "generated_support": [SentenceSupport(**known(SentenceSupport, s))
                                            for s in data.get("generated_support", [])]})


@dataclass(frozen=True)
class Shown:
    """The passages an answer is about to be built from, yielded by `QAService.ask_stream` before any of its
    text: a caller whose stream is cut (a client that went away) still knows what the reader was shown."""

    sources: list[Source]


@dataclass(frozen=True)
class QuotedAnswer:
    """A quote as shown: its sentences with their citations, and the passages beyond the model's it cites
    (sources to add when it is shown)."""

    text: str
    added: list[Source]
    numbers: tuple[int, ...] = ()  # the passage numbers (1: the model's first) its sentences come from, in order


@dataclass
class StatementCheck:
    """A statement checked against the indexed documents, sentence by sentence (`rag check`)."""

    statement: str
    sentences: list[SentenceSupport]
    sources: list[Source]

    def source_of(self, support: SentenceSupport) -> Source | None:
        return next((s for s in self.sources if s.number == support.source), None)


# What decides abstention: the features of `QAService.relevance_features` and the weights of the linear score
# on them, searched on the dev sets and the two QA sets by bench/abstention_real.py (with the thresholds).
RELEVANCE_FEATURES = ("cosine", "passage_coverage", "sentence_coverage", "quote_score", "unknown_words",
                      "missing_name", "sentence_cosine")
RELEVANCE_WEIGHTS = (0.816, 0.105, 0.308, 0.006, -1.841, -0.312, 0.335)

# words that say what kind of answer is wanted, not what it is about
QUESTION_WORDS = frozenset("many much far often soon long kind type called happens happen get make way".split())


def sentence_coverage(weights: dict[str, float], texts: Sequence[str]) -> float:
    """The largest weight of question words that one passage sentence (with its neighbours) holds."""
    best = 0.0
    forms = {t: word_forms(t) for t in weights}  # each question word's, once for every window
    for text in texts:
        sentences = evidence_sentences(text)
        per_sentence = [fuzzy_words(s) for s in sentences]
        for i in range(len(sentences)):
            window = set().union(*per_sentence[max(0, i - 1):i + 2])
            best = max(best, sum(w for t, w in weights.items() if forms[t] & window))
    return best


class QAService:
    """Answers questions from the index with a local model; one instance serves many questions."""

    def __init__(self, searcher: Searcher, generator: Generator,
                 settings: AnswerSettings, reranker: Reranker | None = None, embedder: Embedder | None = None,
                 embedding_languages: Sequence[str] = ("en",)) -> None:
        self.searcher = searcher
        # the languages the embedding model covers (the packaged one's by default): quotes compare meanings
        # in these only (`scorer_for`)
        self.embedding_languages = tuple(embedding_languages)
        # quotes and support marks compare sentences with the model the index was searched with
        self.embedder = embedder or searcher.embedder
        self.generator = generator
        self.settings = settings
        self.reranker = reranker

    def warm_up(self) -> None:
        """Load the index, the embedding model, the word lists relevance reads, the reranker and the generator."""
        self.searcher.warm_up()
        analyzer().warm_up_names(self.searcher.current().store.keyword_languages())
        warm = getattr(self.reranker, "warm_up", None)
        if warm is not None:
            warm()
        self.generator.warm_up()

    def retrieve(self, question: str, passages: int | None = None, mode: SearchMode | None = None,
                 principal: Principal | None = None, extra: int = 0) -> Retrieved:
        """The passages for the model: search, collapse near-duplicates, re-rank (when configured),
        keep the best `passages`, merge neighbouring chunks; with the relevance abstention is decided on.
        Only passages `principal` may read are considered (None: an admin or a trusted local caller)."""
        s = self.settings
        n = passages or s.passages
        # headroom so the passages dropped as duplicates leave `n` distinct ones
        k = max(s.rerank_candidates, n + extra) if self.reranker else n + extra + 4
        # chunks strictly by score: a page's next chunks join its best one (`merge_neighbours`), where the
        # answer often stands (on the dev sets, distinct pages here: fact in the answer 139 -> 125 of 231)
        result = self.searcher.search(question, k, mode, principal, distinct=False)
        timings = {"embed": result.timings_ms.get("embed", 0.0), "search": result.timings_ms.get("search", 0.0)}
        hits = collapse_near_duplicates(result.hits, s.duplicate_threshold)
        if self.reranker is not None and hits:
            t0 = time.perf_counter()
            hits = self.reranker.rerank_batch([question], [hits])[0]
            timings["rerank"] = (time.perf_counter() - t0) * 1000
        more = hits[n:n + extra]
        hits = hits[:n]
        merged = merge_neighbours(hits)
        relevance, scored = self._relevance(question, merged, more, principal)
        return Retrieved(merged, relevance, timings, result.version, more, scored)

    def relevance_features(self, question: str, hits: list[Hit], more: Sequence[Hit] = (),
                           principal: Principal | None = None,
                           scored: ScoredCandidates | None = None) -> tuple[list[float], ScoredCandidates]:
        """The `RELEVANCE_FEATURES` of the retrieved passages for `question` (and the scored quotable sentences
        they were computed from): the best cosine similarity of a passage; the share of the question's words,
        weighted by their rarity over what `principal` may read, anywhere in the passages and in their best
        sentence with its neighbours (a word matched by its stem or by its first five letters: "Kennwörter"
        meets "Kennwort"); the score of the best quotable sentence; the share of its words no readable document
        holds; whether a name it gives (`Analyzer.names`) is in no passage; the best similarity of one
        sentence."""
        pool = [*hits, *more]
        ids = [h.chunk_id for h in pool]
        terms = self._question_terms(question)
        weights, total = self._word_statistics(terms, ids, principal) if terms else ({}, 0)
        language = self.searcher.question_language(question)
        if scored is None or scored.chunk_ids != tuple(ids):
            scored = score_candidates(question, list(enumerate(pool, start=1)), self.embedder, weights,
                                      self._scorer(language))
        cosines = [h.dense_score for h in pool if h.dense_score is not None]
        if len(cosines) < len(pool):  # a keyword-only search: the passages' similarity computed here
            asked = self.embedder.embed_queries([question])[0]
            cosines = [float(v @ asked) for v in self.embedder.embed_to_compare([h.text for h in pool])]
        weight_sum = sum(weights.values())
        texts = [h.text for h in pool]
        words = set().union(*(fuzzy_words(x) for x in texts)) if texts else set()
        passage = sentence = 0.0
        if weight_sum > 0:
            passage = sum(w for t, w in weights.items() if word_forms(t) & words) / weight_sum
            sentence = sentence_coverage(weights, texts) / weight_sum
        # a word no readable document holds in any form ("matplotlib" asked of the LaTeX manuals), which says
        # more the more text there is (in a dozen short files most words are missing): not counted below 100
        # chunks, in full from 10,000 on; a German verb or adjective by how rare it is ("kaputt" says nothing);
        # nor what the question says it does without ("without curl or netcat")
        unknown = 0.0
        aside = set_aside(question)
        scale = min(1.0, max(0.0, (float(np.log10(max(total, 1))) - 2) / 2))
        analysis = analyzer()
        if terms and scale > 0:
            absent = self.searcher.unknown_words(terms, principal) - aside
            if absent:
                unknown = scale * sum(analysis.topic_weight(w, question, language) for w in absent) / len(terms)
        # a name the question gives (`Analyzer.names`: "Flask", "zstd", "UDP") that no passage holds, nor its
        # heading or its document's title ("PostgreSQL" of a manual's page), unless the question does without
        # it: the passages are about something else
        names = [n for n in analysis.names(question, language) if not done_without(n, aside)]
        missing = 0.0
        if names:  # a code is looked for inside the passages' words ("68k" in "m68k"), a name by its forms
            headings = [f"{h.title}\n{h.section}" for h in pool]
            known = " ".join(f"{heading}\n{text}" for heading, text in zip(headings, texts)).lower()
            placed = words | fuzzy_words(" ".join(headings))
            missing = float(any(not fuzzy_words(n) & placed if n.isalpha() else code_part(n.lower()) not in known
                                for n in names))
        return [max(cosines, default=0.0), passage, sentence, scored.best, unknown, missing, scored.best_similarity], scored

    def relevance(self, question: str, hits: list[Hit], principal: Principal | None = None,
                  more: Sequence[Hit] = ()) -> float:
        """How likely the passages (`hits`, and the next best `more`) answer the question, 0-1: a linear score
        of `relevance_features` (`RELEVANCE_WEIGHTS`), searched on the real-documentation dev sets' answerable
        and unanswerable questions and the QA sets (bench/abstention_real.py). A near miss ("When is dinner served
        in the cafeteria?" against the lunch hours) reads much like the passage, but no one sentence holds the
        word the question turns on. An identifier in the question (a version "4.1", a code "HR-05", a name
        written as code: "core.maxFileSize", "MaxMatrixRows") that no passage or its heading holds makes it 0."""
        return self._relevance(question, hits, more, principal)[0]

    @staticmethod
    def missing_name(question: str, passages: Sequence[Hit]) -> str:
        """An identifier the question names that no passage (its text, its heading path or its document's title)
        holds, else "": the passages cannot answer about it, whatever else they share with the question
        (`missing_identifier`). The title counts as the relevance's "missing name" feature counts it: a page
        titled "Apache Module mod_ratelimit" is about mod_ratelimit though its paragraphs say "This module"."""
        return missing_identifier(question, [f"{h.title}\n{h.section}\n{h.text}" for h in passages])

    def _relevance(self, question: str, hits: list[Hit], more: Sequence[Hit],
                   principal: Principal | None) -> tuple[float, ScoredCandidates | None]:
        if not hits or self.missing_name(question, [*hits, *more]):
            return 0.0, None
        features, scored = self.relevance_features(question, hits, more, principal)
        return round(min(1.0, max(0.0, float(np.dot(RELEVANCE_WEIGHTS, features)))), 6), scored

    def _word_statistics(self, terms: list[str], chunk_ids: list[int], principal: Principal | None
                         ) -> tuple[dict[str, float], int]:
        """({word: its rarity, IDF}, chunks in scope), counted over what the asker may read: never a signal
        from documents they cannot see."""
        total, presence = self.searcher.term_statistics(terms, chunk_ids, principal)
        total = max(total, 1)
        return {t: max(float(np.log((total + 1) / (count + 0.5))), 0.0) for t, (count, _) in presence.items()}, total

    def _question_terms(self, question: str) -> list[str]:
        """The question's words that relevance and quotes weigh: the ones its keyword search takes
        (`Searcher.question_words`, without its language's stop words), less the words that only say what kind
        of answer is wanted."""
        return [t for t in self.searcher.question_words(question) if t not in QUESTION_WORDS]

    def word_weights(self, question: str, chunk_ids: list[int], principal: Principal | None = None) -> dict[str, float]:
        """The rarity (IDF) of each of the question's words over what `principal` may read."""
        terms = self._question_terms(question)
        return self._word_statistics(terms, chunk_ids, principal)[0] if terms else {}

    def params(self) -> GenerationParams:
        s = self.settings
        return GenerationParams(max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                                timeout_s=s.timeout_s)

    def ask_stream(self, question: str, params: GenerationParams | None = None, passages: int | None = None,
                   mode: SearchMode | None = None, principal: Principal | None = None
                   ) -> Iterator[str | Shown | Answer]:
        """Yield the passages the answer is built from (`Shown`, unless it abstains), the answer's text pieces
        as they are generated, then the finished `Answer`.

        `passages` and `mode` override the settings' number of passages and search mode for this question;
        `principal` limits the passages (and so everything the model reads) to what that user may read.
        """
        if len(question) > self.settings.max_question_chars:
            raise ValueError(f"the question has {len(question)} characters, more than the limit of "
                             f"{self.settings.max_question_chars} (RAG_MAX_QUESTION_CHARS): shorten it")
        params = params or self.params()
        started = time.perf_counter()
        quote_extra = self.settings.quote_passages if self.settings.mode != "generative" else 0
        retrieved = self.retrieve(question, passages, mode, principal, quote_extra)
        timings, hits = dict(retrieved.timings_ms), retrieved.hits
        if not hits or retrieved.relevance < self.settings.abstain_threshold:
            timings.update(generate=0.0, total=(time.perf_counter() - started) * 1000)
            yield NOT_FOUND
            # no sources: passages this far from the question would only look like evidence
            yield Answer(question, NOT_FOUND, True, [], [], self.generator.model_id, _rounded(timings),
                         round(retrieved.relevance, 4), retrieved.index_version, "abstained")
            return
        g = self.generator
        packed = pack_prompt(question, hits, g.render, g.count_tokens, g.context_window, params.max_new_tokens,
                             g.truncate)
        sources = [self._source(i, h) for i, h in enumerate(packed.passages, start=1)]
        answer_mode = self.settings.mode
        demo = g.is_demo
        quote = (self._quote(question, list(packed.passages), retrieved.more, principal, retrieved.scored)
                 if answer_mode != "generative" else None)
        hedged = answer_mode != "generative" and retrieved.relevance < self.settings.confident_threshold
        yield Shown([*sources, *(quote.added if quote is not None else [])])
        if hedged and quote is not None:
            # unsure the documents answer it at all: no model answer, the closest passage under a warning
            timings.update(generate=0.0, total=(time.perf_counter() - started) * 1000)
            yield quote.text
            sources = [*sources, *quote.added]
            _mark_cited(sources, quote.text)
            yield Answer(question, quote.text, False, sources, self.check_support(quote.text, sources), g.model_id,
                         _rounded(timings), round(retrieved.relevance, 4), retrieved.index_version, "extractive",
                         note=UNSURE_NOTE + (f" {DEMO_NOTE}" if demo else ""), quote=quote.text, hedged=True)
            return
        lead_with_quote = answer_mode == "extractive" or (answer_mode == "auto" and demo)
        prompt = packed.text
        if lead_with_quote and quote is not None:
            yield quote.text
            if demo:  # the small demo model reads only the passage the quote is from, under its number: it
                # drifts with more, and its answer is only kept beside the quote
                number = quote.numbers[0]
                passage = ([*packed.passages, *retrieved.more])[number - 1]
                prompt = pack_prompt(question, [passage], g.render, g.count_tokens, g.context_window,
                                     params.max_new_tokens, g.truncate, start=number).text
        text = ""
        if answer_mode != "extractive":
            t0 = time.perf_counter()
            pieces = []
            for piece in g.stream(prompt, params):
                pieces.append(piece)
                if not lead_with_quote:
                    yield piece
            timings["generate"] = (time.perf_counter() - t0) * 1000
            text = clean_answer("".join(pieces))
        generated_support = self.check_support(text, sources) if text else []
        backed = bool(text) and all(s.supported for s in generated_support)
        note = DEMO_NOTE if demo else ""
        if answer_mode == "generative" or (answer_mode == "auto" and not demo and backed) or quote is None:
            if not text:  # nothing usable came out (empty, filler, a loop): never an empty answer
                timings["total"] = (time.perf_counter() - started) * 1000
                yield Answer(question, NOT_FOUND, True, [], [], g.model_id, _rounded(timings),
                             round(retrieved.relevance, 4), retrieved.index_version, "abstained",
                             note="The model gave no usable answer and no passage sentence answers the question.")
                return
            shown, support, used, generated, generated_support = text, generated_support, "generative", "", []
        else:
            sources = [*sources, *quote.added]
            shown, used, generated = quote.text, "extractive", text
            support = self.check_support(shown, sources)
            if answer_mode == "auto" and text and not backed:
                note = ("The model's answer was not backed by the documents: the passage that answers it is "
                        "quoted instead.") + (f" {DEMO_NOTE}" if demo else "")
        _mark_cited(sources, shown)
        timings["total"] = (time.perf_counter() - started) * 1000
        yield Answer(question, shown, False, sources, support, g.model_id, _rounded(timings),
                     round(retrieved.relevance, 4), retrieved.index_version, used, generated, generated_support, note,
                     quote.text if quote else "")

    def check_statements(self, statements: list[str], principal: Principal | None = None,
                         passages: int = 3) -> list[StatementCheck]:
        """Each statement checked sentence by sentence against the `passages` best passages for it (that
        `principal` may read), with the same machinery as the answers' support marks."""
        out = []
        for statement in statements:
            retrieved = self.retrieve(statement, passages, None, principal)
            sources = [self._source(i, h) for i, h in enumerate(retrieved.hits, start=1)]
            out.append(StatementCheck(statement, self.check_support(statement, sources), sources))
        return out

    def _quote(self, question: str, passages: list[Hit], more: list[Hit], principal: Principal | None,
               scored: ScoredCandidates | None = None) -> "QuotedAnswer | None":
        """The passage sentence(s) that answer `question`, verbatim (after the term their passage describes
        when they do not name it: "-x: When recording ..."), each followed by its citation: chosen from
        every passage retrieved, the model's (numbered as its sources) and the next best ones (numbered after
        them, in the order the quote cites them, and added to the sources when the quote is shown)."""
        hits = [*passages, *more]
        if scored is None or scored.chunk_ids != tuple(h.chunk_id for h in hits):
            weights = self.word_weights(question, [h.chunk_id for h in hits], principal)
            scored = score_candidates(question, list(enumerate(hits, start=1)), self.embedder, weights,
                                      self._scorer(self.searcher.question_language(question)))
        parts = choose_quote(question, scored, self.settings.quote_margin)
        if not parts:
            return None
        numbers: dict[int, int] = {}
        added: list[Source] = []
        for part in parts:
            if part.source not in numbers:
                numbers[part.source] = part.source if part.source <= len(passages) else len(passages) + len(added) + 1
                if part.source > len(passages):
                    added.append(self._source(numbers[part.source], hits[part.source - 1]))
        text = " ".join(f"{part.text.rstrip()} [{numbers[part.source]}]" for part in parts)
        return QuotedAnswer(self._verdict(question, parts[0].text) + text, added, tuple(p.source for p in parts))

    def _scorer(self, language: str) -> tuple[float, ...]:
        """The quote scorer's weights for a question in `language` (`Searcher.question_language`, `scorer_for`)."""
        return scorer_for(language, self.embedding_languages)

    def _verdict(self, question: str, quoted: str) -> str:
        """"Yes. " or "No. " before the quote of a yes/no question, only when the support check can tell:
        the question, said as a statement, is backed by the quoted sentence (yes), or it is backed but for
        a negation (no). Otherwise no verdict: the quote speaks for itself."""
        match = _YES_NO.match(question)
        if not match:
            return ""
        statement = question[match.end():].strip().rstrip("?").strip()
        source = Source(1, 0, "", "", None, 1.0, quoted)
        [mark] = check_support(statement, [source], self.embedder, self.settings.support_threshold)[:1] or [None]
        if mark is None:
            return ""
        # every word of the statement in one clause of the quote: "free for employees; visitors register"
        # does not say parking is free for visitors, though it holds all three words
        words = {stem(w) for w in content_words(statement)}
        clauses = [stems(c) for c in re.split(r"[;:,(]|\s[-–]\s", quoted)]
        if not words or max(len(words & clause) / len(words) for clause in clauses) < VERDICT_CLAUSE_SHARE:
            return ""
        if mark.supported:
            return "Yes. "
        return "No. " if "negat" in mark.reason or "opposite" in mark.reason else ""

    def ask(self, question: str, params: GenerationParams | None = None, passages: int | None = None,
            mode: SearchMode | None = None, principal: Principal | None = None) -> Answer:
        """Answer one question (the stream, collected)."""
        *_, answer = self.ask_stream(question, params, passages, mode, principal)
        assert isinstance(answer, Answer)
        return answer

    def check_support(self, answer: str, sources: list[Source]) -> list[SentenceSupport]:
        """Per-sentence support of `answer` by `sources` (see `check_support`)."""
        return check_support(answer, sources, self.embedder, self.settings.support_threshold)

    @staticmethod
    def _source(number: int, hit: Hit) -> Source:
        return Source(number, hit.chunk_id, hit.path, hit.title, hit.page, hit.score, hit.text,
                      chunk_ids=(hit.chunk_id, *hit.merged_ids), unit=page_unit(hit.path), section=hit.section)


def check_support(answer: str, sources: Sequence[Source], embedder: Embedder,
                  threshold: float = 0.55) -> list[SentenceSupport]:
    """For each answer sentence: is it backed by the passages it cites (all of them when it cites none)?

    Supported means all three: every number (with its unit), time, date, name and code in it is in
    those passages (rag/support.py); one passage sentence matches its content (embedding cosine at
    least `threshold`, or most of its content words); and that sentence does not differ from
    it in negation. The evidence is that one sentence, never a list marker or a whole passage.
    """
    spans, claims, claim_facts_list = [], [], []
    for a, b in sentence_spans(answer):
        raw = answer[a:b]
        claim = " ".join(_CITED.sub("", raw).split())
        facts = extract_facts(claim)
        if content_words(claim) or facts.quantities:  # "The answer is 1." is checked; "Yes." is not
            spans.append((a, b, raw))
            claims.append(claim)
            claim_facts_list.append(facts)
    evidence = [(src.number, sent) for src in sources for sent in evidence_sentences(src.text)]
    if not claims:
        return []
    if not evidence:
        return [SentenceSupport(c, False, 0.0, 0.0, None, "", a, b, "no passage to check it against")
                for (a, b, _), c in zip(spans, claims)]
    vectors = embedder.embed_to_compare(claims + [e for _, e in evidence])
    similarity = vectors[: len(claims)] @ vectors[len(claims):].T
    facts_by_source = {src.number: extract_facts(src.text, evidence=True) for src in sources}
    evidence_facts = [extract_facts(e, evidence=True) for _, e in evidence]
    out = []
    for row, ((start, end, raw), claim, claim_facts) in enumerate(zip(spans, claims, claim_facts_list)):
        cited = {int(n) for n in _CITATION.findall(raw)} & set(facts_by_source)
        pool = [src for src in sources if not cited or src.number in cited]
        allowed = [i for i, (number, _) in enumerate(evidence) if number in {s.number for s in pool}]
        words = content_words(claim) or {claim.lower()}
        best, best_rank, best_overlap = allowed[0] if allowed else 0, -1.0, 0.0
        for i in allowed:
            overlap = len(words & content_words(evidence[i][1])) / len(words)
            found = check_facts(claim_facts, [evidence[i][1]], [evidence_facts[i]]).missing == ""
            rank = float(similarity[row, i]) + 0.5 * overlap + (0.25 if found else 0.0)
            if rank > best_rank:
                best, best_rank, best_overlap = i, rank, overlap
        score = float(similarity[row, best]) if allowed else 0.0
        # numbers and times must be in the evidence sentence itself, not merely somewhere in the passage
        reason = check_facts(claim_facts, [s.text for s in pool], [facts_by_source[s.number] for s in pool],
                             [evidence_facts[best]] if allowed else None).missing
        if not reason and (missing := subject_missing(claim, [s.text for s in pool])):
            reason = f"the passages never mention {missing!r}"
        if not reason and score < threshold and best_overlap < 0.75:
            reason = "no passage sentence says this"
        if not reason and claim_facts.negated != evidence_facts[best].negated:
            reason = ("it negates what the passage says" if claim_facts.negated
                      else "the passage says the opposite (a negation)")
        supported = not reason
        out.append(SentenceSupport(claim, supported, round(score, 4), round(best_overlap, 4),
                                   evidence[best][0] if allowed else None,
                                   evidence[best][1] if supported else "", start, end, reason))
    return out


def _mark_cited(sources: list[Source], text: str) -> None:
    """Mark the sources `text` cites as [n]."""
    for number in {int(n) for n in _CITATION.findall(text)}:
        if 1 <= number <= len(sources):
            sources[number - 1].cited = True


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in timings.items()}


def build_service(settings: Settings) -> QAService:
    """The QA service over the configured index with the configured models (loaded lazily)."""
    return QAService(build_searcher(settings), make_generator(settings.generation), settings.answers,
                     make_reranker(settings.rerank), embedding_languages=embedding_languages(settings.embedding))
