"""What the grader needs to know of a course: its lessons, their exercises and public tests.

The grader knows no lesson. A course hands it a :class:`Course`: a module that defines
``COURSE = Course(...)`` is named on the command line (``--course qlora_course.exercises``) and imported
by the grader and, inside the sandbox, by the runner.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from .exercise import Exercise

__all__ = ["Course", "load_course"]


@dataclass(frozen=True)
class Course:
    """``lessons``: lesson name -> its exercises, in notebook order. ``public_tests(lesson, name)``: the
    public tests of one exercise as plain Python (what ``grader.check`` runs), or "" when it has none.
    ``sources``: files whose contents define the grading (hashed into the key that decides whether an
    earlier result may be reused). ``titles``: each lesson's name for people (the LMS exports)."""

    lessons: dict[str, tuple[Exercise, ...]]
    public_tests: Callable[[str, str], str]
    sources: tuple[str, ...] = ()
    titles: dict[str, str] = field(default_factory=dict)

    def exercises(self, lesson: str) -> tuple[Exercise, ...]:
        if lesson not in self.lessons:
            raise ValueError(f"unknown lesson {lesson!r}; this course has {sorted(self.lessons)}")
        return self.lessons[lesson]

    def exercise(self, lesson: str, name: str) -> Exercise:
        for ex in self.exercises(lesson):
            if ex.name == name:
                return ex
        raise ValueError(f"lesson {lesson} has no exercise {name!r}")

    def points(self, lesson: str) -> dict[str, float]:
        """``{exercise name: points}`` in notebook order."""
        return {ex.name: float(ex.points) for ex in self.exercises(lesson)}


def load_course(module: str) -> Course:
    """The ``COURSE`` a module defines (e.g. ``"qlora_course.exercises"``)."""
    course = getattr(importlib.import_module(module), "COURSE", None)
    if not isinstance(course, Course):
        raise ValueError(f"module {module} defines no COURSE (a qlora_grading.Course)")
    return course
