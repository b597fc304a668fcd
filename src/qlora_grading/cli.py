"""``make grade``: grade a folder of submissions, each in a sandbox, scored outside it.

    python -m qlora_grading SUBMISSIONS [--course qlora_course.exercises] [--out grades] [--jobs N] ...
    python -m qlora_grading SUBMISSIONS --shard 2/4 --out grades-2     # one of four shards of the class
    python -m qlora_grading merge grades-1 grades-2 grades-3 grades-4 --out grades

Writes, atomically, ``gradebook.csv`` (student, lesson, question, points, max_points, status: one row
per exercise of each graded notebook, and one "not graded: why" row for every other file), ``STATUS``
("complete", or "incomplete" and what is missing) and ``feedback/<student>.md``. At the start it
removes the old gradebook and marks the run as running, so a killed run never leaves an old gradebook
looking current. Beside the gradebook (the source): ``canvas.csv`` for Canvas's gradebook import and
``gradescope/<lesson>.csv`` for Gradescope's score import.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .grade import grade_all
from .sandbox import Limits

__all__ = ["main"]


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shard is i/n, e.g. 2/4; got {text!r}") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"a shard i/n needs 1 <= i <= n, got {text!r}")
    return i, n


def merge_main(argv: list[str]) -> int:
    from .course import load_course
    from .gradebook import merge

    ap = argparse.ArgumentParser(prog="python -m qlora_grading merge", description="one gradebook from shards")
    ap.add_argument("shards", type=Path, nargs="+", help="the --out folders of the shards")
    ap.add_argument("--course", default="qlora_course.exercises", help="module that defines COURSE")
    ap.add_argument("--out", type=Path, default=Path("grades"))
    args = ap.parse_args(argv)
    course = load_course(args.course)
    try:
        results = merge(args.shards, args.out, {les: course.points(les) for les in course.lessons}, course.titles)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    status = (args.out / "STATUS").read_text().splitlines()[0]
    print(f"{len(results)} file(s) from {len(args.shards)} shard(s): {args.out / 'gradebook.csv'} ({status})")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["merge"]:
        return merge_main(argv[1:])
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
    ap.add_argument("--shard", type=_shard, default=(1, 1), help="grade only shard i of n (i/n), e.g. 2/4")
    args = ap.parse_args(argv)
    limits = Limits(args.cpu_limit, args.wall_limit, args.memory_limit)
    try:
        results = grade_all(
            args.submissions, args.out, args.course, limits, args.jobs, unsafe=args.unsafe, shard=args.shard
        )
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    status = (args.out / "STATUS").read_text().splitlines()[0]
    print(f"{len(results)} file(s): {args.out / 'gradebook.csv'} ({status}); feedback in {args.out / 'feedback'}")
    return 0
