"""The generator as a relevance model: how likely it finds the question after a candidate quote.

Query likelihood (UPR, Sachan et al. 2022): a causal LM reads a candidate sentence, then "A question the
text above answers:", and the question's tokens are scored. The same question after an empty text gives its
prior, so the difference (pointwise mutual information) says how much the sentence explains the question.
No training, and the model is the one the service already loads (the demo SmolLM2-135M, or a deployment's
own on a GPU host). Measured on the dev sets (tests/data/devsets), retrieved as `rag ask` retrieves them:

- quotes: the shipped scorer's best `--top` sentences re-ranked by scorer + w * mean log-likelihood (w swept),
  against the shipped scorer alone: the share of answerable questions whose chosen quote holds the fact;
- abstention: the best PMI over those sentences as a score of answerability, against the service's
  `relevance`, by the area under the ROC curve (answerable against unanswerable questions), and the two
  summed after scaling.

Needs the dev sets' indexes (see bench/quote_selection.py).

    .venv/bin/python bench/query_likelihood.py --index-root /path/to/indexes [--sets git,debref] [--top 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.quote_selection import SETS, devset_questions  # noqa: E402

PROMPT = "{text}\n\nA question the text above answers: "


def question_loglik(model, tokenizer, texts: list[str], question: str, context_tokens: int) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """Each question token's log-probability after each of `texts` (one padded batch)."""
    import torch

    asked = tokenizer(question, add_special_tokens=False)["input_ids"]
    rows = [tokenizer(PROMPT.format(text=t), add_special_tokens=False)["input_ids"][-context_tokens:] for t in texts]
    width = max(len(r) for r in rows) + len(asked)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id or 0)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row) + len(asked)] = torch.tensor(row + asked)
        mask[i, :len(row) + len(asked)] = 1
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
    return [logp[i, torch.arange(len(r) - 1, len(r) + len(asked) - 1), torch.tensor(asked)].numpy()
            for i, r in enumerate(rows)]


def auc(positive: list[float], negative: list[float]) -> float:
    if not positive or not negative:
        return float("nan")
    return float(np.mean([[p > n for n in negative] for p in positive]))


def main() -> None:
    from rag.evaluation import contains_fact, is_answerable
    from rag.extractive import SCORER, candidate_sentences, question_wants, sentence_features
    from rag.generation.transformers_backend import TransformersBackend
    from rag.qa import build_service
    from rag.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-root", type=Path, required=True)
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--top", type=int, default=5, help="candidates re-ranked per question")
    parser.add_argument("--context-tokens", type=int, default=200)
    args = parser.parse_args()
    backend = TransformersBackend(load_settings(device="cpu").generation)
    backend.warm_up()
    model, tokenizer = backend._model, backend._tokenizer  # noqa: SLF001 - a benchmark reads the loaded model
    report: dict[str, object] = {"model": backend.model_id, "top": args.top}
    for folder in args.sets.split(","):
        settings = load_settings(index_dir=args.index_root / folder, device="cpu", answer_passages=4, quote_passages=4)
        service = build_service(settings)
        service.searcher.warm_up()
        rows, started = [], time.perf_counter()
        for name in SETS[folder]:
            for q in devset_questions(name):
                retrieved = service.retrieve(q["question"], 4, None, None, 4)
                hits = [*retrieved.hits, *retrieved.more]
                candidates = candidate_sentences(list(enumerate(hits, start=1)))
                if not candidates:
                    continue
                wants = question_wants(q["question"])
                weights = service.word_weights(q["question"], [h.chunk_id for h in hits])
                scores = sentence_features(q["question"], candidates, service.embedder, weights) @ np.array(SCORER)
                top = [int(i) for i in np.argsort(-scores, kind="stable")[:args.top]]
                quotes = [candidates[i].quote(wants) for i in top]
                *given, prior = question_loglik(model, tokenizer, [*quotes, ""], q["question"], args.context_tokens)
                rows.append({"answerable": is_answerable(q), "relevance": retrieved.relevance,
                             "scores": scores[top], "loglik": [g.mean() for g in given],
                             "pmi": max(g.sum() - prior.sum() for g in given),
                             "labels": [is_answerable(q) and contains_fact(t, q["answer"]) for t in quotes]})
        answerable = [r for r in rows if r["answerable"]]
        sweep = {}
        for w in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 100.0):
            sweep[str(w)] = sum(bool(r["labels"][int(np.argmax(r["scores"] + w * np.array(r["loglik"])))])
                                for r in answerable)
        relevance = np.array([r["relevance"] for r in rows])
        pmi = np.array([r["pmi"] for r in rows])
        both = relevance / (relevance.std() or 1) + pmi / (pmi.std() or 1)
        sides = np.array([r["answerable"] for r in rows])
        report[folder] = {
            "questions": len(rows), "answerable": len(answerable), "seconds_per_question":
                round((time.perf_counter() - started) / max(1, len(rows)), 2),
            "right_quote_by_loglik_weight": sweep,
            "auc_relevance": round(auc(list(relevance[sides]), list(relevance[~sides])), 3),
            "auc_pmi": round(auc(list(pmi[sides]), list(pmi[~sides])), 3),
            "auc_both": round(auc(list(both[sides]), list(both[~sides])), 3)}
        print(json.dumps({folder: report[folder]}), flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
