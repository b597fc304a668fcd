"""The gradebook: one row per exercise of each graded notebook, a row for every file not graded, feedback
per student, and ``STATUS``; each file written atomically."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Result", "write_gradebook", "write_atomic"]


@dataclass
class Result:
    student: str
    file: str
    lesson: str = ""
    status: str = "graded"  # graded | needs regrading: why | not graded: why
    points: dict[str, float] = field(default_factory=dict)
    feedback: dict[str, str] = field(default_factory=dict)
    note: str = ""


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_gradebook(results: list[Result], points: dict[str, dict[str, float]], out: Path) -> None:
    """``gradebook.csv``, ``STATUS`` and ``feedback/<student>.md`` under ``out``. ``points``: lesson ->
    ``{exercise: maximum}`` in notebook order (exercise *n* of a lesson is its n-th entry)."""
    rows = io.StringIO()
    w = csv.writer(rows)
    w.writerow(["student", "lesson", "question", "points", "max_points", "status"])
    for r in sorted(results, key=lambda r: (r.student, r.lesson, r.file)):
        if r.points:
            for q, maximum in points[r.lesson].items():
                w.writerow([r.student, r.lesson, q, f"{r.points[q]:g}", f"{maximum:g}", r.status])
        else:
            w.writerow([r.student, r.lesson or r.file, "", "", "", f"{r.status} ({r.file})"])
    feedback = out / "feedback"
    feedback.mkdir(exist_ok=True)
    for student in sorted({r.student for r in results if r.student}):
        lines = [f"# Feedback for {student}", ""]
        for r in sorted((r for r in results if r.student == student), key=lambda r: (r.lesson, r.file)):
            if not r.points:
                lines += [f"## {r.file}: {r.status}", ""]
                continue
            maximum = points[r.lesson]
            lines += [f"## {r.lesson}: {sum(r.points.values()):g} / {sum(maximum.values()):g} points", ""]
            if r.note:
                lines += [f"**{r.note}**", ""]
            for n, q in enumerate(maximum, 1):
                lines += [
                    f"### Exercise {n}, `{q}`: {r.points[q]:g} / {maximum[q]:g}",
                    "",
                    "```",
                    r.feedback[q],
                    "```",
                    "",
                ]
        write_atomic(feedback / f"{student}.md", "\n".join(lines))
    write_atomic(out / "gradebook.csv", rows.getvalue())
    regrade = [f"{r.student}/{r.file}: {r.status}" for r in results if r.status.startswith("needs regrading")]
    status = "incomplete: run `make grade` again to regrade\n" + "\n".join(regrade) if regrade else "complete"
    write_atomic(out / "STATUS", status + "\n")
