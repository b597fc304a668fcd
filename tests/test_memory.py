"""The training-memory estimator against memory measured on CPU, part by part; the 8-bit optimizer
state against bitsandbytes; the paging simulator; bad input."""

from __future__ import annotations

import dataclasses
import math
import warnings

import bitsandbytes as bnb
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from qlora_course.estimator import (
    TrainingSetup,
    activation_items,
    adamw8bit_state_bytes,
    estimate_training_memory,
    optimizer_state_bytes,
)
from qlora_course.llama import LLAMA_LINEAR
from qlora_course.loading import nf4_config
from qlora_course.meters import LiveBytes, measure_training_memory, saved_tensor_bytes
from qlora_course.models import course_model_path
from qlora_course.paging import PagingSimulator, trace_from_estimates, training_trace

PARTS = ["weights", "quant_constants", "lora_weights", "gradients", "optimizer_state", "activations"]
# a larger random Llama: wider, 32 query heads over 8 key/value heads, a bigger vocabulary
LARGER = dict(
    vocab_size=8000,
    hidden_size=768,
    intermediate_size=2048,
    num_hidden_layers=3,
    num_attention_heads=12,
    num_key_value_heads=4,
    tie_word_embeddings=False,
)
OPTIMIZERS = {"adamw": torch.optim.AdamW, "adamw32bit": bnb.optim.AdamW32bit, "adamw8bit": bnb.optim.AdamW8bit}


def _model(method, which, dtype, gc, dropout, r=16):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    torch.manual_seed(0)
    if method == "qlora":
        qc = nf4_config(dtype)
        model = AutoModelForCausalLM.from_pretrained(
            course_model_path(), quantization_config=qc, dtype=dtype, device_map={"": "cpu"}
        )
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gc, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    else:
        if which == "course":
            model = AutoModelForCausalLM.from_pretrained(course_model_path(), dtype=dtype)
        else:
            model = LlamaForCausalLM(LlamaConfig(**LARGER)).to(dtype)
        if gc:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    if method != "full":
        model = get_peft_model(
            model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=dropout, target_modules=list(LLAMA_LINEAR))
        )
    model.train()
    return model


CASES = [
    # method, model, dtype, gradient checkpointing, LoRA dropout, optimizer
    ("full", "course", torch.float32, False, 0.0, "adamw"),
    ("full", "course", torch.float32, True, 0.0, "adamw"),
    ("full", "course", torch.bfloat16, False, 0.0, "adamw8bit"),
    ("lora", "course", torch.float32, False, 0.0, "adamw"),
    ("lora", "course", torch.float32, False, 0.05, "adamw32bit"),
    ("lora", "course", torch.bfloat16, False, 0.0, "adamw8bit"),
    ("lora", "course", torch.bfloat16, True, 0.1, "adamw"),
    ("qlora", "course", torch.float32, False, 0.0, "adamw"),
    ("qlora", "course", torch.float32, True, 0.05, "adamw8bit"),
    ("qlora", "course", torch.bfloat16, True, 0.0, "adamw32bit"),
    ("full", "larger", torch.float32, False, 0.0, "adamw"),
    ("full", "larger", torch.bfloat16, True, 0.0, "adamw8bit"),
    ("lora", "larger", torch.bfloat16, False, 0.05, "adamw"),
    ("lora", "larger", torch.float32, True, 0.0, "adamw8bit"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "method,which,dtype,gc,dropout,opt",
    CASES,
    ids=[f"{m}-{w}-{str(d)[6:]}-{'gc' if g else 'nogc'}-p{p}-{o}" for m, w, d, g, p, o in CASES],
)
def test_estimate_matches_measured_memory_part_by_part(method, which, dtype, gc, dropout, opt):
    model = _model(method, which, dtype, gc, dropout)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = OPTIMIZERS[opt](trainable, lr=1e-4)
    batch, seq = 3, 48
    ids = torch.randint(3, model.config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(1))
    measured = measure_training_memory(model, optimizer, {"input_ids": ids, "labels": ids})
    setup = TrainingSetup(
        method,
        batch,
        seq,
        weight_dtype=dtype,
        lora_r=16,
        lora_dropout=dropout,
        optimizer=opt,
        gradient_checkpointing=gc,
    )
    est = estimate_training_memory(model.config, setup).as_dict()
    for part in PARTS:
        if measured[part] == 0:
            assert est[part] == 0, part
        else:
            assert est[part] == pytest.approx(measured[part], rel=0.10), (part, est[part], measured[part])
    # without checkpointing the saved tensors are the activations but the logits the model returns
    if not gc:
        assert measured["saved_tensors"] < measured["activations"]
    assert measured["peak"] >= measured["activations"]


def test_gradient_checkpointing_keeps_only_layer_inputs():
    ids = torch.randint(3, 1000, (2, 64), generator=torch.Generator().manual_seed(0))
    out = {}
    for gc in (False, True):
        model = _model("lora", "course", torch.float32, gc, 0.0)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
        out[gc] = measure_training_memory(model, opt, {"input_ids": ids, "labels": ids})["activations"]
    cfg = model.config
    assert out[True] < out[False] / 5
    # what checkpointing still keeps beyond the layer inputs does not depend on the number of layers
    est = estimate_training_memory(
        cfg, TrainingSetup("lora", 2, 64, weight_dtype=torch.float32, gradient_checkpointing=True)
    )
    layer_inputs = cfg.num_hidden_layers * cfg.hidden_size * 4 * 2 * 64
    assert layer_inputs < est.activations < out[False]


def test_activation_items_name_what_autograd_saves():
    cfg = LlamaConfig(**LARGER)
    full = dict(activation_items(cfg, "full", torch.bfloat16))
    lora = dict(activation_items(cfg, "lora", torch.bfloat16, lora_dtype=torch.bfloat16))
    assert full["mlp: gate"] == 2 * 2048 and "down_proj: input (silu(gate) * up)" in full
    assert not any("input (" in k and "LoRA" not in k for k in lora)  # frozen layers save no inputs
    assert sum(lora.values()) < sum(full.values())
    with_dropout = activation_items(cfg, "lora", torch.bfloat16, lora_dropout=0.1)
    assert sum(b for k, b in with_dropout if "noise" in k) == 4 * (3 * 768 + 768 + 2 * 768 + 2048)


@pytest.mark.parametrize("batch,seq", [(1, 128), (4, 128), (2, 512)])
def test_activations_scale_with_tokens(batch, seq):
    cfg = LlamaConfig(**LARGER)
    one = estimate_training_memory(cfg, TrainingSetup("lora", 1, seq)).activations
    many = estimate_training_memory(cfg, TrainingSetup("lora", 1, seq).replace(batch_size=batch)).activations
    cos_sin = 2 * 64 * 2 * seq
    assert many - cos_sin == pytest.approx(batch * (one - cos_sin))


def test_the_papers_780_gb_is_sixteen_bit_weights_gradients_and_32_bit_adam():
    cfg = LlamaConfig(
        vocab_size=32000,
        hidden_size=8192,
        intermediate_size=22016,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=64,
    )
    est = estimate_training_memory(
        cfg, TrainingSetup("full", 1, 1, weight_dtype=torch.bfloat16, optimizer="adamw32bit")
    )
    n = est.details["param_counts"]["total"]
    assert 65.0e9 < n < 65.5e9
    assert est.weights + est.gradients + est.optimizer_state == 12 * n
    assert 780e9 < est.total < 790e9
    qlora = estimate_training_memory(
        cfg,
        TrainingSetup(
            "qlora", 1, 512, lora_r=64, optimizer="adamw32bit", gradient_checkpointing=True, upcast_non_quantized=False
        ),
    )
    assert 45e9 < qlora.total < 48.5e9


# --------------------------------------------------------------------------------------------------
# 8-bit optimizer state
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("numel", [1, 100, 4095, 4096, 4097, 30_000, 65_536, 100_001])
def test_adamw8bit_state_bytes_equal_bitsandbytes(numel):
    p = torch.nn.Parameter(torch.randn(numel))
    opt = bnb.optim.AdamW8bit([p], lr=1e-3)
    p.grad = torch.randn_like(p)
    opt.step()
    state = opt.state[p]
    per_tensor = sum(
        t.numel() * t.element_size()
        for k, t in state.items()
        if isinstance(t, torch.Tensor) and not k.startswith("qmap")
    )
    assert adamw8bit_state_bytes(numel) == per_tensor
    if numel >= 4096:
        assert state["state1"].dtype == torch.uint8 and state["absmax1"].numel() == math.ceil(numel / 256)
    else:
        assert state["state1"].dtype == torch.float32


def test_optimizer_state_bytes_torch_adamw_follows_parameter_dtype():
    for dtype in (torch.float32, torch.bfloat16):
        ps = [torch.nn.Parameter(torch.randn(n, dtype=dtype)) for n in (10, 5000)]
        opt = torch.optim.AdamW(ps)
        for p in ps:
            p.grad = torch.randn_like(p)
        opt.step()
        measured = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values())
        assert optimizer_state_bytes([10, 5000], "adamw", torch.finfo(dtype).bits // 8) == measured


def test_paged_optimizers_fall_back_on_cpu_with_a_warning():
    p = torch.nn.Parameter(torch.randn(5000))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt = bnb.optim.PagedAdamW8bit([p], lr=1e-3)
        p.grad = torch.randn_like(p)
        opt.step()
    assert any("Paged optimizers are not supported on CPU" in str(w.message) for w in caught)
    assert opt.state[p]["state1"].dtype == torch.uint8


# --------------------------------------------------------------------------------------------------
# measuring tools
# --------------------------------------------------------------------------------------------------


def test_live_bytes_follows_allocations_and_frees():
    keep = torch.zeros(10)
    with LiveBytes(exclude=[keep]) as meter:
        a = torch.ones(1000)  # 4,000 bytes
        b = a * 2  # 4,000 more
        t = keep + 1  # 40 bytes
        del t
        assert meter.now() == 8000
        del b
        assert meter.now() == 4000
        c = a.view(10, 100)  # a view allocates nothing
        assert meter.now() == 4000
    assert meter.peak == 8040 and c.shape == (10, 100)


def test_saved_tensor_bytes_excludes_parameters():
    lin = torch.nn.Linear(100, 50, bias=False)
    x = torch.randn(8, 100, requires_grad=True)
    with saved_tensor_bytes(exclude=list(lin.parameters())) as saved:
        lin(x).sum().backward()
    assert saved["bytes"] == x.numel() * 4


# --------------------------------------------------------------------------------------------------
# paging
# --------------------------------------------------------------------------------------------------

MIB = 1024 * 1024


def _spike(paged, prefetch=True, empty_cache=False):
    trace = training_trace(
        steps=4, weights=400 * MIB, optimizer_state=300 * MIB, activations=200 * MIB, spike_step=2, spike_factor=2.5
    )
    sim = PagingSimulator(
        budget_bytes=1000 * MIB,
        page_bytes=2 * MIB,
        bandwidth=25e9,
        paged=paged,
        prefetch=prefetch,
        empty_cache=empty_cache,
    )
    return sim.run(trace, weights=400 * MIB, optimizer_state=300 * MIB)


def test_spike_is_out_of_memory_without_paging():
    r = _spike(paged=False)
    assert r.oom and r.labels[r.oom_at] == "step 2 forward/backward"
    assert r.device_used[r.oom_at] == 400 * MIB + 500 * MIB + 300 * MIB


def test_paging_gets_through_the_spike_and_says_what_it_cost():
    # with the cache emptied after each step, the spike costs one round trip: it needs 900 MiB, leaving room
    # for 50 of the 150 state pages; 100 pages go out and come back at the update
    r = _spike(paged=True, empty_cache=True)
    assert not r.oom and r.peak_device <= 1000 * MIB
    assert r.bytes_to_host == r.bytes_to_device == 100 * 2 * MIB
    assert r.transfer_seconds == pytest.approx(r.bytes_moved / 25e9)
    assert r.reserved == [600 * MIB, 400 * MIB, 600 * MIB, 400 * MIB, 900 * MIB, 400 * MIB, 600 * MIB, 400 * MIB]
    quiet = PagingSimulator(1000 * MIB).run(training_trace(4, 400 * MIB, 300 * MIB, 200 * MIB), 400 * MIB, 300 * MIB)
    assert quiet.bytes_moved == 0 and quiet.transfer_seconds == 0


def test_pytorch_keeps_the_spikes_memory_so_evicted_pages_stream_every_update():
    """PyTorch's caching allocator does not give the spike's activations back to the driver: the pool stays
    at 900 MiB, the 100 evicted pages never find room again, and every later update streams them in and
    out. Only emptying the cache ends it."""
    kept, emptied = _spike(paged=True), _spike(paged=True, empty_cache=True)
    assert not kept.oom and kept.peak_device <= 1000 * MIB
    assert kept.reserved[4:] == [900 * MIB] * 4 and max(kept.reserved[:4]) == 600 * MIB  # never shrinks
    # evicted at the spike (100 pages), then at each of the two later updates 100 pages in and out
    assert kept.bytes_to_host == 300 * 2 * MIB and kept.bytes_to_device == 200 * 2 * MIB
    per_update = 2 * 100 * 2 * MIB / 25e9
    assert kept.seconds_per_event[5] == pytest.approx(per_update) == kept.seconds_per_event[7]
    assert emptied.seconds_per_event[7] == 0 and kept.transfer_seconds > emptied.transfer_seconds
    assert kept.paged_resident[-1] == 50 * 2 * MIB and emptied.paged_resident[-1] == 300 * MIB


def test_page_faults_cost_more_than_prefetch():
    for empty_cache, faults in ((True, 100), (False, 200)):  # without emptying, every later update faults again
        pre, faulting = _spike(True, True, empty_cache), _spike(True, False, empty_cache)
        assert pre.page_faults == 0 and faulting.page_faults == faults
        assert faulting.bytes_moved == pre.bytes_moved
        assert faulting.transfer_seconds > pre.transfer_seconds


def test_paging_cannot_help_when_activations_alone_do_not_fit():
    trace = training_trace(2, 400 * MIB, 100 * MIB, 700 * MIB)
    r = PagingSimulator(1000 * MIB).run(trace, 400 * MIB, 100 * MIB)
    assert r.oom and r.oom_at == 0


def test_paging_frees_at_most_the_optimizer_state_of_an_estimated_run():
    """A trace built from the estimator: a spike that overshoots the budget by less than the optimizer
    state gets through with paging, one that overshoots by more does not."""
    cfg = LlamaConfig(
        vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32
    )
    setup = TrainingSetup("qlora", 1, 512, lora_r=64, optimizer="adamw32bit", gradient_checkpointing=True)
    steady = estimate_training_memory(cfg, setup)
    for seq, survives in [(2048, True), (8192, False)]:
        spike = estimate_training_memory(cfg, setup.replace(seq_len=seq))
        trace, resident, state = trace_from_estimates(steady, spike)
        assert state == int(steady.optimizer_state) and resident + state + int(steady.activations) < steady.total + 1
        budget = int(spike.total) - (int(state * 0.5) if survives else int(state * 1.5))  # overshoot: half / 1.5x
        plain = PagingSimulator(budget, paged=False).run(trace, resident, state)
        paged = PagingSimulator(budget, paged=True).run(trace, resident, state)
        assert plain.oom and paged.oom is not survives
    with pytest.raises(ValueError, match="differ only in activations"):
        trace_from_estimates(steady, estimate_training_memory(cfg, setup.replace(lora_r=8)))


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(method="prefix"), "unknown method"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(seq_len=-5), "seq_len must be a positive integer"),
        (dict(seq_len=2.5), "seq_len must be a positive integer"),
        (dict(optimizer="sgd"), "unknown optimizer"),
        (dict(lora_targets=["qkv"]), "unknown Llama linear layer"),
        (dict(blocksize=100), "block"),
        (dict(lora_dropout=1.0), "lora_dropout"),
    ],
)
def test_estimator_rejects_bad_input(kwargs, match):
    cfg = LlamaConfig(**LARGER)
    kw = dict(method="qlora", batch_size=1, seq_len=16) | kwargs
    with pytest.raises(ValueError, match=match):
        estimate_training_memory(cfg, TrainingSetup(**kw))


def test_estimator_rejects_a_config_that_is_not_a_llama():
    with pytest.raises(ValueError, match="Llama config"):
        estimate_training_memory(object(), TrainingSetup("lora", 1, 16))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(budget_bytes=MIB, page_bytes=2 * MIB), "at least one page"),
        (dict(budget_bytes=0), "at least one page"),
        (dict(budget_bytes=10 * MIB, page_bytes=0), "page_bytes must be a positive integer"),
        (dict(budget_bytes=10 * MIB, bandwidth=0), "bandwidth"),
        (dict(budget_bytes=10 * MIB, empty_cache=1), "empty_cache must be True or False"),
    ],
)
def test_simulator_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PagingSimulator(**kwargs)


def test_trace_rejects_bad_input():
    with pytest.raises(ValueError, match="steps"):
        training_trace(0, 1, 1, 1)
    with pytest.raises(ValueError, match="activations"):
        training_trace(3, 1, 1, -1)
    with pytest.raises(ValueError, match="spike_step"):
        training_trace(3, 1, 1, 1, spike_step=3)


def test_training_setup_is_the_estimators_one_call_style():
    cfg = LlamaConfig(**LARGER)
    setup = TrainingSetup("lora", 4, 128, lora_r=64, optimizer="adamw8bit", gradient_checkpointing=True)
    by_setup = estimate_training_memory(cfg, setup).as_dict()
    # a change of one setting is a new setup, made with replace and checked as any new setup is
    bigger = estimate_training_memory(cfg, setup.replace(batch_size=8))
    assert bigger.activations > by_setup["activations"] and bigger.weights == by_setup["weights"]
    assert setup.replace(batch_size=8) == dataclasses.replace(setup, batch_size=8)
    assert estimate_training_memory(cfg, setup.replace()).as_dict() == by_setup
    with pytest.raises(TypeError, match=r"unknown training setting\(s\) \['lora_rank'\]"):
        setup.replace(lora_rank=8)
    with pytest.raises(ValueError, match="lora_r must be a positive integer, got 0"):
        setup.replace(lora_r=0)
    with pytest.raises(ValueError, match="lora_r"):
        TrainingSetup("lora", lora_r=0)
    for not_a_setup in ("lora", {"method": "lora"}):
        with pytest.raises(TypeError, match="setup must be a TrainingSetup"):
            estimate_training_memory(cfg, not_a_setup)
    with pytest.raises(TypeError):
        estimate_training_memory(cfg, setup, batch_size=8)  # no second way to change a setting


def test_the_estimate_is_the_sum_of_its_parts():
    cfg = LlamaConfig(**LARGER)
    for method in ("full", "lora", "qlora"):
        est = estimate_training_memory(cfg, TrainingSetup(method, 2, 64, lora_dropout=0.1))
        assert est.total == sum(est.as_dict()[p] for p in PARTS)
        assert est.details["trainable_params"] * (2 if method == "full" else 4) == est.gradients
        assert (est.quant_constants > 0) == (method == "qlora") and (est.lora_weights > 0) == (method != "full")


def test_one_check_of_llama_targets_everywhere():
    from qlora_course import estimator, llama, lora

    cfg = LlamaConfig(**LARGER)
    assert llama.check_targets(cfg, ("q_proj", "down_proj")) == ["q_proj", "down_proj"]
    for call in (
        lambda t: llama.check_targets(cfg, t),
        lambda t: lora.lora_trainable_params(cfg, 4, t),
        lambda t: estimator.activation_items(cfg, "lora", lora_targets=t),
        lambda t: estimator.estimate_training_memory(cfg, estimator.TrainingSetup("lora", lora_targets=t)),
    ):
        with pytest.raises(ValueError, match=r"unknown Llama linear layer\(s\) \['qkv'\]"):
            call(["q_proj", "qkv"])
        with pytest.raises(TypeError, match="not a string"):
            call("q_proj")
    shapes = llama.llama_linear_shapes(cfg)
    assert shapes["k_proj"] == (768, 4 * 64) and set(shapes) == set(llama.LLAMA_LINEAR)
    assert sum(llama.parameter_tensor_sizes(cfg)) == llama.llama_param_counts(cfg)["total"]
    assert llama.llama_param_counts(cfg)["total"] == sum(p.numel() for p in LlamaForCausalLM(cfg).parameters())


def test_a_trace_counts_what_a_gpu_adds():
    """With the GPU terms, the CUDA context joins what never pages and the rest (the backward's transients,
    the allocator's reserve) the step's activations: a spike that paging rescues by the estimate alone runs
    out of memory on the GPU budget."""
    from qlora_course.estimator import CONTEXT_TERM, gpu_terms

    cfg = LlamaConfig(
        vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32
    )
    setup = TrainingSetup("qlora", 1, 512, lora_r=64, optimizer="adamw32bit", gradient_checkpointing=True)
    long = setup.replace(seq_len=8192)
    steady, spike = estimate_training_memory(cfg, setup), estimate_training_memory(cfg, long)
    terms, spike_terms = gpu_terms(cfg, setup), gpu_terms(cfg, long)
    trace, resident, state = trace_from_estimates(steady, spike, steady_terms=terms, spike_terms=spike_terms)
    plain_trace, plain_resident, _ = trace_from_estimates(steady, spike)
    context = next(t.bytes for t in terms if t.name == CONTEXT_TERM)
    assert resident == plain_resident + int(context)
    assert trace[0][1] == int(steady.activations + sum(t.bytes for t in terms if t.name != CONTEXT_TERM))
    assert trace[6][1] > plain_trace[6][1]  # the spike (step 3) carries its own, larger terms
    budget = int(spike.total + state * 0.5)  # the estimate alone: fits even unpaged
    assert not PagingSimulator(budget, paged=False).run(plain_trace, plain_resident, state).oom
    assert PagingSimulator(budget, paged=True).run(trace, resident, state).oom
    with pytest.raises(TypeError, match="GpuTerm"):
        trace_from_estimates(steady, spike, steady_terms=[1.0])
    with pytest.raises(ValueError, match="same CUDA context"):
        trace_from_estimates(steady, spike, steady_terms=terms, spike_terms=gpu_terms(cfg, long, context_bytes=0.3e9))


# --------------------------------------------------------------------------------------------------
# the 8-bit optimizer comparison (stored by tools/compare_optimizers.py)
# --------------------------------------------------------------------------------------------------


def test_stored_optimizer_comparison_beats_the_baseline_and_matches_the_settings():
    from qlora_course import optimizer_comparison as oc

    stored = oc.load_stored()
    assert stored["settings"] == oc.SETTINGS, "re-run tools/compare_optimizers.py: the stored settings differ"
    summary = oc.gap_summary(stored["runs"])
    assert len(summary["seeds"]) >= 3
    # a comparison at the majority baseline tests nothing: every run must beat it
    assert min(min(v) for v in summary["accuracy"].values()) > stored["majority"]["accuracy"]
    assert all(len(r["curve"]) == oc.SETTINGS["steps"] for r in stored["runs"])


def test_gap_summary_is_the_mean_and_spread_of_the_per_seed_gaps():
    from qlora_course import optimizer_comparison as oc

    names = list(oc.OPTIMIZERS)
    runs = [
        {"optimizer": n, "seed": s, "accuracy": a}
        for n, accs in zip(names, ((0.5, 0.6, 0.4), (0.45, 0.6, 0.5)), strict=True)
        for s, a in enumerate(accs)
    ]
    summary = oc.gap_summary(runs)
    assert summary["gaps"] == pytest.approx([5.0, 0.0, -10.0])
    assert summary["mean"] == pytest.approx(-5 / 3) and summary["std"] == pytest.approx(7.637626, rel=1e-6)
    with pytest.raises(ValueError, match="every optimizer needs a run for every seed"):
        oc.gap_summary(runs[:-1])
    with pytest.raises(ValueError, match="unknown optimizer"):
        oc.run("SGD", 0, {})
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        oc.run(names[0], -1, {})
