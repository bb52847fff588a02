"""Is a sentence backed by the passages? Facts first (numbers, amounts, times, dates, names, codes), then
meaning (embedding similarity and word overlap with one passage sentence), then negation.

A model, small or large, invents exactly the things a reader acts on: a price, a limit, a date, a
name. Similarity alone cannot see them ("10 EUR" and "220 EUR" embed alike), so every such fact in a
sentence must appear in the passages it cites, normalized ("twenty-five" = "25", "€49" = "49 EUR" =
"EUR 49", "11:30" = "11.30", "250,000" = "250 000"), with the same unit. List markers ("1." at the start
of a line), page numbers, single characters and stop words are never evidence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rag.analysis import Analyzer
from rag.analysis import analyzer as process_analyzer
from rag.search import STOPWORDS as SEARCH_STOPWORDS
from rag.text import WORD

_SMALL = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
          "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
          "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
# "first" and "second" are left as words: "in their first year" is no count, "second" also a unit of time
_ORDINALS = {"third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
             "ninth": 9, "tenth": 10, "twelfth": 12, "twentieth": 20, "thirtieth": 30}
_SCALE = {"hundred": 100, "thousand": 1_000, "k": 1_000, "million": 1_000_000, "mn": 1_000_000,
          "billion": 1_000_000_000, "bn": 1_000_000_000}
_NUMBER_WORD = re.compile(
    r"\b(?:(?P<tens>" + "|".join(_TENS) + r")(?:[-\s](?P<ones>" + "|".join(k for k in _SMALL if _SMALL[k] < 10) +
    r"))?|(?P<small>" + "|".join(_SMALL) + r")|(?P<ord>" + "|".join(_ORDINALS) + r"))\b(?!-[a-z])", re.IGNORECASE)

# canonical units: a changed unit ("5 days" -> "5 weeks") is a changed fact
_UNITS = {
    "%": "%", "percent": "%", "pct": "%", "percentage": "%",
    "€": "EUR", "eur": "EUR", "euro": "EUR", "euros": "EUR", "$": "USD", "usd": "USD", "dollar": "USD",
    "dollars": "USD", "£": "GBP", "gbp": "GBP", "pound": "GBP", "pounds": "GBP", "chf": "CHF", "francs": "CHF",
    "yen": "JPY", "jpy": "JPY",
    "second": "s", "seconds": "s", "sec": "s", "secs": "s", "minute": "min", "minutes": "min", "min": "min",
    "mins": "min", "hour": "h", "hours": "h", "hr": "h", "hrs": "h", "day": "day", "days": "day",
    "week": "week", "weeks": "week", "month": "month", "months": "month", "year": "year", "years": "year",
    "km": "km", "kilometre": "km", "kilometres": "km", "kilometer": "km", "kilometers": "km", "mile": "mile",
    "miles": "mile", "m": "m", "metre": "m", "metres": "m", "meter": "m", "meters": "m", "cm": "cm", "mm": "mm",
    "kg": "kg", "kilogram": "kg", "kilograms": "kg", "g": "g", "gram": "g", "grams": "g", "lb": "lb", "lbs": "lb",
    "l": "l", "litre": "l", "litres": "l", "liter": "l", "liters": "l", "gb": "GB", "mb": "MB", "tb": "TB",
    "kb": "KB", "ghz": "GHz", "mhz": "MHz", "kw": "kW", "kwh": "kWh", "w": "W", "v": "V",
    "decade": "decade", "decades": "decade", "century": "century", "centuries": "century", "ft": "ft",
    "foot": "ft", "feet": "ft", "inch": "in", "inches": "in", "yard": "yd", "yards": "yd", "acre": "acre",
    "acres": "acre", "hectare": "ha", "hectares": "ha", "ha": "ha", "centimetre": "cm", "centimetres": "cm",
    "centimeter": "cm", "centimeters": "cm", "millimetre": "mm", "millimetres": "mm", "millimeter": "mm",
    "millimeters": "mm", "tonne": "t", "tonnes": "t", "ton": "t", "tons": "t", "ounce": "oz", "ounces": "oz",
    "oz": "oz", "gallon": "gal", "gallons": "gal", "mph": "mph", "times": "x", "x": "x", "fold": "x",
    "degrees": "deg", "degree": "deg", "°": "deg", "°c": "degC", "°f": "degF",
}
_CURRENCY_BEFORE = re.compile(r"(?:(?P<sym>[€$£])|\b(?P<code>EUR|USD|GBP|CHF|JPY)\b)\s?$", re.IGNORECASE)
# a number standing alone, or one end of a range ("10-15", "2011--12"); not a piece of a code ("ISO9001")
_NUMBER = re.compile(
    r"(?<![\w.])(?P<num>\d{1,3}(?:(?:,|\u202f|\u00a0| )\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?)"
    r"(?P<suffix>st|nd|rd|th)?(?![.,]?\d)")
_TIME = re.compile(r"(?<![\d.:])(?P<h>[01]?\d|2[0-3])(?:[:.h](?P<m>[0-5]\d))?\s?(?P<ampm>[ap]\.?m\.?)?(?![\d:])",
                   re.IGNORECASE)
_LIST_MARKER = re.compile(r"(?m)^\s*(?:\(?\d{1,2}[.)]|[-*•])\s+")
_PAGE_REF = re.compile(r"\b(?:page|p\.|pp\.|slide|sheet)\s*\d+\b", re.IGNORECASE)
# a manual page's section after its name: "git-pack-objects(1)", "modules(5)", "open(3p)": a name, not a number
_MAN_SECTION = re.compile(r"(?<=[A-Za-z0-9_])\([1-9][a-z]{0,3}\)")
_CODE = re.compile(r"(?<![.,])\b(?=[A-Za-z0-9_-]*[A-Za-z])(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*\b")
_MEASURE = re.compile(r"\d+(?:[.,]\d+)?([a-z°%]{1,4})", re.IGNORECASE)  # "3km", "2pm", "1990s", "21st": not codes
_CAPITALIZED = re.compile(r"\b[A-Z][\w'’-]*\b")
_NEGATION = re.compile(r"\b(?:not|no|never|none|nobody|nothing|neither|nor|cannot|without|no longer|"
                       r"\w+n['’]t)\b", re.IGNORECASE)
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# the search's stop words plus the words of answers' filler; none is ever evidence
STOPWORDS = SEARCH_STOPWORDS | frozenset("may might must shall yes also every".split())


def _norm_number(text: str) -> float | None:
    digits = text.replace("\u202f", "").replace("\u00a0", "").replace(" ", "")
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", digits):
        digits = digits.replace(",", "")
    elif re.fullmatch(r"\d+,\d{1,2}", digits):  # a decimal comma (2,5) - a thousands comma has 3 digits
        digits = digits.replace(",", ".")
    try:
        return float(digits)
    except ValueError:
        return None


def spell_out(text: str) -> str:
    """Number words as digits ("twenty-five" -> "25", "third" -> "3"), so both forms compare equal."""

    def digits(m: re.Match[str]) -> str:
        if m.group("tens"):
            return str(_TENS[m.group("tens").lower()] + (_SMALL[m.group("ones").lower()] if m.group("ones") else 0))
        if m.group("small"):
            return str(_SMALL[m.group("small").lower()])
        return str(_ORDINALS[m.group("ord").lower()])

    return _NUMBER_WORD.sub(digits, text)


@dataclass(frozen=True)
class Quantity:
    """A number as written, with the unit next to it (None: a bare number) and what else it may mean."""

    text: str
    values: frozenset[float]  # 11.30 may be 11.3 or the time 11:30 (as minutes, negative: kept apart)
    unit: str | None
    near: frozenset[str] = frozenset()  # the words just after it ("5 unused vacation days": unused, vacation, days)


@dataclass
class Facts:
    """What a sentence asserts that a reader could act on."""

    quantities: list[Quantity] = field(default_factory=list)
    names: set[str] = field(default_factory=set)  # lower-cased proper names, month and day names, codes
    negated: bool = False


def _time_minutes(h: int, m: int, ampm: str | None) -> float:
    if ampm:
        pm = ampm.lower().startswith("p")
        h = (h % 12) + (12 if pm else 0)
    return -(h * 60 + m) - 1  # negative: a time never equals a plain number


def without_man_sections(text: str) -> str:
    """`text` without the section numbers of the manual pages it names ("fuser(1)" -> "fuser")."""
    return _MAN_SECTION.sub("", text)


def extract_facts(text: str, evidence: bool = False) -> Facts:
    """The facts in `text`. `evidence`: text from a passage, where list markers and page references are
    layout, not content, and so are left out."""
    if evidence:
        text = _PAGE_REF.sub(" ", _LIST_MARKER.sub(" ", text))
    text = spell_out(without_man_sections(text))
    facts = Facts(negated=bool(_NEGATION.search(text)))
    taken: list[tuple[int, int]] = []
    for m in _TIME.finditer(text):
        if m.group("m") is None and m.group("ampm") is None:
            continue  # a bare number: handled below
        minutes = _time_minutes(int(m.group("h")), int(m.group("m") or 0), m.group("ampm"))
        values = {minutes}
        if m.group("m") is not None and m.group("ampm") is None and ":" not in m.group() and "h" not in m.group():
            values.add(float(f"{m.group('h')}.{m.group('m')}"))  # 11.30: a time or a decimal
        facts.quantities.append(Quantity(m.group().strip(), frozenset(values), "time"))
        taken.append(m.span())
    for m in _NUMBER.finditer(text):
        if any(a <= m.start() < b for a, b in taken):
            continue
        value = _norm_number(m.group("num"))
        if value is None:
            continue
        after = text[m.end():m.end() + 40]
        word = re.match(r"\s*(%|°[CF]?|[A-Za-z€$£]+\.?)", after)
        unit = None
        if word:
            token = word.group(1).rstrip(".").lower()
            if token in _SCALE:
                value *= _SCALE[token]
                rest = re.match(r"\s*[A-Za-z]+\s*(%|[A-Za-z]+)", after)
                token = rest.group(1).lower() if rest else ""
            if token in ("per",) and re.match(r"\s*per\s+cent\b", after, re.IGNORECASE):
                token = "%"
            unit = _UNITS.get(token)
            if unit is None and token not in _SCALE:
                # "5 unused vacation days": the unit a couple of words on, before any punctuation or number
                for later in re.match(r"[^\d.,;:!?()]*", after).group().split()[1:3]:  # type: ignore[union-attr]
                    if later.lower() in _UNITS and len(later) > 2:
                        unit = _UNITS[later.lower()]
                        break
        before = _CURRENCY_BEFORE.search(text[max(0, m.start() - 5):m.start()])
        if before and word and word.group(1).lower() == "m":  # "$5m": five million dollars, not metres
            value *= 1_000_000
        if before:
            unit = _UNITS[(before.group("sym") or before.group("code")).lower()]
        near = frozenset(w.lower() for w in WORD.findall(after)[:4])
        facts.quantities.append(Quantity(m.group().strip(), frozenset({value}), unit, near))
    for m in _CODE.finditer(text):
        measure = _MEASURE.fullmatch(m.group())
        if measure and measure.group(1).lower() in (*_UNITS, *_SCALE, "st", "nd", "rd", "th", "am", "pm", "s"):
            continue
        facts.names.add(m.group().lower())
    words = list(_CAPITALIZED.finditer(text))
    for i, m in enumerate(words):
        word = m.group().rstrip("'’").removesuffix("'s").removesuffix("’s")
        lower = word.lower()
        if len(word) < 2 or lower in STOPWORDS or lower in _UNITS:
            continue
        starts_sentence = not text[:m.start()].strip() or text[:m.start()].rstrip()[-1] in ".!?:;\"'([\n"
        if starts_sentence and lower not in _MONTHS and not word.isupper():
            # a sentence's first word is capitalized anyway: a name only when another capitalized word follows
            follows = i + 1 < len(words) and words[i + 1].start() - m.end() <= 1
            if not follows:
                continue
        facts.names.add(lower)
    return facts


@dataclass(frozen=True)
class FactCheck:
    """The facts of a claim that the passages do not hold ("" when all are found)."""

    missing: str = ""


def _unit_name(unit: str | None) -> str:
    return "" if unit in (None, "time") else f" {unit}"


def check_facts(claim: Facts, passages: Sequence[str], passage_facts: Sequence[Facts],
                near: Sequence[Facts] | None = None) -> FactCheck:
    """Whether every name and code of `claim` is in `passages`, and every number (with its unit) and time
    in `near` (the evidence sentence and its neighbours; default: all of `passage_facts`), so a number
    that merely occurs somewhere else in a passage does not vouch for the claim."""
    known_text = " ".join(p.lower() for p in passages)
    known_words = set(WORD.findall(known_text))
    for q in claim.quantities:
        candidates = [p for facts in (passage_facts if near is None else near) for p in facts.quantities
                      if p.values & q.values]
        if not candidates:
            return FactCheck(f"{'time' if q.unit == 'time' else 'number'} {q.text}{_unit_name(q.unit)} is not in the "
                             "passages")
        if q.unit in (None, "time") or any(p.unit == q.unit for p in candidates):
            continue
        if any(p.unit is None and p.near & set(_UNITS_BY_CANON.get(q.unit or "", ())) for p in candidates):
            continue  # "5 unused vacation days": the unit follows a few words on
        return FactCheck(f"{q.text}{_unit_name(q.unit)}: the passages say "
                         f"{', '.join(sorted({c.text + _unit_name(c.unit) for c in candidates}))}")
    if near is not None:  # "1970 and 1970" where the passage says "1970 and 1974": one of them is invented
        for q in claim.quantities:
            said = sum(1 for other in claim.quantities if other.values & q.values)
            found = sum(1 for facts in near for p in facts.quantities if p.values & q.values)
            if said > found:
                return FactCheck(f"{q.text}{_unit_name(q.unit)} appears {said} times, the passages say it {found} "
                                 f"time{'s' if found != 1 else ''}")
    for name in sorted(claim.names):
        if name not in known_words and name not in known_text:
            return FactCheck(f"name {name!r} is not in the passages")
    return FactCheck()


_UNITS_BY_CANON: dict[str, tuple[str, ...]] = {}
for _alias, _canon in _UNITS.items():
    _UNITS_BY_CANON[_canon] = (*_UNITS_BY_CANON.get(_canon, ()), _alias)


def stem(word: str) -> str:
    """A crude English stem, enough to match "employees" with "employee" and "served" with "serve"."""
    word = word.lower().removesuffix("'s").removesuffix("’s")
    for suffix, repl in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: len(word) - len(suffix)] + repl
    return word


_FORM_LANGUAGES = ("en", "de", "fr")


def word_forms(word: str, analyzer: Analyzer | None = None) -> set[str]:
    """The forms a word is matched by, whatever language the question and the documents are in: its Snowball
    stems in English, German and French ("raises" and "raise", "Kennwörter" and "Kennwort"), and for long
    words its first five letters (a compound's head: "Paketverwaltung", "Paketen"). The stems are the
    keyword index's (`Analyzer.stem`: its stemmers one set per thread, as Snowball's are not thread-safe)."""
    stem_in = (analyzer or process_analyzer()).stem
    lower = word.lower()
    forms = {stem_in(lower, language) for language in _FORM_LANGUAGES}
    if len(lower) >= 7:
        forms.add("~" + lower[:5])
    return forms


def fuzzy_words(text: str) -> set[str]:
    """Every form (`word_forms`) of every word of `text`, and of every part of a name joined by underscores
    ("syslog_facility" is matched by "syslog facility", as the keyword index splits it)."""
    analyzer = process_analyzer()
    words = WORD.findall(text)
    parts = [part for w in words if "_" in w.strip("_") for part in w.split("_") if len(part) > 2]
    return {form for w in words + parts for form in word_forms(w, analyzer)}


def stems(text: str) -> set[str]:
    """The stems of every word in `text`."""
    return {stem(w) for w in WORD.findall(text)}


_PRONOUNS = frozenset("i you he she it we they one someone something everyone nobody".split())


def subject_missing(claim: str, passages: Sequence[str]) -> str:
    """The claim's subject ("Contractors" in "Contractors get 25 days", "gym" in "The gym is open") when no
    passage has any word of it in any form, else "". A claim about someone or something the passages never
    mention is not backed by them, however similar the rest of it reads. The subject is taken as the first
    run of content words, when the sentence opens with it (or with one determiner before it)."""
    tokens = WORD.findall(claim)
    if tokens and tokens[0].lower() in _PRONOUNS:
        return ""  # "She tells a story": the subject is a pronoun, and what follows is the verb
    start = 0 if tokens and tokens[0].lower() not in STOPWORDS else 1
    run: list[str] = []
    for token in tokens[start:]:
        if token.lower() in STOPWORDS or token.isdigit():
            break
        run.append(token)
    if not run:
        return ""
    known = set().union(*(stems(p) for p in passages))
    return "" if any(stem(w) in known for w in run) else " ".join(run)


# a name written as code, which a passage about it writes the same way: an inner capital ("MaxMatrixRows",
# "GitHub", "maxFileSize", "HTTPAdapter"; not a plural "URLs"), a dotted or snake_case name in lower case
# ("core.maxFileSize", "max_workers"), a long option ("--disable-gil")
_CODE_NAME = re.compile(r"(?<![\w.-])(?:(?P<head>[a-z]+)[A-Z]\w*|[A-Z][a-z]+[A-Z]\w*|[A-Z]{2,}[a-z]{2,}\w*|"
                        r"[a-z_]\w*\.[a-z_][\w.]*\w|[a-z]\w*_\w+|--[a-z][\w-]+)(?![\w-])")
# a snippet of code quoted in a question ("the name bound by 'except SomeError as e'"): its names are the
# asker's placeholders, not what the documents must name
_QUOTED_SNIPPET = re.compile(r"""(?<!\w)(['"`‘“])([^'"`‘’“”]*\s[^'"`‘’“”]*)(?:\1|[’”])(?!\w)""")


def code_names(question: str) -> list[str]:
    """The names written as code in `question` (`_CODE_NAME`); a stop word glued to a name ("isKarsten", a
    missing space) is not one, nor a name inside a quoted snippet of several words."""
    snippets = [m.span(2) for m in _QUOTED_SNIPPET.finditer(question)]
    return [m.group() for m in _CODE_NAME.finditer(question) if (m.group("head") or "") not in STOPWORDS
            and not any(start <= m.start() < end for start, end in snippets)]


# what a question says it does without ("without curl or netcat", "instead of fg", "ohne Root", "sans mot de
# passe"): up to four words after the marker, within the clause
_SET_ASIDE = re.compile(r"\b(without|instead of|rather than|other than|apart from|except|ohne|statt|anstatt|"
                        r"anstelle von|außer|sans|au lieu de|plutôt que|sauf)\s+((?:[^,.;:!?()]|[.:](?=\w))+)", re.I)


def set_aside(question: str) -> set[str]:
    """The words (lower case) of what `question` says it does without, and the words saying so: "Can a bash
    script talk to a web server without curl or netcat, ..." -> {"without", "curl", "or", "netcat"}. A
    document's silence about them says nothing about whether it answers."""
    return {w for m in _SET_ASIDE.finditer(question)
            for w in WORD.findall(m.group(1).lower()) + WORD.findall(m.group(2).lower())[:4]}


def done_without(name: str, aside: set[str]) -> bool:
    """Whether every word of `name` ("A4", "core.fsmonitor") is among the words a question sets aside
    (`set_aside`): a name it does without, not one it asks about."""
    return aside.issuperset(WORD.findall(name.lower()))


_WORD_PART = 4  # a part of a hyphenated code this long and all letters is a word ("Prozessor", "only")


def code_part(name: str) -> str:
    """A code joined by hyphens to words (lower case) without those words: "68k-prozessor" -> "68k",
    "ipv6-only" -> "ipv6": a passage writes the code in its own compound ("m68k-Architektur"). A code of short
    parts stays whole ("hr-05", "x86-64"), and so does a number named by its word ("debian-11": "11" alone
    would be found in "11:30")."""
    parts = name.split("-")
    while len(parts) > 1 and parts[0].isalpha() and len(parts[0]) >= _WORD_PART:
        parts.pop(0)
    while len(parts) > 1 and parts[-1].isalpha() and len(parts[-1]) >= _WORD_PART:
        parts.pop()
    code = "-".join(parts)
    return name if code.replace(".", "").isdigit() else code


def missing_identifier(question: str, passages: Sequence[str]) -> str:
    """An identifier the question names (a code "HR-05", "NW-2211", a version "4.1", a name written as code:
    "core.maxFileSize", "MaxMatrixRows", "--disable-gil") that no passage holds, else "": a question about
    release 4.1 is not answered by the notes of release 4.2, nor one about MaxMatrixRows by the description of
    MaxMatrixCols. A code joined to words is looked for without them (`code_part`), and a hyphenated one is
    also found written with spaces ("Debian-11" in "Debian 11"). A name the question says it does without
    ("Letter statt A4", "without core.fsmonitor": `set_aside`) is not asked about."""
    facts = extract_facts(question)
    known = " ".join(passages).lower()
    aside = set_aside(question)
    for name in sorted(facts.names):
        if (any(c.isdigit() for c in name) and not done_without(name, aside) and code_part(name) not in known
                and name.replace("-", " ") not in known):
            return name
    for name in code_names(question):
        if not done_without(name, aside) and name.lower() not in known:
            return name
    known_facts = [extract_facts(p, evidence=True) for p in passages]
    for q in facts.quantities:
        if q.unit is None and "." in q.text and not any(p.values & q.values for f in known_facts for p in f.quantities):
            return q.text
    return ""


def content_words(text: str) -> set[str]:
    return {w for w in WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1}
