"""Small argument checks the package's public functions share.

Each returns the value it checked (so ``n = positive_int(n, "n")`` reads as an assignment) and raises a
``ValueError`` whose message names the argument, says what was expected and shows what came, with its
type: ``batch_size must be a positive integer, got 2.5 (float)``. A ``bool`` is never accepted as a
number (``True`` would otherwise pass for 1).
"""

from __future__ import annotations

import math
import numbers

__all__ = ["shown", "positive_int", "non_negative_int", "positive_number", "probability", "flag"]


def shown(value) -> str:
    """``value`` as an error message shows it: its repr and its type, e.g. ``1e4 -> "10000.0 (float)"``."""
    return f"{value!r} ({type(value).__name__})"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value, name: str) -> int:
    """``value`` if it is an ``int`` above 0, else ``ValueError`` naming ``name``. A float such as 1e4 is
    refused even when it is whole: a count written as a float is usually a mistake."""
    if not _is_int(value) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {shown(value)}")
    return value


def non_negative_int(value, name: str) -> int:
    """``value`` if it is an ``int`` of 0 or more, else ``ValueError`` naming ``name``."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {shown(value)}")
    return value


def positive_number(value, name: str) -> float:
    """``value`` as a float if it is a real number above 0 and finite (an ``int`` is fine), else
    ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive finite number, got {shown(value)}")
    return float(value)


def probability(value, name: str) -> float:
    """``value`` as a float if it is a real number in ``[0, 1)`` (a dropout probability), else
    ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {shown(value)}")
    return float(value)


def flag(value, name: str) -> bool:
    """``value`` if it is ``True`` or ``False`` (not 0, 1 or a string), else ``ValueError`` naming ``name``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {shown(value)}")
    return value
