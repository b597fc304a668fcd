"""Results as data, compared with the type rules of the public checks and tolerances a right answer meets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qlora_grading import Tolerance
from qlora_grading.exercise import Exercise, probe_values
from qlora_grading.wire import compare, differences, encode, tolerance_for


def test_results_compare_as_data():
    t = torch.tensor([1.0, 2.0])
    assert compare(encode(t + 1e-7), encode(t)) and not compare(encode(t.double()), encode(t))
    assert not compare(encode(object()), encode(t)) and not compare({"tensor": "torch.float32", "data": "!"}, encode(t))
    assert compare(encode({"a": [1, "x"]}), encode({"a": [1, "x"]})) and not compare(encode(True), encode(1))
    assert not compare(encode({"a": 1, "b": 2}), encode({"a": 1})), "keys must match"


def test_numbers_follow_the_public_checks_type_rules():
    # a whole number: an int, a NumPy int, an integral float, a one-element tensor (as expect_int)
    for got in (6, np.int64(6), 6.0, np.float64(6.0), torch.tensor(6), torch.tensor([6.0])):
        assert compare(encode(got), encode(6)), got
    for got in (6.5, True, "6", [6], torch.tensor([6, 6])):
        assert not compare(encode(got), encode(6)), got
    # a number: any real (as expect_number), within float32's precision of the reference
    for got in (0.25, np.float64(0.25), np.float32(0.25), torch.tensor(0.25), 0.25 * (1 + 1e-6)):
        assert compare(encode(got), encode(0.25)), got
    assert not compare(encode(0.25 * (1 + 1e-3)), encode(0.25)) and not compare(encode(float("nan")), encode(0.25))
    assert compare(encode(float("inf")), encode(float("inf")))


def test_float_tolerance_scales_with_the_dtype_and_the_reference():
    w = torch.tensor([1000.0, 0.001])
    near = w + torch.tensor([0.0, 64 * 2**-23 * 1000 * 0.9])  # under 64 float32 steps of the largest value
    far = w + torch.tensor([0.0, 64 * 2**-23 * 1000 * 1.1])
    assert compare(encode(near), encode(w)) and not compare(encode(far), encode(w))
    # element-wise: each value within its own scale
    assert not compare(encode(near), encode(w), Tolerance(ulps=64, scale="element"))
    assert compare(encode(w * (1 + 2**-22)), encode(w), Tolerance(ulps=8, scale="element"))
    # bit for bit
    assert not compare(encode(w + torch.tensor([0.0, 1e-9])), encode(w), Tolerance(ulps=0))
    # bfloat16 is compared at bfloat16's precision
    b = torch.randn(100, generator=torch.Generator().manual_seed(0)).bfloat16()
    assert compare(encode(b.float().add(1e-3).bfloat16()), encode(b), Tolerance(ulps=2))
    # NaN where the reference has NaN, nowhere else
    nan = torch.tensor([1.0, float("nan")])
    assert compare(encode(nan.clone()), encode(nan)) and not compare(encode(torch.tensor([1.0, 2.0])), encode(nan))


def test_a_relative_tolerance_for_estimates():
    tol = Tolerance(rtol=0.005)
    want = encode(6.25e9)
    assert compare(encode(6.25e9 * 1.004), want, tol) and compare(encode(int(6.25e9 * 0.996)), want, tol)
    assert not compare(encode(6.25e9 * 1.006), want, tol) and not compare(encode(6.25e9 * 1.006), want)
    assert not compare(encode(True), want, tol), "a boolean is not a number of bytes"
    for bad in (-0.1, 1.0, True, "0.01"):
        with pytest.raises(ValueError, match="rtol"):
            Tolerance(rtol=bad)


def test_dtypes_matter_unless_the_exercise_says_not():
    w = torch.arange(4.0)
    assert not compare(encode(w.double()), encode(w))
    assert compare(encode(w.double()), encode(w), Tolerance(dtype_matters=False))
    assert not compare(encode(w.long()), encode(w), Tolerance(dtype_matters=False)), "an int tensor for a float one"
    assert compare(
        encode(torch.tensor([1, 2], dtype=torch.int32)), encode(torch.tensor([1, 2])), Tolerance(dtype_matters=False)
    )


def test_per_result_tolerances():
    tol = {"": Tolerance(ulps=0), "distance": Tolerance(ulps=64)}
    assert tolerance_for(tol, "nf4: distance").ulps == 64 and tolerance_for(tol, "absmax").ulps == 0
    want = {"absmax": encode(torch.tensor([0.0, 2.0])), "distance": encode(torch.tensor([0.5]))}
    got = {"absmax": encode(torch.tensor([1e-8, 2.0])), "distance": encode(torch.tensor([0.5 + 1e-6]))}
    assert differences(got, want, tol) == ["absmax"]
    with pytest.raises(ValueError, match="default"):
        tolerance_for({"distance": Tolerance()}, "absmax")


def test_the_tracer_sees_a_finished_object_however_it_is_reached():
    def finished(x):
        return x + 1

    class Finished:
        def __init__(self):
            self.v = 1

    ex = Exercise("f", 1, probe=lambda answer, g: {"y": answer(2)}, reference=finished, finished=(finished, Finished))
    alias = finished
    for answer in (finished, lambda x: alias(x), lambda x: Finished().v + x, type("Sub", (Finished,), {})):
        _, used = probe_values(ex, answer if not isinstance(answer, type) else lambda x, a=answer: a().v + x, "s")
        assert used, answer
    _, used = probe_values(ex, lambda x: x + 1, "s")
    assert used == []


def test_switching_the_tracer_off_is_seen():
    import sys

    def sneaky(x):
        sys.setprofile(None)
        return x + 1

    def finished(x):
        return x + 1

    ex = Exercise("f", 1, probe=lambda answer, g: {"y": answer(2)}, reference=finished, finished=(finished,))
    _, used = probe_values(ex, sneaky, "s")
    assert used == ["tampered"]
