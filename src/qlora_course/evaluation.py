"""Exact-match evaluation with batched greedy generation (lessons 1, 4 and 5 reuse it)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

__all__ = ["EvalResult", "bnb_training_path", "generate_completions", "exact_match", "completion_loss",
           "summed_next_token_nll"]


@contextmanager
def bnb_training_path(model):
    """Keep bitsandbytes' 4-bit layers of ``model`` on their dequantize-then-matmul path while evaluating.

    On CPUs with AVX512-BF16, bitsandbytes 0.50 switches a ``Linear4bit`` in eval mode, given an input
    that needs no gradient, to a fused bfloat16 kernel and *repacks its weight in place for good*. That
    kernel has no backward: a LoRA fine-tune run on the model afterwards silently gets no gradients.
    Marking just those layers as training (they have no dropout, so nothing else changes) avoids the
    switch and gives the same numbers on every CPU. Other modules keep their mode.
    """
    layers = [m for m in model.modules()
              if type(m).__module__.startswith("bitsandbytes") and hasattr(getattr(m, "weight", None), "quant_state")]
    modes = [m.training for m in layers]
    for m in layers:
        m.training = True
    try:
        yield model
    finally:
        for m, mode in zip(layers, modes):
            m.training = mode


@dataclass
class EvalResult:
    """``accuracy`` in [0, 1]; ``predictions`` and ``references`` as stripped strings, in data set order."""

    accuracy: float
    predictions: list[str]
    references: list[str]
    prompts: list[str] = field(repr=False)

    def examples(self, k: int = 3) -> list[dict]:
        """The first ``k`` examples as ``{"prompt", "prediction", "reference", "correct"}``."""
        return [{"prompt": p, "prediction": y, "reference": r, "correct": y == r}
                for p, y, r in list(zip(self.prompts, self.predictions, self.references))[:k]]


@torch.no_grad()
def generate_completions(model, tokenizer, prompts: list[str], batch_size: int = 32, max_new_tokens: int = 8,
                         progress: bool = True, desc: str = "generating") -> list[str]:
    """Greedy completions of ``prompts``, ``batch_size`` at a time, cut at the first newline and stripped.

    Prompts are padded on the left, so that every prompt ends where generation starts; generation
    stops at the tokenizer's EOS token.
    """
    from tqdm.auto import tqdm

    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError("batch_size and max_new_tokens must be positive")
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token: set one (distinct from EOS) before batched generation")
    device = next(model.parameters()).device
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    out = []
    try:
        with bnb_training_path(model):
            for start in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=not progress, leave=False):
                enc = tokenizer(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True).to(device)
                gen = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
                texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                out += [t.split("\n")[0].strip() for t in texts]
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def exact_match(model, tokenizer, dataset, batch_size: int = 32, max_new_tokens: int = 8, limit: int | None = None,
                progress: bool = True) -> EvalResult:
    """Share of ``dataset`` rows (``prompt``, ``completion`` columns) whose greedy completion equals the
    reference exactly, after stripping spaces. ``limit`` evaluates only the first rows."""
    for col in ("prompt", "completion"):
        if col not in dataset.column_names:
            raise ValueError(f"the data set needs a {col!r} column, it has {dataset.column_names}")
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise ValueError("nothing to evaluate: the data set is empty")
    prompts = list(dataset["prompt"][:n])
    refs = [c.strip() for c in dataset["completion"][:n]]
    preds = generate_completions(model, tokenizer, prompts, batch_size, max_new_tokens, progress, desc="exact match")
    acc = sum(p == r for p, r in zip(preds, refs)) / n
    return EvalResult(acc, preds, refs, prompts)


def summed_next_token_nll(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          labels: torch.Tensor) -> tuple[float, int]:
    """``(sum of the next-token losses, number of tokens)`` over the positions whose ``labels`` are not
    -100, each token predicted from the ones before it (labels shifted by one). Logits in float32."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    targets = labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), targets, ignore_index=-100,
                                            reduction="sum")
    return nll.item(), int((targets != -100).sum())


@torch.no_grad()
def completion_loss(model, tokenizer, dataset, batch_size: int = 16, limit: int | None = None) -> float:
    """Mean cross-entropy per completion token (EOS included) of ``dataset``'s ``completion`` given its
    ``prompt``: the held-out measure for data sets where exact match means nothing (open-ended chat)."""
    from .finetune import collate, tokenize_example

    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise ValueError("the data set is empty")
    examples = [tokenize_example(tokenizer, dataset[i]["prompt"], dataset[i]["completion"]) for i in range(n)]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with bnb_training_path(model):
            for start in range(0, n, batch_size):
                batch = {k: v.to(device) for k, v in collate(examples[start:start + batch_size],
                                                              tokenizer.pad_token_id).items()}
                nll, n_tokens = summed_next_token_nll(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
                total += nll
                count += n_tokens
    finally:
        model.train(was_training)
    return total / count
