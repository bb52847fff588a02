"""Answers: Dolly's prompt format, context packing, the Dolly stop token, busy and offline errors,
abstention, groundedness, and a real answer from the default model."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.job import run_ingest
from rag.generation import GenerationParams, make_generator
from rag.generation.transformers_backend import TransformersBackend
from rag.index import IndexReader
from rag.prompt import END_KEY, dolly_prompt, pack_prompt
from rag.qa import NOT_FOUND, QAService, Source
from rag.search import Searcher
from rag.settings import ConfigError
from rag.types import Hit
from tests.conftest import SAMPLES, tiny_dolly

def test_dolly_prompt_is_exactly_the_training_format() -> None:
    assert dolly_prompt("Who owns billing?", "[1] Finance owns billing.") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nWho owns billing?\n\nInput:\n[1] Finance owns billing.\n\n### Response:\n")


def hit(i: int, words: int) -> Hit:
    return Hit(chunk_id=i, path=f"/d/{i}.txt", title="t", page=None, position=0, score=1.0 / i,
               text=" ".join(f"w{i}" for _ in range(words)))


def test_packing_keeps_most_relevant_first_within_the_window() -> None:
    def count(text: str) -> int:
        return len(text.split())

    def truncate(text: str, n: int) -> str:
        return " ".join(text.split()[:n])

    hits = [hit(1, 100), hit(2, 100), hit(3, 100), hit(4, 100)]
    packed = pack_prompt("q?", hits, dolly_prompt, count, context_window=400, max_new_tokens=100, truncate=truncate)
    assert [h.chunk_id for h in packed.passages] == [1, 2, 3][: len(packed.passages)]
    assert packed.prompt_tokens <= 400 - 100
    assert "[1] w1" in packed.text and packed.text.index("[1]") < packed.text.index("[2]")
    with pytest.raises(ValueError, match="no room"):
        pack_prompt("q?", hits, dolly_prompt, count, context_window=60, max_new_tokens=50, truncate=truncate)



@pytest.mark.slow
def test_dolly_model_stops_at_end_token(make_settings, tmp_path: Path) -> None:
    stopper = make_generator(make_settings(generator_model=str(tiny_dolly(tmp_path / "end", END_KEY))).generation)
    assert stopper.prompt_format == "dolly"
    assert TransformersBackend(make_settings(generator_model=str(tmp_path / "end")).generation).is_dolly
    prompt = stopper.render("when is lunch", "[1] lunch is noon")
    assert prompt.endswith("### Response:\n")
    assert stopper.generate(prompt, GenerationParams(max_new_tokens=20)) == ""

    talker = make_generator(make_settings(generator_model=str(tiny_dolly(tmp_path / "yes", "yes"))).generation)
    answer = talker.generate(prompt, GenerationParams(max_new_tokens=3))
    assert answer.split() == ["yes"] * 3  # the same model, not trained to stop, runs to max_new_tokens
    looping = talker.generate(prompt, GenerationParams(max_new_tokens=12))
    assert set(looping.split()) == {"yes"} and len(looping.split()) < 12  # until the loop cut stops it


def test_a_looping_answer_is_cut_at_its_first_repeat() -> None:
    from rag.generation import repetition_cut

    text = "Lunch is at noon.\nThe gym is free.\nThe gym is free.\nThe gym"
    assert text[: repetition_cut(text)].strip() == "Lunch is at noon.\nThe gym is free."
    assert repetition_cut("Lunch is at noon. Parking is free. Bikes go in the yard.") is None
    assert repetition_cut("Yes. Yes. Yes.") is None  # too short to call a loop


def test_a_model_name_that_is_not_local_fails_at_once(make_settings, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="huggingface-cli download"):
        make_generator(make_settings(generator_model="databricks/dolly-v2-3b").generation)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match="only safetensors or GGUF"):
        make_generator(make_settings(generator_model=str(pickled)).generation)


@pytest.fixture(scope="module")
def sample_service(tmp_path_factory: pytest.TempPathFactory, embedder, model_cache: Path) -> QAService:  # type: ignore[no-untyped-def]
    from rag.settings import load_settings

    base = tmp_path_factory.mktemp("qa")
    settings = load_settings(index_dir=base / "index", model_cache_dir=model_cache, device="cpu",
                             answer_passages=1, max_new_tokens=40)
    run_ingest(settings, [SAMPLES], embedder=embedder, progress=False)
    return QAService(Searcher(embedder, IndexReader(settings.index), settings.search), make_generator(settings.generation), settings.answers)


@pytest.mark.slow
def test_uncovered_question_abstains_without_sources(sample_service: QAService) -> None:
    answer = sample_service.ask("What is the capital of Peru?")
    assert answer.abstained and answer.answer == NOT_FOUND and answer.sources == []
    with pytest.raises(ValueError, match="RAG_MAX_QUESTION_CHARS"):
        sample_service.ask("lunch " * 1000)
    assert sample_service.generator.device == "unloaded"  # nothing was generated


@pytest.mark.slow  # the module's service (index and model) is built for this test alone in the fast tier
def test_support_marks_sentences_the_passages_do_not_back(sample_service: QAService) -> None:
    source = Source(1, 1, "/d/cafeteria.html", "Cafeteria", None, 1.0,
                    "Lunch is served from 11:30 to 14:00. Parking in the garage is free for employees.")
    support = sample_service.check_support(
        "Lunch is served from 11:30 to 14:00 [1]. The CEO plays the violin every Tuesday.", [source])
    assert [s.supported for s in support] == [True, False]
    assert support[0].source == 1 and "11:30" in support[0].evidence


@pytest.mark.slow
def test_default_model_answers_a_one_fact_question(sample_service: QAService) -> None:
    answer = sample_service.ask("When is lunch served in the cafeteria?")
    assert not answer.abstained
    assert "11:30" in answer.answer, answer.answer
    assert answer.sources[0].path.endswith("cafeteria.html")
    assert answer.model == "SmolLM2-135M-Instruct.Q4_1"
    assert set(answer.timings_ms) >= {"embed", "search", "generate", "total"}


@pytest.mark.slow
def test_langchain_retriever_and_chain(sample_service: QAService) -> None:
    from langchain_core.runnables import RunnableLambda

    from rag.langchain import IndexRetriever, qa_runnable, qa_stream_runnable

    retriever = IndexRetriever(searcher=sample_service.searcher, k=2)
    docs = retriever.invoke("How long is parental leave?")
    assert docs[0].metadata["path"].endswith("leave-policy.pdf") and docs[0].metadata["page"] == 2
    # composes like any LangChain retriever
    paths = (retriever | RunnableLambda(lambda ds: [d.metadata["path"] for d in ds])).invoke("VPN portal")
    assert paths[0].endswith("it-handbook.docx")

    chain = qa_runnable(sample_service)
    answers = chain.batch(["What is the capital of Peru?", "When is lunch served in the cafeteria?",
                           "When is lunch served in the cafeteria?"])  # two generations: queued, not busy
    assert answers[0].abstained and "11:30" in answers[1].answer and answers[2].answer == answers[1].answer
    streamed = "".join(qa_stream_runnable(sample_service).stream("When is lunch served in the cafeteria?"))
    assert streamed == answers[1].answer
