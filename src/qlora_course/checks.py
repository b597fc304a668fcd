"""Checks that exercise tests run before they compare anything, and the guard for unsolved exercises.

A test that compares an answer of the wrong kind either crashes with a message from deep inside torch
or, worse, passes: an object whose ``==`` always returns True satisfies ``assert answer == 2.0``. So each
test first checks what kind of value it got, with a message that says what was expected, and only then
compares values. These raise ``AssertionError``, which otter reports as the test's message.

:func:`require` is for the cells after an exercise that use its answer: an unsolved exercise (the stub
returns ``None`` or raises ``NotImplementedError``) stops them with one sentence naming the exercise,
instead of letting the notebook go on with something else (an unquantized model, a default).
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = [
    "expect_tensor",
    "expect_number",
    "expect_int",
    "expect_bool",
    "expect_pair",
    "ExerciseNotSolved",
    "require",
]


def _kind(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"[:80]


def _as_dtype(dtype) -> torch.dtype:
    """A dtype given to a check, or its name (``"float32"``), as a ``torch.dtype``."""
    from .validate import float_dtype

    return dtype if isinstance(dtype, torch.dtype) else float_dtype(dtype, "dtype")


def expect_tensor(value, what: str, shape=None, dtype=None, finite: bool = True) -> torch.Tensor:
    """``value`` must be a ``torch.Tensor`` (of ``shape`` and ``dtype`` when given, every element finite
    when ``finite``); returns it."""
    if type(value) is not torch.Tensor and not isinstance(value, torch.nn.Parameter):
        raise AssertionError(f"{what} should be a torch.Tensor, got {_kind(value)}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise AssertionError(f"{what} should have shape {tuple(shape)}, got {tuple(value.shape)}")
    if dtype is not None and value.dtype != _as_dtype(dtype):
        raise AssertionError(f"{what} should be {_as_dtype(dtype)}, got {value.dtype}")
    if finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise AssertionError(f"{what} contains NaN or infinite values")
    return value


def expect_number(value, what: str) -> float:
    """``value`` must be a real number (a Python or NumPy number, or a one-element tensor), finite;
    returns it as a float."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            raise AssertionError(f"{what} should be one number, got {_kind(value)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AssertionError(f"{what} should be a number, got {_kind(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise AssertionError(f"{what} should be finite, got {value}")
    return value


def expect_int(value, what: str) -> int:
    """``value`` must be a whole number (``int``, a NumPy integer, an integer-valued one-element tensor or
    an integral float such as ``1.2e9``); returns it as an ``int``."""
    number = expect_number(value, what)
    if number != int(number):
        raise AssertionError(f"{what} should be a whole number, got {number}")
    return int(number)


def expect_bool(value, what: str) -> bool:
    """``value`` must be a yes or no: ``True``/``False``, a NumPy bool or a one-element bool tensor (what a
    comparison of numbers, arrays or tensors returns); returns it as a ``bool``. A number or a string is
    refused: ``bool("no")`` is True."""
    if isinstance(value, torch.Tensor) and value.dtype == torch.bool and value.numel() == 1:
        return bool(value.item())
    if isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")):
        return bool(value)
    raise AssertionError(f"{what} should be True or False, got {_kind(value)}")


def expect_pair(value, what: str) -> tuple:
    """``value`` must be a tuple or list of two items; returns it as a tuple."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise AssertionError(f"{what} should be a pair (a, b), got {_kind(value)}")
    return tuple(value)


class ExerciseNotSolved(RuntimeError):
    """Raised by :func:`require` when a later cell needs the answer of an exercise not yet solved."""


def require(value, exercise: str, needed_for: str = "this cell"):
    """Stop with a clear message if ``value``, an exercise's answer (what its function returned), is
    missing: ``None`` (an unsolved stub returns it) or ``...``. Returns ``value``."""
    if value is None or value is Ellipsis:
        raise ExerciseNotSolved(
            f"The exercise {exercise} is not solved yet, and {needed_for} needs its answer: "
            f"write {exercise} above, run its cell, then run this cell again."
        )
    return value
