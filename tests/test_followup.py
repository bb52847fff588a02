"""Follow-up detection on a set of question pairs: real follow-ups and self-contained next questions.

tests/data/followups.jsonl: 42 pairs written for this test (office questions like the samples' and
ones the samples cannot answer), each with the expected decision.
"""

from __future__ import annotations

import json
from pathlib import Path

from rag.followup import refers_back, standalone_question

PAIRS = [json.loads(line) for line in (Path(__file__).parent / "data" / "followups.jsonl").read_text().splitlines()]


def decided_follow_up(previous: str, question: str) -> bool:
    return standalone_question([previous], question) != question


def test_the_follow_up_decision_is_right_on_the_set() -> None:
    assert len(PAIRS) >= 30 and {p["follow_up"] for p in PAIRS} == {True, False}
    wrong = [p["question"] for p in PAIRS if decided_follow_up(p["previous"], p["question"]) != p["follow_up"]]
    accuracy = 1 - len(wrong) / len(PAIRS)
    print(f"follow-up decision accuracy {accuracy:.3f} on {len(PAIRS)} pairs; wrong: {wrong}")
    assert accuracy >= 0.95, wrong
    # a self-contained question is never rewritten: the costly mistake (it searches for the wrong topic)
    rewritten = [p["question"] for p in PAIRS if not p["follow_up"] and decided_follow_up(p["previous"], p["question"])]
    assert rewritten == []


def test_rewrites_never_nest_and_point_at_the_last_question_that_stood_alone() -> None:
    history = ["When is lunch served in the cafeteria?"]
    second = standalone_question(history, "How much does it cost?")
    assert second == 'Regarding "When is lunch served in the cafeteria?": How much does it cost?'
    history.append("How much does it cost?")
    third = standalone_question(history, "And with the employee badge?")
    assert third == 'Regarding "When is lunch served in the cafeteria?": And with the employee badge?'
    history.append("And with the employee badge?")
    new_topic = "What discount do we give for a contract of 100,000 EUR?"
    assert standalone_question(history, new_topic) == new_topic
    history.append(new_topic)
    assert standalone_question(history, "Does that also apply to renewals?").count("Regarding") == 1
    assert standalone_question(history, "Does that also apply to renewals?").startswith(f'Regarding "{new_topic}"')


def test_placeholder_words_are_not_references() -> None:
    assert not refers_back("What is the IT helpdesk's phone extension?")  # IT, the department
    assert not refers_back("Is it true that the office is closed on Fridays?")
    assert not refers_back("Is there a gym in the building?")
    assert not refers_back("How do I reset my password if I forgot it?")
    assert refers_back("Is there parking there?") and refers_back("Why?") and refers_back("What about Paris?")
    assert standalone_question([], "Can they carry them over?") == "Can they carry them over?"
