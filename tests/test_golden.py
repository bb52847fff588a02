"""The samples' golden question set (samples/questions.jsonl) through `rag eval`, with the default model.

Source accuracy and abstention are asserted, so a retrieval or abstention regression fails CI; answer
accuracy is reported, not asserted, since it depends on the model (docs/benchmarks.md has the figures).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLES


@pytest.mark.slow
def test_golden_questions(tmp_path: Path, model_cache: Path) -> None:
    env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache), "RAG_MAX_NEW_TOKENS": "32"}
    done = subprocess.run([sys.executable, "-m", "ui.cli", "eval", str(SAMPLES / "questions.jsonl"), "--json"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=1))  # the figures, in the test log
    assert report["questions"] >= 40 and report["unanswerable"] >= 10
    assert report["source_accuracy"] >= 0.95, report["failures"]
    assert report["abstained_answerable"] <= 0.05 and report["declined_answerable"] <= 0.05, report["failures"]
    # abstention is calibrated on real documentation to refuse at most 5% of answerable questions per set
    # (docs/benchmarks.md): the samples' near misses, abstained at 0.50 and declined at 0.79 by the earlier
    # thresholds tuned on them, are now 0.29 and 0.43; these floors keep them from falling further
    assert report["abstained_unanswerable"] >= 0.25, report["failures"]
    assert report["declined_unanswerable"] >= 0.4, report["failures"]
    # quoted answers hold the expected answer far more often than the demo model's own
    assert report["answer_accuracy"] >= report["answer_accuracy_model"] + 0.3


def test_golden_set_is_well_formed() -> None:
    rows = [json.loads(line) for line in (REPO / "samples" / "questions.jsonl").read_text().splitlines() if line]
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    for row in rows:
        if row["answer"] is not None:
            assert (SAMPLES / row["path"]).is_file(), row
        if row.get("follows"):
            assert row["follows"] in ids[: ids.index(row["id"])], row
    kinds = {Path(r["path"]).suffix for r in rows if r["answer"] is not None}
    assert kinds >= {".pdf", ".docx", ".pptx", ".xlsx", ".csv", ".html", ".md", ".txt", ".json", ".eml", ".rst"}
