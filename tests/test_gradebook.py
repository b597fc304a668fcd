"""The gradebook's exports and a class graded in shards, with the sandboxed run stood in for (fast).

The sandbox itself is tests/test_grading.py's. Here a submission's "run" reports the values of the
answers it names, so scoring, shards, merging and the Canvas and Gradescope files are tested on a class
of any size in a second.
"""

from __future__ import annotations

import csv
import io

import nbformat
import pytest

from qlora_course import exercises
from qlora_grading import grade
from qlora_grading.gradebook import canvas_csv, gradescope_csv, merge

COURSE = "qlora_course.exercises"
LESSON = "03_double_quant"


@pytest.fixture
def fake_runs(monkeypatch):
    """A notebook's first cell says which exercises it answers right: ``# right: a b``."""
    course = exercises.course()
    reference = {ex.name: {"x": {"int": 1}} for ex in course.exercises(LESSON)}

    def run_notebook(nb, course_module, lesson, salt, limits, unsafe):
        right = nbformat.read(nb, as_version=4).cells[0].source.split(":")[1].split()
        events = []
        for ex in course.exercises(lesson):
            ok = ex.name in right
            events.append({"event": "public", "q": ex.name, "passed": ok, "error": None if ok else "AssertionError: x"})
            events.append({"event": "probe", "q": ex.name, "values": {"x": {"int": 1 if ok else 2}}, "used": []})
        return events + [{"event": "done"}], ""

    monkeypatch.setattr(grade, "sandbox_available", lambda: True)
    monkeypatch.setattr(grade, "run_notebook", run_notebook)
    monkeypatch.setattr(grade, "reference_values", lambda *a: reference)
    return course


def _class(root, answers: dict[str, list[str]]):
    for student, right in answers.items():
        (root / student).mkdir(parents=True)
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("# right: " + " ".join(right))]
        nbformat.write(nb, root / student / f"{LESSON}.ipynb")
    (root / "stray.txt").write_text("not a submission")


def _rows(path) -> list[dict]:
    return list(csv.DictReader(open(path, encoding="utf-8")))


def test_shards_merge_into_the_gradebook_of_one_run(tmp_path, fake_runs):
    names = [ex.name for ex in fake_runs.exercises(LESSON)]
    answers = {f"student{i:02d}": names[: i % (len(names) + 1)] for i in range(11)}
    _class(tmp_path / "subs", answers)
    grade.grade_all(tmp_path / "subs", tmp_path / "whole", COURSE, progress=False)
    shards = []
    for i in (1, 2, 3):
        shards.append(tmp_path / f"shard{i}")
        grade.grade_all(tmp_path / "subs", shards[-1], COURSE, progress=False, shard=(i, 3))
    graded = [{r["student"] for r in _rows(s / "gradebook.csv")} for s in shards]
    assert all(graded) and not set.intersection(*graded)  # each student in exactly one shard
    points = {les: fake_runs.points(les) for les in fake_runs.lessons}
    merge(shards, tmp_path / "merged", points, fake_runs.titles)
    for name in ("gradebook.csv", "canvas.csv", f"gradescope/{LESSON}.csv", "STATUS"):
        assert (tmp_path / "merged" / name).read_text() == (tmp_path / "whole" / name).read_text(), name
    with pytest.raises(ValueError, match="two shards"):
        merge([shards[0], shards[0]], tmp_path / "twice", points)
    (shards[2] / "STATUS").write_text("incomplete: killed\n")
    merge(shards, tmp_path / "partial", points)
    assert (tmp_path / "partial" / "STATUS").read_text().startswith("incomplete")


def test_canvas_and_gradescope_read_the_exports_as_their_formats_say(tmp_path, fake_runs):
    """Canvas's gradebook import: the five identity columns first (Student, ID, SIS User ID, SIS Login
    ID, Section), an optional "Points Possible" row, then one column per assignment; Gradescope's score
    import: an identifier column (SID) and Total Score. Read back, both give the gradebook's totals."""
    names = [ex.name for ex in fake_runs.exercises(LESSON)]
    _class(tmp_path / "subs", {"ann": names, "ben": names[:2], "cy": []})
    results = grade.grade_all(tmp_path / "subs", tmp_path / "out", COURSE, progress=False)
    points = {les: fake_runs.points(les) for les in fake_runs.lessons}
    totals = {}
    for r in _rows(tmp_path / "out" / "gradebook.csv"):
        if r["question"]:
            totals[r["student"]] = totals.get(r["student"], 0.0) + float(r["points"])
    rows = list(csv.reader(io.StringIO(canvas_csv(results, points, fake_runs.titles))))
    assert rows[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    column = rows[0].index(fake_runs.titles[LESSON])
    assert rows[1][0].strip() == "Points Possible" and float(rows[1][column]) == sum(points[LESSON].values())
    assert {row[3]: float(row[column]) for row in rows[2:]} == totals  # SIS Login ID: the folder's name
    scores = list(csv.DictReader(io.StringIO(gradescope_csv(results, points[LESSON], LESSON))))
    assert {row["SID"]: float(row["Total Score"]) for row in scores} == totals
    assert all(sum(float(row[q]) for q in points[LESSON]) == float(row["Total Score"]) for row in scores)
    other = next(les for les in points if les != LESSON)  # a lesson no one handed in: empty, not zero
    assert all(row[rows[0].index(fake_runs.titles[other])] == "" for row in rows[2:])


def test_a_shard_must_be_i_of_n():
    with pytest.raises(ValueError, match="1 <= i <= n"):
        grade.in_shard([], [], (3, 2))


def test_a_grading_run_executes_only_what_the_answers_and_checks_need():
    from qlora_grading.notebook import needed_cells

    cells = [
        "import torch\nfrom qlora_course import lora",  # the set-up: always
        "W = torch.ones(3)",  # read by the answer
        "model = load()\ntrainer = Trainer(model)\ntrainer.train()",  # only trains: skipped
        "def f(x, model=None):\n    return x + W",  # the answer (its parameter is its own)
        'grader.check("f")',
        "tok = load_tokenizer()",  # read by the public tests
        "tok.add_special_tokens({'pad_token': '<pad>'})",  # changes it: kept
        "%matplotlib inline",  # not Python: kept, to be safe
        "plot(model)",
    ]
    assert needed_cells(cells, {"f"}, {"tok"}) == [True, True, False, True, True, True, True, True, False]
    # a name the answer reads pulls in the cells that make it, and what those read
    assert needed_cells(["x = 1", "y = x + 1", "def g():\n    return y"], {"g"}, set()) == [True, True, True]


def test_a_checks_own_names_keep_no_cell():
    """A public test's own temporaries (``_name`` in its loop) are not the notebook's data: a training cell
    that binds a name of the same spelling is still skipped, while a name the check reads from the notebook
    keeps the cell that defines it."""
    from qlora_grading.notebook import check_reads, needed_cells

    check = "for _name, _p in answer().items():\n    assert _p > limit, _name\n"
    assert check_reads(check) == {"answer", "limit"}
    cells = [
        "import torch",
        "limit = 0",
        "for _name in range(3):\n    train_for_minutes()",
        "def answer():\n    return {'a': 1}",
    ]
    assert needed_cells(cells, {"answer"}, check_reads(check)) == [True, True, False, True]
