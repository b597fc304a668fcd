"""Lesson 7's engine: QLoRA sharded with PyTorch FSDP2 on 2 CPU processes (torchrun, gloo), checked
against the single-process run, and the silent departure that bitsandbytes' CPU repack causes under it."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qlora_course import distributed, fsdp_train
from qlora_course.distributed import check_shardable, keep_4bit_on_training_path, launch, rank_bytes, shard_qlora
from qlora_course.models import course_model_path

# gloo sums the ranks' gradients in another order than one process adds nothing: with the same batch on
# every rank the gradients are identical, so the runs agree to float32 rounding over five steps
TOLERANCE = 1e-4


def _single(tmp_path, *extra) -> dict:
    out = tmp_path / "single.json"
    cmd = [sys.executable, "-m", "qlora_course.fsdp_train", "--out", str(out), "--eval-each-step", *extra]
    subprocess.run(cmd, check=True, capture_output=True, env={"OMP_NUM_THREADS": "1", **_env()}, timeout=600)
    return json.loads(out.read_text())


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}


def _sharded(tmp_path, runs: dict[str, str]) -> dict:
    """``{name: flags}`` run on 2 ranks in one launch (tests/fsdp_variants.py), each with an evaluation
    after every step: ``{name: result}``."""
    script = Path(__file__).with_name("fsdp_variants.py")
    launch(
        script, 2, [str(tmp_path), *(f"{name}=--eval-each-step {flags}" for name, flags in runs.items())], timeout=600
    )
    return {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in runs}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdp")
    sharded = _sharded(
        tmp,
        {
            "fsdp": f"--save {shlex.quote(str(tmp / 'fsdp-adapter'))}",
            "uint8": "--storage uint8 --no-check",
            "unguarded": "--no-guard",  # last: nothing it changes can reach the others (each loads its model)
        },
    )
    return {
        "single": _single(tmp, "--save", str(tmp / "single-adapter")) | {"adapter": tmp / "single-adapter"},
        "fsdp": sharded["fsdp"] | {"adapter": tmp / "fsdp-adapter"},
        "unguarded": sharded["unguarded"],
        "uint8": sharded["uint8"],
    }


def _gap(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b) > 0
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


@pytest.mark.slow
def test_a_sharded_run_equals_the_single_process_run(runs):
    single, fsdp = runs["single"], runs["fsdp"]
    assert fsdp["world"] == 2 and fsdp["sharded"] and not single["sharded"]
    assert single["losses"][-1] < single["losses"][0] - 1, "the run trains"
    assert _gap(fsdp["losses"], single["losses"]) < TOLERANCE, (fsdp["losses"], single["losses"])
    assert _gap(fsdp["evals"], single["evals"]) < TOLERANCE, "evaluations in between change nothing"


@pytest.mark.slow
def test_each_rank_holds_half_the_parameters_and_all_the_quantization_state(runs):
    (whole,) = runs["single"]["bytes"]
    ranks = runs["fsdp"]["bytes"]
    assert len(ranks) == 2
    for part in ranks:
        assert part["four_bit"] * 2 == whole["four_bit"], "the packed 4-bit weights split in two"
        assert part["quant_state"] == whole["quant_state"] > 0, "the block constants are not sharded"
    assert sum(p["other"] for p in ranks) == whole["other"], "adapters, embeddings, norms: split, none lost"


@pytest.mark.slow
def test_the_adapter_gathered_on_rank_0_reloads_in_one_process_with_the_same_logits(runs):
    from safetensors.torch import load_file

    from qlora_course.evaluation import bnb_training_path
    from qlora_course.shipping import load_adapter_onto

    mine, theirs = (load_file(runs[k]["adapter"] / "adapter_model.safetensors") for k in ("fsdp", "single"))
    assert sorted(mine) == sorted(theirs) and all(k.endswith(("lora_A.weight", "lora_B.weight")) for k in mine)
    assert max((mine[k] - theirs[k]).abs().max().item() for k in mine) < TOLERANCE
    ids = torch.tensor([[1, 40, 41, 42, 43, 44]])
    logits = []
    for key in ("fsdp", "single"):
        model = load_adapter_onto(_load(), runs[key]["adapter"]).eval()
        with torch.no_grad(), bnb_training_path(model):
            logits.append(model(ids).logits)
    assert (logits[0] - logits[1]).abs().max().item() < TOLERANCE


@pytest.mark.slow
def test_lesson_4s_estimate_split_per_rank_is_what_each_rank_holds(runs):
    """The parameters' bytes per rank, measured, equal lesson 4's estimate divided by the world size, to the
    byte; the quantization constants, measured, equal its estimate, on every rank."""
    from transformers import AutoConfig

    from qlora_course import estimator

    config = AutoConfig.from_pretrained(course_model_path())
    setup = estimator.TrainingSetup("qlora", 4, 32, weight_dtype=torch.float32, lora_r=8, optimizer="adamw32bit")
    whole = distributed.estimate_per_rank(config, setup, 1)
    half = distributed.estimate_per_rank(config, setup, 2)
    (single,) = runs["single"]["bytes"]
    assert single["four_bit"] + single["other"] == whole["weights"] + whole["lora_weights"]
    for part in runs["fsdp"]["bytes"]:
        assert part["four_bit"] + part["other"] == half["weights"] + half["lora_weights"]
        assert part["quant_state"] == half["quant_constants"] == whole["quant_constants"]
    assert half["activations"] == whole["activations"] and half["optimizer_state"] * 2 == whole["optimizer_state"]
    unsharded = distributed.estimate_per_rank(config, setup, 2, sharded=False)
    assert unsharded["total"] == whole["total"]
    with pytest.raises(ValueError, match="world_size"):
        distributed.estimate_per_rank(config, setup, 0)


@pytest.mark.slow
def test_without_the_guard_an_evaluation_breaks_a_sharded_run_on_avx512bf16_cpus(runs):
    """Pins bitsandbytes 0.50's behaviour: on a CPU with AVX512-BF16 the first eval forward repacks the
    shared quantization state, FSDP2 re-gathers the unpacked weight, and every later step computes another
    model, silently. On other CPUs (and GPUs) nothing repacks and the run is right. If an upgrade fixes
    it, this test fails: then the lesson can say so."""
    from bitsandbytes.functional import has_avx512bf16

    single, unguarded = runs["single"], runs["unguarded"]
    assert abs(unguarded["losses"][0] - single["losses"][0]) < TOLERANCE, "the first step is right either way"
    departs = _gap(unguarded["losses"], single["losses"]) > 0.5
    assert departs == has_avx512bf16(), (has_avx512bf16(), unguarded["losses"], single["losses"])


@pytest.mark.slow
def test_fully_shard_itself_shards_uint8_storage_and_trains_right(runs):
    """What lesson 7 measures against the documented rule "FSDP shards only float parameters": FSDP2's
    fully_shard shards uint8-stored codes (half the bytes a rank) and the run equals the single process.
    check_shardable still refuses uint8, for FSDP1's and accelerate's sake."""
    single, uint8 = runs["single"], runs["uint8"]
    assert _gap(uint8["losses"] + uint8["evals"], single["losses"] + single["evals"]) < TOLERANCE
    assert [b["four_bit"] for b in uint8["bytes"]] == [b["four_bit"] for b in runs["fsdp"]["bytes"]]


@pytest.mark.slow
def test_each_ranks_4bit_bytes_are_its_chunks_of_the_packed_weights(runs):
    model = _load(torch.float32)
    for rank, held in enumerate(runs["fsdp"]["bytes"]):
        want = sum(
            distributed.shard_rows(distributed.packed_rows(m.out_features, m.in_features, torch.float32), 2)[rank] * 4
            for m in distributed.four_bit_layers(model)
        )
        assert held["four_bit"] == want


# --- the references of lesson 7's exercises, against the real thing -------------------------------------


def test_packed_rows_is_the_shape_bitsandbytes_stores():
    for storage in (torch.uint8, torch.bfloat16, torch.float16, torch.float32):
        for layer in distributed.four_bit_layers(_load(storage))[:3] + distributed.four_bit_layers(_load(storage))[-2:]:
            rows = distributed.packed_rows(layer.out_features, layer.in_features, storage)
            assert tuple(layer.weight.shape) == (rows, 1) and layer.weight.dtype == storage
    with pytest.raises(TypeError, match="storage must be a torch.dtype"):
        distributed.packed_rows(4, 4, "bfloat16")


def test_shard_rows_is_how_fully_shard_cuts_dimension_0():
    from torch.distributed.fsdp._fully_shard._fsdp_common import _chunk_with_empty

    for rows in (1, 5, 7, 10, 512, 1000, 8192):
        for world in (1, 2, 3, 4, 6, 8, 16):
            theirs = [c.shape[0] for c in _chunk_with_empty(torch.empty(rows, 1), world, dim=0)]
            assert distributed.shard_rows(rows, world) == theirs, (rows, world)
    with pytest.raises(ValueError, match="world_size"):
        distributed.shard_rows(10, 0)


def test_adapter_state_dict_is_what_peft_saves():
    from peft import LoraConfig, get_peft_model
    from peft.utils import get_peft_model_state_dict
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, target_modules="all-linear"))
    model.add_adapter("default2", LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    model.add_adapter("style", LoraConfig(r=3, target_modules=["down_proj"]))
    full = model.state_dict()
    for name in ("default", "default2", "style"):
        theirs = get_peft_model_state_dict(model, state_dict=full, adapter_name=name)
        mine = distributed.adapter_state_dict(full, name)
        assert sorted(mine) == sorted(theirs) and len(mine) > 0
        assert all(mine[k] is theirs[k] or torch.equal(mine[k], theirs[k]) for k in mine)


@pytest.fixture
def one_process_group():
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_fsdp1_builds_with_fsdp1_unit_and_not_with_decoder_layers_alone(one_process_group):
    """A bfloat16 4-bit model with float32 adapters: FSDP1 cannot flatten a decoder layer that holds both,
    and can once the adapters are units of their own; then it trains as one process does."""
    import functools

    from peft import LoraConfig, get_peft_model
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import lambda_auto_wrap_policy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    def model():
        torch.manual_seed(0)
        four_bit = _load(torch.bfloat16, dtype=torch.bfloat16)
        peft = get_peft_model(four_bit, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        keep_4bit_on_training_path(peft)
        return peft

    def steps(m, n=2):
        ids = torch.tensor([[1, 40, 41, 42, 43, 44], [1, 50, 51, 52, 53, 54]])
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
        out = []
        for _ in range(n):
            loss = m(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            out.append(loss.item())
        return out

    layers_only = functools.partial(lambda_auto_wrap_policy, lambda_fn=lambda m: isinstance(m, LlamaDecoderLayer))
    with pytest.raises(ValueError, match="uniform dtype"):
        FSDP(model(), auto_wrap_policy=layers_only, use_orig_params=True, device_id=torch.device("cpu"))
    policy = functools.partial(lambda_auto_wrap_policy, lambda_fn=distributed.fsdp1_unit)
    wrapped = FSDP(model(), auto_wrap_policy=policy, use_orig_params=True, device_id=torch.device("cpu"))
    assert distributed.first_departure(steps(model()), steps(wrapped), TOLERANCE) is None


def test_first_departure_counts_nan_and_missing_steps():
    f = distributed.first_departure
    assert f([1.0, 2.0], [1.0, 2.0], 0.0) is None
    assert f([1.0, 2.0], [1.0, 2.5], 0.5) is None, "exactly the tolerance apart is within it"
    assert f([1.0, 2.0], [1.0, float("nan")], 1.0) == 1
    assert f([1.0, 2.0, 3.0], [1.0, 2.0], 1.0) == 2
    assert f([1.0], [1.0, 2.0], 1.0) == 1
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError, match="tol"):
            f([1.0], [1.0], bad)


def test_per_rank_estimates_offload_and_the_gathered_layer():
    from transformers import AutoConfig

    from qlora_course import estimator

    config = AutoConfig.from_pretrained(course_model_path())
    setup = estimator.TrainingSetup("qlora", 4, 32, weight_dtype=torch.float32, lora_r=8, optimizer="adamw32bit")
    sharded = distributed.estimate_per_rank(config, setup, 4)
    offload = distributed.estimate_per_rank(config, setup, 4, offload=True)
    assert offload["cpu"] == pytest.approx(sum(sharded[k] for k in distributed.SHARDED_PARTS))
    assert offload["total"] == pytest.approx(sharded["quant_constants"] + sharded["activations"])
    with pytest.raises(ValueError, match="offload=True needs sharded=True"):
        distributed.estimate_per_rank(config, setup, 4, sharded=False, offload=True)
    with pytest.raises(ValueError, match="sharded"):
        distributed.per_rank_parts({"weights": 1.0}, 2, sharded="yes")
    # one decoder layer of the real model, 4-bit weights, norms and adapters: what FSDP gathers
    from peft import LoraConfig, get_peft_model

    layer = distributed.decoder_layers(
        get_peft_model(_load(torch.float32), LoraConfig(r=8, target_modules="all-linear"))
    )[0]
    assert distributed.gathered_layer_bytes(config, setup) == sum(
        p.numel() * p.element_size() for p in layer.parameters()
    )


# --- refusals, before any process starts ---------------------------------------------------------------


def _load(storage=torch.bfloat16, quantized=True, dtype=torch.float32):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32, bnb_4bit_quant_storage=storage,
    )  # fmt: skip
    return AutoModelForCausalLM.from_pretrained(
        course_model_path(), quantization_config=config if quantized else None, dtype=dtype, device_map="cpu"
    )


def test_check_shardable_names_what_fsdp_would_get_wrong():
    check_shardable(_load(), 2)
    check_shardable(_load(), 4)
    with pytest.raises(ValueError, match=r"stored as torch.uint8.*bnb_4bit_quant_storage=torch.bfloat16"):
        check_shardable(_load(torch.uint8), 2)
    with pytest.raises(ValueError, match="no bitsandbytes Linear4bit layer"):
        check_shardable(_load(quantized=False), 2)
    with pytest.raises(ValueError, match=r"do not split into world_size=3 equal shards"):
        check_shardable(_load(), 3)
    with pytest.raises(ValueError, match="world_size"):
        check_shardable(_load(), 0)
    with pytest.raises(RuntimeError, match="no process group: start the script with torchrun"):
        shard_qlora(_load())


def test_the_guard_must_come_before_the_first_evaluation():
    from bitsandbytes.functional import has_avx512bf16

    model = _load()
    assert keep_4bit_on_training_path(model) == len(distributed.four_bit_layers(model)) > 0
    with torch.no_grad():
        model.eval()(torch.tensor([[1, 2, 3]]))
    assert rank_bytes(model).quant_state > 0
    evaluated = _load()
    with torch.no_grad():
        evaluated.eval()(torch.tensor([[1, 2, 3]]))
    if has_avx512bf16():  # the repack happened: too late to guard this copy
        with pytest.raises(RuntimeError, match="already repacked.*load the model again"):
            keep_4bit_on_training_path(evaluated)
    else:
        keep_4bit_on_training_path(evaluated)


def test_launch_says_why_a_run_failed(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        launch(tmp_path / "missing.py", 2)
    with pytest.raises(ValueError, match="nproc"):
        launch(fsdp_train.__file__, 0)
    with pytest.raises(TypeError, match="args must be a list of strings"):
        launch(fsdp_train.__file__, 2, "--steps 3")
    with pytest.raises(ValueError, match="timeout"):
        launch(fsdp_train.__file__, 2, timeout=-1)
    for bad in (None, "model", {"weight": 1}):
        with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
            check_shardable(bad, 2)
    broken = tmp_path / "broken.py"
    broken.write_text("import os\nif os.environ['RANK'] == '1':\n    raise SystemExit('rank 1 gave up')\n")
    with pytest.raises(RuntimeError, match=r"failed \(exit code 1\)"):
        launch(broken, 2, timeout=120)
    slow = tmp_path / "slow.py"
    slow.write_text("import time\ntime.sleep(60)\n")
    with pytest.raises(TimeoutError, match="ran past 3 s"):
        launch(slow, 1, timeout=3)


def test_the_evaluation_guard_finds_4bit_layers_whose_weight_fsdp_swapped():
    """Between forwards FSDP2 leaves a plain tensor where the Params4bit was: the one-call guard of
    evaluation.bnb_training_path must still find the layer (it keeps its own quant_state)."""
    from qlora_course.evaluation import bnb_training_path

    model = _load()
    layer = distributed.four_bit_layers(model)[0]
    layer.weight = torch.nn.Parameter(layer.weight.data.clone(), requires_grad=False)
    assert not hasattr(layer.weight, "quant_state")
    model.eval()
    with bnb_training_path(model):
        assert layer.training
    assert not layer.training
