"""The course's exercises, each defined once, in one module per lesson (``EXERCISES``, in notebook order).

An exercise's definition (:class:`qlora_grading.Exercise`) holds its points, the probe of its hidden
test, the reference it is compared with, its tolerance, the finished objects an answer must not hand
the work to, and the answers the course's own tests try (wrong, other right ones, cheats). Everything
that judges an answer reads it:

- the notebook's hidden test cell, which ``make notebooks`` writes: :func:`hidden_check`;
- the public tests, to which ``make notebooks`` adds :func:`check_own_work`;
- ``make grade`` (``COURSE``, read by :mod:`qlora_grading`);
- ``tests/test_exercises.py`` (every answer over many salts).

Exercise numbers are the order of ``EXERCISES``; ``make notebooks`` writes them (and the points) into the
notebooks' headings, so nothing is numbered by hand.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import secrets
import sys
from functools import cache
from pathlib import Path

from qlora_grading import Course, Exercise, hidden_problems, own_work_problem

from .. import syllabus

__all__ = [
    "COURSE",
    "exercises",
    "exercise",
    "hidden_check",
    "check_own_work",
    "public_tests",
    "quiet",
    "HIDDEN_SALTS",
]

HIDDEN_SALTS = 3  # fresh random salts a notebook's hidden check tries


@cache
def exercises(lesson: str) -> tuple[Exercise, ...]:
    """The exercises of ``lesson`` (a name, id or number), in notebook order."""
    module = importlib.import_module(syllabus.lesson(lesson).exercises_module)
    return tuple(module.EXERCISES)


def exercise(lesson: str, name: str) -> Exercise:
    for ex in exercises(lesson):
        if ex.name == name:
            return ex
    raise ValueError(f"lesson {lesson} has no exercise {name!r}; it has {[e.name for e in exercises(lesson)]}")


def public_tests(lesson: str, name: str) -> str:
    """The public tests of one exercise (``exercise_tests/<lesson>/<name>.py``, otter's format, written by
    ``make notebooks``) as plain Python: what ``grader.check`` runs."""
    from ..public_tests import exercise_tests_dir

    env: dict = {}
    path = Path(exercise_tests_dir(syllabus.lesson(lesson).name), f"{name}.py")
    exec(path.read_text(encoding="utf-8"), env)
    lines = []
    for case in env["test"]["suites"][0]["cases"]:
        for line in case["code"].splitlines():
            if line.startswith((">>> ", "... ")):
                lines.append(line[4:])
            elif line.strip() in (">>>", "..."):
                lines.append("")
    return "\n".join(lines)


def _answer(name: str, namespace: dict):
    if name not in namespace:
        raise AssertionError(f"{name} is not defined: run the cell with your answer first")
    return namespace[name]


def hidden_check(lesson: str, name: str, namespace: dict, part: str | None = None, salts: int = HIDDEN_SALTS) -> None:
    """The hidden test of one exercise (of one of its parts), as a notebook's hidden test cell runs it: the
    answer ``namespace[name]`` against the reference on fresh random inputs. Raises ``AssertionError``."""
    ex = exercise(lesson, name)
    salts_ = [secrets.token_hex(8) for _ in range(salts)]
    problems = hidden_problems(ex, _answer(name, namespace), salts_, part)
    assert not problems, f"{name}{f' ({part})' if part else ''}: " + "; ".join(problems)


def check_own_work(lesson: str, name: str, namespace: dict) -> None:
    """Part of every public test: the answer must not hand the work to a finished version (the course
    package's, a library's). Raises ``AssertionError`` with a sentence for the learner."""
    problem = own_work_problem(exercise(lesson, name), _answer(name, namespace))
    assert problem is None, problem


def quiet() -> None:
    """Under doctest, send what is printed from here on to nowhere. The first line of every public test:
    otter runs the tests as doctests, where anything printed counts as output the test did not expect,
    so a debug ``print`` in a right answer would fail it. Doctest puts the real output back when the test
    ends; anywhere else (the tests run as plain code) this does nothing."""
    import doctest

    if isinstance(sys.stdout, doctest._SpoofOut):
        contextlib.redirect_stdout(io.StringIO()).__enter__()


def _sources() -> tuple[str, ...]:
    package = Path(__file__).resolve().parents[1]
    files = sorted(package.rglob("*.py"))
    return tuple(str(p) for p in files)


@cache
def course() -> Course:
    """The whole course as the grader sees it (``COURSE``)."""
    return Course(
        lessons={les.name: exercises(les.name) for les in syllabus.LESSONS},
        public_tests=public_tests,
        sources=_sources(),
        titles={les.name: f"QLoRA lesson {les.number}: {les.title}" for les in syllabus.LESSONS},
    )


def __getattr__(name: str):
    if name == "COURSE":  # built on first use: a notebook's check needs only its own lesson's module
        return course()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
