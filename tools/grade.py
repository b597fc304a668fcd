"""Grade a folder of student submissions with the course's autograders (otter-grader, no Docker).

    make grade SUBMISSIONS=path/to/submissions        # or: python tools/grade.py path/to/submissions

Layout: one folder per student, holding that student's notebooks under their lesson names::

    submissions/alice/01_lowrank_lora.ipynb
    submissions/alice/02_nf4.ipynb
    submissions/bob/01_lowrank_lora.ipynb

Writes ``grades/gradebook.csv`` (student, lesson, question, points, max_points: one row per student,
lesson and graded question; rewritten by every run) and ``grades/feedback/<student>.md`` (per
question: points and what the public tests said; hidden tests count but are never shown). Notebooks not
named after a lesson are reported and skipped. Every submission is copied to its own temporary folder
before any grading starts and graded there by ``otter run`` in its own process, with a time limit
(``--timeout``): a submission that loops is stopped and scores zero; one that raises scores what its
other answers earn. The gradebook is written by this process at the end, from maximum points read from
the autograder's own tests, so no
submission can change another's row or claim more than the maximum.

Non-Docker grading runs the student's code in the grading kernel: fine for exercises, not a sandbox
against a determined cheat. For high-stakes grading use ``otter grade`` with Docker on the same
autograder zips (``build/assign/<lesson>/autograder/``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSIGN = ROOT / "build" / "assign"


@dataclass
class Result:
    student: str
    lesson: str
    points: dict[str, float] = field(default_factory=dict)
    feedback: dict[str, str] = field(default_factory=dict)
    note: str = ""


def autograder(lesson: str, assign_dir: Path = ASSIGN) -> tuple[Path, dict[str, float]]:
    """The autograder zip of ``lesson`` and its questions' maximum points (from its own test files)."""
    folder = assign_dir / lesson / "autograder"
    zips = sorted(folder.glob("*.zip"))
    if not zips:
        raise FileNotFoundError(f"no autograder for {lesson} in {folder}: run `make notebooks` first")
    maximum = {}
    for test_file in sorted((folder / "tests").glob("q*.py")):
        env: dict = {}
        exec(test_file.read_text(), env)
        maximum[env["test"]["name"]] = float(env["test"]["points"])
    return zips[-1], maximum


def find_submissions(root: Path, lessons: set[str]) -> list[tuple[str, str, Path]]:
    """``[(student, lesson, notebook)]`` for ``root/<student>/<lesson>.ipynb``; other files are ignored."""
    if not root.is_dir():
        raise FileNotFoundError(f"submissions folder {root} does not exist")
    found = []
    for student_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for nb in sorted(student_dir.glob("*.ipynb")):
            if nb.stem in lessons:
                found.append((student_dir.name, nb.stem, nb))
            else:
                print(
                    f"skipped {nb.relative_to(root)}: not named after a lesson ({', '.join(sorted(lessons))})",
                    file=sys.stderr,
                )
    if not found:
        raise ValueError(
            f"no submissions in {root}: expected <student>/<lesson>.ipynb with a lesson among {sorted(lessons)}"
        )
    return found


def _kill_tree(pid: int) -> None:
    """Kill a process and all its descendants (a Jupyter kernel runs in a session of its own)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def _run_otter(notebook: Path, zip_path: Path, timeout: float) -> tuple[dict | None, str]:
    """Run ``otter run`` on ``notebook`` (alone in its folder); ``(results or None, note)``."""
    work = notebook.parent
    env = dict(os.environ, HOME=str(work), QLORA_COURSE_REPORT="")
    otter = str(Path(sys.executable).with_name("otter"))
    cmd = [otter, "run", "--no-logo", "-a", str(zip_path), "-o", str(work / "out"), str(notebook)]
    (work / "out").mkdir()
    proc = subprocess.Popen(
        cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)  # otter and the kernel it started (its own session)
        proc.communicate()
        return None, f"stopped after {timeout:.0f} s (an endless loop, or far too slow): graded zero"
    results = work / "out" / "results.json"
    if proc.returncode != 0 or not results.exists():
        return None, "grading failed: " + log[-1500:]
    try:
        return json.loads(results.read_text()), ""
    except json.JSONDecodeError as e:
        return None, f"grading failed: unreadable results ({e})"


def grade_one(
    student: str, lesson: str, notebook: Path, zip_path: Path, maximum: dict[str, float], timeout: float
) -> Result:
    result = Result(student, lesson, points={q: 0.0 for q in maximum}, feedback={q: "not graded" for q in maximum})
    data, note = _run_otter(notebook, zip_path, timeout)
    result.note = note
    if data is None:
        result.feedback = {q: note for q in maximum}
        return result
    public = {}
    for test in data.get("tests", []):
        if test.get("name") == "Public Tests":
            public = _split_by_question(str(test.get("output", "")))
    for test in data.get("tests", []):
        q = test.get("name")
        if q in maximum:
            try:
                score = float(test.get("score", 0) or 0)
            except (TypeError, ValueError):
                score = 0.0
            result.points[q] = min(max(score, 0.0), maximum[q])  # never above the autograder's maximum
            # only the public tests' report goes to the student: otter's per-question output shows the
            # hidden test cases too
            shown = public.get(q, f"{q}: no public test output")
            if result.points[q] == maximum[q]:
                result.feedback[q] = shown + "\nAll tests passed, hidden ones included."
            else:
                result.feedback[q] = (
                    shown + "\nPoints come from the public and the hidden tests; hidden ones are not shown."
                )
    return result


def _split_by_question(output: str) -> dict[str, str]:
    """Otter's public-test report, cut into ``{question: its part}``."""
    parts = re.split(r"(?m)^(\w+) results:", output)
    return {parts[i]: f"{parts[i]} results:{parts[i + 1]}".strip() for i in range(1, len(parts) - 1, 2)}


def grade_all(
    submissions: Path, out: Path, timeout: float = 600, jobs: int = 1, assign_dir: Path = ASSIGN, progress: bool = True
) -> list[Result]:
    """Grade every submission under ``submissions``; write ``out/gradebook.csv`` and ``out/feedback/``."""
    if not submissions.is_dir():
        raise FileNotFoundError(f"submissions folder {submissions} does not exist")
    lessons = {p.name for p in assign_dir.iterdir() if (p / "autograder").is_dir()} if assign_dir.is_dir() else set()
    if not lessons:
        raise FileNotFoundError(f"no autograders in {assign_dir}: run `make notebooks` first")
    found = find_submissions(submissions, lessons)
    graders = {lesson: autograder(lesson, assign_dir) for lesson in {les for _, les, _ in found}}
    with tempfile.TemporaryDirectory(prefix="qlora-grading-") as tmp:
        jobs_list = []
        for i, (student, lesson, nb) in enumerate(found):  # copy everything before anything runs
            work = Path(tmp) / f"{i:04d}"
            work.mkdir()
            shutil.copy(nb, work / f"{lesson}.ipynb")
            jobs_list.append((student, lesson, work / f"{lesson}.ipynb"))
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs_list), desc="grading", unit="notebook", disable=not progress)

        def task(job):
            student, lesson, nb = job
            zip_path, maximum = graders[lesson]
            r = grade_one(student, lesson, nb, zip_path, maximum, timeout)
            bar.update()
            return r

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            results = list(pool.map(task, jobs_list))
        bar.close()
    write_gradebook(results, graders, out)
    return results


def write_gradebook(results: list[Result], graders: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "gradebook.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", "lesson", "question", "points", "max_points"])
        for r in sorted(results, key=lambda r: (r.student, r.lesson)):
            for q, maximum in graders[r.lesson][1].items():
                w.writerow([r.student, r.lesson, q, f"{r.points[q]:g}", f"{maximum:g}"])
    fb = out / "feedback"
    fb.mkdir(exist_ok=True)
    by_student: dict[str, list[Result]] = {}
    for r in results:
        by_student.setdefault(r.student, []).append(r)
    for student, rs in by_student.items():
        lines = [f"# Feedback for {student}", ""]
        for r in sorted(rs, key=lambda r: r.lesson):
            maximum = graders[r.lesson][1]
            lines += [f"## {r.lesson}: {sum(r.points.values()):g} / {sum(maximum.values()):g} points", ""]
            if r.note:
                lines += [f"**{r.note.splitlines()[0]}**", ""]
            for q in maximum:
                lines += [f"### {q}: {r.points[q]:g} / {maximum[q]:g}", "", "```", r.feedback[q][:3000], "```", ""]
        (fb / f"{student}.md").write_text("\n".join(lines), encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("submissions", type=Path, help="folder with <student>/<lesson>.ipynb")
    ap.add_argument("--out", type=Path, default=ROOT / "grades", help="where gradebook.csv and feedback/ go")
    ap.add_argument("--timeout", type=float, default=600, help="seconds allowed per notebook (default 600)")
    ap.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (default 1)")
    args = ap.parse_args(argv)
    try:
        results = grade_all(args.submissions, args.out, args.timeout, args.jobs)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"graded {len(results)} notebook(s): {args.out / 'gradebook.csv'}, feedback in {args.out / 'feedback'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
