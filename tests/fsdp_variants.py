"""Several runs of ``qlora_course.fsdp_train`` in one torchrun launch (``tests/test_distributed.py``): the
process group and the imports are paid once, not once a run.

    torchrun --nproc_per_node=2 tests/fsdp_variants.py OUT_DIR NAME="FLAGS" NAME="FLAGS" ...

writes ``OUT_DIR/NAME.json`` for each run, as ``fsdp_train --out`` would.
"""

import os
import shlex
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from qlora_course import fsdp_train

if __name__ == "__main__":
    out_dir, runs = Path(sys.argv[1]), [arg.split("=", 1) for arg in sys.argv[2:]]
    torch.set_num_threads(int(os.environ.get("QLORA_COURSE_THREADS", "1")))
    dist.init_process_group("gloo")
    try:
        for name, flags in runs:
            args = fsdp_train.parse_args(["--out", str(out_dir / f"{name}.json"), *shlex.split(flags)])
            fsdp_train.train(args, torch.device("cpu"))
    finally:
        dist.destroy_process_group()
