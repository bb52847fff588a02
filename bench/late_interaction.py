"""Late interaction over MiniLM's token embeddings: does it choose better quotes, or abstain better?

Issue 25 names it as the signal word-overlap statistics lack: each of the question's tokens is compared
with each of a sentence's tokens by their contextual MiniLM vectors (ColBERT's MaxSim: for every question
token its best match in the sentence, averaged), so "retention" can meet "kept for" where no stem is shared.
MiniLM was not trained for this (ColBERT models are), so it is measured, not assumed.

For every question of the dev sets (tests/data/devsets), retrieved as `rag ask` retrieves (answer passages
plus quote passages), this computes:
- per candidate sentence: today's quote features (`rag.extractive.sentence_features`) and MaxSim of the
  question against the sentence, over all the question's word tokens and over its content tokens only;
- per question: today's relevance features (`QAService.relevance_features`) and the best sentence MaxSim.

Then, with nothing embedded again:
- quotes: the share of answerable questions whose best sentence gives a right quote, for the scorer fitted
  with and without the MaxSim features (listwise logistic regression, bench/quote_selection.py's `fit`),
  each set left out of the fit in turn;
- abstention: the unanswerable questions abstained when every set's answerable ones are refused at most 5%,
  for today's relevance features with and without the best MaxSim (bench/abstention_real.py's search), each
  set left out in turn.

    PYTHONPATH=. .venv/bin/python bench/late_interaction.py --index-root /path/to/indexes [--cache F.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.quote_selection import SETS, Question, accuracy, devset_questions, fit  # noqa: E402

STOP = {"the", "a", "an", "of", "to", "in", "on", "for", "and", "or", "is", "are", "do", "does", "i", "my", "what",
        "which", "how", "can", "when", "where", "who", "why", "it", "be", "with", "by", "from", "that", "this",
        "there", "as", "at", "if", "you", "we", "should", "would", "will", "get", "use", "der", "die", "das", "ein",
        "eine", "und", "ist", "wie", "was", "welche", "ich", "man", "le", "la", "les", "un", "une", "de", "des", "et",
        "est", "comment", "quel", "quelle", "je", "on", "?"}


class TokenVectors:
    """Contextual token vectors of MiniLM (the index's model folder), normalised, special tokens dropped."""

    def __init__(self, folder: Path) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(folder), device="cpu")
        self.tokenizer = self.model.tokenizer

    def encode(self, texts: list[str]) -> list[tuple[list[str], np.ndarray]]:
        out = self.model.encode(texts, output_value="token_embeddings", batch_size=64, convert_to_numpy=False)
        rows = []
        for text, vectors in zip(texts, out):
            ids = self.tokenizer(text, truncation=True, max_length=vectors.shape[0])["input_ids"]
            pieces = self.tokenizer.convert_ids_to_tokens(ids)[1:-1]
            v = vectors.numpy()[1:1 + len(pieces)]
            v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
            rows.append((pieces, v))
        return rows


def words_of(pieces: list[str]) -> list[int]:
    """Indexes of word tokens (not punctuation)."""
    return [i for i, p in enumerate(pieces) if any(ch.isalnum() for ch in p)]


def content_of(pieces: list[str]) -> list[int]:
    """Indexes of content tokens: word pieces whose word is not a stop word (a continuation piece '##x'
    follows its word's choice)."""
    keep, current = [], False
    for i, p in enumerate(pieces):
        if p.startswith("##"):
            if current:
                keep.append(i)
            continue
        current = any(ch.isalnum() for ch in p) and p.lower() not in STOP
        if current:
            keep.append(i)
    return keep


def maxsim(question: np.ndarray, sentence: np.ndarray) -> float:
    if not len(question) or not len(sentence):
        return 0.0
    return float((question @ sentence.T).max(axis=1).mean())


def collect(index_root: Path, tokens: TokenVectors | None, only: set[str] | None = None) -> list[dict]:
    from rag.evaluation import contains_fact, is_answerable
    from rag.extractive import candidate_sentences, question_wants, sentence_features
    from rag.qa import build_service
    from rag.settings import load_settings

    out = []
    for folder, files in SETS.items():
        index = index_root / folder
        if only is not None and folder not in only:
            continue
        if not index.is_dir():
            print(f"skipping {folder}: no index at {index}", file=sys.stderr)
            continue
        settings = load_settings(index_dir=index, device="cpu")
        service = build_service(settings)
        service.searcher.warm_up()
        if tokens is None:
            tokens = TokenVectors(Path(service.embedder.folder))  # type: ignore[attr-defined]
        for name in files:
            for q in devset_questions(name):
                answerable = is_answerable(q)
                retrieved = service.retrieve(q["question"], None, None, None, settings.answers.quote_passages)
                relevance, scored = service.relevance_features(q["question"], retrieved.hits, retrieved.more)
                hits = [*retrieved.hits, *retrieved.more]
                sentences = candidate_sentences([(i + 1, h) for i, h in enumerate(hits)])
                row = {"set": name, "answerable": answerable, "relevance": relevance, "features": [], "labels": [],
                       "maxsim": [], "maxsim_content": []}
                if sentences:
                    weights = service.word_weights(q["question"], [h.chunk_id for h in hits])
                    row["features"] = sentence_features(q["question"], sentences, service.embedder, weights).tolist()
                    wants = question_wants(q["question"])
                    if answerable:
                        row["labels"] = [bool(contains_fact(s.quote(wants), q["answer"]))
                                         for s in sentences]
                    encoded = tokens.encode([q["question"]] + [s.sentence for s in sentences])
                    pieces, qv = encoded[0]
                    words, content = qv[words_of(pieces)], qv[content_of(pieces)]
                    for spieces, sv in encoded[1:]:
                        sv = sv[words_of(spieces)]
                        row["maxsim"].append(maxsim(words, sv))
                        row["maxsim_content"].append(maxsim(content if len(content) else words, sv))
                out.append(row)
        print(f"{folder}: {len(out)} questions so far", file=sys.stderr, flush=True)
    return out


def quotes(rows: list[dict]) -> dict[str, object]:
    """Right quote from the best sentence (leave-one-set-out), today's features against today's + MaxSim."""
    def questions(extra: bool) -> list[Question]:
        qs = []
        for r in rows:
            if not r["answerable"]:
                continue
            f = np.array(r["features"], dtype=np.float64).reshape(len(r["features"]), -1)
            if extra and len(f):
                f = np.hstack([f, np.array([r["maxsim"], r["maxsim_content"]]).T])
            qs.append(Question(r["set"], f, np.array(r["labels"], dtype=bool)))
        return qs

    report: dict[str, object] = {}
    for label, extra in (("today", False), ("with_maxsim", True)):
        qs = questions(extra)
        held = {}
        right = total = 0
        for folder, files in SETS.items():
            test, train = [q for q in qs if q.name in files], [q for q in qs if q.name not in files]
            if test and train:
                w = fit(train)
                held[folder] = round(accuracy(test, w), 3)
                right += accuracy(test, w) * len(test)
                total += len(test)
        fitted = fit(qs)
        report[label] = {"leave_one_set_out": held, "leave_one_set_out_all": round(right / max(1, total), 3),
                         "fitted_on_all": round(accuracy(qs, fitted), 3),
                         "fitted_on_all_top2": round(accuracy(qs, fitted, 2), 3)}
    # MaxSim alone as the scorer
    alone = [Question(r["set"], np.array([r["maxsim_content"]]).T, np.array(r["labels"], dtype=bool))
             for r in rows if r["answerable"] and r["features"]]
    report["maxsim_alone"] = round(accuracy(alone, np.array([1.0])), 3)
    return report


def abstention(rows: list[dict], trials: int = 20000, refused: float = 0.05) -> dict[str, object]:
    """Unanswerable abstained at a threshold refusing at most `refused` of each set's answerable questions,
    linear scores over today's relevance features, with and without the best sentence MaxSim (random search
    with today's signs; the MaxSim weight positive); every set left out in turn."""
    def features(r: dict, extra: bool) -> np.ndarray:
        base = list(r["relevance"])
        if extra:
            base.append(max(r["maxsim_content"], default=0.0))
        return np.array(base, dtype=np.float64)

    def search(train: list[dict], extra: bool) -> tuple[np.ndarray, float]:
        from bench.abstention_real import search as weights_search

        return weights_search([(r["set"], features(r, extra), r["answerable"]) for r in train], trials, refused,
                              extra=int(extra))

    report: dict[str, object] = {}
    for label, extra in (("today", False), ("with_maxsim", True)):
        held, refused_n, answerable_n, abstained_n, unanswerable_n = {}, 0, 0, 0, 0
        for folder, files in SETS.items():
            test, train = [r for r in rows if r["set"] in files], [r for r in rows if r["set"] not in files]
            if not test or not train:
                continue
            w, cut = search(train, extra)
            yes = [features(r, extra) @ w < cut for r in test if r["answerable"]]
            no = [features(r, extra) @ w < cut for r in test if not r["answerable"]]
            held[folder] = {"refused": f"{sum(yes)}/{len(yes)}", "abstained": f"{sum(no)}/{len(no)}"}
            refused_n, answerable_n = refused_n + sum(yes), answerable_n + len(yes)
            abstained_n, unanswerable_n = abstained_n + sum(no), unanswerable_n + len(no)
        w, cut = search(rows, extra)
        report[label] = {"leave_one_set_out": held, "refused": f"{refused_n}/{answerable_n}",
                         "abstained": f"{abstained_n}/{unanswerable_n}",
                         "fitted_on_all": {"weights": np.round(w, 3).tolist(), "threshold": round(cut, 3),
                                           "abstained": int(sum(features(r, extra) @ w < cut for r in rows
                                                                if not r["answerable"]))}}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-root", type=Path, required=True)
    parser.add_argument("--cache", type=Path, action="append", default=[],
                        help="keep the features here (JSON) and read them back next time (repeatable: read all)")
    parser.add_argument("--sets", help="only these folders (comma-separated), e.g. git,pdf")
    args = parser.parse_args()
    if args.cache and all(c.is_file() for c in args.cache):
        rows = [r for c in args.cache for r in json.loads(c.read_text())]
    else:
        rows = collect(args.index_root, None, set(args.sets.split(",")) if args.sets else None)
        if args.cache:
            args.cache[0].write_text(json.dumps(rows))
    print(json.dumps({"questions": len(rows), "quotes": quotes(rows), "abstention": abstention(rows)}, indent=1))


if __name__ == "__main__":
    main()
