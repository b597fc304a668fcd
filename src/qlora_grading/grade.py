"""Grading a folder of submissions: each notebook in a sandbox, scored here, outside it.

1. Each submission runs in the sandbox (:mod:`qlora_grading.sandbox`); at each ``grader.check`` the
   runner (:mod:`qlora_grading.runner`) writes the public tests' outcome and the probe's values out as data.
2. The reference answers are probed with the same secret salt, in the same sandbox, once per lesson.
3. Here each exercise scores its points when its public tests passed, every probed value matched the
   reference's (:func:`qlora_grading.wire.compare`, within the exercise's tolerance) and the answer
   used no finished object — neither while probed nor by name in the cell that defines it.

Results are kept per submission under ``out/results/`` with a key over the notebook, the grader's code
and the course's definitions, so a rerun grades only what is new or was not finished.
"""

from __future__ import annotations

import ast
import hashlib
import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from .course import Course, load_course
from .exercise import Exercise
from .gradebook import Result, write_atomic, write_gradebook
from .notebook import answer_cells, code_cells
from .sandbox import Limits, run_notebook, run_references, sandbox_available
from .submissions import find_submissions, notebook_problem
from .wire import differences

__all__ = ["grade_all", "score", "grader_key", "named_finished"]

PUBLIC_EXCEPTIONS = {"AssertionError", "TypeError", "ValueError", "NameError", "AttributeError", "IndexError"}


def _last(events: list[dict], kind: str) -> dict[str, dict]:
    """The last event of ``kind`` per exercise."""
    return {e["q"]: e for e in events if e.get("event") == kind and isinstance(e.get("q"), str)}


def public_messages(course: Course, lesson: str, name: str) -> list[str]:
    """The fixed text of the public tests' assertion messages (up to their first ``{field}``): the only
    part of a learner's error text that feedback may show."""
    out = []
    for node in ast.walk(ast.parse(course.public_tests(lesson, name))):
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


def _public_feedback(messages: list[str], event: dict | None) -> str:
    if event is None:
        return "public tests: not reached"
    if event.get("passed") is True:
        return "public tests: passed"
    error = str(event.get("error") or "")
    kind, _, message = error.partition(": ")
    for fixed in messages:
        if message.startswith(fixed):
            return f"public tests: failed: {fixed.strip()}..."
    return f"public tests: failed ({kind if kind in PUBLIC_EXCEPTIONS else 'an error'})"


def named_finished(exercise: Exercise, cells: list[str]) -> list[str]:
    """The finished objects whose names the cells defining ``exercise``'s answer mention (read here, outside
    the sandbox: whatever the notebook does to the runner, this cannot be switched off)."""
    import torch

    # a name that is also one of torch's building blocks (PEFT's Linear, say) says nothing by itself;
    # the tracer inside the sandbox catches the use of such an object
    names = {n for n in exercise.finished_names if not hasattr(torch.nn, n) and not hasattr(torch, n)}
    found = set()
    for cell in answer_cells(cells, exercise.name):
        try:
            tree = ast.parse(cell)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            word = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
            if word in names:
                found.add(word)
    return sorted(found)


def score(
    course: Course, lesson: str, events: list[dict], reference: dict[str, dict], ended: str, cells: list[str]
) -> Result:
    """Points and feedback from a submission's events, compared with the reference's probe values.

    An exercise scores when its results equal the reference's and it used no finished object; without
    parts, its public tests must have passed too (all or nothing); with parts, each part whose results
    are all right scores its points."""
    result = Result("", "", lesson)
    public, probes = _last(events, "public"), _last(events, "probe")
    for ex in course.exercises(lesson):
        q = ex.name
        lines = [_public_feedback(public_messages(course, lesson, q), public.get(q))]
        got = probes.get(q)
        used = named_finished(ex, cells)
        earned = 0.0
        if got is None:
            lines.append("hidden tests: not reached")
        elif not isinstance(got.get("values"), dict):
            err = str(got.get("error", "an error"))[:60]
            lines.append(f"hidden tests: the answer raised {err if err.isidentifier() else 'an error'}")
        else:
            used += [u for u in got.get("used", []) if isinstance(u, str)] if isinstance(got.get("used"), list) else []
            wrong = differences(got["values"], reference[q], ex.tolerance)
            parts = ex.part_points(list(reference[q]), wrong)
            if ex.parts:
                for label, points in parts.items():
                    n = sum(1 for k in reference[q] if ex.part_of(k) == label)
                    bad = sum(1 for k in wrong if ex.part_of(k) == label)
                    verdict = "passed" if not bad else f"{bad} of {n} results differ"
                    lines.append(f"hidden tests, {label}: {verdict} ({points:g} / {ex.parts[label][0]:g})")
                earned = sum(parts.values())
            else:
                lines.append(
                    f"hidden tests: {len(wrong)} of {len(reference[q])} results differ"
                    if wrong
                    else "hidden tests: passed"
                )
                earned = sum(parts.values()) if public.get(q, {}).get("passed") is True else 0.0
        if used:
            lines.append(f"not your own work: it uses {', '.join(sorted(set(used)))[:200]}, which solves the exercise")
            earned = 0.0
        result.points[q] = earned
        result.feedback[q] = "\n".join(lines)
    if ended:
        result.note = ended
        if ended.startswith("needs regrading"):
            result.status = ended
    return result


def reference_values(course_module: str, lesson: str, salt: str, limits: Limits, unsafe: bool) -> dict[str, dict]:
    """The reference answers' probe values for this run's hidden inputs."""
    events, ended = run_references(course_module, lesson, salt, limits, unsafe)
    probes = _last(events, "probe")
    names = [ex.name for ex in load_course(course_module).exercises(lesson)]
    bad = {q: probes.get(q, {}).get("error", "missing") for q in names if "values" not in probes.get(q, {})}
    if bad or ended:
        raise RuntimeError(f"the reference answers of {lesson} do not probe ({ended or 'failed'}): {bad}")
    return {q: probes[q]["values"] for q in names}


def grader_key(course: Course) -> str:
    """A hash of the grader's own code and the course's definitions: a result made under another key is
    not reused."""
    import qlora_grading

    h = hashlib.sha256()
    for path in sorted(Path(qlora_grading.__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    for path in sorted(course.sources):
        h.update(Path(path).read_bytes())
    return h.hexdigest()


def grade_all(
    submissions: Path,
    out: Path,
    course_module: str,
    limits: Limits | None = None,
    jobs: int = 1,
    unsafe: bool = False,
    progress: bool = True,
    shard: tuple[int, int] = (1, 1),
) -> list[Result]:
    """Grade every submission under ``submissions``; write ``out/gradebook.csv``, ``STATUS``, feedback.

    ``shard=(i, n)`` grades only the i-th of n shards (students in sorted order, every n-th from the i-th:
    a Slurm array or GNU parallel runs the shards on several machines, each into its own ``out``);
    :func:`qlora_grading.gradebook.merge` then makes one gradebook of the shards' ``out`` folders."""
    limits = limits or Limits()
    if not unsafe and not sandbox_available():
        raise RuntimeError(
            "no sandbox: install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) so that student code "
            "runs isolated, or grade without isolation on your own risk with --unsafe (make grade UNSAFE=1)"
        )
    course = load_course(course_module)
    found, skipped = find_submissions(submissions, set(course.lessons))
    found, skipped = in_shard(found, skipped, shard)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gradebook.csv").unlink(missing_ok=True)  # a killed run leaves no old gradebook behind
    write_atomic(out / "STATUS", f"incomplete: grading started {time.strftime('%Y-%m-%d %H:%M:%S')}, not finished\n")
    salt = secrets.token_hex(16)
    points = {lesson: course.points(lesson) for lesson in course.lessons}
    key = grader_key(course)
    results: list[Result] = []
    todo = []
    for student, lesson, nb in found:
        record = out / "results" / student / f"{lesson}.json"
        nb_key = hashlib.sha256(nb.read_bytes() + key.encode()).hexdigest()
        problem = notebook_problem(nb)
        if problem:
            results.append(Result(student, nb.name, lesson, status=f"not graded: {problem}"))
            continue
        try:
            kept = json.loads(record.read_text())
            if kept["key"] == nb_key and kept["result"]["status"] == "graded":
                results.append(Result(**{**kept["result"], "file": nb.name}))
                continue
        except (OSError, ValueError, KeyError, TypeError):
            pass
        todo.append((student, lesson, nb, record, nb_key))
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="grading", unit="notebook", disable=not progress)
    refs: dict[str, dict] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        needed = sorted({lesson for _, lesson, *_ in todo})
        probe = lambda les: reference_values(course_module, les, salt, limits, unsafe)  # noqa: E731
        refs.update(zip(needed, pool.map(probe, needed), strict=True))

        def task(job):
            student, lesson, nb, record, nb_key = job
            events, ended = run_notebook(nb, course_module, lesson, salt, limits, unsafe)
            if any(e["event"] == "broken" for e in events):
                r = Result(student, nb.name, lesson, status="not graded: the notebook could not be read")
            else:
                r = score(course, lesson, events, refs[lesson], ended, code_cells(nb))
                r.student, r.file = student, nb.name
            record.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(record, json.dumps({"key": nb_key, "result": asdict(r)}))
            bar.update()
            return r

        results += list(pool.map(task, todo))
    bar.close()
    results += skipped
    write_gradebook(results, points, out, course.titles)
    write_atomic(out / "results.json", json.dumps([asdict(r) for r in results]))  # what merge() reads
    return results


def in_shard(found: list, skipped: list[Result], shard: tuple[int, int]) -> tuple[list, list[Result]]:
    """The submissions and not-graded rows of the ``shard = (i, n)``-th shard of the students (the
    students sorted by name, every n-th from the i-th; files outside any student's folder go to shard 1)."""
    i, n = shard
    if not (isinstance(i, int) and isinstance(n, int) and 1 <= i <= n):
        raise ValueError(f"shard must be i of n with 1 <= i <= n, got {i} of {n}")
    students = sorted({s for s, *_ in found} | {r.student for r in skipped if r.student})
    mine = set(students[i - 1 :: n])
    return [f for f in found if f[0] in mine], [r for r in skipped if r.student in mine or (not r.student and i == 1)]
