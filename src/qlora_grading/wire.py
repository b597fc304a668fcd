"""Results as data, and how a learner's result is compared with the reference's.

What crosses the sandbox's wall is JSON: :func:`encode` turns a value an answer produced (tensors,
numbers, strings, booleans, lists and dicts of these) into JSON data, and nothing that comes back is
executed — :func:`compare` reads tensors as raw numbers. Anything that is not data (an object that claims
to equal everything, a function) encodes as ``{"object": its type's name}``, which matches no result.

The comparison follows the type rules the exercises' public checks use (``qlora_course.checks``): a
whole number may come as an ``int``, a NumPy integer, an integral float or a one-element tensor; a
number as any real number. Floating-point values are compared within a :class:`Tolerance` derived from
the precision of the dtype they were computed in, scaled by the size of the reference's values — never
a fixed absolute number that is tighter than a right answer's own rounding error.
"""

from __future__ import annotations

import base64
import binascii
import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Tolerance", "encode", "compare", "differences", "tolerance_for"]

_EPS = {"float64": 2.0**-52, "float32": 2.0**-23, "bfloat16": 2.0**-7, "float16": 2.0**-10}


@dataclass(frozen=True)
class Tolerance:
    """How far a right answer's floating-point results may be from the reference's.

    ``ulps``: a float value may differ by ``ulps`` times the machine epsilon of its dtype (of the less
    precise of the two when ``dtype_matters`` is off), times a scale: with ``scale="max"`` the largest
    magnitude in the reference's tensor (what a computation's rounding error is relative to: a sum or a
    product of matrices), with ``scale="element"`` each element's own magnitude (a table of values
    spanning many orders of magnitude, each computed on its own). 0 asks for equality, bit for bit.
    ``dtype_matters``: a tensor must have the reference's dtype (as the exercise's public checks demand);
    when off, any floating dtype is accepted for a floating result, and any integer dtype for an integer one.
    ``number_dtype``: the least precise dtype in which a right answer may compute a plain number (a
    float32 computation of an entropy is as right as a float64 one).
    ``rtol``: for a plain number that is an *estimate* (bytes of memory, say), a relative tolerance on top
    of the rounding one: any value within ``rtol`` times the reference's magnitude is right, so an answer
    may leave out terms the exercise calls negligible. 0 (the default) allows rounding error only.
    """

    ulps: float = 64.0
    dtype_matters: bool = True
    number_dtype: str = "float32"
    scale: str = "max"
    rtol: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.ulps, bool) or not isinstance(self.ulps, numbers.Real) or not self.ulps >= 0:
            raise ValueError(f"Tolerance.ulps must be a number >= 0, got {self.ulps!r}")
        if self.number_dtype not in _EPS:
            raise ValueError(f"Tolerance.number_dtype must be one of {sorted(_EPS)}, got {self.number_dtype!r}")
        if self.scale not in ("max", "element"):
            raise ValueError(f"Tolerance.scale must be 'max' or 'element', got {self.scale!r}")
        if isinstance(self.rtol, bool) or not isinstance(self.rtol, numbers.Real) or not 0 <= self.rtol < 1:
            raise ValueError(f"Tolerance.rtol must be a number in [0, 1), got {self.rtol!r}")


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def encode(value, depth: int = 0):
    """``value`` as JSON data.

    Tensors become ``{"tensor": dtype, "shape": [...], "data": base64 of float64 or int64 values}``,
    numbers ``{"int": n}`` / ``{"float": x}`` (NumPy scalars included; non-finite floats as text),
    booleans stay booleans, strings strings, lists and tuples lists, dicts with string keys
    ``{"dict": {...}}``; anything else ``{"object": its type's name}``."""
    if depth > 20:
        return {"object": "nested too deep"}
    if value is None or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, numbers.Integral):
        return {"int": int(value)}
    if isinstance(value, numbers.Real):
        x = float(value)
        return {"float": x if math.isfinite(x) else repr(x)}
    if isinstance(value, torch.Tensor):
        t = value.detach().to("cpu")
        if t.is_complex():
            return {"object": "complex tensor"}
        raw = t.to(torch.float64 if t.is_floating_point() else torch.int64).contiguous().numpy().tobytes()
        return {"tensor": str(t.dtype), "shape": list(t.shape), "data": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [encode(v, depth + 1) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {str(k): encode(v, depth + 1) for k, v in value.items()}}
    return {"object": type(value).__name__[:60]}


def _array(v) -> torch.Tensor | None:
    """An encoded tensor's values, as float64 or int64 (read as raw numbers: nothing is executed)."""
    try:
        floating = "float" in v["tensor"]
        a = np.frombuffer(base64.b64decode(v["data"], validate=True), dtype=np.float64 if floating else np.int64)
        shape = [int(n) for n in v["shape"]]
        return torch.from_numpy(a.copy()).reshape(shape)
    except (KeyError, TypeError, ValueError, RuntimeError, binascii.Error):
        return None


def _is_tensor(v) -> bool:
    return isinstance(v, dict) and isinstance(v.get("tensor"), str)


def _number(v) -> float | None:
    """A number from ``{"int"}``, ``{"float"}`` or a one-element tensor; None otherwise."""
    if isinstance(v, dict) and "int" in v and isinstance(v["int"], int) and not isinstance(v["int"], bool):
        return v["int"]
    if isinstance(v, dict) and "float" in v:
        x = v["float"]
        if isinstance(x, str):
            try:
                return float(x)
            except ValueError:
                return None
        return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None
    if _is_tensor(v):
        a = _array(v)
        if a is not None and a.numel() == 1:
            return a.item()
    return None


def _kind(dtype: str) -> str:
    return "bool" if dtype == "torch.bool" else "float" if "float" in dtype else "int"


def _close_tensors(got, want, tol: Tolerance) -> bool:
    if not _is_tensor(got):
        return False
    gd, wd = got["tensor"], want["tensor"]
    if (gd != wd) if tol.dtype_matters else (_kind(gd) != _kind(wd)):
        return False
    a, b = _array(got), _array(want)
    if a is None or b is None or a.shape != b.shape:
        return False
    if _kind(wd) != "float":
        return bool(torch.equal(a, b))
    if not torch.equal(torch.isnan(a), torch.isnan(b)):
        return False
    finite = ~torch.isnan(b)
    a, b = a[finite], b[finite]
    if not torch.equal(torch.isinf(a), torch.isinf(b)) or not torch.equal(a[torch.isinf(a)], b[torch.isinf(b)]):
        return False
    a, b = a[~torch.isinf(b)], b[~torch.isinf(b)]
    if b.numel() == 0:
        return True
    eps = max(_EPS.get(_dtype_name(gd), 2.0**-23), _EPS.get(_dtype_name(wd), 2.0**-23))
    scale = b.abs() if tol.scale == "element" else b.abs().max()
    return bool(((a - b).abs() <= tol.ulps * eps * scale).all())


def compare(got, want, tol: Tolerance = Tolerance()) -> bool:
    """Whether the encoded result ``got`` equals the reference's encoded ``want`` under ``tol``."""
    if _is_tensor(want):
        if want.get("shape") == [] and not _is_tensor(got):  # a 0-d result may come as a plain number
            w = _number(want)
            return compare(got, {"float": w} if _kind(want["tensor"]) == "float" else {"int": int(w)}, tol)
        return _close_tensors(got, want, tol)
    if isinstance(want, dict) and "dict" in want:
        g = got.get("dict") if isinstance(got, dict) else None
        return (
            isinstance(g, dict)
            and g.keys() == want["dict"].keys()
            and all(compare(g[k], w, tol) for k, w in want["dict"].items())
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(compare(a, b, tol) for a, b in zip(got, want, strict=True))
        )
    if isinstance(want, dict) and "int" in want:  # a whole number: any integral value (as expect_int)
        x = _number(got)
        return x is not None and not isinstance(got, bool) and math.isfinite(x) and x == want["int"]
    if isinstance(want, dict) and "float" in want:  # a number: any real value (as expect_number)
        x, w = _number(got), _number(want)
        if x is None or w is None:
            return False
        if math.isnan(w) or math.isinf(w):
            return x == w or (math.isnan(x) and math.isnan(w))
        return abs(x - w) <= max(tol.ulps * _EPS[tol.number_dtype], tol.rtol) * abs(w) + 1e-300
    if want is None or isinstance(want, (bool, str)):
        return type(got) is type(want) and got == want
    return False


def tolerance_for(tol: Tolerance | dict[str, Tolerance], key: str) -> Tolerance:
    """The tolerance for the result ``key``: ``tol`` itself, or from a dict ``{name ending: Tolerance}``
    the entry whose key ends ``key`` (the longest such; ``""`` is the default)."""
    if isinstance(tol, Tolerance):
        return tol
    endings = sorted((e for e in tol if key.endswith(e)), key=len)
    if not endings:
        raise ValueError(f"no tolerance for result {key!r}: give a default under the key ''")
    return tol[endings[-1]]


def differences(got: dict, want: dict, tol: Tolerance | dict[str, Tolerance] = Tolerance()) -> list[str]:
    """The names of the results in ``want`` (a probe's ``{name: encoded value}``) that ``got`` misses."""
    if not isinstance(got, dict):
        return sorted(want)
    return [k for k, w in want.items() if not compare(got.get(k), w, tolerance_for(tol, k))]
