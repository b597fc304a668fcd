"""Grade a folder of student submissions: each in a sandbox, scored outside it (``make grade``).

    make grade SUBMISSIONS=path/to/submissions        # or: python tools/grade.py path/to/submissions

Layout: one folder per student, holding that student's notebooks under their lesson names::

    submissions/alice/01_lowrank_lora.ipynb
    submissions/bob/03_double_quant (1).ipynb      # browser suffixes and letter case are matched

How a submission is graded (see "Grading: threat model" in lessons/instructor-guide.md):

1. It runs in ``bubblewrap``: no network, the course and the Python environment read-only, a private
   writable folder holding only its notebook, user ``nobody``, its own process namespace (everything in
   it ends with it), limits on CPU time (``--cpu-limit``) and memory (``--memory-limit``). Without
   bubblewrap the grader refuses, unless ``--unsafe`` (``make grade UNSAFE=1``) is given.
2. ``grade_runner.py`` executes its code cells in order and, at each ``grader.check("qN")``, runs the
   question's public tests and its probe (``grade_probes.py``: the learner's answer on random hidden
   inputs), writing the results out as data at once.
3. Here, outside the sandbox, each probe's values are compared with the reference solution's on the same
   inputs (``build/grading/<lesson>/reference.ipynb``, graded the same way once per run). A question
   scores its points when its public tests passed and every value matched.

Writes, atomically, ``grades/gradebook.csv`` (student, lesson, question, points, max_points, status: one
row per question of each graded notebook, and one "not graded: why" row for every other file) and
``grades/STATUS`` ("complete", or "incomplete" and what is missing). At the start it removes the old
gradebook and marks the run as running, so a killed run never leaves an old gradebook looking current.
Results are kept per submission in ``grades/results/`` (keyed by the notebook's and the grader's hashes),
so a rerun grades only what is new or was not finished. Feedback per student: ``grades/feedback/``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = Path(__file__).resolve().parent
REFERENCES = ROOT / "build" / "grading"
MAX_NOTEBOOK_BYTES = 50 << 20
MAX_OUTPUT_BYTES = 256 << 20  # what a runner may write back
IDLE_SHARE = 0.05  # stopped by the wall clock while using under 5% of a core: it was waiting, not starved
PUBLIC_EXCEPTIONS = {"AssertionError", "TypeError", "ValueError", "NameError", "AttributeError", "IndexError"}


@dataclass
class Result:
    student: str
    file: str
    lesson: str = ""
    status: str = "graded"  # graded | needs regrading: why | not graded: why
    points: dict[str, float] = field(default_factory=dict)
    feedback: dict[str, str] = field(default_factory=dict)
    note: str = ""


@dataclass
class Limits:
    cpu: int = 600  # CPU seconds for a whole notebook
    wall: int = 0  # wall-clock backstop in seconds; 0: four times ``cpu``
    memory_gb: float = 8.0  # address space


# ---------------------------------------------------------------- finding the submissions

_SUFFIX = re.compile(r"(\s*\(\d+\)|\s*-\s*copy\d*|\s+copy(\s*\d+)?|\s*\(copy\))$", re.IGNORECASE)


def lesson_of(name: str, lessons: set[str]) -> str | None:
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


def find_submissions(root: Path, lessons: set[str]) -> tuple[list[tuple[str, str, Path]], list[Result]]:
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


# ---------------------------------------------------------------- running one notebook in the sandbox


def sandbox_available() -> bool:
    """Whether bubblewrap is installed and can start a sandbox here."""
    if not shutil.which("bwrap"):
        return False
    r = subprocess.run(["bwrap", "--unshare-all", "--ro-bind", "/", "/", "true"], capture_output=True)
    return r.returncode == 0


def _python_roots() -> list[Path]:
    """Folders the sandbox must see read-only for Python to run: the venv and the base installation."""
    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parents[1]}
    return sorted(p for p in roots if not str(p).startswith(("/usr", "/lib", "/bin")))


def runner_command(lesson: str, salt: str, work: Path, limits: Limits, unsafe: bool) -> list[str]:
    """The command that runs ``work/<lesson>.ipynb``: inside bubblewrap, or bare when ``unsafe``."""
    memory = int(limits.memory_gb * (1 << 30))
    inner = [sys.executable, "/grader/grade_runner.py", lesson, salt, f"{lesson}.ipynb"]
    inner += ["--cpu", str(limits.cpu), "--memory", str(memory)]
    if unsafe:
        inner[1] = str(TOOLS / "grade_runner.py")
        return inner
    cmd = ["bwrap", "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534"]
    cmd += ["--die-with-parent", "--new-session", "--as-pid-1", "--proc", "/proc", "--dev", "/dev"]
    cmd += ["--tmpfs", "/tmp", "--ro-bind", "/usr", "/usr"]
    for link in ("lib", "lib64", "bin", "sbin"):
        if Path("/" + link).is_symlink():
            cmd += ["--symlink", os.readlink("/" + link), "/" + link]
        elif Path("/" + link).is_dir():
            cmd += ["--ro-bind", "/" + link, "/" + link]
    for etc in ("/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/ssl"):
        if Path(etc).exists():
            cmd += ["--ro-bind", etc, etc]
    for path in _python_roots() + [ROOT / "src"]:
        cmd += ["--ro-bind", str(path), str(path)]
    cmd += ["--ro-bind", str(TOOLS / "grade_runner.py"), "/grader/grade_runner.py"]
    cmd += ["--ro-bind", str(TOOLS / "grade_probes.py"), "/grader/grade_probes.py"]
    cmd += ["--bind", str(work), "/submission", "--chdir", "/submission"]
    return cmd + inner


def _sandbox_env(work: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": work,
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": f"{work}/.mpl",
        "OMP_NUM_THREADS": "1",
        "QLORA_COURSE_THREADS": "1",
        "QLORA_COURSE_STATIC_WIDGETS": "1",
        "QLORA_COURSE_REPORT": "",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
    }


def _tree_cpu(proc) -> float:
    """CPU seconds used so far by ``proc``'s descendants (the sandboxed runner and its children)."""
    import psutil

    total = 0.0
    try:
        for p in psutil.Process(proc.pid).children(recursive=True):
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def _kill(proc) -> None:
    import psutil

    try:
        procs = psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]
    except psutil.Error:
        procs = []
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    proc.wait()


def run_notebook(notebook: Path, lesson: str, salt: str, limits: Limits, unsafe: bool) -> tuple[list[dict], str]:
    """Run a copy of ``notebook`` alone in a fresh folder; ``(events it wrote, how it ended)``.

    How it ended: "" (finished), "stopped: ..." (CPU limit, crash, waiting forever: graded as far as it
    got) or "needs regrading: ..." (the wall-clock backstop stopped it while it was computing)."""
    wall = limits.wall or 4 * limits.cpu
    with tempfile.TemporaryDirectory(prefix="qlora-submission-") as tmp:
        work = Path(tmp)
        shutil.copyfile(notebook, work / f"{lesson}.ipynb")
        os.chmod(work, 0o777)  # the sandbox's user (nobody) writes here
        inside = str(work) if unsafe else "/submission"
        proc = subprocess.Popen(
            runner_command(lesson, salt, work, limits, unsafe),
            cwd=work,
            env=_sandbox_env(inside),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        buffer = io.BytesIO()

        def read():
            while chunk := proc.stdout.read1(1 << 16):
                if buffer.tell() < MAX_OUTPUT_BYTES:
                    buffer.write(chunk)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        start, ended, samples = time.monotonic(), "", []
        while proc.poll() is None and time.monotonic() - start < wall:
            samples.append((time.monotonic(), _tree_cpu(proc)))
            try:
                proc.wait(timeout=min(2.0, max(wall - (time.monotonic() - start), 0.01)))
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            # its CPU share over the last quarter of the time allowed: did it wait, or was it starved?
            now, cpu = time.monotonic(), _tree_cpu(proc)
            then, cpu_then = next((s for s in samples if s[0] >= now - wall / 4), samples[0])
            share = (cpu - cpu_then) / max(now - then, 1e-9)
            _kill(proc)
            if share < IDLE_SHARE:
                ended = "stopped: it waited without computing (a sleep or a wait that never ends)"
            else:
                ended = "needs regrading: the machine was too busy to finish it in time"
        reader.join(timeout=30)
        events = []
        for line in buffer.getvalue().splitlines():
            try:
                event = json.loads(line)
            except (UnicodeDecodeError, ValueError):
                continue
            if isinstance(event, dict) and isinstance(event.get("event"), str):
                events.append(event)
        if not ended and not any(e["event"] in ("done", "broken") for e in events):
            ended = "stopped: it ended early (a crash, os._exit, or the CPU or memory limit)"
        return events, ended


def _last(events: list[dict], kind: str) -> dict[str, dict]:
    """The last event of ``kind`` per question."""
    return {e["q"]: e for e in events if e.get("event") == kind and isinstance(e.get("q"), str)}


# ---------------------------------------------------------------- scoring, outside the sandbox


def public_messages(lesson: str, q: str) -> list[str]:
    """The fixed text of the public tests' assertion messages (up to their first ``{field}``): the only
    part of a learner's error text that feedback may show."""
    import ast

    sys.path.insert(0, str(TOOLS))
    from grade_runner import public_source

    out = []
    for node in ast.walk(ast.parse(public_source(lesson, q))):
        msg = node.msg if isinstance(node, ast.Assert) else None
        parts = msg.values if isinstance(msg, ast.JoinedStr) else [msg]
        fixed = ""
        for part in parts:
            if not (isinstance(part, ast.Constant) and isinstance(part.value, str)):
                break
            fixed += part.value
        if len(fixed) >= 12:
            out.append(fixed)
    return out


def public_feedback(lesson: str, q: str, event: dict | None) -> str:
    if event is None:
        return "public tests: not reached"
    if event.get("passed") is True:
        return "public tests: passed"
    error = str(event.get("error") or "")
    kind, _, message = error.partition(": ")
    for fixed in public_messages(lesson, q):
        if message.startswith(fixed):
            return f"public tests: failed: {fixed.strip()}..."
    return f"public tests: failed ({kind if kind in PUBLIC_EXCEPTIONS else 'an error'})"


def score(lesson: str, points: dict[str, float], events: list[dict], reference: dict[str, dict], ended: str) -> Result:
    """Points and feedback from a submission's events, compared with the reference's probe values."""
    import grade_probes

    result = Result("", "", lesson)
    public, probes = _last(events, "public"), _last(events, "probe")
    for q, maximum in points.items():
        lines = [public_feedback(lesson, q, public.get(q))]
        want, got = reference[q], probes.get(q)
        rtol, atol = grade_probes.TOLERANCE.get((lesson, q), (1e-5, 1e-6))
        if got is None:
            lines.append("hidden tests: not reached")
            ok = False
        elif not isinstance(got.get("values"), dict):
            err = str(got.get("error", "an error"))[:60]
            lines.append(f"hidden tests: the answer raised {err if err.isidentifier() else 'an error'}")
            ok = False
        else:
            wrong = [k for k, w in want.items() if not grade_probes.same(got["values"].get(k), w, rtol, atol)]
            ok = not wrong
            lines.append("hidden tests: passed" if ok else f"hidden tests: {len(wrong)} of {len(want)} results differ")
        passed = ok and public.get(q, {}).get("passed") is True
        result.points[q] = maximum if passed else 0.0
        result.feedback[q] = "\n".join(lines)
    if ended:
        result.note = ended
        if ended.startswith("needs regrading"):
            result.status = ended
    return result


def reference_values(lesson: str, references: Path, salt: str, limits: Limits, unsafe: bool) -> dict[str, dict]:
    """The reference solution's probe values for this run's hidden inputs (its public tests must pass)."""
    points = json.loads((references / lesson / "questions.json").read_text())
    events, ended = run_notebook(references / lesson / "reference.ipynb", lesson, salt, limits, unsafe)
    probes, public = _last(events, "probe"), _last(events, "public")
    bad = [q for q in points if "values" not in probes.get(q, {}) or public.get(q, {}).get("passed") is not True]
    if bad or ended:
        detail = {q: (public.get(q, {}).get("error"), probes.get(q, {}).get("error")) for q in bad}
        raise RuntimeError(f"the reference solution of {lesson} does not grade ({ended or 'failed'}): {detail}")
    return {q: probes[q]["values"] for q in points}


def grader_hash(references: Path, lesson: str) -> str:
    h = hashlib.sha256()
    for path in (TOOLS / "grade.py", TOOLS / "grade_runner.py", TOOLS / "grade_probes.py"):
        h.update(path.read_bytes())
    h.update((references / lesson / "reference.ipynb").read_bytes())
    h.update((references / lesson / "questions.json").read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------- the run


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def grade_all(
    submissions: Path,
    out: Path,
    limits: Limits | None = None,
    jobs: int = 1,
    references: Path | None = None,
    unsafe: bool = False,
    progress: bool = True,
) -> list[Result]:
    """Grade every submission under ``submissions``; write ``out/gradebook.csv``, ``STATUS``, feedback."""
    limits = limits or Limits()
    if not unsafe and not sandbox_available():
        raise RuntimeError(
            "no sandbox: install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) so that student code "
            "runs isolated, or grade without isolation on your own risk with --unsafe (make grade UNSAFE=1)"
        )
    if references is None:
        sys.path.insert(0, str(TOOLS))
        import build_notebooks

        references = REFERENCES
        build_notebooks.build_grading(references)
    lessons = {p.name for p in references.iterdir() if (p / "reference.ipynb").is_file()}
    found, skipped = find_submissions(submissions, lessons)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gradebook.csv").unlink(missing_ok=True)  # a killed run leaves no old gradebook behind
    _write_atomic(out / "STATUS", f"incomplete: grading started {time.strftime('%Y-%m-%d %H:%M:%S')}, not finished\n")
    salt = secrets.token_hex(16)
    points = {les: json.loads((references / les / "questions.json").read_text()) for les in lessons}
    keys = {les: grader_hash(references, les) for les in lessons}
    results: list[Result] = []
    todo = []
    for student, lesson, nb in found:
        record = out / "results" / student / f"{lesson}.json"
        key = hashlib.sha256(nb.read_bytes() + keys[lesson].encode()).hexdigest()
        problem = notebook_problem(nb)
        if problem:
            results.append(Result(student, nb.name, lesson, status=f"not graded: {problem}"))
            continue
        try:
            kept = json.loads(record.read_text())
            if kept["key"] == key and kept["result"]["status"] == "graded":
                results.append(Result(**{**kept["result"], "file": nb.name}))
                continue
        except (OSError, ValueError, KeyError, TypeError):
            pass
        todo.append((student, lesson, nb, record, key))
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="grading", unit="notebook", disable=not progress)
    refs: dict[str, dict] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        needed = sorted({lesson for _, lesson, *_ in todo})
        for lesson, values in zip(
            needed, pool.map(lambda les: reference_values(les, references, salt, limits, unsafe), needed), strict=True
        ):
            refs[lesson] = values

        def task(job):
            student, lesson, nb, record, key = job
            events, ended = run_notebook(nb, lesson, salt, limits, unsafe)
            if any(e["event"] == "broken" for e in events):
                r = Result(student, nb.name, lesson, status="not graded: the notebook could not be read")
            else:
                r = score(lesson, points[lesson], events, refs[lesson], ended)
                r.student, r.file = student, nb.name
            record.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(record, json.dumps({"key": key, "result": asdict(r)}))
            bar.update()
            return r

        results += list(pool.map(task, todo))
    bar.close()
    results += skipped
    write_gradebook(results, points, out)
    return results


def write_gradebook(results: list[Result], points: dict[str, dict], out: Path) -> None:
    """``gradebook.csv``, ``STATUS`` and ``feedback/<student>.md``, each written atomically."""
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
            for q in maximum:
                lines += [f"### {q}: {r.points[q]:g} / {maximum[q]:g}", "", "```", r.feedback[q], "```", ""]
        _write_atomic(feedback / f"{student}.md", "\n".join(lines))
    _write_atomic(out / "gradebook.csv", rows.getvalue())
    regrade = [f"{r.student}/{r.file}: {r.status}" for r in results if r.status.startswith("needs regrading")]
    status = "incomplete: run `make grade` again to regrade\n" + "\n".join(regrade) if regrade else "complete"
    _write_atomic(out / "STATUS", status + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("submissions", type=Path, help="folder with <student>/<lesson>.ipynb")
    ap.add_argument("--out", type=Path, default=ROOT / "grades", help="where gradebook.csv, STATUS and feedback/ go")
    ap.add_argument(
        "--cpu-limit", type=int, default=Limits.cpu, help=f"CPU seconds per notebook (default {Limits.cpu})"
    )
    ap.add_argument("--wall-limit", type=int, default=0, help="wall-clock backstop, seconds (default 4 x CPU)")
    ap.add_argument(
        "--memory-limit",
        type=float,
        default=Limits.memory_gb,
        help=f"address space per notebook, GB (default {Limits.memory_gb:g})",
    )
    ap.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (default 1)")
    ap.add_argument("--unsafe", action="store_true", help="grade without a sandbox (trusted submissions only)")
    args = ap.parse_args(argv)
    limits = Limits(args.cpu_limit, args.wall_limit, args.memory_limit)
    try:
        results = grade_all(args.submissions, args.out, limits, args.jobs, unsafe=args.unsafe)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    status = (args.out / "STATUS").read_text().splitlines()[0]
    print(f"{len(results)} file(s): {args.out / 'gradebook.csv'} ({status}); feedback in {args.out / 'feedback'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
