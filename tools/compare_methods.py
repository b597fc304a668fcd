"""Lesson 5's method comparison over several seeds: QLoRA, LoRA, full fine-tuning and QDoRA.

    python tools/compare_methods.py                 # 3 seeds on course-tiny, about 15 minutes on 2 cores
    python tools/compare_methods.py --seeds 5 --out /tmp/comparison.json

First a learning-rate sweep for full fine-tuning (``FULL_LRS``, seed 0, judged by exact match and loss on
the *validation* split, never the test splits): LoRA's rate comes from the QLoRA paper's recipe, full
fine-tuning needs its own, and an untuned one would make the comparison unfair. The best rate must be
``full_learning_rate`` of the `course-tiny` profile (``qlora_course.settings.TRAINING``): the tool uses
the best and says so where the profile differs. Then each method trains with those settings through
``qlora_course.methods.run_method``, the same code lesson 5 runs, and is evaluated on the seen and unseen
test splits. The result (every seed with its loss curve, the sweep, the settings, the package versions
and this command) goes to ``src/qlora_course/assets/course-llama/method_comparison.json``; lesson 5
shows that table and re-trains QLoRA's seed 0 live to check it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import warnings
from pathlib import Path

import torch
from datasets import DatasetDict

from qlora_course.data import make_task_data
from qlora_course.llama import LLAMA_LINEAR
from qlora_course.loading import set_pad_token
from qlora_course.methods import COMPARED_METHODS, run_method
from qlora_course.models import COURSE_MODEL_DIR
from qlora_course.notebook import package_versions
from qlora_course.profiles import resolve_profile
from qlora_course.settings import training_settings

TARGETS = sorted(LLAMA_LINEAR)  # as lesson 5's exercise 3 lists them
FULL_LRS = (2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3)  # full fine-tuning's learning rates tried on the validation split


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=COURSE_MODEL_DIR / "method_comparison.json")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be positive")
    warnings.filterwarnings("ignore")
    from transformers import AutoTokenizer

    profile = resolve_profile("course-tiny")
    settings = training_settings(profile, {})
    tokenizer = AutoTokenizer.from_pretrained(profile.model_path())
    set_pad_token(tokenizer)
    data = make_task_data(seed=0)
    common = dict(
        model_path=profile.model_path(),
        tokenizer=tokenizer,
        targets=TARGETS,
        compute_dtype=torch.float32,
        device="cpu",
        device_map={"": "cpu"},
    )
    runs, sweep = [], []
    with tempfile.TemporaryDirectory() as tmp:
        validation = DatasetDict(
            train=data["train"], test=data["validation"], test_unseen=data["validation"].select(range(1))
        )
        for lr in FULL_LRS:
            r = run_method(
                "full fine-tuning",
                data=validation,
                settings=dataclasses.replace(settings, full_learning_rate=lr),
                output_dir=tmp,
                seed=0,
                **common,
            )
            sweep.append({"full_learning_rate": lr, "validation_exact_match": r["seen"], "validation_loss": r["loss"]})
            print(f"full fine-tuning, lr {lr:g}: validation exact match {100 * r['seen']:.1f}%, loss {r['loss']:.4f}")
        best = max(sweep, key=lambda row: (row["validation_exact_match"], -row["validation_loss"]))
        if best["full_learning_rate"] != settings.full_learning_rate:
            print(
                f"the best full fine-tuning learning rate on the validation split is {best['full_learning_rate']:g}, "
                f"not the profile's {settings.full_learning_rate:g}: the comparison uses it; set full_learning_rate "
                "in qlora_course.settings.TRAINING['course-tiny'] to it (a test compares the two)"
            )
            settings = dataclasses.replace(settings, full_learning_rate=best["full_learning_rate"])
        for seed in range(args.seeds):
            for name in COMPARED_METHODS:
                r = run_method(name, data=data, settings=settings, output_dir=tmp, seed=seed, **common)
                runs.append(
                    {
                        "method": name,
                        "seed": seed,
                        "seen": r["seen"],
                        "unseen": r["unseen"],
                        "loss": r["loss"],
                        "trainable": r["trainable"],
                        "curve": r["curve"],
                    }
                )
                print(
                    f"seed {seed} {name:<17} seen {100 * r['seen']:5.1f}%  unseen {100 * r['unseen']:5.1f}%  "
                    f"loss {r['loss']:.4f}  {r['seconds']:.0f} s",
                    flush=True,
                )
    # no timings: they depend on the machine and its load; lesson 5 times its own live runs
    result = {
        "command": f"python tools/compare_methods.py --seeds {args.seeds}",
        "settings": dataclasses.asdict(settings),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "versions": package_versions(),
        "full_lr_sweep": sweep,
        "runs": runs,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
