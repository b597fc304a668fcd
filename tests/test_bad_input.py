"""Bad input gets a clear error that says what is wrong, never a silently wrong answer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from qlora_course import double_quant as dq
from qlora_course import estimator, lora, nf4, paging
from qlora_course.finetune import collate, train_sft, warmup_cosine


def test_pack_4bit_takes_only_flat_even_indices_0_to_15():
    good = torch.tensor([0, 15, 7, 8])
    assert torch.equal(nf4.unpack_4bit(nf4.pack_4bit(good), 4), good)
    for bad, error in [
        (torch.tensor([16, 0]), ValueError),
        (torch.tensor([-1, 0]), ValueError),
        (torch.tensor([0.0, 1.0]), TypeError),
        (torch.tensor([[0, 1], [2, 3]]), ValueError),
        (torch.tensor([1, 2, 3]), ValueError),
        ([1, 2], TypeError),
    ]:
        with pytest.raises(error):
            nf4.pack_4bit(bad)


def test_unpack_4bit_checks_n():
    packed = nf4.pack_4bit(torch.tensor([1, 2, 3, 4]))
    for n in (5, -1, 2.0, True):
        with pytest.raises(ValueError, match="n must be"):
            nf4.unpack_4bit(packed, n)
    with pytest.raises(TypeError):
        nf4.unpack_4bit(packed.to(torch.int32), 2)


@pytest.mark.parametrize(
    "code",
    [
        torch.tensor([0.0, float("nan")]),
        torch.tensor([-1.5, 0.0, 1.0]),
        torch.tensor([]),
        torch.zeros(17),
        torch.zeros(2, 2),
        torch.tensor([0, 1]),
    ],
)
def test_a_4bit_code_must_be_1_to_16_finite_values_in_the_unit_interval(code):
    with pytest.raises((ValueError, TypeError)):
        nf4.quantize_blockwise_4bit(torch.randn(64), code, 64)


def test_dequantizing_to_an_integer_dtype_is_refused():
    packed, absmax = nf4.quantize_nf4(torch.randn(128), 64)
    with pytest.raises(TypeError, match="floating-point"):
        nf4.dequantize_nf4(packed, absmax, (128,), 64, dtype=torch.long)
    with pytest.raises(TypeError, match="compute_dtype"):
        nf4.NF4Linear(torch.randn(32, 64), compute_dtype=torch.long)


def test_lora_layer_refuses_infinite_alpha_and_dora_on_a_zero_row():
    for alpha in (math.inf, math.nan, -1, 0, True):
        with pytest.raises(ValueError, match="alpha"):
            lora.LoRALinear(nn.Linear(8, 8), 2, alpha)
    base = nn.Linear(8, 4)
    with torch.no_grad():
        base.weight[1] = 0
    with pytest.raises(ValueError, match=r"row\(s\) \[1\]"):
        lora.DoRALinear(base, 2, 4)
    assert torch.isfinite(lora.LoRALinear(base, 2, 4)(torch.randn(3, 8))).all(), "plain LoRA is fine there"


def test_a_target_string_is_not_read_letter_by_letter():
    from transformers import LlamaConfig

    model = nn.Sequential()
    model.add_module("q_proj", nn.Linear(4, 4))
    with pytest.raises(TypeError, match="letter by letter"):
        lora.add_lora(model, "q_proj", r=2, alpha=4)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
    )
    with pytest.raises(TypeError, match="letter by letter"):
        lora.lora_trainable_params(config, 4, "q_proj")
    with pytest.raises(TypeError, match="letter by letter"):
        estimator.estimate_training_memory(config, estimator.TrainingSetup("lora", lora_targets="q_proj"))
    assert lora.lora_trainable_params(config, 4, ["q_proj"]) == 2 * 4 * (64 + 64)


def test_evaluation_limits_must_be_positive():
    from datasets import Dataset

    from qlora_course.evaluation import _limit

    rows = Dataset.from_list([{"prompt": "a", "completion": " b"}] * 3)
    assert _limit(rows, None) == 3 and _limit(rows, 2) == 2 and _limit(rows, 10) == 3
    for bad in (-1, 0, 1.5, True):
        with pytest.raises(ValueError, match="limit"):
            _limit(rows, bad)


def test_memory_helpers_refuse_negative_and_zero_sizes():
    with pytest.raises(ValueError, match="blocksize"):
        estimator.adamw8bit_state_bytes(10_000, blocksize=0)
    with pytest.raises(ValueError, match="min_8bit_size"):
        estimator.adamw8bit_state_bytes(10_000, min_8bit_size=-1)
    with pytest.raises(ValueError, match="non-negative"):
        estimator.optimizer_state_bytes([100, -5])
    with pytest.raises(ValueError, match="non-negative"):
        estimator.optimizer_state_bytes([1.5])
    for factor in (-1.0, 0.0, math.inf):
        with pytest.raises(ValueError, match="spike_factor"):
            paging.training_trace(3, 10, 10, 10, spike_step=1, spike_factor=factor)
    with pytest.raises(ValueError):
        paging.PagingSimulator(budget_bytes=-5)


def test_finetune_helpers_check_their_input():
    with pytest.raises(ValueError, match="one label per token"):
        collate([{"input_ids": [1, 2, 3], "labels": [1, 2]}], pad_token_id=0)
    with pytest.raises(ValueError, match="empty"):
        collate([], pad_token_id=0)
    for args in ((-1, 10, 2), (10, 10, 2), (3, 10, -1), (1.5, 10, 2)):
        with pytest.raises(ValueError):
            warmup_cosine(*args)
    values = [warmup_cosine(s, 10, 2) for s in range(10)]
    assert values[:3] == [0.5, 1.0, 1.0] and all(a >= b for a, b in zip(values[2:], values[3:], strict=False))
    assert 0.1 < values[-1] < 0.2
    with pytest.raises(ValueError, match="lr"):
        train_sft(nn.Linear(2, 2), None, {"prompt": [], "completion": []}, lr=math.nan)


def test_double_quantization_with_a_block_larger_than_the_data_allocates_no_padding():
    absmax = torch.rand(100)
    q, absmax2, offset = dq.double_quantize(absmax, blocksize=2**40)  # would be 4.4 TB of padding
    assert q.shape == (100,) and absmax2.shape == (1,)
    assert torch.equal(q, dq.double_quantize(absmax, blocksize=256)[0]), "one block either way"
    assert torch.allclose(dq.dequantize_absmax(q, absmax2, offset, blocksize=2**40), absmax, atol=0.01)


@pytest.mark.parametrize(
    "name, match",
    [
        ("/no/such/folder", "no such folder"),
        ("./nowhere/model", "no such folder"),
        ("org/", "unknown profile"),
        ("a b/c", "unknown profile"),
        ("org/na me", "unknown profile"),
        ("org/name..", "unknown profile"),
    ],
)
def test_a_missing_path_or_malformed_id_gets_the_courses_message(name, match):
    from qlora_course.profiles import resolve_profile

    with pytest.raises(ValueError, match=match):
        resolve_profile(name)
