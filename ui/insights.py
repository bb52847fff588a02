"""How the service is used, for admins: questions per day, answered against abstained, thumbs up and down,
answer times, the most cited documents, and the questions that got no answer or a thumbs-down (the
organization's content gaps). Computed from the audit log and the feedback the page and the API keep."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

from rag.metrics import percentile
from ui.appdb import AppDB, csv_text

# What the audit log records besides answers (source views, downloads): not questions.
NOT_QUESTIONS = ("viewed source", "downloaded", "sign-in spraying", "searched", "read document", "listed documents")


@dataclass(frozen=True)
class Day:
    day: str  # YYYY-MM-DD, local time
    answered: int = 0
    abstained: int = 0
    failed: int = 0


@dataclass(frozen=True)
class CitedDocument:
    path: str
    cited: int  # answers that cited it
    shown: int  # answers that showed it as a source


@dataclass(frozen=True)
class Gap:
    """A question the documents did not answer well: abstained, failed, or rated not helpful."""

    asked: str  # YYYY-MM-DD HH:MM
    question: str
    why: str  # "no answer", "thumbs down", "error"
    comment: str = ""


@dataclass(frozen=True)
class Insights:
    start: date
    end: date  # inclusive
    questions: int = 0
    answered: int = 0
    abstained: int = 0
    failed: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    median_s: float | None = None
    p95_s: float | None = None
    days: list[Day] = field(default_factory=list)
    documents: list[CitedDocument] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    @property
    def answered_share(self) -> float | None:
        decided = self.answered + self.abstained
        return self.answered / decided if decided else None


def _local(timestamp: float, fmt: str) -> str:
    return time.strftime(fmt, time.localtime(timestamp))


def compute(db: AppDB, start: date, end: date) -> Insights:
    """Usage between `start` and `end` (whole local days, both included)."""
    since = datetime.combine(start, datetime.min.time()).timestamp()
    until = datetime.combine(end + timedelta(days=1), datetime.min.time()).timestamp()
    audit = [e for e in db.audit_entries(since, until) if e.outcome not in NOT_QUESTIONS]
    feedback = db.feedback_entries(since, until)
    per_day: dict[str, Counter[str]] = {}
    cited: Counter[str] = Counter()
    shown: Counter[str] = Counter()
    seconds: list[float] = []
    gaps: list[tuple[float, Gap]] = []
    for entry in audit:
        kind = entry.outcome if entry.outcome in ("answered", "abstained") else "failed"
        per_day.setdefault(_local(entry.created, "%Y-%m-%d"), Counter())[kind] += 1
        if entry.seconds is not None and kind != "failed":
            seconds.append(entry.seconds)
        shown.update({s.path for s in entry.shown})
        cited.update({s.path for s in entry.shown if s.cited})
        if kind != "answered":
            gaps.append((entry.created, Gap(_local(entry.created, "%Y-%m-%d %H:%M"), entry.question,
                                            "no answer" if kind == "abstained" else "error")))
    for note in feedback:
        if note.rating < 0:
            gaps.append((note.created, Gap(_local(note.created, "%Y-%m-%d %H:%M"), note.question, "thumbs down",
                                           note.comment)))
    days = []
    day = start
    while day <= end:
        counts = per_day.get(day.isoformat(), Counter())
        days.append(Day(day.isoformat(), counts["answered"], counts["abstained"], counts["failed"]))
        day += timedelta(days=1)
    totals = Counter({k: sum(c[k] for c in per_day.values()) for k in ("answered", "abstained", "failed")})
    documents = [CitedDocument(path, cited[path], shown[path])
                 for path in sorted(shown, key=lambda p: (-cited[p], -shown[p], p))]
    return Insights(
        start, end, questions=len(audit), answered=totals["answered"], abstained=totals["abstained"],
        failed=totals["failed"], thumbs_up=sum(1 for note in feedback if note.rating > 0),
        thumbs_down=sum(1 for note in feedback if note.rating < 0),
        median_s=percentile(seconds, 50) if seconds else None,
        p95_s=percentile(seconds, 95) if seconds else None, days=days, documents=documents,
        gaps=[g for _, g in sorted(gaps, key=lambda item: -item[0])])


def to_csv(rows: list[object]) -> str:
    """Dataclass rows as CSV, a header first; cells a spreadsheet would run as formulas are defused."""
    dicts = [asdict(r) for r in rows]  # type: ignore[call-overload]
    return csv_text(list(dicts[0]) if dicts else [], [list(d.values()) for d in dicts])
