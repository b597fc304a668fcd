"""Llama architecture facts from a transformers ``LlamaConfig``: the linear layers, their shapes, the
parameter counts, and the one check that a list of LoRA targets names real Llama linear layers.

Every module that counts Llama parameters (LoRA sizes, quantized bytes, the memory estimator) reads them
from here, so a change in how transformers lays out the model is made once.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import validate

__all__ = [
    "LLAMA_LINEAR",
    "TARGET_SETS",
    "target_list",
    "check_targets",
    "check_config",
    "llama_linear_shapes",
    "llama_param_counts",
    "parameter_tensor_sizes",
]

#: The seven linear layers of a Llama decoder layer, by the names transformers gives them
#: (PEFT's ``target_modules``; "all linear" in the QLoRA paper).
LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

#: Target sets lessons compare, as lists (what ``LoraConfig(target_modules=...)`` takes).
TARGET_SETS: dict[str, list[str]] = {
    "q,v": ["q_proj", "v_proj"],
    "all attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "all linear": list(LLAMA_LINEAR),
}


def target_list(target_modules: Iterable[str], name: str = "target_modules") -> list[str]:
    """``target_modules`` as a list of layer names; a single string is refused (``list("q_proj")`` would
    be its letters)."""
    if isinstance(target_modules, str):
        raise TypeError(
            f"{name} must be a list of names, e.g. [{target_modules!r}], not a string: "
            "a string would be read letter by letter"
        )
    if not isinstance(target_modules, (list, tuple, set, frozenset)):
        raise TypeError(f"{name} must be a list of names, got {type(target_modules).__name__}")
    return validate.names(list(target_modules), name)


def check_config(config) -> None:
    """Raise ``ValueError`` unless ``config`` has the positive integer sizes of a Llama config."""
    for name in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        value = getattr(config, name, None)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"config.{name} must be a positive integer; is this a Llama config? (got {value!r})")


def llama_linear_shapes(config) -> dict[str, tuple[int, int]]:
    """``name -> (in, out)`` for the linear layers of one Llama decoder layer, from a ``LlamaConfig``.

    Grouped-query attention is respected: k and v project to ``num_key_value_heads * head_dim``.
    """
    check_config(config)
    h, heads = config.hidden_size, config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if isinstance(kv_heads, bool) or not isinstance(kv_heads, int) or kv_heads <= 0 or heads % kv_heads:
        raise ValueError(
            f"config.num_key_value_heads must be a positive divisor of num_attention_heads={heads} "
            f"(each key/value head serves a whole group of query heads), got {kv_heads!r}"
        )
    if not getattr(config, "head_dim", None) and h % heads:
        raise ValueError(
            f"config.hidden_size={h} is not a multiple of num_attention_heads={heads}, and head_dim is not set"
        )
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q_out = config.num_attention_heads * head_dim
    kv_out = (getattr(config, "num_key_value_heads", None) or config.num_attention_heads) * head_dim
    i = config.intermediate_size
    return {
        "q_proj": (h, q_out),
        "k_proj": (h, kv_out),
        "v_proj": (h, kv_out),
        "o_proj": (q_out, h),
        "gate_proj": (h, i),
        "up_proj": (h, i),
        "down_proj": (i, h),
    }


def check_targets(config, target_modules: Iterable[str], name: str = "target_modules") -> list[str]:
    """``target_modules`` as a list, after checking that each names a linear layer of ``config``'s Llama;
    raises ``ValueError`` naming the unknown ones and the choices (``name``: the argument, in messages)."""
    targets = target_list(target_modules, name)
    shapes = llama_linear_shapes(config)
    unknown = [t for t in targets if t not in shapes]
    if unknown:
        raise ValueError(f"{name}: unknown Llama linear layer(s) {unknown}; choose from {list(shapes)}")
    return targets


def llama_param_counts(config) -> dict[str, int]:
    """Parameter counts of a Llama from a ``LlamaConfig``: ``{"linear", "embeddings", "norms", "total"}``.

    ``linear``: the decoder layers' projections; ``embeddings``: input embedding and ``lm_head`` (one
    matrix if ``tie_word_embeddings``); ``norms``: two RMSNorm weights per layer and the final one.
    """
    check_config(config)
    linear = config.num_hidden_layers * sum(i * o for i, o in llama_linear_shapes(config).values())
    h, v = config.hidden_size, config.vocab_size
    embeddings = v * h * (1 if getattr(config, "tie_word_embeddings", False) else 2)
    norms = h * (2 * config.num_hidden_layers + 1)
    return {"linear": linear, "embeddings": embeddings, "norms": norms, "total": linear + embeddings + norms}


def parameter_tensor_sizes(config) -> list[int]:
    """Element counts of every parameter tensor of a Llama (an optimizer keeps its state per tensor)."""
    shapes = llama_linear_shapes(config)
    h, v = config.hidden_size, config.vocab_size
    sizes = [v * h] * (1 if getattr(config, "tie_word_embeddings", False) else 2) + [h]
    sizes += config.num_hidden_layers * ([i * o for i, o in shapes.values()] + [h, h])
    return sizes
