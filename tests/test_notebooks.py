"""Notebook tests: solutions run, student notebooks match them, exercise tests can fail, otter grades.

Each solution notebook is executed once, in one kernel; the tests for the tests then run in that same
kernel, so the suite pays for every notebook only once.
"""

from __future__ import annotations

import copy
import json

import lesson_figures
import nbformat
import pytest
import stored_outputs
from conftest import LESSONS, ROOT
from notebook_harness import (
    ALWAYS_EQUAL,
    GRADE_HELPER,
    execute_all,
    grade,
    hidden_lines,
    kernel,
    leaked,
    load,
    questions,
    stubs,
)

from qlora_course import exercises, syllabus

pytestmark = pytest.mark.notebook


def test_student_notebooks_and_public_tests_match_the_solutions(assigned):
    import build_notebooks

    assert LESSONS, "no solution notebooks found"
    diffs = build_notebooks.differences(assigned)
    assert not diffs, f"committed files differ from what `make notebooks` generates: {diffs}"


def test_hidden_tests_stay_out_of_student_files(assigned):
    for lesson in LESSONS:
        autograder = assigned / "assign" / lesson / "autograder" / "tests"
        hidden = [p.stem for p in autograder.glob("*.py") if "'hidden': True" in p.read_text()]
        assert hidden, f"{lesson}: every lesson should have hidden tests"
        student_text = "\n".join(c.source for c in load(ROOT / "notebooks" / f"{lesson}.ipynb").cells)
        public_text = ""
        for p in (ROOT / "src/qlora_course/exercise_tests" / lesson).glob("*.py"):
            public = {}
            exec(p.read_text(), public)
            public_text += "\n".join(c["code"] for c in public["test"]["suites"][0]["cases"])
        for path in autograder.glob("*.py"):
            test = {}
            exec(path.read_text(), test)
            for case in test["test"]["suites"][0]["cases"]:
                if case["hidden"]:
                    assert hidden_lines(case["code"]), f"{lesson}/{path.stem}: an empty hidden test"
                    assert not leaked(case["code"], student_text) and not leaked(case["code"], public_text), (
                        f"{lesson}/{path.stem}: hidden test leaked"
                    )


@pytest.mark.parametrize("lesson", LESSONS)
def test_solution_runs_and_exercise_tests_discriminate(lesson, assigned, executed_dir, tmp_path, monkeypatch):
    """The student notebook with the answers filled in runs top to bottom (so nothing it needs hides in a
    test cell); each exercise's public tests pass on the solution and on every other right answer and
    fail on the untouched stub and on every plausible wrong answer (the learner's ``grader.check`` says
    what is wrong); its autograder tests (public and hidden) give the right answers full points and the
    cheats none. The hidden test over many salts is ``tests/test_exercises.py``'s."""
    solution = load(ROOT / "solutions" / f"{lesson}.ipynb")
    student = load(ROOT / "notebooks" / f"{lesson}.ipynb")
    answers = questions(solution)
    defs = exercises.exercises(lesson)
    stub_cells = stubs(student)
    assert list(answers) == [ex.name for ex in defs], f"{lesson}: the notebook's exercises differ from the definitions"
    assert len(stub_cells) == len(answers) >= 3, f"{lesson}: {len(answers)} questions, {len(stub_cells)} answer cells"
    tests_dir = assigned / "assign" / lesson / "autograder" / "tests"

    problems = []
    filled = copy.deepcopy(student)
    answer_cells = [c for c in filled.cells if "otter_answer_cell" in c.get("metadata", {}).get("tags", [])]
    for cell, code in zip(answer_cells, answers.values(), strict=True):
        cell.source = code
    report = tmp_path / "figures.jsonl"
    # the kernel inherits these: the notebook records its figures
    monkeypatch.setenv("QLORA_COURSE_REPORT", str(report))
    monkeypatch.setenv("QLORA_COURSE_LESSON", lesson[:2])
    with kernel(filled, tmp_path) as (run, client):
        execute_all(client, filled)
        _check_figures(lesson, report, problems)
        problems += stored_outputs.differences(json.loads(solution_text(lesson)), filled.cells)
        partial = executed_dir / f".{lesson}.ipynb.partial"
        nbformat.write(filled, partial)
        partial.replace(executed_dir / f"{lesson}.ipynb")  # for the site test (tests/test_site.py), whole
        _test_exercises(lesson, run, answers, stub_cells, tests_dir, problems)
    assert not problems, "\n".join(problems)


def solution_text(lesson: str) -> str:
    return (ROOT / syllabus.lesson(lesson).solution).read_text(encoding="utf-8")


def _check_figures(lesson: str, report, problems: list[str]) -> None:
    """This run reproduces the committed snapshot's figures, and the numbers the lecture notes quote agree with
    its figures, each within the figure's tolerance (another CPU sums in another order)."""
    rows = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    live = {r["key"]: r["value"] for r in rows}
    snap = lesson_figures.snapshot()
    missing = sorted(k for k, v in snap.items() if v["lesson"] == lesson[:2] and k not in live)
    if missing:
        problems.append(f"the snapshot has figures this run did not record: {missing}")
    problems += [f"fresh run: {d}" for d in lesson_figures.not_reproduced(rows, snap, lesson[:2])]
    tols = lesson_figures.tolerances({r["key"]: r for r in rows})
    limits = lesson_figures.bounds({r["key"]: r for r in rows})
    problems += [f"fresh run: {d}" for d in lesson_figures.disagreements(live, lesson[:2], tols, True, limits)]


def _test_exercises(lesson, run, answers, stub_cells, tests_dir, problems) -> None:
    """In the notebook's own kernel: each exercise's public tests fail on the stub and the wrong answers
    and pass on the other right answers; its whole autograder test (public and the generated hidden cell)
    passes on the solution and scores nothing for an object that claims to equal anything. Every answer's
    hidden test over many salts is tests/test_exercises.py's, which judges with the same function."""
    reproduces = syllabus.lesson(lesson).reproduces
    if reproduces:  # the filled-in student notebook gives the stored results (cells only the solution has
        # must not shift the random numbers its runs use)
        out = run(f"print('REPRODUCED', {reproduces})")
        gap = float(out.split("REPRODUCED", 1)[1])
        if gap > 0.03:
            problems.append(f"the student notebook's seed-0 runs differ from the stored results by {gap:.3f}")
    run(GRADE_HELPER)
    public_dir = ROOT / syllabus.lesson(lesson).exercise_tests
    for ex, stub in zip(exercises.exercises(lesson), stub_cells, strict=True):
        public_file, test_file = public_dir / f"{ex.name}.py", tests_dir / f"{ex.name}.py"
        # wrong: the learner's own check says so (the public tests fail)
        for label, code in [("stub", stub)] + [(f"wrong answer {i + 1}", w) for i, w in enumerate(ex.wrong)]:
            run(code)
            public, _, _, _ = grade(run, public_file)
            if public:
                problems.append(f"{ex.name}: the public tests pass on the {label}")
            if label == "stub":  # what the learner sees first: grader.check names the question and fails it
                out = run(f"_r = grader.check({ex.name!r})\nprint('PASSED', _r.passed_all)\nprint(_r)")
                if "PASSED False" not in out or ex.name not in out:
                    problems.append(f"{ex.name}: grader.check does not report the untouched stub as wrong:\n{out}")
        # right, written another way: the public tests pass (a printout or another dtype is no error)
        for i, code in enumerate(ex.alternatives):
            run(code)
            public, _, _, report = grade(run, public_file)
            if not public:
                problems.append(f"{ex.name}: the public tests fail on alternative {i + 1}:\n{report[-3000:]}")
        # the autograder's whole test: full points for the solution, none for an always-equal object
        run(ALWAYS_EQUAL.replace("{name}", ex.name))
        _, hidden, score, _ = grade(run, test_file)
        if hidden or score > 0:
            problems.append(f"{ex.name}: an always-equal object scores {score}")
        run(answers[ex.name])
        public, hidden, score, report = grade(run, test_file)
        if not (public and hidden):
            problems.append(f"{ex.name}: the tests fail on the solution:\n{report[-3000:]}")
