"""The keyword index by language (rag/analysis.py): each passage's language detected, its words stemmed with
that language's Snowball stemmer, its stop words left out, German and Dutch compounds split; a question's
words meet the passages in every language the index holds. The passages below are ours, written for the
test; the dev sets on real documentation (tests/data/devsets) measure it (docs/benchmarks.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ingest.job import run_ingest
from rag.analysis import UNKNOWN, analyzer
from rag.index import IndexReader
from rag.search import Searcher
from tests.conftest import rag_cli

GERMAN = ("Kennwörter der Benutzer laufen nach neunzig Tagen ab. Die Passwortänderung erfolgt im Portal unter "
          "Einstellungen, danach gilt das neue Kennwort sofort für alle Dienste.")
FRENCH = ("Les mots de passe expirent après quatre-vingt-dix jours. On les change dans le portail, rubrique "
          "Paramètres ; le nouveau mot de passe vaut aussitôt pour tous les services.")
ENGLISH = "Passwords expire after ninety days. Change yours in the portal under Settings; it applies at once."


def test_a_passages_words_are_stemmed_in_its_language_and_compounds_split() -> None:
    a = analyzer()
    assert a.languages([GERMAN, FRENCH, ENGLISH]) == ["de", "fr", "en"]
    assert a.languages(["Einleitung"], default="de") == ["de"]  # a heading takes its document's language
    assert a.detect("1234 5678")[0] == UNKNOWN
    german = set(a.passage_terms(GERMAN, "de").split())
    assert {"kennwort", "passwort", "ander"} <= german  # plural and compound meet the singular and the parts
    assert "der" not in german and "die" not in german  # German stop words are not indexed
    assert a.compound_parts("einstellungen", "de") == []  # "ein" is no part: a common word stays whole
    assert a.compound_parts("passwortänderung", "de") == ["passwort", "änderung"]
    french = set(a.passage_terms(FRENCH, "fr").split())
    assert {"mot", "pass", "expirent"} <= french  # "mots" meets "mot"
    assert "les" not in french
    # a question's word meets every language the index holds
    assert set(a.word_forms("Kennwort", ["de", "en"])) & german
    assert set(a.word_forms("mots", ["fr"])) & french


def test_questions_in_each_language_find_their_passages(tmp_path: Path, make_settings, embedder,  # type: ignore[no-untyped-def]
                                                        model_cache: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kennwort.txt").write_text(GERMAN)
    (docs / "motdepasse.txt").write_text(FRENCH)
    (docs / "password.txt").write_text(ENGLISH)
    (docs / "kantine.txt").write_text("Die Kantine im Erdgeschoss öffnet werktags um halb zwölf; freitags gibt es "
                                      "Fisch und am Monatsende ein Sommerfest im Innenhof.")
    settings = make_settings()
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)

    def first(question: str) -> str:
        return Path(searcher.search(question, 3, "keyword").hits[0].path).name

    # inflected and compound forms the passage does not use
    assert first("Wie ändere ich mein Passwort?") == "kennwort.txt"
    assert first("Wann läuft ein Kennwort ab?") == "kennwort.txt"
    assert first("Comment changer son mot de passe ?") == "motdepasse.txt"
    assert first("When does my password expire?") == "password.txt"
    assert first("Gibt es ein Fest für das Ende des Monats?") == "kantine.txt"  # "Monatsende", "Sommerfest"
    # the words abstention weighs are the ones the search takes: a German question's own stop words, which
    # no index term holds, are neither rare words nor words no document holds (they once made German
    # questions look unanswered: 8 of 15 refused on the Debian Reference)
    from rag.qa import QAService
    from tests.conftest import scripted_generator

    service = QAService(searcher, scripted_generator("unused"), settings.answers)
    question = "Wo finde ich mein neues Kennwort?"
    assert searcher.question_words(question) == ["finde", "neues", "kennwort"]
    ids = [h.chunk_id for h in searcher.search(question, 3).hits]
    assert set(service.word_weights(question, ids)) == {"finde", "neues", "kennwort"}
    status = json.loads(rag_cli("status", "--index", str(settings.index_dir), "--json",
                                env={**os.environ, "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache)}))
    assert status["languages"] == {"de": 2, "en": 1, "fr": 1}



def test_a_word_is_rare_or_everyday_in_its_own_language() -> None:
    a = analyzer()
    assert a.rarity("podman", "en") == 1.0 and a.rarity("certbot", "de") == 1.0  # names, terms of art
    assert a.rarity("whether", "en") == 0.0 and a.rarity("Kaputt", "de") == 0.0 and a.rarity("silence", "fr") == 0.0
    assert 0.0 < a.rarity("enforce", "en") < 1.0  # Zipf 3.96: between
    assert a.rarity("kaputt", "en") == 1.0  # not an English word
    assert a.rarity("whether", UNKNOWN) == 1.0 and a.rarity("whether", "da") == 1.0  # nothing known: rare
    # what a word no document holds says of the question's topic: German writes its nouns with a capital
    question = "Meine Firma braucht das, weil der Server kaputt ist und nichts klappt. Kaputt?"
    assert a.topic_weight("kaputt", question, "de") == 1.0  # written once as a noun (or a sentence's start)
    assert a.topic_weight("klappt", question, "de") == 0.0  # a verb, an everyday one
    assert a.topic_weight("firma", question, "de") == 1.0  # a noun: the topic
    assert a.topic_weight("whether", "Is it whether or not?", "en") == 1.0  # English: nothing tells
    # a verb form is as common as its infinitive: word lists count "anfasst" apart, as rare as a term of art
    asked = "Ich will nicht, dass apt mein libc6 anfasst, und ermittle die MTU. Wie zerlege ich die Datei?"
    assert a.rarity("anfasst", "de") == 1.0 and a.topic_weight("anfasst", asked, "de") < 0.3  # "anfassen"
    assert a.rarity("ermittle", "de") == 1.0 and a.topic_weight("ermittle", asked, "de") == 0.0  # "ermitteln"
    assert 0.5 < a.topic_weight("zerlege", asked, "de") < 1.0  # "zerlegen": rarer, it says more
    assert a.topic_weight("nachinstallieren", "Muss ich es nachinstallieren?", "de") == 1.0  # in no list


def test_a_questions_names_are_told_from_its_words() -> None:
    """The words a question writes as names, which passages about something else lack: codes, inner
    capitals, capitals that are no everyday word; a capital inside an English or French sentence on a word
    that is no everyday one; in English, a word in lower case no word list holds in any inflection. German
    capitalises every noun and writes its verbs as one word, so there only the written forms count."""
    a = analyzer()
    assert a.names("Can Apache compress responses with zstd at level 3?", "en") == ["Apache", "zstd"]
    assert a.names("Does Gunicorn start four workers for my Flask app over UDP in the USA?", "en") == [
        "Gunicorn", "Flask", "UDP"]  # "USA" is an everyday word, "3" and "four" no names
    assert a.names("My shell function ran away and hogged the machine. Which variable caps it?", "en") == []
    assert a.names("Which is the SC2086 warning of GitHub's checker for my pyproject file?", "en") == [
        "SC2086", "GitHub", "pyproject"]
    assert a.names("Windows: how do I add Room to it?", "en") == []  # a sentence's start; an everyday word
    assert a.names("Wie installiere ich Docker per Cronjob auf der Kiste, ohne nachzuinstallieren?", "de") == []
    assert a.names("Wie richte ich GitLab und den 68k-Emulator regelmäßig per SSH ein?", "de") == [
        "GitLab", "68k", "SSH"]
    assert a.names("Comment configurer needrestart et Renovate pour un mainteneur ?", "fr") == ["Renovate"]
    assert a.names("Wie installiere ich Docker auf Debian?", UNKNOWN) == []  # nothing known of the language
    assert a.names("Wie installiere ich HTTPD und Gitea2?", UNKNOWN) == ["HTTPD", "Gitea2"]


def test_a_missing_german_verb_says_less_than_a_missing_noun(tmp_path: Path, make_settings,  # type: ignore[no-untyped-def]
                                                             embedder) -> None:
    """A question's word that no document holds counts against the passages answering it (abstention's
    unknown words): in a German question a verb or an adjective by how rare it is, so an everyday one
    ("kaputt") says nothing, while a noun or a name ("Zorbium", "Firma") counts in full, as every English word
    does. German questions phrased with "kaputt", "brauche", "klappt" were refused on the Debian Reference; a
    word the question sets aside ("without curl or netcat") counts for nothing. A name the question gives
    that the passages lack counts on its own (abstention's missing name)."""
    from rag.qa import RELEVANCE_FEATURES, QAService
    from tests.conftest import scripted_generator

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "server.txt").write_text("Restart the hangar server with the command hangarctl restart; it reloads "
                                     "the configuration and keeps the queue.")
    (docs / "neustart.txt").write_text("Den Hangar-Server startet man mit dem Befehl hangarctl restart neu; er liest "
                                       "die Konfiguration neu ein und behält die Warteschlange.")
    (docs / "quay.html").write_text("<html><head><title>Quillon Operations Manual</title></head><body><h1>Restarts</h1>"
                                    "<p>Restart the quay server with the command quayctl restart.</p></body></html>")
    for i in range(160):  # the feature counts from 100 chunks on (in a dozen files most words are missing)
        (docs / f"note{i}.txt").write_text(f"Note {i}: the hangar doors open at {i % 12 + 6} o'clock.")
    settings = make_settings()
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
    service = QAService(searcher, scripted_generator("unused"), settings.answers)
    unknown = RELEVANCE_FEATURES.index("unknown_words")

    def missing(question: str) -> float:
        hits = searcher.search(question, 3).hits
        return service.relevance_features(question, hits)[0][unknown]

    assert searcher.question_language("Wie starte ich den Hangar-Server neu, wenn er kaputt ist?") == "de"
    assert missing("Wie starte ich den Hangar-Server neu, wenn er kaputt ist?") == 0.0
    assert missing("Wie starte ich den Hangar-Server unserer Firma neu?") > 0.0
    assert missing("Wie starte ich den Hangar-Server mit Zorbium neu?") > 0.0
    assert missing("How do I restart the hangar server when it is broken?") > 0.0
    # what a question says it does without is no topic it asks about: a document's silence about it says nothing
    assert missing("How do I restart the hangar server with zorbctl?") > 0.0
    assert missing("How do I restart the hangar server without zorbctl or a reboot?") == 0.0
    assert missing("Wie starte ich den Hangar-Server ohne Zorbium neu?") == 0.0

    # a name the question gives that no passage holds counts against them (the name is what it asks about),
    # wherever else the documents hold it; an everyday noun does not, nor a name it does without
    named = RELEVANCE_FEATURES.index("missing_name")

    def unnamed(question: str) -> float:
        hits = searcher.search(question, 3).hits
        return service.relevance_features(question, hits)[0][named]

    assert unnamed("How do I restart the hangar server with hangarctl?") == 0.0
    assert unnamed("How do I restart the hangar server under Kubernetes?") == 1.0
    assert unnamed("How do I restart the hangar server with zstd compression?") == 1.0
    assert unnamed("How do I restart the hangar server without Kubernetes?") == 0.0
    assert unnamed("Wie starte ich den Hangar-Server unserer Firma neu?") == 0.0
    assert unnamed("Wie starte ich den Hangar-Server mit PowerShell neu?") == 1.0
    assert unnamed("Wie starte ich den Hangar-Server mit Docker neu?") == 0.0  # a German noun: no name
    assert unnamed("How do I restart the quay server of Quillon?") == 0.0  # the passage's document is titled so
    assert unnamed("How do I restart the quay server of Kubernetes?") == 1.0
