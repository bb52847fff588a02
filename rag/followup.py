"""Follow-up questions: "and how long does it last?" needs the earlier question to be searchable.

A deterministic rewrite, not a model call: the embedded 135M model cannot condense a conversation
reliably, and a rewrite the user can read ("Searched for: ...") is easier to trust and to test.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.search import keyword_terms

# Words by which a question points back at an earlier one.
REFERRING = frozenset("""
it its they them their theirs this that these those he she him her his there then same such one ones
also else another other others too either former latter
""".split())
_WORD = re.compile(r"\w+")


def refers_back(question: str) -> bool:
    """True when the question leans on an earlier one: a pronoun like "it", or a single content word ("and parking?")."""
    words = _WORD.findall(question.lower())
    return any(w in REFERRING for w in words) or len(keyword_terms(question)) <= 1


def standalone_question(history: Sequence[str], question: str) -> str:
    """The question made searchable on its own, given the earlier (standalone) questions, oldest first.

    A question that stands alone is returned as is; one that refers back is prefixed with the last
    question it could refer to: "Regarding <earlier question> <follow-up>".
    """
    question = question.strip()
    if not history or not refers_back(question):
        return question
    previous = history[-1].strip()
    if not set(keyword_terms(previous)) - set(keyword_terms(question)):
        return question
    return f"Regarding \"{previous}\": {question}"
