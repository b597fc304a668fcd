"""Evaluating a causal language model: perplexity, how closely a quantized model follows the 16-bit one
(token KL divergence, top-1 agreement, with bootstrap intervals), next-token losses of completions, exact
match with batched greedy generation, multiple-choice accuracy and the majority baseline (lessons 2 to 5)."""

from __future__ import annotations

import contextlib
import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from . import validate

__all__ = [
    "EvalResult",
    "evaluating",
    "bnb_training_path",
    "generate_completions",
    "exact_match",
    "completion_loss",
    "summed_next_token_nll",
    "next_token_nll_per_row",
    "completion_nlls",
    "choice_accuracy",
    "majority_accuracy",
    "perplexity",
    "token_agreement",
    "bootstrap_interval",
]


@contextmanager
def evaluating(model):
    """``model`` in eval mode inside the block, and back in the mode it was in afterwards (an evaluation
    in the middle of training must not leave dropout off)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextmanager
def bnb_training_path(model):
    """Keep bitsandbytes' 4-bit layers of ``model`` on their dequantize-then-matmul path while evaluating.

    On CPUs with AVX512-BF16, bitsandbytes 0.50 switches a ``Linear4bit`` in eval mode, given an input
    that needs no gradient, to a fused bfloat16 kernel and *repacks its weight in place for good*. That
    kernel has no backward: a LoRA fine-tune run on the model afterwards silently gets no gradients.
    Marking just those layers as training (they have no dropout, so nothing else changes) avoids the
    switch and gives the same numbers on every CPU. Other modules keep their mode.
    """
    layers = [  # the layer keeps its quant_state too: under FSDP the weight between forwards is a plain tensor
        m
        for m in model.modules()
        if type(m).__module__.startswith("bitsandbytes")
        and (hasattr(getattr(m, "weight", None), "quant_state") or getattr(m, "quant_state", None) is not None)
    ]
    modes = [m.training for m in layers]
    for m in layers:
        m.training = True
    try:
        yield model
    finally:
        for m, mode in zip(layers, modes, strict=True):
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
        return [
            {"prompt": p, "prediction": y, "reference": r, "correct": y == r}
            for p, y, r in list(zip(self.prompts, self.predictions, self.references, strict=True))[:k]
        ]


@torch.no_grad()
def generate_completions(
    model,
    tokenizer,
    prompts: list[str],
    batch_size: int = 32,
    max_new_tokens: int = 8,
    progress: bool = True,
    desc: str = "generating",
) -> list[str]:
    """Greedy completions of ``prompts``, ``batch_size`` at a time, cut at the first newline and stripped.

    Prompts are padded on the left, so that every prompt ends where generation starts; generation
    stops at the tokenizer's EOS token.
    """
    validate.module(model, "model")
    validate.tokenizer(tokenizer)
    prompts = validate.texts(prompts, "prompts")
    validate.positive_int(batch_size, "batch_size")
    validate.positive_int(max_new_tokens, "max_new_tokens")
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
                enc = tokenizer(list(prompts[start : start + batch_size]), return_tensors="pt", padding=True).to(device)
                gen = model.generate(
                    **enc,
                    do_sample=False,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
                texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
                out += [t.split("\n")[0].strip() for t in texts]
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def exact_match(
    model,
    tokenizer,
    dataset,
    batch_size: int = 32,
    max_new_tokens: int = 8,
    limit: int | None = None,
    progress: bool = True,
) -> EvalResult:
    """Share of ``dataset`` rows (``prompt``, ``completion`` columns) whose greedy completion equals the
    reference exactly, after stripping spaces. ``limit`` evaluates only the first rows."""
    validate.module(model, "model")
    validate.tokenizer(tokenizer)
    dataset = validate.dataset(dataset, "dataset")
    n = _limit(dataset, limit)
    prompts = list(dataset["prompt"][:n])
    refs = [c.strip() for c in dataset["completion"][:n]]
    preds = generate_completions(model, tokenizer, prompts, batch_size, max_new_tokens, progress, desc="exact match")
    acc = sum(p == r for p, r in zip(preds, refs, strict=True)) / n
    return EvalResult(acc, preds, refs, prompts)


def next_token_nll_per_row(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(summed next-token losses, number of tokens)``, each of shape ``(batch,)``, over the positions
    whose ``labels`` are not -100, each token predicted from the ones before it (labels shifted by one).
    Logits in float32."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    targets = labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), targets, ignore_index=-100, reduction="none"
    ).sum(dim=1)
    return nll, (targets != -100).sum(dim=1)


def summed_next_token_nll(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> tuple[float, int]:
    """``(sum of the next-token losses, number of tokens)`` over the whole batch: see
    :func:`next_token_nll_per_row`."""
    nll, counts = next_token_nll_per_row(model, input_ids, attention_mask, labels)
    return nll.sum().item(), int(counts.sum())


def _limit(dataset, limit: int | None) -> int:
    """How many rows of ``dataset`` to evaluate: all, or the first ``limit`` (a positive whole number)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive whole number or None, got {limit!r}")
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise ValueError("nothing to evaluate: the data set is empty")
    return n


def _token_batches(examples: list[dict], batch_size: int, vocab_size: int, logits_budget: int):
    """Consecutive slices of ``examples`` of at most ``batch_size`` rows whose float32 logits
    (rows x longest x vocabulary x 4 bytes) stay within ``logits_budget`` bytes (one row at least)."""
    start = 0
    while start < len(examples):
        stop, longest = start, 0
        while stop < len(examples) and stop - start < batch_size:
            longest_next = max(longest, len(examples[stop]["input_ids"]))
            if stop > start and (stop - start + 1) * longest_next * vocab_size * 4 > logits_budget:
                break
            longest, stop = longest_next, stop + 1
        yield examples[start:stop]
        start = stop


def _fitted_examples(tokenizer, prompts, completions, max_length: int | None, eos: bool) -> list[dict]:
    from .finetune import tokenize_example, truncate_example

    out = []
    for prompt, completion in zip(prompts, completions, strict=True):
        ex = tokenize_example(tokenizer, prompt, completion, eos=eos)
        if max_length is not None:
            cut = truncate_example(ex, max_length, keep_first=tokenizer.bos_token_id)
            if cut is None:
                n_completion = sum(label != -100 for label in ex["labels"])
                raise ValueError(
                    f"a completion of {n_completion} tokens does not fit max_length={max_length}: "
                    "drop such rows first (qlora_course.finetune.fit_to_length)"
                )
            ex = cut
        out.append(ex)
    return out


@torch.no_grad()
def completion_nlls(
    model,
    tokenizer,
    prompts: list[str],
    completions: list[str],
    batch_size: int = 16,
    eos: bool = True,
    max_length: int | None = None,
    logits_budget: int = 2**30,
) -> list[tuple[float, int]]:
    """``(summed negative log-likelihood, number of tokens)`` of each completion given its prompt, in order.

    ``eos`` counts the end-of-sequence token after the completion. ``max_length`` cuts long prompts from
    the left so that prompt + completion fit (a completion that cannot fit raises). Batches hold at most
    ``batch_size`` rows and float32 logits of at most ``logits_budget`` bytes, so long chats with a
    large vocabulary do not exhaust a GPU.
    """
    from .finetune import collate

    validate.module(model, "model")
    validate.tokenizer(tokenizer)
    prompts = validate.texts(prompts, "prompts")
    completions = validate.texts(completions, "completions")
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    examples = _fitted_examples(tokenizer, prompts, completions, max_length, eos)
    device = next(model.parameters()).device
    vocab = (
        model.get_output_embeddings().weight.shape[0] if model.get_output_embeddings() is not None else len(tokenizer)
    )
    was_training = model.training
    model.eval()
    out = []
    try:
        with bnb_training_path(model):
            for chunk in _token_batches(examples, batch_size, vocab, logits_budget):
                batch = {k: v.to(device) for k, v in collate(chunk, tokenizer.pad_token_id).items()}
                nll, counts = next_token_nll_per_row(
                    model, batch["input_ids"], batch["attention_mask"], batch["labels"]
                )
                out += list(zip(nll.tolist(), counts.tolist(), strict=True))
    finally:
        model.train(was_training)
    return out


def completion_loss(
    model, tokenizer, dataset, batch_size: int = 16, limit: int | None = None, max_length: int | None = None
) -> float:
    """Mean cross-entropy per completion token (EOS included) of ``dataset``'s ``completion`` given its
    ``prompt``: the held-out measure for data sets where exact match means nothing (open-ended chat).
    ``max_length`` cuts long prompts from the left (as in training); the completion is always kept whole."""
    validate.module(model, "model")
    validate.tokenizer(tokenizer)
    dataset = validate.dataset(dataset, "dataset")
    n = _limit(dataset, limit)
    rows = dataset.select(range(n))
    pairs = completion_nlls(
        model, tokenizer, list(rows["prompt"]), list(rows["completion"]), batch_size, max_length=max_length
    )
    return sum(v for v, _ in pairs) / sum(c for _, c in pairs)


def choice_accuracy(
    model, tokenizer, dataset, choices: list[str] | None = None, limit: int | None = None, batch_size: int = 32
) -> EvalResult:
    """Multiple choice by likelihood: for each row, the ``choices`` (default: the distinct completions of
    ``dataset``) whose tokens are most likely after the prompt (summed log-probability, no EOS) is the
    prediction. A baseline for a model that has never seen the answer format: it cannot answer, but it
    may still prefer the right word."""
    validate.module(model, "model")
    validate.tokenizer(tokenizer)
    dataset = validate.dataset(dataset, "dataset")
    n = _limit(dataset, limit)
    choices = sorted({c for c in dataset["completion"]}) if choices is None else validate.names(choices, "choices")
    if len(choices) < 2:
        raise ValueError(f"choices must hold at least two answers, got {choices}")
    prompts = list(dataset["prompt"][:n])
    refs = [c.strip() for c in dataset["completion"][:n]]
    ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
    if all(len(i) == 1 for i in ids):  # one token each: one forward per prompt scores every choice
        scores = _next_token_nlls(model, tokenizer, prompts, [i[0] for i in ids], batch_size)
    else:
        flat = completion_nlls(
            model,
            tokenizer,
            [p for p in prompts for _ in choices],
            [c for _ in prompts for c in choices],
            batch_size,
            eos=False,
        )
        scores = [[nll for nll, _ in flat[i * len(choices) : (i + 1) * len(choices)]] for i in range(n)]
    preds = [choices[row.index(min(row))].strip() for row in scores]
    return EvalResult(sum(p == r for p, r in zip(preds, refs, strict=True)) / n, preds, refs, prompts)


@torch.no_grad()
def _next_token_nlls(model, tokenizer, prompts: list[str], token_ids: list[int], batch_size: int) -> list[list[float]]:
    """For each prompt, ``-log p(token | prompt)`` of each of ``token_ids`` (float32): what
    :func:`completion_nlls` gives a one-token completion, from one forward pass per prompt."""
    from .finetune import collate

    examples = _fitted_examples(tokenizer, prompts, [""] * len(prompts), None, eos=False)
    device = next(model.parameters()).device
    wanted = torch.tensor(token_ids, device=device)
    was_training = model.training
    model.eval()
    out = []
    try:
        with bnb_training_path(model):
            for start in range(0, len(examples), batch_size):
                chunk = examples[start : start + batch_size]
                batch = {k: v.to(device) for k, v in collate(chunk, tokenizer.pad_token_id).items()}
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                last = batch["attention_mask"].sum(dim=1) - 1  # right padding: each prompt's last token
                logp = torch.log_softmax(logits[torch.arange(len(chunk), device=device), last].float(), dim=-1)
                out += (-logp[:, wanted]).tolist()
    finally:
        model.train(was_training)
    return out


def majority_accuracy(train, test) -> tuple[str, float]:
    """``(answer, accuracy)`` of always giving ``train``'s most common completion on ``test``."""
    from collections import Counter

    train = validate.dataset(train, "train", columns=("completion",))
    test = validate.dataset(test, "test", columns=("completion",))
    answer = Counter(c.strip() for c in train["completion"]).most_common(1)[0][0]
    return answer, sum(c.strip() == answer for c in test["completion"]) / len(test)


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str], batch_size: int = 16, progress: bool = True) -> float:
    """exp(mean next-token loss) over ``texts``, each scored on its own with ``<s> text </s>``.

    Every token after ``<s>`` (the EOS included) counts once; padding does not.
    """
    validate.module(model, "model")
    validate.tokenizer(tokenizer)
    texts = validate.texts(texts, "texts")
    validate.positive_int(batch_size, "batch_size")
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with evaluating(model), bnb_training_path(model):  # see there: keeps a 4-bit model trainable afterwards
        for start in tqdm(range(0, len(texts), batch_size), desc="perplexity", disable=not progress, leave=False):
            batch = [t + tokenizer.eos_token for t in texts[start : start + batch_size]]
            enc = tokenizer(batch, return_tensors="pt", padding=True).to(device)
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)  # padding does not count
            nll, n_tokens = summed_next_token_nll(model, enc["input_ids"], enc["attention_mask"], labels)
            total += nll
            count += n_tokens
    return math.exp(total / count)


def token_agreement(reference, model, tokenizer, texts: list[str], batch_size: int = 16, progress: bool = True):
    """How closely ``model`` follows ``reference`` on ``texts``, token by token, each text scored on its own
    with ``<s> text </s>`` (as :func:`perplexity`).

    Returns four float64 tensors of shape ``(len(texts),)``, per text: ``"kl"``, the mean over its predicted
    positions of KL(reference || model) of the next-token distributions, in nats; ``"top1"``, the share of
    positions where both models' most likely next token is the same; ``"nll"``, ``model``'s summed
    next-token loss, and ``"tokens"``, the number of positions (so ``exp(nll.sum() / tokens.sum())`` is
    :func:`perplexity`). Per-text values let :func:`bootstrap_interval` resample texts.

    ``model`` may also be a dict ``{name: model}``: each is compared with ``reference`` in one pass over the
    texts (the reference runs once per batch, not once per model), and the result is ``{name: result}``.
    """
    validate.module(reference, "reference")
    validate.tokenizer(tokenizer)
    texts = validate.texts(texts, "texts")
    validate.positive_int(batch_size, "batch_size")
    models = model if isinstance(model, dict) else {"": model}
    for name, m in models.items():
        validate.module(m, f"model[{name!r}]" if name else "model")
    if not models:
        raise ValueError("token_agreement needs at least one model to compare with the reference")
    for m in models.values():
        if reference.config.vocab_size != m.config.vocab_size:
            raise ValueError(
                f"the models have different vocabularies ({reference.config.vocab_size} vs "
                f"{m.config.vocab_size}): compare two versions of the same model"
            )
    out = {name: {"kl": [], "top1": [], "nll": [], "tokens": []} for name in models}
    device = next(next(iter(models.values())).parameters()).device
    with contextlib.ExitStack() as guards, torch.no_grad():
        guards.enter_context(evaluating(reference))
        for m in models.values():
            guards.enter_context(evaluating(m))
            guards.enter_context(bnb_training_path(m))
        for start in tqdm(range(0, len(texts), batch_size), desc="agreement", disable=not progress, leave=False):
            batch = [t + tokenizer.eos_token for t in texts[start : start + batch_size]]
            enc = tokenizer(batch, return_tensors="pt", padding=True).to(device)
            logp_ref = reference(**enc).logits[:, :-1].float().log_softmax(-1)
            mask = (enc["attention_mask"][:, 1:] * enc["attention_mask"][:, :-1]).double()  # a next token exists
            n = mask.sum(1)
            for name, m in models.items():
                logp = m(**enc).logits[:, :-1].float().log_softmax(-1)
                kl = (logp_ref.exp() * (logp_ref - logp)).sum(-1).double()
                same = (logp_ref.argmax(-1) == logp.argmax(-1)).double()
                nll = -logp.gather(-1, enc["input_ids"][:, 1:, None])[..., 0].double()
                out[name]["kl"].append((kl * mask).sum(1) / n.clamp(min=1))
                out[name]["top1"].append((same * mask).sum(1) / n.clamp(min=1))
                out[name]["nll"].append((nll * mask).sum(1))
                out[name]["tokens"].append(n)
    results = {name: {k: torch.cat(v).cpu() for k, v in parts.items()} for name, parts in out.items()}
    return results if isinstance(model, dict) else results[""]


def bootstrap_interval(values: torch.Tensor, level: float = 0.95, n_boot: int = 2000, seed: int = 0):
    """``(mean, low, high)``: the mean of ``values`` (shape ``(n,)``, one per text) and a percentile bootstrap
    interval at ``level``, from ``n_boot`` resamples of the texts with a fixed seed (repeatable).

    For a paired comparison pass the per-text differences of two models: the interval then says whether
    the data separate them (it excludes 0) or cannot (it contains 0).
    """
    if isinstance(values, torch.Tensor) and values.is_meta:
        raise ValueError("values is on the meta device (a shape without data): it has no values to use")
    values = torch.as_tensor(values, dtype=torch.float64)
    if values.ndim != 1:
        raise ValueError(
            f"values must be 1-D, one value per text, got shape {tuple(values.shape)}: pass one column, "
            "or the per-text differences of two models"
        )
    validate.positive_int(n_boot, "n_boot")
    validate.non_negative_int(seed, "seed")
    if values.numel() < 2:
        raise ValueError(f"a bootstrap interval needs at least 2 values, got {values.numel()}")
    if not torch.isfinite(values).all():
        raise ValueError("values contain NaN or infinity")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {validate.shown(level)}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, values.numel(), (n_boot, values.numel()), generator=g)
    means = values[idx].mean(1)
    lo, hi = torch.quantile(means, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)).tolist()
    return values.mean().item(), lo, hi
