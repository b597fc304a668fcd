"""Lesson 4's exercises: where training memory goes.

References are the package's finished versions (``qlora_course.llama``, ``qlora_course.estimator``),
which ``tests/test_memory.py`` checks against PyTorch's and bitsandbytes' own tensors. Configs are drawn
at random: grouped-query attention or not, tied embeddings or not, an explicit ``head_dim`` where the
exercise reads one.
"""

from __future__ import annotations

import torch

from qlora_grading import Exercise

from .. import estimator, llama
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
]
