"""LoRALinear against PEFT, merging, adapters, parameter counts and input checks."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from qlora_course import llama, lora


class OneLayer(nn.Module):
    def __init__(self, linear):
        super().__init__()
        self.proj = linear

    def forward(self, x):
        return self.proj(x)


def pair(r=4, alpha=8, dropout=0.0, use_rslora=False, use_dora=False, d_in=32, d_out=24, seed=0):
    """Our layer and PEFT's on the same base and LoRA weights (B made non-zero)."""
    torch.manual_seed(seed)
    base = nn.Linear(d_in, d_out)
    layer_class = lora.DoRALinear if use_dora else lora.LoRALinear
    ours = layer_class(copy.deepcopy(base), r, alpha, dropout, use_rslora)
    nn.init.normal_(ours.lora_B.weight, std=0.2)
    peft_model = get_peft_model(
        OneLayer(copy.deepcopy(base)),
        LoraConfig(
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            use_rslora=use_rslora,
            use_dora=use_dora,
            target_modules=["proj"],
        ),
    )
    layer = peft_model.base_model.model.proj
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(ours.lora_A.weight)
        layer.lora_B["default"].weight.copy_(ours.lora_B.weight)
        if use_dora:
            torch.testing.assert_close(layer.lora_magnitude_vector["default"].weight, ours.magnitude, rtol=0, atol=0)
            layer.lora_magnitude_vector["default"].weight.copy_(ours.magnitude)
    return ours, peft_model


@pytest.mark.parametrize("use_dora", [False, True])
@pytest.mark.parametrize("use_rslora", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.25])
@pytest.mark.parametrize("training", [True, False])
def test_outputs_equal_peft_bit_for_bit(use_dora, use_rslora, dropout, training):
    ours, theirs = pair(dropout=dropout, use_rslora=use_rslora, use_dora=use_dora)
    ours.train(training)
    theirs.train(training)
    x = torch.randn(3, 5, 32)
    torch.manual_seed(123)
    y_ours = ours(x)
    torch.manual_seed(123)
    y_theirs = theirs(x)
    assert torch.equal(y_ours, y_theirs), (y_ours - y_theirs).abs().max()


def test_gradients_match_peft():
    for use_dora in (False, True):
        ours, theirs = pair(use_dora=use_dora)
        x = torch.randn(6, 32)
        ours(x).square().sum().backward()
        theirs(x).square().sum().backward()
        layer = theirs.base_model.model.proj
        torch.testing.assert_close(ours.lora_A.weight.grad, layer.lora_A["default"].weight.grad)
        torch.testing.assert_close(ours.lora_B.weight.grad, layer.lora_B["default"].weight.grad)
        if use_dora:
            torch.testing.assert_close(ours.magnitude.grad, layer.lora_magnitude_vector["default"].weight.grad)
        assert ours.base.weight.grad is None, "the base weight must stay frozen"


def test_initialisation_leaves_the_layer_unchanged_and_matches_peft_scheme():
    torch.manual_seed(0)
    base = nn.Linear(64, 48)
    x = torch.randn(7, 64)
    for use_dora in (False, True):
        layer = (lora.DoRALinear if use_dora else lora.LoRALinear)(copy.deepcopy(base), r=8, alpha=16)
        assert torch.equal(layer(x), base(x))
        assert torch.count_nonzero(layer.lora_B.weight) == 0
        bound = 1 / 64**0.5  # kaiming_uniform(a=sqrt(5)) on fan_in=64
        assert layer.lora_A.weight.abs().max() <= bound and layer.lora_A.weight.std() > bound / 3
    assert lora.LoRALinear(copy.deepcopy(base), 16, 32, use_rslora=True).scaling == pytest.approx(8.0)
    assert lora.LoRALinear(copy.deepcopy(base), 16, 32).scaling == pytest.approx(2.0)


@pytest.mark.parametrize("use_dora", [False, True])
def test_merge_and_unmerge_change_no_output(use_dora):
    ours, _ = pair(use_dora=use_dora)
    ours.eval()
    original = ours.base.weight.clone()
    x = torch.randn(10, 32)
    y = ours(x)
    ours.merge()
    assert ours.merged
    torch.testing.assert_close(ours(x), y, atol=1e-5, rtol=1e-5)
    # merged: a single matmul with the merged weight, the LoRA factors are not used
    torch.testing.assert_close(ours(x), nn.functional.linear(x, ours.base.weight, ours.base.bias))
    ours.unmerge()
    torch.testing.assert_close(ours(x), y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.base.weight, original, atol=1e-6, rtol=1e-5)


def test_merged_weight_equals_peft_merge():
    for use_dora in (False, True):
        ours, theirs = pair(use_dora=use_dora)
        ours.merge()
        merged = theirs.merge_and_unload()
        torch.testing.assert_close(ours.base.weight, merged.proj.weight, atol=1e-6, rtol=1e-5)


def test_add_lora_picks_dora_as_a_subclass_of_lora():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    plain = copy.deepcopy(model)
    lora.add_lora(model, ["0", "2"], r=2, alpha=4, use_dora=True)
    lora.add_lora(plain, ["0", "2"], r=2, alpha=4)
    assert type(model[0]) is lora.DoRALinear and isinstance(model[0], lora.LoRALinear)
    assert type(plain[0]) is lora.LoRALinear and not hasattr(plain[0], "magnitude")
    assert "DoRA: in=16, out=16, r=2" in repr(model[0]) and "LoRA: in=16" in repr(plain[0])
    assert set(lora.lora_state_dict(model)) - set(lora.lora_state_dict(plain)) == {"0.magnitude", "2.magnitude"}
    x = torch.randn(5, 16)
    torch.testing.assert_close(model(x), plain(x), atol=1e-6, rtol=1e-6)  # both start as the base


def test_two_adapters_swap_on_one_base():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    names = lora.add_lora(model, ["0", "2"], r=2, alpha=4)
    assert names == ["0", "2"]
    base_state = {k: v.clone() for k, v in model.state_dict().items() if ".base." in k}
    x = torch.randn(5, 16)
    adapters = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        for m in model.modules():
            if isinstance(m, lora.LoRALinear):
                nn.init.normal_(m.lora_B.weight)
        adapters.append((lora.lora_state_dict(model), model(x).detach()))
    for adapter, expected in adapters + adapters[:1]:
        lora.load_lora_state_dict(model, adapter)
        assert torch.equal(model(x), expected)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in base_state.items())
    trainable, total = lora.count_parameters(model)
    assert trainable == 2 * (16 + 16) + 2 * (16 + 4)


def test_parameter_count_matches_peft_on_a_llama_config():
    config = LlamaConfig(
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=1000,
    )  # grouped-query attention: k, v are narrower
    for r in (4, 16):
        for targets in llama.TARGET_SETS.values():
            with torch.device("meta"):
                model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=r, lora_alpha=r, target_modules=targets))
            trainable, _ = lora.count_parameters(model)
            assert trainable == lora.lora_trainable_params(config, r, targets)
    assert lora.lora_param_count(4096, 4096, 8) == 65_536
    assert 4096 * 4096 // lora.lora_param_count(4096, 4096, 8) == 256


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(base=nn.Linear(8, 4), r=0, alpha=1), "positive int"),
        (dict(base=nn.Linear(8, 4), r=-2, alpha=1), "positive int"),
        (dict(base=nn.Linear(8, 4), r=5, alpha=1), "larger than min"),
        (dict(base=nn.Conv1d(8, 4, 1), r=2, alpha=1), "wraps an nn.Linear"),
        (dict(base=nn.Linear(8, 4), r=2, alpha=0), "alpha must be positive"),
        (dict(base=nn.Linear(8, 4), r=2, alpha=1, dropout=1.0), "dropout"),
    ],
)
def test_bad_construction_raises_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lora.LoRALinear(**kwargs)


def test_wrong_input_width_and_unknown_targets_raise():
    layer = lora.LoRALinear(nn.Linear(8, 4), r=2, alpha=2)
    with pytest.raises(ValueError, match="in_features=8"):
        layer(torch.randn(3, 7))
    with pytest.raises(ValueError, match="no nn.Linear matches"):
        lora.add_lora(nn.Sequential(nn.Linear(4, 4)), ["q_proj"], r=1, alpha=1)
    with pytest.raises(ValueError, match="unknown Llama linear"):
        lora.lora_trainable_params(LlamaConfig(), 8, ["query"])
    with pytest.raises(ValueError, match="positive int"):
        lora.lora_param_count(0, 4, 1)
