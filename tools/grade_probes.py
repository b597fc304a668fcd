"""What `make grade` asks of each answer: probes, run inside the sandbox, and how their results compare.

A probe is the input half of a question's hidden test: it builds inputs (random, from a generator
seeded with the grading run's secret salt, so no table of inputs from an earlier run helps), calls the
learner's answer on them and returns ``{check name: value}``, where every value is data (tensors,
numbers, strings, booleans, lists and dicts of these). It computes no expected value: the trusted
grader runs the same probe on the reference solution, outside the learner's process, and compares the
two results with :func:`same` (a question's tolerance in ``TOLERANCE``).

Probes are written from each question's hidden test cell in ``solutions/`` (same cases, drawn at random
where the hidden test fixes them); ``tests/test_grading.py`` checks that every question has one. A probe
reads the notebook's namespace ``ns`` only for the learner's answer and for state the notebook builds
(the tokenizer, the data set); everything else it imports itself.
"""

from __future__ import annotations

import base64
import binascii
import copy
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

Probe = Callable[[dict, torch.Generator], dict]


def _ints(g: torch.Generator, low: int, high: int, n: int = 1) -> list[int]:
    return torch.randint(low, high, (n,), generator=g).tolist()


def _seed(g: torch.Generator) -> int:
    return _ints(g, 0, 2**31 - 1)[0]


# ---------------------------------------------------------------- lesson 1: low rank and LoRA


def _l1_q1(ns, g):
    W = torch.randn(9, 30, generator=g, dtype=torch.float64)
    out = {f"r={r}": ns["rank_r_approx"](W, r) for r in (1, _ints(g, 2, 8)[0], 9)}
    out["float32"] = ns["rank_r_approx"](W.float(), 2)
    return out


def _l1_q2(ns, g):
    x, W, b = torch.randn(2, 3, 10, generator=g), torch.randn(6, 10, generator=g), torch.randn(6, generator=g)
    A, B = torch.randn(4, 10, generator=g), torch.randn(6, 4, generator=g)
    alpha = float(_ints(g, 1, 16)[0])
    return {"batch": ns["lora_forward"](x, W, b, A, B, alpha, 4)}


def _l1_q3(ns, g):
    LoRALayer, out = ns["LoRALayer"], {}
    for k, (rslora, drop, dtype) in enumerate(((False, 0.0, torch.float32), (True, 0.3, torch.float64))):
        base = nn.Linear(32, 24).to(dtype)
        with torch.no_grad():
            base.weight.copy_(torch.randn(24, 32, generator=g))
            base.bias.copy_(torch.randn(24, generator=g))
        layer = LoRALayer(copy.deepcopy(base), r=6, alpha=12.0, dropout=drop, use_rslora=rslora)
        out[f"{k}.scaling"] = float(layer.scaling)
        out[f"{k}.base frozen"] = [not p.requires_grad for p in layer.base.parameters()]
        out[f"{k}.A, B trained"] = [layer.lora_A.weight.requires_grad, layer.lora_B.weight.requires_grad]
        with torch.no_grad():
            layer.lora_A.weight.copy_(0.1 * torch.randn(6, 32, generator=g))
            layer.lora_B.weight.copy_(0.1 * torch.randn(24, 6, generator=g))
        x = torch.randn(2, 5, 32, generator=g, dtype=dtype)
        seed = _seed(g)
        layer.train()
        torch.manual_seed(seed)
        out[f"{k}.train"] = layer(x)
        layer.eval()
        out[f"{k}.eval"] = layer(x)
        with torch.no_grad():
            layer.merge()
            layer.merge()  # merging twice changes nothing
            out[f"{k}.merged weight"] = layer.base.weight.clone()
            out[f"{k}.merged"] = layer(x)
            layer.unmerge()
            out[f"{k}.unmerged weight"] = layer.base.weight.clone()
            out[f"{k}.unmerged"] = layer(x)
    fresh = LoRALayer(nn.Linear(20, 12), r=4, alpha=8.0)
    a = fresh.lora_A.weight
    out["fresh: B zero"] = bool(torch.count_nonzero(fresh.lora_B.weight) == 0)
    out["fresh: A kaiming-uniform"] = bool(a.abs().max() <= 1 / 20**0.5 and a.std() > 0.1)
    return out


def _l1_q4(ns, g):
    W, A, B = torch.randn(5, 8, generator=g), torch.randn(3, 8, generator=g), torch.randn(5, 3, generator=g)
    return {"merged": ns["merged_weight"](W, A, B, 1.5, 3)}


def _l1_q5(ns, g):
    out = {}
    for k in range(2):
        x, W0, b = torch.randn(3, 7, 16, generator=g), torch.randn(9, 16, generator=g), torch.randn(9, generator=g)
        A, B = torch.randn(4, 16, generator=g), 0.2 * torch.randn(9, 4, generator=g)
        m = torch.linalg.norm(W0, dim=1) * (torch.rand(9, generator=g) + 0.5)
        out[f"case {k}"] = ns["dora_forward"](x, W0, b, A, B, m, 1.5 + k)
    return out


def _l1_q6(ns, g):
    cases = [tuple(_ints(g, 1, 6000, 2) + _ints(g, 1, 65)) for _ in range(4)] + [(10, 3, 1)]
    return {str(c): ns["lora_trainable"](*c) for c in cases}


# ---------------------------------------------------------------- lesson 2: NF4


def _l2_q1(ns, g):
    counts = [torch.tensor([10]), torch.ones(16, dtype=torch.long), torch.randint(0, 50, (12,), generator=g)]
    counts[2][_ints(g, 0, 12)[0]] = 0
    counts[2][0] = 7
    return {f"case {k}": ns["entropy_in_bits"](c) for k, c in enumerate(counts)}


def _l2_q2(ns, g):
    offset = 0.95 + 0.04 * torch.rand(1, generator=g).item()
    return {"default": ns["normal_float_code"](), "other offset": ns["normal_float_code"](offset)}


def _l2_q3(ns, g):
    from qlora_course import nf4

    x = torch.randn(64 * 50, generator=g)
    x[64:128] = 0
    out = {"nf4": ns["quantize_blocks"](x, nf4.nf4_code(), 64)}
    out["int4, blocks of 128"] = ns["quantize_blocks"](x, nf4.int4_code(), 128)
    return out


def _l2_q4(ns, g):
    return {"packed": ns["pack_pairs"](torch.randint(0, 16, (1000,), generator=g))}


def _l2_q5(ns, g):
    from qlora_course import nf4

    out = {}
    for bs, nblocks in ((64, 40), (128, 3), (4096, 2)):
        packed, absmax = nf4.quantize_nf4(torch.randn(bs * nblocks, generator=g), bs)
        out[f"blocks of {bs}"] = ns["dequantize_blocks"](packed.flatten(), absmax, nf4.nf4_code(), bs)
    out["given code"] = ns["dequantize_blocks"](
        nf4.pack_4bit(torch.arange(16)), torch.tensor([1.0]), torch.arange(16.0), 16
    )
    return out


# ---------------------------------------------------------------- lesson 3: double quantization


def _l3_q1(ns, g):
    cases = [(128,), (32, 128), (4096, 64)] + [(2 ** _ints(g, 5, 13)[0], 2 ** _ints(g, 5, 9)[0])]
    return {str(c): ns["constant_bits"](*c) for c in cases}


def _l3_q2(ns, g):
    return {"map": ns["dynamic_map_signed"]()}


def _l3_q3(ns, g):
    a = torch.rand(1024, generator=g) * 0.1 + 0.02
    out = ns["centre_and_scale"](a)
    if not (isinstance(out, (tuple, list)) and len(out) == 3):
        return {"three results": False}
    scaled, absmax2, offset = out
    return {"three results": True, "scaled": scaled, "absmax2": absmax2, "offset": offset}


def _l3_q4(ns, g):
    from qlora_course import double_quant as dq

    x = torch.rand(5000, generator=g) * 2 - 1
    return {
        "dynamic map": ns["nearest_index"](x, dq.dynamic_map(signed=True)),
        "uniform code": ns["nearest_index"](x, torch.linspace(-1, 1, 256)),
    }


def _l3_q5(ns, g):
    import bitsandbytes.functional as bnbF

    out = {}
    for k, n in enumerate((64 * 300, 64 * _ints(g, 2, 200)[0], 64 * 1000 + 64)):
        w = torch.randn(n, generator=g) * 0.02
        _, st = bnbF.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
        out[f"case {k}"] = ns["reconstruct_absmax"](
            st.absmax, st.state2.code, st.state2.absmax, st.offset, st.state2.blocksize
        )
    q = torch.tensor(_ints(g, 0, 256), dtype=torch.uint8)
    out["given code"] = ns["reconstruct_absmax"](q, torch.arange(256.0), torch.tensor([2.0]), 0.5)
    return out


# ---------------------------------------------------------------- lesson 4: memory


def _llama_config(g, **kw):
    from transformers import LlamaConfig

    heads = [4, 8][_ints(g, 0, 2)[0]]
    cfg = dict(
        vocab_size=_ints(g, 100, 900)[0],
        hidden_size=16 * heads,
        intermediate_size=_ints(g, 32, 300)[0],
        num_hidden_layers=_ints(g, 1, 4)[0],
        num_attention_heads=heads,
        num_key_value_heads=[1, 2, heads][_ints(g, 0, 3)[0]],
    )
    return LlamaConfig(**{**cfg, **kw})


def _l4_q1(ns, g):
    return {f"config {k}": ns["llama_param_count"](_llama_config(g, tie_word_embeddings=k == 1)) for k in range(3)}


def _l4_q2(ns, g):
    out = {}
    for k, kw in enumerate(({}, {"head_dim": 32})):
        cfg = _llama_config(g, **kw)
        for bpv in (2, 4):
            out[f"config {k}, {bpv} bytes"] = ns["attention_saved_bytes"](cfg, bpv)
    return out


def _l4_q3(ns, g):
    from transformers import LlamaConfig

    llama7b = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32)
    out = {}
    for k, cfg in enumerate((llama7b, _llama_config(g))):
        batch, seq, bpv = _ints(g, 1, 9)[0], _ints(g, 16, 2048)[0], [2, 4][_ints(g, 0, 2)[0]]
        out[f"config {k}"] = ns["checkpointed_layer_inputs"](cfg, batch, seq, bpv)
    return out


def _l4_q4(ns, g):
    sizes = [100, 4095, 4096, 4097, 65_536] + _ints(g, 1, 2_000_000, 2)
    return {str(n): ns["adamw8bit_bytes"](n) for n in sizes}


def _l4_q5(ns, g):
    cases = [[4096, 4096, 10], [5000], [1, 2, 3], _ints(g, 1, 300_000, 4)]
    return {f"{c}, {eight}": ns["bnb_adamw_state_bytes"](list(c), eight) for c in cases for eight in (False, True)}


# ---------------------------------------------------------------- lesson 5: QLoRA fine-tuning


def _l5_rows(ns, g, n):
    train = ns["data"]["train"]
    return [train[i] for i in _ints(g, 0, len(train), n)]


def _l5_q1(ns, g):
    tok, out = ns["tokenizer"], {}
    for k, row in enumerate(_l5_rows(ns, g, 4)):
        out[f"row {k}"] = ns["completion_only_example"](tok, row["prompt"], row["completion"])
    out["short"] = ns["completion_only_example"](tok, "abc", " d")
    return out


def _l5_q2(ns, g):
    from qlora_course.finetune import tokenize_example

    tok = ns["tokenizer"]
    rows = [tokenize_example(tok, r["prompt"], r["completion"]) for r in _l5_rows(ns, g, 7)]
    rows.append({"input_ids": [tok.bos_token_id, 11], "labels": [-100, 11]})
    return {
        "batch": ns["pad_batch"](rows, tok.pad_token_id),
        "one row": ns["pad_batch"]([{"input_ids": [4, 4], "labels": [-100, 4]}], 99),
    }


def _l5_q3(ns, g):
    from transformers import BitsAndBytesConfig

    out = {}
    for dt in (torch.float16, torch.bfloat16, torch.float32):
        c = ns["qlora_bnb_config"](dt)
        keys = ("load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant")
        out[str(dt)] = {"is a BitsAndBytesConfig": isinstance(c, BitsAndBytesConfig)} | {
            k: getattr(c, k, None) for k in keys
        }
        out[str(dt)]["compute dtype"] = str(getattr(c, "bnb_4bit_compute_dtype", None))
    return out


def _l5_q4(ns, g):
    import bitsandbytes as bnb
    from transformers import AutoModelForCausalLM

    from qlora_course.methods import nf4_config

    dtype = ns["compute_dtype"]
    base4 = AutoModelForCausalLM.from_pretrained(
        ns["profile"].model_path(), quantization_config=nf4_config(dtype), dtype=dtype, device_map=ns["DEVICE_MAP"]
    )
    names = ["a_proj", "wo", "fc_in", "w2", "dense"]
    a, b = (names[i] for i in torch.randperm(len(names), generator=g)[:2].tolist())
    tiny = nn.Sequential()
    for block in ("b0", "b1"):
        tiny.add_module(
            block, nn.ModuleDict({a: bnb.nn.Linear4bit(64, 64), b: bnb.nn.Linear4bit(64, 64), "act": nn.ReLU()})
        )
    tiny.add_module("lm_head", nn.Linear(64, 3))
    return {"course model": ns["lora_target_modules"](base4), "other model": ns["lora_target_modules"](tiny)}


def _l5_q5(ns, g):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from qlora_course.models import course_model_path

    layers = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    targets = [layers[i] for i in torch.randperm(len(layers), generator=g)[: _ints(g, 1, 4)[0]].tolist()]
    r, alpha = [2, 4, 8][_ints(g, 0, 3)[0]], float(_ints(g, 1, 17)[0])
    torch.manual_seed(_seed(g))
    peft = get_peft_model(
        AutoModelForCausalLM.from_pretrained(course_model_path(), dtype=torch.bfloat16),
        LoraConfig(r=r, lora_alpha=alpha, target_modules=targets),
    )
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    folder = Path(tempfile.mkdtemp())
    peft.save_pretrained(folder)
    got = ns["merge_adapter_16bit"](
        AutoModelForCausalLM.from_pretrained(course_model_path(), dtype=torch.bfloat16), folder, alpha / r
    )
    params = dict(got.named_parameters()) if isinstance(got, nn.Module) else {}
    keep = [n for n in params if any(t in n for t in targets)] + ["model.layers.0.input_layernorm.weight"]
    return {"a model": isinstance(got, nn.Module)} | {n: params[n] for n in keep if n in params}


PROBES: dict[str, dict[str, Probe]] = {
    "01_lowrank_lora": {"q1": _l1_q1, "q2": _l1_q2, "q3": _l1_q3, "q4": _l1_q4, "q5": _l1_q5, "q6": _l1_q6},
    "02_nf4": {"q1": _l2_q1, "q2": _l2_q2, "q3": _l2_q3, "q4": _l2_q4, "q5": _l2_q5},
    "03_double_quant": {"q1": _l3_q1, "q2": _l3_q2, "q3": _l3_q3, "q4": _l3_q4, "q5": _l3_q5},
    "04_memory": {"q1": _l4_q1, "q2": _l4_q2, "q3": _l4_q3, "q4": _l4_q4, "q5": _l4_q5},
    "05_qlora_finetune": {"q1": _l5_q1, "q2": _l5_q2, "q3": _l5_q3, "q4": _l5_q4, "q5": _l5_q5},
}

# (rtol, atol) for floating-point values where the default (1e-5, 1e-6) does not fit
TOLERANCE: dict[tuple[str, str], tuple[float, float]] = {
    ("05_qlora_finetune", "q5"): (2 * 2**-7, 1e-6),  # a 16-bit merge: two bfloat16 steps either way
}


# ---------------------------------------------------------------- data out of the sandbox, and comparison


def encode(value, depth: int = 0):
    """``value`` as JSON data: tensors as ``{"tensor": dtype, "shape", "data": nested list}``; anything
    that is not data becomes ``{"object": its type's name}`` (which matches no reference)."""
    if depth > 20:
        return {"object": "nested too deep"}
    if value is None or type(value) in (bool, int, str):
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, torch.Tensor):
        t = value.detach().to("cpu")
        raw = t.to(torch.float64 if t.is_floating_point() else torch.int64).contiguous().numpy().tobytes()
        return {"tensor": str(t.dtype), "shape": list(t.shape), "data": base64.b64encode(raw).decode("ascii")}
    if type(value) in (list, tuple):
        return [encode(v, depth + 1) for v in value]
    if type(value) is dict and all(type(k) is str for k in value):
        return {"dict": {k: encode(v, depth + 1) for k, v in value.items()}}
    return {"object": type(value).__name__[:60]}


def _array(v) -> torch.Tensor | None:
    """An encoded tensor's values as float64 (read as raw numbers: nothing from the sandbox is executed)."""
    try:
        dtype = np.float64 if "float" in v["tensor"] or "bfloat" in v["tensor"] else np.int64
        a = np.frombuffer(base64.b64decode(v["data"], validate=True), dtype=dtype)
        shape = [int(n) for n in v["shape"]]
        return torch.from_numpy(a.astype(np.float64)).reshape(shape)
    except (KeyError, TypeError, ValueError, RuntimeError, binascii.Error):
        return None


def _number(v):
    """A plain number, or a one-element tensor's value, else None."""
    if type(v) in (int, float):
        return v
    if isinstance(v, dict) and "tensor" in v and v.get("shape") in ([], [1]):
        a = _array(v)
        return None if a is None or a.numel() != 1 else a.item()
    return None


def same(got, want, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    """Whether the learner's encoded result ``got`` equals the reference's ``want`` (floats within tolerance)."""
    if isinstance(want, dict) and "tensor" in want:
        if want.get("shape") == [] and type(got) in (int, float):  # a scalar: a 0-d tensor or a number
            w = _number(want)
            return w is not None and math.isclose(got, w, rel_tol=max(rtol, 1e-9), abs_tol=atol)
        if not (isinstance(got, dict) and got.get("tensor") == want["tensor"] and got.get("shape") == want["shape"]):
            return False
        a, b = _array(got), _array(want)
        if a is None or b is None:
            return False
        return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))
    if isinstance(want, dict) and "dict" in want:
        return (
            isinstance(got, dict)
            and isinstance(got.get("dict"), dict)
            and got["dict"].keys() == want["dict"].keys()
            and all(same(got["dict"][k], w, rtol, atol) for k, w in want["dict"].items())
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(same(a, b, rtol, atol) for a, b in zip(got, want, strict=True))
        )
    if type(want) is bool or want is None or type(want) is str:
        return type(got) is type(want) and got == want
    w = _number(want)
    if w is not None:
        if type(want) is int:  # an int stays an int (a count of bytes or parameters)
            return type(got) is int and got == want
        a = _number(got)
        return a is not None and math.isclose(a, w, rel_tol=max(rtol, 1e-9), abs_tol=atol)
    return False
