"""The checks exercise tests run before comparing, the unsolved-exercise guard, and LoRA layers of any class."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from qlora_course import checks, lora


class AlwaysEqual:
    def __eq__(self, other):
        return True

    def __float__(self):
        return 1.0


def test_expect_tensor_says_what_is_wrong():
    t = torch.zeros(2, 3)
    assert checks.expect_tensor(t, "x", shape=(2, 3), dtype=torch.float32) is t
    for value, match in ((AlwaysEqual(), "should be a torch.Tensor, got AlwaysEqual"), ([1.0], "got list")):
        with pytest.raises(AssertionError, match=match):
            checks.expect_tensor(value, "x")
    with pytest.raises(AssertionError, match=r"shape \(2, 3\), got \(3, 2\)"):
        checks.expect_tensor(t.T, "x", shape=(2, 3))
    with pytest.raises(AssertionError, match="torch.int64, got torch.float32"):
        checks.expect_tensor(t, "x", dtype=torch.int64)
    with pytest.raises(AssertionError, match="NaN or infinite"):
        checks.expect_tensor(torch.tensor([1.0, float("nan")]), "x")
    assert checks.expect_tensor(nn.Parameter(torch.ones(2)), "p").shape == (2,)


def test_expect_number_and_int_accept_every_kind_of_number_and_nothing_else():
    for value in (2, 2.0, np.float32(2.0), np.int64(2), torch.tensor(2.0), torch.tensor([2])):
        assert checks.expect_number(value, "n") == 2.0 and checks.expect_int(value, "n") == 2
    assert checks.expect_int(1.2e9, "n") == 1_200_000_000
    for value, match in (
        (AlwaysEqual(), "should be a number"),
        (True, "should be a number"),
        ("2", "number"),
        (torch.ones(2), "one number"),
        (float("inf"), "finite"),
    ):
        with pytest.raises(AssertionError, match=match):
            checks.expect_number(value, "n")
    with pytest.raises(AssertionError, match="whole number"):
        checks.expect_int(2.5, "n")
    assert checks.expect_pair([1, 2], "p") == (1, 2)
    with pytest.raises(AssertionError, match="pair"):
        checks.expect_pair((1, 2, 3), "p")


def test_expect_bool_takes_what_a_comparison_returns_and_nothing_else():
    import numpy as np

    for value, want in ((True, True), (np.float64(1.0) < 2, True), (torch.tensor(3.0) <= 2, False)):
        assert checks.expect_bool(value, "fits") is want
    for value in (1, 0.0, "no", None, torch.tensor([True, False]), torch.tensor(1.0), AlwaysEqual()):
        with pytest.raises(AssertionError, match="fits should be True or False"):
            checks.expect_bool(value, "fits")


def test_require_stops_on_an_unsolved_exercise():
    assert checks.require(0, "rank_r_approx") == 0 and checks.require([], "rank_r_approx") == []
    for missing in (None, ...):
        with pytest.raises(
            checks.ExerciseNotSolved, match="exercise qlora_bnb_config is not solved yet, and loading the base"
        ):
            checks.require(missing, "qlora_bnb_config", "loading the base")


class PlainLoRA(nn.Module):
    """A learner-style LoRA layer: no adapter_state_dict, its own attribute names besides lora_A/lora_B."""

    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / r

    def forward(self, x):
        return self.base(x) + self.scaling * self.lora_B(self.lora_A(x))


def test_add_lora_takes_any_layer_class_and_adapters_round_trip():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    names = lora.add_lora(model, ["0", "2"], r=2, alpha=4, layer=PlainLoRA)
    assert names == ["0", "2"] and isinstance(model[0], PlainLoRA)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"0.lora_A.weight", "0.lora_B.weight", "2.lora_A.weight", "2.lora_B.weight"}
    state = lora.lora_state_dict(model)
    assert set(state) == trainable
    with torch.no_grad():
        model[2].lora_B.weight.fill_(0.5)
    x = torch.randn(3, 8)
    changed = model(x)
    lora.load_lora_state_dict(model, state)
    assert not torch.allclose(model(x), changed) and torch.count_nonzero(model[2].lora_B.weight) == 0
    with pytest.raises(ValueError, match="does not fit this model"):
        lora.load_lora_state_dict(model, {"0.lora_A.weight": state["0.lora_A.weight"]})
    with pytest.raises(ValueError, match="use_dora picks the package's DoRALinear"):
        lora.add_lora(nn.Sequential(nn.Linear(4, 4)), ["0"], r=1, alpha=1, use_dora=True, layer=PlainLoRA)
