"""``make grade``: grade a folder of submissions, each in a sandbox, scored outside it.

    python -m qlora_grading SUBMISSIONS [--course qlora_course.exercises] [--out grades] [--jobs N] ...

Writes, atomically, ``gradebook.csv`` (student, lesson, question, points, max_points, status: one row
per exercise of each graded notebook, and one "not graded: why" row for every other file), ``STATUS``
("complete", or "incomplete" and what is missing) and ``feedback/<student>.md``. At the start it
removes the old gradebook and marks the run as running, so a killed run never leaves an old gradebook
looking current.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .grade import grade_all
from .sandbox import Limits

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m qlora_grading", description=__doc__.split("\n\n")[0])
    ap.add_argument("submissions", type=Path, help="folder with <student>/<lesson>.ipynb")
    ap.add_argument("--course", default="qlora_course.exercises", help="module that defines COURSE")
    ap.add_argument("--out", type=Path, default=Path("grades"), help="where gradebook.csv, STATUS and feedback/ go")
    ap.add_argument("--cpu-limit", type=int, default=Limits.cpu, help=f"CPU seconds per notebook ({Limits.cpu})")
    ap.add_argument("--wall-limit", type=int, default=0, help="wall-clock backstop, seconds (default 4 x CPU)")
    ap.add_argument(
        "--memory-limit",
        type=float,
        default=Limits.memory_gb,
        help=f"address space per notebook, GB ({Limits.memory_gb:g})",
    )
    ap.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (default 1)")
    ap.add_argument("--unsafe", action="store_true", help="grade without a sandbox (trusted submissions only)")
    args = ap.parse_args(argv)
    limits = Limits(args.cpu_limit, args.wall_limit, args.memory_limit)
    try:
        results = grade_all(args.submissions, args.out, args.course, limits, args.jobs, unsafe=args.unsafe)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    status = (args.out / "STATUS").read_text().splitlines()[0]
    print(f"{len(results)} file(s): {args.out / 'gradebook.csv'} ({status}); feedback in {args.out / 'feedback'}")
    return 0
