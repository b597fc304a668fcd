"""Small argument checks the package's public functions share.

Each returns the value it checked (so ``n = positive_int(n, "n")`` reads as an assignment) and raises a
``ValueError`` whose message names the argument, says what was expected and shows what came, with its
type: ``batch_size must be a positive integer, got 2.5 (float)``. A ``bool`` is never accepted as a
number (``True`` would otherwise pass for 1).
"""

from __future__ import annotations

import math
import numbers
import re

__all__ = [
    "shown",
    "positive_int",
    "non_negative_int",
    "positive_number",
    "probability",
    "flag",
    "texts",
    "names",
    "float_dtype",
    "device_name",
    "device",
    "shape",
    "tensor",
    "dataset",
    "module",
    "tokenizer",
    "real_numbers",
]


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


# --------------------------------------------------------------------------------------------------
# sequences, dtypes, devices, shapes, tensors, data sets
# --------------------------------------------------------------------------------------------------


def _is_dataset_dict(value) -> bool:
    return type(value).__name__ in ("DatasetDict", "IterableDatasetDict")


def texts(value, name: str, allow_empty: bool = False) -> list[str]:
    """``value`` as a list of strings. A single ``str`` is refused (it would be read letter by letter),
    and so is anything holding a non-string; an empty list unless ``allow_empty``."""
    if isinstance(value, str):
        raise TypeError(
            f"{name} must be a list of strings, got a str (it would be read letter by letter): [{value!r}]?"
        )
    if _is_dataset_dict(value) or isinstance(value, (dict, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a list of strings, got {type(value).__name__}")
    if type(value).__name__ in ("Tensor", "ndarray"):
        raise TypeError(f"{name} must be a list of strings, got a {type(value).__name__}")
    value = list(value)  # a tuple, a data set's column, a generator
    bad = [v for v in value if not isinstance(v, str)]
    if bad:
        raise TypeError(f"{name} must hold strings only, got {shown(bad[0])} among them")
    if not value and not allow_empty:
        raise ValueError(f"{name} must hold at least one string, got an empty {type(value).__name__}")
    return list(value)


def names(value, name: str) -> list[str]:
    """``value`` as a list of distinct, non-empty names (LoRA targets, layers to skip). A single ``str`` is
    refused (``("lm_head")`` without its comma is a str); a name listed twice is refused, as it would be
    counted twice by a formula but applied once to a model."""
    found = texts(value, name)
    if not all(found):
        raise ValueError(f"{name} must be non-empty names, got {found!r}")
    twice = sorted({v for v in found if found.count(v) > 1})
    if twice:
        raise ValueError(f"{name} lists {twice} more than once; give each name once")
    return found


_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float64": "float64",
    "double": "float64",
}


def float_dtype(value, name: str, allowed=("float32", "float16", "bfloat16", "float64")):
    """``value`` as a floating ``torch.dtype``: a dtype, or its name (``"bfloat16"``, ``"bf16"``,
    ``"torch.float32"``). Anything else raises, naming ``name`` and the choices ``allowed``."""
    import torch

    if isinstance(value, str):
        key = value.strip().lower().removeprefix("torch.")
        if key not in _DTYPE_NAMES:
            raise ValueError(f"{name} must be one of {list(allowed)} (a torch.dtype or its name), got {value!r}")
        value = getattr(torch, _DTYPE_NAMES[key])
    if not isinstance(value, torch.dtype):
        raise TypeError(f"{name} must be a torch.dtype such as torch.float32 (or its name), got {shown(value)}")
    if str(value).removeprefix("torch.") not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value}")
    return value


def device_name(value, name: str) -> str:
    """``value`` (a str or a ``torch.device``) as ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, whether or not this
    machine has that device (a label for another machine's memory, say)."""
    import torch

    if isinstance(value, torch.device):
        value = str(value)
    ok = isinstance(value, str) and (value in ("cpu", "cuda") or re.fullmatch(r"cuda:\d+", value) is not None)
    if not ok:
        raise ValueError(f"{name} must be 'cpu', 'cuda' or 'cuda:N' (or a torch.device), got {shown(value)}")
    return value


def device(value, name: str) -> str:
    """:func:`device_name`, on a machine that has the device: a CUDA device on a machine without one is
    refused here, with the fix, rather than deep inside ``torch.cuda``."""
    import torch

    value = device_name(value, name)
    if value.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{name}={value!r}, but this machine has no CUDA GPU: pass {name}='cpu'")
    return value


def shape(value, name: str) -> tuple[int, ...]:
    """``value`` (an int or a sequence of ints, each above 0) as a tuple: a tensor's shape."""
    import torch

    dims = (value,) if _is_int(value) else value
    if isinstance(dims, (str, bytes)) or not isinstance(dims, (tuple, list, torch.Size)) or not dims:
        raise ValueError(f"{name} must be a positive int or a non-empty sequence of them, got {shown(value)}")
    if not all(_is_int(d) and d > 0 for d in dims):
        raise ValueError(f"{name} must hold positive integers only, got {tuple(dims)!r}")
    return tuple(dims)


def tensor(value, name: str, ndim=None, floating: bool | None = None, finite: bool = True, empty: bool = False):
    """``value`` if it is a ``torch.Tensor`` with real data: not on the ``meta`` device, with ``ndim``
    dimensions (an int or a tuple of allowed counts) when given, floating (or not) when ``floating`` is
    set, every element finite when ``finite``, and at least one element unless ``empty``."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.is_meta:
        raise ValueError(f"{name} is on the meta device (a shape without data): it has no values to use")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and value.ndim not in allowed:
        raise ValueError(
            f"{name} must have {' or '.join(map(str, allowed))} dimension(s), got shape {tuple(value.shape)}"
        )
    if floating is not None and value.is_floating_point() != floating:
        kind = "a floating-point" if floating else "an integer"
        raise TypeError(f"{name} must be {kind} tensor, got {value.dtype}")
    if value.numel() == 0 and not empty:
        raise ValueError(f"{name} is empty (shape {tuple(value.shape)})")
    if finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return value


def dataset(value, name: str, columns=("prompt", "completion")):
    """``value`` as a ``datasets.Dataset`` with ``columns``. A list of rows (dicts) or a dict of columns
    (lists) is converted; a ``DatasetDict`` is refused with the split to pick (``data["train"]``)."""
    from datasets import Dataset

    if _is_dataset_dict(value):
        raise TypeError(f"{name} is a DatasetDict with splits {list(value)}: pass one split, e.g. {name}['train']")
    if isinstance(value, (list, tuple)):
        if not value or not all(isinstance(r, dict) for r in value):
            raise TypeError(f"{name} must be a Dataset or a non-empty list of dicts with {list(columns)}")
        value = Dataset.from_list(list(value))
    elif isinstance(value, dict):  # columns: {"prompt": [...], "completion": [...]}
        if not all(isinstance(v, (list, tuple)) for v in value.values()):
            raise TypeError(f"{name} as a dict must map column names to lists, got {list(value)}")
        if len({len(v) for v in value.values()}) > 1:
            raise ValueError(f"{name}'s columns have different lengths: {[len(v) for v in value.values()]}")
        value = Dataset.from_dict({k: list(v) for k, v in value.items()})
    if not isinstance(value, Dataset):
        raise TypeError(f"{name} must be a datasets.Dataset with columns {list(columns)}, got {type(value).__name__}")
    missing = [c for c in columns if c not in value.column_names]
    if missing:
        raise ValueError(f"{name} needs the column(s) {missing}; it has {value.column_names}")
    if len(value) == 0:
        raise ValueError(f"{name} is empty: it has no rows")
    return value


def module(value, name: str):
    """``value`` if it is a ``torch.nn.Module`` (a model or a layer), else ``TypeError`` naming ``name``."""
    import torch

    if not isinstance(value, torch.nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module (a model or a layer), got {type(value).__name__}")
    return value


def real_numbers(value, name: str) -> list[float]:
    """``value`` (a list, tuple or 1-D tensor of real numbers, none NaN) as a list of floats."""
    import torch

    if isinstance(value, torch.Tensor):
        value = tensor(value, name, ndim=1, finite=False).tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list of numbers, got {type(value).__name__}")
    bad = [v for v in value if isinstance(v, bool) or not isinstance(v, numbers.Real) or v != v]
    if bad:
        raise ValueError(f"{name} must hold real numbers (no NaN), got {shown(bad[0])} among them")
    return [float(v) for v in value]


def tokenizer(value, name: str = "tokenizer"):
    """``value`` if it is a tokenizer (callable, with ``decode`` and an EOS token), else ``TypeError``
    naming ``name``: a model's name where its tokenizer is meant, say."""
    if isinstance(value, str) or not callable(value) or not hasattr(value, "decode") or not hasattr(value, "eos_token"):
        hint = " (load it: AutoTokenizer.from_pretrained(...))" if isinstance(value, str) else ""
        raise TypeError(f"{name} must be a tokenizer, got {type(value).__name__}{hint}")
    return value
