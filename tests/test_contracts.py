"""The package's contracts on bad input, case by case: each of these once gave a silently wrong result
or an error from deep inside torch that did not name the argument. ``tests/test_fuzz_contracts.py``
walks the whole public API with bad values by category; these pin the cases learners met."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from qlora_course import estimator, evaluation, finetune, lora, lowrank, meters, models, nf4, paging
from qlora_course.checks import expect_tensor
from qlora_course.llama import LLAMA_LINEAR


def _llama_config(**changes):
    from transformers import LlamaConfig

    sizes = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=8, vocab_size=100)
    return LlamaConfig(**{**sizes, **changes})


def test_1_check_fit_uses_this_machine_and_takes_a_torch_device():
    decision = estimator.check_fit(1e6)  # no device given: this machine's GPU, or its CPU
    assert decision.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert estimator.check_fit(1e6, torch.device("cpu")).device == "cpu"
    assert estimator.check_fit(1e9, "cuda", available=24e9).fits  # a label: another machine's memory
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device='cuda'.*no CUDA GPU.*device='cpu'"):
            estimator.check_fit(1e6, "cuda")
    with pytest.raises(ValueError, match="available"):
        estimator.check_fit(1e6, "cpu", available=-1)


@pytest.mark.parametrize(
    "call",
    [
        lambda m, t: evaluation.perplexity(m, t, "one story"),
        lambda m, t: evaluation.token_agreement(m, m, t, "one story"),
        lambda m, t: evaluation.generate_completions(m, t, "a prompt", progress=False),
    ],
)
def test_2_a_single_string_is_not_read_letter_by_letter(course_model, course_tokenizer, call):
    with pytest.raises(TypeError, match="letter by letter"):
        call(course_model, course_tokenizer)


def test_2_choices_as_a_string_and_evaluation_restores_the_mode(course_model, course_tokenizer):
    from datasets import Dataset

    data = Dataset.from_list([{"prompt": "a b", "completion": " home"}, {"prompt": "c d", "completion": " job"}])
    with pytest.raises(TypeError, match="choices.*letter by letter"):
        evaluation.choice_accuracy(course_model, course_tokenizer, data, choices="home job pet")
    course_model.train()
    try:
        evaluation.perplexity(course_model, course_tokenizer, ["one story"], progress=False)
        assert course_model.training, "perplexity left the model in eval mode"
        evaluation.token_agreement(course_model, course_model, course_tokenizer, ["one story"], progress=False)
        assert course_model.training, "token_agreement left the model in eval mode"
    finally:
        course_model.eval()


def test_3_skip_as_a_string_is_refused_before_anything_changes():
    mlp = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64))
    before = [p.clone() for p in mlp.parameters()]
    for skip in ("lm_head", ("lm_head")):  # the second is the same str: the comma forgotten
        with pytest.raises(TypeError, match="skip.*letter by letter"):
            nf4.quantize_model_weights(mlp, skip=skip)
    assert all(torch.equal(a, b) for a, b in zip(before, mlp.parameters(), strict=True))
    assert nf4.quantize_model_weights(mlp, skip=["lm_head"]) == 2 * 64 * 64


def test_4_entropy_bits_takes_shares_not_counts():
    counts = torch.tensor([5.0, 3.0, 0.0, 8.0])
    with pytest.raises(ValueError, match="sum to 1.*divide them by their sum"):
        nf4.entropy_bits(counts)
    with pytest.raises(TypeError, match="shares must be a floating-point tensor"):
        nf4.entropy_bits(torch.tensor([5, 3, 8]))
    p = [5 / 16, 3 / 16, 8 / 16]
    assert nf4.entropy_bits(counts / counts.sum()) == pytest.approx(-sum(q * math.log2(q) for q in p), rel=1e-9)


def test_5_a_target_listed_twice_is_refused_everywhere():
    config = _llama_config()
    with pytest.raises(ValueError, match=r"target_modules lists \['q_proj'\] more than once"):
        lora.lora_trainable_params(config, 8, ["q_proj", "q_proj", "v_proj"])
    with pytest.raises(ValueError, match="more than once"):
        estimator.TrainingSetup(lora_targets=("q_proj", "q_proj"))
    with pytest.raises(ValueError, match="more than once"):
        lora.add_lora(nn.Sequential(nn.Linear(4, 4)), ["0", "0"], r=2, alpha=4.0)


def test_6_add_lora_checks_every_layer_before_changing_any():
    model = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 2))  # r = 4 is too large for the second layer
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match=r"^1: rank r=4 .*the model was not changed"):
        lora.add_lora(model, ["0", "1"], r=4, alpha=8.0)
    assert all(isinstance(m, nn.Linear) for m in model), "no layer may be wrapped when one fails"
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before, "nothing frozen either"
    lora.add_lora(model, ["0", "1"], r=2, alpha=4.0)
    with pytest.raises(ValueError, match="already has LoRA layers"):
        lora.add_lora(model, ["0", "1"], r=2, alpha=4.0)


@pytest.mark.parametrize("how", ["DatasetDict", "list of dicts"])
def test_7_data_sets_as_learners_hold_them(course_tokenizer, how):
    from datasets import Dataset, DatasetDict

    rows = [{"prompt": "The cat sat on the", "completion": " mat"}] * 3
    if how == "DatasetDict":
        data = DatasetDict({"train": Dataset.from_list(rows)})
        with pytest.raises(TypeError, match=r"DatasetDict.*dataset\['train'\]"):
            finetune.fit_to_length(data, course_tokenizer, 64)
        with pytest.raises(TypeError, match="DatasetDict"):
            evaluation.exact_match(nn.Linear(2, 2), course_tokenizer, data)
        with pytest.raises(TypeError, match="DatasetDict"):
            finetune.train_sft(nn.Linear(2, 2), course_tokenizer, data, steps=1)
    else:
        fitted, counts = finetune.fit_to_length(rows, course_tokenizer, 64)  # converted, not "string indices"
        assert len(fitted) == 3 and counts["kept"] == 3


def test_8_a_constant_weight_has_no_normality_and_leaves_the_report():
    with pytest.raises(ValueError, match="constant"):
        models.weight_normality(torch.zeros(8, 8))
    model = nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 32))
    nn.init.zeros_(model[1].weight)  # as a fresh LoRA B
    rows = models.weight_normality_report(model)
    assert [r["layer"] for r in rows] == ["0"]
    assert all(v == v for r in rows for v in r.values() if isinstance(v, float)), "no NaN row"


def test_9_meta_tensors_are_counted_apart():
    with torch.device("meta"):
        a, b = torch.empty(100, 64), torch.empty(1000, 80)
    assert meters.tensor_bytes([a, b]) == (100 * 64 + 1000 * 80) * 4
    assert meters.tensor_bytes([a, a[:10], a.view(-1)]) == 100 * 64 * 4, "views of one tensor count once"


def test_10_a_4bit_layer_is_refused_with_the_tool_to_use():
    import bitsandbytes as bnb

    layer = bnb.nn.Linear4bit(64, 64, compute_dtype=torch.float32, quant_type="nf4")
    layer.weight = bnb.nn.Params4bit(layer.weight.data, requires_grad=False, quant_type="nf4")._quantize("cpu")
    with pytest.raises(ValueError, match="4-bit.*PEFT"):
        lora.LoRALinear(layer, r=4, alpha=8.0)
    with pytest.raises(ValueError, match="4-bit.*PEFT"):
        lora.add_lora(nn.Sequential(layer), ["0"], r=4, alpha=8.0)


def test_11_bootstrap_interval_wants_one_value_per_text():
    with pytest.raises(ValueError, match="values must be 1-D"):
        evaluation.bootstrap_interval(torch.rand(10, 2))
    with pytest.raises(ValueError, match="n_boot"):
        evaluation.bootstrap_interval(torch.rand(10), n_boot=0)


def test_12_dequantize_takes_an_int_shape_and_refuses_negative_ones():
    packed, absmax = nf4.quantize_nf4(torch.randn(128))
    assert nf4.dequantize_nf4(packed, absmax, 128).shape == (128,)
    for bad in ((-2, -64), (0, 128), 128.0):
        with pytest.raises(ValueError, match="shape"):
            nf4.dequantize_nf4(packed, absmax, bad)


def test_13_training_setup_checks_dtypes_when_made():
    assert estimator.TrainingSetup(weight_dtype="bf16").weight_dtype == torch.bfloat16  # the name is read
    with pytest.raises(ValueError, match="weight_dtype must be one of"):
        estimator.TrainingSetup(weight_dtype="bf61")
    with pytest.raises(TypeError, match="lora_dtype must be a torch.dtype"):
        estimator.TrainingSetup(lora_dtype=4)
    with pytest.raises(ValueError, match="double_quant must be True or False"):
        estimator.TrainingSetup(double_quant="yes")


def test_14_dtype_names_are_read_or_refused_by_name():
    model = nn.Linear(4, 4)
    assert finetune.cast_trainable(model, "bfloat16") == 2 and model.weight.dtype == torch.bfloat16
    assert finetune.training_precision("qlora", "bfloat16")["bf16"]
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        finetune.training_precision("qlora", "float64")
    with pytest.raises(ValueError, match="dtype must be one of"):
        finetune.cast_trainable(model, "int8")


def test_also_seen():
    from qlora_course.methods import training_args
    from qlora_course.settings import TRAINING

    settings = TRAINING["course-tiny"]
    for kwargs, name in (({"steps": 0}, "steps"), ({"learning_rate": 0.0}, "learning_rate")):
        with pytest.raises(ValueError, match=name):  # 0 is a value, refused: not "unset"
            training_args(settings, "out", "qlora", torch.float32, "cpu", **kwargs)
    with pytest.raises(ValueError, match="lora_dropout"):
        estimator.TrainingSetup(lora_dropout=1.0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 10000.0"):
        estimator.TrainingSetup(batch_size=1e4)
    with pytest.raises(ValueError, match="num_key_value_heads"):
        lora.lora_trainable_params(_llama_config(num_key_value_heads=3), 8, LLAMA_LINEAR)
    with pytest.raises(ValueError, match="spike_step"):
        paging.training_trace(10, 1, 1, 1, spike_step=2.5)
    with pytest.raises(ValueError, match="all zeros"):
        lowrank.relative_error(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="all zeros"):
        lowrank.energy_kept(torch.zeros(4, 4), 2)
    with pytest.raises(AssertionError, match="should be torch.float64, got torch.float32"):
        expect_tensor(torch.zeros(2), "x", dtype="float64")
    expect_tensor(torch.zeros(2), "x", dtype="float32")  # the name of the right dtype passes
