"""One exercise, defined once: what it asks for, how it is probed, and what it is compared with.

An :class:`Exercise` names the object a learner writes (a function or a class), its points, a *probe* —
a function that builds inputs from a seeded generator, calls the answer on them and returns
``{result name: value}`` — and the *reference*, the right answer (usually the finished version in a
library or the course's package). An answer is right when, on the same inputs, every probed value
equals the reference's within the exercise's :class:`~qlora_grading.wire.Tolerance`. The probe
computes no expected value itself, so a table of expected values gains nothing; the inputs come from
a salt that an instructor's grading run keeps secret.

Everything that judges an answer goes through :func:`probe_values`: the notebook's hidden check
(:func:`hidden_problems`), ``make grade`` (inside its sandbox, then :func:`qlora_grading.wire.compare`
outside) and the course's tests of the tests. So they cannot disagree.

``finished``: objects that already solve the exercise (the course package's own version, a library's).
An answer that calls one of them while it is probed — directly, through a subclass, an alias or a
wrapper — hands the work over, and is told so (:func:`own_work_problem`) and scores nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import re
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from .wire import Tolerance, differences, encode

__all__ = ["Exercise", "probe_values", "hidden_problems", "own_work_problem", "FinishedTracer", "salt_generator"]

Probe = Callable[[Any, torch.Generator], dict]


@dataclass(frozen=True)
class Exercise:
    """One graded exercise.

    ``name``: the name the learner's answer has in the notebook (also the question's name in
    ``grader.check(name)`` and the gradebook). ``points``: what a right answer earns. ``probe(answer, g)``:
    the results to compare, from inputs drawn with the ``torch.Generator`` ``g``. ``reference``: the right
    answer, called the same way (an object, or its dotted name, imported when first needed).
    ``tolerance``: see :class:`~qlora_grading.wire.Tolerance`, or a dict ``{result name ending: Tolerance}``
    where results need different ones (``""``: the default). ``finished``: functions or classes (or
    their dotted names, e.g. ``"peft.tuners.lora.layer.Linear"``) whose use scores nothing.
    ``wrong``, ``alternatives``, ``cheats``: answers as source code, for
    the tests of the tests — plausible mistakes (the public checks must fail them and they must score
    nothing on any salt), other right answers (full points on every salt), and answers that may pass the
    public checks but must score nothing.

    ``parts``: partial credit, for an exercise whose results test separate properties:
    ``{label: (points, pattern)}``, the points summing to ``points``; a result belongs to the part whose
    regular expression ``pattern`` it matches (``re.search``; exactly one), and a part scores its points
    when all its results are right. Without parts an exercise scores all or nothing.
    """

    name: str
    points: float
    probe: Probe
    reference: Any
    tolerance: Tolerance | dict = Tolerance()
    finished: tuple = ()
    wrong: tuple[str, ...] = ()
    alternatives: tuple[str, ...] = ()
    cheats: tuple[str, ...] = ()
    parts: dict = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"Exercise.name must be a Python name (the answer's), got {self.name!r}")
        if not (isinstance(self.points, (int, float)) and not isinstance(self.points, bool) and self.points > 0):
            raise ValueError(f"Exercise {self.name}: points must be a positive number, got {self.points!r}")
        if not callable(self.probe):
            raise TypeError(f"Exercise {self.name}: probe must be callable, got {type(self.probe).__name__}")
        for group in ("wrong", "alternatives", "cheats", "finished"):
            if not isinstance(getattr(self, group), tuple):
                raise TypeError(f"Exercise {self.name}: {group} must be a tuple")
        if self.parts:
            total = sum(points for points, _ in self.parts.values())
            if abs(total - self.points) > 1e-9:
                raise ValueError(f"Exercise {self.name}: its parts' points add up to {total:g}, not {self.points:g}")

    def part_of(self, result: str) -> str:
        """The label of the part a result belongs to (with no parts: the exercise's name)."""
        if not self.parts:
            return self.name
        found = [label for label, (_, pattern) in self.parts.items() if re.search(pattern, result)]
        if len(found) != 1:
            raise ValueError(f"Exercise {self.name}: result {result!r} is in {len(found)} parts {found}, not one")
        return found[0]

    def part_points(self, results: list[str], wrong: list[str]) -> dict[str, float]:
        """``{part: points earned}`` when the results ``wrong`` (of ``results``) differ from the reference."""
        if not self.parts:
            return {self.name: 0.0 if wrong else float(self.points)}
        bad = {self.part_of(k) for k in wrong}
        present = {self.part_of(k) for k in results}
        return {
            label: float(p) if label in present and label not in bad else 0.0 for label, (p, _) in self.parts.items()
        }

    @property
    def answer_reference(self):
        """The reference answer itself (imported here when it was given by name)."""
        return _resolve(self.reference) if isinstance(self.reference, str) else self.reference

    @property
    def finished_names(self) -> list[str]:
        """The short names of the finished objects (what a learner would write to use one)."""
        return [(f if isinstance(f, str) else f.__name__).rsplit(".", 1)[-1] for f in self.finished]

    @property
    def _codes(self) -> frozenset:
        cached = self.__dict__.get("_codes_cache")
        if cached is None:
            objects = [_resolve(f) if isinstance(f, str) else f for f in self.finished]
            cached = frozenset(_code_objects(objects))
            object.__setattr__(self, "_codes_cache", cached)
        return cached


def _resolve(dotted: str):
    """The object a dotted name names: ``"package.module.Class.attr"``."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"cannot import {dotted}")


def _code_objects(objects: Iterable) -> Iterable:
    """The code objects that running one of ``objects`` executes first: a function's own, a class's
    methods' (its properties' getters too)."""
    for obj in objects:
        if inspect.isclass(obj):
            for member in vars(obj).values():
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if isinstance(member, property):
                    member = member.fget
                member = inspect.unwrap(member) if callable(member) else member
                if hasattr(member, "__code__"):
                    yield member.__code__
        else:
            obj = inspect.unwrap(obj)
            obj = getattr(obj, "__func__", obj)
            if not hasattr(obj, "__code__"):
                raise TypeError(f"a finished object must be a Python function or class, got {obj!r}")
            yield obj.__code__


def _qualname(code) -> str:
    module = code.co_filename.replace("\\", "/").rsplit("/site-packages/", 1)[-1].rsplit("/src/", 1)[-1]
    return f"{module.removesuffix('.py').replace('/', '.').removesuffix('.__init__')}.{code.co_qualname}"


class FinishedTracer:
    """While active, records every call into the given code objects (in this thread and threads
    started meanwhile). ``used``: their qualified names; ``tampered``: the profile hook was replaced."""

    def __init__(self, codes: frozenset) -> None:
        self.codes, self.used, self.tampered = codes, set(), False

    def _hook(self, frame, event, arg) -> None:
        if event == "call" and frame.f_code in self.codes:
            self.used.add(_qualname(frame.f_code))

    def __enter__(self) -> FinishedTracer:
        self._previous = sys.getprofile()
        if self.codes:
            sys.setprofile(self._hook)
            threading.setprofile(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        if self.codes:
            self.tampered = sys.getprofile() != self._hook
            threading.setprofile(None)
        sys.setprofile(self._previous)


def salt_generator(salt: str, exercise: str) -> torch.Generator:
    """The generator a probe draws its inputs from, for one salt and exercise (the same everywhere)."""
    seed = hashlib.sha256(f"{salt}/{exercise}".encode()).digest()[:7]
    return torch.Generator().manual_seed(int.from_bytes(seed, "little"))


def probe_values(exercise: Exercise, answer, salt: str, trace: bool = True) -> tuple[dict, list[str]]:
    """Run ``exercise``'s probe on ``answer`` with inputs from ``salt``.

    Returns ``(encoded values, finished objects it used)``: the whole probe runs traced, so a probe must
    not call the exercise's finished objects itself (the tests check it with the solution). The answer's
    printed output is swallowed (a debug print is no error), and torch's global random state is
    restored afterwards, so a probe
    never shifts the numbers the rest of a notebook computes. A ``"tampered"`` entry in the second list
    means the answer removed the tracer. Exceptions from the answer propagate."""
    tracer = FinishedTracer(exercise._codes if trace else frozenset())
    rng = torch.random.get_rng_state()
    try:
        with contextlib.redirect_stdout(io.StringIO()), tracer:
            values = exercise.probe(answer, salt_generator(salt, exercise.name))
    finally:
        torch.random.set_rng_state(rng)
    if not isinstance(values, dict):
        raise TypeError(f"the probe of {exercise.name} must return a dict")
    used = sorted(tracer.used) + (["tampered"] if tracer.tampered else [])
    return {str(k): encode(v) for k, v in values.items()}, used


def own_work_problem(exercise: Exercise, answer) -> str | None:
    """A sentence for the learner when ``answer`` uses a finished object while probed, else None.
    Errors the answer raises are left to the other checks."""
    try:
        _, used = probe_values(exercise, answer, "own-work")
    except Exception:  # noqa: BLE001 - a wrong answer may raise anything; that is not this check's finding
        return None
    if "tampered" in used:
        return f"{exercise.name} switched off the check that it is your own work: it scores nothing"
    if used:
        return (
            f"{exercise.name} calls {', '.join(used)}, which already solves this exercise: write it yourself "
            "(an answer that hands the work to the finished version scores no points)"
        )
    return None


def hidden_problems(exercise: Exercise, answer, salts: Iterable[str], part: str | None = None) -> list[str]:
    """What is wrong with ``answer`` on the hidden inputs of ``salts``: an empty list when it equals the
    reference on all of them (those of ``part`` only, when given) and uses no finished object."""
    problems = []
    for salt in salts:
        want, _ = probe_values(exercise, exercise.answer_reference, salt, trace=False)
        if part is not None:
            want = {k: v for k, v in want.items() if exercise.part_of(k) == part}
        try:
            got, used = probe_values(exercise, answer, salt)
        except Exception as err:  # noqa: BLE001
            problems.append(f"salt {salt}: the answer raised {type(err).__name__}")
            continue
        if used:
            problems.append(f"salt {salt}: uses {', '.join(used)}")
        wrong = differences(got, want, exercise.tolerance)
        if wrong:
            problems.append(f"salt {salt}: {len(wrong)} of {len(want)} results differ ({', '.join(wrong[:4])})")
    return problems
