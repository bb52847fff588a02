"""How well the support marks catch invented facts: a labelled set built from ../shared/eval passages.

True statements: passage sentences as they are, with clauses reordered, and with words swapped for
synonyms. False statements: the same sentences with one fact perturbed: a number changed, a date shifted,
a name swapped for another name from the corpus, a negation inserted, a unit changed. Each statement is
checked against its passage (the sentence with its neighbours, about one chunk) by the product's own
`check_support`; the report gives, per kind, how many statements were flagged as unsupported.

    python bench/support_flags.py [--per-set 400] [--json]

Targets (issue 10): at least 95% of number, date and name perturbations flagged; at most 5% of true
statements flagged.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.qa import Source, check_support  # noqa: E402
from rag.sentences import evidence_sentences  # noqa: E402
from rag.support import STOPWORDS  # noqa: E402

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
TRUE_KINDS = ("verbatim", "reordered", "synonyms")
FALSE_KINDS = ("number", "date", "name", "negation", "unit")

SYNONYMS = {
    "big": "large", "large": "big", "small": "little", "begins": "starts", "began": "started", "starts": "begins",
    "started": "began", "buy": "purchase", "bought": "purchased", "help": "assist", "helps": "assists",
    "helped": "assisted", "show": "display", "shows": "displays", "famous": "well-known", "quickly": "rapidly",
    "often": "frequently", "about": "approximately", "mostly": "largely", "built": "constructed",
    "tries": "attempts", "tried": "attempted", "try": "attempt", "gets": "receives", "got": "received",
    "kill": "murder", "killed": "murdered", "wants": "wishes", "wanted": "wished", "says": "states",
    "said": "stated", "town": "village", "house": "home", "angry": "furious", "later": "afterwards",
    "meets": "encounters", "met": "encountered", "find": "discover", "finds": "discovers", "found": "discovered",
    "tells": "informs", "told": "informed", "leaves": "departs", "left": "departed", "main": "principal",
    "located": "situated", "country": "nation", "people": "persons", "children": "kids", "rich": "wealthy",
    "uses": "employs", "used": "employed", "allows": "permits", "allowed": "permitted",
}
UNIT_SWAPS = {"days": "weeks", "day": "week", "weeks": "months", "week": "month", "months": "years", "month": "year",
              "years": "decades", "year": "decade", "hours": "minutes", "hour": "minute", "minutes": "seconds",
              "km": "miles", "kilometres": "miles", "kilometers": "miles", "miles": "kilometres", "percent": "times",
              "%": " times", "dollars": "euros", "euros": "dollars", "pounds": "dollars", "meters": "feet",
              "metres": "feet", "feet": "meters", "kg": "pounds", "million": "billion", "billion": "million",
              "people": "families", "inches": "centimetres", "acres": "hectares"}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
NEGATE = [(r"\b(is|was|are|were|has been|have been|will|can|could|should|would|did|does|do)\b", r"\1 not")]


@dataclass(frozen=True)
class Statement:
    text: str
    passage: str
    kind: str

    @property
    def true(self) -> bool:
        return self.kind in TRUE_KINDS


def load_corpus(name: str) -> list[str]:
    with open(EVAL / name / "corpus.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def corpus_names(texts: list[str]) -> list[str]:
    """Capitalized words used mid-sentence in the corpus: the pool a swapped name comes from."""
    counts: Counter[str] = Counter()
    for text in texts:
        for m in re.finditer(r"(?<=[a-z,] )([A-Z][a-z]{2,})\b", text):
            if m.group(1).lower() not in STOPWORDS and m.group(1) not in MONTHS:
                counts[m.group(1)] += 1
    return [name for name, n in counts.most_common(2000) if n >= 2]


def _sub_once(pattern: str, repl: str, text: str, rng: random.Random) -> str | None:
    matches = list(re.finditer(pattern, text))
    if not matches:
        return None
    m = rng.choice(matches)
    return text[:m.start()] + m.expand(repl) + text[m.end():]


def perturb(sentence: str, kind: str, names: list[str], rng: random.Random) -> str | None:
    """`sentence` with one fact of `kind` changed, or None when it has no such fact."""
    if kind == "number":
        numbers = [m for m in re.finditer(r"(?<![\w.,])\d+(?:\.\d+)?(?![\w.,]*\d)", sentence)
                   if not 1000 <= float(m.group()) <= 2100]
        if not numbers:
            return None
        m = rng.choice(numbers)
        value = float(m.group())
        new = value + rng.choice([1, 2, 3, 10]) if value < 20 else value * rng.choice([2, 3]) + 1
        text = f"{new:g}" if "." in m.group() else str(int(new))
        return sentence[:m.start()] + text + sentence[m.end():]
    if kind == "date":
        years = list(re.finditer(r"\b(1[0-9]{3}|20[0-9]{2})\b", sentence))
        months = [m for m in re.finditer(r"\b(" + "|".join(MONTHS) + r")\b", sentence)]
        if months and (not years or rng.random() < 0.5):
            m = rng.choice(months)
            new_month = MONTHS[(MONTHS.index(m.group()) + rng.choice([1, 2, 5])) % 12]
            return sentence[:m.start()] + new_month + sentence[m.end():]
        if years:
            m = rng.choice(years)
            return sentence[:m.start()] + str(int(m.group()) + rng.choice([-3, -1, 1, 2, 10])) + sentence[m.end():]
        return None
    if kind == "name":
        present = [m for m in re.finditer(r"(?<=[a-z,] )([A-Z][a-z]{2,})\b", sentence)
                   if m.group(1).lower() not in STOPWORDS and m.group(1) not in MONTHS]
        if not present:
            return None
        m = rng.choice(present)
        lowered = sentence.lower()
        others = [n for n in names if n.lower() not in lowered]
        return sentence[:m.start()] + rng.choice(others) + sentence[m.end():]
    if kind == "negation":
        if re.search(r"\b(not|never|no)\b|n't\b", sentence):
            return None
        return _sub_once(NEGATE[0][0], NEGATE[0][1], sentence, rng)
    if kind == "unit":
        units = [m for m in re.finditer(r"(?<=\d)\s?(%|[a-z]+)\b", sentence) if m.group(1) in UNIT_SWAPS]
        if not units:
            return None
        m = rng.choice(units)
        return sentence[:m.start()] + " " + UNIT_SWAPS[m.group(1)].strip() + sentence[m.end():]
    raise ValueError(kind)


def paraphrase(sentence: str, kind: str, rng: random.Random) -> str | None:
    if kind == "verbatim":
        return sentence
    if kind == "reordered":
        parts = re.split(r",\s+(?:and\s+|but\s+)?", sentence.rstrip(".!?"), maxsplit=1)
        if len(parts) != 2 or min(len(p.split()) for p in parts) < 4:
            return None
        first, second = parts
        # keep a capitalized first word (a name) as it is; lower an ordinary one
        first = first if re.match(r"[A-Z][a-z]+ [A-Z]", first) or first.split()[0] in ("I",) else \
            first[0].lower() + first[1:] if first.split()[0].lower() in STOPWORDS else first
        return f"{second[0].upper()}{second[1:]}, and {first}."
    if kind == "synonyms":
        words = sentence.split(" ")
        # lower-case words only: "Baker Street" is a name, not a street that is big
        spots = [i for i, w in enumerate(words) if w.strip(".,;") in SYNONYMS]
        if not spots:
            return None
        for i in rng.sample(spots, min(2, len(spots))):
            bare = words[i].strip(".,;")
            new = SYNONYMS[bare.lower()]
            words[i] = words[i].replace(bare, new.capitalize() if bare[0].isupper() else new)
        return " ".join(words)
    raise ValueError(kind)


def statements(name: str, per_set: int, seed: int = 0) -> Iterator[Statement]:
    """Up to `per_set` statements of each kind from the data set `name`."""
    rng = random.Random(seed)
    texts = load_corpus(name)
    names = corpus_names(texts)
    counts: Counter[str] = Counter()
    order = list(range(len(texts)))
    rng.shuffle(order)
    for doc in order:
        sentences = [s for s in evidence_sentences(texts[doc]) if 6 <= len(s.split()) <= 45]
        rng.shuffle(sentences)
        all_sentences = evidence_sentences(texts[doc])
        for sentence in sentences[:4]:
            i = all_sentences.index(sentence)
            passage = " ".join(all_sentences[max(0, i - 2): i + 3])  # about one chunk around it
            for kind in (*TRUE_KINDS, *FALSE_KINDS):
                if counts[kind] >= per_set:
                    continue
                text = paraphrase(sentence, kind, rng) if kind in TRUE_KINDS else perturb(sentence, kind, names, rng)
                if text and (kind in TRUE_KINDS or text != sentence):
                    counts[kind] += 1
                    yield Statement(text, passage, kind)
        if all(counts[k] >= per_set for k in (*TRUE_KINDS, *FALSE_KINDS)):
            return


def previous_flags(item: Statement, embedder: object, threshold: float) -> bool:
    """The check before issue 10, for the baseline column: a sentence was supported when a passage
    sentence was at least `threshold` similar, or 75% of its content words were anywhere in the passage."""
    from rag.sentences import split_sentences
    from rag.support import content_words

    claims = [c for c in split_sentences(item.text) if content_words(c)]
    evidence = split_sentences(item.passage)
    if not claims or not evidence:
        return bool(claims)
    vectors = embedder.embed_to_compare(claims + evidence)  # type: ignore[attr-defined]
    similarity = vectors[: len(claims)] @ vectors[len(claims):].T
    words = content_words(item.passage)
    return any(similarity[i].max() < threshold and len(content_words(c) & words) / len(content_words(c)) < 0.75
               for i, c in enumerate(claims))


def evaluate(items: list[Statement], embedder: object, threshold: float,
             baseline: bool = False) -> dict[str, dict[str, float]]:
    """Per kind: statements, and the share flagged (some sentence of it marked unsupported); with
    `baseline`, also the share the previous check flagged."""
    flagged: dict[str, list[bool]] = defaultdict(list)
    before: dict[str, list[bool]] = defaultdict(list)
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    for item in items:
        if baseline:
            before[item.kind].append(previous_flags(item, embedder, threshold))
        support = check_support(item.text, [Source(1, 0, "p", "p", None, 1.0, item.passage)], embedder, threshold)  # type: ignore[arg-type]
        bad = [s for s in support if not s.supported]
        flagged[item.kind].append(bool(bad))
        if bad:
            reasons[item.kind][re.sub(r"[\d'].*", "", bad[0].reason).strip()] += 1
    return {kind: {"statements": len(v), "flagged": round(sum(v) / len(v), 4),
                   **({"flagged_before": round(sum(before[kind]) / len(v), 4)} if baseline else {}),
                   "reasons": dict(reasons[kind].most_common(4))} for kind, v in flagged.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-set", type=int, default=300, help="statements of each kind per data set")
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from rag.embedding import make_embedder
    from rag.settings import load_settings

    settings = load_settings(device="cpu")
    embedder = make_embedder(settings.embedding)
    threshold = settings.support_threshold if args.threshold is None else args.threshold
    report = {}
    for name in ("boolq-dev", "narrativeqa-dev"):
        items = list(statements(name, args.per_set))
        report[name] = evaluate(items, embedder, threshold, baseline=True)
    if args.json:
        print(json.dumps(report))
        return
    for name, kinds in report.items():
        print(f"{name} (threshold {threshold})")
        for kind in (*TRUE_KINDS, *FALSE_KINDS):
            if kind in kinds:
                k = kinds[kind]
                label = "true, wrongly flagged" if kind in TRUE_KINDS else "false, flagged"
                print(f"  {kind:10s} {k['statements']:4d}  {label}: {k['flagged']:.3f} (before: "
                      f"{k['flagged_before']:.3f})  {k['reasons']}")


if __name__ == "__main__":
    main()
