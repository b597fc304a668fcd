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

:func:`estimate_training_memory` computes each part for a :class:`TrainingSetup`, one small function per
part; ``setup.replace(seq_len=2048)`` makes the same run with one setting changed. The activation count
is not a rule of thumb: :func:`activation_items` lists, for one decoder layer, every tensor that
PyTorch's autograd saves (read from the saved-tensor hooks of transformers 5 with the ``sdpa``
attention on CPU), so the estimate can be checked item by item against :mod:`qlora_course.meters`,
which measures on CPU what ``torch.cuda.max_memory_allocated`` measures on a GPU.

The estimate counts what is alive when the forward pass ends. A CUDA run needs more at its peak:
:func:`gpu_terms` lists it as named :class:`GpuTerm` objects, each with its formula or source and
whether it is an assumption: the backward pass's transients (the loss's float32 logits gradients; with
checkpointing the recomputed layer; one layer's activation gradients; bitsandbytes' dequantized weight),
CUDA's smaller dropout mask, the CUDA context and the caching allocator's reserve.
:func:`check_fit` turns an estimate (and those terms) into a go/no-go for a device.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field

import torch

from . import validate
from .double_quant import constant_bits_per_parameter
from .llama import (
    LLAMA_LINEAR,
    check_config,
    check_targets,
    llama_linear_shapes,
    llama_param_counts,
    parameter_tensor_sizes,
    target_list,
)
from .nf4 import check_blocksize
from .validate import positive_int, probability

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
    "GpuTerm",
    "gpu_terms",
    "backward_transients",
    "CUDA_CONTEXT_BYTES",
    "CUDA_CONTEXT_RANGE",
    "ALLOCATOR_RESERVE",
    "CONTEXT_TERM",
    "FitDecision",
    "available_memory",
    "check_fit",
]

# what trains: every weight; adapters on a 16-bit base; adapters on a 4-bit NF4 base
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
    positive_int(numel, "numel")
    positive_int(blocksize, "blocksize")
    positive_int(min_8bit_size, "min_8bit_size")
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
    positive_int(param_bytes, "param_bytes")
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
    check_config(config)
    probability(lora_dropout, "lora_dropout")
    positive_int(lora_r, "lora_r")
    a = _nbytes(validate.float_dtype(act_dtype, "act_dtype"))
    h, i = config.hidden_size, config.intermediate_size
    shapes = llama_linear_shapes(config)
    q_out, kv = shapes["q_proj"][1], shapes["k_proj"][1]
    heads = config.num_attention_heads
    full = method == "full"
    targets = set() if full else set(check_targets(config, lora_targets, "lora_targets"))
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
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {METHODS}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose from {OPTIMIZERS}")
        positive_int(self.batch_size, "batch_size")
        positive_int(self.seq_len, "seq_len")
        positive_int(self.lora_r, "lora_r")
        probability(self.lora_dropout, "lora_dropout")
        for name in ("weight_dtype", "lora_dtype") + (("compute_dtype",) if self.compute_dtype is not None else ()):
            # a name ("bf16") is taken and stored as the dtype it names
            object.__setattr__(self, name, validate.float_dtype(getattr(self, name), name))
        for name in ("master_weights", "gradient_checkpointing", "double_quant", "upcast_non_quantized", "logits_kept"):
            validate.flag(getattr(self, name), name)
        check_blocksize(self.blocksize)
        object.__setattr__(self, "lora_targets", tuple(target_list(self.lora_targets, "lora_targets")))

    def replace(self, **changes) -> TrainingSetup:
        """A copy with ``changes`` to any fields, checked as a new setup is:
        ``setup.replace(seq_len=2048)`` is the same run with longer sequences. Unknown names raise
        ``TypeError``."""
        known = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise TypeError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **changes)

    @property
    def activation_dtype(self) -> torch.dtype:
        """The dtype of the activations: ``compute_dtype`` (default ``weight_dtype``), except QLoRA with
        ``upcast_non_quantized``: float32 embeddings and norms make the residual stream float32, and
        bitsandbytes' ``Linear4bit`` returns its input's dtype, so every activation is float32."""
        if self.method == "qlora" and self.upcast_non_quantized:
            return torch.float32
        return self.compute_dtype or self.weight_dtype

    @property
    def trained_bytes(self) -> int:
        """Bytes per trainable element: the base's ``weight_dtype`` for full fine-tuning, else the
        adapters' ``lora_dtype``."""
        return _nbytes(self.weight_dtype if self.method == "full" else self.lora_dtype)


def estimate_training_memory(config, setup: TrainingSetup) -> MemoryEstimate:
    """Bytes of each part of the memory of one training step of a Llama (a ``LlamaConfig``) trained as
    ``setup`` says. To vary one setting, change the setup: ``estimate_training_memory(cfg,
    setup.replace(seq_len=2048))``.

    ``activations`` is what is held when the forward pass ends: per token, ``num_hidden_layers`` times
    :func:`activation_items` (or, with ``gradient_checkpointing``, one hidden state per layer), plus
    the final norm, the float32 log-probabilities of the loss, cos/sin, the labels and, with
    ``logits_kept``, the logits the model returns. The backward pass adds transients on top (the loss's
    float32 gradients, one recomputed layer with checkpointing, the activations' gradients), not counted
    here: :func:`gpu_terms` lists them with what else a CUDA run needs.
    """
    if not isinstance(setup, TrainingSetup):
        raise TypeError(
            f"setup must be a TrainingSetup, e.g. TrainingSetup('lora', batch_size=4, seq_len=128), "
            f"got {type(setup).__name__}"
        )
    check_config(config)
    trainable = _trainable_sizes(config, setup)
    activations, items, model_level = _activations(config, setup)
    return MemoryEstimate(
        weights=_weights(config, setup),
        quant_constants=_quant_constants(config, setup),
        lora_weights=_adapters(setup, trainable),
        gradients=sum(trainable) * setup.trained_bytes,
        optimizer_state=_optimizer_state(setup, trainable),
        activations=activations,
        details={
            "activation_items_per_layer": items,
            "activation_items_per_model": model_level,
            "activation_bytes_per_token_per_layer": sum(b for _, b in items),
            "param_counts": llama_param_counts(config),
            "trainable_params": sum(trainable),
        },
    )


def _weights(config, setup: TrainingSetup) -> float:
    """Bytes of the base parameters. QLoRA: the decoder's linear weights packed two per byte, the rest
    (embeddings, norms) in float32 with ``upcast_non_quantized``, else in ``weight_dtype``."""
    counts = llama_param_counts(config)
    w = _nbytes(setup.weight_dtype)
    if setup.method != "qlora":
        return counts["total"] * w
    other_bytes = 4 if setup.upcast_non_quantized else w
    return counts["linear"] / 2 + (counts["embeddings"] + counts["norms"]) * other_bytes


def _quant_constants(config, setup: TrainingSetup) -> float:
    """QLoRA only: bytes of the blocks' absmax constants (8-bit with double quantization, plus their
    second-level scales) and, per quantized layer, bitsandbytes' code tables: 16 float32 values for NF4
    and, with double quantization, the 256-entry 8-bit map and a float32 offset."""
    if setup.method != "qlora":
        return 0.0
    counts = llama_param_counts(config)
    n_layers = len(llama_linear_shapes(config)) * config.num_hidden_layers
    tables = 16 * 4 + (256 * 4 + 4 if setup.double_quant else 0)
    bits = constant_bits_per_parameter(setup.blocksize, 256, setup.double_quant)
    return counts["linear"] * bits / 8 + n_layers * tables


def _trainable_sizes(config, setup: TrainingSetup) -> list[int]:
    """Element counts of the trainable tensors: every parameter for full fine-tuning, else per layer and
    target the adapters' A ``(r, in)`` and B ``(out, r)``."""
    if setup.method == "full":
        return parameter_tensor_sizes(config)
    shapes = llama_linear_shapes(config)
    targets = check_targets(config, setup.lora_targets)
    r = setup.lora_r
    return [n for t in targets for n in (r * shapes[t][0], r * shapes[t][1])] * config.num_hidden_layers


def _adapters(setup: TrainingSetup, trainable: list[int]) -> float:
    """Bytes of the LoRA adapters (none for full fine-tuning, whose trained weights are the base's)."""
    if setup.method == "full":
        return 0.0
    return sum(trainable) * setup.trained_bytes


def _optimizer_state(setup: TrainingSetup, trainable: list[int]) -> float:
    """Bytes of the optimizer's state (:func:`optimizer_state_bytes`), plus a float32 master copy of
    every trainable 16-bit parameter with ``master_weights``."""
    state = optimizer_state_bytes(trainable, setup.optimizer, setup.trained_bytes)
    if setup.master_weights and setup.trained_bytes < 4:
        state += 4 * sum(trainable)
    return state


def _model_level_activations(config, setup: TrainingSetup) -> list[tuple[str, float]]:
    """What the model keeps per token outside its decoder layers, as ``[(name, bytes_per_token)]``."""
    a = _nbytes(setup.activation_dtype)
    h, v = config.hidden_size, config.vocab_size
    items = [
        ("final norm: float32 input and rsqrt", 4 * h + 4),
        ("loss: float32 log-probabilities", 4 * v),
        ("loss: shifted labels (int64)", 8),
    ]
    if setup.method == "full":
        items += [
            ("final norm: normalised input", a * h),
            ("lm_head: input", a * h),
            ("embedding: token ids (int64)", 8),
        ]
    elif not setup.gradient_checkpointing:
        # the frozen embedding's output needs no gradient, so the first layer's input norm saves
        # nothing, nor does dropout on the first q/k/v LoRA inputs keep its noise
        first = -(4 * h + 4)
        if setup.lora_dropout > 0:
            first -= _nbytes(setup.lora_dtype) * h * len({"q_proj", "k_proj", "v_proj"} & set(setup.lora_targets))
        items.append(("first layer: input norm and dropout noise not saved", first))
    if setup.logits_kept:
        items.append(("logits returned by the model", a * v))
    return items


def _layer_items(config, setup: TrainingSetup) -> list[tuple[str, float]]:
    """:func:`activation_items` of one decoder layer of ``setup`` (its method, activation dtype and adapters)."""
    return activation_items(
        config,
        setup.method,
        setup.activation_dtype,
        lora_targets=setup.lora_targets,
        lora_dtype=setup.lora_dtype,
        lora_dropout=setup.lora_dropout,
        lora_r=setup.lora_r,
    )


def _activations(config, setup: TrainingSetup) -> tuple[float, list, list]:
    """``(bytes, per-layer items, model-level items)`` of the activations held at the end of the forward
    pass: the decoder layers' (:func:`activation_items`; with checkpointing only each layer's input), the
    model-level ones per token, and cos/sin once per position (broadcast over the batch)."""
    a = _nbytes(setup.activation_dtype)
    items = _layer_items(config, setup)
    model_level = _model_level_activations(config, setup)
    layers, h = config.num_hidden_layers, config.hidden_size
    tokens = setup.batch_size * setup.seq_len
    head_dim = llama_linear_shapes(config)["q_proj"][1] // config.num_attention_heads
    cos_sin = 2 * head_dim * a * setup.seq_len
    if setup.gradient_checkpointing:
        layer_part = layers * a * h * tokens
    else:
        layer_part = layers * sum(b for _, b in items) * tokens
    return layer_part + sum(b for _, b in model_level) * tokens + cos_sin, items, model_level


# --------------------------------------------------------------------------------------------------
# What a GPU adds at the peak
# --------------------------------------------------------------------------------------------------

# The CUDA context: the driver's and the CUDA libraries' own memory (kernels, cuBLAS/cuDNN workspaces
# and handles), taken when the process first touches the GPU. It is invisible to
# ``torch.cuda.memory_allocated`` and ``max_memory_allocated``; ``nvidia-smi`` shows it. An assumption:
# it depends on the driver, the CUDA version, the GPU and the libraries loaded; 0.3-0.5 GB is the usual
# range on a T4 or an A100.
CUDA_CONTEXT_BYTES = 0.4e9
CUDA_CONTEXT_RANGE = (0.3e9, 0.5e9)
# PyTorch's caching allocator reserves more than the tensors it hands out: it rounds every block up
# (512 bytes; 2 MiB steps above 1 MiB), keeps segments it has freed for later allocations instead of
# returning them to the driver, and a segment whose free pieces are too small for a new request stays
# unusable (fragmentation). An assumed fraction of what is allocated at the peak: varying sequence lengths
# raise it, ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`` lowers it.
ALLOCATOR_RESERVE = 0.10
# the name of the context's term: check_fit leaves it out when it measures the free memory itself
CONTEXT_TERM = "CUDA context"


@dataclass(frozen=True)
class GpuTerm:
    """Bytes a CUDA run needs at its peak beyond :func:`estimate_training_memory`'s ``total``.

    ``name`` says what it is; ``bytes`` how much it adds to the peak (negative where CUDA keeps less than
    the CPU-measured estimate counts); ``basis`` the formula with the setup's numbers, or the library code
    that allocates it; ``assumed`` is True where the figure is an assumption, not derived from the setup."""

    name: str
    bytes: float
    basis: str
    assumed: bool


def _gb(b: float) -> str:
    return f"{b / GB:.3g} GB"


def backward_transients(config, setup: TrainingSetup) -> dict[str, float]:
    """The backward pass's transients of one training step, in bytes, on top of the end-of-forward estimate.

    The backward has two peaks, and they do not add up:

    1. **The loss's backward**, first, while everything the forward kept is still alive:
       ``logits_gradients`` :math:`L = 2 \\cdot BTV \\cdot 4`. transformers' ``ForCausalLMLoss``
       (``transformers/loss/loss_utils.py``) upcasts the logits to float32 and calls ``cross_entropy``,
       which is ``log_softmax`` then ``nll_loss``: ``nll_loss``'s backward allocates a dense float32
       gradient of the log-probabilities, ``log_softmax``'s backward a float32 gradient of the logits
       while the first is alive.
    2. **The last decoder layer's backward**, after the loss's float32 log-probabilities and the final
       norm's float32 input are freed (``freed_before_layers`` :math:`F = BT\\,(4V + 4h + 4)`) and the
       logits gradients are gone. It holds, with ``gradient_checkpointing``, the ``recomputed_layer``
       (:math:`R`: :func:`activation_items` of one layer times :math:`BT`, with CUDA's 1-byte dropout
       mask); the ``layer_gradients`` :math:`G = 2\\,i\\,a' BT`, two MLP-wide gradients alive at once
       (the down projection's input gradient and what it is added to or split into), :math:`a'` the
       activation dtype's bytes, or the adapters' if larger (their branch computes in it); and for QLoRA
       the ``dequantized_weight`` :math:`D`: bitsandbytes' ``MatMul4Bit.backward``
       (``bitsandbytes/autograd/_functions.py``) computes ``grad_output @ dequantize_4bit(W).to(grad_output.dtype)``,
       the largest 4-bit weight (the MLP's) in the load dtype (a second copy if the compute dtype differs)
       plus its double-quantized absmaxes dequantized to float32 (:math:`4n/\\text{blocksize}`). It is
       alive with one MLP-wide gradient, not two, so it lifts the layer's peak by
       ``dequantized_weight_lift`` :math:`= \\max(0, D - i\\,a' BT)`.

    Returns those sizes and ``"peak"``, what the backward adds at its higher peak,
    :math:`\\max(L,\\ R + G + \\max(0, D - i a' BT) - F)`. ``tests/test_gpu_terms.py`` checks the formula
    against the CPU meter's backward peak (gradients allocated beforehand, as with gradient accumulation).
    """
    if not isinstance(setup, TrainingSetup):
        raise TypeError(
            f"setup must be a TrainingSetup, e.g. TrainingSetup('qlora', batch_size=1, seq_len=512), "
            f"got {type(setup).__name__}"
        )
    check_config(config)
    tokens = setup.batch_size * setup.seq_len
    v, h, i = config.vocab_size, config.hidden_size, config.intermediate_size
    a = _nbytes(setup.activation_dtype)
    if setup.method != "full":
        a = max(a, _nbytes(setup.lora_dtype))
    out = {
        "logits_gradients": 2.0 * tokens * v * 4,
        "freed_before_layers": float(tokens * (4 * v + 4 * h + 4)),
        "recomputed_layer": 0.0,
        "layer_gradients": float(2 * i * a * tokens),
        "dequantized_weight": 0.0,
        "dequantized_weight_lift": 0.0,
    }
    if setup.gradient_checkpointing:
        out["recomputed_layer"] = float(sum(b for _, b in _cuda_layer_items(config, setup)) * tokens)
    if setup.method == "qlora":
        out["dequantized_weight"] = float(_dequantized_weight_bytes(config, setup))
        out["dequantized_weight_lift"] = max(0.0, out["dequantized_weight"] - i * a * tokens)
    layer_peak = out["recomputed_layer"] + out["layer_gradients"] + out["dequantized_weight_lift"]
    out["peak"] = max(out["logits_gradients"], layer_peak - out["freed_before_layers"])
    return out


def _cuda_layer_items(config, setup: TrainingSetup) -> list[tuple[str, float]]:
    """:func:`activation_items` of one layer as CUDA keeps them: a dropout mask of 1 byte per element."""
    items = _layer_items(config, setup)
    la = _nbytes(setup.lora_dtype)
    return [(name, b / la if "dropout noise" in name else b) for name, b in items]


def _dequantized_weight_bytes(config, setup: TrainingSetup) -> float:
    """Bytes bitsandbytes holds while it dequantizes the largest 4-bit weight in the backward (see
    :func:`backward_transients`)."""
    n = max(d_in * d_out for d_in, d_out in llama_linear_shapes(config).values())
    load, compute = _nbytes(setup.weight_dtype), _nbytes(setup.compute_dtype or setup.weight_dtype)
    copies = load + (compute if (setup.compute_dtype or setup.weight_dtype) != setup.weight_dtype else 0)
    absmax = 4 * math.ceil(n / setup.blocksize) if setup.double_quant else 0
    return n * copies + absmax


def _dropout_mask_saving(config, setup: TrainingSetup) -> float:
    """Bytes CUDA keeps less than the CPU-measured estimate for LoRA dropout (negative or zero): CPU
    dropout saves its float noise, CUDA a 1-byte mask. With checkpointing no layer keeps it past the
    forward pass (the recomputed layer's mask is counted in :func:`backward_transients`)."""
    if setup.method == "full" or setup.lora_dropout == 0 or setup.gradient_checkpointing:
        return 0.0
    la = _nbytes(setup.lora_dtype)
    items = _layer_items(config, setup)
    noise = sum(b for name, b in items if "dropout noise" in name) * config.num_hidden_layers
    noise -= la * config.hidden_size * len({"q_proj", "k_proj", "v_proj"} & set(setup.lora_targets))  # layer 1
    return -noise * (la - 1) / la * setup.batch_size * setup.seq_len


def gpu_terms(
    config,
    setup: TrainingSetup,
    *,
    context_bytes: float = CUDA_CONTEXT_BYTES,
    reserve: float = ALLOCATOR_RESERVE,
) -> list[GpuTerm]:
    """What a CUDA run of ``setup`` needs at its peak on top of ``estimate_training_memory(config,
    setup).total`` (the bytes alive when the forward pass ends, checked on CPU), as named terms:

    - the backward's transients (:func:`backward_transients`): the loss's float32 logits gradients, then,
      at the last layer's backward, the recomputed layer (checkpointing), the layer's activation gradients
      and bitsandbytes' dequantized weight (QLoRA). The two peaks do not add: the later one's items share,
      in proportion to their sizes, only what lifts it above the loss's (``bytes`` may be 0; ``basis``
      gives each item's full size);
    - with LoRA dropout and no checkpointing, CUDA's 1-byte dropout mask in place of the CPU's float noise
      the estimate counts (negative);
    - the CUDA context (``context_bytes``, default :data:`CUDA_CONTEXT_BYTES`, assumed);
    - the caching allocator's reserve (``reserve``, default :data:`ALLOCATOR_RESERVE`, a fraction of
      everything above but the context, assumed).

    The estimate counts every gradient as alive at the peak (true with gradient accumulation; with
    ``zero_grad(set_to_none=True)`` and no accumulation the loss's peak comes before they exist, so the
    sum is an upper bound by up to the gradients).
    """
    est = estimate_training_memory(config, setup)
    t = backward_transients(config, setup)
    if (
        isinstance(context_bytes, bool)
        or not isinstance(context_bytes, numbers.Real)
        or not 0 <= context_bytes < math.inf
    ):
        raise ValueError(f"context_bytes must be a non-negative number of bytes, got {context_bytes!r}")
    if isinstance(reserve, bool) or not isinstance(reserve, numbers.Real) or not 0 <= reserve < 1:
        raise ValueError(f"reserve must be a fraction in [0, 1), got {reserve!r}")
    tokens = setup.batch_size * setup.seq_len
    terms = [
        GpuTerm(
            "loss backward: float32 logits gradients",
            t["logits_gradients"],
            f"2 x B x T x V x 4 = 2 x {tokens:,} x {config.vocab_size:,} x 4 bytes: transformers' ForCausalLMLoss "
            "(loss/loss_utils.py) upcasts the logits to float32; cross_entropy's backward holds nll_loss's "
            "gradient of the log-probabilities and log_softmax's gradient of the logits at once",
            False,
        )
    ]
    # the last layer's backward: its items share, in proportion to their size, what lifts that peak above the loss's
    phase2 = [("recomputed_layer", setup.gradient_checkpointing), ("layer_gradients", True)]
    phase2 += [("dequantized_weight", setup.method == "qlora")]
    keys = [key for key, applies in phase2 if applies]
    size = {k: t["dequantized_weight_lift" if k == "dequantized_weight" else k] for k in keys}
    lift = t["peak"] - t["logits_gradients"]
    layer_peak = sum(size.values())
    for key in keys:
        share = size[key] / layer_peak if layer_peak else 0.0
        terms.append(GpuTerm(*_phase2_term(key, lift * share, share, config, setup, t)))
    mask = _dropout_mask_saving(config, setup)
    if mask:
        terms.append(
            GpuTerm(
                "CUDA dropout keeps a 1-byte mask",
                mask,
                f"the estimate counts CPU dropout's float noise ({_nbytes(setup.lora_dtype)} bytes per element, "
                "torch's _dropout_impl); on CUDA torch calls native_dropout, whose backward keeps a bool mask",
                False,
            )
        )
    allocated = est.total + sum(term.bytes for term in terms)
    terms.append(
        GpuTerm(
            CONTEXT_TERM,
            float(context_bytes),
            f"assumed {context_bytes / GB:.2g} GB (usually {CUDA_CONTEXT_RANGE[0] / GB:.1f}-"
            f"{CUDA_CONTEXT_RANGE[1] / GB:.1f} GB): the driver's and CUDA "
            "libraries' memory, outside torch.cuda.memory_allocated (nvidia-smi shows it)",
            True,
        )
    )
    terms.append(
        GpuTerm(
            "caching allocator reserve",
            reserve * allocated,
            f"assumed {reserve:.0%} of the {_gb(allocated)} allocated at the peak: block rounding, "
            "freed segments PyTorch keeps for reuse, fragmentation",
            True,
        )
    )
    return terms


def _phase2_term(key, adds, share, config, setup, t) -> tuple[str, float, str, bool]:
    """``(name, bytes, basis, assumed)`` of one term of the last layer's backward peak (:func:`gpu_terms`):
    its size, and its share of what that peak adds above the loss's."""
    tokens = setup.batch_size * setup.seq_len
    a = (
        _nbytes(setup.activation_dtype)
        if setup.method == "full"
        else max(_nbytes(setup.activation_dtype), _nbytes(setup.lora_dtype))
    )
    if t["peak"] > t["logits_gradients"]:
        lifted = (
            f"{share:.0%} of the {_gb(t['peak'] - t['logits_gradients'])} by which the last layer's backward "
            f"(after the loss's {_gb(t['freed_before_layers'])} is freed) tops the loss's"
        )
    else:
        freed = _gb(t["freed_before_layers"])
        lifted = f"0: with the loss's {freed} freed, the last layer's backward stays under the loss's"
    if key == "recomputed_layer":
        per = t["recomputed_layer"] / tokens
        return (
            "checkpointing: one layer recomputed",
            adds,
            f"one layer's saved tensors (activation_items, 1-byte dropout mask): {per:,.0f} B/token x {tokens:,} "
            f"= {_gb(t[key])}; adds {lifted}",
            False,
        )
    if key == "layer_gradients":
        return (
            "one layer's backward: activation gradients",
            adds,
            f"2 x i x a x B x T = 2 x {config.intermediate_size:,} x {a} x {tokens:,} = {_gb(t[key])} (two MLP-wide "
            f"gradients at once, from the CPU meter); adds {lifted}",
            False,
        )
    shapes = llama_linear_shapes(config)
    name = max(shapes, key=lambda m: shapes[m][0] * shapes[m][1])
    return (
        "bitsandbytes: one 4-bit weight dequantized",
        adds,
        f"MatMul4Bit.backward: grad_output @ dequantize_4bit(W).to(grad_output.dtype), {name} "
        f"{shapes[name][1]:,} x {shapes[name][0]:,} in the load dtype (again in the compute dtype if it differs) "
        f"+ float32 absmaxes = {_gb(t['dequantized_weight'])}, alive with one MLP-wide gradient: lifts the layer by "
        f"{_gb(t['dequantized_weight_lift'])}; adds {lifted}",
        False,
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
    what torch's cache holds but does not use; on the CPU the system's available memory. A CUDA device on
    a machine without one raises ``ValueError`` naming ``device``."""
    device = validate.device(device, "device")
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return float(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    import psutil

    return float(psutil.virtual_memory().available)


def check_fit(
    needed: float,
    device=None,
    available: float | None = None,
    headroom: float | None = None,
    what: str = "this run",
    terms=(),
) -> FitDecision:
    """Does ``needed`` bytes (an estimate's ``total``) plus the ``terms`` (:func:`gpu_terms`) fit in
    ``headroom`` of the ``available`` memory of ``device`` (default: :func:`available_memory`)?
    ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``; by default this machine's GPU if
    it has one, else ``"cpu"``.

    Without terms the default headroom is 0.9: the 10% left free stands for what an estimate of the end of
    the forward pass leaves out (the backward's transients, the allocator's reserve). With terms, those
    are named and counted, so the default is 1.0 (all of ``available``); a headroom given explicitly
    applies either way, for what no term names. When ``available`` is measured here (``None``) on a GPU,
    the CUDA context is already outside the free memory, so its term is left out.
    The decision's ``needed`` is the estimate plus the terms counted."""
    if isinstance(needed, bool) or not isinstance(needed, numbers.Real) or not math.isfinite(needed) or needed < 0:
        raise ValueError(f"needed must be a non-negative number of bytes, got {needed!r}")
    if device is None:  # the machine's own: its GPU if it has one
        device = "cuda" if torch.cuda.is_available() else "cpu"
    # a label here; measuring (available_memory) refuses a device this machine lacks
    device = validate.device_name(device, "device")
    if isinstance(terms, (str, bytes)):
        raise TypeError("terms must be a list of GpuTerm objects (estimator.gpu_terms(config, setup)), got a str")
    terms = list(terms)
    bad = [t for t in terms if not isinstance(t, GpuTerm)]
    if bad:
        raise TypeError(
            f"terms must be GpuTerm objects (estimator.gpu_terms(config, setup)), got {type(bad[0]).__name__}"
        )
    if headroom is None:
        headroom = 1.0 if terms else 0.9
    if isinstance(headroom, bool) or not isinstance(headroom, numbers.Real) or not 0 < headroom <= 1:
        raise ValueError(f"headroom must be in (0, 1], got {headroom!r}")
    if available is None:
        available = available_memory(device)
        terms = [t for t in terms if t.name != CONTEXT_TERM]  # already taken from what the driver reports free
    else:
        available = validate.positive_number(available, "available")
    extra = sum(t.bytes for t in terms)
    total = float(needed) + extra
    fits = total <= headroom * available
    verb = "fits in" if fits else "does not fit in"
    counted = f"{needed / GB:.2f} GB (estimate)"
    if terms:
        counted = f"{total / GB:.2f} GB ({needed / GB:.2f} GB estimate + {extra / GB:.2f} GB of {len(terms)} GPU terms)"
    reason = (
        f"{what} needs about {counted} and {verb} {headroom:.0%} of the {available / GB:.2f} GB available on {device}"
    )
    return FitDecision(fits, total, available, device, reason)
