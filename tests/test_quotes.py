"""Quotes and abstention on the shapes real manuals give: a command shown on its own line after the prose
that introduces it, a limit asked for as "the largest ...", a sentence that refers back to the one naming
what it describes ("This operation ..."), a default given two sentences after its setting, a question
about a name written as code (a counter, a setting) that the documents never name, next to one they do, and
an answer that names its value beside the noun the question asks about ("which environment variable"), an
option whose long description stands under its own heading, and manual page references ("fuser(1)")."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.extractive import (FEATURES, SCORER, SIMILARITY_FEATURES, Candidate, complete, entry_term, focus_value,
                            has_kind, is_command_line, named_entry, new_value, question_focus, question_wants,
                            scorer_for, section_subject, section_term, sentence_features)
from rag.support import code_names, extract_facts, fuzzy_words, set_aside, stem

# A DocBook-style page (git's user manual has this shape): the prose announces the command, which stands in
# a <pre> block of its own.
BISECT = """<html><head><title>Chapter 2. Exploring history</title></head><body>
<div class="section"><h2 class="title">How to use bisect to find a regression</h2>
<p>Keep repeating the process: compile the tree, test it, and depending on whether it is good or bad run
<code>git bisect good</code> or <code>git bisect bad</code> to ask for the next commit that needs testing.</p>
<p>Sometimes you land on a commit that does not build. Instead of marking it, you might just want to tell Git
that you want to skip the current commit:</p>
<pre class="screen">$ git bisect skip</pre>
<p>In this case, though, Git may not eventually be able to tell the first bad one between some first skipped
commits and a later bad commit.</p>
<h2 class="title">Recovering a lost blob</h2>
<p>The following command writes the file from the working tree back into the object store.</p>
<pre class="screen">$ git hash-object -w somedirectory/myfile</pre>
</div></body></html>"""

MATRIX = """<html><head><title>Matrices</title></head><body><h2>Matrices</h2>
<p>The <code>MaxMatrixCols</code> counter limits how many columns a matrix may have; its default value is 10.
Set it higher with <code>\\setcounter</code> when a matrix needs more.</p></body></html>"""


def test_a_limit_asked_for_as_a_superlative_is_a_number() -> None:
    assert "number" in question_wants("What's the largest delta chain depth that git pack-objects allows?")
    assert "number" in question_wants("Which is the longest timeout the client accepts?")
    assert "number" not in question_wants("What are the most common causes of a detached HEAD?")


def test_a_quote_takes_the_command_its_sentence_introduces() -> None:
    announcing = ["Instead of marking it, you might just want to tell Git that you want to skip the current commit:"]
    assert complete(announcing, 0, set(), "$ git bisect skip").endswith("commit: $ git bisect skip")
    # a sentence that says in prose what the command does: completed when the question asks for the command
    prose = ["The following command writes the file back into the object store."]
    command = "$ git hash-object -w somedirectory/myfile"
    assert complete(prose, 0, {"identifier"}, command) == f"{prose[0]} {command}"
    # ... and left alone when it asks for something else, or when what follows is not a command line
    assert complete(prose, 0, set(), command) == prose[0]
    assert complete(prose, 0, {"identifier"}, "The blob is then stored again.") == prose[0]
    # a sentence that holds what is asked for needs nothing after it
    holding = ["Run git bisect skip to leave the commit out."]
    assert complete(holding, 0, {"identifier"}, command) == holding[0]


# A reference page's shapes (gnuplot's and git's manuals have them): an option described over two sentences,
# the second of which says what it is for; a setting whose default comes after a remark about its values.
SMOOTHING = """<html><head><title>smooth</title></head><body><h2>Smoothing options</h2>
<p>The smooth fold option reflects every point back into the interval between -1 and 1 by adding or
subtracting multiples of 2. This operation keeps a periodic signal inside one window for plotting.</p>
<h2>Expiry</h2>
<dl><dt>cache.keepDays</dt><dd>Entries of the answer cache are kept for this many days when the cache is
pruned. Values up to 365 are accepted. The default is 45 days. See
prune(1).</dd></dl>
</body></html>"""


def test_a_manual_page_section_is_not_a_number() -> None:
    described = "pack.depth: The maximum delta depth used by git-pack-objects(1) when no depth is given."
    assert not extract_facts(described, evidence=True).quantities
    assert not has_kind(described, extract_facts(described, evidence=True), "number")
    assert not new_value("What's the largest delta depth git pack-objects allows?", described, {"number"})
    assert [q.text for q in extract_facts("Keep 3 copies, see rsync(1) and crontab(5).").quantities] == ["3"]
    # so the sentence with the limit completes the one naming the setting
    block = [described, "Maximum value is 4095."]
    assert complete(block, 0, {"number"}).endswith("Maximum value is 4095.")


def test_the_term_a_passage_describes_is_its_last_heading_when_written_as_code() -> None:
    assert section_term("OPTIONS › -x") == "-x"
    assert section_term("OPTIONS › -a, --all") == "-a, --all"
    assert section_term("CONFIGURATION › Variables › core.worktree") == "core.worktree"
    assert section_term("7.7 \\XeTeXLinkBox") == "\\XeTeXLinkBox"
    assert section_term("os.path › os.path.join(path, *paths)") == "os.path.join(path, *paths)"
    assert section_term("hooks › pre-commit") == "pre-commit"
    # an API entry's signature, its kind or type first
    assert section_term("subprocess › exception subprocess.TimeoutExpired") == "exception subprocess.TimeoutExpired"
    assert section_term("void Py_DECREF(PyObject *o)") == "void Py_DECREF(PyObject *o)"
    assert section_term("class json.JSONDecoder(*, object_hook=None, parse_float=None, parse_int=None, "
                        "parse_constant=None, strict=True)") == "class json.JSONDecoder"  # too long to repeat
    # a heading that names its directive by its kind, as Apache's manual heads each one (English, French)
    assert section_term("Apache Core Features › AcceptFilter Directive") == "AcceptFilter"
    assert section_term("Fonctionnalités de base › Directive XBitHack") == "XBitHack"
    for title in ("OPTIONS", "9.4.15. Die Alt-SysRq-Tastenkombination", "Random number generator", "Fit", "",
                  "datetime Objects", "name or flags", "Help › Setting preferences", "key function",
                  "Colorspec › Linecolor variable"):
        assert section_term(title) == ""


def test_a_quote_that_only_says_this_module_names_the_module_its_page_is_about() -> None:
    """Asked which module does something, "This module is used to ..." under "Apache Module mod_remoteip ›
    Summary" answers only with the name its heading gives."""
    assert section_subject("Apache Module mod_remoteip › Summary") == "mod_remoteip"
    assert section_subject("Module Apache mod_ratelimit › Exemple de configuration") == "mod_ratelimit"
    assert section_subject("shutil — High-level file operations › Directory and files operations") == "shutil"
    for path in ("3 Basic Shell Features › 3.1 Introduction", "The Python Tutorial › 9. Classes", "Module Overview",
                 "Apache Core Features › LimitRequestBody Directive", ""):
        assert section_subject(path) == ""
    block = ["This module is used to treat the useragent which initiated the request as the originating useragent."]
    summary = Candidate(1, 0, 0.5, block, 0, "Apache Module mod_remoteip › Summary")
    assert summary.quote({"identifier"}) == f"mod_remoteip: {block[0]}"
    assert summary.quote(set()) == block[0]  # not asked which one
    provides = Candidate(1, 0, 0.5, ["Provides a filter named RATE_LIMIT to limit client bandwidth."], 0,
                         "Apache Module mod_ratelimit › Summary")
    assert provides.quote({"identifier"}) == f"mod_ratelimit: {provides.sentence}"
    # a sentence that names the module, or is about something else on its page, stands as it is
    for sentence in ("mod_remoteip overrides the client IP of the connection.",
                     "X-Forwarded-Host: The original host requested by the client in the Host HTTP request header."):
        other = Candidate(1, 0, 0.5, [sentence], 0, "Apache Module mod_remoteip › Summary")
        assert other.quote({"identifier"}) == sentence


def test_a_quote_takes_the_sentence_it_refers_back_to() -> None:
    block = ["The smooth fold option reflects every point back into the interval.",
             "This operation keeps a periodic signal inside one window for plotting."]
    assert complete(block, 1, {"identifier"}) == " ".join(block)
    # a sentence that names what it describes stands alone
    named = ["The fold option is new.", "The smooth fold option keeps a periodic signal inside one window."]
    assert complete(named, 1, {"identifier"}) == named[1]
    described = ["Python 3.10 adds inspect.get_annotations().", "Calling this function is the best practice."]
    assert complete(described, 1, set()) == " ".join(described)


def test_a_quote_runs_on_to_the_sentence_holding_all_that_is_asked() -> None:
    block = ["cache.keepDays: Entries are kept for this many days when the cache is pruned.",
             'Values up to 365 are accepted.', "The default is 45 days.", "See prune(1)."]
    # asked for a default number: the sentence with a number but no default is not where the quote stops
    assert complete(block, 0, {"default", "number"}) == " ".join(block[:3])
    assert complete(block, 0, {"number"}) == " ".join(block[:2])


def test_what_questions_ask_for_in_each_language() -> None:
    assert question_wants("What relative tolerance does isclose use when I leave rel_tol out?") == {"default"}
    assert "identifier" in question_wants("What is the recommended way to read the annotations of a class?")
    assert question_wants("Wie zerlege ich die Datei in Stücke von 2 GB?") == {"identifier"}
    # the name of an option, package or command asked for
    assert question_wants("Wie heißt das virtuelle Paket, das beide bereitstellen?") == {"identifier"}
    assert question_wants("What is the name of the line-editing command that opens my editor?") == {"identifier"}
    assert question_wants("Quel est le nom du paquet virtuel qu'ils fournissent ?") == {"identifier"}
    assert "identifier" not in question_wants("Wie heißt die Organisation in den USA?")
    assert question_wants("J'ai perdu ma clé. Comment lui ajouter une phrase de passe ?") == {"identifier"}
    assert "identifier" not in question_wants("Who wrote the comment in the changelog?")
    assert "number" in question_wants("Which port does git daemon listen on?")
    # how-to questions whatever their subject, and the kinds of thing a manual names
    assert "identifier" in question_wants("How can my Octave script find out how many CPU cores the machine has?")
    assert "identifier" in question_wants("How to make the history command show when each command was run?")
    assert "identifier" in question_wants("What construct does Octave have for that?")
    assert "identifier" in question_wants("Which builtin loads every line of a file into an array?")
    assert "identifier" not in question_wants("How does the cache decide when a page is stale?")
    assert question_wants("Wohin sollte ich selbst kompilierte Software installieren?") == {"path"}
    # a default asked for by what the asker left alone, the way users put it
    assert "default" in question_wants("How many commands does bash remember if I never configure a size myself?")
    assert "default" in question_wants("I create users with bcrypt and don't say anything about the cost. What does it use?")
    assert "default" in question_wants("I never touched the logging verbosity. What threshold does Apache use then?")
    assert "default" in question_wants("Where does it install if I run make install without any options?")
    assert "default" in question_wants("Welche Größe nimmt apt, wenn ich nichts angebe?")
    assert "default" in question_wants("Quelle taille prend-il si je ne précise rien ?")
    assert "default" not in question_wants("Why does git refuse to push when I set the upstream?")
    # "When ...?" asks for a time; "When I ..., can it ...?" sets the condition of another question
    assert question_wants("When was the wait for events made to time out?") == {"time"}
    assert question_wants("When did the wait for events change, and why?") == {"time"}
    assert question_wants("Quand a-t-il changé, et pourquoi ?") == {"time"}
    assert "time" not in question_wants("When I add a table with a serial column to a set, can slonik add its "
                                        "sequence too?")
    assert "time" not in question_wants("Quand on tape /docs sans barre oblique finale, Apache redirige tout seul. "
                                        "Quelle directive permet de le désactiver ?")


def names_one(sentence: str) -> bool:
    """Whether a passage sentence gives a name written as code as its answer."""
    return has_kind(sentence, extract_facts(sentence, evidence=True), "identifier")


def test_a_file_in_a_home_directory_is_a_path() -> None:
    # "where ..." is answered by a dotfile as by a path: ".pgpass", "~/.bashrc"; not by an abbreviation's dot
    def gives_path(sentence: str) -> bool:
        return has_kind(sentence, extract_facts(sentence, evidence=True), "path")

    assert gives_path("slon will then read the passwords from the .pgpass file.")
    assert gives_path("Put the alias in ~/.bashrc and log in again.")
    assert not gives_path("The .SQL files hold the statements, e.g. the inserts.")
    assert not gives_path("Passwords can be stored in the conninfo string.")


def test_a_constant_named_beside_what_it_is_is_an_identifier() -> None:
    assert names_one("This option has an effect only if the PYTHONHASHSEED environment variable is set.")
    assert names_one("With the USE_NSEC compile-time option, the nanoseconds are compared too.")
    assert not names_one("The NOTE below explains the environment variable.")
    # a TeX macro is written with one backslash, and named by its kind before it
    assert names_one("Separation of columns with vertical rules is achieved by setting the parameter "
                     "\\columnseprule to some positive value.")
    assert new_value("How do I get a vertical line between the columns?", "Use \\setcounter here.", {"identifier"})
    # a variable written in capitals: the term of its description, or named after its kind; not a note's label
    assert names_one("HISTTIMEFORMAT: If this variable is set and not null, its value is used as a format string.")
    assert names_one("If the shell variable HISTTIMEFORMAT is set and not null, it is used as a format string.")
    assert not names_one("NOTE: This variable is set by the shell.")
    assert not names_one("WARNING: the HTTP protocol sends passwords in the clear.")


def test_a_term_written_as_a_word_names_what_its_description_describes() -> None:
    """Option lists give their terms as plain words (bash's shopt options, geometry's keys): the term
    is the name an answer gives, as "--follow: ..." is; a table row's header is not."""
    entry = "cdspell: If set, minor errors in the spelling of a directory component in a cd command are corrected."
    assert names_one(entry)
    assert new_value("Which shopt option fixes small typos in directory names?", entry, {"identifier"})
    assert not new_value("What does the cdspell option do?", entry, {"identifier"})
    assert not names_one("package: wl-clipboard · popcon: V:1, I:5 · size: 141")
    assert not names_one("Note: the spelling of a directory component is corrected.")
    assert not names_one("If set, minor errors in the spelling are corrected.")
    # a function's entry with its arguments and outputs, as Texinfo manuals list them
    function = "nproc (query): Return the current number of available (logical) processors."
    assert names_one(function) and names_one("h = imagesc (. . .): Display a scaled version of the matrix.")
    assert new_value("How can my script find out how many CPU cores the machine has?", function, {"identifier"})
    assert not names_one("Note (see below): the spelling of a directory component is corrected.")


def test_a_command_typed_after_the_sentence_announcing_it_is_an_identifier() -> None:
    assert names_one("Vous pouvez le modifier par la commande qui suit : $ sudo update-alternatives --config editor")
    assert names_one("The following stops the beep (ASCII=7). $ echo \"set bell-style none\" >> ~/.inputrc")
    assert not names_one("The upgrade costs $ 5 per seat.")
    assert not names_one("$ git log -p")  # a bare example names no answer: the sentence introducing it does


def test_a_new_value_is_one_the_question_does_not_give() -> None:
    question = "Which git add option applies the clean filter again to files already stored?"
    assert new_value(question, "To fix this, run git add --renormalize . on a clean tree.", {"identifier"})
    restating = "When do I need git add --renormalize after changing a clean filter?"
    assert not new_value(restating, "Use git add --renormalize after changing a clean filter.", {"identifier"})
    assert new_value("How many lines are saved by default?", "The default is 500 lines.", {"default", "number"})
    assert not new_value("How many lines are saved?", "The default is 500 lines.", set())
    # a default written as a word is a value too, whatever it is written as; "the default is to ..." is none
    asked = "What does interp1 return for points outside the data if I don't ask for extrapolation?"
    assert new_value(asked, "When unspecified, extrap defaults to NA.", {"default"})
    assert new_value("Is fsync enabled out of the box?", "The default is off.", {"default"})
    assert new_value("Quel codage par défaut ?", "La valeur par défaut est « utf8 ».", {"default"})
    assert not new_value(asked, "The default is to leave them out.", {"default"})
    assert not new_value("Is fsync enabled by default?", "The default is on for fsync.", {"number"})


# An answer that names its value beside the noun asked about, among sentences sharing the question's words.
SEARCH_PATH = """<html><head><title>The module search path</title></head><body><h2>The module search path</h2>
<p>Python reads several environment variables when it starts, and they change how it adds directories to the
module search path. When a script is run, the interpreter adds the script's directory to the start of the
module search path. To leave that directory out, set the PYTHONSAFEPATH environment variable.</p>
<h2>Variables and the search path</h2>
<p>Environment variables change the directories Python adds to its search path, as the sections below
describe. The search path can be changed while the program runs, too.</p></body></html>"""


def test_a_value_beside_the_noun_the_question_asks_about() -> None:
    question = "Which environment variable, new in 3.11, stops Python from adding the script's directory?"
    focus = question_focus(question)
    assert focus == {stem("environment"), stem("variable")}
    assert focus_value(focus, question, "To not prepend it, use the PYTHONSAFEPATH environment variable.")
    # the words without a value beside them restate the question; a value the question gives is none
    assert not focus_value(focus, question, "Environment variables change how Python adds the script's directory.")
    assert not focus_value(focus, question, "In 3.11 this environment variable was new.")
    many = "Roughly how many loose objects have to pile up before git gc packs them?"
    assert focus_value(question_focus(many), many, "git gc --auto waits for 6700 loose objects to be present.")
    assert question_focus("Mit welchem Paket kann ich kopieren?") == {stem("paket")}
    assert question_focus("Dans quel fichier APT garde-t-il la trace ?") == {stem("fichier"), stem("apt")}
    assert focus_value(question_focus("In welche Datei trage ich Module ein?"), "In welche Datei trage ich Module ein?",
                       'indem Sie sie in die Datei "/etc/modules" eintragen')
    assert question_focus("How do I stash my work?") == set()
    # a table's cell named by its row's or column's header holds the value of what that header names
    context = "I put ServerTokens Prod inside that vhost. In which configuration context is that directive allowed?"
    assert focus_value(question_focus(context), context, "ServerTokens: Context: | server config")
    assert focus_value(question_focus("Which package do I need?"), "Which package do I need?",
                       "Package: wl-clipboard · Popcon: 1200")
    assert not focus_value(question_focus(context), context, "The context: server config is where it goes.")
    assert not focus_value(question_focus(context), context, "Context: | configuration context")  # the question's


def test_command_lines_and_names_written_as_code() -> None:
    assert is_command_line("$ git bisect skip") and is_command_line("# dpkg --configure -a")
    assert is_command_line(">>> os.getcwd()")
    assert not is_command_line("# here are the per-package modules") and not is_command_line("# Keep this.")
    assert code_names("What is the default of core.maxFileSize, or of MaxMatrixRows, or --disable-gil?") == [
        "core.maxFileSize", "MaxMatrixRows", "--disable-gil"]
    assert code_names("Does the Requests HTTPAdapter retry? And GitHub?") == ["HTTPAdapter", "GitHub"]
    # not names: a plural acronym, a missing space after a stop word, the asker's placeholder in a quoted snippet
    assert code_names("Which URLs and APIs? Who isKarsten Bernick?") == []
    assert code_names("Why is the name bound by 'except SomeError as e' deleted? Don't use MyClass.") == ["MyClass"]


def test_a_code_in_a_hyphenated_compound_is_looked_for_alone() -> None:
    from rag.support import code_part, missing_identifier

    assert code_part("68k-prozessor") == "68k" and code_part("ipv6-only") == "ipv6" and code_part("ext4") == "ext4"
    assert code_part("hr-05") == "hr-05" and code_part("x86-64") == "x86-64" and code_part("debian-11") == "debian-11"
    # the German FAQ writes "m68k-Architektur": the question is answered, not abstained for want of a code
    passage = "Die Unterstützung für die m68k-Architektur wurde in der Etch-Veröffentlichung (Debian 4.0) eingestellt."
    assert missing_identifier("Ab welcher Debian-Version läuft nichts mehr auf meinem 68k-Prozessor?", [passage]) == ""
    assert missing_identifier("Läuft Debian auf einem 88k-Prozessor?", [passage]) == "88k-prozessor"
    assert missing_identifier("Who signs form HR-05?", ["Form NW-05 is signed by the site manager."]) == "hr-05"
    # a number named by its word is that word and number, hyphenated or not
    assert missing_identifier("Is Debian-11 still supported?", ["Debian 11 gets security updates."]) == ""
    assert missing_identifier("Is Debian-12 still supported?", ["Debian 11 gets security updates until 12 June."]) == "debian-12"


def test_a_name_the_question_does_without_need_not_be_in_the_passages() -> None:
    from rag.support import missing_identifier

    # the German FAQ answers with libpaper1 and /etc/papersize, and never writes "A4"
    passage = "Installieren Sie das Paket libpaper1 und es wird nach einer systemweiten Standardpapiergröße fragen."
    assert missing_identifier("Mein Drucker spuckt Letter statt A4 aus. Welches Paket sorgt für eine "
                              "systemweite Standard-Papiergröße?", [passage]) == ""
    assert missing_identifier("Can git status stay fast without core.fsmonitor?", ["git status is fast."]) == ""
    assert missing_identifier("Can git status stay fast with core.fsmonitor?", ["git status is fast."]) == "core.fsmonitor"
    assert missing_identifier("Who signs HR-05 instead of the manager?", ["The manager signs."]) == "hr-05"


def test_a_name_in_the_title_of_the_passages_document_is_not_missing() -> None:
    from rag.qa import QAService
    from rag.types import Hit

    hit = Hit(1, "/docs/mod/mod_ratelimit.html", "mod_ratelimit - Apache HTTP Server", None, 0, 1.0,
              "This module provides a filter that limits the bandwidth of each client connection.",
              section="Summary")
    assert QAService.missing_name("How do I throttle downloads with mod_ratelimit?", [hit]) == ""
    assert QAService.missing_name("How do I throttle downloads with mod_bw?", [hit]) == "mod_bw"


def _service(settings, embedder, tmp_path: Path, pages: dict[str, str]):  # type: ignore[no-untyped-def]
    """A QAService over a real ingest of `pages` ({file name: HTML})."""
    from ingest.job import run_ingest
    from rag.index import IndexReader
    from rag.qa import QAService
    from rag.search import Searcher
    from tests.conftest import scripted_generator

    docs = tmp_path / "docs"
    docs.mkdir()
    for name, html in pages.items():
        (docs / name).write_text(html, encoding="utf-8")
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    return QAService(Searcher(embedder, IndexReader(settings.index), settings.search),
                     scripted_generator("unused"), settings.answers)


def test_commands_after_their_introduction_and_names_no_document_holds(make_settings, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    service = _service(make_settings(answer_mode="extractive"), embedder, tmp_path,
                       {"bisect.html": BISECT, "matrix.html": MATRIX})
    answer = service.ask("The commit bisect gave me does not build. How do I tell Git to skip the current commit?")
    assert "$ git bisect skip" in answer.answer
    answer = service.ask("Which command puts a file from my working tree back into the object store?")
    assert "git hash-object -w" in answer.answer
    # a neighbour's description is no answer about a name the documents never write
    answer = service.ask("What is the default value of the MaxMatrixRows counter, which limits the rows of a matrix?")
    assert answer.abstained and not answer.sources
    answer = service.ask("What is the default value of the MaxMatrixCols counter?")
    assert not answer.abstained and "10" in answer.answer


def test_a_quote_that_names_the_value_asked_about(make_settings, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    service = _service(make_settings(answer_mode="extractive"), embedder, tmp_path, {"path.html": SEARCH_PATH})
    answer = service.ask("Which environment variable stops Python from adding the script's directory to the search path?")
    assert not answer.abstained and "PYTHONSAFEPATH" in answer.answer.split(" [")[0]


def test_quotes_from_an_option_described_in_two_sentences(make_settings, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    service = _service(make_settings(answer_mode="extractive"), embedder, tmp_path,
                       {"smooth.html": SMOOTHING, "bisect.html": BISECT})
    answer = service.ask("My periodic signal wanders out of the plot window. Which smoothing option keeps it inside?")
    assert not answer.abstained and "smooth fold option" in answer.answer
    answer = service.ask("By default, for how long are entries of the answer cache kept before pruning drops them?")
    assert not answer.abstained and "45 days" in answer.answer


# An option whose description runs long enough to become a heading of its own (git's manual pages have them):
# its sentences no longer say which option they describe.
CHERRY = """<html><head><title>git-pick(1)</title></head><body><h2>OPTIONS</h2><dl>
<dt>-e, --edit</dt><dd>Opens an editor on the message before the picked change is committed.</dd>
<dt>-x</dt><dd><p>When the picked change is committed, a line naming the commit it was taken from is added at
the end of its message, so that anyone reading the history later can find where the change came from. This
is only done when the pick had no conflicts, since a resolved conflict makes the new commit differ from the
original one.</p><p>Leave it out when picking between your own private branches, because the original commit
will never be seen by anyone else and the extra line only says something nobody can follow. Use it when
copying a fix between two published branches, for example from the development line to an older maintenance
line, where the reference is useful to everyone who later wonders whether the fix was applied to both of
them and which of the two commits came first.</p></dd>
<dt>-n, --no-commit</dt><dd>Applies the change to the working tree and the index without committing it.</dd>
</dl></body></html>"""


def test_a_quote_names_the_option_its_passage_describes(make_settings, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    service = _service(make_settings(answer_mode="extractive"), embedder, tmp_path, {"pick.html": CHERRY})
    answer = service.ask("Which option of git pick adds a line to the message naming the commit a change was "
                         "taken from?")
    assert not answer.abstained and "-x: " in answer.answer.split(" [")[0]


def test_a_quote_names_the_api_entry_it_describes() -> None:
    described = ["Subclass of SubprocessError, raised when a timeout expires while waiting for a child process."]
    entry = Candidate(1, 0, 0.5, described, 0, "subprocess › exception subprocess.TimeoutExpired")
    assert entry.quote({"identifier"}) == f"exception subprocess.TimeoutExpired: {described[0]}"
    # a quote that names the entry itself, by its short name, is left as it is
    naming = ["TimeoutExpired is raised when the timeout expires."]
    assert Candidate(1, 0, 0.5, naming, 0, "subprocess › exception subprocess.TimeoutExpired").quote(set()) == naming[0]
    assert Candidate(1, 0, 0.5, described, 0, "subprocess › Exceptions").quote(set()) == described[0]


def test_sentences_the_scorer_cannot_tell_apart_are_quoted_best_first_within_three_sentences() -> None:
    import numpy as np

    from rag.extractive import ScoredCandidates, choose_quote

    def candidate(number: int, *sentences: str) -> Candidate:
        return Candidate(number, number - 1, 0.5, list(sentences), 0, "")

    best = candidate(1, "The queue is slow when items are popped from the front.")
    two = candidate(2, "Lists are not efficient for this purpose, though appends are fast.",
                    "This is because every other element has to be shifted by one.")  # refers back: two sentences
    near = candidate(3, "To implement a queue, use collections.deque, designed for fast pops from both ends.")
    far = candidate(4, "A deque is thread-safe for appends and pops from either side.")
    same = candidate(5, "The queue is slow when items are popped from the front.")  # the best one again, elsewhere
    question = "Popping items off the front of a list is slow. What should I use instead?"
    margin = 1.0  # the default; 0 below

    def quoted(scores: list[float], *candidates: Candidate) -> list[tuple[int, str]]:
        scored = ScoredCandidates(tuple(range(len(candidates))), list(candidates), np.array(scores, np.float32),
                                  np.zeros((len(candidates), 1), np.float32))
        return [(quote.source, quote.text) for quote in choose_quote(question, scored, margin)]

    # within the margin, best first; the one already quoted is not repeated
    assert quoted([5.0, 4.9, 4.8], near, same, best) == [(3, near.block[0]), (5, same.block[0])]
    # a runner-up that would take the quote past three sentences is passed over for the next one
    second = two.block[1]
    assert quoted([5.0, 4.8, 4.7, 4.6], best, near, two, far) == [
        (1, best.block[0]), (3, near.block[0]), (4, far.block[0])]
    assert second not in " ".join(text for _, text in quoted([5.0, 4.8, 4.7, 4.6], best, near, two, far))
    # a runner-up completed by a sentence already quoted would say it twice
    saved = candidate(6, "It keeps the last 500 commands.")
    histsize = candidate(7, "HISTSIZE is the number of commands to save.", "It keeps the last 500 commands.")
    assert quoted([5.0, 4.9, 4.8], saved, histsize, near) == [(6, saved.block[0]), (3, near.block[0])]
    # beyond the margin the best stands alone
    assert quoted([5.0, 3.99], best, near) == [(1, best.block[0])]
    assert quoted([5.0, 4.01], best, near) == [(1, best.block[0]), (3, near.block[0])]
    margin = 0.0  # the best alone
    assert quoted([5.0, 4.9, 4.8], best, near, far) == [(1, best.block[0])]


def test_a_quote_asked_for_a_default_takes_the_line_its_section_gives_defaults_on() -> None:
    """gnuplot's manual describes `set history` in prose and gives its defaults on a line apart ("Default
    settings: set history size 500 ..."); Apache's gives each directive's in a table row."""
    import numpy as np

    from rag.extractive import ScoredCandidates, choose_quote

    section = "Commands › Set-show › History"
    described = Candidate(1, 0, 0.8, ["When leaving gnuplot the value of history size limits the number of lines "
                                      "saved to the history file."], 0, section)
    defaults = Candidate(1, 0, 0.8, ["Default settings: set history size 500 numbers trim."], 0, section)
    elsewhere = Candidate(2, 1, 0.6, ["Default settings: set samples 100."], 0, "Commands › Set-show › Samples")
    other = Candidate(3, 2, 0.6, ["The history command lists the commands typed so far."], 0, "Commands › History")

    def quoted(question: str, *candidates: Candidate) -> list[str]:
        scores = np.array([9.0, 6.0, 5.0, 4.0][:len(candidates)], np.float32)  # the margin takes none of the rest
        scored = ScoredCandidates(tuple(range(len(candidates))), list(candidates), scores,
                                  np.zeros((len(candidates), 1), np.float32))
        return [quote.text for quote in choose_quote(question, scored, 1.0)]

    asked = "How many lines of history does gnuplot save by default?"
    assert quoted(asked, described, other, elsewhere, defaults) == [described.sentence, defaults.sentence]
    # not asked for a default, or given one already, or none on the best sentence's own section
    assert quoted("How many lines of history does gnuplot save?", described, other, defaults) == [described.sentence]
    given = Candidate(1, 0, 0.8, ["By default the history keeps 500 lines."], 0, section)
    assert quoted(asked, given, other, defaults) == [given.sentence]
    assert quoted(asked, described, other, elsewhere) == [described.sentence]


BACKUPS = """<html><head><title>Backups</title></head><body><h2>Nightly backups</h2>
<p>The backup job copies the file server to the tape library every night, starting at 02:00.</p>
<p>Restores are requested from the service desk with the path and the date of the lost file.</p>
<h2>Schedules</h2>
<p>Every night at 02:00 the file server is backed up to tape by the backup job.</p></body></html>"""


def test_the_quote_margin_setting_decides_how_many_sentences_are_quoted(make_settings, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    question = "At what time does the nightly backup of the file server start?"
    (tmp_path / "wide").mkdir()
    (tmp_path / "alone").mkdir()
    wide = _service(make_settings(answer_mode="extractive"), embedder, tmp_path / "wide", {"backups.html": BACKUPS})
    quoted = wide.ask(question).answer
    assert quoted.count("02:00") == 2 and quoted.count(" [") == 2  # two sentences no score tells apart
    alone = _service(make_settings(answer_mode="extractive", quote_margin=0.0, index_dir=tmp_path / "alone" / "index"),
                     embedder, tmp_path / "alone", {"backups.html": BACKUPS}).ask(question).answer
    assert alone.count("02:00") == 1 and alone.count(" [") == 1


@pytest.mark.parametrize(("question", "aside"), [
    ("Can a bash script talk to a web server without curl or netcat, just using a redirection?",
     {"without", "curl", "or", "netcat"}),
    ("What do I type instead of arp to see the neighbour table?", {"instead", "of", "arp", "to", "see", "the"}),
    ("Wie konfiguriere ich Podman so, dass Container ohne Root-Rechte laufen?", {"ohne", "root", "rechte", "laufen"}),
    ("Comment ajouter une phrase de passe à ma clé créée sans mot de passe ?", {"sans", "mot", "de", "passe"}),
    ("Which tool rewrites history?", set()),
    ("Can git status stay fast without core.fsmonitor?", {"without", "core", "fsmonitor"}),  # a dotted name whole
])
def test_what_a_question_does_without(question: str, aside: set[str]) -> None:
    assert set_aside(question) == aside


def test_a_question_word_meets_the_sentence_in_another_inflection_in_german_and_french(embedder) -> None:  # type: ignore[no-untyped-def]
    # the quote's word overlap matches the question's words (here with the weights the service gives them) as
    # the relevance does: Snowball stems in three languages, a compound's head; not by an English suffix list
    # that leaves "Kennwörter" apart from "Kennwort"
    overlap = FEATURES.index("overlap")
    for question, words, sentence in [
            ("Wo speichert der Dienst die Kennwörter der Benutzer?", "speichert Dienst Kennwörter Benutzer",
             "Der Dienst speichert jedes Kennwort eines Benutzers im Schlüsselbund."),
            ("Quels paquets le système installe-t-il automatiquement ?", "paquets système installe automatiquement",
             "Le système installe automatiquement ce paquet.")]:
        weights = {word: 1.0 for word in words.split()}
        candidate = Candidate(1, 0, 0.5, [sentence], 0, "")
        assert sentence_features(question, [candidate], embedder, weights)[0, overlap] == pytest.approx(1.0)


def test_a_question_word_meets_the_part_of_a_name_joined_by_underscores(embedder) -> None:  # type: ignore[no-untyped-def]
    # manuals name settings as code ("syslog_facility", "LC_MESSAGES") where users write the words apart;
    # the keyword index splits such names, and the quote's overlap and the relevance match their parts too
    overlap = FEATURES.index("overlap")
    question = "Which syslog facility do the messages go to?"
    weights = {"syslog": 1.0, "facility": 1.0, "messages": 1.0}
    candidate = Candidate(1, 0, 0.5, ["syslog_facility: where the LC_MESSAGES text is sent."], 0, "")
    assert sentence_features(question, [candidate], embedder, weights)[0, overlap] == pytest.approx(1.0)
    assert {"facil", "messag"} <= fuzzy_words("syslog_facility LC_MESSAGES")
    assert not {"py", "id"} & fuzzy_words("py_id __init__")  # parts of two letters say nothing


# Settings listed one after the other, as DocBook sets a program's options (Slony-I's slon, PostgreSQL's
# server): names that share their first word, each entry with its own default
SLON_LOGGING = """<html><head><title>Logging</title></head><body><h2>Logging</h2><dl>
<dt><tt>syslog</tt> (<tt>integer</tt>)</dt><dd><p>Sets up logging to syslog. If this parameter is 1, messages go
both to syslog and the standard output. A value of 2 sends output only to syslog. The default is 0, which means
syslog is off.</p></dd>
<dt><tt>syslog_facility</tt> (<tt>string</tt>)</dt><dd><p>Sets the syslog "facility" to be used when syslog is
enabled. Valid values are LOCAL0, LOCAL1, LOCAL2, LOCAL3, LOCAL4, LOCAL5, LOCAL6, LOCAL7. The default is
LOCAL0.</p></dd>
<dt><tt>syslog_ident</tt> (<tt>string</tt>)</dt><dd><p>Sets the program name used to identify the messages in
the syslog logs. The default is slon.</p></dd>
</dl></body></html>"""


def test_a_question_naming_a_setting_in_full_is_answered_by_its_entry_not_its_shorter_neighbour(make_settings, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    service = _service(make_settings(answer_mode="extractive"), embedder, tmp_path, {"logging.html": SLON_LOGGING})
    answer = service.ask("I switched slon over to syslog logging but never picked a facility. Which syslog "
                         "facility do its messages go to by default?")
    assert not answer.abstained and "LOCAL0" in answer.answer.split(" [")[0]
    answer = service.ask("By default, does slon send its log to syslog?")  # the shorter name is asked for
    assert not answer.abstained and "The default is 0" in answer.answer


def test_the_entry_a_question_names_in_full() -> None:
    def entry(term: str, sentence: str) -> Candidate:
        return Candidate(1, 0, 0.5, [f"{term}: Sets something.", sentence], 1, "Logging")

    candidates = [entry("syslog (integer)", "The default is 0."),
                  entry("syslog_facility (string)", "The default is LOCAL0."),
                  entry("syslog_ident (string)", "The default is slon.")]
    assert entry_term(candidates[1]) == "syslog_facility (string)"
    assert named_entry("Which syslog facility is used by default?", candidates, [0, 2, 1]) == 1
    # the best sentence's own entry is named in full, or the longer name is not written out: nothing changes
    assert named_entry("What is the default of syslog_ident?", candidates, [2, 0, 1]) is None
    assert named_entry("Which facility does syslog use by default?", candidates, [0, 2, 1]) is None


# A German page's opening: the sentence that names the manual and the one that gives its licence. Asked for the
# licence, the English-only embedding model finds the first one nearer the question (0.54 against 0.26); its
# words say otherwise.
LICENCE_DE = """<html><head><title>Entwicklerreferenz</title></head><body><h1>Entwicklerreferenz</h1>
<p>Dies ist die Entwicklerreferenz der Stadtwerke, Version 12.18, veröffentlicht am 2023-03-06.</p>
<p>Dieses Handbuch ist freie Software; Sie können es unter den Bedingungen der GNU General Public License,
Version 2, weiterverbreiten und/oder modifizieren.</p>
<h2>Pflichten der Entwickler</h2><p>Jeder Entwickler liest die Ankündigungsliste und hält seine Pakete aktuell;
wer länger verreist, meldet das vorher auf der Liste der Entwickler.</p></body></html>"""


def test_a_german_question_is_quoted_by_its_words_not_by_an_english_only_models_similarity(
        make_settings, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    service = _service(make_settings(answer_mode="extractive"), embedder, tmp_path, {"referenz.html": LICENCE_DE})
    answer = service.ask("Unter welcher Lizenz darf ich die Entwicklerreferenz weitergeben und verändern?")
    assert not answer.abstained and answer.answer.startswith("Dieses Handbuch ist freie Software"), answer.answer
    # the weights: English (the model's language), an unsure detection and a multilingual model keep them all
    assert scorer_for("en", ("en",)) == scorer_for("", ("en",)) == scorer_for("de", ("*",)) == tuple(SCORER)
    assert scorer_for("de", ("de", "en", "fr")) == tuple(SCORER)
    german = dict(zip(FEATURES, scorer_for("de", ("en",))))
    assert all(german[name] == 0 for name in SIMILARITY_FEATURES)
    assert [w for name, w in german.items() if name not in SIMILARITY_FEATURES] == \
           [w for name, w in zip(FEATURES, SCORER) if name not in SIMILARITY_FEATURES]
