"""Follow-up questions: "and how long does it last?" needs the earlier question to be searchable.

A deterministic rewrite, not a model call: the embedded 135M model cannot condense a conversation
reliably, and a rewrite the user can read ("Searched for: ...") is easier to trust and to test. Only a
question that actually points back is rewritten (a pronoun or demonstrative with nothing in the question
to refer to, an elliptic "and for fathers?", a bare "why?"), and always against the last question that
stood on its own, so rewrites never nest. tests/data/followups.jsonl measures the decision.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.search import keyword_terms

# Pronouns that can find their referent inside the question itself ("if I forgot it").
PERSONAL = frozenset("it its they them their theirs he him his she her".split())
# Words that point at something said before whatever else the question holds ("those hours", "the largest one").
DEMONSTRATIVE = frozenset("this these those same such one ones other others else former latter".split())
# Openings that continue the previous question ("and for fathers?", "what about Paris?").
ELLIPTIC = re.compile(r"^(and|or|but|also|what about|how about|same for|then)\b", re.IGNORECASE)
# "Is it true that ...", "is it possible to ...": a placeholder "it", not a reference.
DUMMY_IT = re.compile(r"\bit(?: is| was)? (?:true|possible|allowed|ok|okay|necessary|required|mandatory|"
                      r"forbidden|permitted|normal|common|usual)\b", re.IGNORECASE)
# After these, "that" starts a clause ("true that the office ..."), it does not point back.
_CLAUSE_BEFORE_THAT = frozenset("true sure so say said says mean means think know possible such".split())
# Words that begin a clause after "that" ("that the office is closed", "that we give").
_CLAUSE_OPENERS = frozenset("the a an my our your their his her its we i you he she they it this there".split())
_WORD_WITH_APOSTROPHE = re.compile(r"\w+(?:'\w+)?")  # "what's" is one word here
# Content words a question may hold before a personal pronoun and still need the earlier question.
OWN_REFERENT_WORDS = 3


def refers_back(question: str) -> bool:
    """True when the question leans on an earlier one; False when it stands on its own."""
    text = question.strip()
    # "IT" (the department) is not "it"
    words = [w.lower() if not (w.isupper() and len(w) > 1) else "_" + w for w in _WORD_WITH_APOSTROPHE.findall(text)]
    if not words:
        return False
    if ELLIPTIC.match(text) or len(keyword_terms(text)) <= 1:
        return True
    dummy = DUMMY_IT.search(text) is not None
    for i, word in enumerate(words):
        before = words[:i]
        if word in DEMONSTRATIVE:
            return True
        if word == "that" and (i == len(words) - 1 or (before and before[-1] not in _CLAUSE_BEFORE_THAT
                                                        and words[i + 1] not in _CLAUSE_OPENERS)):
            return True
        if word == "there" and not (before and before[-1] in ("is", "are", "was", "were", "be")) and i > 0:
            return True  # "parking there?"; "is there a gym?" asks whether something exists
        if word in PERSONAL and not (word == "it" and dummy):
            # "how do I reset my password if I forgot it": the referent is in the question
            if len(keyword_terms(" ".join(before))) < OWN_REFERENT_WORDS:
                return True
    return False



def standalone_question(history: Sequence[str], question: str) -> str:
    """The question made searchable on its own, given the user's earlier questions, oldest first.

    A question that stands alone is returned as is. One that refers back is prefixed with the last
    earlier question that stood alone (a chain of follow-ups keeps pointing at it, never at a rewrite):
    'Regarding "<earlier question>": <follow-up>'.
    """
    question = question.strip()
    if not refers_back(question):
        return question
    anchor = next((q.strip() for q in reversed(history) if q.strip() and not refers_back(q)), None)
    if anchor is None or not set(keyword_terms(anchor)) - set(keyword_terms(question)):
        return question
    return f"Regarding \"{anchor}\": {question}"
