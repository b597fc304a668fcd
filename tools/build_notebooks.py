"""Build the student notebooks and public tests from the solution notebooks (``make notebooks``).

For every lesson of ``qlora_course.syllabus`` (the solution notebook is the single source):

1. in the solution notebook and README.md, rewrite the course's repository location (Colab badges, the
   setup cell's ``COURSE_REPO`` line) from ``[tool.qlora-course]`` in ``pyproject.toml``, and each
   exercise's number and points (its ``# BEGIN QUESTION`` cell, its "**Exercise N (P points)**" heading)
   from the lesson's exercise definitions (``qlora_course.exercises``), and the exercises listed in the
   instructor guide's meeting table: nothing is numbered or listed by hand;
2. give otter a copy in which each exercise's public tests also check that the answer is the learner's
   own work and ignore what it prints, and which has the hidden test cell the definition implies
   (:func:`qlora_course.exercises.hidden_check`); run ``otter assign`` on it into
   ``build/assign/NN_topic/`` (student notebook, autograder with the hidden tests);
3. copy the student notebook, outputs cleared, to ``notebooks/`` and its *public* tests to
   ``src/qlora_course/exercise_tests/NN_topic/``.

``--check`` writes nothing in the repository: it builds into a temporary folder and exits 1, listing
the files, if the committed notebooks or public tests differ from what the build gives.
"""

from __future__ import annotations

import argparse
import copy
import filecmp
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tokenize
import tomllib
from pathlib import Path

from qlora_course import exercises, syllabus

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PUBLIC_TESTS = ROOT / "src" / "qlora_course" / "exercise_tests"
OTTER = Path(sys.executable).with_name("otter")

BADGE_RE = re.compile(
    r"https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/[\w./-]+?/(notebooks|solutions)/"
)
CLONE_RE = re.compile(r"git clone https://github\.com/[\w.-]+/[\w.-]+?\.git && cd [\w.-]+")
REPO_LINE_RE = re.compile(r'COURSE_REPO, COURSE_REF = "[^"]*", "[^"]*"')
HEADING_RE = re.compile(r"\*\*Exercise \d+ \(\d+(?:\.\d+)? points?\)")
GUIDE = ROOT / "lessons" / "instructor-guide.md"
GUIDE_EXERCISES_RE = re.compile(r"\| (?:`\w+` [\d.]+(?:, )?)+: [\d.]+ \|")
TEST_CONFIG_END = "# END TEST CONFIG\n"


def course_settings() -> tuple[str, str]:
    """``(repository, branch)`` from ``[tool.qlora-course]`` in pyproject.toml."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["qlora-course"]
    return cfg["repository"], cfg["branch"]


def rewrite_location(text: str, repo: str, branch: str) -> str:
    """Point every Colab badge, ``git clone`` line and ``COURSE_REPO`` line in ``text`` at ``repo``@``branch``."""
    text = BADGE_RE.sub(lambda m: f"https://colab.research.google.com/github/{repo}/blob/{branch}/{m.group(1)}/", text)
    text = CLONE_RE.sub(f"git clone https://github.com/{repo}.git && cd {repo.split('/')[-1]}", text)
    return REPO_LINE_RE.sub(f'COURSE_REPO, COURSE_REF = "{repo}", "{branch}"', text)


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _set_source(cell: dict, text: str) -> None:
    cell["source"] = text.splitlines(keepends=True)


def _points(p: float) -> str:
    return f"{p:g} point" + ("" if p == 1 else "s")


def exercise_blocks(nb: dict) -> list[tuple[int, int, str]]:
    """``[(index of the # BEGIN QUESTION cell, index of its # END QUESTION cell, name)]`` in order."""
    out, start, name = [], None, None
    for i, cell in enumerate(nb["cells"]):
        src = _source(cell)
        if cell["cell_type"] == "raw" and src.startswith("# BEGIN QUESTION"):
            match = re.search(r"name:\s*(\w+)", src)
            if not match:
                raise SystemExit(f"cell {i}: a # BEGIN QUESTION cell needs 'name: <the answer's name>'")
            start, name = i, match.group(1)
        elif cell["cell_type"] == "raw" and src.startswith("# END QUESTION"):
            if start is None:
                raise SystemExit(f"cell {i}: # END QUESTION without # BEGIN QUESTION")
            out.append((start, i, name))
            start = None
    return out


def answers(nb: dict) -> dict[str, str]:
    """``{exercise name: its solution code}`` (the code cells between ``# BEGIN SOLUTION`` and
    ``# END SOLUTION`` of each exercise), in notebook order."""
    out = {}
    for start, end, name in exercise_blocks(nb):
        inside, code = False, ""
        for cell in nb["cells"][start:end]:
            src = _source(cell)
            if cell["cell_type"] == "raw" and src.startswith(("# BEGIN SOLUTION", "# END SOLUTION")):
                inside = src.startswith("# BEGIN SOLUTION")
            elif cell["cell_type"] == "code" and inside:
                code += src + "\n"
        out[name] = code
    return out


def number_exercises(nb: dict, lesson: str) -> dict:
    """``nb`` with each exercise's points and number written from the lesson's definitions: the
    ``# BEGIN QUESTION`` cell and the first "**Exercise N (P points)**" heading of the block."""
    nb = copy.deepcopy(nb)
    defs = exercises.exercises(lesson)
    blocks = exercise_blocks(nb)
    names = [name for *_, name in blocks]
    if names != [ex.name for ex in defs]:
        raise SystemExit(
            f"{lesson}: the notebook's exercises {names} differ from qlora_course.exercises "
            f"{[ex.name for ex in defs]} (same names, same order)"
        )
    for number, ((start, end, name), ex) in enumerate(zip(blocks, defs, strict=True), 1):
        _set_source(nb["cells"][start], f"# BEGIN QUESTION\nname: {name}\npoints: {ex.points:g}")
        for cell in nb["cells"][start:end]:
            if cell["cell_type"] == "markdown" and HEADING_RE.search(_source(cell)):
                heading = f"**Exercise {number} ({_points(ex.points)})"
                _set_source(cell, HEADING_RE.sub(lambda _, h=heading: h, _source(cell), count=1))
                break
        else:
            raise SystemExit(f"{lesson} {name}: no '**Exercise N (P points)' heading in its question")
    return nb


def _multiline_strings(code: str) -> bool:
    tokens = tokenize.generate_tokens(io.StringIO(code).readline)
    return any(t.type == tokenize.STRING and "\n" in t.string for t in tokens)


def _hidden_cells(lesson: str, name: str) -> list[str]:
    """The hidden test cells of one exercise: one, or one per part (each worth its part's points)."""
    ex = exercises.exercise(lesson, name)
    call = "from qlora_course.exercises import hidden_check as _hidden_check\n\n"
    if not ex.parts:
        return ["# HIDDEN\n" + call + f'_ = _hidden_check("{lesson}", "{name}", globals())\n']
    return [
        f'""" # BEGIN TEST CONFIG\npoints: {points:g}\nhidden: true\n"""  # END TEST CONFIG\n'
        + call
        + f'_ = _hidden_check("{lesson}", "{name}", globals(), part={label!r})\n'
        for label, (points, _) in ex.parts.items()
    ]


def for_otter(nb: dict, lesson: str) -> dict:
    """The copy ``otter assign`` reads: per exercise, public tests that also check the answer is the
    learner's own work and ignore its prints, and the hidden test cell from the definition."""
    nb = copy.deepcopy(nb)
    cells, in_tests, name = [], False, None
    for cell in nb["cells"]:
        src = _source(cell)
        if cell["cell_type"] == "raw" and src.startswith("# BEGIN QUESTION"):
            name = re.search(r"name:\s*(\w+)", src).group(1)
        if cell["cell_type"] == "raw" and src.startswith("# BEGIN TESTS"):
            in_tests = True
        elif cell["cell_type"] == "raw" and src.startswith("# END TESTS"):
            cells += [
                {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": hidden}
                for hidden in _hidden_cells(lesson, name)
            ]
            in_tests = False
        elif in_tests and cell["cell_type"] == "code":
            if src.startswith("# HIDDEN"):
                raise SystemExit(f"{lesson} {name}: hidden tests come from the exercise's definition; remove the cell")
            if TEST_CONFIG_END not in src:
                raise SystemExit(f"{lesson} {name}: a public test cell starts with a test config (points: 0)")
            head, body = src.split(TEST_CONFIG_END, 1)
            if _multiline_strings(body):
                raise SystemExit(
                    f"{lesson} {name}: no multi-line strings in public tests (otter runs them as doctests)"
                )
            body = (
                "from qlora_course.exercises import check_own_work as _check_own_work\n"
                "from qlora_course.exercises import quiet as _quiet\n\n"
                "_ = _quiet()  # what the answer prints is not test output\n"
                + body.rstrip()
                + f'\n_ = _check_own_work("{lesson}", "{name}", globals())\n'
            )
            _set_source(cell, head + TEST_CONFIG_END + body)
        cells.append(cell)
    nb["cells"] = cells
    return nb


def guide_with_exercises(text: str) -> str:
    """The instructor guide with each lesson's row of the meeting table listing its exercises and points
    as the definitions give them (`` `name` points, ...: total ``)."""
    lines = text.splitlines(keepends=True)
    for les in syllabus.LESSONS:
        defs = exercises.exercises(les.name)
        listed = ", ".join(f"`{ex.name}` {ex.points:g}" for ex in defs) + f": {sum(ex.points for ex in defs):g}"
        for i, line in enumerate(lines):
            if line.startswith("|") and f"({Path(les.notes).name})" in line and GUIDE_EXERCISES_RE.search(line):
                lines[i] = GUIDE_EXERCISES_RE.sub(lambda _, new=listed: f"| {new} |", line, count=1)
    return "".join(lines)


def update_in_place() -> None:
    """Rewrite the repository location and the exercises' numbers and points in the sources."""
    repo, branch = course_settings()
    for les in syllabus.LESSONS:
        path = ROOT / les.solution
        old = path.read_text(encoding="utf-8")
        nb = number_exercises(json.loads(old), les.name)
        new = rewrite_location(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", repo, branch)
        if new != old:
            path.write_text(new, encoding="utf-8")
            print(f"  {les.solution}: repository location, exercise numbers or points updated")
    for path, rewrite in (
        (ROOT / "README.md", lambda t: rewrite_location(t, repo, branch)),
        (GUIDE, guide_with_exercises),
    ):
        old = path.read_text(encoding="utf-8")
        new = rewrite(old)
        if new != old:
            path.write_text(new, encoding="utf-8")
            print(f"  {path.relative_to(ROOT)}: updated")


def normalise_student(src: Path, dst: Path) -> None:
    """Copy otter's student notebook with outputs and execution counts cleared, stable formatting."""
    nb = json.loads(src.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        cell.pop("id", None)
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb["nbformat"], nb["nbformat_minor"] = 4, 4
    dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def assign(solution: dict, name: str, out: Path) -> Path:
    """Run ``otter assign`` on the notebook ``solution``; returns the output folder (student/, autograder/)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    source = out.parent / f".{name}.source" / f"{name}.ipynb"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(json.dumps(solution, indent=1, ensure_ascii=False), encoding="utf-8")
    result = subprocess.run([str(OTTER), "assign", str(source), str(out)], capture_output=True, text=True)
    shutil.rmtree(source.parent)
    if result.returncode != 0:
        raise SystemExit(f"otter assign failed on {name}:\n{result.stdout}\n{result.stderr}")
    return out


def build(notebooks_dir: Path, tests_dir: Path, assign_root: Path) -> list[str]:
    """Build every lesson from its solution as it is on disk; returns the lesson names."""
    for les in syllabus.LESSONS:
        nb = json.loads((ROOT / les.solution).read_text(encoding="utf-8"))
        out = assign(for_otter(number_exercises(nb, les.name), les.name), les.name, assign_root / les.name)
        notebooks_dir.mkdir(parents=True, exist_ok=True)
        normalise_student(out / "student" / f"{les.name}.ipynb", notebooks_dir / f"{les.name}.ipynb")
        lesson_tests = tests_dir / les.name
        if lesson_tests.exists():
            shutil.rmtree(lesson_tests)
        lesson_tests.mkdir(parents=True)
        for test in sorted((out / "student" / "tests").glob("*.py")):
            shutil.copy(test, lesson_tests / test.name)
    return syllabus.names()


def differences(tmp: Path) -> list[str]:
    """Committed files that differ from a build in ``tmp`` (the solutions' numbering included)."""
    diffs = []
    repo, branch = course_settings()
    for les in syllabus.LESSONS:
        text = (ROOT / les.solution).read_text(encoding="utf-8")
        numbered = number_exercises(json.loads(text), les.name)
        if rewrite_location(json.dumps(numbered, indent=1, ensure_ascii=False) + "\n", repo, branch) != text:
            diffs.append(f"{les.solution} (exercise numbers, points or repository location)")
    if guide_with_exercises(GUIDE.read_text(encoding="utf-8")) != GUIDE.read_text(encoding="utf-8"):
        diffs.append(f"{GUIDE.relative_to(ROOT)} (the exercises of the meeting table)")
    for built in sorted((tmp / "notebooks").glob("*.ipynb")):
        committed = NOTEBOOKS / built.name
        if not committed.exists() or committed.read_bytes() != built.read_bytes():
            diffs.append(f"notebooks/{built.name}")
    for built in sorted((tmp / "tests").rglob("*.py")):
        rel = built.relative_to(tmp / "tests")
        committed = PUBLIC_TESTS / rel
        if not committed.exists() or not filecmp.cmp(committed, built, shallow=False):
            diffs.append(f"src/qlora_course/exercise_tests/{rel}")
    for committed in sorted(PUBLIC_TESTS.rglob("*.py")):
        if not (tmp / "tests" / committed.relative_to(PUBLIC_TESTS)).exists():
            diffs.append(f"src/qlora_course/exercise_tests/{committed.relative_to(PUBLIC_TESTS)} (stale)")
    return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report drift; change nothing")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            build(tmp / "notebooks", tmp / "tests", tmp / "assign")
            diffs = differences(tmp)
        if diffs:
            print("out of date (run `make notebooks`):\n  " + "\n  ".join(diffs))
            return 1
        print("student notebooks and public tests are up to date")
        return 0
    update_in_place()
    if PUBLIC_TESTS.exists():
        for stale in PUBLIC_TESTS.iterdir():
            if stale.is_dir() and stale.name not in syllabus.names():
                shutil.rmtree(stale)
    lessons = build(NOTEBOOKS, PUBLIC_TESTS, ROOT / "build" / "assign")
    print(f"built {len(lessons)} lesson(s): {', '.join(lessons)}; autograders in build/assign/*/autograder/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
