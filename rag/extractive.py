"""Quoted answers: the passage sentence(s) that answer the question, verbatim, with their citation.

A quote cannot invent anything. It is what the service shows when the model's answer is not backed by
the passages (answer_mode auto), and what it leads with for the small embedded demo model. Candidates
are the sentences of every retrieved passage, paragraph by paragraph. A sentence is chosen by its
embedding similarity to the question, the share of the question's words it holds (stemmed), whether it
holds what the question asks for, and the rank of its passage:

- a number ("how many", "what is the limit"), a time or date ("when"), a name ("who"), a place ("where");
- a default ("what is the default", "if I don't set it"): a sentence that says "default";
- an identifier ("which option", "what setting", "how do I ..."): an option, a setting, a command, a
  function, an environment variable, a path, written as code is ("--amend", "gc.auto", "os.makedirs()",
  "GIT_DIR", "/etc/fstab");
- a path ("where is", "which file").

A sentence that gives such a value which the question does not already give (a number, a name written as
code) scores higher than one that restates the question, and higher still when the value stands beside
the noun the question asks about ("Which environment variable ...": "set the PYTHONSAFEPATH environment
variable"; "how many loose objects": "waits for 6700 loose objects"). A chosen sentence that refers back to
the one before it ("This operation is useful for ...", "calling this function") is quoted with it; one
that lacks what the question asks for is completed by the next sentence of its paragraph that holds it
("gc.auto: When there are approximately more than this many loose objects ... The default value is
6700."), within three sentences; a sentence that announces what follows, or that the next one refers back
to, is completed by it. A question that names a definition list entry in full ("Which syslog facility ...")
is quoted from that entry (syslog_facility), not from a neighbour with a shorter name (syslog) whose
sentences share more of its words. Weights tuned on the documentation dev sets (tests/data/devsets, `rag
eval FOLDER --questions`) and checked on NarrativeQA and BoolQ (bench/answer_modes.py, docs/benchmarks.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rag.analysis import UNKNOWN, stop_words
from rag.embedding import Embedder
from rag.sentences import evidence_blocks, paragraphs, split_sentences
from rag.support import (STOPWORDS, Facts, content_words, extract_facts, fuzzy_words, stem, without_man_sections,
                         word_forms)
from rag.types import SECTION_SEPARATOR, Hit

# what a question asks for, by its words (English, German, French)
_WANTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(how (many|much|long|far|old|often|big|large|high|deep|wide|tall|small|fast|frequently)|"
                r"(what|which) (percentage|share|number|amount|price|size|limit|depth|length|width|height|port|timeout|"
                r"value|interval|threshold|ratio|version)|maximum|minimum|\bmax\b|\blimit\b|at most|at least|"
                r"(what|which)('s| is| are)? the (largest|smallest|highest|lowest|biggest|longest|shortest)\b|"
                r"wie (viele?|lange|oft|gro(ß|ss)|hoch|weit)|welche gr(ö|oe)(ß|ss)e|combien|quelle (taille|valeur|"
                r"limite|durée)|à partir de quel)\b", re.I), "number"),
    (re.compile(r"\b(default|by default|out of the box|if i (do not|don't|dont) (set|give|pass|specify|say)|"
                r"without (setting|giving|passing|specifying)|(leave|leaving|left) [\w.-]+( \w+)? out|if i (omit|skip)|"
                r"when (it is )?not set|unless (i|you) (set|say)|"
                # what the asker left alone: "if I never configure a size", "and don't say anything about the cost"
                r"(never|(?:do|does|did|have|has)n['’]t|not|nothing|without) (\w+ )?(set|setting|touch|touched|"
                r"configure[ds]?|configuring|change[ds]?|changing|specif(y|ied|ying)|say|saying|said|ask|asking|asked|"
                r"pass|passing|passed|give|giving|gave|mention|mentioning|tell|telling)\b|"
                r"without (any )?(options?|arguments?|flags?|settings?|parameters?)|"
                r"(nichts|nie|niemals|ohne \w+) (\w+ )?(angebe|angegeben|anzugeben|einstelle|eingestellt|einzustellen|"
                r"ändere|geändert|zu ändern|setze|gesetzt|zu setzen|angefasst)|"
                r"(rien|jamais|sans) (\w+ )?(préciser|précisé|spécifier|spécifié|configurer|configuré|changer|changé|"
                r"modifier|modifié|toucher|touché|indiquer|indiqué)|"
                r"\bn[e'’] ?(\w+ )?(précise|spécifie|configure|change|modifie|touche|indique)s? (rien|pas)|"
                r"standard(mäßig|wert)?|voreingestellt|voreinstellung|par défaut|défaut)\b", re.I), "default"),
    # "which option", and the name of one asked for: "what is the name of the package", "wie heißt das Paket"
    (re.compile(r"\b(which|what|welche[rsmn]?|quel(le)?s?|what(?:'s| is) the name of (?:the|a|an|my|our|this|that)|"
                r"wie (?:hei(?:ß|ss)(?:t|en)|lautet|lauten) (?:der|die|das|den|dem|mein|meine|unser|unsere)|"
                r"quel est le nom d(?:u|e la|e l'|es))\s+([\w-]+\s+){0,3}?(option|flag|switch|setting|settings|"
                r"config|configuration|variable|command|commands|function|method|module|package|key|keyword|"
                r"exception|error|class|parameter|argument|tool|program|utility|counter|macro|hook|syntax|"
                r"style|terminal|format|attribute|directive|field|helper|subcommand|environment|file|builtin|"
                r"construct|statement|operator|shortcut|"
                r"befehl|paket|option|einstellung|programm|werkzeug|datei|tastenkombination|kommando|"
                r"commande|paquet|fichier|programme|outil|réglage|touche)s?\b|"
                r"\bhow (do|can|could|should|would) (i|we|you|one|my|our|the|a)\b|\bhow to\b|"
                r"\bwhat do i (use|type|run|call|put|add|write)\b|"
                r"\b(is there|gibt es|y a-t-il) (a|an|ein|eine|un|une)\b|"
                r"\b(the|a) (recommended|preferred|best|right|proper|correct|usual) way\b|"
                r"\bwie (kann|könnte|muss|soll) (ich|man)\b|\bwie \w+ (ich|man)\b|\bmit welche[mr]\b|"
                r"(?:^|[.?!:]\s+)comment\b|\bcomment (puis-je|faire|"
                r"peut-on|on|activer|changer|installer|configurer|afficher|désactiver|empêcher|savoir)\b",
                re.I), "identifier"),
    (re.compile(r"\b(where|which (file|folder|directory)|in which file|what file|wo\b|wohin|welche[rsmn]? "
                r"(datei|verzeichnis|ordner)|où|quel (fichier|répertoire|dossier))\b", re.I), "path"),
    # "When ...?" asks for a time; "When I add a table ..., can slonik ...?" sets a condition for its question,
    # but "When did it change, and why?" asks (its verb before its subject: "did it", "a-t-il", "est-ce que")
    (re.compile(r"^\s*(?:(?:when|quand)\b(?:(?=\s+(?:did|does|do|is|are|was|were|will|would|can|could|should|"
                r"has|have|had|must|may|might|est-ce|\w+-(?:t-)?(?:il|elle|on|ils|elles|je|tu|nous|vous))\b)|"
                r"(?![^?]*,\s*\w))|wann\b)(?!.*\b(which|what|how|where|who|welche|wie|wo|quel|comment|où)\b)|"
                r"\b(what (time|date|day|year|month)|until when|since when|by when)\b", re.I), "time"),
    (re.compile(r"\b(since (which|what) version|which version|what version|in which version|"
                r"seit welcher version|depuis quelle version)\b", re.I), "version"),
    (re.compile(r"^\s*(who|whom|whose|which (person|company|team|department)|wer|qui)\b", re.I), "name"),
)
_CONTINUES = re.compile(r"^\s*(it|this|that|these|those|they|he|she|its|their|his|her|there|then|also|however|"
                        r"but|and|otherwise|so|thus|for example|e\.g\.)\b", re.I)
# a sentence that opens by referring back to the one before it ("This operation ...", "Diese Option ...")
_REFERS_BACK = re.compile(r"^\s*(this|these|those|it|its|they|their|such|dies|diese[rsmn]?|ceci|cela|cette|ces|"
                          r"il|elle|ils|elles)\b|\b(this|these|diese[rsmn]?|cette|ce|cet|ces) (function|method|command|"
                          r"option|setting|variable|package|module|tool|program|hook|macro|class|parameter|funktion|"
                          r"befehl|paket|programm|fonction|commande|paquet|programme)s?\b", re.I)
# how code is written in prose: options, dotted and underscored names, calls, paths, variables, macros
_IDENTIFIER = re.compile(
    r"(?:(?<![\w-])--?[A-Za-z][\w-]*(?:=\S+)?"  # -x, --amend, --cleanup=<mode>
    r"|\b[A-Za-z_][\w-]*\.[A-Za-z_][\w.-]*\b"  # gc.auto, os.path.join, .gitignore-like names
    r"|\b\w+\(\)"  # os.makedirs()
    r"|\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b"  # GIT_DIR
    r"|\\[A-Za-z]+"  # \setcounter, a TeX macro
    r"|(?:~|\$\w+|\.{1,2})?/[\w.-]+(?:/[\w.-]+)+"  # paths
    r"|\b[a-z]+[A-Z]\w*\b"  # camelCase config names
    r"|\b[a-z][\w]*-[a-z][\w-]*\b(?=\s*(?:\(\d\)|command|option|package|tool))"  # git-commit(1), apt-get tool
    r")")
_IDENT = _IDENTIFIER.pattern
# a definition's term written as a plain word, as option lists give them ("cdspell: If set, minor errors ...",
# "twoside: switches on ..."), or as a function's entry with its arguments and outputs ("nproc (query): Return
# ...", "h = imagesc (...): Display ..."), not a table row ("package: wl-clipboard · popcon: ...")
_WORD_TERM = re.compile(r"^\s*(?:[\w\[\], ]{1,30} = )?(?P<term>[a-z][a-z0-9_]*)(?: ?\([^()]{0,40}\))?:[ \t]+(?=\S)"
                        r"(?!.*\s·\s)")
# a name in capitals, as environment and shell variables are written ("HISTTIMEFORMAT", "PGDATA"), not the
# label of a note or of a manual page's section
_CAPS_NAME = (r"(?!(?:NOTES?|WARNINGS?|CAUTION|IMPORTANT|HINT|TODO|FIXME|EXAMPLES?|DESCRIPTION|SYNOPSIS|"
              r"OPTIONS|USAGE|BUGS|AUTHORS?|FILES|ENVIRONMENT|ERRORS?|DANGER|ATTENTION|NAME|RETURNS?|HINWEIS|"
              r"ACHTUNG|BEISPIELE?|REMARQUE|EXEMPLES?)\b)\b[A-Z][A-Z0-9]{3,}(?:_[A-Z0-9]+)*\b")
# a sentence that gives an identifier as the answer, not one that merely mentions one: a definition's term
# ("--follow: Continue listing ...", "HISTTIMEFORMAT: If this variable is set ..."), "use --amend", "the
# gc.auto setting", "the PYTHONHASHSEED environment variable", "option -x", "the variable FUNCNEST"
_INTRODUCES = re.compile(
    rf"^\s*(?:{_IDENT})[^:]{{0,60}}:\s"
    rf"|^\s*{_CAPS_NAME}:\s"
    rf"|{_WORD_TERM.pattern}"
    rf"|\b(?i:use|using|set|setting|run|running|pass|passing|specify|add|enable|disable|with|via|call|invoke|type|"
    rf"try|give|configure|verwenden|benutzen|setzen|utilisez|utiliser|lancez)\s+(?:the\s+|die\s+|den\s+|le\s+|la\s+)?"
    rf"(?:{_IDENT}|\b[a-z][\w-]*\s+[a-z][\w-]*\b(?=\s+(?:command|option)))"
    rf"|\b(?:raises?|raising|throws?)\s+(?:an?\s+|the\s+)?[A-Z]\w+"  # an exception: "Raises EmptyShelf"
    rf"|\b[A-Z]\w*(?:Error|Exception|Warning)\b"
    rf"|\b(?i:run|running|type|execute|invoke|ausführen|exécutez|tapez)\s+(?:`|\")?[a-z][\w.-]*(?:\s+[a-z-][\w.-]*){{1,3}}"
    rf"|(?:{_IDENT}|\b[A-Z][A-Z0-9]{{3,}}\b)\s+(?:[\w-]+\s+)?(?:option|flag|switch|setting|variable|command|"
    rf"function|method|hook|attribute|parameter|"
    rf"key|package|program|tool|Option|Befehl|Paket|Programm|commande|paquet)\b"
    rf"|\b(?:option|flag|switch|setting|variable|command|hook|parameter|macro|counter|Option|Befehl|Paket|"
    rf"Parameter|Variable|commande|paquet|paramètre)\s+(?:{_IDENT}|{_CAPS_NAME})"
    # a command typed at a prompt after the sentence that announces it ("... la commande qui suit : $ sudo
    # update-alternatives --config editor")
    rf"|\S\s?[:.]\s+(?:\$|>>>)\s+[a-z][\w.-]*")
# a line typed at a prompt, as manuals show commands: "$ git bisect skip", "# dpkg --configure -a", ">>> f()"
_COMMAND_LINE = re.compile(r"^\s*(?:[$#%]|>>>)\s+(?P<command>[\w.(/-]+)")


def is_command_line(line: str) -> bool:
    """Whether `line` is a command typed at a prompt, not a comment ("# here are the modules")."""
    match = _COMMAND_LINE.match(line)
    return match is not None and match.group("command").lower() not in STOPWORDS and not line.rstrip().endswith(".")


_PATH = re.compile(r"(?:(?<![\w])(?:~|\$\w+|\.{1,2})?/[\w.-]+(?:/[\w.-]*)*|\b[\w-]+\.(?:conf|cfg|ini|txt|py|json|"
                   r"ya?ml|toml|log|rc|d|list|sources|gitignore|gitattributes|git-credentials)\b"
                   r"|(?<![\w./-])\.[a-z][a-z0-9_-]{2,}\b(?!\.\w))")  # a dotfile: ".pgpass", ".bashrc"
_DEFAULT = re.compile(r"\b(default|defaults|by default|standard|voreingestellt|voreinstellung|par défaut|défaut)\b",
                      re.I)
_VERSION = re.compile(r"\b(version|release|since|seit|depuis)\s+v?\d+(\.\d+)+|\bv?\d+\.\d+(\.\d+)?\b", re.I)
_MONTHS = {"january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
MAX_SENTENCES = 3  # a quote is an answer, not a passage


def question_wants(question: str) -> set[str]:
    """What kinds of fact the question asks for: number, default, identifier, path, time, version, name."""
    return {kind for pattern, kind in _WANTS if pattern.search(question)}


def has_kind(sentence: str, facts: Facts, kind: str) -> bool:
    """Whether `sentence` holds a fact of `kind` (see `question_wants`)."""
    if kind == "number":
        return any(q.unit != "time" for q in facts.quantities)
    if kind == "time":
        return bool(facts.quantities) or bool(facts.names & _MONTHS)
    if kind in ("name", "place"):
        return bool(facts.names)
    if kind == "default":
        return _DEFAULT.search(sentence) is not None
    if kind == "identifier":
        return _INTRODUCES.search(sentence) is not None
    if kind == "path":
        return _PATH.search(sentence) is not None
    if kind == "version":
        return _VERSION.search(sentence) is not None
    return False


def kind_score(sentence: str, facts: Facts, wants: set[str]) -> float:
    """The share of what the question asks for that the sentence holds (0 when it asks for nothing)."""
    if not wants:
        return 0.0
    return sum(has_kind(sentence, facts, kind) for kind in wants) / len(wants)


_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)?\b")
# the value a sentence says is the default, whatever it is written as: "extrap defaults to NA", "The default
# is off.", "Default is xy", "la valeur par défaut est false"
_DEFAULT_VALUE = re.compile(r"\b(?:defaults? to|default(?: value| setting)? is|par défaut (?:est|vaut)|"
                            r"valeur par défaut est)\s+(?:(?:the|a|an|la|le)\s+|l[’'])?(?:[\"“'‘`]|«\s?)?"
                            r"(?P<value>[\w./-]*\w)", re.I)
_SWITCH_VALUES = frozenset("on off yes no all".split())  # values, though stop words elsewhere


def new_value(question: str, text: str, wants: set[str]) -> bool:
    """Whether `text` gives a value of the kind the question asks for that the question does not already
    give: a number, a name written as code or as a definition's term, or what it says a default is (an
    answer, not a sentence that restates the question)."""
    values = []
    if wants & {"identifier", "path", "default"}:
        values += [m.group() for m in _IDENTIFIER.finditer(text)]
        term = _WORD_TERM.match(text)
        if term and "identifier" in wants:
            values.append(term.group("term"))
    if wants & {"number", "default", "version", "time"}:
        values += _NUMBER.findall(without_man_sections(text))
    if "default" in wants:
        values += [m.group("value") for m in _DEFAULT_VALUE.finditer(text)
                   if m.group("value").lower() in _SWITCH_VALUES or m.group("value").lower() not in STOPWORDS]
    asked = question.lower()
    return any(value.lower() not in asked for value in values)


# the noun phrase a question asks about, after its question word: "which environment variable", "how many
# loose objects", "welches Paket", "quel fichier"
_FOCUS = re.compile(r"\b(?:which|what|how many|how much|wie viele|wieviele|welche[rsmn]?|quel(?:le)?s?|combien de|"
                    r"lequel|laquelle)\s+((?:[\w./'-]+\s*){1,5})", re.I)
# a value as a document gives one: a name written as code, a path, a number with its unit, a constant
_VALUE = re.compile(rf"(?:{_IDENT}|{_PATH.pattern}|\d[\d.,]*\w*|[A-Z][A-Z0-9_]{{3,}})")
_INVERTED_VERB = re.compile(r"-(?:t-)?(?:il|elle|on|ils|elles|je|tu|nous|vous)$")  # French: "garde-t-il"
_EDGE_PUNCTUATION = "\"'“”‘’«»„()[]{},;:.!?`"
# a table's cell as the parsers write rows: "Header: | value" (a row's header cell), "Column: value · Column: value"
_TABLE_CELL = re.compile(r"(?:^|(?<= · )|(?<=: ))(?P<label>\w[\w ]{0,30}):(?P<separator> \| | )"
                         r"(?P<value>[^·|]+?)(?= · |$)")


@lru_cache(maxsize=1)
def _focus_stop_words() -> frozenset[str]:
    """Words that end a question's focus: stop words of the languages questions are read in, and the verbs a
    question word is followed by ("which is", "what does")."""
    return (STOPWORDS | stop_words("de") | stop_words("fr")
            | frozenset("do does did is are was were should can could would will has have must i we you my".split()))


def question_focus(question: str) -> set[str]:
    """The stems of the words a question asks about, right after its question word up to the first stop word
    or verb it knows ("Which environment variable stops ...": environment, variable; "Mit welchem Paket kann
    ich ...": paket; "Dans quel fichier APT garde-t-il ...": fichier, apt)."""
    stops = _focus_stop_words()
    out = set()
    for match in _FOCUS.finditer(question):
        for word in match.group(1).split():
            word = word.strip(".,?!:;").lower()
            if not word or word in stops or _INVERTED_VERB.search(word):
                break
            out.add(stem(word))
    return out


def focus_value(focus: set[str], question: str, text: str, window: int = 3) -> bool:
    """Whether `text` names a value beside a word the question asks about, within `window` words, that the
    question does not give: "the PYTHONSAFEPATH environment variable", "waits for 6700 loose objects",
    'in die Datei "/etc/modules"' (`question_focus`). How an answer names what was asked, where a sentence
    that only restates the question has the words and no value."""
    if not focus:
        return False
    asked = question.lower()
    asked_words = {word.strip(_EDGE_PUNCTUATION) for word in asked.split()}
    for cell in _TABLE_CELL.finditer(text):  # a table's cell named by its row or column: "Context: | server config"
        if ((cell["separator"] == " | " or " · " in text) and stem(cell["label"].split()[-1].lower()) in focus
                and any(word.strip(_EDGE_PUNCTUATION).lower() not in asked_words for word in cell["value"].split())):
            return True
    words = text.split()
    for i, word in enumerate(words):
        if stem(word.strip(_EDGE_PUNCTUATION).lower()) not in focus:
            continue
        for near in words[max(0, i - window):i] + words[i + 1:i + window + 1]:
            value = near.strip(_EDGE_PUNCTUATION)
            if value and value.lower() not in asked and _VALUE.fullmatch(value):
                return True
    return False


@dataclass(frozen=True)
class Quote:
    """The sentence(s) that answer a question, as they stand in passage `source`."""

    text: str
    source: int  # the passage's number
    score: float


def _stems(text: str) -> set[str]:
    return {stem(w) for w in content_words(text)}


_DEFINITION = re.compile(r"^[^\s:][^:]{0,80}:\s")  # "gc.auto: When ...", "-a, --all: Tell ..."

# The features a candidate sentence is scored on, and the weights of the shipped scorer: fitted by listwise
# logistic regression on the documentation dev sets (bench/quote_selection.py, which also reports how they
# do on a set left out of the fit).
FEATURES = ("similarity", "paragraph_similarity", "overlap", "paragraph_overlap", "kind", "quote_kind",
            "passage_rank", "passage_similarity", "first_in_paragraph", "definition", "length", "unit", "code",
            "new_value", "focus_value")
SCORER = (3.106, 3.027, 2.750, 2.784, 1.114, 0.793, -0.272, 0.285, -0.002, -0.303, -0.489, -0.653, 0.417, 1.152, 1.472)
# The features that compare a sentence's meaning with the question's through the embedding model. A model
# trained on one language (all-MiniLM-L6-v2: English) says little about sentences in another: for the German
# and French questions of the dev sets the answer held the fact 30 times in 50 with them and 33 without, for
# those of the check sets 25 and 31 in 60, while in English they are the scorer's strongest (the best sentence
# held the fact for 85 of 181 dev questions, 79 without them). `scorer_for` leaves them out for a question
# in a language the model was not trained on.
SIMILARITY_FEATURES = ("similarity", "paragraph_similarity")


def scorer_for(language: str, model_languages: Sequence[str], scorer: Sequence[float] = SCORER) -> tuple[float, ...]:
    """The scorer's weights for a question in `language` (as `Searcher.question_language` gives it): `scorer`,
    less the sentence similarity features when the embedding model was trained on `model_languages` only
    and `language` is another one ("*" among them: any language; an unsure detection keeps them)."""
    if language in model_languages or "*" in model_languages or language == UNKNOWN:
        return tuple(scorer)
    return tuple(0.0 if name in SIMILARITY_FEATURES else w for name, w in zip(FEATURES, scorer))


# words that name what a number counts ("how many seconds", "which port")
_UNIT_WORDS = re.compile(r"\b(seconds?|minutes?|hours?|days?|weeks?|months?|years?|bytes?|kb|mb|gb|kib|mib|gib|"
                         r"characters?|chars?|columns?|rows?|lines?|entries|items?|objects?|files?|pages?|points?|pt|"
                         r"percent|port|depth|levels?|times|threads?|workers?|sekunden|tage|zeichen|secondes|jours|"
                         r"caractères|colonnes)\b", re.I)


@dataclass(frozen=True)
class Candidate:
    """A sentence of a retrieved passage, with its paragraph (for completion) and where it came from."""

    number: int  # the passage's number (its citation)
    rank: int  # the passage's place in the retrieval, from 0
    passage_similarity: float  # the passage's cosine similarity to the question (0 when unknown)
    block: list[str]  # the paragraph's sentences
    index: int  # this sentence's place in the paragraph
    section: str  # the passage's heading path
    after: str = ""  # the first sentence (or line) of the passage's next paragraph, when this one ends its own

    @property
    def sentence(self) -> str:
        return self.block[self.index]

    def quote(self, wants: set[str]) -> str:
        """The quote made from this sentence for a question asking for `wants` (see `complete`), after the
        term its passage describes when the quote does not name it ("-x: When recording the commit, ...")."""
        text = complete(self.block, self.index, wants, self.after)
        term = section_term(self.section)
        if term and not any(name.lower() in text.lower() for name in _term_names(term)):
            return f"{term}: {text}"
        if not term and "identifier" in wants and _SUBJECT_REFERENCE.match(text):
            subject = section_subject(self.section)
            if subject and subject.lower() not in text.lower():
                return f"{subject}: {text}"
        return text


# The last heading of a passage's path when it is a term a definition list describes at length (an option, a
# setting, a macro: "OPTIONS › -x", "Variables › core.worktree", "7.7 \\XeTeXLinkBox"; an API entry's signature:
# "exception subprocess.TimeoutExpired", "void Py_DECREF(PyObject *o)"), not a section's title.
_HEADING_NUMBER = re.compile(r"^\d+(?:\.\d+)*\.?\s+")
_TERM_PART = re.compile(r"^(?:[-\\]\S*|\S*[.=_<>{}\[\]()/]\S*|[a-z][a-z0-9-]*)$")
_SIGNATURE = re.compile(r"^(?:(?P<kind>[a-z]+)\s+)?(?P<name>[^\s(]+)\s*(?P<args>\(.*\))?$")
_CODE_NAME = re.compile(r"[._]|[a-z][A-Z]|^[-\\]")  # a dotted or snake_case name, CamelCase, an option or macro
_TERM_NAME = re.compile(r"^[-\\]*[\w.-]+")
# a heading that names what its section describes by its kind ("AcceptFilter Directive", "Directive XBitHack",
# as Apache's manual heads each directive)
_KINDS = r"directive|option|command|function|variable|setting|parameter|macro|hook|direktive|commande|fonction|paramètre"
_KIND_HEADING = re.compile(rf"^(?:(?:{_KINDS})\s+(?P<after>\S+)|(?P<before>\S+)[\s-](?:{_KINDS}))$", re.I)


def _api_signature(term: str) -> re.Match[str] | None:
    """`term` as an API entry's signature: a name written as code after its kind or before its arguments."""
    signature = _SIGNATURE.match(term)
    if signature and (signature["kind"] or signature["args"]) and _CODE_NAME.search(signature["name"]):
        return signature
    return None


def section_term(section: str) -> str:
    """The term the passage under heading path `section` describes, or "" when its last heading is a title."""
    last = _HEADING_NUMBER.sub("", section.rsplit(SECTION_SEPARATOR, 1)[-1].strip())
    signature = _api_signature(last)
    if signature:
        return last if len(last) <= 80 else " ".join(filter(None, (signature["kind"], signature["name"])))
    kind = _KIND_HEADING.match(last)
    if kind and _CODE_NAME.search(kind["after"] or kind["before"]):
        return kind["after"] or kind["before"]
    parts = [part.strip() for part in re.split(r",\s+", last)]
    if not last or len(last) > 60 or not all(part and _TERM_PART.match(part) for part in parts):
        return ""
    return last


# A heading that names the module, program or class its section is about: "Apache Module mod_remoteip", "Module
# Apache mod_ratelimit" (a name written as code after its kind), "shutil — High-level file operations" (a
# name before a dash, as Sphinx heads a module's page).
_SUBJECT_KINDS = (r"module|modul|package|paquet|paket|program|programme|programm|command|commande|befehl|tool|"
                  r"outil|werkzeug|utility|class|classe|klasse|library|bibliothèque|bibliothek")
_SUBJECT_HEADING = re.compile(rf"^(?:\S+\s+)?(?i:{_SUBJECT_KINDS})\s+(?:\S+\s+)?(?P<name>[A-Za-z][\w.-]*)$")
_DASHED_SUBJECT = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)\s+[—–]\s+\S")
# a sentence about its section's subject that does not name it: "This module is used to ...", "Provides a
# filter ...", "Ce module permet ...", "Dieses Modul stellt ..."
_SUBJECT_REFERENCE = re.compile(
    rf"^\s*(?:(?:this|the|ce|cet|cette|le|la|dieses?|der|die|das)\s+(?:{_SUBJECT_KINDS}|utilitaire|programms?)\b"
    rf"|(?:provides|implements|fournit|implémente|offre|permet|stellt|bietet|implementiert)\b)", re.I)


def section_subject(section: str) -> str:
    """The module, program or class a passage under heading path `section` is about, from the nearest
    heading that names one ("mod_remoteip" of "Apache Module mod_remoteip › Summary"), or "". Quoted before a
    sentence that only says "This module ..." when the question asks which one."""
    for heading in reversed(section.split(SECTION_SEPARATOR)):
        heading = _HEADING_NUMBER.sub("", heading.strip())
        named = _SUBJECT_HEADING.match(heading)
        if named and _CODE_NAME.search(named["name"]):
            return named["name"]
        dashed = _DASHED_SUBJECT.match(heading)
        if dashed:
            return dashed["name"]
    return ""


def _term_names(term: str) -> list[str]:
    """The names a term gives: "--git-dir=<path>" names --git-dir; "-a, --all" -a and --all; "exception
    subprocess.TimeoutExpired" subprocess.TimeoutExpired and TimeoutExpired."""
    signature = _api_signature(term)
    if signature:
        name = signature["name"]
        short = name.rsplit(".", 1)[-1]  # "TimeoutExpired" names it too; "join" of "os.path.join" does not
        return [name, short] if short != name and _CODE_NAME.search(short) else [name]
    names = [m.group() for part in re.split(r",\s+", term) if (m := _TERM_NAME.match(part.strip()))]
    return names or [term]


def candidate_sentences(passages: Sequence[tuple[int, Hit]]) -> list[Candidate]:
    """Every sentence that can be quoted from the passages [(number, hit)], best-ranked passage first."""
    out = []
    for rank, (number, hit) in enumerate(passages):
        blocks = _blocks_under_headings(hit)
        for position, (section, block) in enumerate(blocks):
            after = blocks[position + 1][1][0] if position + 1 < len(blocks) else ""
            for index in range(len(block)):
                out.append(Candidate(number, rank, hit.dense_score or 0.0, block, index, section,
                                     after if index == len(block) - 1 else ""))
    return out


def _blocks_under_headings(hit: Hit) -> list[tuple[str, list[str]]]:
    """The passage's `evidence_blocks` with the heading path each stands under: a merged passage's heading
    lines (`Hit.sections`) switch it and are no sentences themselves."""
    if not hit.sections:
        return [(hit.section, block) for block in evidence_blocks(hit.text)]
    marks, section, out = list(hit.sections), hit.section, []
    for paragraph in paragraphs(hit.text):
        if marks and paragraph == " ".join(marks[0][0].split()):
            section = marks.pop(0)[1]
            continue
        out.extend((section, block) for block in evidence_blocks(paragraph))
    return out


def sentence_features(question: str, candidates: Sequence[Candidate], embedder: Embedder,
                      word_weights: dict[str, float] | None = None) -> np.ndarray:
    """The `FEATURES` of each candidate for `question` (one embedding call for the question, the sentences
    and their paragraphs). `word_weights`: the rarity of the question's words (IDF over what the asker may
    read); without them every word counts the same."""
    # each text once: a one-sentence paragraph is its sentence, and overlapping passages repeat sentences
    # (a sixth of the characters on the dev sets' retrievals)
    texts = list(dict.fromkeys([c.sentence for c in candidates] + [" ".join(c.block) for c in candidates]))
    question_vector = embedder.embed_queries([question])[0]
    vectors = dict(zip(texts, embedder.embed_to_compare(texts)))
    # a question word is matched by its stem or any of its forms (`word_forms`: German's and French's
    # stems, a compound's head), as the relevance matches it
    weights: dict[str, float] = {}
    forms: dict[str, set[str]] = {}
    for word, weight in (word_weights or {w: 1.0 for w in content_words(question)}).items():
        key = stem(word)
        weights[key] = max(weights.get(key, 0.0), weight)
        forms.setdefault(key, {key}).update(word_forms(word))
    total = sum(weights.values()) or 1.0
    wants = question_wants(question)
    units = {stem(u.lower()) for u in _UNIT_WORDS.findall(question)} if "number" in wants else set()
    focus = question_focus(question)

    @lru_cache(maxsize=None)
    def words_of(text: str) -> frozenset[str]:  # a paragraph is read once for all its sentences
        return frozenset(_stems(text) | fuzzy_words(text))

    rows = []
    for candidate in candidates:
        sentence = candidate.sentence
        paragraph = " ".join(candidate.block)
        sentence_words = words_of(sentence)
        paragraph_words = words_of(f"{candidate.section} {paragraph}")
        quote = candidate.quote(wants)
        rows.append([
            float(vectors[sentence] @ question_vector),
            float(vectors[paragraph] @ question_vector),
            sum(v for w, v in weights.items() if forms[w] & sentence_words) / total,
            sum(v for w, v in weights.items() if forms[w] & paragraph_words) / total,
            kind_score(sentence, extract_facts(sentence, evidence=True), wants),
            kind_score(quote, extract_facts(quote, evidence=True), wants),
            float(candidate.rank),
            candidate.passage_similarity,
            float(candidate.index == 0),
            float(candidate.index == 0 and _DEFINITION.match(sentence) is not None),
            min(len(sentence.split()), 60) / 60,
            float(bool(units) and bool(units & {stem(u.lower()) for u in _UNIT_WORDS.findall(quote)})),
            sum(1 for ch in sentence if not (ch.isalnum() or ch.isspace())) / max(1, len(sentence)),
            float(new_value(question, quote, wants)),
            float(focus_value(focus, question, quote)),
        ])
    return np.array(rows, dtype=np.float32).reshape(len(candidates), len(FEATURES))


@dataclass(frozen=True)
class ScoredCandidates:
    """Every quotable sentence of some passages, scored for a question (computed once, for the relevance and
    for the quote)."""

    chunk_ids: tuple[int, ...]  # the passages', in order
    candidates: list[Candidate]
    scores: np.ndarray
    features: np.ndarray  # candidates x FEATURES

    @property
    def best(self) -> float:
        return float(self.scores.max()) if len(self.scores) else 0.0

    @property
    def best_similarity(self) -> float:
        """The highest embedding similarity of one sentence to the question."""
        return float(self.features[:, 0].max()) if len(self.features) else 0.0


def score_candidates(question: str, passages: Sequence[tuple[int, Hit]], embedder: Embedder,
                     word_weights: dict[str, float] | None = None, scorer: Sequence[float] = SCORER) -> ScoredCandidates:
    """The sentences of the passages [(number, hit)] with their scores for `question` (`SCORER` · features)."""
    candidates = candidate_sentences(passages)
    features = (sentence_features(question, candidates, embedder, word_weights) if candidates
                else np.zeros((0, len(FEATURES)), dtype=np.float32))
    return ScoredCandidates(tuple(hit.chunk_id for _, hit in passages), candidates,
                            features @ np.asarray(scorer, dtype=np.float32), features)


def choose_quote(question: str, scored: ScoredCandidates, margin: float) -> list[Quote]:
    """The quote for `question` from its scored candidates: the best-scoring sentence (or the best of the
    definition list entry the question names in full, over a neighbour with a shorter name: `named_entry`),
    completed as `complete` says (and followed by its section's line of defaults when a default is asked for
    and the sentence gives none), then the runners-up in score order that score within `margin` below it,
    each completed too, while the whole stays within MAX_SENTENCES (one that would not fit, or would repeat a
    sentence already quoted, is passed over for the next). When sentences score that close the scorer
    cannot tell which one answers: each is shown with its citation, the best first. Empty when the passages
    hold no sentence."""
    candidates, scores = scored.candidates, scored.scores
    if not candidates:
        return []
    order = [int(i) for i in np.argsort(-scores, kind="stable")]
    named = named_entry(question, candidates, order)
    if named is not None:
        order.remove(named)
        order.insert(0, named)
    wants = question_wants(question)
    best = candidates[order[0]]
    text = best.quote(wants)
    quote = [Quote(text, best.number, round(float(scores[order[0]]), 4))]
    sentences = len(split_sentences(text))
    default = _default_line(best, candidates, text, wants)
    if default is not None and sentences < MAX_SENTENCES:
        line = candidates[default]
        quote.append(Quote(line.sentence, line.number, round(float(scores[default]), 4)))
        text += " " + line.sentence
        sentences += 1
    for i in order[1:]:
        if sentences >= MAX_SENTENCES or scores[order[0]] - scores[i] > margin:
            break
        if scores[i] > scores[order[0]]:  # passed over for the entry the question names (`named_entry`)
            continue
        more = candidates[i].quote(wants)
        parts = split_sentences(more)
        if any(part in text for part in parts):  # what is quoted is not quoted again, nor completes another
            continue
        count = len(parts)
        if sentences + count <= MAX_SENTENCES:
            quote.append(Quote(more, candidates[i].number, round(float(scores[i]), 4)))
            text += " " + more
            sentences += count
    return quote


def entry_term(candidate: Candidate) -> str:
    """The term of the definition list entry `candidate` stands in: its paragraph's "term: ..." or, for an
    entry long enough to be a section of its own, its last heading when that is a term; else ""."""
    first = candidate.block[0]
    if _DEFINITION.match(first):
        return first[:first.index(":")]
    return section_term(candidate.section)


def _term_words(term: str) -> list[str]:
    """A term's words as a question writes them: "syslog_facility (string)" is syslog, facility."""
    return [w for w in re.split(r"[^\w]+|_", re.sub(r"\([^()]*\)", " ", term).lower()) if w]


def _phrase(words: list[str]) -> str:
    """`words` as one string padded with spaces, so that `in` finds them as whole words in another one."""
    return f" {' '.join(words)} "


def named_entry(question: str, candidates: Sequence[Candidate], order: Sequence[int]) -> int | None:
    """The best-scoring sentence of another entry, when the question names that entry's term in full and the
    best sentence's entry has a shorter term the longer one contains: asked for the "syslog facility", the
    entry syslog_facility answers, not its neighbour syslog, whose sentences share more of the question's
    words. `order`: the candidates' indexes by score, best first. None otherwise."""
    asked = _phrase(_term_words(question))
    words = _term_words(entry_term(candidates[order[0]]))
    short = _phrase(words)
    if not words or short not in asked:
        return None
    for i in order[1:]:  # by score: the first sentence found is its entry's best
        longer = _term_words(entry_term(candidates[i]))
        if len(longer) > len(words) and _phrase(longer) in asked and short in _phrase(longer):
            return i
    return None


# a line that gives its section's defaults: "Default settings: set history size 500 numbers trim.",
# "Default: | LimitRequestBody 1073741824", "Défaut : | ...", "Voreinstellung: ..."
_DEFAULT_LINE = re.compile(r"^\s*(?:default(?: settings?| values?)?|defaults|par défaut|défaut|valeur par défaut|"
                           r"voreinstellung|standardwert|standard)\s?:", re.I)


def _default_line(best: Candidate, candidates: Sequence[Candidate], text: str, wants: set[str]) -> int | None:
    """The index among `candidates` of the line of the best sentence's section that gives its defaults, when
    the question asks for a default that the best quote does not give: manuals state it apart from the
    description ("Default settings: set history size 500 ..." under the history command's description)."""
    if "default" not in wants or _DEFAULT.search(text) is not None:  # the quote gives one (as `has_kind` tells)
        return None
    for i, candidate in enumerate(candidates):
        if (candidate.number == best.number and candidate.section == best.section and candidate is not best
                and _DEFAULT_LINE.match(candidate.sentence) and candidate.sentence not in text):
            return i
    return None


def complete(block: list[str], index: int, wants: set[str], after: str = "") -> str:
    """Sentence `index` of a paragraph, completed by the sentences around it in the paragraph: the one before
    when this one refers back to it ("The smooth unwrap option modifies ... This operation is useful for
    ..."); the next sentence holding what the question asks for, when these lack it (one holding all of it
    before one holding some; up to MAX_SENTENCES in all, the ones between included); else the next one when
    this one announces it (ends with ":"), is a fragment of under six words, or the next one refers back to
    it ("It ...", "This ..."). `after`, the first line of the next paragraph when this sentence ends its own,
    completes it when this sentence announces it ("... tell Git to skip the current commit:" / "$ git bisect
    skip"), or when the question asks for a command or option that this sentence lacks and `after` is a
    command line ("The following command reads a web page into a text file." / "$ w3m -dump ...")."""
    start = index - 1 if index > 0 and _REFERS_BACK.search(block[index]) else index
    text = " ".join(block[start:index + 1])
    facts = extract_facts(text, evidence=True)
    lacking = {kind for kind in wants if not has_kind(text, facts, kind)}
    if lacking and len(lacking) == len(wants):
        later_kinds = [(later, {kind for kind in lacking
                                if has_kind(block[later], extract_facts(block[later], evidence=True), kind)})
                       for later in range(index + 1, min(len(block), start + MAX_SENTENCES))]
        holding = ([later for later, kinds in later_kinds if kinds == lacking]
                   or [later for later, kinds in later_kinds if kinds])
        if holding:
            return " ".join(block[start:holding[0] + 1])
        if after and "identifier" in lacking and is_command_line(after):
            return f"{text} {after}"
    following = block[index + 1] if index + 1 < len(block) and index + 1 - start < MAX_SENTENCES else ""
    short = len(block[index].split()) < 6
    if following and (text.rstrip().endswith(":") or _CONTINUES.match(following) or short):
        return f"{text} {following}"
    if after and text.rstrip().endswith(":"):
        return f"{text} {after}"
    return text
