"""The question-answering service: retrieve, decide whether to answer, prompt, generate, check support."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rag.extractive import Quote, choose_quotes
from rag.generation import GenerationParams, Generator, clean_answer, make_generator
from rag.embedding import Embedder
from rag.passages import collapse_near_duplicates, merge_neighbours
from rag.prompt import pack_prompt
from rag.rerank import Reranker, make_reranker
from rag.search import Searcher, SearchMode, build_searcher, keyword_terms
from rag.settings import AnswerSettings, Settings
from rag.support import check_facts, content_words, extract_facts, missing_identifier, stem, stems, subject_missing
from rag.types import Hit, Principal, page_unit

NOT_FOUND = "I could not find this in the indexed documents."
UNSURE_NOTE = "The documents may not answer this question; this is the closest passage."
DEMO_NOTE = ("Demo model: small and often wrong — rely on the quoted sources; see the README to connect a real "
             "model.")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
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
        """An answer `to_dict` wrote (a stored conversation reopened)."""
        fields = {**data, "sources": [Source(**{**s, "chunk_ids": tuple(s.get("chunk_ids", ()))})
                                      for s in data.get("sources", [])],
                  "support": [SentenceSupport(**s) for s in data.get("support", [])],
                  "generated_support": [SentenceSupport(**s) for s in data.get("generated_support", [])]}
        return cls(**fields)


@dataclass
class StatementCheck:
    """A statement checked against the indexed documents, sentence by sentence (`rag check`)."""

    statement: str
    sentences: list[SentenceSupport]
    sources: list[Source]

    def source_of(self, support: SentenceSupport) -> Source | None:
        return next((s for s in self.sources if s.number == support.source), None)


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


# words that say what kind of answer is wanted, not what it is about
QUESTION_WORDS = frozenset("many much far often soon long kind type called happens happen get make way".split())


def sentence_coverage(weights: dict[str, float], texts: Sequence[str]) -> float:
    """The largest weight of question words that one passage sentence (with its neighbours) holds."""
    best = 0.0
    for text in texts:
        sentences = evidence_sentences(text)
        per_sentence = [stems(s) for s in sentences]
        for i in range(len(sentences)):
            window = set().union(*per_sentence[max(0, i - 1):i + 2])
            best = max(best, sum(w for t, w in weights.items() if stem(t) in window))
    return best


_LINE_BREAK = re.compile(r"\n(?!\s*\n|\s*(?:\(?\d{1,2}[.)]|[-*•])\s)")


def evidence_sentences(text: str) -> list[str]:
    """A passage's sentences that can be evidence: list markers, page furniture and fragments of fewer
    than two content words (a "1." on its own line) never are. A line break inside a sentence (PDF
    text) is a space; one before a list item or a blank line ends the sentence."""
    pieces = [p for line in _LINE_BREAK.sub(" ", text).splitlines() for p in split_sentences(line)]
    return [p for p in pieces if len(content_words(p)) >= 2]


class QAService:
    """Answers questions from the index with a local model; one instance serves many questions."""

    def __init__(self, searcher: Searcher, generator: Generator,
                 settings: AnswerSettings, reranker: Reranker | None = None, embedder: Embedder | None = None) -> None:
        self.searcher = searcher
        # quotes and support marks compare sentences with the model the index was searched with
        self.embedder = embedder or searcher.embedder
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
                 principal: Principal | None = None, extra: int = 0) -> Retrieved:
        """The passages for the model: search, collapse near-duplicates, re-rank (when configured),
        keep the best `passages`, merge neighbouring chunks; with the relevance abstention is decided on.
        Only passages `principal` may read are considered (None: an admin or a trusted local caller)."""
        s = self.settings
        n = passages or s.passages
        # headroom so the passages dropped as duplicates leave `n` distinct ones
        k = max(s.rerank_candidates, n + extra) if self.reranker else n + extra + 4
        result = self.searcher.search(question, k, mode, principal)
        timings = {"embed": result.timings_ms.get("embed", 0.0), "search": result.timings_ms.get("search", 0.0)}
        hits = collapse_near_duplicates(result.hits, s.duplicate_threshold)
        if self.reranker is not None and hits:
            t0 = time.perf_counter()
            hits = self.reranker.rerank_batch([question], [hits])[0]
            timings["rerank"] = (time.perf_counter() - t0) * 1000
        more = hits[n:n + extra]
        hits = hits[:n]
        return Retrieved(merge_neighbours(hits), self.relevance(question, hits, principal), timings, result.version,
                         more)

    def relevance(self, question: str, hits: list[Hit], principal: Principal | None = None) -> float:
        """How likely the passages answer the question, 0-1.

        0.3 × the best cosine similarity + 0.1 × the share of the question's words (weighted by rarity,
        IDF, over what the asker may read) anywhere in the passages + 0.6 × that share in the best single
        sentence with its neighbours. A near miss ("When is dinner served in the cafeteria?" against the
        lunch hours) reads much like the passage and shares most of its words, but no one sentence holds
        the word the question turns on; the sentence-level share is what tells them apart (tuned on the
        samples' answerable and unanswerable questions and the dev sets: bench/abstention.py). An
        identifier in the question (a version "4.1", a code "HR-05") that no passage holds makes it 0.
        """
        if not hits:
            return 0.0
        texts = [h.text for h in hits]
        if missing_identifier(question, texts):
            return 0.0
        # keyword-only search has no cosines: the word coverage alone decides then
        cosine = max((h.dense_score for h in hits if h.dense_score is not None), default=None)
        terms = [t for t in keyword_terms(question) if t not in QUESTION_WORDS]
        if not terms:
            return cosine or 0.0
        # word rarity over what the asker may read: never a signal from documents they cannot see
        total, presence = self.searcher.term_statistics(terms, [h.chunk_id for h in hits], principal)
        total = max(total, 1)
        weights = {t: max(float(np.log((total + 1) / (count + 0.5))), 0.0) for t, (count, _) in presence.items()}
        weight_sum = sum(weights.values())
        if weight_sum <= 0:
            return cosine or 0.0
        passage = sum(weights[t] for t, (_, present) in presence.items() if present) / weight_sum
        sentence = sentence_coverage(weights, texts) / weight_sum
        if cosine is None:
            return 0.2 * passage + 0.8 * sentence
        return 0.3 * cosine + 0.1 * passage + 0.6 * sentence

    def params(self) -> GenerationParams:
        s = self.settings
        return GenerationParams(max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                                timeout_s=s.timeout_s)

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
        quote = self._quote(question, sources, retrieved.more) if answer_mode != "generative" else None
        hedged = answer_mode != "generative" and retrieved.relevance < self.settings.confident_threshold
        if hedged and quote is not None:
            # unsure the documents answer it at all: no model answer, the closest passage under a warning
            timings.update(generate=0.0, total=(time.perf_counter() - started) * 1000)
            yield quote.text
            sources, quote = self._attach(sources, quote, retrieved.more)
            _mark_cited(sources, quote.text)
            yield Answer(question, quote.text, False, sources, self.check_support(quote.text, sources), g.model_id,
                         _rounded(timings), round(retrieved.relevance, 4), retrieved.index_version, "extractive",
                         note=UNSURE_NOTE + (f" {DEMO_NOTE}" if demo else ""), quote=quote.text, hedged=True)
            return
        lead_with_quote = answer_mode == "extractive" or (answer_mode == "auto" and demo)
        if lead_with_quote and quote is not None:
            yield quote.text
        text = ""
        if answer_mode != "extractive":
            t0 = time.perf_counter()
            pieces = []
            for piece in g.stream(packed.text, params):
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
            sources, quote = self._attach(sources, quote, retrieved.more)
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

    def _attach(self, sources: list[Source], quote: Quote, more: list[Hit]) -> tuple[list[Source], Quote]:
        """`sources` and `quote`; a quote from a passage beyond the model's adds that passage as the next
        source, and its citation is renumbered to match."""
        if quote.source <= len(sources):
            return sources, quote
        number = len(sources) + 1
        added = self._source(number, more[quote.source - number])
        return [*sources, added], Quote(quote.text.replace(f"[{quote.source}]", f"[{number}]"), number, quote.score)

    def _quote(self, question: str, sources: list[Source], more: list[Hit]) -> Quote | None:
        """The passage sentence(s) that answer `question`, verbatim, ending with their citation."""
        candidates = [(src.number, evidence_sentences(src.text)) for src in sources]
        candidates += [(len(sources) + i, evidence_sentences(h.text)) for i, h in enumerate(more, start=1)]
        [quote] = choose_quotes([question], [candidates], self.embedder)
        if quote is None:
            return None
        verdict = self._verdict(question, quote.text)
        return Quote(f"{verdict}{quote.text.rstrip()} [{quote.source}]", quote.source, quote.score)

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
                      chunk_ids=(hit.chunk_id, *hit.merged_ids), unit=page_unit(hit.path))


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
    vectors = embedder.embed_batch(claims + [e for _, e in evidence])
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
                     make_reranker(settings.rerank))
