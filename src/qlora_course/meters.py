"""Measuring training memory on any device, the CPU included (lesson 4).

:func:`saved_tensor_bytes` counts what autograd saves for the backward pass; :class:`LiveBytes` follows
every tensor created in a block and keeps the peak, the CPU counterpart of
``torch.cuda.max_memory_allocated``; :func:`measure_training_memory` splits one real training step into
the parts :mod:`qlora_course.estimator` estimates, so the two can be set side by side.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["tensor_bytes", "saved_tensor_bytes", "LiveBytes", "measure_training_memory"]


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views and repeats counted once)."""
    if isinstance(tensors, torch.Tensor) or not hasattr(tensors, "__iter__"):
        raise TypeError(f"tensors must be an iterable of tensors, got {type(tensors).__name__}")
    seen = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.numel() > 0:
            if t.is_meta:  # every meta storage has address 0: tell them apart by the tensor a view came from
                root = t
                while root._base is not None:
                    root = root._base
                seen[("meta", id(root))] = root.untyped_storage().nbytes()
            else:
                s = t.untyped_storage()
                seen[(t.device.type, s.data_ptr())] = s.nbytes()
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
        from torch.multiprocessing.reductions import StorageWeakRef
        from torch.utils._pytree import tree_leaves

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
    result["step_peak"] = (
        result["weights"] + result["quant_constants"] + result["lora_weights"] + result["optimizer_state"] + meter.peak
    )
    optimizer.zero_grad(set_to_none=True)
    return result
