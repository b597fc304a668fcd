"""Key figures a notebook computes, collected for the one-page course summary of ``make course``.

``record("lora_vs_full_params", 256.0, "x", "fewer trainable parameters")`` prints nothing and writes
nothing unless the environment variable ``QLORA_COURSE_REPORT`` names a JSON-lines file (set by
``make course``); then it appends one line per figure.
"""

from __future__ import annotations

import json
import os

__all__ = ["record"]


def record(
    key: str, value: float, unit: str = "", what: str = "", lesson: str | None = None, varies: bool = False
) -> float:
    """Remember one key figure; returns ``value`` so it can be used inline.

    ``varies=True`` marks a figure that differs from machine to machine (a timing): the lecture notes may
    not quote it (``tests/test_lesson_figures.py``), they point to the cell instead."""
    path = os.environ.get("QLORA_COURSE_REPORT")
    if path:
        line = {
            "lesson": lesson or os.environ.get("QLORA_COURSE_LESSON", ""),
            "key": key,
            "value": float(value),
            "unit": unit,
            "what": what,
            "varies": bool(varies),
        }
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
    return value
