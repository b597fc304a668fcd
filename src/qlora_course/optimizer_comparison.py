"""Does 8-bit optimizer state change what LoRA learns? Lesson 4's comparison, one definition for the notebook
and ``tools/compare_optimizers.py``.

One run: the course model with LoRA (r = 16 on all linear layers, float32, no dropout), trained with
:func:`qlora_course.finetune.train_sft` for :data:`SETTINGS` ``steps`` on the course task, then judged by
exact match on the ``test`` split. :func:`run` does it for one optimizer (a name of :data:`OPTIMIZERS`)
and one seed, which sets both the adapters' initialisation and the batch order. The tool trains every
optimizer over several seeds and stores the result (:data:`STORED`); the notebook shows that table and
re-trains seed 0 live. A comparison means something only when both optimizers beat the majority-class
baseline (:func:`qlora_course.evaluation.majority_accuracy`): at the majority baseline both say the same
word for every question, and the comparison tests nothing.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import torch

from .models import COURSE_MODEL_DIR

__all__ = ["OPTIMIZERS", "SETTINGS", "STORED", "run", "load_stored", "gap_summary"]

# the optimizers compared, by name: a class called as ``cls(params, lr=..., weight_decay=0.0)``
OPTIMIZERS = {"AdamW (32-bit)": "torch.optim.AdamW", "AdamW8bit": "bitsandbytes.optim.AdamW8bit"}
# 60 steps at 5e-3 left both at the majority baseline; 75 at 3e-3 beats it with both on every stored seed
SETTINGS = {"steps": 75, "lr": 3e-3, "warmup": 8, "batch_size": 16, "r": 16, "eval_split": "test"}
STORED = COURSE_MODEL_DIR / "optimizer_comparison.json"


def _optimizer_class(name: str):
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {list(OPTIMIZERS)}")
    module, _, attr = OPTIMIZERS[name].rpartition(".")
    import importlib

    return getattr(importlib.import_module(module), attr)


def run(optimizer: str, seed: int, data, tokenizer=None) -> dict:
    """Train the course model's LoRA adapters with ``optimizer`` (a key of :data:`OPTIMIZERS`) and ``seed``
    on ``data["train"]`` as :data:`SETTINGS` says; returns ``{"optimizer", "seed", "accuracy", "curve"}``:
    exact match on ``data[SETTINGS["eval_split"]]`` (0 to 1) and the loss of every step."""
    import warnings

    from peft import LoraConfig, get_peft_model

    from .evaluation import exact_match
    from .finetune import train_sft
    from .llama import LLAMA_LINEAR
    from .loading import load_model_and_tokenizer

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    cls = _optimizer_class(optimizer)
    r = SETTINGS["r"]
    model, tok = load_model_and_tokenizer("course-tiny", compute_dtype=torch.float32)
    tokenizer = tokenizer or tok
    model.config.use_cache = False
    torch.manual_seed(seed)  # the adapters' initialisation
    model = get_peft_model(
        model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=list(LLAMA_LINEAR))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        curve = train_sft(
            model,
            tokenizer,
            data["train"],
            steps=SETTINGS["steps"],
            batch_size=SETTINGS["batch_size"],
            lr=SETTINGS["lr"],
            warmup=SETTINGS["warmup"],
            seed=seed,
            optimizer=cls,
            progress=False,
        )
    accuracy = exact_match(model, tokenizer, data[SETTINGS["eval_split"]], progress=False).accuracy
    return {"optimizer": optimizer, "seed": seed, "accuracy": accuracy, "curve": [float(x) for x in curve]}


def load_stored(path: Path = STORED) -> dict:
    """The stored comparison (``tools/compare_optimizers.py``): ``settings``, ``majority``, ``runs``, ..."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def gap_summary(runs: list[dict]) -> dict:
    """Exact match of each optimizer per seed and the gap, 32-bit minus 8-bit, in points: ``{"seeds",
    "accuracy": {optimizer: [per seed]}, "gaps": [per seed], "mean", "std"}`` (sample standard deviation;
    0 with one seed). Every optimizer must have run every seed."""
    names = list(OPTIMIZERS)
    seeds = sorted({r["seed"] for r in runs})
    acc = {n: {r["seed"]: r["accuracy"] for r in runs if r["optimizer"] == n} for n in names}
    missing = [(n, s) for n in names for s in seeds if s not in acc[n]]
    if not seeds or missing:
        raise ValueError(f"every optimizer needs a run for every seed; missing (optimizer, seed): {missing}")
    gaps = [100 * (acc[names[0]][s] - acc[names[1]][s]) for s in seeds]
    std = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
    return {
        "seeds": seeds,
        "accuracy": {n: [acc[n][s] for s in seeds] for n in names},
        "gaps": gaps,
        "mean": statistics.fmean(gaps),
        "std": 0.0 if math.isnan(std) else std,
    }
