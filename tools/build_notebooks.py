"""Build the student notebooks and autograders from the solution notebooks (``make notebooks``).

For every ``solutions/NN_topic.ipynb`` (the single source):

1. rewrite the course's repository location (Colab badges, the setup cell's ``COURSE_REPO`` line)
   from ``[tool.qlora-course]`` in ``pyproject.toml``, in the solution notebook and in README.md;
2. run ``otter assign`` into ``build/assign/NN_topic/`` (student notebook, autograder zip with the
   hidden tests);
3. copy the student notebook, outputs cleared, to ``notebooks/`` and its *public* tests to
   ``src/qlora_course/exercise_tests/NN_topic/``.

``--grading`` builds only what ``make grade`` needs, into ``build/grading/<lesson>/`` (it writes nothing
else and runs no otter): ``reference.ipynb``, the solution with its test cells replaced by
``grader.check("qN")`` cells (what a student notebook with every answer right looks like), and
``questions.json``, each question's points.

``--check`` writes nothing in the repository: it builds into a temporary folder and exits 1, listing
the files, if the committed student notebooks or public tests differ from what the build gives.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = ROOT / "notebooks"
PUBLIC_TESTS = ROOT / "src" / "qlora_course" / "exercise_tests"
OTTER = Path(sys.executable).with_name("otter")

BADGE_RE = re.compile(
    r"https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/[\w./-]+?/(notebooks|solutions)/"
)
REPO_LINE_RE = re.compile(r'COURSE_REPO, COURSE_REF = "[^"]*", "[^"]*"')


def course_settings() -> tuple[str, str]:
    """``(repository, branch)`` from ``[tool.qlora-course]`` in pyproject.toml."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["qlora-course"]
    return cfg["repository"], cfg["branch"]


def rewrite_location(text: str, repo: str, branch: str) -> str:
    """Point every Colab badge and ``COURSE_REPO`` line in ``text`` at ``repo``@``branch``."""
    text = BADGE_RE.sub(lambda m: f"https://colab.research.google.com/github/{repo}/blob/{branch}/{m.group(1)}/", text)
    return REPO_LINE_RE.sub(f'COURSE_REPO, COURSE_REF = "{repo}", "{branch}"', text)


def update_location_in_place(paths: list[Path]) -> None:
    repo, branch = course_settings()
    for path in paths:
        old = path.read_text(encoding="utf-8")
        new = rewrite_location(old, repo, branch)
        if new != old:
            path.write_text(new, encoding="utf-8")
            print(f"  repository location updated in {path.relative_to(ROOT)}")


def normalise_student(src: Path, dst: Path) -> None:
    """Copy otter's student notebook with outputs and execution counts cleared, stable formatting."""
    nb = json.loads(src.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        cell.pop("id", None)
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb["nbformat"], nb["nbformat_minor"] = 4, 4
    dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def assign(solution: Path, out: Path) -> Path:
    """Run ``otter assign``; returns the output folder (student/ and autograder/ inside)."""
    if out.exists():
        shutil.rmtree(out)
    result = subprocess.run([str(OTTER), "assign", str(solution), str(out)], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"otter assign failed on {solution.name}:\n{result.stdout}\n{result.stderr}")
    return out


def build(notebooks_dir: Path, tests_dir: Path, assign_root: Path) -> list[str]:
    """Build every lesson; returns the lesson names."""
    lessons = []
    for solution in sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb")):
        lesson = solution.stem
        out = assign(solution, assign_root / lesson)
        notebooks_dir.mkdir(parents=True, exist_ok=True)
        normalise_student(out / "student" / solution.name, notebooks_dir / solution.name)
        lesson_tests = tests_dir / lesson
        if lesson_tests.exists():
            shutil.rmtree(lesson_tests)
        lesson_tests.mkdir(parents=True)
        for test in sorted((out / "student" / "tests").glob("*.py")):
            shutil.copy(test, lesson_tests / test.name)
        lessons.append(lesson)
    return lessons


def grading_reference(solution: Path) -> tuple[dict, dict[str, float]]:
    """The reference notebook of ``solution`` for the grader, and its questions' points.

    Raw otter markers go; the cells between ``# BEGIN TESTS`` and ``# END TESTS`` (public and hidden
    tests) become one ``grader.check("qN")`` cell, where a student notebook has it."""
    nb = json.loads(solution.read_text(encoding="utf-8"))
    cells, points, question, in_tests = [], {}, None, False
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "raw":
            if src.startswith("# BEGIN QUESTION"):
                question = re.search(r"name:\s*(\S+)", src).group(1)
                points[question] = float(re.search(r"points:\s*([\d.]+)", src).group(1))
            elif src.startswith("# BEGIN TESTS"):
                in_tests = True
            elif src.startswith("# END TESTS"):
                in_tests = False
                cells.append(
                    {
                        "cell_type": "code",
                        "metadata": {},
                        "outputs": [],
                        "execution_count": None,
                        "source": f'grader.check("{question}")',
                    }
                )
            continue
        if not in_tests:
            cells.append(cell)
    return {**nb, "cells": cells}, points


def build_grading(out: Path = ROOT / "build" / "grading") -> list[str]:
    """Write ``out/<lesson>/reference.ipynb`` and ``questions.json`` for every lesson; returns the lessons."""
    lessons = []
    for solution in sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb")):
        reference, points = grading_reference(solution)
        folder = out / solution.stem
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in (("reference.ipynb", reference), ("questions.json", points)):
            tmp = folder / f".{name}.tmp"
            tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
            tmp.replace(folder / name)
        lessons.append(solution.stem)
    return lessons


def differences(tmp: Path) -> list[str]:
    diffs = []
    for built in sorted((tmp / "notebooks").glob("*.ipynb")):
        committed = NOTEBOOKS / built.name
        if not committed.exists() or committed.read_bytes() != built.read_bytes():
            diffs.append(f"notebooks/{built.name}")
    for built in sorted((tmp / "tests").rglob("*.py")):
        rel = built.relative_to(tmp / "tests")
        committed = PUBLIC_TESTS / rel
        if not committed.exists() or not filecmp.cmp(committed, built, shallow=False):
            diffs.append(f"src/qlora_course/exercise_tests/{rel}")
    return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report drift; change nothing")
    parser.add_argument("--grading", action="store_true", help="only build/grading/ (what `make grade` needs)")
    args = parser.parse_args()
    if args.grading:
        lessons = build_grading()
        print(f"grading references for {len(lessons)} lesson(s) in build/grading/")
        return 0
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
    update_location_in_place(sorted(SOLUTIONS.glob("*.ipynb")) + [ROOT / "README.md"])
    lessons = build(NOTEBOOKS, PUBLIC_TESTS, ROOT / "build" / "assign")
    print(f"built {len(lessons)} lesson(s): {', '.join(lessons)}; autograders in build/assign/*/autograder/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
