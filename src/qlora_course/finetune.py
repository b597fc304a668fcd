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

from . import validate

__all__ = [
    "IGNORE_INDEX",
    "tokenize_example",
    "truncate_example",
    "fit_to_length",
    "collate",
    "warmup_cosine",
    "train_sft",
    "cast_trainable",
    "training_precision",
]

IGNORE_INDEX = -100  # the label cross_entropy skips


def tokenize_example(tokenizer, prompt: str, completion: str, eos: bool = True) -> dict:
    """``{"input_ids", "labels"}`` (lists of int) for ``<s> prompt completion </s>``; labels are -100 on
    ``<s> prompt`` and equal the ids on ``completion </s>`` (``eos=False`` leaves out ``</s>``).

    The prompt and completion are tokenized separately and concatenated, so the boundary is exact even
    where a tokenizer would merge across it.
    """
    validate.tokenizer(tokenizer)
    for name, text in (("prompt", prompt), ("completion", completion)):
        if not isinstance(text, str):
            raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    if eos and tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; the model could never learn to stop")
    p = tokenizer(prompt)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"] + ([tokenizer.eos_token_id] if eos else [])
    return {"input_ids": p + c, "labels": [IGNORE_INDEX] * len(p) + c}


def truncate_example(example: dict, max_length: int, keep_first: int | None = None) -> dict | None:
    """``example`` (from :func:`tokenize_example`) cut to at most ``max_length`` tokens by dropping prompt
    tokens from the left, so that the completion, which the loss is on, is always kept whole. If the
    first token is ``keep_first`` (the BOS id) it stays. ``None`` when the completion itself does not fit
    with at least one prompt token before it."""
    validate.positive_int(max_length, "max_length")  # a count: not NaN, not 1e4, not a bool
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    ids, labels = example["input_ids"], example["labels"]
    if len(ids) <= max_length:
        return example
    n_prompt = next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))
    head = 1 if keep_first is not None and ids[:1] == [keep_first] else 0
    if len(ids) - n_prompt + head + 1 > max_length:
        return None
    keep = max_length - head
    return {"input_ids": ids[:head] + ids[-keep:], "labels": labels[:head] + labels[-keep:]}


def fit_to_length(dataset, tokenizer, max_length: int):
    """``(dataset, counts)``: ``dataset`` (``prompt``/``completion`` columns) with every row fitting in
    ``max_length`` tokens (special tokens and EOS included) *with its whole completion*.

    A trainer that truncates at ``max_length`` keeps the start of a row, so a long prompt pushes the
    completion out and the row trains nothing. Here long prompts lose their *oldest* tokens instead, and
    rows whose completion alone does not fit are dropped. ``counts`` says how many rows were ``kept``
    unchanged, ``truncated`` and ``dropped``.
    """
    dataset = validate.dataset(dataset, "dataset")
    validate.tokenizer(tokenizer)
    if validate.positive_int(max_length, "max_length") < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    counts = {"kept": 0, "truncated": 0, "dropped": 0}

    def n_tokens(prompt: str, completion: str) -> int:
        joint = len(tokenizer(prompt + completion)["input_ids"]) + 1
        return max(joint, len(tokenize_example(tokenizer, prompt, completion)["input_ids"]))

    def fit(row):
        prompt, completion = row["prompt"], row["completion"]
        length = n_tokens(prompt, completion)
        if length <= max_length:
            counts["kept"] += 1
            return row
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        budget = max_length - (length - len(ids))
        while budget > 0:
            cut = tokenizer.decode(ids[-budget:])
            if n_tokens(cut, completion) <= max_length:
                counts["truncated"] += 1
                return {**row, "prompt": cut}
            budget -= 1
        counts["dropped"] += 1
        return None

    rows = [r for r in (fit(row) for row in dataset) if r is not None]
    if not rows:
        raise ValueError(f"no row fits max_length={max_length} with its whole completion")
    from datasets import Dataset

    return Dataset.from_list(rows), counts


def cast_trainable(model, dtype=torch.float32) -> int:
    """Cast every parameter of ``model`` that requires grad to ``dtype``; returns how many were cast.

    TRL's ``SFTTrainer`` turns a quantized model's LoRA weights into bfloat16. Under float16 mixed
    precision (a T4) trainable weights must be float32 (the gradient scaler refuses float16 ones, and a
    T4 has no bfloat16), and for comparing QLoRA with LoRA the adapters should be the same dtype in both.
    """
    validate.module(model, "model")
    dtype = validate.float_dtype(dtype, "dtype")
    n = 0
    for p in model.parameters():
        if p.requires_grad and p.dtype != dtype:
            p.data = p.data.to(dtype)
            n += 1
    return n


def collate(examples: list[dict], pad_token_id: int) -> dict:
    """Right-pad a list of :func:`tokenize_example` outputs into tensors ``(batch, longest)``:
    ``input_ids`` int64, ``attention_mask`` int64 (0 on padding), ``labels`` int64 (-100 on padding)."""
    if pad_token_id is None:
        raise ValueError("batching needs a pad token (distinct from EOS)")
    if not examples:
        raise ValueError("nothing to collate: the list of examples is empty")
    for i, e in enumerate(examples):
        if len(e["labels"]) != len(e["input_ids"]):
            raise ValueError(
                f"example {i} has {len(e['input_ids'])} input ids but {len(e['labels'])} labels: "
                "there must be one label per token"
            )
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
    steps, then a cosine from 1 towards 0.1, which it would reach one step after the last."""
    for name, value in (("step", step), ("steps", steps), ("warmup", warmup)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative whole number, got {value!r}")
    if not 0 <= step < steps:
        raise ValueError(f"step must be in [0, steps={steps}), got {step}")
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train_sft(
    model,
    tokenizer,
    dataset,
    steps: int = 200,
    batch_size: int = 16,
    lr: float = 1e-3,
    warmup: int = 10,
    seed: int = 0,
    progress: bool = True,
    optimizer=None,
) -> list[float]:
    """Fine-tune the parameters of ``model`` that require grad on ``dataset`` (``prompt``/``completion``
    columns) for ``steps`` AdamW steps; returns the loss of every step.

    Batches are drawn by a seeded shuffle, epoch after epoch. The learning rate rises linearly for
    ``warmup`` steps, then follows a cosine to 10% of ``lr``. ``optimizer`` is a class called as
    ``optimizer(params, lr=lr, weight_decay=0.0)`` (default ``torch.optim.AdamW``; bitsandbytes'
    ``AdamW8bit`` or ``PagedAdamW`` fit too).
    """
    from tqdm.auto import tqdm

    validate.positive_int(steps, "steps")
    validate.positive_int(batch_size, "batch_size")
    validate.positive_number(lr, "lr")
    validate.non_negative_int(warmup, "warmup")
    validate.module(model, "model")
    validate.tokenizer(tokenizer)
    dataset = validate.dataset(dataset, "dataset")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no parameter requires grad: nothing to train (did you add adapters?)")
    examples = [
        tokenize_example(tokenizer, p, c) for p, c in zip(dataset["prompt"], dataset["completion"], strict=True)
    ]
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


def training_precision(method: str, compute_dtype) -> dict:
    """How lesson 5 loads and trains each ``method`` (``"qlora"``, ``"lora"`` or ``"full"``) for a
    ``compute_dtype``: ``{"load_dtype", "fp16", "bf16"}``, the last two for the trainer's mixed precision.

    The rule behind it: under float16 mixed precision (a T4) every *trainable* weight must be float32 —
    torch's gradient scaler refuses float16 gradients ("Attempting to unscale FP16 gradients"), and float16
    updates underflow. So full fine-tuning loads float32 weights and lets autocast compute in float16;
    (Q)LoRA keeps its frozen base in 16 or 4 bits and its adapters in float32 (PEFT makes them float32;
    :func:`cast_trainable` undoes TRL's bfloat16). With bfloat16 (Ampere and newer) nothing needs scaling;
    on a CPU everything is float32.
    """
    if method not in ("qlora", "lora", "full"):
        raise ValueError(f"method must be 'qlora', 'lora' or 'full', got {method!r}")
    compute_dtype = validate.float_dtype(compute_dtype, "compute_dtype", ("float32", "float16", "bfloat16"))
    load = torch.float32 if (method == "full" and compute_dtype == torch.float16) else compute_dtype
    return {"load_dtype": load, "fp16": compute_dtype == torch.float16, "bf16": compute_dtype == torch.bfloat16}
