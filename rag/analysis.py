"""Language-aware keyword analysis: what the keyword index stores for a passage, and what a question's words
become to meet it.

Each chunk's language is detected (py3langid: langid.py's model, shipped in the package, BSD), then its words
are lower-cased, the language's stop words dropped and every word stemmed with the language's Snowball
stemmer (PyStemmer, the Snowball project's own C stemmers, BSD), so "Kennwörter" meets "Kennwort" and
"mots de passe" meets "mot de passe". German and Dutch compounds are also split into their parts, each part
stemmed and stored beside the whole word ("Passwortänderung" is found by "Passwort" and by "Änderung"): the
split is the corpus-frequency method of Koehn and Knight (2003), with the word frequencies of `wordfreq`
(Robyn Speer; code Apache-2.0, data CC-BY-SA 4.0, shipped in the package). Stop words: ours for English
(rag.search's list, tuned on the QA sets), the `stop-words` package's (BSD) for the other languages.

A question's words are analysed for every language the index holds (its words may meet a passage in any of
them), and its own language's stop words are dropped. Nothing is downloaded: every model and list ships in
a package.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Sequence
from functools import lru_cache

# The languages analysed (ISO 639-1 -> the Snowball stemmer's name): the ones staff in our users'
# organisations write in most, each with a Snowball stemmer and a stop-word list. Text in any other language
# is detected as the nearest of these with a low probability, and kept unstemmed ("").
LANGUAGES = {
    "en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian", "nl": "dutch",
    "pt": "portuguese", "pl": "polish", "sv": "swedish", "da": "danish", "no": "norwegian", "fi": "finnish",
    "cs": "czech", "ru": "russian",
}
UNKNOWN = ""  # a text whose language was not recognised: its words are lower-cased only
MIN_PROBABILITY = 0.8  # a detection less sure than this is not believed
MIN_CHARS = 40  # shorter texts (a heading, a table cell) take their document's language

TOKEN = re.compile(r"[^\W_]+")  # letters and digits, as FTS5's unicode61 tokenizer splits them
MAX_WORD = 64  # longer "words" (hashes, base64) are kept whole but never split or stemmed

# German and Dutch joining elements between the parts of a compound (Fugenelemente, tussenklanken)
_LINKS = {"de": ("", "s", "es", "n", "en", "e"), "nl": ("", "s", "e", "en")}
_COMPOUND_MIN = 8  # shorter words are not split
_PART_MIN = 4  # nor into parts shorter than this ("unt|er|verzeichnis")
_PART_ZIPF = 3.0  # a part must be at least this common a word (Zipf scale: 3 = once per million words)
SPLIT_CACHE = 500_000  # words whose split is remembered
_WORD_ZIPF = 2.0  # words rarer than this count as unknown (0) when a compound is weighed against its parts
# How rare a word is in its language: from Zipf 3 down a name or a term of art ("certbot", "Härtung"), from
# Zipf 4 up an everyday word ("kaputt", "klappt")
RARE_ZIPF, COMMON_ZIPF = 3.0, 4.0
# The languages that write every noun with a capital: a word written in lower case is no noun nor name
NOUNS_CAPITALISED = frozenset({"de"})
# A word a question writes in capitals is a name below this frequency ("UDP", "OWASP"; not "USA", "GB", "PC"),
# one it capitalises inside a sentence below the second ("Linux", "Flask", "Renovate"; not "Windows", "Room")
CAPITALS_ZIPF, CAPITALISED_ZIPF = 4.0, 4.5
_INNER_CAPITAL = re.compile(r"[a-z][A-Z]")  # "GitHub", "reStructuredText", "WebP"
_OPENING = " \t\n\"'‘“«(¿¡-"  # what may stand between a sentence's end and its first word


_VERB_ENDINGS = ("est", "st", "et", "t", "e")


def verb_forms(word: str) -> list[str]:
    """`word` and the infinitives a German verb form written in a question may come from: "anfasst" ->
    "anfassen", "ermittle" -> "ermitteln", "spuckt" -> "spucken". Word lists count a verb's inflected
    forms apart, each rarer than its infinitive: "anfasst" is as rare as a term of art, "anfassen" is not."""
    forms = [word]
    for ending in _VERB_ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            base = word[:-len(ending)]
            forms += [base + "en", base + "n"]
            if base[-1] in "lr" and base[-2:-1] not in ("", "e"):  # "wandl-e" -> "wandeln", "änder-e" stays
                forms.append(f"{base[:-1]}e{base[-1]}n")
    return forms


class Analyzer:
    """Detects languages and analyses text for the keyword index; thread-safe, models loaded on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._identifier = None
        self._local = threading.local()  # Snowball stemmers are not thread-safe: one set per thread
        self._frequencies: dict[str, dict[str, float]] = {}
        self._splits: dict[tuple[str, str], tuple[str, ...]] = {}  # words repeat: each is split once

    def warm_up(self, languages: Sequence[str]) -> None:
        """Load what questions over an index of `languages` will need, now: the language model (when there is
        more than English) and the compound tables of its German or Dutch."""
        if any(lang not in ("en", UNKNOWN) for lang in languages):
            self._classifier()
        for language in languages:
            if language in _LINKS:
                self._zipf(language)

    def warm_up_names(self, languages: Sequence[str]) -> None:
        """Load the word lists `names` reads for questions over an index of `languages` (English's and each
        listed language's, about half a second each), so the first question does not wait for them."""
        for language in {"en", *languages} & _word_lists():
            self._zipf(language)

    def warm_up_in_background(self) -> None:
        """Load the language model in a thread now (0.7 s), so the first chunk written does not wait for it."""
        if self._identifier is None:
            threading.Thread(target=self._classifier, name="language-model", daemon=True).start()

    # -- languages -----------------------------------------------------------------------------------------
    def _classifier(self):  # type: ignore[no-untyped-def]
        with self._lock:
            if self._identifier is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
                identifier.set_languages(sorted(LANGUAGES))
                self._identifier = identifier
            return self._identifier

    def detect(self, text: str) -> tuple[str, float]:
        """(language, probability) of `text` among LANGUAGES; UNKNOWN when it has too few letters."""
        if sum(c.isalpha() for c in text[:2000]) < 3:
            return UNKNOWN, 0.0
        language, probability = self._classifier().classify(text[:2000])
        return str(language), float(probability)

    def languages(self, texts: Sequence[str], default: str = UNKNOWN) -> list[str]:
        """Each text's language: detected when the text is long enough and the detection sure, else `default`
        (its document's, for a heading or a table cell)."""
        out = []
        for text in texts:
            language, probability = self.detect(text) if len(text) >= MIN_CHARS else (UNKNOWN, 0.0)
            out.append(language if probability >= MIN_PROBABILITY else default)
        return out

    def document_language(self, texts: Iterable[str]) -> str:
        """The language of a document: detected on its first few thousand characters."""
        sample, size = [], 0
        for text in texts:
            sample.append(text)
            size += len(text)
            if size >= 5000:
                break
        language, probability = self.detect(" ".join(sample))
        return language if probability >= MIN_PROBABILITY else UNKNOWN

    # -- words ---------------------------------------------------------------------------------------------
    def _stemmer(self, language: str):  # type: ignore[no-untyped-def]
        stemmers = getattr(self._local, "stemmers", None)
        if stemmers is None:
            stemmers = self._local.stemmers = {}
        if language not in stemmers:
            import Stemmer

            stemmers[language] = Stemmer.Stemmer(LANGUAGES[language], 10_000) if language in LANGUAGES else None
        return stemmers[language]

    def _zipf(self, language: str) -> dict[str, float]:
        """Word -> its frequency on the Zipf scale, for the words common enough to be a compound's part."""
        with self._lock:
            table = self._frequencies.get(language)
            if table is None:
                from wordfreq import get_frequency_dict

                threshold = 10 ** (_WORD_ZIPF - 9)
                stops = stop_words(language)  # "ein" is no part of "Einstellungen"
                table = {w: math.log10(f) + 9 for w, f in get_frequency_dict(language, "large").items()
                         if f >= threshold and w.isalpha() and w not in stops}
                _release_wordfreq()  # its caches hold every word of the language: ~40 MB more
                self._frequencies[language] = table
            return table

    def rarity(self, word: str, language: str) -> float:
        """How rare `word` is in `language`, 0-1: 1 at or below Zipf `RARE_ZIPF` (a name, a term of art, a
        word wordfreq's list does not hold), 0 from `COMMON_ZIPF` on (an everyday word), linear between;
        1 for a language not recognised or without a large word list (nothing known of it)."""
        if language not in _word_lists():
            return 1.0
        zipf = self._zipf(language).get(word.lower(), 0.0)
        return min(1.0, max(0.0, (COMMON_ZIPF - zipf) / (COMMON_ZIPF - RARE_ZIPF)))

    def topic_weight(self, word: str, question: str, language: str) -> float:
        """How much `word` of `question`, held by no document, says the documents miss what the question is
        about, 0-1. In a language that writes its nouns with a capital (German), a word the question writes
        in lower case is a verb, an adjective or an adverb it is phrased with, which says as little as the
        word is common ("kaputt", "klappt", "wofür": 0; "nachinstallieren": 1), a verb's form as its
        infinitive ("anfasst" as "anfassen": `verb_forms`); a noun or a name says it in full ("Firma",
        "Podman"). In English or French nothing tells an everyday noun the manuals lack from a
        word of phrasing ("payments", "société" against "whether"): every word counts in full."""
        if language not in NOUNS_CAPITALISED:
            return 1.0
        lower = word.lower()
        written = [w for w in TOKEN.findall(question) if w.lower() == lower]
        if not written or not all(w[:1].islower() for w in written):
            return 1.0
        return min(self.rarity(form, language) for form in verb_forms(lower))

    def names(self, text: str, language: str) -> list[str]:
        """The words `text` (a question in `language`) writes as names, as written: a code of letters and
        digits ("68k", "SC2086"), a word with a capital inside ("GitHub", "WebP"), one in capitals that is no
        everyday word ("UDP", not "USA"); in a language that writes only names with a capital, a word
        capitalised inside a sentence that is no everyday word ("Flask", "Renovate", "Linux"; not "Windows");
        in English, a word in lower case that no word list holds in any inflection ("zstd", "biblatex"; not
        "hogged"). German capitalises every noun and writes its verbs as one word ("nachinstallieren"), and a
        French question's "mainteneur" is no name: there only the written forms count."""
        listed = language in _word_lists()
        out = []
        for match in TOKEN.finditer(text):
            word = match.group()
            if len(word) < 2 or word.isdigit():
                continue
            if not word.isalpha() or _INNER_CAPITAL.search(word):
                out.append(word)
                continue
            lower = word.lower()
            if not listed:
                name = word.isupper() and lower not in stop_words(language)
            elif word.isupper():
                name = self.commonness(lower, language) < CAPITALS_ZIPF
            elif word[0].isupper() and not _sentence_initial(text, match.start()):
                name = language not in NOUNS_CAPITALISED and self.commonness(lower, language) < CAPITALISED_ZIPF
            else:
                name = language == "en" and self.commonness(lower, language) == 0 and lower not in stop_words(language)
            if name:
                out.append(word)
        return out

    def commonness(self, word: str, language: str) -> float:
        """How common `word` (lower case) or its stem is in `language` or in English, on the Zipf scale: 0 when
        no word list holds it (below `_WORD_ZIPF`). wordfreq folds case, so "regelmäßig" is looked up as
        "regelmässig"."""
        forms = {word, word.casefold(), self.stem(word, language)}
        return max(self._zipf(lang).get(form, 0.0) for lang in {language, "en"} & _word_lists() for form in forms)

    def compound_parts(self, word: str, language: str) -> list[str]:
        """The parts of a German or Dutch compound (lower-case), or [] when `word` is not one: the split whose
        parts are common words, joining elements allowed, with the best geometric mean of the parts'
        frequencies, taken only when it beats the word's own frequency (a common word stays whole)."""
        if language not in _LINKS or len(word) < _COMPOUND_MIN or len(word) > MAX_WORD or not word.isalpha():
            return []
        key = (word, language)
        parts = self._splits.get(key)
        if parts is None:
            parts = _split(word, language, self._zipf(language))
            if len(self._splits) >= SPLIT_CACHE:  # bounded: a share's vocabulary, not every hash-like word
                self._splits.clear()
            self._splits[key] = parts
        return list(parts)

    def stem(self, word: str, language: str) -> str:
        stemmer = self._stemmer(language) if len(word) <= MAX_WORD else None
        return stemmer.stemWord(word) if stemmer is not None else word

    def passage_terms(self, text: str, language: str) -> str:
        """What the keyword index stores for `text` in `language`: its words without stop words, stemmed,
        each compound followed by its stemmed parts; space-separated."""
        stops = stop_words(language)
        out = []
        for word in TOKEN.findall(text.lower()):
            if word in stops:
                continue
            out.append(self.stem(word, language))
            out.extend(self.stem(part, language) for part in self.compound_parts(word, language))
        return " ".join(out)

    def question_language(self, text: str, languages: Sequence[str]) -> str:
        """The language of a question among the index's `languages`, UNKNOWN when not sure."""
        language, probability = self.detect(text)
        return language if probability >= MIN_PROBABILITY and language in languages else UNKNOWN

    def word_forms(self, word: str, languages: Sequence[str]) -> list[str]:
        """The index terms one question word may meet: its stem in each of the index's languages (the word
        itself where a language was not recognised), and for a compound its parts' stems."""
        word = word.lower()
        forms: list[str] = []
        for language in languages or (UNKNOWN,):
            forms.append(self.stem(word, language))
            forms.extend(self.stem(part, language) for part in self.compound_parts(word, language))
        return list(dict.fromkeys(f for f in forms if f))

    def is_stop_word(self, word: str, language: str) -> bool:
        return word.lower() in stop_words(language)


def _sentence_initial(text: str, start: int) -> bool:
    """Whether the word at `start` opens a sentence of `text` (or the text)."""
    before = text[:start].rstrip(_OPENING)
    return not before or before[-1] in ".?!:;…"


@lru_cache(maxsize=1)
def _word_lists() -> frozenset[str]:
    """Our languages wordfreq has a large word list for (not Danish, nor Norwegian under "no")."""
    from wordfreq import available_languages

    return frozenset(available_languages("large")) & frozenset(LANGUAGES)


def _release_wordfreq() -> None:
    """Drop wordfreq's cached frequency lists once our table is built from them."""
    import wordfreq

    for cached in (wordfreq.get_frequency_dict, wordfreq.get_frequency_list):
        getattr(cached, "cache_clear", lambda: None)()


def _split(word: str, language: str, zipf: dict[str, float]) -> tuple[str, ...]:
    """Koehn and Knight's split of `word` into common words (at most three parts): of the ways to read it
    as common words, the likeliest (the product of the parts' probabilities, so "Passwort|änderung" rather
    than "Pass|wort|änderung"), if its parts are more common than the word; () otherwise."""
    best: tuple[str, ...] = ()
    best_probability = -math.inf
    for parts in _candidates(word, language, zipf, 3):
        if len(parts) < 2:
            continue
        probability = sum(zipf[p] - 9 for p in parts)  # the parts' joint probability, in log: fewer parts win
        if probability > best_probability:
            best, best_probability = parts, probability
    # taken when the parts are more common than the word itself (the geometric mean of their frequencies)
    if best and sum(zipf[p] for p in best) / len(best) > zipf.get(word, 0.0):
        return best
    return ()


def _candidates(word: str, language: str, zipf: dict[str, float], depth: int) -> Iterable[tuple[str, ...]]:
    """Ways to read `word` as common words joined by the language's joining elements."""
    if zipf.get(word, 0.0) >= _PART_ZIPF:
        yield (word,)
    if depth <= 1:
        return
    for cut in range(_PART_MIN, len(word) - _PART_MIN + 1):
        head, rest = word[:cut], word[cut:]
        for link in _LINKS[language]:
            if link and not head.endswith(link):
                continue
            stem = head[:len(head) - len(link)] if link else head
            if len(stem) < _PART_MIN or zipf.get(stem, 0.0) < _PART_ZIPF:
                continue
            for tail in _candidates(rest, language, zipf, depth - 1):
                yield (stem, *tail)


@lru_cache(maxsize=None)
def stop_words(language: str) -> frozenset[str]:
    """The words of `language` too common to index or search: ours for English, the stop-words package's
    list for the others, none for a language not recognised."""
    if language == "en":
        from rag.search import STOPWORDS

        return STOPWORDS
    if language not in LANGUAGES:
        return frozenset()
    from stop_words import StopWordError, get_stop_words

    try:
        return frozenset(w.lower() for w in get_stop_words(LANGUAGES[language]))
    except StopWordError:
        return frozenset()


_ANALYZER: Analyzer | None = None
_ANALYZER_LOCK = threading.Lock()


def analyzer() -> Analyzer:
    """The process's analyzer (its models load once, on first use)."""
    global _ANALYZER
    with _ANALYZER_LOCK:
        if _ANALYZER is None:
            _ANALYZER = Analyzer()
        return _ANALYZER
