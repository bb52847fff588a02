"""Document permissions: users see only what their groups may read, in every search mode, in sources and
answers; a few readable documents are found among many unreadable ones; permissions change without
re-embedding; documents with unknown permissions are for admins only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest.job import run_ingest
from rag.generation import make_generator
from rag.index import IndexReader
from rag.qa import QAService
from rag.search import Searcher
from rag.settings import Settings, load_settings
from rag.types import ADMIN, Principal
from tests.conftest import BOARD_MARK, HR_MARK, PROBES, SALES_MARK, write_acl_corpus, write_crowd

SALES = Principal.member_of(["sales"])
HR = Principal.member_of(["hr"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_acl_corpus(tmp_path_factory.mktemp("acl") / "docs")


def settings_for(corpus: Path, index: Path, **extra: object) -> Settings:
    return load_settings(index_dir=index, device="cpu", acl_roots={corpus / "handbook": ["everyone"]}, **extra)


@pytest.fixture(scope="module")
def acl_settings(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings_for(corpus, tmp_path_factory.mktemp("acl-index") / "index")


@pytest.fixture(scope="module")
def searcher(acl_settings: Settings, corpus: Path, embedder) -> Searcher:  # type: ignore[no-untyped-def]
    run_ingest(acl_settings, [corpus], embedder=embedder, progress=False)
    return Searcher(embedder, IndexReader(acl_settings.index), acl_settings.search)


def texts(searcher: Searcher, query: str, principal: Principal | None, mode: str) -> str:
    return " ".join(h.text for h in searcher.search(query, 10, mode, principal).hits)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
def test_no_marker_reaches_a_user_without_access(searcher: Searcher, mode: str) -> None:
    for probe in PROBES:
        seen = texts(searcher, probe, SALES, mode)
        assert HR_MARK not in seen and BOARD_MARK not in seen, (probe, seen)
    assert SALES_MARK in texts(searcher, "Acme deal", SALES, mode)
    assert "11:30" in texts(searcher, "When is lunch?", SALES, mode)  # "everyone" from the configured root
    assert HR_MARK in texts(searcher, "salary band", HR, mode)  # inherited by hr/reviews/
    assert SALES_MARK not in texts(searcher, "Acme deal", HR, mode)


def test_unknown_permission_is_for_admins_only(searcher: Searcher) -> None:
    assert BOARD_MARK in texts(searcher, "Globex merger", ADMIN, "hybrid")
    assert BOARD_MARK in texts(searcher, "Globex merger", None, "hybrid")  # trusted local caller
    for user in (SALES, HR, Principal.member_of([])):
        assert BOARD_MARK not in texts(searcher, "Globex merger", user, "hybrid")


@pytest.mark.slow
def test_answers_and_sources_respect_permissions(searcher: Searcher, acl_settings: Settings,
                                                 model_cache: Path) -> None:
    settings = acl_settings.model_copy(update={"model_cache_dir": model_cache, "max_new_tokens": 30})
    service = QAService(searcher, make_generator(settings.generation), settings.answers)
    for probe in ["What is the salary band for senior engineers?", f"What does {HR_MARK} say?",
                  "Was the merger with Globex approved?"]:
        answer = service.ask(probe, principal=SALES)
        shown = " ".join([answer.answer, answer.quote, answer.generated, *(s.text for s in answer.sources),
                          *(s.evidence for s in answer.support), *(s.evidence for s in answer.generated_support)])
        assert HR_MARK not in shown and BOARD_MARK not in shown and "7 percent" not in shown, answer
    assert HR_MARK in " ".join(s.text for s in service.ask("salary band for senior engineers", principal=HR).sources)


def test_rag_check_only_reads_what_the_asker_may_read(searcher: Searcher, acl_settings: Settings) -> None:
    """A salesperson probing with `rag check --as-group sales` learns nothing from HR's documents: the
    statement is checked against sales-readable passages only, and no HR text comes back as evidence."""
    service = QAService(searcher, None, acl_settings.answers)  # type: ignore[arg-type]  # checking runs no model
    [probe] = service.check_statements([f"The salary band for senior engineers rises by 7 percent ({HR_MARK})."], SALES)
    assert not any(s.supported for s in probe.sentences)
    assert all("hr" not in Path(src.path).parts for src in probe.sources)
    assert HR_MARK not in " ".join([*(s.evidence for s in probe.sentences), *(src.text for src in probe.sources)])
    [allowed] = service.check_statements(["The salary band for senior engineers rises by 7 percent."], HR)
    assert allowed.sentences[0].supported


@pytest.mark.slow
def test_a_few_readable_documents_are_found_among_many_unreadable(embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = write_crowd(tmp_path / "docs")
    for index_type, extra in (("flat", {}), ("ivf", {"exact_max_vectors": 100, "ivf_nprobe": 1})):
        settings = load_settings(index_dir=tmp_path / f"index-{index_type}", device="cpu", **extra)
        run_ingest(settings, [docs], embedder=embedder, progress=False)
        searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
        question = "How fast are travel expenses reimbursed?"
        top = searcher.search(question, 50, "hybrid").hits
        assert not any("/sales/" in h.path for h in top)  # filtering after the top 50 would leave nothing
        for mode in ("dense", "keyword", "hybrid"):
            found = searcher.search(question if mode != "keyword" else "reimbursed", 3, mode, SALES).hits
            assert sorted(Path(h.path).name for h in found) == ["note-0.txt", "note-1.txt", "note-2.txt"], (
                index_type, mode)
            # a readable set larger than exact_max_vectors goes through the IVF index with an id selector
            finance = searcher.search(question, 5, mode, Principal.member_of(["finance"])).hits
            assert len(finance) == 5 and all("/finance/" in h.path for h in finance)


def test_changing_a_folders_groups_needs_no_re_embedding(corpus: Path, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(corpus, tmp_path / "index")
    run_ingest(settings, [corpus], embedder=embedder, progress=False)
    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
    assert SALES_MARK in texts(searcher, "Acme deal", SALES, "hybrid")
    acl = corpus / "sales" / ".rag-acl"
    before = acl.read_text()
    try:
        acl.write_text("management\n")  # sales loses access
        summary = run_ingest(settings, [corpus], embedder=embedder, progress=False)
        assert summary.permissions_changed == 1 and summary.chunks_embedded == 0 and summary.files_indexed == 0
        assert SALES_MARK not in texts(searcher, "Acme deal", SALES, "hybrid")  # the same searcher, no restart
        assert SALES_MARK in texts(searcher, "Acme deal", Principal.member_of(["management"]), "hybrid")
    finally:
        acl.write_text(before)


@pytest.mark.parametrize("source", ["files", "filesystem", "both"])
def test_every_readers_source_keeps_the_contract(source: str, tmp_path: Path) -> None:
    """What ingest relies on from any `Readers` (ingest/acl.py): a sorted tuple of distinct readers per path,
    the same for the same path whichever run asks, empty (admins only) for a file whose permission cannot be
    known, and that file among the problems with a one-line reason."""
    from ingest.acl import make_readers
    from rag.settings import load_settings

    import tempfile

    # under /var/tmp, entered by everyone (pytest's own folders are 0700: nobody but root could read there)
    docs = Path(tempfile.mkdtemp(prefix="rag-readers-", dir="/var/tmp")) / "docs"
    docs.parent.chmod(0o755)
    (docs / "open").mkdir(parents=True)
    (docs / "open" / ".rag-acl").write_text("everyone, staff\n")
    (docs / "open" / "a.txt").write_text("a")
    settings = load_settings(index_dir=tmp_path / "index", acl_source=source).ingest
    readers = make_readers(settings, [docs])
    first = readers.groups_for(str(docs / "open" / "a.txt"))
    assert list(first) == sorted(set(first)) and first == make_readers(settings, [docs / "open"]).groups_for(
        str(docs / "open" / "a.txt"))
    gone = str(docs / "open" / "missing.txt")
    if source != "files":  # a file whose permissions cannot be read is for admins only, and reported
        assert first and readers.groups_for(gone) == () and [p for p, _ in readers.problems()] == [gone]
    else:  # .rag-acl rules are by folder: a broken permission file closes its folder, and is reported
        assert first == ("everyone", "staff")
        (docs / "open" / ".rag-acl").write_text("not a group!\n")
        fresh = make_readers(settings, [docs])
        assert fresh.groups_for(str(docs / "open" / "a.txt")) == () and len(fresh.problems()) == 1
    assert all(isinstance(reason, str) and "\n" not in reason for _, reason in readers.problems())
    shutil.rmtree(docs.parent)
