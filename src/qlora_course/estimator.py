"""Where fine-tuning memory goes: an estimate of each part, from a Llama config alone (lesson 4).

Training memory has a few parts, and every widely quoted table counts a different subset of them:

==================  ===========================================================================
``weights``         the frozen (or, for full fine-tuning, trained) base parameters; for QLoRA the
                    packed 4-bit linear weights plus everything left in 16/32 bits
``quant_constants`` QLoRA only: the block absmaxes (8-bit with double quantization) and their
                    second-level scales
``lora_weights``    the adapters' A and B matrices (LoRA and QLoRA)
``gradients``       one gradient per trainable parameter, in the parameter's dtype
``optimizer_state`` AdamW's two moments (and a step counter) per trainable tensor, 32-bit, in the
                    parameter's dtype, or 8-bit blockwise (bitsandbytes)
``activations``     what autograd keeps from the forward pass for the backward pass
==================  ===========================================================================

:func:`estimate_training_memory` computes each part for a :class:`TrainingSetup`. The activation count
is not a rule of thumb: :func:`activation_items` lists, for one decoder layer, every tensor that
PyTorch's autograd saves (read from the saved-tensor hooks of transformers 5 with the ``sdpa``
attention on CPU), so the estimate can be checked item by item against :mod:`qlora_course.meters`,
which measures on CPU what ``torch.cuda.max_memory_allocated`` measures on a GPU.
:func:`check_fit` turns an estimate into a go/no-go for a device.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from .llama import (
    LLAMA_LINEAR,
    check_config,
    check_targets,
    llama_linear_shapes,
    llama_param_counts,
    parameter_tensor_sizes,
    target_list,
)

__all__ = [
    "METHODS",
    "OPTIMIZERS",
    "GB",
    "MB",
    "MemoryEstimate",
    "TrainingSetup",
    "estimate_training_memory",
    "activation_items",
    "optimizer_state_bytes",
    "adamw8bit_state_bytes",
    "FitDecision",
    "available_memory",
    "check_fit",
    "estimate_run",
]

METHODS = ("full", "lora", "qlora")
OPTIMIZERS = ("adamw", "adamw32bit", "adamw8bit")
GB = 1e9
MB = 1e6


def _nbytes(dtype) -> int:
    """Bytes per element of a torch dtype (``torch.bfloat16`` -> 2)."""
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if dtype.is_floating_point:
        return torch.finfo(dtype).bits // 8
    return torch.iinfo(dtype).bits // 8


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------------
# The estimate
# --------------------------------------------------------------------------------------------------


@dataclass
class MemoryEstimate:
    """Bytes of each part of training memory (see the module docstring), and their ``total``."""

    weights: float
    quant_constants: float
    lora_weights: float
    gradients: float
    optimizer_state: float
    activations: float
    details: dict = field(default_factory=dict, repr=False)

    PARTS = ("weights", "quant_constants", "lora_weights", "gradients", "optimizer_state", "activations")

    @property
    def total(self) -> float:
        return sum(getattr(self, p) for p in self.PARTS)

    def as_dict(self) -> dict[str, float]:
        """``{part: bytes}`` for every part plus ``"total"``."""
        out = {p: float(getattr(self, p)) for p in self.PARTS}
        out["total"] = float(self.total)
        return out

    def table(self, unit: float = GB) -> str:
        """The parts as aligned text, in GB (``unit=MB`` for megabytes)."""
        name = "GB" if unit == GB else "MB" if unit == MB else f"x{unit:g} B"
        rows = [f"{p:<16} {getattr(self, p) / unit:>10.3f} {name}" for p in self.PARTS]
        rows.append(f"{'total':<16} {self.total / unit:>10.3f} {name}")
        return "\n".join(rows)


def adamw8bit_state_bytes(numel: int, blocksize: int = 256, min_8bit_size: int = 4096) -> int:
    """Bytes of bitsandbytes' 8-bit AdamW state for one parameter tensor of ``numel`` elements.

    Two moments as uint8 codes (1 byte per element each) plus one float32 absmax per block of
    ``blocksize`` for each moment; tensors under ``min_8bit_size`` elements keep two float32 moments
    (8 bytes per element). The two 256-entry code tables (qmap1, qmap2) are shared by all tensors and
    counted by :func:`optimizer_state_bytes`, not here.
    """
    _positive_int(numel, "numel")
    _positive_int(blocksize, "blocksize")
    _positive_int(min_8bit_size, "min_8bit_size")
    if numel < min_8bit_size:
        return 8 * numel
    return 2 * numel + 2 * 4 * math.ceil(numel / blocksize)


def optimizer_state_bytes(sizes, optimizer: str = "adamw", param_bytes: int = 4) -> int:
    """Bytes of optimizer state for trainable tensors with element counts ``sizes``.

    - ``"adamw"``: ``torch.optim.AdamW``: two moments in the parameter's dtype (``param_bytes`` each)
      and a float32 step counter per tensor.
    - ``"adamw32bit"``: bitsandbytes' (paged) AdamW: two float32 moments, whatever the parameter dtype.
    - ``"adamw8bit"``: bitsandbytes' (paged) AdamW8bit: :func:`adamw8bit_state_bytes` per tensor plus
      the two shared 256-entry float32 code tables.
    """
    sizes = list(sizes)
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in sizes):
        raise ValueError(f"sizes must be non-negative whole numbers of elements, got {sizes[:8]}")
    _positive_int(param_bytes, "param_bytes")
    if optimizer == "adamw":
        return sum(2 * param_bytes * s + 4 for s in sizes)
    if optimizer == "adamw32bit":
        return sum(8 * s for s in sizes)
    if optimizer == "adamw8bit":
        tables = 2 * 256 * 4 if any(s >= 4096 for s in sizes) else 0
        return sum(adamw8bit_state_bytes(s) for s in sizes) + tables
    raise ValueError(f"unknown optimizer {optimizer!r}; choose from {OPTIMIZERS}")


def activation_items(
    config,
    method: str = "full",
    act_dtype=torch.bfloat16,
    *,
    lora_targets=LLAMA_LINEAR,
    lora_dtype=torch.float32,
    lora_dropout: float = 0.0,
    lora_r: int = 16,
) -> list[tuple[str, float]]:
    """What autograd saves for the backward pass of ONE decoder layer, in bytes per token.

    Returns ``[(name, bytes_per_token), ...]`` for activations in ``act_dtype``. The rules behind it
    (transformers 5 Llama, ``sdpa`` attention; read from the saved-tensor hooks):

    - RMSNorm upcasts to float32 and saves that copy and ``rsqrt`` (4h + 4 bytes); its weight's
      gradient also needs the normalised input (h elements), saved only when the weight trains.
    - A linear layer saves its input only when its weight trains (full fine-tuning). A frozen base
      layer, 16-bit or 4-bit, saves nothing but its weight, which is already counted.
    - Rotary embeddings save only cos and sin (once per model, see :func:`estimate_training_memory`);
      attention saves the rotated q and k, v, its output and a float32 log-sum-exp per head.
    - SwiGLU saves gate, up and silu(gate); the product, input of ``down_proj``, when that trains.
    - A LoRA branch saves the r-dimensional ``A x`` and its input: a new copy when the input is cast
      to the adapter's dtype, two (the dropout noise and the result) with dropout. Without a copy the
      modules that read one tensor share it: q, k, v read the normalised hidden state, gate and up
      another, and ``o_proj``'s input is the attention output, saved already.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    a = _nbytes(act_dtype)
    h, i = config.hidden_size, config.intermediate_size
    shapes = llama_linear_shapes(config)
    q_out, kv = shapes["q_proj"][1], shapes["k_proj"][1]
    heads = config.num_attention_heads
    full = method == "full"
    targets = set() if full else set(check_targets(config, lora_targets))
    la = _nbytes(lora_dtype) if lora_dtype is not None else a
    items: list[tuple[str, float]] = []

    def norm(name):
        items.append((f"{name}: float32 input and rsqrt", 4 * h + 4))
        if full:
            items.append((f"{name}: normalised input (the weight trains)", a * h))

    def inputs(modules, in_dim, what, saved_already=False):
        """Saved inputs of the linear layers ``modules``, which all read one tensor (``what``)."""
        if full:
            if not saved_already:
                items.append((f"{'/'.join(modules)}: input ({what})", a * in_dim))
            return
        mods = [m for m in modules if m in targets]
        if la != a or lora_dropout > 0:
            for m in mods:
                if lora_dropout > 0:
                    items.append((f"{m}: LoRA dropout noise", la * in_dim))
                items.append(
                    (f"{m}: LoRA input ({'dropout output' if lora_dropout > 0 else 'cast copy'})", la * in_dim)
                )
        elif mods and not saved_already:
            items.append((f"{'/'.join(mods)}: LoRA input ({what}, shared)", a * in_dim))
        for m in mods:
            items.append((f"{m}: LoRA A x (r={lora_r})", la * lora_r))

    norm("input_layernorm")
    inputs(["q_proj", "k_proj", "v_proj"], h, "normalised hidden state")
    items += [
        ("attention: rotated q", a * q_out),
        ("attention: rotated k", a * kv),
        ("attention: v", a * kv),
        ("attention: output", a * q_out),
        ("attention: log-sum-exp (float32)", 4 * heads),
    ]
    inputs(["o_proj"], q_out, "attention output", saved_already=True)
    norm("post_attention_layernorm")
    inputs(["gate_proj", "up_proj"], h, "normalised hidden state")
    items += [("mlp: gate", a * i), ("mlp: up", a * i), ("mlp: silu(gate)", a * i)]
    inputs(["down_proj"], i, "silu(gate) * up")
    return items


@dataclass(frozen=True)
class TrainingSetup:
    """What the estimator needs to know about a training run, besides the model's config.

    ``method``: ``"full"`` (every parameter trains, in ``weight_dtype``), ``"lora"`` (frozen
    ``weight_dtype`` base + adapters in ``lora_dtype``) or ``"qlora"`` (decoder linear weights NF4 in
    blocks of ``blocksize``, with ``double_quant``; the other parameters in float32 when
    ``upcast_non_quantized``, as PEFT's ``prepare_model_for_kbit_training`` leaves them, else in
    ``weight_dtype``). ``compute_dtype`` (default ``weight_dtype``) is the dtype of the activations.
    ``optimizer``: see :func:`optimizer_state_bytes`; ``master_weights`` adds a float32 copy of every
    trainable 16-bit parameter (mixed-precision training), counted as optimizer state.
    ``logits_kept``: the model returns its logits (transformers does), so they are alive at the end of
    the forward pass. Invalid values raise ``ValueError`` when the setup is made.
    """

    method: str = "qlora"
    batch_size: int = 1
    seq_len: int = 512
    weight_dtype: torch.dtype = torch.bfloat16
    compute_dtype: torch.dtype | None = None
    lora_r: int = 16
    lora_targets: tuple[str, ...] = LLAMA_LINEAR
    lora_dtype: torch.dtype = torch.float32
    lora_dropout: float = 0.0
    optimizer: str = "adamw"
    master_weights: bool = False
    gradient_checkpointing: bool = False
    blocksize: int = 64
    double_quant: bool = True
    upcast_non_quantized: bool = True
    logits_kept: bool = True

    def __post_init__(self):
        from .nf4 import check_blocksize

        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {METHODS}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose from {OPTIMIZERS}")
        _positive_int(self.batch_size, "batch_size")
        _positive_int(self.seq_len, "seq_len")
        _positive_int(self.lora_r, "lora_r")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        check_blocksize(self.blocksize)
        object.__setattr__(self, "lora_targets", tuple(target_list(self.lora_targets)))


def estimate_training_memory(
    config, setup: TrainingSetup | str = "qlora", batch_size: int | None = None, seq_len: int | None = None, **settings
) -> MemoryEstimate:
    """Bytes of each part of the memory of one training step of a Llama (a ``LlamaConfig``).

    ``setup`` is a :class:`TrainingSetup`, or its method name; ``batch_size``, ``seq_len`` and keyword
    ``settings`` (any other field of :class:`TrainingSetup`) change it, so
    ``estimate_training_memory(cfg, "lora", 4, 128, lora_r=64)`` and
    ``estimate_training_memory(cfg, TrainingSetup("lora", 4, 128, lora_r=64))`` are the same estimate.

    ``activations`` is what is held when the forward pass ends: per token, ``num_hidden_layers`` times
    :func:`activation_items` (or, with ``gradient_checkpointing``, one hidden state per layer), plus
    the final norm, the float32 log-probabilities of the loss, cos/sin, the labels and, with
    ``logits_kept``, the logits the model returns. The backward pass adds transients on top (the
    activations' gradients, one recomputed layer with checkpointing), not counted here.
    """
    if batch_size is not None:
        settings["batch_size"] = batch_size
    if seq_len is not None:
        settings["seq_len"] = seq_len
    fields = {f.name for f in dataclasses.fields(TrainingSetup)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise TypeError(f"unknown training setting(s) {unknown}; known: {sorted(fields)}")
    if isinstance(setup, TrainingSetup):
        setup = dataclasses.replace(setup, **settings)
    elif isinstance(setup, str):
        setup = TrainingSetup(settings.pop("method", setup), **settings)
    else:
        raise TypeError(f"setup must be a TrainingSetup or a method name, got {type(setup).__name__}")
    check_config(config)
    method, batch_size, seq_len = setup.method, setup.batch_size, setup.seq_len
    weight_dtype, compute_dtype, lora_r = setup.weight_dtype, setup.compute_dtype, setup.lora_r
    lora_targets, lora_dtype, lora_dropout = setup.lora_targets, setup.lora_dtype, setup.lora_dropout
    optimizer, master_weights = setup.optimizer, setup.master_weights
    gradient_checkpointing, blocksize = setup.gradient_checkpointing, setup.blocksize
    double_quant, upcast_non_quantized = setup.double_quant, setup.upcast_non_quantized
    logits_kept = setup.logits_kept
    from .double_quant import constant_bits_per_parameter

    w = _nbytes(weight_dtype)
    compute_dtype = compute_dtype or weight_dtype
    counts = llama_param_counts(config)
    shapes = llama_linear_shapes(config)
    layers = config.num_hidden_layers
    h, v = config.hidden_size, config.vocab_size
    tokens = batch_size * seq_len

    # weights
    quant_constants = 0.0
    act_dtype = compute_dtype
    if method == "qlora":
        other_bytes = 4 if upcast_non_quantized else w
        weights = counts["linear"] / 2 + (counts["embeddings"] + counts["norms"]) * other_bytes
        # per quantized layer bitsandbytes also keeps its code tables: 16 float32 values for NF4 and,
        # with double quantization, the 256-entry 8-bit map and a float32 offset
        tables = 16 * 4 + (256 * 4 + 4 if double_quant else 0)
        quant_constants = (
            counts["linear"] * constant_bits_per_parameter(blocksize, 256, double_quant) / 8
            + len(shapes) * layers * tables
        )
        if upcast_non_quantized:
            # float32 embeddings and norms make the residual stream float32, and bitsandbytes'
            # Linear4bit returns its input's dtype: every activation is float32, whatever compute_dtype
            act_dtype = torch.float32
    else:
        weights = counts["total"] * w

    # adapters, gradients, optimizer state
    if method == "full":
        lora_weights = 0.0
        trainable = parameter_tensor_sizes(config)
        train_bytes = w
    else:
        targets = check_targets(config, lora_targets)
        trainable = [n for t in targets for n in (lora_r * shapes[t][0], lora_r * shapes[t][1])] * layers
        train_bytes = _nbytes(lora_dtype)
        lora_weights = sum(trainable) * train_bytes
    gradients = sum(trainable) * train_bytes
    optimizer_state = optimizer_state_bytes(trainable, optimizer, train_bytes)
    if master_weights and train_bytes < 4:
        optimizer_state += 4 * sum(trainable)

    # activations
    a = _nbytes(act_dtype)
    items = activation_items(
        config,
        method,
        act_dtype,
        lora_targets=lora_targets,
        lora_dtype=lora_dtype,
        lora_dropout=lora_dropout,
        lora_r=lora_r,
    )
    per_layer = sum(b for _, b in items)
    head_dim = shapes["q_proj"][1] // config.num_attention_heads
    model_level = [
        ("final norm: float32 input and rsqrt", 4 * h + 4),
        ("loss: float32 log-probabilities", 4 * v),
        ("loss: shifted labels (int64)", 8),
    ]
    if method == "full":
        model_level += [
            ("final norm: normalised input", a * h),
            ("lm_head: input", a * h),
            ("embedding: token ids (int64)", 8),
        ]
    elif not gradient_checkpointing:
        # the frozen embedding's output needs no gradient, so the first layer's input norm saves
        # nothing, nor does dropout on the first q/k/v LoRA inputs keep its noise
        first = -(4 * h + 4)
        if lora_dropout > 0:
            first -= _nbytes(lora_dtype) * h * len({"q_proj", "k_proj", "v_proj"} & set(lora_targets))
        model_level.append(("first layer: input norm and dropout noise not saved", first))
    if logits_kept:
        model_level.append(("logits returned by the model", a * v))
    per_token = sum(b for _, b in model_level)
    cos_sin = 2 * head_dim * a * seq_len  # one copy per position, broadcast over the batch
    if gradient_checkpointing:
        layer_part = layers * a * h * tokens
    else:
        layer_part = layers * per_layer * tokens
    activations = layer_part + per_token * tokens + cos_sin
    details = {
        "activation_items_per_layer": items,
        "activation_items_per_model": model_level,
        "activation_bytes_per_token_per_layer": per_layer,
        "param_counts": counts,
        "trainable_params": sum(trainable),
    }
    return MemoryEstimate(
        weights=weights,
        quant_constants=quant_constants,
        lora_weights=lora_weights,
        gradients=gradients,
        optimizer_state=optimizer_state,
        activations=activations,
        details=details,
    )


# --- will it fit? ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitDecision:
    """Whether ``needed`` bytes fit in the ``available`` bytes of ``device``, and a sentence saying why."""

    fits: bool
    needed: float
    available: float
    device: str
    reason: str

    def __bool__(self) -> bool:
        return self.fits


def available_memory(device: str = "cuda") -> float:
    """Bytes a new allocation can still get on ``device``: on a GPU what the driver reports free plus
    what torch's cache holds but does not use; on the CPU the system's available memory."""
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info()
        return float(free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated())
    if device != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    import psutil

    return float(psutil.virtual_memory().available)


def check_fit(
    needed: float, device: str = "cuda", available: float | None = None, headroom: float = 0.9, what: str = "this run"
) -> FitDecision:
    """Does ``needed`` bytes (an estimate's ``total``) fit in ``headroom`` of the ``available`` memory of
    ``device`` (default: :func:`available_memory`)? The headroom leaves room for what an estimate of the
    end of the forward pass leaves out (the backward's transients, the allocator's fragmentation)."""
    if not math.isfinite(needed) or needed < 0:
        raise ValueError(f"needed must be a non-negative number of bytes, got {needed!r}")
    if not 0 < headroom <= 1:
        raise ValueError(f"headroom must be in (0, 1], got {headroom}")
    available = available_memory(device) if available is None else float(available)
    fits = needed <= headroom * available
    verb = "fits in" if fits else "does not fit in"
    reason = (
        f"{what} needs about {needed / GB:.2f} GB (estimate) and {verb} {headroom:.0%} of the "
        f"{available / GB:.2f} GB available on {device}"
    )
    return FitDecision(fits, float(needed), available, device, reason)


def estimate_run(
    config,
    method: str,
    settings: dict,
    compute_dtype,
    *,
    load_dtype=None,
    batch_size: int | None = None,
    seq_len: int | None = None,
    gradient_checkpointing: bool = True,
    use_dora: bool = False,
) -> MemoryEstimate:
    """The estimate for one of lesson 5's runs: ``method`` in ``{"qlora", "lora", "full"}`` with a profile's
    ``settings`` (``r``, ``batch_size``, ``max_length``), every sequence at ``max_length`` (the worst
    case), 32-bit AdamW state (the size of ``paged_adamw_32bit``'s) and float32 adapters.
    ``load_dtype`` is the dtype the base is loaded in (default ``compute_dtype``; full fine-tuning under
    float16 mixed precision loads float32). DoRA adds a magnitude vector per adapted layer."""
    load_dtype = load_dtype or compute_dtype
    est = estimate_training_memory(
        config,
        method,
        batch_size or settings["batch_size"],
        seq_len or settings["max_length"],
        weight_dtype=load_dtype,
        compute_dtype=compute_dtype,
        lora_r=settings["r"],
        lora_dtype=torch.float32,
        lora_dropout=settings.get("lora_dropout", 0.0) if method != "full" else 0.0,
        gradient_checkpointing=gradient_checkpointing,
    )
    if use_dora and method != "full":
        shapes = llama_linear_shapes(config)
        extra = sum(shapes[t][1] for t in LLAMA_LINEAR) * config.num_hidden_layers * 4  # float32 magnitudes
        est = MemoryEstimate(
            est.weights,
            est.quant_constants,
            est.lora_weights + extra,
            est.gradients + extra,
            est.optimizer_state + 2 * extra,
            est.activations,
            est.details,
        )
    return est
