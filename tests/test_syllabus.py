"""The lesson registry (``qlora_course.syllabus``) is the one list of lessons, and each lesson is whole.

:func:`missing` names exactly what a half-added lesson lacks; the test runs it on the course, and on a
copy of the repository where a lesson has been half added, to show that it does.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
from pathlib import Path

from conftest import ROOT

from qlora_course import syllabus


def _question_names(notebook: Path) -> list[str]:
    from build_notebooks import exercise_blocks

    return [name for *_, name in exercise_blocks(json.loads(notebook.read_text(encoding="utf-8")))]


def missing(root: Path, lessons=syllabus.LESSONS) -> list[str]:
    """Everything a lesson of ``lessons`` needs that ``root`` (a checkout) does not have, one line each;
    and every solution notebook that no lesson claims."""
    problems = []
    figures = json.loads((root / "lessons" / "figures.json").read_text())
    readme = (root / "README.md").read_text(encoding="utf-8")
    for les in lessons:
        where = f"lesson {les.name}"
        for path in (les.solution, les.notebook, les.notes):
            if not (root / path).is_file():
                problems.append(f"{where}: no {path}")
        try:
            module = importlib.import_module(les.exercises_module)
            names = [ex.name for ex in module.EXERCISES]
        except (ImportError, AttributeError):
            problems.append(f"{where}: no exercise definitions ({les.exercises_module}.EXERCISES)")
            names = None
        if (root / les.solution).is_file() and names is not None:
            in_notebook = _question_names(root / les.solution)
            if in_notebook != names:
                problems.append(
                    f"{where}: the notebook's exercises {in_notebook} differ from its definitions {names} "
                    "(same names, same order)"
                )
        for name in names or []:
            if not (root / les.exercise_tests / f"{name}.py").is_file():
                problems.append(f"{where}: no public tests {les.exercise_tests}/{name}.py (run `make notebooks`)")
        if not any(v["lesson"] == les.id for v in figures.values()):
            problems.append(f"{where}: no figures in lessons/figures.json (run `make course`)")
        if not re.search(rf"^\| {les.number} \|.*\]\(notebooks/{les.name}\.ipynb\)", readme, re.M):
            problems.append(f"{where}: no row in the README's syllabus table")
        if not les.key_figure.strip():
            problems.append(f"{where}: no key figure for the website's browser test")
    claimed = {Path(les.solution).name for les in lessons}
    for path in sorted((root / "solutions").glob("*.ipynb")):
        if path.name not in claimed:
            problems.append(f"{path.relative_to(root)}: not in qlora_course.syllabus.LESSONS")
    return problems


def test_every_lesson_is_whole():
    assert missing(ROOT) == []


def test_a_half_added_lesson_is_named_with_what_it_lacks(tmp_path):
    """A maintainer copies lesson 3's solution as lesson 8 and registers it, and stops there."""
    root = tmp_path / "repo"
    for folder in ("solutions", "notebooks", "lessons", "src/qlora_course/exercise_tests"):
        shutil.copytree(ROOT / folder, root / folder)
    shutil.copy(ROOT / "README.md", root / "README.md")
    shutil.copy(root / "solutions" / "03_double_quant.ipynb", root / "solutions" / "08_serving.ipynb")
    (root / "solutions" / "09_stray.ipynb").write_text("{}")
    serving = syllabus.Lesson(8, "serving", "Serving at scale", key_figure="")
    assert missing(root, syllabus.LESSONS + (serving,)) == [
        "lesson 08_serving: no notebooks/08_serving.ipynb",
        "lesson 08_serving: no lessons/08-serving.md",
        "lesson 08_serving: no exercise definitions (qlora_course.exercises.serving.EXERCISES)",
        "lesson 08_serving: no figures in lessons/figures.json (run `make course`)",
        "lesson 08_serving: no row in the README's syllabus table",
        "lesson 08_serving: no key figure for the website's browser test",
        "solutions/09_stray.ipynb: not in qlora_course.syllabus.LESSONS",
    ]


def test_no_other_file_lists_the_lessons():
    """Tools and tests iterate the registry: none globs the solutions folder or spells a lesson table."""
    offenders = []
    for path in sorted(list((ROOT / "tools").rglob("*.py")) + list((ROOT / "tests").glob("*.py"))):
        if path.name == Path(__file__).name:
            continue
        text = path.read_text(encoding="utf-8")
        globs_solutions = any("solutions" in line.lower() and ".glob(" in line for line in text.splitlines())
        if globs_solutions or re.search(r"\"0[1-9]_\w+\":\s", text):
            offenders.append(path.relative_to(ROOT).as_posix())
    assert offenders == [], f"these list lessons themselves instead of reading qlora_course.syllabus: {offenders}"


def test_a_lesson_is_found_by_name_id_or_number():
    les = syllabus.lesson("03_double_quant")
    assert syllabus.lesson("03") is les and syllabus.lesson(3) is les
    assert les.notes == "lessons/03-double-quant.md" and les.exercises_module == "qlora_course.exercises.double_quant"
    try:
        syllabus.lesson(True)
    except ValueError as err:
        assert "01_lowrank_lora" in str(err)
    else:
        raise AssertionError("True is not a lesson")


def test_the_guide_lists_each_lesson_s_exercises_as_defined():
    """The instructor guide's meeting table lists each lesson's exercises with their points and total as
    the definitions give them: ``make notebooks`` writes the list (a change of points or an added exercise
    shows here until it has run)."""
    from build_notebooks import GUIDE, GUIDE_EXERCISES_RE, guide_with_exercises

    guide = GUIDE.read_text(encoding="utf-8")
    for les in syllabus.LESSONS:
        row = [line for line in guide.splitlines() if f"({Path(les.notes).name})" in line and line.startswith("|")]
        assert any(GUIDE_EXERCISES_RE.search(line) for line in row), f"the meeting table has no row for {les.name}"
    assert guide_with_exercises(guide) == guide, "run `make notebooks`: the guide's exercise lists are out of date"


def test_prose_names_exercises_instead_of_numbering_them():
    """Exercise numbers are derived (``make notebooks``): prose that says "Exercise 3" would point at the
    wrong exercise once one is inserted before it, so it names the exercise (`` `quantize_blocks` ``)."""
    numbered = re.compile(r"(?<!\*\*)\bExercises? \d")
    found = []
    for les in syllabus.LESSONS:
        nb = json.loads((ROOT / les.solution).read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            text = "".join(cell["source"])
            if cell["cell_type"] == "markdown":
                found += [
                    f"{les.name}: ...{text[max(0, m.start() - 40) : m.end() + 20]!r}" for m in numbered.finditer(text)
                ]
    assert not found, "name the exercise instead:\n" + "\n".join(found)
