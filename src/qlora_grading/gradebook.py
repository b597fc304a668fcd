"""The gradebook: one row per exercise of each graded notebook, a row for every file not graded, feedback
per student, and ``STATUS``; each file written atomically."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Result", "write_gradebook", "write_atomic", "merge", "canvas_csv", "gradescope_csv"]


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


def write_gradebook(
    results: list[Result], points: dict[str, dict[str, float]], out: Path, titles: dict[str, str] | None = None
) -> None:
    """``gradebook.csv`` (the source), ``STATUS``, ``feedback/<student>.md`` and the exports for learning
    management systems (``canvas.csv``; ``gradescope/<lesson>.csv``) under ``out``. ``points``: lesson ->
    ``{exercise: maximum}`` in notebook order (exercise *n* of a lesson is its n-th entry); ``titles``:
    lesson -> the assignment's name in Canvas (default: the lesson's name)."""
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
    write_atomic(out / "canvas.csv", canvas_csv(results, points, {les: (titles or {}).get(les, les) for les in points}))
    (out / "gradescope").mkdir(exist_ok=True)
    for lesson in points:
        write_atomic(out / "gradescope" / f"{lesson}.csv", gradescope_csv(results, points[lesson], lesson))
    regrade = [f"{r.student}/{r.file}: {r.status}" for r in results if r.status.startswith("needs regrading")]
    status = "incomplete: run `make grade` again to regrade\n" + "\n".join(regrade) if regrade else "complete"
    write_atomic(out / "STATUS", status + "\n")


def merge(
    shards: list[Path], out: Path, points: dict[str, dict[str, float]], titles: dict[str, str] | None = None
) -> list[Result]:
    """One gradebook in ``out`` from the ``out`` folders of a run's shards (``grade_all(..., shard=...)``):
    their results put together, ``STATUS`` complete only if every shard was. A student found in two shards
    is an error (the shards were not of one run)."""
    import json

    results, seen, unfinished = [], set(), []
    for folder in shards:
        status = (folder / "STATUS").read_text().splitlines()[0] if (folder / "STATUS").exists() else "missing"
        if not status.startswith("complete"):
            unfinished.append(f"{folder}: {status}")
        rows = json.loads((folder / "results.json").read_text()) if (folder / "results.json").exists() else []
        for row in rows:
            r = Result(**row)
            key = (r.student, r.lesson, r.file)
            if r.student and key in seen:
                raise ValueError(f"{r.student}/{r.file} is in two shards: were they graded by one run's shards?")
            seen.add(key)
            results.append(r)
    out.mkdir(parents=True, exist_ok=True)
    write_gradebook(results, points, out, titles)
    if unfinished:
        write_atomic(out / "STATUS", "incomplete: a shard did not finish\n" + "\n".join(unfinished) + "\n")
    return results


def _totals(results: list[Result], lesson: str) -> dict[str, float]:
    return {r.student: sum(r.points.values()) for r in results if r.lesson == lesson and r.points and r.student}


def canvas_csv(results: list[Result], points: dict[str, dict[str, float]], titles: dict[str, str]) -> str:
    """The gradebook as Canvas's gradebook import reads a CSV: the columns Student, ID, SIS User ID, SIS
    Login ID and Section (the student's folder name as the SIS Login ID, the others empty), then one
    column per lesson (a new assignment, named ``titles[lesson]``), a "Points Possible" row, and one row
    per student with each lesson's total (empty where nothing was graded)."""
    lessons = sorted(points)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *[titles[les] for les in lessons]])
    w.writerow(["    Points Possible", "", "", "", "", *[f"{sum(points[les].values()):g}" for les in lessons]])
    totals = {les: _totals(results, les) for les in lessons}
    for student in sorted({r.student for r in results if r.student}):
        cells = [f"{totals[les][student]:g}" if student in totals[les] else "" for les in lessons]
        w.writerow([student, "", "", student, "", *cells])
    return buf.getvalue()


def gradescope_csv(results: list[Result], points: dict[str, float], lesson: str) -> str:
    """One lesson's scores as Gradescope's "Import scores" reads a CSV: an identifier column (SID: the
    student's folder name), ``Total Score``, and one column per exercise."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["SID", "Total Score", *points])
    for r in sorted((r for r in results if r.lesson == lesson and r.points and r.student), key=lambda r: r.student):
        w.writerow([r.student, f"{sum(r.points.values()):g}", *[f"{r.points[q]:g}" for q in points]])
    return buf.getvalue()
