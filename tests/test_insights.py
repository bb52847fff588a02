"""The Insights page's figures, computed from a real app database with a stand-in clock."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from ui import insights
from ui.appdb import AppDB

START = date(2026, 11, 2)


def at(day: int, hour: int = 10) -> float:
    return datetime.combine(START + timedelta(days=day), datetime.min.time()).timestamp() + hour * 3600


def test_counts_times_documents_and_gaps(app_db_at: tuple[Path | str, Path | None]) -> None:
    now = {"t": at(0)}
    db = AppDB(app_db_at[0], clock=lambda: now["t"], password_file=app_db_at[1])
    log = [  # (day, outcome, seconds, cited path)
        (0, "answered", 1.0, "a.pdf"), (0, "answered", 2.0, "a.pdf"), (0, "abstained", 0.5, ""),
        (1, "error: the model timed out", None, ""), (2, "answered", 3.0, "b.md"), (2, "answered", 10.0, "a.pdf"),
        (9, "answered", 4.0, "b.md"),  # outside the range below
    ]
    for day, outcome, seconds, path in log:
        now["t"] = at(day)
        shown = [{"path": path, "page": 1, "chunk_id": 1, "cited": True},
                 {"path": "c.txt", "page": None, "chunk_id": 2, "cited": False}] if path else []
        db.audit("u", f"question on day {day} ({outcome})", "", outcome, shown, "m", 1, seconds)
    now["t"] = at(1)
    db.audit("u", "", "", "viewed source", [{"path": "a.pdf", "page": 1, "doc_id": 1}])  # not a question
    db.add_feedback("u", "question on day 0 (answered)", "x", [], 1)
    now["t"] = at(2, 12)
    db.add_feedback("u", "=HYPERLINK(\"http://evil\")", "x", [], -1, "wrong figure")
    data = insights.compute(db, START, START + timedelta(days=2))
    assert (data.questions, data.answered, data.abstained, data.failed) == (6, 4, 1, 1)
    assert data.answered_share == pytest.approx(4 / 5)
    assert (data.thumbs_up, data.thumbs_down) == (1, 1)
    assert data.median_s == pytest.approx(2.0)  # of 0.5, 1, 2, 3, 10 (the failed question has no time)
    assert data.p95_s == pytest.approx(3 + 0.8 * 7)
    assert [(d.day, d.answered, d.abstained, d.failed) for d in data.days] == [
        ("2026-11-02", 2, 1, 0), ("2026-11-03", 0, 0, 1), ("2026-11-04", 2, 0, 0)]
    assert [(d.path, d.cited, d.shown) for d in data.documents] == [("a.pdf", 3, 3), ("b.md", 1, 1), ("c.txt", 0, 4)]
    assert [(g.why, g.question) for g in data.gaps] == [
        ("thumbs down", '=HYPERLINK("http://evil")'), ("error", "question on day 1 (error: the model timed out)"),
        ("no answer", "question on day 0 (abstained)")]
    exported = list(csv.reader(io.StringIO(insights.to_csv(list(data.gaps)))))
    assert exported[0] == ["asked", "question", "why", "comment"]
    assert exported[1][1].startswith("'=")  # a spreadsheet shows the formula as text, never runs it
    empty = insights.compute(db, date(2025, 1, 1), date(2025, 1, 3))
    assert empty.questions == 0 and empty.median_s is None and empty.answered_share is None and len(empty.days) == 3


def test_an_old_database_gains_the_answer_time_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "app.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, username TEXT NOT "
                "NULL, question TEXT NOT NULL, searched TEXT NOT NULL, outcome TEXT NOT NULL, shown TEXT NOT NULL, "
                "model TEXT NOT NULL DEFAULT '', index_version INTEGER NOT NULL DEFAULT 0)")
    old.execute("INSERT INTO audit(created, username, question, searched, outcome, shown) VALUES "
                "(?, 'u', 'q', '', 'answered', '[]')", (at(0),))
    old.commit()
    old.close()
    db = AppDB(path)
    db.audit("u", "q2", "", "answered", [], seconds=1.5)
    assert [r["seconds"] for r in db.rows("audit")] == [1.5, None]
