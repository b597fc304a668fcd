"""What a CUDA run adds to the estimate (``estimator.gpu_terms``): each term against its formula, the backward
peaks against the CPU meter, the dropout mask CUDA keeps, and ``check_fit`` with terms."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from transformers import LlamaConfig

from qlora_course import estimator
from qlora_course.estimator import (
    ALLOCATOR_RESERVE,
    CONTEXT_TERM,
    CUDA_CONTEXT_BYTES,
    GpuTerm,
    TrainingSetup,
    activation_items,
    backward_transients,
    check_fit,
    estimate_training_memory,
    gpu_terms,
)
from qlora_course.meters import LiveBytes, _quant_state_tensors, saved_tensor_bytes

LLAMA7B = LlamaConfig(
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
)
# lesson 4's T4 run: 7B QLoRA as the paper trains it, float16 on a T4 (no bfloat16)
T4_QLORA = TrainingSetup(
    "qlora", 1, 512, weight_dtype=torch.float16, lora_r=64, optimizer="adamw32bit", gradient_checkpointing=True
)
NAMES = {
    "logits": "loss backward: float32 logits gradients",
    "recomputed": "checkpointing: one layer recomputed",
    "gradients": "one layer's backward: activation gradients",
    "dequantized": "bitsandbytes: one 4-bit weight dequantized",
    "mask": "CUDA dropout keeps a 1-byte mask",
    "context": CONTEXT_TERM,
    "reserve": "caching allocator reserve",
}


def _terms(config, setup, **kw) -> dict[str, GpuTerm]:
    return {t.name: t for t in gpu_terms(config, setup, **kw)}


@pytest.mark.parametrize("seq", [512, 4096, 10240])
def test_each_term_is_its_formula(seq):
    setup = T4_QLORA.replace(seq_len=seq)
    terms = _terms(LLAMA7B, setup)
    assert list(terms) == [NAMES[k] for k in ("logits", "recomputed", "gradients", "dequantized", "context", "reserve")]
    assert all(isinstance(t, GpuTerm) and dataclasses.is_dataclass(t) for t in terms.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        terms[CONTEXT_TERM].bytes = 0
    t = backward_transients(LLAMA7B, setup)
    v, h, i, n = 32000, 4096, 11008, seq  # batch 1
    # the loss's backward: nll_loss's and log_softmax's float32 gradients, B x T x V each
    assert terms[NAMES["logits"]].bytes == t["logits_gradients"] == 2 * n * v * 4
    # the last layer's backward, after the float32 log-probabilities and the final norm's input are freed
    assert t["freed_before_layers"] == n * (4 * v + 4 * h + 4)
    per_layer = sum(b for _, b in activation_items(LLAMA7B, "qlora", torch.float32, lora_r=64))
    assert t["recomputed_layer"] == per_layer * n  # no dropout here: CPU and CUDA agree
    assert t["layer_gradients"] == 2 * i * 4 * n  # float32 stream (PEFT's upcast), float32 adapters
    weight = 4096 * 11008  # gate/up/down: the largest 4-bit weight
    assert t["dequantized_weight"] == weight * 2 + 4 * math.ceil(weight / 64)  # float16 + float32 absmaxes
    assert t["dequantized_weight_lift"] == max(0, t["dequantized_weight"] - i * 4 * n)
    layer = t["recomputed_layer"] + t["layer_gradients"] + t["dequantized_weight_lift"]
    assert t["peak"] == max(t["logits_gradients"], layer - t["freed_before_layers"])
    # the later peak's items share what lifts it above the loss's, in proportion to their sizes
    later = [terms[NAMES[k]].bytes for k in ("recomputed", "gradients", "dequantized")]
    assert sum(later) == pytest.approx(t["peak"] - t["logits_gradients"], abs=1)
    if t["peak"] > t["logits_gradients"]:
        assert later[0] / later[1] == pytest.approx(t["recomputed_layer"] / t["layer_gradients"])
    # the two assumptions
    assert terms[CONTEXT_TERM].bytes == CUDA_CONTEXT_BYTES and terms[CONTEXT_TERM].assumed
    allocated = estimate_training_memory(LLAMA7B, setup).total + t["peak"]
    assert terms[NAMES["reserve"]].bytes == pytest.approx(ALLOCATOR_RESERVE * allocated)
    assert [k for k, term in terms.items() if term.assumed] == [CONTEXT_TERM, NAMES["reserve"]]
    assert all(term.basis for term in terms.values())


def test_the_backward_peaks_do_not_add():
    """At 512 tokens the last layer's backward (recomputed with checkpointing) tops the loss's; by 10,240
    tokens the logits gradients (2 x 4 x 32,000 bytes a token) take over, just."""
    short, long = (backward_transients(LLAMA7B, T4_QLORA.replace(seq_len=n)) for n in (512, 10240))
    for t in (short, long):
        assert t["peak"] < t["logits_gradients"] + t["recomputed_layer"] + t["layer_gradients"]
    assert short["peak"] > short["logits_gradients"] and long["peak"] == long["logits_gradients"]
    plain = backward_transients(LLAMA7B, T4_QLORA.replace(seq_len=10240, gradient_checkpointing=False))
    assert plain["recomputed_layer"] == 0 and plain["peak"] == plain["logits_gradients"]


def test_which_terms_apply():
    lora = _terms(LLAMA7B, TrainingSetup("lora", 1, 512))
    assert NAMES["dequantized"] not in lora and NAMES["recomputed"] not in lora
    full = _terms(LLAMA7B, TrainingSetup("full", 1, 512, gradient_checkpointing=True))
    assert NAMES["recomputed"] in full and NAMES["dequantized"] not in full
    # a float16 load computed in bfloat16: bitsandbytes dequantizes to float16, then casts to bfloat16
    mixed = T4_QLORA.replace(compute_dtype=torch.bfloat16)
    weight = 4096 * 11008
    assert backward_transients(LLAMA7B, mixed)["dequantized_weight"] == weight * 4 + 4 * math.ceil(weight / 64)
    assert backward_transients(LLAMA7B, mixed.replace(double_quant=False))["dequantized_weight"] == weight * 4


def test_cuda_keeps_a_one_byte_dropout_mask():
    """CPU dropout (torch's _dropout_impl) saves its float noise, which the CPU-checked estimate counts; on
    CUDA, torch calls native_dropout, whose backward keeps a bool mask."""
    x = torch.randn(64, 32, requires_grad=True)
    with saved_tensor_bytes() as saved:
        torch.nn.functional.dropout(x, 0.1, training=True).sum().backward()
    assert saved["bytes"] == x.numel() * 4
    assert torch.native_dropout(x.detach(), 0.1, True)[1].dtype == torch.bool
    setup = TrainingSetup("lora", 2, 256, lora_dropout=0.1)  # float32 adapters: 4-byte noise
    mask = _terms(LLAMA7B, setup)[NAMES["mask"]]
    noise = sum(b for name, b in activation_items(LLAMA7B, "lora", lora_dropout=0.1) if "noise" in name)
    layers_noise = noise * 32 - 4 * 4096 * 3  # the first layer's q, k, v keep none (a frozen embedding)
    assert mask.bytes == pytest.approx(-layers_noise * 3 / 4 * 2 * 256)
    # with checkpointing no layer keeps it; the recomputed layer counts the 1-byte mask
    gc = setup.replace(gradient_checkpointing=True)
    assert NAMES["mask"] not in _terms(LLAMA7B, gc)
    cpu_items = sum(b for _, b in activation_items(LLAMA7B, "lora", lora_dropout=0.1))
    assert backward_transients(LLAMA7B, gc)["recomputed_layer"] == (cpu_items - noise * 3 / 4) * 512


def test_assumptions_can_be_varied():
    base = _terms(LLAMA7B, T4_QLORA)
    none = _terms(LLAMA7B, T4_QLORA, context_bytes=0, reserve=0)
    assert none[CONTEXT_TERM].bytes == 0 and none[NAMES["reserve"]].bytes == 0
    assert base[NAMES["logits"]] == none[NAMES["logits"]]
    more = _terms(LLAMA7B, T4_QLORA, reserve=0.2)
    assert more[NAMES["reserve"]].bytes == pytest.approx(2 * base[NAMES["reserve"]].bytes)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: gpu_terms(LLAMA7B, "qlora"), TypeError, "setup must be a TrainingSetup"),
        (lambda: backward_transients(LLAMA7B, {"method": "qlora"}), TypeError, "setup must be a TrainingSetup"),
        (lambda: gpu_terms(object(), T4_QLORA), ValueError, "Llama config"),
        (lambda: gpu_terms(LLAMA7B, T4_QLORA, reserve=1.0), ValueError, r"reserve must be a fraction in \[0, 1\)"),
        (lambda: gpu_terms(LLAMA7B, T4_QLORA, context_bytes=-1), ValueError, "context_bytes must be"),
        (lambda: check_fit(1e9, "cuda", 15e9, terms=[1e9]), TypeError, "terms must be GpuTerm objects"),
        (lambda: check_fit(1e9, "cuda", 15e9, headroom=0), ValueError, "headroom must be in"),
        (lambda: check_fit(-1.0, "cuda", 15e9), ValueError, "needed must be"),
        (lambda: check_fit(1.0, "tpu", 15e9), ValueError, "device must be 'cpu', 'cuda' or 'cuda:N'"),
    ],
)
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --------------------------------------------------------------------------------------------------
# check_fit with terms
# --------------------------------------------------------------------------------------------------


def test_check_fit_without_terms_is_unchanged():
    fit = check_fit(13e9, "cuda", 15e9)  # positional, as lesson 5 and older notebooks call it
    assert fit and fit.needed == 13e9 and "90% of the 15.00 GB" in fit.reason
    assert not check_fit(14e9, "cuda", 15e9, 0.9, "a run") and check_fit(14e9, "cuda", 15e9, 1.0)


def test_check_fit_counts_the_terms_and_says_so():
    est = estimate_training_memory(LLAMA7B, T4_QLORA)
    terms = gpu_terms(LLAMA7B, T4_QLORA)
    extra = sum(t.bytes for t in terms)
    fit = check_fit(est.total, "cuda", available=15e9, what="7B QLoRA", terms=terms)
    assert fit.needed == pytest.approx(est.total + extra)
    assert f"{est.total / 1e9:.2f} GB estimate + {extra / 1e9:.2f} GB of {len(terms)} GPU terms" in fit.reason
    assert "100% of the 15.00 GB" in fit.reason  # the terms name what the 10% stood for
    # a run that fits the estimate with 10% to spare, but not once the GPU terms are counted
    tight = est.total / 0.9
    assert check_fit(est.total, "cuda", available=tight)
    assert not check_fit(est.total, "cuda", available=tight, terms=terms)
    assert not check_fit(est.total, "cuda", available=est.total + extra, headroom=0.95, terms=terms)


def test_a_measured_gpu_already_holds_the_context(monkeypatch):
    monkeypatch.setattr(estimator, "available_memory", lambda device="cuda": 15e9)
    terms = gpu_terms(LLAMA7B, T4_QLORA)
    fit = check_fit(5e9, "cuda", terms=terms)
    assert fit.needed == pytest.approx(5e9 + sum(t.bytes for t in terms if t.name != CONTEXT_TERM))
    assert check_fit(5e9, "cuda", available=15e9, terms=terms).needed == pytest.approx(
        5e9 + sum(t.bytes for t in terms)
    )


# --------------------------------------------------------------------------------------------------
# the backward's peaks against the CPU meter
# --------------------------------------------------------------------------------------------------


def _backward_excess(model, ids) -> tuple[int, int]:
    """(bytes alive when the forward ends, most bytes the backward adds on top) of one step, measured with
    the gradients allocated beforehand (as with gradient accumulation, as the estimate counts them)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.grad = torch.zeros_like(p)
    exclude = list(model.parameters()) + list(model.buffers()) + _quant_state_tensors(model) + [ids]
    meter = LiveBytes(exclude=exclude + [p.grad for p in trainable])
    with meter:
        out = model(input_ids=ids, labels=ids)
        after = meter.now()
        meter.peak = after
        out.loss.backward()
    return after, meter.peak - after


CASES = [
    # method, model, dtype, gradient checkpointing, batch, length: which peak wins
    ("lora", "course", torch.float32, False, 3, 48),  # the loss's
    ("qlora", "course", torch.float32, False, 3, 48),  # the loss's
    ("lora", "course", torch.float32, True, 2, 128),  # the recomputed layer's
    ("qlora", "course", torch.float32, True, 3, 48),  # the layer's, lifted by the dequantized weight
    ("qlora", "course", torch.float32, True, 4, 96),  # the layer's; the weight hides under two gradients
    ("lora", "course", torch.bfloat16, True, 3, 48),  # bfloat16 stream, float32 adapters
    ("full", "course", torch.float32, True, 3, 48),
    ("lora", "larger", torch.bfloat16, True, 3, 48),  # a wider vocabulary: the loss's
]


@pytest.mark.slow
@pytest.mark.parametrize("method,which,dtype,gc,batch,seq", CASES)
def test_backward_transients_match_the_cpu_meter(method, which, dtype, gc, batch, seq):
    from test_memory import _model

    model = _model(method, which, dtype, gc, 0.0)
    ids = torch.randint(3, model.config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(1))
    after, excess = _backward_excess(model, ids)
    setup = TrainingSetup(method, batch, seq, weight_dtype=dtype, gradient_checkpointing=gc)
    t = backward_transients(model.config, setup)
    assert t["peak"] == pytest.approx(excess, rel=0.02), (t, excess)
    if not gc:  # the loss's peak: exact but for the labels (8 bytes a token) freed before it
        assert excess == t["logits_gradients"] - 8 * batch * seq
