"""Lesson 7's exercises: past one GPU, FSDP-QLoRA.

References are the package's finished versions in :mod:`qlora_course.distributed`, which
``tests/test_distributed.py`` checks against the real thing: the bytes each rank holds in a 2-process
FSDP2 run, bitsandbytes' packed weights, FSDP1's wrapping and PEFT's ``get_peft_model_state_dict``.
"""

from __future__ import annotations

import torch

from qlora_grading import Exercise, Tolerance

from .. import distributed
from ._answers import variant
from ._draw import choice, ints, sample

# --- per-rank memory ------------------------------------------------------------------------------

_PARTS = ("weights", "quant_constants", "lora_weights", "gradients", "optimizer_state", "activations")


def _parts(g: torch.Generator) -> dict:
    """Lesson 4's estimate of some run, in bytes (each part drawn on its own scale), in a random order."""
    return {p: float(ints(g, 1, 10**6)) * choice(g, [1.0, 1e3, 1e4]) for p in sample(g, list(_PARTS), len(_PARTS))}


def _per_rank(answer, g):
    out = {}
    for k in range(4):
        parts, world = _parts(g), choice(g, [2, 3, 4, 8])
        sharded = k != 1
        out[f"draw {k}: {world} ranks, sharded={sharded}"] = answer(dict(parts), world, sharded)
    out["one rank"] = answer(_parts(g), 1, True)
    out["sharded by default"] = answer(_parts(g), choice(g, [2, 4]))
    return out


_PER_RANK = """
def per_rank(parts, world_size, sharded=True):
    out = {}
    for name, size in parts.items():
        if sharded and name in ('weights', 'lora_weights', 'gradients', 'optimizer_state'):
            out[name] = size / world_size
        else:
            out[name] = size
    out['total'] = sum(out.values())
    return out
"""

# --- the 4-bit weight's shards --------------------------------------------------------------------

_STORAGES = (torch.uint8, torch.bfloat16, torch.float16, torch.float32)


def _four_bit_shards(answer, g):
    out = {}
    for k in range(4):
        rows, cols = 64 * ints(g, 1, 65), 64 * ints(g, 1, 65)
        storage, world = choice(g, list(_STORAGES)), choice(g, [2, 3, 4, 6, 8])
        out[f"draw {k}: {rows}x{cols}, {storage}, {world} ranks"] = answer(rows, cols, storage, world)
    # rows that do not split evenly (torch.chunk is not numpy's array_split), and a layer so small that the
    # last rank holds nothing
    out["64x64, torch.float32, 6 ranks"] = answer(64, 64, torch.float32, 6)
    out["4x5, torch.float16, 4 ranks"] = answer(4, 5, torch.float16, 4)
    out["256x128, torch.uint8, 1 rank"] = answer(256, 128, torch.uint8, 1)
    return out


def _four_bit_shards_reference(out_features, in_features, storage, world_size):
    return distributed.shard_rows(distributed.packed_rows(out_features, in_features, storage), world_size)


_SHARDS = """
def four_bit_shards(out_features, in_features, storage, world_size):
    rows = out_features * in_features // 2 // storage.itemsize
    size = -(-rows // world_size)
    return [max(0, min(size, rows - rank * size)) for rank in range(world_size)]
"""

# --- the equality check ---------------------------------------------------------------------------


def _losses(g: torch.Generator, n: int) -> list[float]:
    start = 8.0 + ints(g, 0, 200) / 100
    return [start - 0.5 * i + ints(g, -20, 20) / 1000 for i in range(n)]


def _first_departure(answer, g):
    n, tol = ints(g, 5, 9), choice(g, [1e-4, 1e-3, 0.25])
    ref = _losses(g, n)
    k = ints(g, 1, n - 1)
    small = [x + choice(g, [-1, 1]) * tol / 2 for x in ref]
    cases = {
        "the same run": list(ref),
        "within the tolerance": small,
        f"departs at step {k}": ref[:k] + [x + 3 * tol + 0.5 for x in ref[k:]],
        f"departs downwards at step {k}": ref[:k] + [x - 3 * tol - 0.5 for x in ref[k:]],
        "departs only at the last step": ref[:-1] + [ref[-1] + 10 * tol],
        f"NaN at step {k}": ref[:k] + [float("nan")] + ref[k + 1 :],
        "inf at the first step": [float("inf")] + ref[1:],
        f"stops after {k} steps": ref[:k],
        "one step more": ref + [ref[-1] - 0.1],
    }
    out = {name: answer(list(ref), candidate, tol) for name, candidate in cases.items()}
    out["exactly the tolerance apart"] = answer([1.0, 2.0, 3.0], [1.0, 2.25, 2.75], 0.25)
    out["large losses, twice the tolerance apart"] = answer([50.0, 49.0, 48.0], [50.0, 49.0 + 2 * tol, 48.0], tol)
    return out


_DEPARTURE = """
def first_departure(reference, candidate, tol):
    for step, (a, b) in enumerate(zip(reference, candidate)):
        if not abs(a - b) <= tol:
            return step
    if len(reference) != len(candidate):
        return min(len(reference), len(candidate))
    return None
"""

# --- FSDP1's wrap policy --------------------------------------------------------------------------


def lora_model(g: torch.Generator, dtype: torch.dtype = torch.bfloat16):
    """A tiny random Llama in ``dtype`` with float32 LoRA adapters on a drawn set of its linear layers, as
    a 16-bit QLoRA model is before FSDP1 wraps it (its base frozen)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(ints(g, 0, 2**31 - 1))
    config = LlamaConfig(
        vocab_size=ints(g, 40, 100),
        hidden_size=32,
        intermediate_size=ints(g, 16, 64),
        num_hidden_layers=ints(g, 1, 4),
        num_attention_heads=4,
        num_key_value_heads=choice(g, [1, 2, 4]),
        max_position_embeddings=32,
    )
    targets = sample(g, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], ints(g, 1, 8))
    model = get_peft_model(
        LlamaForCausalLM(config).to(dtype), LoraConfig(r=ints(g, 1, 9), lora_alpha=8, target_modules=targets)
    )
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()
    return model


def _wrap_policy(answer, g):
    out = {}
    for k in range(2):
        model = lora_model(g)
        out[f"model {k}"] = {name or "(root)": bool(answer(module)) for name, module in model.named_modules()}
    return out


_POLICY = """
def wrap_policy(module):
    if isinstance(module, LlamaDecoderLayer):
        return True
    is_leaf = len(list(module.children())) == 0
    weight = getattr(module, 'weight', None)
    return is_leaf and weight is not None and weight.requires_grad
"""

# --- the adapter, gathered ------------------------------------------------------------------------

_NAMES = ["default", "style", "default2", "task", "task_v2"]


def _adapter_only(answer, g):
    from peft import LoraConfig

    out = {}
    for k in range(2):
        names = ["default", "default2"] if k == 0 else sample(g, _NAMES, ints(g, 1, 4))
        model = lora_model(g, torch.float32)  # its adapter is "default"
        for name in names:
            if name != "default":
                targets = sample(g, ["q_proj", "v_proj", "down_proj"], ints(g, 1, 4))
                model.add_adapter(name, LoraConfig(r=ints(g, 1, 5), lora_alpha=4, target_modules=targets))
        full = model.state_dict()
        for name in names:
            out[f"model {k}, adapter {name!r} of {names}"] = answer(dict(full), name)
    out["the default name"] = answer(dict(full))
    return out


_ADAPTER = """
def adapter_only(state_dict, adapter_name='default'):
    out = {}
    for key, value in state_dict.items():
        if 'lora_' in key and f'.{adapter_name}.' in key:
            out[key.replace(f'.{adapter_name}.', '.')] = value
    return out
"""


EXERCISES = [
    Exercise(
        "per_rank",
        points=2,
        probe=_per_rank,
        reference=distributed.per_rank_parts,
        tolerance=Tolerance(ulps=16, number_dtype="float64"),
        finished=(distributed.per_rank_parts, distributed.estimate_per_rank),
        wrong=(
            # every part divided: activations and block constants too
            variant(
                _PER_RANK,
                ("if sharded and name in ('weights', 'lora_weights', 'gradients', 'optimizer_state'):", "if sharded:"),
            ),
            # the quantization constants counted as sharded, with the weights they describe
            variant(_PER_RANK, ("('weights', 'lora_weights',", "('weights', 'quant_constants', 'lora_weights',")),
            # the activations divided: as if the ranks shared one batch
            variant(_PER_RANK, ("'optimizer_state'):", "'optimizer_state', 'activations'):")),
            # sharded or not, the same division (data parallelism mistaken for sharding)
            variant(_PER_RANK, ("if sharded and name in", "if name in")),
            # no total
            variant(_PER_RANK, ("    out['total'] = sum(out.values())\n", "")),
            # the total of the whole model, not of this rank
            variant(_PER_RANK, ("out['total'] = sum(out.values())", "out['total'] = sum(parts.values())")),
        ),
        alternatives=(
            """
def per_rank(parts, world_size, sharded=True):
    divided = {'weights', 'lora_weights', 'gradients', 'optimizer_state'} if sharded else set()
    out = {k: (v / world_size if k in divided else v) for k, v in parts.items()}
    return {**out, 'total': sum(out.values())}
""",
        ),
        cheats=(
            """
def per_rank(parts, world_size, sharded=True):
    from qlora_course.distributed import per_rank_parts
    return per_rank_parts(parts, world_size, sharded)
""",
        ),
    ),
    Exercise(
        "four_bit_shards",
        points=2,
        probe=_four_bit_shards,
        reference=_four_bit_shards_reference,
        finished=(distributed.packed_rows, distributed.shard_rows),
        wrong=(
            # the layer's rows, not the packed tensor's: FSDP shards what is stored
            variant(_SHARDS, ("rows = out_features * in_features // 2 // storage.itemsize", "rows = out_features")),
            # bytes, not elements: the storage dtype forgotten
            variant(_SHARDS, (" // storage.itemsize", "")),
            # one 4-bit code an element
            variant(_SHARDS, ("in_features // 2 // storage", "in_features // storage")),
            # numpy's array_split: the remainder spread over the first ranks
            """
def four_bit_shards(out_features, in_features, storage, world_size):
    rows = out_features * in_features // 2 // storage.itemsize
    return [rows // world_size + (1 if rank < rows % world_size else 0) for rank in range(world_size)]
""",
            # every rank a full chunk: the padding counted as held
            variant(_SHARDS, ("[max(0, min(size, rows - rank * size)) for", "[size for")),
            # floor division, the remainder on the last rank
            """
def four_bit_shards(out_features, in_features, storage, world_size):
    rows = out_features * in_features // 2 // storage.itemsize
    shards = [rows // world_size] * world_size
    shards[-1] += rows % world_size
    return shards
""",
        ),
        alternatives=(
            """
def four_bit_shards(out_features, in_features, storage, world_size):
    packed = torch.empty(out_features * in_features // 2, dtype=torch.uint8).view(storage)
    chunks = [len(c) for c in packed.chunk(world_size)]
    return chunks + [0] * (world_size - len(chunks))
""",
        ),
        cheats=(
            """
def four_bit_shards(out_features, in_features, storage, world_size):
    from qlora_course import distributed as d
    return d.shard_rows(d.packed_rows(out_features, in_features, storage), world_size)
""",
        ),
    ),
    Exercise(
        "first_departure",
        points=2,
        probe=_first_departure,
        reference=distributed.first_departure,
        finished=(distributed.first_departure,),
        wrong=(
            # `>` is False for NaN: a run that produced NaN passes
            variant(_DEPARTURE, ("if not abs(a - b) <= tol:", "if abs(a - b) > tol:")),
            # only the candidate being higher counts
            variant(_DEPARTURE, ("if not abs(a - b) <= tol:", "if not b - a <= tol:")),
            # runs of different lengths agree if their common steps do
            variant(
                _DEPARTURE,
                ("    if len(reference) != len(candidate):\n        return min(len(reference), len(candidate))\n", ""),
            ),
            # a tolerance relative to the loss
            variant(_DEPARTURE, ("if not abs(a - b) <= tol:", "if not abs(a - b) <= tol * abs(a):")),
            # counts steps from 1
            variant(_DEPARTURE, ("return step\n", "return step + 1\n")),
            # only the final losses compared
            """
def first_departure(reference, candidate, tol):
    if len(reference) != len(candidate):
        return min(len(reference), len(candidate))
    if not abs(reference[-1] - candidate[-1]) <= tol:
        return len(reference) - 1
    return None
""",
        ),
        alternatives=(
            """
import math

def first_departure(reference, candidate, tol):
    n = min(len(reference), len(candidate))
    bad = [i for i in range(n) if math.isnan(reference[i] - candidate[i]) or abs(reference[i] - candidate[i]) > tol]
    if bad:
        return bad[0]
    return None if len(reference) == len(candidate) else n
""",
        ),
        cheats=(
            """
def first_departure(reference, candidate, tol):
    from qlora_course.distributed import first_departure as f
    return f(reference, candidate, tol)
""",
        ),
    ),
    Exercise(
        "adapter_only",
        points=2,
        probe=_adapter_only,
        reference=distributed.adapter_state_dict,
        tolerance=Tolerance(ulps=0),
        finished=(distributed.adapter_state_dict, "peft.utils.save_and_load.get_peft_model_state_dict"),
        wrong=(
            # "default" is in "default2": the other adapter's tensors saved too
            variant(_ADAPTER, ("f'.{adapter_name}.' in key", "adapter_name in key")),
            # the adapter's name left in the keys: PEFT's loader would not find them
            variant(_ADAPTER, ("key.replace(f'.{adapter_name}.', '.')", "key")),
            # every adapter's tensors
            variant(_ADAPTER, (" and f'.{adapter_name}.' in key", "")),
            # the base weights too: a full checkpoint, not an adapter
            variant(
                _ADAPTER,
                ("    return out", "    return {**{k: v for k, v in state_dict.items() if 'lora_' not in k}, **out}"),
            ),
        ),
        alternatives=(
            """
def adapter_only(state_dict, adapter_name='default'):
    out = {}
    for key, value in state_dict.items():
        parts = key.split('.')
        if any(p.startswith('lora_') for p in parts) and adapter_name in parts:
            parts.remove(adapter_name)
            out['.'.join(parts)] = value
    return out
""",
        ),
        cheats=(
            """
def adapter_only(state_dict, adapter_name='default'):
    from qlora_course.distributed import adapter_state_dict
    return adapter_state_dict(state_dict, adapter_name)
""",
        ),
    ),
    Exercise(
        "wrap_policy",
        points=2,
        probe=_wrap_policy,
        reference=distributed.fsdp1_unit,
        finished=(distributed.fsdp1_unit,),
        wrong=(
            # decoder layers only: FSDP1 then mixes the adapters' float32 with the layer's 16-bit weights
            variant(
                _POLICY,
                (
                    "    is_leaf = len(list(module.children())) == 0\n    weight = getattr(module, 'weight', None)\n"
                    "    return is_leaf and weight is not None and weight.requires_grad\n",
                    "    return False\n",
                ),
            ),
            # the adapters only: the whole model one unit apart from them (no memory saved per layer)
            variant(_POLICY, ("    if isinstance(module, LlamaDecoderLayer):\n        return True\n", "")),
            # every leaf with a weight: the frozen norms and embeddings too
            variant(_POLICY, ("weight is not None and weight.requires_grad", "weight is not None")),
            # anything that holds a trainable parameter somewhere inside (the root, every LoRA wrapper)
            variant(
                _POLICY,
                (
                    "    return is_leaf and weight is not None and weight.requires_grad",
                    "    return any(p.requires_grad for p in module.parameters())",
                ),
            ),
        ),
        alternatives=(
            """
def wrap_policy(module):
    trainable_linear = isinstance(module, torch.nn.Linear) and module.weight.requires_grad
    return type(module).__name__ == 'LlamaDecoderLayer' or trainable_linear
""",
        ),
        cheats=(
            """
def wrap_policy(module):
    from qlora_course.distributed import fsdp1_unit
    return fsdp1_unit(module)
""",
        ),
    ),
]
