"""Key figures a notebook computes, collected for the one-page course summary of ``make course``.

``record("lora_vs_full_params", 256.0, "x", "fewer trainable parameters")`` prints nothing and writes
nothing unless the environment variable ``QLORA_COURSE_REPORT`` names a JSON-lines file (set by
``make course``); then it appends one line per figure.

Every figure carries a tolerance ``tol``: how far, in the figure's own unit, the same notebook may land on
another machine (another CPU sums in another order). It is absolute, not relative, because what it guards
is the digits the lecture notes show, and because many figures sit near zero (a logit gap, a difference of
two accuracies) where a relative tolerance means nothing. Counts, bytes, formulas and bit-exact checks keep
the default 0 (the checks add float noise of 1e-9 relative); a figure computed by a float reduction through
a model gets the spread measured between runs with 1 and 2 threads and on another CPU, with a margin; a
training result gets the spread of its runs over thread counts and seeds, since a different reduction order
sends training along a different trajectory. The notes may not quote a digit finer than the tolerance
(``tests/lesson_figures.py``).
"""

from __future__ import annotations

import json
import math
import numbers
import os

__all__ = ["record", "within"]

# float noise allowed on top of every tolerance, relative: a formula gives the same double everywhere, or
# nearly (a library may sum a few terms in another order)
EPS = 1e-9


def record(
    key: str,
    value: float,
    unit: str = "",
    what: str = "",
    lesson: str | None = None,
    varies: bool = False,
    tol: float = 0.0,
) -> float:
    """Remember one key figure; returns ``value`` so it can be used inline.

    ``tol`` (>= 0, in ``unit``) is how much the figure may differ between machines (see the module's
    docstring). ``varies=True`` marks a figure that differs from machine to machine without bound (a
    timing): it has no tolerance, and the lecture notes may not quote it (``tests/test_lesson_figures.py``),
    they point to the cell instead."""
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0 in the figure's unit, got {tol!r}")
    path = os.environ.get("QLORA_COURSE_REPORT")
    if path:
        line = {
            "lesson": lesson or os.environ.get("QLORA_COURSE_LESSON", ""),
            "key": key,
            "value": float(value),
            "unit": unit,
            "what": what,
            "varies": bool(varies),
            "tol": None if varies else float(tol),
        }
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
    return value


def within(value: float, reference: float, tol: float) -> bool:
    """Whether ``value`` reproduces ``reference`` within the tolerance ``tol`` (plus :data:`EPS` relative)."""
    for name, v in (("value", value), ("reference", reference), ("tol", tol)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r} ({type(v).__name__})")
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    return abs(value - reference) <= tol + EPS * max(abs(value), abs(reference))
