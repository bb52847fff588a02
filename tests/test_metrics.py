"""The scoring used by `rag eval` (SQuAD-style normalisation; BoolQ yes/no)."""

from __future__ import annotations

from rag.metrics import best_f1_em, mrr_at, ndcg_at, normalize_answer, percentile, recall_at, token_f1, yes_no


def test_answer_normalisation_and_f1() -> None:
    assert normalize_answer("The  Krag.") == "krag"
    assert best_f1_em("Krag!", ["Krag", "Krag."]) == (1.0, 1.0)
    assert round(token_f1("he met Krag at dawn", "Krag"), 3) == 0.333
    assert token_f1("", "Krag") == 0.0


def test_yes_no() -> None:
    assert yes_no("Yes, house tax is a property tax.") == "yes"
    assert yes_no("No. Ethanol yields more energy.") == "no"
    assert yes_no("It is not the same.") == "no"
    assert yes_no("Ethanol is a fuel.") is None


def test_ranking_metrics_count_documents_once() -> None:
    ranked = ["a", "a", "b", "c"]
    assert recall_at(ranked, {"b"}, 1) == 0.0 and recall_at(ranked, {"b"}, 2) == 1.0
    assert mrr_at(ranked, {"c"}) == 1 / 3
    assert round(ndcg_at(ranked, {"b"}), 4) == round(1 / 1.5849625, 4)
    assert percentile([1, 2, 3, 4], 50) == 2.5
