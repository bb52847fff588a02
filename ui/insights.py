"""How the service is used, for admins: questions per day, answered against abstained, thumbs up and down,
answer times, the most cited documents, and the questions that got no answer or a thumbs-down (the
organization's content gaps). Computed from the audit log and the feedback the page and the API keep."""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

from ui.appdb import AppDB, spreadsheet_safe

# What the audit log records besides answers (source views, downloads): not questions.
NOT_QUESTIONS = ("viewed source", "downloaded")


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


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)  # linear interpolation between closest ranks
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _local(timestamp: float, fmt: str) -> str:
    return time.strftime(fmt, time.localtime(timestamp))


def compute(db: AppDB, start: date, end: date, limit: int = 100_000) -> Insights:
    """Usage between `start` and `end` (whole local days, both included)."""
    since = datetime.combine(start, datetime.min.time()).timestamp()
    until = datetime.combine(end + timedelta(days=1), datetime.min.time()).timestamp()
    audit = [r for r in db.rows("audit", limit, since, until) if r["outcome"] not in NOT_QUESTIONS]
    feedback = db.rows("feedback", limit, since, until)
    per_day: dict[str, Counter[str]] = {}
    cited: Counter[str] = Counter()
    shown: Counter[str] = Counter()
    seconds: list[float] = []
    gaps: list[tuple[float, Gap]] = []
    for row in audit:
        created = float(row["created"])  # type: ignore[arg-type]
        outcome = str(row["outcome"])
        kind = "answered" if outcome == "answered" else "abstained" if outcome == "abstained" else "failed"
        per_day.setdefault(_local(created, "%Y-%m-%d"), Counter())[kind] += 1
        if row.get("seconds") is not None and kind != "failed":
            seconds.append(float(row["seconds"]))  # type: ignore[arg-type]
        paths = {str(s["path"]) for s in row["shown"]}  # type: ignore[union-attr]
        shown.update(paths)
        cited.update({str(s["path"]) for s in row["shown"] if s.get("cited")})  # type: ignore[union-attr]
        if kind != "answered":
            gaps.append((created, Gap(_local(created, "%Y-%m-%d %H:%M"), str(row["question"]),
                                      "no answer" if kind == "abstained" else "error")))
    for row in feedback:
        if int(row["rating"]) < 0:  # type: ignore[arg-type]
            created = float(row["created"])  # type: ignore[arg-type]
            gaps.append((created, Gap(_local(created, "%Y-%m-%d %H:%M"), str(row["question"]), "thumbs down",
                                      str(row.get("comment") or ""))))
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
        failed=totals["failed"], thumbs_up=sum(1 for r in feedback if int(r["rating"]) > 0),  # type: ignore[arg-type]
        thumbs_down=sum(1 for r in feedback if int(r["rating"]) < 0),  # type: ignore[arg-type]
        median_s=_percentile(seconds, 0.5), p95_s=_percentile(seconds, 0.95), days=days, documents=documents,
        gaps=[g for _, g in sorted(gaps, key=lambda item: -item[0])])


def to_csv(rows: list[object]) -> str:
    """Dataclass rows as CSV, a header first; cells a spreadsheet would run as formulas are defused."""
    out = io.StringIO()
    writer = csv.writer(out)
    dicts = [asdict(r) for r in rows]  # type: ignore[call-overload]
    if dicts:
        writer.writerow(list(dicts[0]))
        for item in dicts:
            writer.writerow([spreadsheet_safe(v) for v in item.values()])
    return out.getvalue()


def to_json(insights: Insights) -> str:
    return json.dumps(asdict(insights), default=str)
