"""Lessons 5 and 6's fine-tuning settings: one typed, frozen :class:`TrainingSettings` per profile.

The QLoRA paper's released scripts use r=64, alpha=16, dropout 0.1 (7B) / 0.05 (13B+), lr 2e-4, constant
schedule, warmup ratio 0.03, max_grad_norm 0.3, batch 16 (1 x 16 accumulation), paged 32-bit AdamW. The
hub profiles keep those; course-tiny keeps the schedule and clipping but needs a higher learning rate (a
6M-parameter model, 80 steps on a CPU) and a smaller rank (its layers are 256 wide); alpha = 2r keeps the
update scale alpha/r at 2.

:func:`training_settings` picks a profile's settings and applies overrides (a dict, JSON text, or
``$QLORA_COURSE_SETTINGS``), e.g. ``{"max_steps": 20}`` for a quick run. Every value is checked when a
:class:`TrainingSettings` is made, so a wrong override fails at once with the field's name.
:func:`chat_settings` does the same for lesson 6's chat fine-tune (:data:`CHAT_TRAINING`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

from .profiles import Profile, resolve_profile
from .validate import flag, positive_int, positive_number, probability

__all__ = ["TrainingSettings", "TRAINING", "training_settings", "CHAT_TRAINING", "chat_settings"]

# fields that count something (whole numbers above 0) and fields that are learning rates (above 0)
_COUNTS = ("r", "lora_alpha", "max_steps", "batch_size", "grad_accum", "max_length", "eval_limit", "seeds")
_RATES = ("learning_rate", "full_learning_rate")


@dataclass(frozen=True)
class TrainingSettings:
    """How lesson 5 fine-tunes one profile's model.

    - ``r``, ``lora_alpha``, ``lora_dropout``: the adapters (rank, scale numerator, dropout in [0, 1));
    - ``learning_rate`` for (Q)LoRA and ``full_learning_rate`` for full fine-tuning;
    - ``max_steps`` optimizer steps of ``batch_size`` x ``grad_accum`` examples of at most ``max_length``
      tokens;
    - ``eval_limit``: test questions evaluated per split;
    - ``seeds``: how many seeds the method comparison (lesson 5, section 8) trains live; course-tiny's
      three-seed table comes from ``tools/compare_methods.py``, and the notebook re-trains seed 0 to check it;
    - ``gradient_checkpointing``: a course-model step (about 0.3 GB at batch 16) fits any CPU's memory, so
      it trains without (faster); the hub profiles need it to fit.

    Counts must be ``int`` (not ``bool``, not a float such as ``1e4``) above 0; learning rates numbers
    above 0 (an ``int`` becomes a ``float``). Anything else raises ``ValueError`` naming the field.
    """

    r: int
    lora_alpha: int
    lora_dropout: float
    learning_rate: float
    full_learning_rate: float
    max_steps: int
    batch_size: int
    grad_accum: int
    max_length: int
    eval_limit: int
    seeds: int
    gradient_checkpointing: bool

    def __post_init__(self) -> None:
        for name in _COUNTS:
            positive_int(getattr(self, name), f"setting {name!r}")
        for name in _RATES:
            object.__setattr__(self, name, positive_number(getattr(self, name), f"setting {name!r}"))
        object.__setattr__(self, "lora_dropout", probability(self.lora_dropout, "setting 'lora_dropout'"))
        flag(self.gradient_checkpointing, "setting 'gradient_checkpointing'")


TRAINING: dict[str, TrainingSettings] = {
    "course-tiny": TrainingSettings(
        r=16,
        lora_alpha=32,
        lora_dropout=0.05,
        learning_rate=2e-3,
        full_learning_rate=5e-4,  # the best of tools/compare_methods.py's sweep on the validation split
        max_steps=80,
        batch_size=16,
        grad_accum=1,
        max_length=128,
        eval_limit=200,
        seeds=1,
        gradient_checkpointing=False,
    ),
    "colab-t4": TrainingSettings(
        r=64,
        lora_alpha=16,
        lora_dropout=0.1,
        learning_rate=2e-4,
        full_learning_rate=2e-5,
        max_steps=100,
        batch_size=4,
        grad_accum=4,
        max_length=512,
        eval_limit=50,
        seeds=1,
        gradient_checkpointing=True,
    ),
    "gpu-8b": TrainingSettings(
        r=64,
        lora_alpha=16,
        lora_dropout=0.1,
        learning_rate=2e-4,
        full_learning_rate=1e-5,
        max_steps=200,
        batch_size=4,
        grad_accum=4,
        max_length=1024,
        eval_limit=100,
        seeds=1,
        gradient_checkpointing=True,
    ),
}


# Lesson 6's chat fine-tune: the same fields, read as follows. ``eval_limit`` is the number of held-out
# conversations scored per split; ``full_learning_rate`` and ``seeds`` are not used. course-tiny keeps
# lesson 5's settings with room for a two-turn conversation (256 tokens); the hub chat profile keeps the
# QLoRA paper's schedule with a smaller rank (a 1.7B model, one small task).
CHAT_TRAINING: dict[str, TrainingSettings] = {
    "course-tiny": dataclasses.replace(TRAINING["course-tiny"], max_length=256, eval_limit=80),
    "colab-t4-chat": TrainingSettings(
        r=16,
        lora_alpha=32,
        lora_dropout=0.05,
        learning_rate=2e-4,
        full_learning_rate=2e-5,
        max_steps=60,
        batch_size=8,
        grad_accum=2,
        max_length=512,
        eval_limit=100,
        seeds=1,
        gradient_checkpointing=True,
    ),
}


def _overrides(overrides: dict | str | None) -> dict:
    """``overrides`` as a dict: ``None`` reads ``$QLORA_COURSE_SETTINGS``; text is parsed as JSON."""
    if overrides is None:
        overrides = os.environ.get("QLORA_COURSE_SETTINGS", "")
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides) if overrides.strip() else {}
        except json.JSONDecodeError as err:
            raise ValueError(
                f"QLORA_COURSE_SETTINGS must be a JSON object, e.g. '{{\"max_steps\": 20}}': {err}"
            ) from None
    if not isinstance(overrides, dict):
        raise ValueError(f"settings overrides must be a dict (a JSON object), got {type(overrides).__name__}")
    return overrides


def training_settings(profile: Profile | str | None = None, overrides: dict | str | None = None) -> TrainingSettings:
    """Lesson 5's :class:`TrainingSettings` for a profile (any other model with chat data, or on a GPU, gets
    ``colab-t4``'s; with the course task, ``course-tiny``'s).

    ``overrides`` (a dict, or JSON text; default ``$QLORA_COURSE_SETTINGS``) replaces some of them, e.g.
    ``{"max_steps": 20, "seeds": 1}`` for a quick run. Unknown names and invalid values raise ``ValueError``.
    """
    profile = profile if isinstance(profile, Profile) else resolve_profile(profile)
    settings = TRAINING.get(
        profile.name,
        TRAINING["colab-t4"]
        if profile.needs_gpu or not profile.offline or profile.dataset
        else TRAINING["course-tiny"],
    )
    return _apply(settings, overrides)


def chat_settings(profile: Profile | str | None = None, overrides: dict | str | None = None) -> TrainingSettings:
    """Lesson 6's settings (see :data:`CHAT_TRAINING`) for a profile: ``colab-t4-chat``'s for any hub or
    local chat model, ``course-tiny``'s for the course model. ``overrides`` as in :func:`training_settings`
    (default ``$QLORA_COURSE_SETTINGS``)."""
    profile = profile if isinstance(profile, Profile) else resolve_profile(profile)
    key = "course-tiny" if profile.name == "course-tiny" else "colab-t4-chat"
    return _apply(CHAT_TRAINING[key], overrides)


def _apply(settings: TrainingSettings, overrides: dict | str | None) -> TrainingSettings:
    changes = _overrides(overrides)
    known = [f.name for f in dataclasses.fields(TrainingSettings)]
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; known: {sorted(known)}")
    return dataclasses.replace(settings, **changes)
