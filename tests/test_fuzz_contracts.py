"""Every public function, fed bad arguments by category: it returns a sound result or raises a
``ValueError``/``TypeError`` that names the argument, never an error from deep inside torch or Python
and never a NaN. The contracts (a valid call per function) are in ``tests/api_examples.py``; a new public
function must be declared there (see CONTRIBUTING). Two tests: every category against every argument,
and Hypothesis drawing random bad values within the categories, within a fixed example budget."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import math
import pkgutil

import pytest
import torch
from api_examples import ACCEPTS, EXAMPLES, NOT_YET
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qlora_course


def _public() -> dict[str, object]:
    """``{"module.name": callable}`` for every name in every module's ``__all__``."""
    out = {}
    for info in pkgutil.iter_modules(qlora_course.__path__):
        if info.ispkg or info.name.startswith("_") or info.name == "fsdp_train":
            continue
        module = importlib.import_module(f"qlora_course.{info.name}")
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                out[f"{info.name}.{name}"] = obj
    return out


PUBLIC = _public()


def test_every_public_function_declares_its_contract():
    undeclared = sorted(set(PUBLIC) - set(EXAMPLES) - set(NOT_YET))
    assert not undeclared, f"declare a valid call in tests/api_examples.py (EXAMPLES) for: {undeclared}"
    stale = sorted((set(EXAMPLES) | set(NOT_YET)) - set(PUBLIC))
    assert not stale, f"tests/api_examples.py names functions that are not public: {stale}"
    both = sorted(set(EXAMPLES) & set(NOT_YET))
    assert not both, f"in EXAMPLES and NOT_YET at once: {both}"
    print(f"\nfuzzed: {len(EXAMPLES)} of {len(PUBLIC)} public functions; not yet: {len(NOT_YET)}")


def _bad_values(value) -> list[tuple[str, object]]:
    """Bad values, by category, for an argument whose valid value is ``value``."""
    if isinstance(value, bool):
        return [("an int for a flag", 1), ("a str for a flag", "yes")]
    if isinstance(value, int):
        return [("zero", 0), ("negative", -3), ("a float count", 1e4), ("a fraction", 2.5), ("a bool", True)]
    if isinstance(value, float):
        return [
            ("NaN", math.nan),
            ("infinity", math.inf),
            ("negative", -value - 1.0),
            ("a bool", True),
            ("a str", "0.5"),
        ]
    if isinstance(value, str):
        return [("a number for a str", 3), ("an empty str", ""), ("an unknown name", "no-such-name")]
    if isinstance(value, torch.dtype):
        return [
            ("a dtype's name", str(value).removeprefix("torch.")),
            ("an integer dtype", torch.int64),
            ("a misspelt name", "bf61"),
        ]
    if isinstance(value, torch.Tensor):
        bad = [("a meta tensor", torch.empty(value.shape, dtype=value.dtype, device="meta"))]
        bad.append(("an empty tensor", value.reshape(-1)[:0]))
        bad.append(("an extra dimension", value.unsqueeze(0)))
        bad.append(("a list", value.tolist()))
        if value.is_floating_point():
            nan = value.clone()
            nan.reshape(-1)[0] = math.nan
            bad += [("NaN", nan), ("an integer tensor", value.round().long())]
        else:
            bad += [("a float tensor", value.double()), ("negative values", value.long() - 300)]
        return bad
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return [
            ("a bare str", value[0]),
            ("empty", type(value)()),
            ("a duplicate", [value[0], *value]),
            ("a number in it", [*value, 3]),
        ]
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return [
            ("a str", "1, 2"),
            ("empty", type(value)()),
            ("negative", [-abs(v) - 1 for v in value]),
            ("NaN in it", [*value, math.nan]),
        ]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):  # a chat's messages
        return [
            ("a bare message", value[0]),
            ("empty", []),
            ("a str", "Is mat a home?"),
            ("a message without content", [{"role": "user"}]),
            ("roles out of order", value[::-1]),
            ("None", None),
        ]
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):  # conversations, answers
        return [("one item, not a list of them", value[0]), ("empty", []), ("a str", "home"), ("None", None)]
    if isinstance(value, dict):
        return [("a list", list(value)), ("empty", {})]
    if type(value).__name__ == "LlamaConfig":
        return [
            ("a str", "meta-llama/Llama-2-7b-hf"),
            ("zero layers", _changed(value, num_hidden_layers=0)),
            ("3 key/value heads of 4", _changed(value, num_key_value_heads=3)),
        ]
    if type(value).__name__ == "Dataset":
        from datasets import DatasetDict

        return [
            ("a DatasetDict", DatasetDict({"train": value})),
            ("a list of strs", list(value[value.column_names[0]])),
            ("a missing column", value.remove_columns(value.column_names[-1])),
            ("no rows", value.select([])),
        ]
    if hasattr(value, "pad_token_id") and hasattr(value, "decode"):  # a tokenizer
        return [("a str for a tokenizer", "course-tiny"), ("None", None)]
    if dataclasses.is_dataclass(value):
        return [("a dict of its fields", dataclasses.asdict(value)), ("None", None)]
    if isinstance(value, torch.nn.Module):
        return [("a tensor for a module", torch.zeros(2)), ("None", None)]
    return [("None", None)]


def _changed(config, **changes):
    out = copy.deepcopy(config)
    for k, v in changes.items():
        setattr(out, k, v)
    return out


def _sound(result, depth: int = 0) -> bool:
    """No NaN or infinity anywhere in ``result`` (numbers, tensors, and containers of them)."""
    if depth > 4:
        return True
    if isinstance(result, float):
        return math.isfinite(result)
    if isinstance(result, torch.Tensor):
        return result.is_meta or not result.is_floating_point() or bool(torch.isfinite(result).all())
    if isinstance(result, dict):
        return all(_sound(v, depth + 1) for v in result.values())
    if isinstance(result, (list, tuple)):
        return all(_sound(v, depth + 1) for v in result)
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return all(_sound(getattr(result, f.name), depth + 1) for f in dataclasses.fields(result))
    return True


def _outcome(key: str, argument: str, bad) -> str | None:
    """None when the call is sound: a result that passes, or a ValueError/TypeError naming ``argument``."""
    kwargs = EXAMPLES[key]()
    kwargs[argument] = bad
    try:
        result = PUBLIC[key](**kwargs)
    except (ValueError, TypeError) as err:
        said = str(err)
        if argument in said or (key.startswith("validate.") and kwargs.get("name", "") in said):
            return None
        return f"{type(err).__name__} without naming {argument!r}: {said[:160]}"
    except Exception as err:  # noqa: BLE001 - anything else is the failure this test looks for
        return f"{type(err).__name__} from inside: {str(err)[:160]}"
    if not _sound(result):
        return f"returned NaN or infinity: {str(result)[:160]}"
    return None


CASES = [
    (key, argument, label, bad)
    for key in sorted(EXAMPLES)
    for argument, value in EXAMPLES[key]().items()
    if not (key.startswith("validate.") and argument == "name")
    for label, bad in _bad_values(value)
    if not any(isinstance(bad, str) and bad == ok for ok in ACCEPTS.get(key, {}).get(argument, ()))
]


def test_every_valid_example_runs_soundly():
    for key, make in EXAMPLES.items():
        result = PUBLIC[key](**make())
        assert _sound(result), (key, result)


def test_every_bad_value_category_against_every_argument():
    problems = []
    for key, argument, label, bad in CASES:
        problem = _outcome(key, argument, bad)
        if problem:
            problems.append(f"{key}({argument}=<{label}>): {problem}")
    assert not problems, f"{len(problems)} of {len(CASES)} calls went wrong:\n" + "\n".join(problems)


ARGUMENTS = sorted({(key, argument) for key, argument, _, _ in CASES})


@st.composite
def _random_bad(draw):
    """A random bad value for a random argument, within its categories: sizes and positions drawn."""
    key, argument = draw(st.sampled_from(ARGUMENTS))
    value = EXAMPLES[key]()[argument]
    if isinstance(value, int) and not isinstance(value, bool):
        bad = draw(st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.booleans()))
    elif isinstance(value, float):
        bad = draw(
            st.one_of(st.sampled_from([math.nan, math.inf, -math.inf]), st.floats(max_value=-1e-9), st.text(max_size=3))
        )
    elif isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel():
        bad = value.clone()
        i = draw(st.integers(0, value.numel() - 1))
        bad.reshape(-1)[i] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        bad = draw(
            st.one_of(
                st.sampled_from(list(value)),
                st.lists(st.sampled_from(list(value)), min_size=2).filter(lambda v: len(set(v)) < len(v)),
            )
        )
    else:
        bad = draw(st.sampled_from([b for _, b in _bad_values(value)]))
    return key, argument, bad


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(_random_bad())
def test_random_bad_values(case):
    key, argument, bad = case
    if any(isinstance(bad, str) and bad == ok for ok in ACCEPTS.get(key, {}).get(argument, ())):
        return
    problem = _outcome(key, argument, bad)
    assert problem is None, f"{key}({argument}={bad!r:.80}): {problem}"


def _snapshot(value):
    """What a refused call must leave as it was: a tensor's values, a module's parameters, their
    ``requires_grad`` flags and its submodules' classes."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return (
        [(n, p.detach().clone(), p.requires_grad) for n, p in value.named_parameters()],
        [type(m).__name__ for m in value.modules()],
    )


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit for bit: 4-bit codes stored as bfloat16 hold NaN bit patterns, which ``torch.equal`` calls
    unequal to themselves."""
    if a.dtype != b.dtype or a.shape != b.shape or a.is_meta or b.is_meta:
        return a.dtype == b.dtype and a.shape == b.shape
    return torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return _bits_equal(a, b)
    (pa, ma), (pb, mb) = a, b
    return (
        ma == mb
        and len(pa) == len(pb)
        and all(x[0] == y[0] and _bits_equal(x[1], y[1]) and x[2] == y[2] for x, y in zip(pa, pb, strict=True))
    )


@pytest.mark.parametrize("key", sorted(k for k in EXAMPLES if not k.startswith("validate.")))
def test_a_refused_call_changes_none_of_its_arguments(key):
    """Check first, then act: when one argument is refused, the tensors and modules passed beside it are
    left as they were (no half-quantized model, no half-wrapped one)."""
    for argument, value in EXAMPLES[key]().items():
        for label, bad in _bad_values(value)[:3]:
            trial = EXAMPLES[key]()
            trial[argument] = bad
            kept = {
                a: _snapshot(v)
                for a, v in trial.items()
                if a != argument and isinstance(v, torch.Tensor | torch.nn.Module)
            }
            try:
                PUBLIC[key](**trial)
            except (ValueError, TypeError):
                for a, before in kept.items():
                    assert _same(before, _snapshot(trial[a])), f"{key}: refusing {argument}=<{label}> changed {a}"
