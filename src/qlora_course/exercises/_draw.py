"""Drawing a probe's inputs from its seeded generator (every draw comes from ``g``: same salt, same inputs)."""

from __future__ import annotations

import torch


def ints(g: torch.Generator, low: int, high: int) -> int:
    """One integer in ``[low, high)``."""
    return int(torch.randint(low, high, (1,), generator=g).item())


def floats(g: torch.Generator, low: float, high: float) -> float:
    """One float in ``[low, high)``, rounded to 4 decimals (an input a learner could have typed)."""
    return round(low + (high - low) * torch.rand(1, generator=g, dtype=torch.float64).item(), 4)


def choice(g: torch.Generator, options: list):
    """One of ``options``."""
    return options[ints(g, 0, len(options))]


def sample(g: torch.Generator, options: list, k: int) -> list:
    """``k`` distinct items of ``options``, in a random order."""
    return [options[i] for i in torch.randperm(len(options), generator=g)[:k].tolist()]


def seed(g: torch.Generator) -> int:
    """A seed for torch's global generator, for answers that draw random numbers themselves (dropout)."""
    return ints(g, 0, 2**31 - 1)
