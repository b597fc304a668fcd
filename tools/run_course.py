"""Execute every solution notebook headlessly and write a one-page summary (``make course``).

Writes into ``course-output/`` (git-ignored): the executed notebooks, ``figures.jsonl`` (every key
figure a notebook recorded with ``qlora_course.report.record``) and ``SUMMARY.md``; and the committed
snapshot ``lessons/figures.json``, the figures the lecture notes may quote (``tests/test_lesson_figures.py``
checks every number in ``lessons/`` against it, and the notebook tests check it against a fresh run).
Each figure keeps its tolerance (``record(..., tol=)``: how much it may differ between machines); the
summary lists the figures that moved further than that from the snapshot they replace.

    python tools/run_course.py              # every lesson
    python tools/run_course.py --only 03    # one lesson: its figures are replaced, the others kept
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import nbformat
import stored_outputs
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError
from tqdm import tqdm

from qlora_course import syllabus
from qlora_course.report import within

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "course-output"
SNAPSHOT = ROOT / "lessons" / "figures.json"


def _drop_lesson(figures: Path, lesson: str) -> None:
    """Remove ``lesson``'s rows from the figures file (before the lesson runs)."""
    if figures.exists():
        lines = [line for line in figures.read_text().splitlines() if json.loads(line)["lesson"] != lesson]
        figures.write_text("".join(line + "\n" for line in lines))


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


def execute(path: Path, figures: Path, out: Path) -> float:
    """Execute one notebook in its own folder; returns the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    os.environ["QLORA_COURSE_REPORT"] = str(figures)
    # executed copies are read, not run: sliders become static figures, and no live widget can stall the
    # headless client (a kernel and client both idle after a slider cell was seen twice)
    os.environ.setdefault("QLORA_COURSE_STATIC_WIDGETS", "1")
    os.environ["QLORA_COURSE_LESSON"] = path.stem[:2]
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        nbformat.write(nb, out / path.name)
    stored_outputs.store(path, nb.cells)  # the outputs the solution keeps for nbval (tagged cells only)
    return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="folder for the executed notebooks and SUMMARY.md")
    ap.add_argument("--only", nargs="*", default=None, metavar="NN", help="run only these lessons (01 03 ...)")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    figures = out / "figures.jsonl"
    lessons = [ROOT / les.solution for les in syllabus.LESSONS]
    if args.only is not None:
        unknown = set(args.only) - {les.id for les in syllabus.LESSONS}
        if unknown:
            ap.error(f"no lesson {sorted(unknown)}; lessons are {[les.id for les in syllabus.LESSONS]}")
        lessons = [p for p in lessons if p.stem[:2] in args.only]
    times, failed = {}, []
    for path in tqdm(lessons, desc="course notebooks", unit="notebook"):
        for attempt in (1, 2):
            _drop_lesson(figures, path.stem[:2])  # its figures from an earlier run or attempt go
            try:
                times[path.stem] = execute(path, figures, out)
                break
            except (TimeoutError, DeadKernelError) as err:
                # a kernel that stops answering (seen rarely: client and kernel both idle) gets one more try
                print(f"\n{path.name}: {err}; attempt {attempt} of 2", file=sys.stderr)
                if attempt == 2:
                    failed.append(path.stem)
            except CellExecutionError as err:
                failed.append(path.stem)
                print(f"\n{path.name} failed:\n{str(err)[-2000:]}", file=sys.stderr)
                break
    rows = [json.loads(line) for line in figures.read_text().splitlines()] if figures.exists() else []
    done = {name[:2] for name in times}  # lessons that ran to the end
    drifted = beyond_tolerance([r for r in rows if r["lesson"] in done])
    update_snapshot([r for r in rows if r["lesson"] in done], done)
    lines = [
        "# QLoRA course: key figures from the last `make course` run",
        "",
        f"Machine: {os.cpu_count()} CPU cores; {time.strftime('%Y-%m-%d %H:%M')}.",
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
