"""Show that the course task is learnable: base accuracy, then a plain LoRA fine-tune on CPU.

    python tools/check_course_task.py            # writes the result into the model card
    python tools/check_course_task.py --model /tmp/try --no-card

Loads the course model in float32, measures exact match on the test split, adds PEFT LoRA adapters to
every linear layer but ``lm_head``, trains them with ``qlora_course.finetune.train_sft`` and measures
again. The figures replace the "Fine-tuning check" section of the model card (README.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from pathlib import Path

import torch

from qlora_course.data import make_task_data
from qlora_course.evaluation import exact_match
from qlora_course.finetune import train_sft
from qlora_course.models import COURSE_MODEL_DIR

START, END = "<!-- task-check:start -->", "<!-- task-check:end -->"


def run(model_dir: Path, steps: int, r: int, alpha: int, lr: float, batch: int, seed: int = 0) -> dict:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    data = make_task_data(seed=0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    base = exact_match(model, tokenizer, data["test"])
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    start = time.perf_counter()
    losses = train_sft(model, tokenizer, data["train"], steps=steps, batch_size=batch, lr=lr, seed=seed)
    seconds = time.perf_counter() - start
    tuned = exact_match(model, tokenizer, data["test"])
    return {
        "base_accuracy": base.accuracy,
        "lora_accuracy": tuned.accuracy,
        "train_seconds": seconds,
        "steps": steps,
        "batch": batch,
        "r": r,
        "alpha": alpha,
        "lr": lr,
        "trainable": trainable,
        "n_test": len(data["test"]),
        "n_train": len(data["train"]),
        "final_loss": sum(losses[-10:]) / len(losses[-10:]),
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} CPU",
        "base_examples": base.examples(2),
        "tuned_examples": tuned.examples(2),
    }


def card_section(res: dict, command: str) -> str:
    ex = res["base_examples"][0]
    lora_setting = (
        f"(r={res['r']}, α={res['alpha']}, all linear layers but `lm_head`, {res['trainable']:,} trainable "
        f"parameters), {res['steps']} steps × {res['batch']} examples, lr {res['lr']}"
    )
    return f"""{START}
## Fine-tuning check: the course task is learnable

On the test split of `qlora_course.data.make_task_data(seed=0)` ({res["n_test"]} questions), exact match
with greedy decoding (`qlora_course.evaluation.exact_match`):

| model | exact match |
|---|---|
| this model, as shipped | {res["base_accuracy"]:.1%} |
| + LoRA {lora_setting} | **{res["lora_accuracy"]:.1%}** |

Fine-tuning took {res["train_seconds"] / 60:.1f} minutes on {res["machine"]} ({res["threads"]} threads), float32.
Before fine-tuning the model continues the story instead of answering, e.g. it completes
`…{ex["prompt"][-40:]!r}` with `{ex["prediction"]!r}` (answer: `{ex["reference"]!r}`).
Produced by `{command}`.
{END}"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=COURSE_MODEL_DIR)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--alpha", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--no-card", action="store_true", help="print only; leave the model card alone")
    args = ap.parse_args(argv)
    res = run(args.model, args.steps, args.r, args.alpha, args.lr, args.batch)
    print(json.dumps({k: v for k, v in res.items() if not k.endswith("examples")}, indent=1))
    for ex in res["base_examples"] + res["tuned_examples"]:
        print(repr(ex["prompt"][-60:]), "->", repr(ex["prediction"]), "| answer", repr(ex["reference"]))
    if not args.no_card:
        card = args.model / "README.md"
        text = card.read_text(encoding="utf-8")
        command = "python tools/check_course_task.py" + "".join(
            f" --{k} {getattr(args, k)}"
            for k in ("steps", "r", "alpha", "lr", "batch")
            if getattr(args, k) != ap.get_default(k)
        )
        section = card_section(res, command)
        if START in text:
            text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda m: section, text, flags=re.S)
        else:
            text = text.rstrip() + "\n\n" + section + "\n"
        card.write_text(text, encoding="utf-8")
        (args.model / "task_check.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
        print(f"updated {card}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
