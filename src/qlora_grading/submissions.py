"""Finding the submissions in an instructor's folder: every file is graded or gets a row saying why not.

Layout: one folder per student, holding that student's notebooks under their lesson names::

    submissions/alice/01_lowrank_lora.ipynb
    submissions/bob/03_double_quant (1).ipynb      # browser suffixes and letter case are matched
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .gradebook import Result

__all__ = ["lesson_of", "find_submissions", "notebook_problem", "MAX_NOTEBOOK_BYTES"]

MAX_NOTEBOOK_BYTES = 50 << 20
_SUFFIX = re.compile(r"(\s*\(\d+\)|\s*-\s*copy\d*|\s+copy(\s*\d+)?|\s*\(copy\))$", re.IGNORECASE)


def lesson_of(name: str, lessons) -> str | None:
    """The lesson a file name stands for: exact, or after dropping letter case and browser suffixes
    (``" (1)"``, ``"-Copy1"``, ``" copy"``); None when it is not a notebook or matches no lesson."""
    if not name.lower().endswith(".ipynb"):
        return None
    stem = name[: -len(".ipynb")].strip()
    while True:
        shorter = _SUFFIX.sub("", stem).strip()
        if shorter == stem:
            break
        stem = shorter
    match = [lesson for lesson in lessons if lesson.lower() == stem.lower()]
    return match[0] if len(match) == 1 else None


def find_submissions(root: Path, lessons) -> tuple[list[tuple[str, str, Path]], list[Result]]:
    """``([(student, lesson, notebook)], [not-graded rows])``: every file under ``root`` is one or the other."""
    if not root.is_dir():
        raise FileNotFoundError(f"submissions folder {root} does not exist")
    found, skipped = [], []
    for entry in sorted(root.iterdir()):
        if not entry.is_dir():
            skipped.append(Result("", entry.name, status="not graded: not in a student's folder"))
            continue
        by_lesson: dict[str, list[Path]] = {}
        for path in sorted(entry.rglob("*")):
            rel = str(path.relative_to(entry))
            if path.is_dir():
                continue
            lesson = lesson_of(path.name, lessons) if path.parent == entry else None
            if lesson is None:
                why = "in a subfolder" if path.parent != entry else "not named after a lesson"
                if not path.name.lower().endswith(".ipynb"):
                    why = "not a notebook (.ipynb)"
                skipped.append(Result(entry.name, rel, status=f"not graded: {why}"))
            else:
                by_lesson.setdefault(lesson, []).append(path)
        for lesson, paths in sorted(by_lesson.items()):
            exact = [p for p in paths if p.name == f"{lesson}.ipynb"]
            chosen = exact[0] if exact else (paths[0] if len(paths) == 1 else None)
            for p in paths:
                if p == chosen:
                    found.append((entry.name, lesson, p))
                else:
                    why = f"{chosen.name} was graded for {lesson}" if chosen else f"several files for {lesson}"
                    skipped.append(Result(entry.name, p.name, lesson, status=f"not graded: {why}"))
    if not found and not skipped:
        raise ValueError(f"no submissions in {root}: expected <student>/<lesson>.ipynb, lessons {sorted(lessons)}")
    return found, skipped


def notebook_problem(path: Path) -> str | None:
    """One line on why ``path`` cannot be graded as a notebook, or None when it can."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    if size > MAX_NOTEBOOK_BYTES:
        return f"the file is over {MAX_NOTEBOOK_BYTES >> 20} MB"
    try:
        nb = json.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError):
        return "not a Jupyter notebook (not JSON: a renamed script, or a damaged download?)"
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list) or not all(isinstance(c, dict) and "cell_type" in c for c in cells):
        return "not a Jupyter notebook (JSON without notebook cells)"
    return None
