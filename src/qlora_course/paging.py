"""Paged optimizer state, simulated: a training trace replayed against a device budget (lesson 4).

bitsandbytes' paged optimizers keep their state in CUDA unified memory, which the driver moves to host
memory page by page when the device runs short. :class:`PagingSimulator` replays the memory events of
training steps (:func:`training_trace`) with and without paging, so a learner sees when paging avoids an
out-of-memory error, what it moves and what it costs. Paging can free at most the optimizer state's own
bytes: weights and activations never leave the device.

The simulator keeps PyTorch's caching allocator in the picture: memory the activations free after a
spike stays reserved by PyTorch for later allocations (it is not returned to the driver unless
``torch.cuda.empty_cache()`` is called), so optimizer pages evicted by the spike cannot come back into it;
every later update streams them through what room is left, until the cache is emptied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .validate import flag, non_negative_int, positive_int, positive_number

__all__ = ["PagingResult", "training_trace", "trace_from_estimates", "PagingSimulator"]


@dataclass
class PagingResult:
    """What :meth:`PagingSimulator.run` saw: per event, device bytes in use (PyTorch's reserved pool plus the
    optimizer pages on the device), the pages on the device, PyTorch's reserved pool and the seconds of
    transfers; totals of paging."""

    oom: bool
    oom_at: int | None
    device_used: list[int]
    paged_resident: list[int]
    bytes_to_host: int
    bytes_to_device: int
    page_faults: int
    transfer_seconds: float
    labels: list[str]
    reserved: list[int] = field(default_factory=list)
    seconds_per_event: list[float] = field(default_factory=list)

    @property
    def bytes_moved(self) -> int:
        return self.bytes_to_host + self.bytes_to_device

    @property
    def peak_device(self) -> int:
        return max(self.device_used) if self.device_used else 0


def training_trace(
    steps: int,
    weights: int,
    optimizer_state: int,
    activations: int,
    spike_step: int | None = None,
    spike_factor: float = 4.0,
) -> list[tuple[str, int, bool]]:
    """A training loop's memory trace for :class:`PagingSimulator`: ``[(label, activation_bytes,
    optimizer_update)]``.

    Each step has a forward/backward event that needs ``activations`` bytes (``spike_factor`` times
    more on ``spike_step``, a long sequence) and an optimizer event that touches the whole optimizer
    state. ``weights`` and ``optimizer_state`` are passed on so the simulator knows the resident sizes.
    """
    positive_int(steps, "steps")
    for name, val in (("weights", weights), ("optimizer_state", optimizer_state), ("activations", activations)):
        non_negative_int(val, name)
    positive_number(spike_factor, "spike_factor")
    if spike_step is not None and (non_negative_int(spike_step, "spike_step") >= steps):
        raise ValueError(f"spike_step must be a step in [0, {steps}), got {spike_step}")
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
    ``prefetch``, page by page on first touch, each fault paying ``fault_latency`` seconds too; pages
    that find no room are streamed through (in, and out again). The estimated transfer time is bytes
    moved / bandwidth + faults x latency.

    PyTorch's caching allocator keeps what the weights and activations once needed: its reserved pool is
    the high-water mark of ``weights + activations`` and does not shrink when the activations are freed,
    so the room for optimizer pages is ``budget - reserved``: after a spike, evicted pages cannot come
    back, and every later update streams them. ``empty_cache=True`` models calling
    ``torch.cuda.empty_cache()`` after every step (the pool shrinks to what is in use; Hugging Face's
    ``TrainingArguments(torch_empty_cache_steps=1)``), at the cost of new ``cudaMalloc`` calls.

    ``budget_bytes``: device memory; ``bandwidth``: host-device bytes per second (PCIe 4.0 x16 about
    25e9 in practice).
    """

    def __init__(
        self,
        budget_bytes: int,
        page_bytes: int = 2 * 1024 * 1024,
        bandwidth: float = 25e9,
        fault_latency: float = 20e-6,
        paged: bool = True,
        prefetch: bool = True,
        empty_cache: bool = False,
    ):
        positive_int(page_bytes, "page_bytes")
        if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes < page_bytes:
            raise ValueError(
                f"budget_bytes ({budget_bytes!r}) must be an integer of at least one page ({page_bytes} bytes)"
            )
        if not bandwidth > 0 or not fault_latency >= 0:
            raise ValueError("bandwidth must be positive and fault_latency non-negative")
        self.budget = budget_bytes
        self.page_bytes = page_bytes
        self.bandwidth = float(bandwidth)
        self.fault_latency = float(fault_latency)
        self.paged = flag(paged, "paged")
        self.prefetch = flag(prefetch, "prefetch")
        self.empty_cache = flag(empty_cache, "empty_cache")

    def run(self, trace, weights: int, optimizer_state: int) -> PagingResult:
        """Replay ``trace`` (from :func:`training_trace`) with ``weights`` and ``optimizer_state`` bytes."""
        if weights < 0 or optimizer_state < 0:
            raise ValueError("weights and optimizer_state must be non-negative")
        n_pages = math.ceil(optimizer_state / self.page_bytes)
        resident = n_pages  # pages of optimizer state on the device
        reserved = 0  # PyTorch's pool: the most weights + activations have needed (unless emptied)
        used, res_hist, pool, per_event, labels = [], [], [], [], []
        to_host = to_device = faults = 0
        seconds = 0.0

        def result(oom_at):
            return PagingResult(
                oom_at is not None, oom_at, used, res_hist, to_host, to_device, faults, seconds, labels, pool, per_event
            )

        for i, (label, act, update) in enumerate(trace):
            labels.append(label)
            need = weights + act
            if not self.paged:
                total = need + optimizer_state
                used.append(total)
                res_hist.append(optimizer_state)
                pool.append(total)
                per_event.append(0.0)
                if total > self.budget:
                    return result(i)
                continue
            reserved = need if self.empty_cache else max(reserved, need)
            if need > self.budget:  # even with every page on the host it does not fit
                used.append(need)
                res_hist.append(0)
                pool.append(need)
                per_event.append(0.0)
                return result(i)
            before = seconds
            room = (self.budget - reserved) // self.page_bytes
            if resident > room:  # evict least recently used pages to the host
                moved = (resident - room) * self.page_bytes
                to_host += moved
                seconds += moved / self.bandwidth
                resident = room
            if update and resident < n_pages:  # the update touches every page: bring them back
                back = min(n_pages, room) - resident
                missing = n_pages - resident
                stream = (missing - back) * self.page_bytes  # pages with no room: in, and out again
                if self.prefetch:
                    to_device += back * self.page_bytes + stream
                    to_host += stream
                    seconds += (back * self.page_bytes + 2 * stream) / self.bandwidth
                else:
                    faults += missing
                    to_device += missing * self.page_bytes
                    seconds += missing * (self.page_bytes / self.bandwidth + self.fault_latency)
                    to_host += stream
                    seconds += stream / self.bandwidth
                resident += back
            used.append(reserved + resident * self.page_bytes)
            res_hist.append(resident * self.page_bytes)
            pool.append(reserved)
            per_event.append(seconds - before)
        return result(None)


def trace_from_estimates(steady, spike, steps: int = 6, spike_step: int = 3, steady_terms=(), spike_terms=()):
    """A trace for :class:`PagingSimulator` built from two :class:`~qlora_course.estimator.MemoryEstimate`
    objects of one training run: ``steady`` for the usual batch, ``spike`` for one long batch at
    ``spike_step``. Returns ``(trace, resident, optimizer_state)`` in bytes, where ``resident`` is what
    never pages (weights, quantization constants, adapters, gradients) and ``optimizer_state`` what a
    paged optimizer can move to the host.

    ``steady_terms`` and ``spike_terms`` (:func:`qlora_course.estimator.gpu_terms` of the two setups) add what
    a CUDA run needs beyond the estimates: the CUDA context to what never pages, every other term (the
    backward's transients, the allocator's reserve) to the step's activations.
    """
    from .estimator import CONTEXT_TERM, GpuTerm

    parts = ("weights", "quant_constants", "lora_weights", "gradients", "optimizer_state")
    if any(getattr(steady, p) != getattr(spike, p) for p in parts):
        raise ValueError("steady and spike must differ only in activations (the same model, method and optimizer)")
    if not steady.activations > 0:
        raise ValueError("the steady estimate has no activations")
    steady_terms, spike_terms = list(steady_terms), list(spike_terms)
    if not all(isinstance(t, GpuTerm) for t in steady_terms + spike_terms):
        raise TypeError("steady_terms and spike_terms must be GpuTerm lists (estimator.gpu_terms(config, setup))")
    context = [sum(t.bytes for t in ts if t.name == CONTEXT_TERM) for ts in (steady_terms, spike_terms)]
    if context[0] != context[1]:
        raise ValueError("steady_terms and spike_terms must assume the same CUDA context")
    extra = [sum(t.bytes for t in ts if t.name != CONTEXT_TERM) for ts in (steady_terms, spike_terms)]
    resident = int(steady.weights + steady.quant_constants + steady.lora_weights + steady.gradients + context[0])
    state = int(steady.optimizer_state)
    act, spike_act = steady.activations + extra[0], spike.activations + extra[1]
    trace = training_trace(steps, resident, state, int(act), spike_step, spike_act / act)
    return trace, resident, state
