"""`make grade` against an adversarial class (lesson 3): honest, other-correct, stub, partial, raising,
``os._exit``, looping and broken submissions, and attackers graded before their victims. Every test
asserts the honest outcome. The notebooks are lesson 3's setup cell, answer cells and check cells only
(the lesson's demonstrations would only cost time), and so is the reference the grader compares with."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
import time

import nbformat
import psutil
import pytest
from conftest import ROOT
from notebook_harness import hidden_lines, load, questions
from wrong_answers import ALTERNATIVES, WRONG

pytestmark = pytest.mark.notebook  # grading executes notebooks

LESSON = "03_double_quant"
FULL = {"q1": 1, "q2": 2, "q3": 2, "q4": 1, "q5": 2}
NONE = dict.fromkeys(FULL, 0)
LIMITS = dict(cpu=60, wall=400, memory_gb=8.0)  # the setup cell and five answers need a fraction of this
MARK = "qlora-grading-attack"  # in every process an attacker starts, to find leftovers


def _solution():
    return load(ROOT / "solutions" / f"{LESSON}.ipynb")


def _setup_cell() -> str:
    student = load(ROOT / "notebooks" / f"{LESSON}.ipynb")
    return next(c.source for c in student.cells if c.cell_type == "code")


def notebook(answers: dict[str, str], extra: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """A lesson-3 submission: the setup cell, then per question its answer cell (the stub when not in
    ``answers``), its check cell and the code in ``extra[q]`` (``extra["start"]`` before the first)."""
    extra = extra or {}
    student = load(ROOT / "notebooks" / f"{LESSON}.ipynb")
    stubs = [c.source for c in student.cells if "otter_answer_cell" in c.get("metadata", {}).get("tags", [])]
    cells = [_setup_cell()] + ([extra["start"]] if "start" in extra else [])
    for q, stub in zip(FULL, stubs, strict=True):
        cells += [answers.get(q, stub), f'grader.check("{q}")'] + ([extra[q]] if q in extra else [])
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells if c is not None]
    return nb


def _solved(**replace):
    return {**questions(_solution()), **replace}


def _references(tmp_path_factory):
    """A lesson-3 reference like build/grading's, cut to the setup, solution and check cells."""
    import build_notebooks

    folder = tmp_path_factory.mktemp("references")
    (folder / LESSON).mkdir()
    _, points = build_notebooks.grading_reference(ROOT / "solutions" / f"{LESSON}.ipynb")
    nbformat.write(notebook(_solved()), folder / LESSON / "reference.ipynb")
    (folder / LESSON / "questions.json").write_text(json.dumps(points))
    return folder


ESCAPE = f"""
import glob, os, pathlib, subprocess, sys
# look for the grader's folders: other submissions, the gradebook, the course, the build
found = []
for pid in os.listdir('/proc'):
    try:
        found.append(open(f'/proc/{{pid}}/cmdline', 'rb').read())
    except Exception:
        pass
for pattern in ('/tmp/**/*.ipynb', '/work/**/gradebook.csv', '/**/qlora-submission-*', '/**/build/grading/**'):
    for path in glob.glob(pattern, recursive=True)[:50]:
        try:
            pathlib.Path(path).write_text('{{}}')
        except Exception:
            pass
for path in glob.glob('/**/qlora_course/*.py', recursive=True)[:50]:
    try:
        with open(path, 'a') as f:
            f.write('\\nimport builtins; builtins.__import__ = None\\n')
    except Exception:
        pass
# a process meant to outlive grading
subprocess.Popen([sys.executable, '-c', 'import time, sys; sys.argv.append("{MARK}"); time.sleep(600)'],
                 start_new_session=True)
if os.fork() == 0:
    os.setsid()
    import time
    time.sleep(600)
"""

LEAK = """
import glob, os
secrets = []
for root in ('/grader', '/submission', '/work', '/tmp', '/root'):
  for path in glob.glob(root + '/**', recursive=True):
    if 'reference' in path or 'autograder' in path or 'HIDDEN' in path:
      secrets.append(path)
seen = []
def centre_and_scale(absmax, blocksize=256):
    seen.append(absmax)
    raise AssertionError('offset is the mean of all constants ' + repr(absmax.tolist()[:5]) + repr(secrets))
"""

PATCH = """
import doctest, json, os, sys
doctest.DocTestRunner.run = lambda self, *a, **k: doctest.TestResults(0, 0)
import otter.test_files as tf
tf.OKTestFile.run = lambda self, *a, **k: None
class AlwaysEqual:
    def __eq__(self, other): return True
    def __bool__(self): return True
    def __getattr__(self, name): return self
forged = {"q1": {"(128,)": 0.25}, "q2": {"map": {"tensor": "torch.float32", "shape": [256], "data": ""}}}
for fd in range(1, 30):
    for q in ("q1", "q2", "q3", "q4", "q5"):
        for event in ({"event": "public", "q": q, "passed": True, "error": None},
                      {"event": "probe", "q": q, "values": forged.get(q, {})}):
            try:
                os.write(fd, (json.dumps(event) + "\\n").encode())
            except OSError:
                pass
"""


def _submissions(root):
    """The class, on disk; returns the submissions whose source is the solution (for the leak test)."""
    wrong = {q: answers[0] for q, answers in WRONG[LESSON].items()}
    alt = {q: answers[0] for q, answers in ALTERNATIVES[LESSON].items() if answers}
    class_ = {
        "alice": notebook(_solved()),  # honest
        "alt": notebook(_solved(**alt)),  # other right answers
        "bob": notebook({}),  # the untouched stub
        "carol": notebook({"q1": _solved()["q1"]}),  # partly done
        "dave": notebook(_solved(q2="def dynamic_map_signed():\n    raise RuntimeError('a bug in my answer')\n")),
        "erin": notebook(_solved(), {"q2": "import os\nos._exit(0)\n"}),  # leaves after q2's check
        "ada": notebook(_solved(), {"q1": "while True:\n    pass\n"}),  # an endless loop after q1
        "frank": notebook(_solved(q5="")),  # deleted the last answer
        "mallory": notebook(wrong, {"start": ESCAPE}),  # hunts the grader's files, leaves processes
        "mallory2": notebook(_solved(), {"start": LEAK}),  # reads what it can, puts it in its errors
        "mallory3": notebook(wrong, {"start": PATCH}),  # patches the test runners, forges results
        "yan": notebook({}),  # victims, graded after the attackers
        "zoe": notebook(_solved()),
    }
    for name, nb in class_.items():
        (root / name).mkdir(parents=True)
        nbformat.write(nb, root / name / f"{LESSON}.ipynb")
    (root / "ivan").mkdir()
    nbformat.write(notebook(_solved()), root / "ivan" / "03_Double_Quant (1).ipynb")  # a browser's copy
    (root / "gina").mkdir()
    (root / "gina" / f"{LESSON}.ipynb").write_text("")
    (root / "gina" / "notes.txt").write_text("not a submission")
    (root / "hal").mkdir()
    (root / "hal" / f"{LESSON}.ipynb").write_text("import torch\nprint('my answers')\n")
    (root / "stray.ipynb").write_text("{}")


def _source_hash() -> str:
    h = hashlib.sha256()
    for path in sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "tools").glob("grade*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    import grade

    references = _references(tmp_path_factory)
    root = tmp_path_factory.mktemp("submissions")
    _submissions(root)
    out = tmp_path_factory.mktemp("grades")
    before = _source_hash()
    start = time.monotonic()
    results = grade.grade_all(root, out, grade.Limits(**LIMITS), jobs=2, references=references, progress=False)
    seconds = time.monotonic() - start
    time.sleep(2)  # give anything left behind a chance to act
    rows = list(csv.DictReader(open(out / "gradebook.csv", encoding="utf-8")))
    return dict(results=results, rows=rows, out=out, root=root, references=references, before=before, s=seconds)


def _points(rows, student):
    return {r["question"]: float(r["points"]) for r in rows if r["student"] == student and r["question"]}


def test_honest_outcomes(graded):
    rows = graded["rows"]
    assert _points(rows, "alice") == FULL and _points(rows, "zoe") == FULL
    assert _points(rows, "alt") == FULL  # other right answers score
    assert _points(rows, "ivan") == FULL  # misnamed "03_Double_Quant (1).ipynb": matched
    assert _points(rows, "bob") == NONE and _points(rows, "yan") == NONE
    assert _points(rows, "carol") == {**NONE, "q1": 1}
    assert _points(rows, "dave") == {**FULL, "q2": 0}  # q2 raises: the other answers keep their points
    assert _points(rows, "erin") == {**NONE, "q1": 1, "q2": 2}  # os._exit after q2: q1 and q2 kept
    assert _points(rows, "ada") == {**NONE, "q1": 1}  # loops after q1: stopped by the CPU limit, q1 kept
    assert _points(rows, "frank") == {**FULL, "q5": 0}
    assert {r["status"] for r in rows if r["question"]} == {"graded"}


def test_attacks_score_nothing_and_harm_nobody(graded):
    rows = graded["rows"]
    assert _points(rows, "mallory") == NONE  # wrong answers, whatever it wrote
    assert _points(rows, "mallory3") == NONE  # patched runners and forged results change nothing
    assert _points(rows, "mallory2") == {**FULL, "q3": 0}  # its own q3 raises
    assert _source_hash() == graded["before"], "the course or the grader was modified"
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if MARK in " ".join(p.info["cmdline"] or [])]
    assert not leftovers, "a submission's process outlived its grading"
    again = list(csv.DictReader(open(graded["out"] / "gradebook.csv", encoding="utf-8")))
    assert again == rows and not [r for r in rows if r["student"] == "quinn"]


def test_every_file_has_a_row(graded):
    rows = graded["rows"]
    status = {(r["student"], r["lesson"]): r["status"] for r in rows if not r["question"]}
    assert status[("gina", LESSON)].startswith("not graded: the file is empty")
    assert "not a notebook" in status[("gina", "notes.txt")]
    assert status[("hal", LESSON)].startswith("not graded: not a Jupyter notebook (not JSON")
    assert "not in a student's folder" in status[("", "stray.ipynb")]
    assert not [s for s in status.values() if "/" in s.split("(")[0] or str(ROOT) in s]  # no paths
    assert (graded["out"] / "STATUS").read_text().startswith("complete")


def test_feedback_shows_no_hidden_inputs_or_tests(graded):
    out = graded["out"]
    hidden = [
        line
        for cell in _solution().cells
        if cell.source.startswith("# HIDDEN")
        for line in hidden_lines(">>> " + "\n>>> ".join(cell.source.splitlines()))
        if len(line) > 30
    ]
    for feedback in (out / "feedback").glob("*.md"):
        text = feedback.read_text()
        assert not [line for line in hidden if line in text], feedback.name
        assert "reference" not in text and "[0." not in text and str(ROOT) not in text, feedback.name
    mallory2 = (out / "feedback" / "mallory2.md").read_text()
    assert "offset is the mean of all constants" in mallory2  # the public message, its fixed part only
    alice = (out / "feedback" / "alice.md").read_text()
    assert "8 / 8 points" in alice and "hidden tests: passed" in alice


def test_a_later_run_grades_victims_honestly_and_resumes(graded, tmp_path):
    """After the attacks: a new run on the same folder reuses every result; victims in a new class
    are graded from scratch, honestly."""
    import grade

    limits = grade.Limits(**LIMITS)
    start = time.monotonic()
    grade.grade_all(graded["root"], graded["out"], limits, jobs=2, references=graded["references"], progress=False)
    assert time.monotonic() - start < 30  # nothing ran again
    assert list(csv.DictReader(open(graded["out"] / "gradebook.csv", encoding="utf-8"))) == graded["rows"]
    root = tmp_path / "later"
    for name in ("alice", "bob"):
        (root / name).mkdir(parents=True)
        (root / name / f"{LESSON}.ipynb").write_bytes((graded["root"] / name / f"{LESSON}.ipynb").read_bytes())
    grade.grade_all(root, tmp_path / "out", limits, jobs=2, references=graded["references"], progress=False)
    rows = list(csv.DictReader(open(tmp_path / "out" / "gradebook.csv", encoding="utf-8")))
    assert _points(rows, "alice") == FULL and _points(rows, "bob") == NONE


def test_wall_clock_backstop_tells_waiting_from_starved(tmp_path):
    import grade

    limits = grade.Limits(cpu=300, wall=20)
    for name, code, ended in (
        ("sleeps", "import time\nwhile True:\n    time.sleep(1)\n", "stopped: it waited"),
        ("computes", "while True:\n    pass\n", "needs regrading"),
    ):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(code)]
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
        _, how = grade.run_notebook(tmp_path / f"{name}.ipynb", LESSON, "salt", limits, unsafe=False)
        assert how.startswith(ended), (name, how)


def test_a_killed_run_leaves_no_gradebook_looking_current(tmp_path, graded):
    out = tmp_path / "grades"
    out.mkdir()
    (out / "gradebook.csv").write_text("student,lesson,question,points,max_points,status\nold,row,q1,1,1,graded\n")
    root = tmp_path / "subs" / "alice"
    root.mkdir(parents=True)
    (root / f"{LESSON}.ipynb").write_bytes((graded["root"] / "alice" / f"{LESSON}.ipynb").read_bytes())
    cmd = [sys.executable, str(ROOT / "tools" / "grade.py"), str(tmp_path / "subs"), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "STATUS").exists():
        time.sleep(0.2)
    time.sleep(1)
    for p in psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]:
        p.kill()
    proc.wait()
    assert not (out / "gradebook.csv").exists()
    assert (out / "STATUS").read_text().startswith("incomplete")


def test_grader_refuses_without_a_sandbox(tmp_path, monkeypatch):
    import grade

    monkeypatch.setattr(grade, "sandbox_available", lambda: False)
    (tmp_path / "subs").mkdir()
    with pytest.raises(RuntimeError, match="bubblewrap.*--unsafe"):
        grade.grade_all(tmp_path / "subs", tmp_path / "out", references=tmp_path, progress=False)


def test_misnamed_files_are_matched_when_unambiguous():
    import grade

    lessons = {LESSON, "02_nf4"}
    for name in (
        f"{LESSON}.ipynb",
        "03_Double_Quant (1).ipynb",
        "03_double_quant-Copy1.ipynb",
        "03_DOUBLE_QUANT copy.ipynb",
    ):
        assert grade.lesson_of(name, lessons) == LESSON, name
    for name in ("03_double_quant.py", "lesson3.ipynb", "03_double_quant_v2.ipynb"):
        assert grade.lesson_of(name, lessons) is None, name


def test_every_question_has_a_probe():
    import build_notebooks
    from grade_probes import PROBES

    for solution in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")):
        _, points = build_notebooks.grading_reference(solution)
        assert set(PROBES[solution.stem]) == set(points), solution.stem


def test_results_compare_as_data():
    import torch
    from grade_probes import encode, same

    t = torch.tensor([1.0, 2.0])
    assert same(encode(t + 1e-8), encode(t)) and not same(encode(t.double()), encode(t))
    assert not same(encode(object()), encode(t)) and not same({"tensor": "torch.float32", "data": "!"}, encode(t))
    assert same(encode(0.5), encode(torch.tensor(0.5))) and not same(encode(3.0), encode(3))
    assert same(encode({"a": [1, "x"]}), encode({"a": [1, "x"]})) and not same(encode(True), encode(1))
