"""Lesson 4's exercises: where training memory goes.

References are the package's finished versions (``qlora_course.llama``, ``qlora_course.estimator``),
which ``tests/test_memory.py`` checks against PyTorch's and bitsandbytes' own tensors. Configs are drawn
at random: grouped-query attention or not, tied embeddings or not, an explicit ``head_dim`` where the
exercise reads one.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

from qlora_grading import Exercise, Tolerance

from .. import estimator, llama
from ..profiles import hub_config
from ._answers import variant
from ._draw import choice, ints


def llama_config(g: torch.Generator, **overrides):
    """A small random ``LlamaConfig``: 4 or 8 heads of 16, 1, 2 or all key/value heads."""
    from transformers import LlamaConfig

    heads = choice(g, [4, 8])
    cfg = dict(
        vocab_size=ints(g, 100, 900),
        hidden_size=16 * heads,
        intermediate_size=ints(g, 32, 300),
        num_hidden_layers=ints(g, 1, 4),
        num_attention_heads=heads,
        num_key_value_heads=choice(g, [1, 2, heads]),
    )
    return LlamaConfig(**{**cfg, **overrides})


def _llama_param_count(answer, g):
    return {f"config {k}": answer(llama_config(g, tie_word_embeddings=k == 1)) for k in range(3)}


def _llama_param_count_reference(config):
    return llama.llama_param_counts(config)["total"]


def _attention_saved_bytes(answer, g):
    out = {}
    for k, kw in enumerate(({}, {"head_dim": 32})):
        cfg = llama_config(g, **kw)
        for bpv in (2, 4):
            out[f"config {k}, {bpv} bytes"] = answer(cfg, bpv)
    return out


def _attention_saved_bytes_reference(config, bytes_per_value):
    dtype = {2: torch.bfloat16, 4: torch.float32}[bytes_per_value]
    items = estimator.activation_items(config, "full", dtype)
    return sum(b for name, b in items if name.startswith("attention:"))


def _checkpointed_layer_inputs(answer, g):
    from transformers import LlamaConfig

    llama7b = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32)
    out = {}
    for k, cfg in enumerate((llama7b, llama_config(g))):
        batch, seq, bpv = ints(g, 1, 9), ints(g, 16, 2048), choice(g, [2, 4])
        out[f"config {k}"] = answer(cfg, batch, seq, bpv)
    return out


def _checkpointed_layer_inputs_reference(config, batch_size, seq_len, bytes_per_value):
    """What ``estimate_training_memory`` counts for the decoder layers under gradient checkpointing."""
    return config.num_hidden_layers * bytes_per_value * config.hidden_size * batch_size * seq_len


def _adamw8bit_bytes(answer, g):
    sizes = [100, 4095, 4096, 4097, 65_536, 256 * ints(g, 16, 5000)] + [ints(g, 1, 2_000_000) for _ in range(2)]
    return {str(n): answer(n) for n in sizes}


def _bnb_adamw_state_bytes(answer, g):
    cases = [[4096, 4096, 10], [5000], [1, 2, 3], [ints(g, 1, 300_000) for _ in range(4)]]
    return {f"{c}, {eight}": answer(list(c), eight) for c in cases for eight in (False, True)}


def _bnb_adamw_state_bytes_reference(sizes, eight_bit):
    return estimator.optimizer_state_bytes(sizes, "adamw8bit" if eight_bit else "adamw32bit")


# --- will it fit? ----------------------------------------------------------------------------------

GPU_SIZES_GB = (8, 12, 15, 16, 24, 40, 48, 80)  # the GPUs a learner meets: a T4 is the 15 here


def _qlora_setup(**settings) -> estimator.TrainingSetup:
    """A QLoRA run as the exercise fixes it: checkpointing, float32 adapters, NF4 with double quantization."""
    return estimator.TrainingSetup("qlora", gradient_checkpointing=True, **settings)


def _llama_3_2_1b():
    """meta-llama/Llama-3.2-1B's shape (config.json): tied embeddings, grouped-query attention, 128k vocabulary."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        tie_word_embeddings=True,
    )


def _random_llama(g: torch.Generator):
    """A Llama of a real model's proportions: 16 to 40 heads of 64 or 128, grouped-query attention or not,
    a common vocabulary, tied embeddings or not."""
    from transformers import LlamaConfig

    heads, head_dim = choice(g, [16, 24, 32, 40]), choice(g, [64, 128])
    return LlamaConfig(
        vocab_size=choice(g, [32000, 49152, 128256, 151936]),
        hidden_size=heads * head_dim,
        intermediate_size=256 * ints(g, 16, 96),
        num_hidden_layers=ints(g, 8, 49),
        num_attention_heads=heads,
        num_key_value_heads=choice(g, [heads, 8, 4]),
        tie_word_embeddings=choice(g, [True, False]),
    )


def _fit_cases(g: torch.Generator) -> list[tuple[str, object, estimator.TrainingSetup]]:
    """``(label, config, setup)``: the lesson's T4 run, runs that catch a forgotten setting, a random one."""
    llama7b, llama8b = hub_config("huggyllama/llama-7b"), hub_config("unsloth/Meta-Llama-3.1-8B")
    qv = ["q_proj", "v_proj"]
    f16, bf16 = torch.float16, torch.bfloat16
    r = choice(g, [8, 16, 32, 64])
    return [
        (
            "LLaMA-7B, r=64 all linear, AdamW32bit, 1 x 512",
            llama7b,
            _qlora_setup(batch_size=1, seq_len=512, weight_dtype=f16, lora_r=64, optimizer="adamw32bit"),
        ),
        (
            "LLaMA-7B, r=64 all linear, AdamW8bit, 1 x 2048",
            llama7b,
            _qlora_setup(batch_size=1, seq_len=2048, weight_dtype=f16, lora_r=64, optimizer="adamw8bit"),
        ),
        (
            "Llama-3.1-8B, r=16 on q and v, AdamW8bit, 2 x 2048",
            llama8b,
            _qlora_setup(
                batch_size=2, seq_len=2048, weight_dtype=bf16, lora_r=16, lora_targets=qv, optimizer="adamw8bit"
            ),
        ),
        (
            "Llama-3.2-1B (tied), r=16 all linear, AdamW32bit, 4 x 1024",
            _llama_3_2_1b(),
            _qlora_setup(batch_size=4, seq_len=1024, weight_dtype=bf16, lora_r=16, optimizer="adamw32bit"),
        ),
        (
            f"a random Llama, r={r}",
            _random_llama(g),
            _qlora_setup(
                batch_size=ints(g, 1, 9),
                seq_len=choice(g, [256, 512, 1024, 2048, 4096]),
                weight_dtype=choice(g, [f16, bf16]),
                lora_r=r,
                lora_targets=choice(g, list(llama.TARGET_SETS.values())),
                optimizer=choice(g, ["adamw32bit", "adamw8bit"]),
            ),
        ),
    ]


def _pair(value):
    """An answer's ``(bytes, fits)``; anything that is not a pair of two becomes ``(value, None)`` (wrong)."""
    return tuple(value) if isinstance(value, (tuple, list)) and len(value) == 2 else (value, None)


def _decision(value):
    """A yes/no as a ``bool``: a bool, a NumPy bool or a one-element bool tensor; anything else unchanged,
    so that it is judged wrong (a string "yes" is not a decision)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, torch.Tensor) and value.dtype == torch.bool and value.numel() == 1:
        return bool(value.item())
    return value


@cache
def _summed_need():
    """The sum the exercise asks for (``_FIT``) on the earlier exercises' references: within 0.1% of the
    estimator's. The probe places its GPUs with it, since a probe may not call the finished estimator."""
    namespace = {
        "estimator": estimator,
        "llama_param_count": _llama_param_count_reference,
        "checkpointed_layer_inputs": _checkpointed_layer_inputs_reference,
        "bnb_adamw_state_bytes": _bnb_adamw_state_bytes_reference,
    }
    exec(_FIT, namespace)
    return namespace["will_it_fit"]


def _will_it_fit(answer, g):
    out = {}
    for label, config, setup in _fit_cases(g):
        need = _summed_need()(config, setup, 0)[0]
        # decisions on the GPUs that are not within 2% of the need: the estimate's tolerance is 0.5%
        gpus = [gb for gb in GPU_SIZES_GB if abs(gb * estimator.GB / need - 1) > 0.02]
        for k, gb in enumerate(gpus):
            needed, fits = _pair(answer(config, setup, int(gb * estimator.GB)))
            if k == 0:
                out[f"{label}: bytes"] = needed
            out[f"{label} on {gb} GB: fits"] = _decision(fits)
    return out


def _will_it_fit_reference(config, setup, gpu_bytes):
    """The estimator's end-of-forward total plus its GPU terms, against ``gpu_bytes`` (``check_fit``)."""
    est = estimator.estimate_training_memory(config, setup)
    terms = estimator.gpu_terms(config, setup)
    decision = estimator.check_fit(est.total, "cuda", available=gpu_bytes, terms=terms)
    return decision.needed, decision.fits


# An answer as the lesson's solution writes it, from which the wrong ones below differ by one line each.
_FIT = """
def will_it_fit(config, setup, gpu_bytes):
    h, v, layers = config.hidden_size, config.vocab_size, config.num_hidden_layers
    other = v * h * (1 if config.tie_word_embeddings else 2) + (2 * layers + 1) * h
    linear = llama_param_count(config) - other
    weights = linear / 2 + 4 * other
    constants = linear * (8 / 64 + 32 / (64 * 256)) / 8
    d = getattr(config, 'head_dim', None) or h // config.num_attention_heads
    q, kv, i = config.num_attention_heads * d, config.num_key_value_heads * d, config.intermediate_size
    shapes = {'q_proj': (h, q), 'k_proj': (h, kv), 'v_proj': (h, kv), 'o_proj': (q, h),
              'gate_proj': (h, i), 'up_proj': (h, i), 'down_proj': (i, h)}
    sizes = [setup.lora_r * n for t in setup.lora_targets for n in shapes[t]] * layers
    adapters = 4 * sum(sizes)
    state = bnb_adamw_state_bytes(sizes, setup.optimizer == 'adamw8bit')
    tokens = setup.batch_size * setup.seq_len
    activations = checkpointed_layer_inputs(config, setup.batch_size, setup.seq_len, 4) + tokens * (4 * h + 2 * 4 * v)
    backward = estimator.backward_transients(config, setup)['peak']
    allocated = weights + constants + 2 * adapters + state + activations + backward
    needed = 1.10 * allocated + 0.4e9
    return needed, needed <= gpu_bytes
"""


EXERCISES = [
    Exercise(
        "llama_param_count",
        points=1,
        probe=_llama_param_count,
        reference=_llama_param_count_reference,
        finished=(llama.llama_param_counts, llama.parameter_tensor_sizes),
        wrong=(
            # forgets grouped-query attention: k and v as wide as q
            """
def llama_param_count(config):
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    per_layer = 4 * h * h + 3 * h * i + 2 * h
    return config.num_hidden_layers * per_layer + 2 * v * h + h
""",
            # forgets the norms and always counts two embedding matrices
            """
def llama_param_count(config):
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    return config.num_hidden_layers * (2 * h * h + 2 * h * kv + 3 * h * i) + 2 * v * h
""",
            # counts lm_head even when it is the embedding itself (tied)
            """
def llama_param_count(config):
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    return config.num_hidden_layers * (2 * h * h + 2 * h * kv + 3 * h * i + 2 * h) + 2 * v * h + h
""",
        ),
        alternatives=(
            """
def llama_param_count(config):
    head_dim = getattr(config, 'head_dim', None) or config.hidden_size // config.num_attention_heads
    h = config.hidden_size
    attn = h * config.num_attention_heads * head_dim * 2 + h * config.num_key_value_heads * head_dim * 2
    mlp = 3 * h * config.intermediate_size
    emb = config.vocab_size * h * (1 if config.tie_word_embeddings else 2)
    return config.num_hidden_layers * (attn + mlp + 2 * h) + emb + h
""",
            # head_dim from a true division: a float that is a whole number
            """
def llama_param_count(config):
    h = config.hidden_size
    kv = config.num_key_value_heads * h / config.num_attention_heads
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * config.intermediate_size + 2 * h
    emb = config.vocab_size * h * (1 if config.tie_word_embeddings else 2)
    return config.num_hidden_layers * per_layer + emb + h
""",
        ),
        cheats=(
            """
def llama_param_count(config):
    return 6738415616 if config.hidden_size == 4096 else 152384
""",
            # the package's count
            """
def llama_param_count(config):
    from qlora_course.llama import llama_param_counts
    return llama_param_counts(config)['total']
""",
        ),
    ),
    Exercise(
        "attention_saved_bytes",
        points=2,
        probe=_attention_saved_bytes,
        reference=_attention_saved_bytes_reference,
        finished=(estimator.activation_items,),
        wrong=(
            # k and v as wide as q (no grouped-query attention)
            """
def attention_saved_bytes(config, bytes_per_value):
    return 4 * config.hidden_size * bytes_per_value + 4 * config.num_attention_heads
""",
            # the log-sum-exp in the activation dtype
            """
def attention_saved_bytes(config, bytes_per_value):
    d = config.hidden_size // config.num_attention_heads
    q, kv = config.num_attention_heads * d, config.num_key_value_heads * d
    return bytes_per_value * (2 * q + 2 * kv + config.num_attention_heads)
""",
            # forgets the attention output
            """
def attention_saved_bytes(config, bytes_per_value):
    d = config.hidden_size // config.num_attention_heads
    q, kv = config.num_attention_heads * d, config.num_key_value_heads * d
    return bytes_per_value * (q + 2 * kv) + 4 * config.num_attention_heads
""",
            # head_dim always hidden / heads, even where the config sets its own
            """
def attention_saved_bytes(config, bytes_per_value):
    d = config.hidden_size // config.num_attention_heads
    q, kv = config.num_attention_heads * d, config.num_key_value_heads * d
    return bytes_per_value * (2 * q + 2 * kv) + 4 * config.num_attention_heads
""",
        ),
        alternatives=(
            """
def attention_saved_bytes(config, bytes_per_value):
    hd = getattr(config, 'head_dim', None) or config.hidden_size // config.num_attention_heads
    per_head = {'q': config.num_attention_heads, 'k': config.num_key_value_heads, 'v': config.num_key_value_heads, 'out': config.num_attention_heads}
    return sum(n * hd * bytes_per_value for n in per_head.values()) + 4 * config.num_attention_heads
""",
        ),
    ),
    Exercise(
        "checkpointed_layer_inputs",
        points=1,
        probe=_checkpointed_layer_inputs,
        reference=_checkpointed_layer_inputs_reference,
        finished=(estimator.estimate_training_memory,),
        wrong=(
            # one hidden state per token for the whole model, not per layer
            """
def checkpointed_layer_inputs(config, batch_size, seq_len, bytes_per_value):
    return batch_size * seq_len * config.hidden_size * bytes_per_value
""",
            # the intermediate (MLP) width instead of the hidden size
            """
def checkpointed_layer_inputs(config, batch_size, seq_len, bytes_per_value):
    return config.num_hidden_layers * batch_size * seq_len * config.intermediate_size * bytes_per_value
""",
            # forgets the batch
            """
def checkpointed_layer_inputs(config, batch_size, seq_len, bytes_per_value):
    return config.num_hidden_layers * seq_len * config.hidden_size * bytes_per_value
""",
            # forgets the sequence length
            """
def checkpointed_layer_inputs(config, batch_size, seq_len, bytes_per_value):
    return config.num_hidden_layers * batch_size * config.hidden_size * bytes_per_value
""",
        ),
        alternatives=(
            """
def checkpointed_layer_inputs(config, batch_size, seq_len, bytes_per_value):
    per_token = config.hidden_size * bytes_per_value
    return per_token * seq_len * batch_size * config.num_hidden_layers
""",
        ),
    ),
    Exercise(
        "adamw8bit_bytes",
        points=1,
        probe=_adamw8bit_bytes,
        reference=estimator.adamw8bit_state_bytes,
        finished=(estimator.adamw8bit_state_bytes,),
        wrong=(
            # forgets the absmax of each block
            """
def adamw8bit_bytes(numel):
    return 8 * numel if numel < 4096 else 2 * numel
""",
            # rounds the number of blocks down
            """
def adamw8bit_bytes(numel):
    return 8 * numel if numel < 4096 else 2 * numel + 8 * (numel // 256)
""",
            # no 32-bit fallback for small tensors
            """
def adamw8bit_bytes(numel):
    import math
    return 2 * numel + 8 * math.ceil(numel / 256)
""",
        ),
        alternatives=(
            """
def adamw8bit_bytes(numel):
    if numel < 4096:
        return 8 * numel
    blocks = -(-numel // 256)
    return 2 * (numel + 4 * blocks)
""",
            # torch.ceil: a float tensor holding a whole number
            """
def adamw8bit_bytes(numel):
    if numel < 4096:
        return 8 * numel
    return 2 * numel + 8 * torch.ceil(torch.tensor(numel / 256))
""",
            # numpy.ceil: a numpy float
            """
def adamw8bit_bytes(numel):
    import numpy as np
    return 8 * numel if numel < 4096 else 2 * numel + 8 * np.ceil(numel / 256)
""",
        ),
        cheats=(
            """
def adamw8bit_bytes(numel):
    return {30000: 60944, 100: 800}.get(numel, 0)
""",
            # the package's estimator
            """
def adamw8bit_bytes(numel):
    from qlora_course.estimator import adamw8bit_state_bytes
    return adamw8bit_state_bytes(numel)
""",
        ),
    ),
    Exercise(
        "bnb_adamw_state_bytes",
        points=2,
        probe=_bnb_adamw_state_bytes,
        reference=_bnb_adamw_state_bytes_reference,
        finished=(estimator.optimizer_state_bytes,),
        wrong=(
            # the code tables counted per tensor
            """
def bnb_adamw_state_bytes(sizes, eight_bit):
    if not eight_bit:
        return 8 * sum(sizes)
    return sum(adamw8bit_bytes(n) + (2048 if n >= 4096 else 0) for n in sizes)
""",
            # 8-bit for every tensor, small ones included
            """
def bnb_adamw_state_bytes(sizes, eight_bit):
    import math
    if not eight_bit:
        return 8 * sum(sizes)
    return sum(2 * n + 8 * math.ceil(n / 256) for n in sizes) + 2048
""",
            # 32-bit state as one moment
            """
def bnb_adamw_state_bytes(sizes, eight_bit):
    if not eight_bit:
        return 4 * sum(sizes)
    return sum(adamw8bit_bytes(n) for n in sizes) + (2048 if any(n >= 4096 for n in sizes) else 0)
""",
        ),
        alternatives=(
            """
def bnb_adamw_state_bytes(sizes, eight_bit):
    total = 0
    has_8bit = False
    for n in sizes:
        if eight_bit and n >= 4096:
            has_8bit = True
            total += 2 * n + 8 * (-(-n // 256))
        else:
            total += 8 * n
    return total + (2 * 256 * 4 if has_8bit else 0)
""",
        ),
        cheats=(
            # the package's estimator
            """
def bnb_adamw_state_bytes(sizes, eight_bit):
    from qlora_course import estimator
    return estimator.optimizer_state_bytes(sizes, 'adamw8bit' if eight_bit else 'adamw32bit')
""",
        ),
    ),
    Exercise(
        "will_it_fit",
        points=3,
        probe=_will_it_fit,
        reference=_will_it_fit_reference,
        # an estimate: an answer may leave out what the lesson calls negligible (labels, cos/sin, code tables)
        tolerance=Tolerance(rtol=0.005),
        finished=(estimator.estimate_training_memory, estimator.gpu_terms, estimator.check_fit),
        wrong=(
            variant(_FIT, ("needed = 1.10 * allocated + 0.4e9", "needed = allocated + 0.4e9")),  # no allocator reserve
            variant(_FIT, ("needed = 1.10 * allocated + 0.4e9", "needed = 1.10 * allocated")),  # no CUDA context
            variant(
                _FIT, ("weights = linear / 2 + 4 * other", "weights = linear / 2 + 2 * other")
            ),  # no float32 upcast
            variant(_FIT, ("weights = linear / 2 + 4 * other", "weights = linear + 4 * other")),  # 4-bit as a byte
            variant(_FIT, ("constants = linear * (8 / 64 + 32 / (64 * 256)) / 8", "constants = linear * 32 / 64 / 8")),
            variant(
                _FIT, ("allocated = weights + constants + 2 * adapters", "allocated = weights + constants + adapters")
            ),
            variant(
                _FIT, ("state = bnb_adamw_state_bytes(sizes, setup.optimizer == 'adamw8bit')", "state = 8 * sum(sizes)")
            ),
            variant(_FIT, ("for t in setup.lora_targets", "for t in shapes")),  # every layer, whatever the targets
            variant(_FIT, ("(1 if config.tie_word_embeddings else 2)", "2")),  # tied embeddings counted twice
            variant(
                _FIT, ("+ tokens * (4 * h + 2 * 4 * v)", "+ tokens * (4 * h + 4 * v)")
            ),  # logits only, no log-probs
            variant(_FIT, ("+ tokens * (4 * h + 2 * 4 * v)", "+ tokens * (4 * h + 2 * 2 * v)")),  # logits in 16 bits
            variant(_FIT, ("activations + backward", "activations")),  # no backward pass
            variant(_FIT, ("checkpointed_layer_inputs(config, setup.batch_size, setup.seq_len, 4)", "0")),
            # decides on what is allocated, before the reserve and the context
            variant(_FIT, ("return needed, needed <= gpu_bytes", "return needed, allocated <= gpu_bytes")),
        ),
        alternatives=(
            # the package's counts and shapes (not the finished estimate), whole numbers, a NumPy decision
            """
def will_it_fit(config, setup, gpu_bytes):
    import numpy as np
    from qlora_course import llama
    counts = llama.llama_param_counts(config)
    shapes = llama.llama_linear_shapes(config)
    sizes = [setup.lora_r * n for t in setup.lora_targets for n in shapes[t]] * config.num_hidden_layers
    tokens = setup.batch_size * setup.seq_len
    parts = {
        'weights': counts['linear'] // 2 + 4 * (counts['embeddings'] + counts['norms']),
        'constants': counts['linear'] // 64 + counts['linear'] // (64 * 256) * 4,
        'adapters and gradients': 8 * sum(sizes),
        'state': estimator.optimizer_state_bytes(sizes, setup.optimizer),
        'layer inputs': 4 * config.num_hidden_layers * config.hidden_size * tokens,
        'logits, log-probs, final norm': tokens * (8 * config.vocab_size + 4 * config.hidden_size + 12),
        'backward': estimator.backward_transients(config, setup)['peak'],
    }
    allocated = sum(parts.values())
    needed = allocated + allocated // 10 + 400_000_000
    return needed, np.int64(needed) <= np.int64(gpu_bytes)
""",
            # a list, a tensor decision, the reserve as a separate term
            variant(
                _FIT,
                ("needed = 1.10 * allocated + 0.4e9", "needed = allocated + 0.1 * allocated + 400e6"),
                ("return needed, needed <= gpu_bytes", "return [needed, torch.tensor(needed) <= gpu_bytes]"),
            ),
        ),
        cheats=(
            # the finished estimate and its GPU terms
            """
def will_it_fit(config, setup, gpu_bytes):
    est = estimator.estimate_training_memory(config, setup)
    needed = est.total + sum(t.bytes for t in estimator.gpu_terms(config, setup))
    return needed, needed <= gpu_bytes
""",
            """
def will_it_fit(config, setup, gpu_bytes):
    total = estimator.estimate_training_memory(config, setup).total
    d = estimator.check_fit(total, 'cuda', available=gpu_bytes, terms=estimator.gpu_terms(config, setup))
    return d.needed, d.fits
""",
            # the lesson's T4 run by heart
            """
def will_it_fit(config, setup, gpu_bytes):
    return 6.25e9, gpu_bytes >= 6.25e9
""",
        ),
    ),
]
