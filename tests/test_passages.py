"""From chunks to passages: near-duplicates collapsed, neighbours merged, optional cross-encoder re-ranking,
and abstention on the relevance of what was found."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ingest.job import run_ingest
from rag.embedding import ModelNotFoundError
from rag.index import IndexReader
from rag.extractive import candidate_sentences
from rag.passages import collapse_near_duplicates, heading_line, join_overlapping, merge_neighbours
from rag.qa import QAService
from rag.rerank import CrossEncoderReranker
from rag.search import Searcher
from rag.types import Hit

POLICY = ("Travel policy. Employees book flights through the travel desk at least 14 days ahead. Economy class "
          "is the rule for flights under six hours; business class needs the approval of a vice president. "
          "Hotels are booked through the same desk and must stay under the city rate card.")


def hit(chunk_id: int, text: str, path: str = "/d/a.txt", position: int = 0, score: float = 1.0) -> Hit:
    return Hit(chunk_id=chunk_id, path=path, title="a", page=None, position=position, score=score, text=text)


def test_near_duplicates_collapse_to_the_best_ranked() -> None:
    copy = POLICY.replace("14 days", "fourteen days")  # last year's copy, one edit
    other = "The cafeteria serves lunch from 11:30 to 14:00 on working days."
    kept = collapse_near_duplicates([hit(1, POLICY), hit(2, other, "/d/b.txt"), hit(3, copy, "/d/old.txt")])
    assert [h.chunk_id for h in kept] == [1, 2]
    assert kept[0].duplicate_ids == (3,)


def test_neighbouring_chunks_merge_with_the_overlap_written_once() -> None:
    first = "Economy class is the rule for flights under six hours; business class needs approval"
    second = "business class needs approval of a vice president. Hotels are booked through the desk."
    assert join_overlapping(first, second) == (
        "Economy class is the rule for flights under six hours; business class needs approval of a vice "
        "president. Hotels are booked through the desk.")
    hits = [hit(11, second, position=4, score=0.9), hit(20, "unrelated", "/d/b.txt", 0, 0.8),
            hit(10, first, position=3, score=0.7), hit(30, "far away", position=9, score=0.6)]
    merged = merge_neighbours(hits)
    assert [h.chunk_id for h in merged] == [10, 20, 30]  # at the better one's rank, chunk order kept
    assert merged[0].merged_ids == (11,) and merged[0].score == 0.9 and merged[0].position == 3
    assert merged[0].text.count("business class needs approval") == 1
    # a third chunk following the merged pair joins it too
    three = merge_neighbours([*merged[:1], hit(12, "Rates are reviewed yearly.", position=5)])
    assert len(three) == 1 and three[0].merged_ids == (11, 12)


def test_a_neighbour_under_another_heading_starts_after_its_heading_line() -> None:
    edit = replace(hit(1, "-e, --edit: Opens an editor on the message.", position=2), section="OPTIONS")
    pick = replace(hit(2, "Appends a line naming the commit the change came from.", position=3), section="OPTIONS › -x")
    ending = replace(hit(3, "Applies the change without committing it.", position=4), section="OPTIONS")
    merged = merge_neighbours([pick, edit, ending])
    assert len(merged) == 1 and merged[0].section == "OPTIONS"
    assert merged[0].text == ("-e, --edit: Opens an editor on the message.\n\n-x\n\nAppends a line naming the commit "
                              "the change came from.\n\nOPTIONS\n\nApplies the change without committing it.")
    assert merged[0].sections == (("-x", "OPTIONS › -x"), ("OPTIONS", "OPTIONS"))
    # each sentence knows its heading; the heading lines are no sentences
    sentences = candidate_sentences([(1, merged[0])])
    assert [(c.sentence, c.section) for c in sentences] == [
        ("-e, --edit: Opens an editor on the message.", "OPTIONS"),
        ("Appends a line naming the commit the change came from.", "OPTIONS › -x"),
        ("Applies the change without committing it.", "OPTIONS")]
    assert sentences[1].quote(set()) == "-x: Appends a line naming the commit the change came from."
    assert heading_line("Backups › Retention", "Backups › Restore › Tests") == "Restore › Tests"


def tiny_cross_encoder(folder: Path) -> Path:
    """A random BERT sequence classifier (one label) with its own word-level tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "lunch", "noon", "parking", "free", "when", "is"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def test_cross_encoder_reranks_from_a_local_folder(make_settings, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download"):
        CrossEncoderReranker(make_settings(reranker_model=str(tmp_path / "missing")).rerank)
    reranker = CrossEncoderReranker(make_settings(reranker_model=str(tiny_cross_encoder(tmp_path / "ce"))).rerank)
    candidates = [hit(i, text, f"/d/{i}.txt") for i, text in
                  enumerate(["lunch is noon", "parking is free", "when is parking", "noon noon lunch"], start=1)]
    ranked = reranker.rerank("when is lunch", candidates)
    assert sorted(h.chunk_id for h in ranked) == [1, 2, 3, 4]
    assert [h.score for h in ranked] == sorted((h.score for h in ranked), reverse=True)
    # the same pairs scored one by one give the same scores: the batch keeps each question's pairs apart
    alone = {h.chunk_id: h.score for h in ranked}
    two = reranker.rerank_batch(["when is lunch", "parking"], [candidates, candidates[:2]])
    assert {h.chunk_id: h.score for h in two[0]} == pytest.approx(alone, abs=1e-5)
    assert len(two[1]) == 2


@pytest.fixture(scope="module")
def copies_service(tmp_path_factory: pytest.TempPathFactory, embedder) -> QAService:  # type: ignore[no-untyped-def]
    from rag.generation import make_generator
    from rag.settings import load_settings

    base = tmp_path_factory.mktemp("copies")
    docs = base / "docs"
    docs.mkdir()
    (docs / "travel-2025.txt").write_text(POLICY)
    (docs / "travel-2024.txt").write_text(POLICY.replace("14 days", "fourteen days"))
    (docs / "lunch.txt").write_text("The cafeteria serves lunch from 11:30 to 14:00 on working days.")
    settings = load_settings(index_dir=base / "index", device="cpu", answer_passages=2)
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    # the generator is never loaded by retrieve()
    return QAService(Searcher(embedder, IndexReader(settings.index), settings.search), make_generator(settings.generation), settings.answers)


def test_the_model_gets_one_copy_of_a_duplicated_passage(copies_service: QAService) -> None:
    got = copies_service.retrieve("Who approves business class flights?")
    assert len(got.hits) == 2
    assert "vice president" in got.hits[0].text and "vice president" not in got.hits[1].text
    assert len(got.hits[0].duplicate_ids) == 1


def test_relevance_separates_covered_from_uncovered_questions(copies_service: QAService) -> None:
    covered = copies_service.retrieve("Who approves business class flights?").relevance
    uncovered = copies_service.retrieve("What did the Habsburg emperor decree in 1848?").relevance
    assert covered >= copies_service.settings.abstain_threshold > uncovered


def test_neighbours_on_different_pages_stay_apart() -> None:
    """A passage is cited with one page: chunks across a page break (a slide, a sheet) are not merged."""
    from dataclasses import replace

    first = replace(hit(1, "Leave policy, page one ends here with vacation.", position=0), page=1)
    second = replace(hit(2, "Sick leave starts page two: a doctor's note from day four.", position=1), page=2)
    third = replace(hit(3, "Parental leave is sixteen weeks, still on page two.", position=2), page=2)
    merged = merge_neighbours([second, first, third])
    assert [(h.chunk_id, h.page, h.merged_ids) for h in merged] == [(2, 2, (3,)), (1, 1, ())]
