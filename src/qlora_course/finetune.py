"""Supervised fine-tuning on prompt-completion data, by hand: what TRL's ``SFTTrainer`` does for us.

Three pieces, each a few lines, so a learner can check them on paper:

1. :func:`tokenize_example` turns ``prompt`` + ``completion`` into token ids, appends EOS (so the model
   learns to stop) and sets the labels of the prompt tokens to -100 (so the loss is on the completion
   only);
2. :func:`collate` pads a batch with the pad token (never EOS) and masks the padding out of the loss;
3. :func:`train_sft` runs AdamW over the trainable parameters for a number of steps, with a progress
   bar, and returns the loss curve.
"""

from __future__ import annotations

import math
import random

import torch

__all__ = ["IGNORE_INDEX", "tokenize_example", "collate", "warmup_cosine", "train_sft"]

IGNORE_INDEX = -100  # the label cross_entropy skips


def tokenize_example(tokenizer, prompt: str, completion: str) -> dict:
    """``{"input_ids", "labels"}`` (lists of int) for ``<s> prompt completion </s>``; labels are -100 on
    ``<s> prompt`` and equal the ids on ``completion </s>``.

    The prompt and completion are tokenized separately and concatenated, so the boundary is exact even
    where a tokenizer would merge across it.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; the model could never learn to stop")
    p = tokenizer(prompt)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {"input_ids": p + c, "labels": [IGNORE_INDEX] * len(p) + c}


def collate(examples: list[dict], pad_token_id: int) -> dict:
    """Right-pad a list of :func:`tokenize_example` outputs into tensors ``(batch, longest)``:
    ``input_ids`` int64, ``attention_mask`` int64 (0 on padding), ``labels`` int64 (-100 on padding)."""
    if pad_token_id is None:
        raise ValueError("batching needs a pad token (distinct from EOS)")
    n = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), n), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), n), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), n), dtype=torch.long)
    for i, e in enumerate(examples):
        k = len(e["input_ids"])
        ids[i, :k] = torch.tensor(e["input_ids"])
        labels[i, :k] = torch.tensor(e["labels"])
        mask[i, :k] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def warmup_cosine(step: int, steps: int, warmup: int) -> float:
    """Learning-rate multiplier at ``step`` (0-based) of ``steps``: linear from 1/warmup to 1 over ``warmup``
    steps, then a cosine from 1 down to 0.1 at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train_sft(model, tokenizer, dataset, steps: int = 200, batch_size: int = 16, lr: float = 1e-3,
              warmup: int = 10, seed: int = 0, progress: bool = True, optimizer=None) -> list[float]:
    """Fine-tune the parameters of ``model`` that require grad on ``dataset`` (``prompt``/``completion``
    columns) for ``steps`` AdamW steps; returns the loss of every step.

    Batches are drawn by a seeded shuffle, epoch after epoch. The learning rate rises linearly for
    ``warmup`` steps, then follows a cosine to 10% of ``lr``. ``optimizer`` is a class called as
    ``optimizer(params, lr=lr, weight_decay=0.0)`` (default ``torch.optim.AdamW``; bitsandbytes'
    ``AdamW8bit`` or ``PagedAdamW`` fit too).
    """
    from tqdm.auto import tqdm

    if steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError("steps, batch_size and lr must be positive")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no parameter requires grad: nothing to train (did you add adapters?)")
    examples = [tokenize_example(tokenizer, p, c) for p, c in zip(dataset["prompt"], dataset["completion"])]
    rng = random.Random(seed)
    order: list[int] = []
    device = next(model.parameters()).device
    opt = (optimizer or torch.optim.AdamW)(params, lr=lr, weight_decay=0.0)
    losses = []
    model.train()
    bar = tqdm(range(steps), desc="fine-tuning", unit="step", disable=not progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr * warmup_cosine(step, steps, warmup)
        if len(order) < batch_size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order += fresh
        idx, order = order[:batch_size], order[batch_size:]
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in idx], tokenizer.pad_token_id).items()}
        loss = model(**batch).loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at step {step}: lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return losses
