"""Lesson 5's method comparison over several seeds: QLoRA, LoRA, full fine-tuning and QDoRA.

    python tools/compare_methods.py                 # 3 seeds on course-tiny, about 10 minutes on 2 cores
    python tools/compare_methods.py --seeds 5 --out /tmp/comparison.json

Each method trains with the settings of the `course-tiny` profile (``qlora_course.settings.TRAINING``)
through ``qlora_course.methods.run_method``, the same code lesson 5 runs, and is evaluated on the seen
and unseen test splits. The result (every seed, the settings, the package versions and this command)
goes to ``src/qlora_course/assets/course-llama/method_comparison.json``; lesson 5 shows that table and
re-trains seed 0 live to check it.
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

from qlora_course.data import make_task_data
from qlora_course.llama import LLAMA_LINEAR
from qlora_course.loading import set_pad_token
from qlora_course.methods import COMPARED_METHODS, run_method
from qlora_course.models import COURSE_MODEL_DIR
from qlora_course.notebook import package_versions
from qlora_course.profiles import resolve_profile
from qlora_course.settings import training_settings

TARGETS = sorted(LLAMA_LINEAR)  # as lesson 5's exercise 3 lists them


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
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for name in COMPARED_METHODS:
                r = run_method(
                    name,
                    model_path=profile.model_path(),
                    tokenizer=tokenizer,
                    data=data,
                    settings=settings,
                    targets=TARGETS,
                    compute_dtype=torch.float32,
                    device="cpu",
                    device_map={"": "cpu"},
                    output_dir=tmp,
                    seed=seed,
                )
                runs.append(
                    {
                        "method": name,
                        "seed": seed,
                        "seen": r["seen"],
                        "unseen": r["unseen"],
                        "loss": r["loss"],
                        "trainable": r["trainable"],
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
        "runs": runs,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
