"""Lesson 7's building blocks: a QLoRA model sharded with PyTorch FSDP2, and the checks it needs.

FSDP2 (``torch.distributed.fsdp.fully_shard``) cuts every parameter of a module into one piece per
process (rank) and gathers the whole parameter only while the module runs. A 4-bit model can be sharded
that way when its packed weights are stored in a float dtype (``bnb_4bit_quant_storage=torch.bfloat16``):
the 4-bit codes are then an ordinary float tensor to FSDP. What FSDP cannot shard is bitsandbytes'
*quantization state* (block constants, code book): it lives beside the weight, each rank keeps all of it.

- :func:`four_bit_layers` lists the ``Linear4bit`` modules;
- :func:`check_shardable` refuses, before any process starts, what FSDP would shard wrongly or not at
  all: no 4-bit layer, a packed weight stored as ``uint8``, packed weights that do not split evenly;
- :func:`keep_4bit_on_training_path` turns off bitsandbytes' CPU inference repack for good. Under FSDP it
  is needed for correct numbers (see below);
- :func:`shard_qlora` applies both, then ``fully_shard`` to each decoder layer and to the whole model;
- :func:`rank_bytes` counts what one rank holds (4-bit weights, other parameters, quantization state);
- :func:`launch` runs a script on ``nproc`` processes with ``torchrun`` and says plainly why if it fails.

Why the repack must go. On a CPU with AVX512-BF16 (``bitsandbytes.functional.has_avx512bf16()``), a
``Linear4bit`` called in eval mode on an input that needs no gradient converts its weight *and its shared
quantization state* to a packed layout, in place, once. Without FSDP the packed weight stays on the
module, so weight and state agree. Under FSDP2 the weight the layer sees is re-gathered from the shards on
every forward, in the original layout, while the state stays "packed": every forward after the first
eval one computes with mismatched weight and state. The loss jumps (1.57 to 10.66 on the course model)
and nothing warns. Training forwards alone never repack, so a loop without evaluation is correct; one
evaluation in between is enough to break it. The repacked kernel also has no backward, which breaks
single-process training after an evaluation too (:func:`qlora_course.evaluation.bnb_training_path`
guards that case for one call).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from . import validate
from .validate import flag, positive_int, positive_number

__all__ = [
    "four_bit_layers",
    "check_shardable",
    "keep_4bit_on_training_path",
    "shard_qlora",
    "RankBytes",
    "rank_bytes",
    "decoder_layers",
    "SHARDED_PARTS",
    "per_rank_parts",
    "estimate_per_rank",
    "gathered_layer_bytes",
    "packed_rows",
    "shard_rows",
    "first_departure",
    "fsdp1_unit",
    "adapter_state_dict",
    "free_port",
    "launch",
]


def four_bit_layers(model) -> list:
    """The ``bitsandbytes.nn.Linear4bit`` modules of ``model``, in module order."""
    import bitsandbytes as bnb

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def decoder_layers(model) -> list:
    """The decoder layers of a (PEFT-wrapped) causal LM: FSDP's unit of sharding, one gather per layer."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(base, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise TypeError(f"model must be a Llama-style causal LM with model.model.layers, got {type(base).__name__}")
    return list(layers)


def check_shardable(model, world_size: int) -> None:
    """Raise ``ValueError`` naming the problem if FSDP2 cannot shard ``model``'s 4-bit weights over
    ``world_size`` ranks correctly; return ``None`` if it can.

    - no ``Linear4bit`` layer: not a 4-bit model (load it with a ``BitsAndBytesConfig``);
    - a packed weight stored as ``uint8`` (the default ``bnb_4bit_quant_storage``). ``fully_shard`` itself
      shards it, but the other ways the same model is trained do not: FSDP1 cannot flatten it with the
      float parameters of its layer, and accelerate's FSDP2 leaves it out of sharding (every rank then
      holds the whole 4-bit model). Load with ``bnb_4bit_quant_storage`` set to the dtype of the model's
      other parameters (``torch.bfloat16`` on a GPU), which all three shard;
    - a packed weight whose rows do not split into ``world_size`` equal pieces (FSDP2 would pad it, and
      the per-rank bytes would not be what the arithmetic of lesson 7 says).
    """
    positive_int(world_size, "world_size")
    layers = four_bit_layers(model)
    if not layers:
        raise ValueError(
            "model has no bitsandbytes Linear4bit layer: load it in 4 bits (BitsAndBytesConfig(load_in_4bit=True, "
            "bnb_4bit_quant_storage=torch.bfloat16)) before sharding it as a QLoRA model"
        )
    names = {id(m): n for n, m in model.named_modules()}
    for layer in layers:
        weight = layer.weight
        if not weight.dtype.is_floating_point:
            raise ValueError(
                f"{names[id(layer)]}: its 4-bit weight is stored as {weight.dtype}, which FSDP1 cannot flatten and "
                "accelerate leaves unsharded on every rank: load with BitsAndBytesConfig(..., "
                "bnb_4bit_quant_storage=torch.bfloat16), or whichever float dtype the model's other parameters have"
            )
        if weight.shape[0] % world_size:
            raise ValueError(
                f"{names[id(layer)]}: its packed weight has {weight.shape[0]} rows, which do not split into "
                f"world_size={world_size} equal shards; use a world size that divides {weight.shape[0]}"
            )


def keep_4bit_on_training_path(model) -> int:
    """Turn off bitsandbytes' CPU inference repack on every ``Linear4bit`` of ``model`` for good (see the
    module docstring); returns how many layers. A no-op on a GPU or a CPU without AVX512-BF16, where the
    repack never happens. Raises ``RuntimeError`` if a layer was already repacked (an evaluation ran
    first): load the model again and call this before evaluating it."""
    layers = four_bit_layers(model)
    for layer in layers:
        state = getattr(layer.weight, "quant_state", None) or getattr(layer, "quant_state", None)
        if getattr(state, "packing_format_for_cpu", False):
            raise RuntimeError(
                "a 4-bit layer was already repacked for CPU inference (an eval-mode forward ran): load the model "
                "again and call keep_4bit_on_training_path before any evaluation"
            )
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def shard_qlora(model, world_size: int | None = None, guard: bool = True, check: bool = True):
    """Shard ``model`` (a 4-bit model, usually with LoRA adapters) with FSDP2 in place and return it:
    :func:`check_shardable`, :func:`keep_4bit_on_training_path`, then ``fully_shard`` on each decoder layer
    (one all-gather per layer in forward and backward) and on the whole model (embeddings, final norm,
    output layer). Needs an initialised process group (``torchrun``); ``world_size`` defaults to its size.
    ``guard=False`` leaves the CPU repack on: the configuration that departs silently (lesson 7 shows it).
    ``check=False`` skips :func:`check_shardable` (lesson 7 shards a ``uint8``-stored model that way).
    """
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    if not dist.is_initialized():
        raise RuntimeError(
            "no process group: start the script with torchrun (qlora_course.distributed.launch) and call "
            "torch.distributed.init_process_group first"
        )
    world_size = world_size or dist.get_world_size()
    if flag(check, "check"):
        check_shardable(model, world_size)
    if flag(guard, "guard"):
        keep_4bit_on_training_path(model)
    for layer in decoder_layers(model):
        fully_shard(layer)
    fully_shard(model)
    return model


@dataclass(frozen=True)
class RankBytes:
    """Bytes one rank holds: ``four_bit`` (its shard of the packed 4-bit weights), ``other`` (its shard of
    every other parameter: adapters, embeddings, norms, output layer), ``quant_state`` (block constants
    and code books of the 4-bit layers: never sharded, the same on every rank). ``params`` is
    ``four_bit + other``."""

    four_bit: int
    other: int
    quant_state: int

    @property
    def params(self) -> int:
        return self.four_bit + self.other


def rank_bytes(model) -> RankBytes:
    """What this process holds of ``model``'s parameters between steps (a sharded parameter counts its
    local shard). FSDP2 keeps the root module's parameters gathered after a forward (the backward needs
    them next), so the sharded modules are resharded first, as they are at the start of a step."""
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    validate.module(model, "model")
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()

    four = {id(layer.weight) for layer in four_bit_layers(model)}
    four_bit = other = 0
    for p in model.parameters():
        local = p.to_local() if isinstance(p, DTensor) else p
        size = local.numel() * local.element_size()
        if id(p) in four:
            four_bit += size
        else:
            other += size
    seen, state_bytes = set(), 0
    for layer in four_bit_layers(model):
        state = getattr(layer, "quant_state", None) or getattr(layer.weight, "quant_state", None)
        tensors = [state.absmax, state.code]
        if getattr(state, "nested", False):
            tensors += [state.state2.absmax, state.state2.code, state.offset]
        for t in tensors:
            if isinstance(t, torch.Tensor) and id(t) not in seen:
                seen.add(id(t))
                state_bytes += t.numel() * t.element_size()
    return RankBytes(four_bit, other, state_bytes)


#: The parts of lesson 4's estimate that FSDP's full sharding divides among the ranks; the others
#: (quantization constants, activations) each rank holds whole.
SHARDED_PARTS = ("weights", "lora_weights", "gradients", "optimizer_state")


def per_rank_parts(parts: dict, world_size: int, sharded: bool = True) -> dict[str, float]:
    """``parts`` (``{part: bytes}``, lesson 4's estimate without ``"total"``) as one of ``world_size`` ranks
    holds them, plus ``"total"``: with ``sharded`` (FSDP full sharding) the parts of :data:`SHARDED_PARTS`
    are divided by ``world_size``; the others, and every part without sharding, are held whole."""
    positive_int(world_size, "world_size")
    if not isinstance(parts, dict) or not parts:
        raise TypeError(f"parts must be a non-empty dict {{part: bytes}}, got {type(parts).__name__}")
    validate.real_numbers(list(parts.values()), "parts")
    out = {k: v / world_size if flag(sharded, "sharded") and k in SHARDED_PARTS else v for k, v in parts.items()}
    out["total"] = sum(out.values())
    return out


def estimate_per_rank(config, setup, world_size: int, sharded: bool = True, offload: bool = False) -> dict[str, float]:
    """Lesson 4's estimate (:func:`qlora_course.estimator.estimate_training_memory` of ``config`` and
    ``setup``) for one of ``world_size`` ranks' GPU: ``{part: bytes}`` plus ``"total"``.

    With ``sharded=True`` (FSDP full sharding) the parts of :data:`SHARDED_PARTS` are divided by
    ``world_size`` (:func:`per_rank_parts`); the quantization constants and the activations (each rank
    runs its own batch of ``setup.batch_size``) are not. With ``sharded=False`` (plain data parallelism)
    every rank holds everything. ``offload=True`` (FSDP's CPU offload, sharded only) keeps the sharded
    parts in the CPU's memory: they are reported as ``"cpu"``, outside ``"total"``. The transients (an
    all-gathered layer, communication buffers) are not counted: :func:`gathered_layer_bytes` sizes one.
    """
    from .estimator import estimate_training_memory

    if flag(offload, "offload") and not flag(sharded, "sharded"):
        raise ValueError("offload=True needs sharded=True: FSDP offloads the shards a rank owns")
    parts = estimate_training_memory(config, setup).as_dict()
    parts.pop("total")
    out = per_rank_parts(parts, world_size, sharded)
    if offload:
        out["cpu"] = sum(out[k] for k in SHARDED_PARTS)
        for k in SHARDED_PARTS:
            out[k] = 0.0
        out["total"] = sum(v for k, v in out.items() if k not in ("total", "cpu"))
    return out


def gathered_layer_bytes(config, setup) -> float:
    """Bytes of one decoder layer all-gathered whole: its 4-bit weights, its two norms and its adapters, as
    lesson 4's estimate counts them (the embeddings, final norm and output layer are the root unit's).
    FSDP2 gathers a layer just before it runs and frees it after; with prefetching, two are whole at once."""
    from .estimator import estimate_training_memory

    est = estimate_training_memory(config, setup)
    counts = est.details["param_counts"]
    norm_bytes = 4 if setup.upcast_non_quantized else setup.weight_dtype.itemsize
    layer_norms = counts["norms"] - config.hidden_size  # the final norm is the root's
    return (counts["linear"] / 2 + layer_norms * norm_bytes + est.lora_weights) / config.num_hidden_layers


def packed_rows(out_features: int, in_features: int, storage: torch.dtype) -> int:
    """Rows of the packed weight bitsandbytes stores for an ``out_features x in_features`` layer in 4 bits:
    a ``(rows, 1)`` tensor of dtype ``storage``, two 4-bit codes a byte (``bnb.functional.quantize_4bit``)."""
    positive_int(out_features, "out_features")
    positive_int(in_features, "in_features")
    if not isinstance(storage, torch.dtype):
        raise TypeError(f"storage must be a torch.dtype, got {storage!r}")
    return (out_features * in_features + 1) // (2 * storage.itemsize)


def shard_rows(rows: int, world_size: int) -> list[int]:
    """The rows of a ``rows``-row parameter each of ``world_size`` ranks holds under FSDP2, which cuts dim 0
    as ``torch.chunk`` does: ``ceil(rows / world_size)`` each, the last ranks fewer (or none)."""
    positive_int(rows, "rows")
    positive_int(world_size, "world_size")
    size = -(-rows // world_size)
    return [max(0, min(size, rows - r * size)) for r in range(world_size)]


def first_departure(reference, candidate, tol: float) -> int | None:
    """The first step at which ``candidate`` (a list of losses) leaves ``reference`` by more than ``tol``;
    ``None`` if it never does. A NaN departs; if one run is longer, the first step the other lacks departs."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(f"tol must be a number >= 0, got {validate.shown(tol)}")
    tol = float(tol)
    for name, losses in (("reference", reference), ("candidate", candidate)):
        if isinstance(losses, (str, bytes)) or not isinstance(losses, (list, tuple, torch.Tensor)):
            raise TypeError(f"{name} must be a list of losses, got {type(losses).__name__}")
        if any(isinstance(v, (bool, str)) for v in losses):
            raise TypeError(f"{name} must hold numbers (losses), got {[type(v).__name__ for v in losses][:3]}")
    for i, (a, b) in enumerate(zip(reference, candidate, strict=False)):
        if not abs(float(a) - float(b)) <= tol:
            return i
    if len(reference) != len(candidate):
        return min(len(reference), len(candidate))
    return None


def fsdp1_unit(module) -> bool:
    """FSDP1's ``lambda_auto_wrap_policy`` rule for a 4-bit model with float32 adapters on a 16-bit base:
    a module is its own FSDP unit if it is a decoder layer (one all-gather a layer) or a leaf whose weight
    trains (a LoRA A or B). FSDP1 flattens the parameters each unit owns into one tensor of one dtype:
    the adapters, in their own units, no longer mix their float32 with the layer's 16-bit weights."""
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    validate.module(module, "module")
    if isinstance(module, LlamaDecoderLayer):
        return True
    weight = getattr(module, "weight", None)
    return next(module.children(), None) is None and isinstance(weight, torch.Tensor) and weight.requires_grad


def adapter_state_dict(state_dict: dict, adapter_name: str = "default") -> dict:
    """What PEFT saves of a LoRA model's full ``state_dict`` (``get_peft_model_state_dict``, LoRA on linear
    layers without bias): the ``lora_`` tensors of ``adapter_name``, its name taken out of their keys
    (``...q_proj.lora_A.default.weight`` -> ``...q_proj.lora_A.weight``). Tensors are not copied."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict of tensors (model.state_dict()), got {type(state_dict).__name__}")
    if not isinstance(adapter_name, str) or not adapter_name.strip():
        raise ValueError(f"adapter_name must be an adapter's name (PEFT's first is 'default'), got {adapter_name!r}")
    tag = f".{adapter_name}."
    out = {k.replace(tag, "."): v for k, v in state_dict.items() if "lora_" in k and tag in k}
    lora = [k for k in state_dict if isinstance(k, str) and "lora_" in k]
    if lora and not out:  # an adapter is there, under another name: an empty checkpoint would be a silent loss
        names = sorted({k.split("lora_", 1)[1].split(".")[1] for k in lora if k.split("lora_", 1)[1].count(".") >= 2})
        raise ValueError(f"adapter_name {adapter_name!r} matches no LoRA tensor of state_dict; its adapters: {names}")
    return out


def free_port() -> int:
    """A TCP port nobody listens on now (for torchrun's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script: str | Path, nproc: int, args: list[str] | None = None, timeout: float = 600, log=None) -> str:
    """Run ``script`` on ``nproc`` processes with ``torchrun`` on this machine (a free port, the gloo
    backend on CPUs as the script chooses), one torch thread each; returns the combined output.

    ``log``: a function called with each output line as it comes (``print`` to stream it). Raises
    ``FileNotFoundError`` for a missing script, ``RuntimeError`` with the last lines of the output if a
    process fails (the first failure stops the others), ``TimeoutError`` after ``timeout`` seconds.
    """
    positive_int(nproc, "nproc")
    timeout = positive_number(timeout, "timeout")
    if args is not None and (not isinstance(args, (list, tuple)) or not all(isinstance(a, str) for a in args)):
        raise TypeError(f"args must be a list of strings (the script's command line), got {args!r}")
    script = Path(script)
    if not script.is_file():
        raise FileNotFoundError(f"script {str(script)!r} does not exist")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        str(script),
        *(args or []),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", QLORA_COURSE_THREADS="1", PYTHONUNBUFFERED="1")
    lines, expired = [], threading.Event()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:

        def stop():  # torchrun and every process it started (its workers may run in sessions of their own)
            import psutil

            expired.set()
            try:
                tree = psutil.Process(proc.pid)
                for child in [*tree.children(recursive=True), tree]:
                    child.kill()
            except psutil.NoSuchProcess:
                pass

        timer = threading.Timer(timeout, stop)
        timer.start()
        try:
            for line in proc.stdout:
                lines.append(line)
                if log is not None:
                    log(line.rstrip("\n"))
            proc.wait()
        finally:
            timer.cancel()
    tail = "".join(lines[-25:])
    if expired.is_set():
        raise TimeoutError(f"torchrun on {nproc} processes ran past {timeout:g} s and was stopped:\n{tail}")
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun on {nproc} processes failed (exit code {proc.returncode}):\n{tail}")
    return "".join(lines)
