"""Pretrain the course's small Llama and write it into the package (not run in CI).

    python tools/pretrain_course_model.py                # the shipped model (about 40 minutes on 2 cores)
    python tools/pretrain_course_model.py --steps 50 --out /tmp/try   # a quick trial

Steps: generate the corpus (``qlora_course.data.make_corpus``, seed 0) and a held-out corpus (seed 1);
train a byte-level BPE tokenizer; pretrain a randomly initialised ``LlamaForCausalLM`` on packed
sequences with AdamW and a cosine schedule; measure held-out perplexity; save the weights in bfloat16,
the tokenizer, and a model card (README.md) with the training facts and a per-layer report of how normal
the weights are. Everything is seeded: the same command gives the same data and, on the same machine
and torch version, the same weights.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from tqdm import tqdm

from qlora_course.chat import CHAT_TEMPLATE
from qlora_course.data import corpus_digest, make_corpus, make_task_examples
from qlora_course.evaluation import perplexity
from qlora_course.finetune import warmup_cosine
from qlora_course.models import COURSE_MODEL_DIR, build_tokenizer, course_model_config, weight_normality_report

ROOT = Path(__file__).resolve().parents[1]


def packed_batches(ids: torch.Tensor, seq_len: int, batch_size: int, g: torch.Generator):
    """Endless random batches ``(batch_size, seq_len)`` cut from one long token stream."""
    n_windows = (ids.numel() - 1) // seq_len
    windows = ids[: n_windows * seq_len].view(n_windows, seq_len)
    while True:
        for idx in torch.randperm(n_windows, generator=g).split(batch_size):
            if idx.numel() == batch_size:
                yield windows[idx]


def model_card(facts: dict, report: list[dict]) -> str:
    rows = "\n".join(
        f"| `{r['layer']}` | {r['shape'][0]}×{r['shape'][1]} | {r['std']:.4f} | {r['excess_kurtosis']:.2f} | "
        f"{r['max_abs_z']:.1f} | {r['share_beyond_4std'] * 1e4:.1f} | {r['ks_distance']:.3f} |"
        for r in report
    )
    f = facts
    return f"""---
license: apache-2.0
library_name: transformers
pipeline_tag: text-generation
tags: [llama, qlora-course, synthetic-data]
---

# course-llama: the QLoRA course's own small Llama

A `LlamaForCausalLM` of **{f["parameters"]:,} parameters** ({f["size_mb"]:.1f} MB of bfloat16
safetensors) that the course ships inside its package, so every lesson runs offline, on a CPU, through
the same `from_pretrained` / `BitsAndBytesConfig` / PEFT / TRL calls a hub model uses. It is a teaching
model: it knows only the small made-up world of `qlora_course.data`.

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
from qlora_course.models import course_model_path
model = AutoModelForCausalLM.from_pretrained(course_model_path())
tokenizer = AutoTokenizer.from_pretrained(course_model_path())
```

## Architecture

{f["layers"]} decoder layers, hidden size {f["hidden"]}, SwiGLU MLP width {f["intermediate"]},
{f["heads"]} query heads sharing {f["kv_heads"]} key/value heads (grouped-query attention), RMSNorm,
rotary position embeddings, untied embeddings, context {f["max_positions"]} tokens. Tokenizer: byte-level
BPE with {f["vocab"]} tokens trained on the corpus; `<s>` is prepended to every text, `</s>` ends a
sequence and `<pad>` (distinct from `</s>`) pads.

## Training

- Data: {f["train_docs"]:,} generated stories (`qlora_course.data.make_corpus(n, seed=0)`),
  {f["train_tokens"]:,} tokens, packed into sequences of {f["seq_len"]} tokens, each story as
  `<s> story </s>`. Held out: {f["heldout_docs"]:,} stories from seed 1.
- {f["steps"]:,} steps of AdamW (peak learning rate {f["lr"]}, {f["warmup"]} warmup steps, cosine decay to
  10%, weight decay {f["weight_decay"]}, gradient clipping at 1.0), batch {f["batch"]} × {f["seq_len"]}
  tokens: {f["tokens_seen"]:,} tokens seen (≈ {f["epochs"]:.1f} epochs), in float32.
- Time: {f["minutes"]:.1f} minutes on {f["machine"]} (torch {f["torch"]}, {f["threads"]} threads).
- Final training loss {f["train_loss"]:.3f}; **held-out perplexity {f["ppl_fp32"]:.3f}** in float32,
  {f["ppl_bf16"]:.3f} with the saved bfloat16 weights (per token, `<s> story </s>` scored by
  `qlora_course.evaluation.perplexity`).

Re-train (writes this folder; the numbers above come from this exact command):

```bash
{f["command"]}
```

## What it can and cannot do

It continues stories of its world with the right kind of word in each slot (a city after "lives in",
a pet after "has a"). It is too small and too briefly trained to look facts up in its context
reliably, and it has never seen a question: on the course's instruction task
(`qlora_course.data.make_task_data`) its exact-match accuracy is zero until it is fine-tuned (see the
fine-tuning check below; lesson 5 does it with QLoRA).

## How normal are the weights? (what lesson 2 quantizes)

NF4 assumes the weights of a block are roughly normal. Per linear layer: the standard deviation, the
excess kurtosis (0 for a normal distribution), the largest entry in standard deviations, the share of
entries beyond 4 standard deviations (per 10,000; a normal distribution has 0.6) and the
Kolmogorov-Smirnov distance of the standardised weights to N(0, 1).
Computed by `qlora_course.models.weight_normality_report`.

| layer | shape | std | excess kurtosis | max \\|z\\| | beyond 4σ (per 10⁴) | KS distance |
|---|---|---|---|---|---|---|
{rows}
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=COURSE_MODEL_DIR)
    ap.add_argument("--docs", type=int, default=60_000)
    ap.add_argument("--heldout-docs", type=int, default=1_000)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    start = time.perf_counter()
    corpus = make_corpus(args.docs, seed=0)
    heldout = make_corpus(args.heldout_docs, seed=1)
    # The tokenizer also sees task-formatted text (from a seed no split uses), so that "Question" and
    # "Answer" are whole tokens; the model itself is trained on the corpus only.
    tok_texts = corpus + [e["prompt"] + e["completion"] for e in make_task_examples(500, seed=12345)]
    tokenizer = build_tokenizer(tok_texts, vocab_size=args.vocab)
    ids = torch.tensor([i for doc in corpus for i in tokenizer(doc + tokenizer.eos_token)["input_ids"]])
    print(f"corpus: {len(corpus):,} stories, {ids.numel():,} tokens; vocab {len(tokenizer)}")

    from transformers import LlamaForCausalLM

    config = course_model_config(
        len(tokenizer),
        num_hidden_layers=args.layers,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters")
    decay = [p for n, p in model.named_parameters() if p.ndim == 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
    )
    batches = packed_batches(ids, args.seq_len, args.batch, torch.Generator().manual_seed(args.seed))
    model.train()
    bar = tqdm(range(args.steps), desc="pretraining", unit="step")
    ema = None
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = args.lr * warmup_cosine(step, args.steps, args.warmup)
        x = next(batches)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        bar.set_postfix(loss=f"{ema:.3f}")
    train_minutes = (time.perf_counter() - start) / 60

    model.eval()
    ppl_fp32 = perplexity(model, tokenizer, heldout)
    model = model.to(torch.bfloat16)
    ppl_bf16 = perplexity(model, tokenizer, heldout)
    print(f"held-out perplexity: {ppl_fp32:.3f} (float32), {ppl_bf16:.3f} (bfloat16)")

    args.out.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(args.out)
    tokenizer.chat_template = CHAT_TEMPLATE  # lesson 6's chat template, saved as chat_template.jinja
    tokenizer.save_pretrained(args.out)
    # transformers 5 writes its new class name; the classic name loads in transformers 4 and 5 alike.
    tc = args.out / "tokenizer_config.json"
    tc.write_text(tc.read_text().replace('"TokenizersBackend"', '"PreTrainedTokenizerFast"'))
    rel = lambda p: str(p.resolve().relative_to(ROOT)) if p.resolve().is_relative_to(ROOT) else str(p)  # noqa: E731
    defaults = {a.dest: a.default for a in ap._actions if a.dest != "help"}
    extra = [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out" and v != defaults[k]]
    command = " ".join(
        ["python tools/pretrain_course_model.py", *extra]
        + ([f"--out {rel(args.out)}"] if args.out != COURSE_MODEL_DIR else [])
    )
    facts = {
        "parameters": n_params,
        "size_mb": (args.out / "model.safetensors").stat().st_size / 1e6,
        "layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
        "intermediate": config.intermediate_size,
        "heads": config.num_attention_heads,
        "kv_heads": config.num_key_value_heads,
        "max_positions": config.max_position_embeddings,
        "vocab": len(tokenizer),
        "train_docs": len(corpus),
        "train_tokens": ids.numel(),
        "heldout_docs": len(heldout),
        "seq_len": args.seq_len,
        "steps": args.steps,
        "lr": args.lr,
        "warmup": args.warmup,
        "weight_decay": args.weight_decay,
        "batch": args.batch,
        "tokens_seen": args.steps * args.batch * args.seq_len,
        "epochs": args.steps * args.batch * args.seq_len / ids.numel(),
        "minutes": train_minutes,
        "machine": f"{platform.machine()} CPU",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "train_loss": ema,
        "ppl_fp32": ppl_fp32,
        "ppl_bf16": ppl_bf16,
        "command": command,
    }
    # what the tests check instead of regenerating the corpus and re-measuring 1,000 stories: the
    # corpora's fingerprints, their overlap, and the shipped weights' perplexity on 100 held-out stories
    shipped = LlamaForCausalLM.from_pretrained(args.out, dtype=torch.float32).eval()
    facts.update(
        {
            "train_sha256": corpus_digest(corpus),
            "heldout_sha256": corpus_digest(heldout),
            "heldout_in_train": len(set(heldout) & set(corpus)),
            "check_docs": 100,
            "ppl_check": perplexity(shipped, tokenizer, heldout[:100], progress=False),
        }
    )
    report = weight_normality_report(model)
    (args.out / "README.md").write_text(model_card(facts, report), encoding="utf-8")
    (args.out / "training_facts.json").write_text(json.dumps(facts, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} in {train_minutes:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
