"""A few QLoRA steps on the course model, sharded with FSDP2 or not: the script lesson 7 runs with torchrun.

    torchrun --nproc_per_node=2 -m qlora_course.fsdp_train --out run.json   # or distributed.launch(...)
    python -m qlora_course.fsdp_train --out single.json                     # one process, no sharding

Every rank trains on the same batch (four course task examples), so a correct sharded run has the
single process's losses: FSDP averages identical gradients. Rank 0 writes ``--out`` (JSON): ``world``,
``losses`` (one per step), ``evals`` (the loss of the same batch in eval mode after each step, with
``--eval-each-step``), ``bytes`` (per rank: ``four_bit``, ``other``, ``quant_state``) and ``seconds``.

``--save DIR`` writes the trained adapter, gathered from the shards, as PEFT's ``save_pretrained`` would.
``--no-guard`` shards without :func:`qlora_course.distributed.keep_4bit_on_training_path`: the
configuration that departs silently on a CPU with AVX512-BF16 once an evaluation has run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", required=True, help="JSON file for the results (written by rank 0)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-each-step", action="store_true", help="an eval-mode forward after each step")
    parser.add_argument("--no-shard", action="store_true", help="no FSDP, even under torchrun")
    parser.add_argument("--no-guard", action="store_true", help="leave bitsandbytes' CPU repack on")
    parser.add_argument("--no-check", action="store_true", help="shard without check_shardable (uint8 storage)")
    parser.add_argument(
        "--storage", default="float32", help="bnb_4bit_quant_storage: the model's dtype (float32 here), bfloat16, uint8"
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cpu (gloo) or one GPU a rank (nccl)")
    parser.add_argument("--save", help="folder for the trained adapter (gathered whole, written by rank 0)")
    return parser.parse_args(argv)


def save_adapter(model, folder: str, rank: int = 0) -> None:
    """Save ``model``'s adapter (a PEFT model, sharded or not) to ``folder`` as PEFT saves it. Sharded:
    every rank takes part in gathering the full state dict (a collective), and rank 0 writes it."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if dist.is_initialized():
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        adapter = {k: v for k, v in full.items() if "lora_" in k}  # rank 0 holds them whole, the others nothing
        if rank == 0:
            model.save_pretrained(folder, state_dict=adapter)
        dist.barrier()
    else:
        model.save_pretrained(folder)


def main(argv=None) -> dict | None:
    """Parse ``argv``, join the process group when started by torchrun, run :func:`train`, leave."""
    args = parse_args(argv)
    import torch
    import torch.distributed as dist

    torch.set_num_threads(int(os.environ.get("QLORA_COURSE_THREADS", "1")))
    distributed = "WORLD_SIZE" in os.environ
    device = torch.device(args.device, int(os.environ.get("LOCAL_RANK", 0)) if args.device == "cuda" else None)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return train(args, device)
    finally:
        if distributed:
            dist.destroy_process_group()


def train(args, device) -> dict:
    """One run of ``args`` (see :func:`parse_args`) on ``device``, sharded if a process group is up; rank 0
    writes ``args.out``. Returns the result on every rank."""
    import logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    import torch
    import torch.distributed as dist
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from qlora_course.data import format_example, make_task_data
    from qlora_course.distributed import keep_4bit_on_training_path, rank_bytes, shard_qlora
    from qlora_course.models import course_model_path

    distributed = dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    path = course_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(
        path,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32,
            bnb_4bit_quant_storage=getattr(torch, args.storage),
        ),
        dtype=torch.float32,
        device_map={"": device},
    )
    torch.manual_seed(0)
    model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    rows = make_task_data(n_train=4, n_validation=1, n_test=1, seed=0)["train"]
    texts = [format_example(r["prompt"], r["completion"]) for r in rows]
    batch = tokenizer(texts, return_tensors="pt", padding=True).to(device)
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    if distributed and not args.no_shard:
        shard_qlora(model, guard=not args.no_guard, check=not args.no_check)
    elif not args.no_guard:
        keep_4bit_on_training_path(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    losses, evals = [], []
    start = time.perf_counter()
    for _ in range(args.steps):
        model.train()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if args.eval_each_step:
            model.eval()
            with torch.no_grad():
                evals.append(model(**batch).loss.item())
        if rank == 0:
            after = f", eval {evals[-1]:.4f}" if evals else ""
            print(f"step {len(losses)}/{args.steps}: loss {losses[-1]:.4f}{after}", flush=True)
    seconds = time.perf_counter() - start
    if args.save:
        save_adapter(model, args.save, rank)
    mine = rank_bytes(model)
    per_rank = [None] * world
    if distributed:
        dist.all_gather_object(per_rank, mine.__dict__)
    else:
        per_rank = [mine.__dict__]
    result = dict(world=world, sharded=distributed and not args.no_shard, losses=losses, evals=evals, bytes=per_rank)
    result["seconds"] = seconds
    if rank == 0:
        Path(args.out).write_text(json.dumps(result, indent=1))
        print(json.dumps({"losses": [round(x, 4) for x in losses], "evals": [round(x, 4) for x in evals]}))
    return result


if __name__ == "__main__":
    main()
