"""Where the public exercise tests of each lesson live.

``make notebooks`` runs ``otter assign`` on each solution notebook and copies the *public* tests it
writes into ``qlora_course/exercise_tests/<lesson>/``, so that ``pip install`` carries them into Colab
and ``grader.check("q1")`` works there as well as on a laptop. Hidden tests never leave the autograder
that ``make notebooks`` builds under ``build/``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["exercise_tests_dir"]


def exercise_tests_dir(lesson: str) -> str:
    """Folder of public otter tests for ``lesson`` (e.g. ``"01_lowrank_lora"``)."""
    path = Path(__file__).parent / "exercise_tests" / lesson
    if not path.is_dir():
        known = sorted(p.name for p in path.parent.glob("*") if p.is_dir())
        raise ValueError(f"no exercise tests for lesson {lesson!r}; known lessons: {known}. Run `make notebooks`.")
    return str(path)
