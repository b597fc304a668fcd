"""The classroom kit end to end: `make grade`'s grader on generated submissions, and the slide decks."""

from __future__ import annotations

import csv
import subprocess
import sys

import nbformat
import pytest
from conftest import ROOT
from notebook_harness import hidden_lines, leaked, load, questions

pytestmark = pytest.mark.notebook  # grading executes notebooks

LESSON = "03_double_quant"  # the quickest lesson to execute
TIMEOUT = 150  # seconds per notebook; the honest ones take well under a minute


PUBLIC_TEXT = "".join(p.read_text() for p in (ROOT / "src/qlora_course/exercise_tests" / LESSON).glob("*.py"))


def _student():
    return load(ROOT / "notebooks" / f"{LESSON}.ipynb")


def _answer_cells(nb):
    return [c for c in nb.cells if "otter_answer_cell" in c.get("metadata", {}).get("tags", [])]


def _answered(only=None):
    nb = _student()
    answers = sorted(questions(load(ROOT / "solutions" / f"{LESSON}.ipynb")).items())
    for cell, (q, code) in zip(_answer_cells(nb), answers, strict=True):
        if only is None or q in only:
            cell.source = code
    return nb


def _submissions(root):
    subs = {"alice": _answered(), "bob": _student(), "carol": _answered(only={"q1"})}
    dave = _answered()  # q2's answer forges a results file, then raises
    _answer_cells(dave)[1].source = (
        "import json, pathlib\n"
        "names = [f'q{i}' for i in range(1, 6)]\n"
        "fake = json.dumps({'tests': [{'name': q, 'score': 99, 'max_score': 99} for q in names]})\n"
        "for d in (pathlib.Path.cwd(), pathlib.Path.cwd() / 'out'):\n"
        "    d.mkdir(exist_ok=True); (d / 'results.json').write_text(fake)\n"
        "raise RuntimeError('a bug in my answer')\n"
    )
    subs["dave"] = dave
    ada = _answered()  # loops forever after her first answer (sleeping, so the others keep the CPU)
    cells = ada.cells
    cells.insert(
        cells.index(_answer_cells(ada)[0]) + 1,
        nbformat.v4.new_code_cell("import time\nwhile True:\n    time.sleep(0.5)\n"),
    )
    subs["ada"] = ada
    frank = _answered()  # deleted the cell of the last question
    frank.cells.remove(_answer_cells(frank)[-1])
    subs["frank"] = frank
    for name, nb in subs.items():
        (root / name).mkdir(parents=True)
        nbformat.write(nb, root / name / f"{LESSON}.ipynb")
    (root / "alice" / "notes.txt").write_text("not a submission")
    return subs


@pytest.fixture(scope="module")
def graded(assigned, tmp_path_factory):
    import grade

    root = tmp_path_factory.mktemp("submissions")
    _submissions(root)
    out = tmp_path_factory.mktemp("grades")
    results = grade.grade_all(root, out, timeout=TIMEOUT, jobs=2, assign_dir=assigned / "assign", progress=False)
    rows = list(csv.DictReader(open(out / "gradebook.csv", encoding="utf-8")))
    return results, rows, out


def _points(rows, student):
    return {r["question"]: float(r["points"]) for r in rows if r["student"] == student}


def test_gradebook_has_one_row_per_student_and_question(graded):
    _, rows, _ = graded
    assert list(rows[0]) == ["student", "lesson", "question", "points", "max_points"]
    assert len(rows) == 6 * 5 and {r["lesson"] for r in rows} == {LESSON}
    maximum = {r["question"]: float(r["max_points"]) for r in rows}
    assert maximum == {"q1": 1, "q2": 2, "q3": 2, "q4": 1, "q5": 2}


def test_grades_of_each_kind_of_submission(graded):
    _, rows, _ = graded
    full = {"q1": 1, "q2": 2, "q3": 2, "q4": 1, "q5": 2}
    none = dict.fromkeys(full, 0)
    assert _points(rows, "alice") == full  # correct
    assert _points(rows, "bob") == none  # untouched stub
    assert _points(rows, "carol") == {**none, "q1": 1}  # partly done
    assert _points(rows, "dave") == {**full, "q2": 0}  # raises (and forged a results file)
    assert _points(rows, "ada") == none  # endless loop, stopped
    assert _points(rows, "frank") == {**full, "q5": 0}  # deleted a cell


def test_feedback_per_student(graded):
    results, _, out = graded
    files = {p.stem for p in (out / "feedback").glob("*.md")}
    assert files == {"ada", "alice", "bob", "carol", "dave", "frank"}
    ada = (out / "feedback" / "ada.md").read_text()
    assert f"stopped after {TIMEOUT}" in ada
    carol = (out / "feedback" / "carol.md").read_text()
    assert "1 / 8 points" in carol and "q2: 0 / 2" in carol
    assert "All test cases passed" in (out / "feedback" / "alice.md").read_text()


def test_feedback_never_shows_hidden_tests(graded, assigned):
    _, _, out = graded
    cases = []
    for path in sorted((assigned / "assign" / LESSON / "autograder" / "tests").glob("q*.py")):
        test = {}
        exec(path.read_text(), test)
        cases += [c["code"] for c in test["test"]["suites"][0]["cases"] if c["hidden"]]
    assert cases
    for feedback in (out / "feedback").glob("*.md"):
        text = feedback.read_text()
        assert not [c for c in cases if leaked(c, text)], feedback.name
        # no single distinctive hidden statement either (beyond what the public tests also say)
        assert not [
            line
            for c in cases
            for line in hidden_lines(c)
            if line in text and len(line) > 40 and line not in PUBLIC_TEXT
        ], feedback.name


def test_grader_reports_bad_input(tmp_path, assigned):
    import grade

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no submissions"):
        grade.grade_all(tmp_path / "empty", tmp_path / "out", assign_dir=assigned / "assign", progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        grade.grade_all(tmp_path / "nowhere", tmp_path / "out", assign_dir=assigned / "assign", progress=False)
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "grade.py"), str(tmp_path / "nowhere")], capture_output=True, text=True
    )
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_every_lesson_builds_as_a_slide_deck(tmp_path):
    import build_slides

    decks = build_slides.build_all(tmp_path)
    notes = sorted((ROOT / "lessons").glob("*.md"))
    assert [d.stem for d in decks] == [n.stem for n in notes] and len(notes) >= 5
    for deck, note in zip(decks, notes, strict=True):
        html = deck.read_text(encoding="utf-8")
        sections = sum(1 for line in note.read_text(encoding="utf-8").splitlines() if line.startswith("## "))
        assert "reveal.js" in html and html.count("<section") >= sections + 1, deck.name
        assert "<table" in html or "|" not in note.read_text(encoding="utf-8"), f"{deck.name}: tables lost"
