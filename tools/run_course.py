"""Execute every solution notebook headlessly and write a one-page summary (``make course``).

Writes into ``course-output/`` (git-ignored): the executed notebooks, ``figures.jsonl`` (every key
figure a notebook recorded with ``qlora_course.report.record``) and ``SUMMARY.md``; and the committed
snapshot ``lessons/figures.json``, the figures the lecture notes may quote (``tests/test_lesson_figures.py``
checks every number in ``lessons/`` against it, and the notebook tests check it against a fresh run).
Each figure keeps its tolerance (``record(..., tol=)``: how much it may differ between machines); the
summary lists the figures that moved further than that from the snapshot they replace.

    python tools/run_course.py              # every lesson
    python tools/run_course.py --only 03    # one lesson: its figures are replaced, the others kept
    python tools/run_course.py --jobs 1     # one notebook at a time, each with every core

Two notebooks run at once by default on a machine with two cores or more, each kernel with its share of
the cores (``QLORA_COURSE_THREADS``): the lessons are independent, and most of a notebook's time is
single-threaded Python, so two at a time finish sooner than one after another.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import nbformat
import stored_outputs
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError
from tqdm import tqdm

from qlora_course import syllabus
from qlora_course.notebook import usable_cpus
from qlora_course.report import within

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "course-output"
SNAPSHOT = ROOT / "lessons" / "figures.json"


FIELDS = ("lesson", "value", "unit", "what", "varies", "tol")


def beyond_tolerance(rows: list[dict], path: Path = SNAPSHOT) -> list[str]:
    """The figures of ``rows`` that differ from the snapshot's by more than their tolerance (timings aside):
    a notebook that no longer reproduces what the notes were written from, or a tolerance measured too small."""
    old = json.loads(path.read_text()) if path.exists() else {}
    out = []
    for r in rows:
        before = old.get(r["key"])
        if before is None or r.get("varies") or before.get("varies"):
            continue
        tol = float(r.get("tol") or 0.0)
        if not within(r["value"], before["value"], tol):
            out.append(f"{r['key']}: {r['value']!r}, snapshot {before['value']!r}, tolerance ±{tol:g}")
    return out


def _tolerance(row: dict) -> str:
    return "varies" if row.get("varies") else f"±{float(row.get('tol') or 0.0):g}"


def update_snapshot(rows: list[dict], lessons: set[str], path: Path = SNAPSHOT) -> None:
    """Replace the figures of ``lessons`` in the snapshot by ``rows`` (``{key: {lesson, value, ...}}``)."""
    old = json.loads(path.read_text()) if path.exists() else {}
    new = {k: v for k, v in old.items() if v["lesson"] not in lessons}
    for r in rows:
        new[r["key"]] = {k: r.get(k) for k in FIELDS}
    path.write_text(json.dumps(dict(sorted(new.items())), indent=1, ensure_ascii=False) + "\n")


# seconds per cell; the slowest (lesson 5's methods) takes about two minutes on 2 idle cores. A busy machine
# needs more: QLORA_COURSE_CELL_TIMEOUT=2400 make course
CELL_TIMEOUT = int(os.environ.get("QLORA_COURSE_CELL_TIMEOUT", "600"))


def execute(path: Path, figures: Path, out: Path, threads: int | None = None) -> float:
    """Execute one notebook in its own folder, its figures into ``figures``; returns the seconds it took.
    ``threads``: torch threads of its kernel (``QLORA_COURSE_THREADS``; default: every usable core)."""
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ, QLORA_COURSE_REPORT=str(figures), QLORA_COURSE_LESSON=path.stem[:2])
    # executed copies are read, not run: sliders become static figures, and no live widget can stall the
    # headless client (a kernel and client both idle after a slider cell was seen twice)
    env.setdefault("QLORA_COURSE_STATIC_WIDGETS", "1")
    if threads:
        env.update(QLORA_COURSE_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    try:
        client.execute(env=env)  # the kernel's environment; this process's stays as it was
    finally:
        nbformat.write(nb, out / path.name)
    stored_outputs.store(path, nb.cells)  # the outputs the solution keeps for nbval (tagged cells only)
    return time.perf_counter() - start


def run_lesson(path: Path, out: Path, threads: int | None) -> tuple[float | None, str | None]:
    """Run one lesson (a kernel that stops answering gets a second try) into ``out/figures-NN.jsonl``;
    returns ``(seconds, None)`` or ``(None, why it failed)``."""
    figures = out / f"figures-{path.stem[:2]}.jsonl"
    for attempt in (1, 2):
        figures.unlink(missing_ok=True)  # its figures from an earlier run or attempt go
        try:
            return execute(path, figures, out, threads), None
        except (TimeoutError, DeadKernelError) as err:
            # seen rarely: client and kernel both idle
            print(f"\n{path.name}: {err}; attempt {attempt} of 2", file=sys.stderr)
            if attempt == 2:
                return None, str(err)
        except CellExecutionError as err:
            print(f"\n{path.name} failed:\n{str(err)[-2000:]}", file=sys.stderr)
            return None, str(err)[-500:]
    return None, "not run"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="folder for the executed notebooks and SUMMARY.md")
    ap.add_argument("--only", nargs="*", default=None, metavar="NN", help="run only these lessons (01 03 ...)")
    ap.add_argument(
        "--jobs",
        type=int,
        default=min(2, usable_cpus()),
        help="notebooks run at once, each kernel with an equal share of the cores (default: 2 where 2 cores)",
    )
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("--jobs must be a positive whole number")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    figures = out / "figures.jsonl"
    lessons = [ROOT / les.solution for les in syllabus.LESSONS]
    if args.only is not None:
        unknown = set(args.only) - {les.id for les in syllabus.LESSONS}
        if unknown:
            ap.error(f"no lesson {sorted(unknown)}; lessons are {[les.id for les in syllabus.LESSONS]}")
        lessons = [p for p in lessons if p.stem[:2] in args.only]
    # later lessons train models and take longest: they start first, the short ones fill the other core
    order = sorted(lessons, key=lambda p: p.stem, reverse=True)
    threads = max(1, usable_cpus() // args.jobs) if args.jobs > 1 else None
    times, failed = {}, []
    started = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool, tqdm(total=len(order), desc="course notebooks", unit="notebook") as bar:
        running = {pool.submit(run_lesson, p, out, threads): p for p in order}
        for done_run in as_completed(running):
            path, (secs, why) = running[done_run], done_run.result()
            bar.update()
            if secs is None:
                failed.append(path.stem)
                print(f"\n{path.stem}: {why}", file=sys.stderr)
            else:
                times[path.stem] = secs
    wall = time.perf_counter() - started
    times = {p.stem: times[p.stem] for p in lessons if p.stem in times}  # in lesson order
    # one figures file in lesson order, the rows of lessons not run this time kept
    ran = {p.stem[:2] for p in lessons}
    kept = []
    if figures.exists():
        kept = [line for line in figures.read_text().splitlines() if json.loads(line)["lesson"] not in ran]
    for path in lessons:
        part = out / f"figures-{path.stem[:2]}.jsonl"
        if part.exists():
            kept += part.read_text().splitlines()
            part.unlink()
    figures.write_text("".join(line + "\n" for line in kept))
    rows = [json.loads(line) for line in figures.read_text().splitlines()] if figures.exists() else []
    done = {name[:2] for name in times}  # lessons that ran to the end
    drifted = beyond_tolerance([r for r in rows if r["lesson"] in done])
    update_snapshot([r for r in rows if r["lesson"] in done], done)
    lines = [
        "# QLoRA course: key figures from the last `make course` run",
        "",
        f"Machine: {os.cpu_count()} CPU cores; {time.strftime('%Y-%m-%d %H:%M')}; {args.jobs} notebook(s) at a "
        f"time{f', {threads} torch thread(s) each' if threads else ''}: {wall:.0f} s in all.",
        "",
        "| lesson | notebook | seconds |",
        "|---|---|---|",
    ]
    lines += [f"| {name[:2]} | {name} | {secs:.0f} |" for name, secs in times.items()]
    lines += ["", "| lesson | figure | value | tolerance | unit | what it is |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {r['lesson']} | {r['key']} | {r['value']:,.4g} | {_tolerance(r)} | {r['unit']} | {r['what']} |"
        for r in rows
    ]
    if drifted:
        lines += ["", "**Beyond their tolerance of the previous snapshot** (now replaced; check the notes):", ""]
        lines += [f"- {d}" for d in drifted]
    if failed:
        lines += ["", f"**Failed:** {', '.join(failed)}"]
    (out / "SUMMARY.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nexecuted notebooks and SUMMARY.md are in {out}/")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
