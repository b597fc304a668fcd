"""Where fine-tuning memory goes: an estimator, and the tools that measure the same parts on CPU.

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

:func:`estimate_training_memory` computes each part from a transformers ``LlamaConfig``.  The
activation count is not a rule of thumb: :func:`activation_items` lists, for one decoder layer, every
tensor that PyTorch's autograd saves (read from the saved-tensor hooks of transformers 5 with the
``sdpa`` attention on CPU), so the estimate can be checked item by item against
:func:`saved_tensor_bytes` and :class:`LiveBytes`, which measure on CPU what
``torch.cuda.max_memory_allocated`` measures on a GPU.

:class:`PagingSimulator` replays a training step's memory trace against a device budget, with and
without paged optimizer state (lesson 4, the paged optimizers of the QLoRA paper).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from dataclasses import dataclass, field

import torch

from .lora import llama_linear_shapes, llama_param_counts, target_list

__all__ = ["METHODS", "OPTIMIZERS", "MemoryEstimate", "estimate_training_memory", "activation_items",
           "optimizer_state_bytes", "adamw8bit_state_bytes", "tensor_bytes", "saved_tensor_bytes",
           "LiveBytes", "measure_training_memory", "PagingSimulator", "PagingResult", "training_trace",
           "GB", "MB", "FitDecision", "available_memory", "check_fit", "estimate_run"]

METHODS = ("full", "lora", "qlora")
OPTIMIZERS = ("adamw", "adamw32bit", "adamw8bit")
LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
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


def _tensor_sizes(config) -> list[int]:
    """Element counts of every parameter tensor of a Llama (the optimizer keeps state per tensor)."""
    shapes = llama_linear_shapes(config)
    h, v = config.hidden_size, config.vocab_size
    sizes = [v * h] * (1 if getattr(config, "tie_word_embeddings", False) else 2) + [h]
    sizes += config.num_hidden_layers * ([i * o for i, o in shapes.values()] + [h, h])
    return sizes


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


def activation_items(config, method: str = "full", act_dtype=torch.bfloat16, *,
                     lora_targets=LLAMA_LINEAR, lora_dtype=torch.float32, lora_dropout: float = 0.0,
                     lora_r: int = 16) -> list[tuple[str, float]]:
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
    targets = set() if full else set(target_list(lora_targets))
    unknown = targets - set(shapes)
    if unknown:
        raise ValueError(f"unknown Llama linear layer(s) {sorted(unknown)}; choose from {list(shapes)}")
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
                items.append((f"{m}: LoRA input ({'dropout output' if lora_dropout > 0 else 'cast copy'})",
                              la * in_dim))
        elif mods and not saved_already:
            items.append((f"{'/'.join(mods)}: LoRA input ({what}, shared)", a * in_dim))
        for m in mods:
            items.append((f"{m}: LoRA A x (r={lora_r})", la * lora_r))

    norm("input_layernorm")
    inputs(["q_proj", "k_proj", "v_proj"], h, "normalised hidden state")
    items += [("attention: rotated q", a * q_out), ("attention: rotated k", a * kv), ("attention: v", a * kv),
              ("attention: output", a * q_out), ("attention: log-sum-exp (float32)", 4 * heads)]
    inputs(["o_proj"], q_out, "attention output", saved_already=True)
    norm("post_attention_layernorm")
    inputs(["gate_proj", "up_proj"], h, "normalised hidden state")
    items += [("mlp: gate", a * i), ("mlp: up", a * i), ("mlp: silu(gate)", a * i)]
    inputs(["down_proj"], i, "silu(gate) * up")
    return items


def _check_config(config) -> None:
    for name in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        if not isinstance(getattr(config, name, None), int) or getattr(config, name) <= 0:
            raise ValueError(f"config.{name} must be a positive integer; is this a Llama config? "
                             f"(got {getattr(config, name, None)!r})")


def estimate_training_memory(config, method: str = "qlora", batch_size: int = 1, seq_len: int = 512, *,
                             weight_dtype=torch.bfloat16, compute_dtype=None, lora_r: int = 16,
                             lora_targets=LLAMA_LINEAR, lora_dtype=torch.float32, lora_dropout: float = 0.0,
                             optimizer: str = "adamw", master_weights: bool = False,
                             gradient_checkpointing: bool = False, blocksize: int = 64,
                             double_quant: bool = True, upcast_non_quantized: bool = True,
                             logits_kept: bool = True) -> MemoryEstimate:
    """Bytes of each part of the memory of one training step of a Llama (a ``LlamaConfig``).

    ``method``: ``"full"`` (every parameter trains, in ``weight_dtype``), ``"lora"`` (frozen
    ``weight_dtype`` base + adapters in ``lora_dtype``) or ``"qlora"`` (decoder linear weights NF4 in
    blocks of ``blocksize``, with ``double_quant``; the other parameters in float32 when
    ``upcast_non_quantized``, as PEFT's ``prepare_model_for_kbit_training`` leaves them, else in
    ``weight_dtype``). ``compute_dtype`` (default ``weight_dtype``) is the dtype of the activations.
    ``optimizer``: see :func:`optimizer_state_bytes`; ``master_weights`` adds a float32 copy of every
    trainable 16-bit parameter (mixed-precision training), counted as optimizer state.

    ``activations`` is what is held when the forward pass ends: per token, ``num_hidden_layers`` times
    :func:`activation_items` (or, with ``gradient_checkpointing``, one hidden state per layer), plus
    the final norm, the float32 log-probabilities of the loss, cos/sin, the labels and, with
    ``logits_kept``, the logits the model returns. The backward pass adds transients on top (the
    activations' gradients, one recomputed layer with checkpointing), not counted here.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose from {OPTIMIZERS}")
    _positive_int(batch_size, "batch_size")
    _positive_int(seq_len, "seq_len")
    _positive_int(lora_r, "lora_r")
    _check_config(config)
    if not 0 <= lora_dropout < 1:
        raise ValueError(f"lora_dropout must be in [0, 1), got {lora_dropout}")
    from .double_quant import constant_bits_per_parameter
    from .nf4 import check_blocksize

    check_blocksize(blocksize)
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
        quant_constants = (counts["linear"] * constant_bits_per_parameter(blocksize, 256, double_quant) / 8
                           + len(shapes) * layers * tables)
        if upcast_non_quantized:
            # float32 embeddings and norms make the residual stream float32, and bitsandbytes'
            # Linear4bit returns its input's dtype: every activation is float32, whatever compute_dtype
            act_dtype = torch.float32
    else:
        weights = counts["total"] * w

    # adapters, gradients, optimizer state
    if method == "full":
        lora_weights = 0.0
        trainable = _tensor_sizes(config)
        train_bytes = w
    else:
        targets = target_list(lora_targets)
        unknown = [t for t in targets if t not in shapes]
        if unknown:
            raise ValueError(f"unknown Llama linear layer(s) {unknown}; choose from {list(shapes)}")
        trainable = [n for t in targets for n in (lora_r * shapes[t][0], lora_r * shapes[t][1])] * layers
        train_bytes = _nbytes(lora_dtype)
        lora_weights = sum(trainable) * train_bytes
    gradients = sum(trainable) * train_bytes
    optimizer_state = optimizer_state_bytes(trainable, optimizer, train_bytes)
    if master_weights and train_bytes < 4:
        optimizer_state += 4 * sum(trainable)

    # activations
    a = _nbytes(act_dtype)
    items = activation_items(config, method, act_dtype, lora_targets=lora_targets, lora_dtype=lora_dtype,
                             lora_dropout=lora_dropout, lora_r=lora_r)
    per_layer = sum(b for _, b in items)
    head_dim = shapes["q_proj"][1] // config.num_attention_heads
    model_level = [
        ("final norm: float32 input and rsqrt", 4 * h + 4),
        ("loss: float32 log-probabilities", 4 * v),
        ("loss: shifted labels (int64)", 8),
    ]
    if method == "full":
        model_level += [("final norm: normalised input", a * h), ("lm_head: input", a * h),
                        ("embedding: token ids (int64)", 8)]
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
    details = {"activation_items_per_layer": items, "activation_items_per_model": model_level,
               "activation_bytes_per_token_per_layer": per_layer, "param_counts": counts,
               "trainable_params": sum(trainable)}
    return MemoryEstimate(weights=weights, quant_constants=quant_constants, lora_weights=lora_weights,
                          gradients=gradients, optimizer_state=optimizer_state, activations=activations,
                          details=details)


# --------------------------------------------------------------------------------------------------
# Measuring on CPU
# --------------------------------------------------------------------------------------------------

def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views and repeats counted once)."""
    seen = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.numel() > 0:
            s = t.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def _quant_state_tensors(model) -> list[torch.Tensor]:
    """The tensors of bitsandbytes' quantization states in ``model`` (absmax, code, offset; nested too)."""
    out = []
    for p in model.parameters():
        qs = getattr(p, "quant_state", None)
        while qs is not None:
            out += [t for t in (qs.absmax, qs.code, getattr(qs, "offset", None)) if isinstance(t, torch.Tensor)]
            qs = getattr(qs, "state2", None)
    return out


@contextlib.contextmanager
def saved_tensor_bytes(exclude=()):
    """Count the bytes autograd saves for backward inside the ``with`` block.

    Yields a dict that gets ``"bytes"`` and ``"count"`` on exit: distinct storages packed by
    ``torch.autograd.graph.saved_tensors_hooks``, leaving out the storages of ``exclude`` (pass the
    model's parameters: autograd saves weights too, but they are not activations).
    Tensors a custom autograd function keeps as plain attributes are invisible to the hooks.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude if isinstance(t, torch.Tensor)}
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in skip and s.nbytes() > 0:
            seen[s.data_ptr()] = s.nbytes()
        return t

    result: dict = {}
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield result
    finally:
        result["bytes"] = sum(seen.values())
        result["count"] = len(seen)


class LiveBytes:
    """Live and peak bytes of the tensors created inside a ``with`` block, on any device.

    A ``TorchDispatchMode`` sees every operator's outputs (forward and backward); each new storage is
    remembered with a weak reference and forgotten when it is freed. ``current`` is the bytes alive
    now, ``peak`` the most alive after any operator: on CPU, the counterpart of
    ``torch.cuda.max_memory_allocated`` (without the caching allocator's rounding). Storages of
    ``exclude`` (the model's parameters) are never counted. Slow (Python runs per operator): for
    measuring, not for training.
    """

    def __init__(self, exclude=()):
        self.skip = {t.untyped_storage().data_ptr() for t in exclude if isinstance(t, torch.Tensor)}
        self.live: dict[int, tuple] = {}
        self.current = 0
        self.peak = 0
        self._mode = None

    def _sweep(self):
        for key, (ref, n) in list(self.live.items()):
            if ref.expired():
                del self.live[key]
                self.current -= n

    def _record(self, out):
        from torch.utils._pytree import tree_leaves
        from torch.multiprocessing.reductions import StorageWeakRef

        self._sweep()
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                s = t.untyped_storage()
                key = s.data_ptr()
                if key and key not in self.skip and key not in self.live:
                    self.live[key] = (StorageWeakRef(s), s.nbytes())
                    self.current += s.nbytes()
        self.peak = max(self.peak, self.current)

    def now(self) -> int:
        """Bytes alive now (frees since the last operator taken into account)."""
        self._sweep()
        return self.current

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        meter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                meter._record(out)
                return out

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)
        self._sweep()
        return False


def measure_training_memory(model, optimizer, batch: dict, trainable_is_adapter: bool | None = None) -> dict:
    """Run one training step of ``model`` on ``batch`` and measure each part of its memory, in bytes.

    - ``weights`` / ``lora_weights``: the bytes of frozen and trainable parameters (with LoRA/QLoRA
      the trainable ones are the adapters; ``trainable_is_adapter`` defaults to "some are frozen"),
      ``quant_constants`` the bitsandbytes quantization states;
    - ``gradients``: the ``.grad`` tensors after ``backward``;
    - ``optimizer_state``: the distinct tensors in ``optimizer.state`` after ``step``;
    - ``activations``: the bytes created by the forward pass and still alive when it ends
      (:class:`LiveBytes`), which works with gradient checkpointing too; ``saved_tensors`` the
      saved-tensor hooks' count for comparison; ``peak`` the most bytes alive during forward and
      backward on top of the parameters; ``step_peak`` the peak of the whole step (parameters,
      constants and optimizer state plus ``peak``), what ``torch.cuda.max_memory_allocated`` reports.
    """
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    frozen = [p for p in params if not p.requires_grad]
    if trainable_is_adapter is None:
        trainable_is_adapter = bool(frozen)
    quant = _quant_state_tensors(model)
    optimizer.zero_grad(set_to_none=True)
    exclude = params + list(model.buffers()) + quant + [t for t in batch.values() if isinstance(t, torch.Tensor)]
    meter = LiveBytes(exclude=exclude)
    with saved_tensor_bytes(exclude=exclude) as saved:
        with meter:
            out = model(**batch)
            after_forward = meter.now()
            out.loss.backward()
    del out
    optimizer.step()
    state = [t for st in optimizer.state.values() for t in st.values() if isinstance(t, torch.Tensor)]
    result = {
        "weights": tensor_bytes(frozen if trainable_is_adapter else params),
        "quant_constants": tensor_bytes(quant),
        "lora_weights": tensor_bytes(trainable) if trainable_is_adapter else 0,
        "gradients": tensor_bytes(p.grad for p in trainable if p.grad is not None),
        "optimizer_state": tensor_bytes(state),
        "activations": after_forward,
        "saved_tensors": saved["bytes"],
        "peak": meter.peak,
    }
    # the step's peak: what lives through the step (parameters, constants, optimizer state) plus the
    # most that was alive on top during forward and backward (activations, gradients, temporaries)
    result["step_peak"] = (result["weights"] + result["quant_constants"] + result["lora_weights"]
                           + result["optimizer_state"] + meter.peak)
    optimizer.zero_grad(set_to_none=True)
    return result


# --------------------------------------------------------------------------------------------------
# Paging
# --------------------------------------------------------------------------------------------------

@dataclass
class PagingResult:
    """What :meth:`PagingSimulator.run` saw: per event, device bytes in use; totals of paging."""

    oom: bool
    oom_at: int | None
    device_used: list[int]
    paged_resident: list[int]
    bytes_to_host: int
    bytes_to_device: int
    page_faults: int
    transfer_seconds: float
    labels: list[str]

    @property
    def bytes_moved(self) -> int:
        return self.bytes_to_host + self.bytes_to_device

    @property
    def peak_device(self) -> int:
        return max(self.device_used) if self.device_used else 0


def training_trace(steps: int, weights: int, optimizer_state: int, activations: int,
                   spike_step: int | None = None, spike_factor: float = 4.0) -> list[tuple[str, int, bool]]:
    """A training loop's memory trace for :class:`PagingSimulator`: ``[(label, activation_bytes,
    optimizer_update)]``.

    Each step has a forward/backward event that needs ``activations`` bytes (``spike_factor`` times
    more on ``spike_step``, a long sequence) and an optimizer event that touches the whole optimizer
    state. ``weights`` and ``optimizer_state`` are passed on so the simulator knows the resident sizes.
    """
    for name, val in (("steps", steps), ("weights", weights), ("optimizer_state", optimizer_state),
                      ("activations", activations)):
        if isinstance(val, bool) or not isinstance(val, int) or val < (1 if name == "steps" else 0):
            raise ValueError(f"{name} must be a {'positive' if name == 'steps' else 'non-negative'} integer, got {val!r}")
    if isinstance(spike_factor, bool) or not isinstance(spike_factor, numbers.Real) or not 0 < spike_factor < math.inf:
        raise ValueError(f"spike_factor must be a positive finite number, got {spike_factor!r}")
    if spike_step is not None and not 0 <= spike_step < steps:
        raise ValueError(f"spike_step must be in [0, {steps}), got {spike_step}")
    trace = []
    for s in range(steps):
        act = int(activations * spike_factor) if s == spike_step else activations
        trace.append((f"step {s} forward/backward", act, False))
        trace.append((f"step {s} optimizer", 0, True))
    return trace


class PagingSimulator:
    """Device memory with a budget, holding the weights, the activations and (paged or not) the
    optimizer state, replayed over a training trace.

    Without paging the optimizer state lives on the device for good: a step whose activations do not
    fit next to it is out of memory. With paging (the idea of CUDA unified memory that bitsandbytes'
    paged optimizers use) the state is split into pages of ``page_bytes``; when activations need room,
    resident pages are evicted to host memory (least recently used first), and before the optimizer
    update they come back, either prefetched in one sweep at full ``bandwidth`` or, without
    ``prefetch``, page by page on first touch, each fault paying ``fault_latency`` seconds too. The
    estimated transfer time is bytes moved / bandwidth + faults x latency.

    ``budget_bytes``: device memory; ``bandwidth``: host-device bytes per second (PCIe 4.0 x16 about
    25e9 in practice).
    """

    def __init__(self, budget_bytes: int, page_bytes: int = 2 * 1024 * 1024, bandwidth: float = 25e9,
                 fault_latency: float = 20e-6, paged: bool = True, prefetch: bool = True):
        _positive_int(page_bytes, "page_bytes")
        if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes < page_bytes:
            raise ValueError(f"budget_bytes ({budget_bytes!r}) must be an integer of at least one page "
                             f"({page_bytes} bytes)")
        if not bandwidth > 0 or not fault_latency >= 0:
            raise ValueError("bandwidth must be positive and fault_latency non-negative")
        self.budget = budget_bytes
        self.page_bytes = page_bytes
        self.bandwidth = float(bandwidth)
        self.fault_latency = float(fault_latency)
        self.paged = paged
        self.prefetch = prefetch

    def run(self, trace, weights: int, optimizer_state: int) -> PagingResult:
        """Replay ``trace`` (from :func:`training_trace`) with ``weights`` and ``optimizer_state`` bytes."""
        if weights < 0 or optimizer_state < 0:
            raise ValueError("weights and optimizer_state must be non-negative")
        n_pages = math.ceil(optimizer_state / self.page_bytes)
        resident = n_pages                   # pages of optimizer state on the device
        used, res_hist, labels = [], [], []
        to_host = to_device = faults = 0
        seconds = 0.0
        for i, (label, act, update) in enumerate(trace):
            labels.append(label)
            need = weights + act
            if not self.paged:
                total = need + optimizer_state
                used.append(total)
                res_hist.append(optimizer_state)
                if total > self.budget:
                    return PagingResult(True, i, used, res_hist, 0, 0, 0, 0.0, labels)
                continue
            if need > self.budget:           # even with every page on the host it does not fit
                used.append(need)
                res_hist.append(0)
                return PagingResult(True, i, used, res_hist, to_host, to_device, faults, seconds, labels)
            room = (self.budget - need) // self.page_bytes
            if resident > room:              # evict least recently used pages to the host
                moved = (resident - room) * self.page_bytes
                to_host += moved
                seconds += moved / self.bandwidth
                resident = room
            if update and resident < n_pages:  # the update touches every page: bring them back
                back = min(n_pages, room) - resident
                missing = n_pages - resident
                if self.prefetch:
                    to_device += back * self.page_bytes
                    seconds += back * self.page_bytes / self.bandwidth
                    # pages that still do not fit are streamed through (in and out again)
                    stream = (missing - back) * self.page_bytes
                    to_device += stream
                    to_host += stream
                    seconds += 2 * stream / self.bandwidth
                else:
                    faults += missing
                    to_device += missing * self.page_bytes
                    seconds += missing * (self.page_bytes / self.bandwidth + self.fault_latency)
                    stream = (missing - back) * self.page_bytes
                    to_host += stream
                    seconds += stream / self.bandwidth
                resident += back
            used.append(need + resident * self.page_bytes)
            res_hist.append(resident * self.page_bytes)
        return PagingResult(False, None, used, res_hist, to_host, to_device, faults, seconds, labels)


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


def check_fit(needed: float, device: str = "cuda", available: float | None = None, headroom: float = 0.9,
              what: str = "this run") -> FitDecision:
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
    reason = (f"{what} needs about {needed / GB:.2f} GB (estimate) and {verb} {headroom:.0%} of the "
              f"{available / GB:.2f} GB available on {device}")
    return FitDecision(fits, float(needed), available, device, reason)


def estimate_run(config, method: str, settings: dict, compute_dtype, *, load_dtype=None,
                 batch_size: int | None = None, seq_len: int | None = None, gradient_checkpointing: bool = True,
                 use_dora: bool = False) -> MemoryEstimate:
    """The estimate for one of lesson 5's runs: ``method`` in ``{"qlora", "lora", "full"}`` with a profile's
    ``settings`` (``r``, ``batch_size``, ``max_length``), every sequence at ``max_length`` (the worst
    case), 32-bit AdamW state (the size of ``paged_adamw_32bit``'s) and float32 adapters.
    ``load_dtype`` is the dtype the base is loaded in (default ``compute_dtype``; full fine-tuning under
    float16 mixed precision loads float32). DoRA adds a magnitude vector per adapted layer."""
    load_dtype = load_dtype or compute_dtype
    est = estimate_training_memory(
        config, method, batch_size or settings["batch_size"], seq_len or settings["max_length"],
        weight_dtype=load_dtype, compute_dtype=compute_dtype, lora_r=settings["r"], lora_dtype=torch.float32,
        lora_dropout=settings.get("lora_dropout", 0.0) if method != "full" else 0.0,
        gradient_checkpointing=gradient_checkpointing)
    if use_dora and method != "full":
        shapes = llama_linear_shapes(config)
        extra = sum(shapes[t][1] for t in LLAMA_LINEAR) * config.num_hidden_layers * 4  # float32 magnitudes
        est = MemoryEstimate(est.weights, est.quant_constants, est.lora_weights + extra, est.gradients + extra,
                             est.optimizer_state + 2 * extra, est.activations, est.details)
    return est

