"""Lesson 6, shipping a fine-tune: the adapter as a file, the merged model as a GGUF, many adapters on one base.

Three ways out of the training notebook, each a few small functions:

1. **The adapter alone** (megabytes, not the model's gigabytes). :func:`save_adapter` writes it with PEFT's
   ``save_pretrained`` and says how many bytes it takes; :func:`check_adapter_fits` reads its
   ``adapter_config.json`` and tensor shapes and says, *before* PEFT loads it, whether it was made for
   this base; :func:`load_adapter_onto` loads it onto a fresh (4-bit) base.
2. **One merged file for llama.cpp, Ollama, LM Studio**: :func:`export_gguf` writes a merged, 16-bit
   Llama as GGUF (``f32``, ``f16`` or ``q8_0``), with the tokenizer in the file's metadata, through the
   ``gguf`` package's ``GGUFWriter``. transformers reads it back with
   ``AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)``.
3. **Several adapters on one base**: :func:`load_adapters` puts named adapters on one 4-bit base,
   :func:`use_adapter` switches between them, and :func:`routed_logits` / :func:`routed_generate` run a
   batch whose rows each use their own adapter (PEFT's ``adapter_names=[...]``).

GGUF in one paragraph: a header, then typed key/value metadata (``llama.block_count = 8``,
``tokenizer.ggml.tokens = [...]``), then a table of tensors (name, shape, type, offset), then the
tensor bytes, each aligned to 32 bytes. Tensor names are llama.cpp's (``blk.0.attn_q.weight``), not
transformers' (``model.layers.0.self_attn.q_proj.weight``), see :data:`GGUF_TENSOR_NAMES`; and the query
and key rows are reordered, because llama.cpp rotates *adjacent* pairs of a head's dimensions where
transformers rotates its first half against its second half (:func:`permute_for_rope_pairs`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .evaluation import bnb_training_path

__all__ = [
    "adapter_bytes",
    "save_adapter",
    "check_adapter_fits",
    "load_adapter_onto",
    "GGUF_DTYPES",
    "GGUF_TENSOR_NAMES",
    "gguf_tensor_name",
    "permute_for_rope_pairs",
    "export_gguf",
    "BASE_ADAPTER",
    "load_adapters",
    "use_adapter",
    "routed_logits",
    "routed_generate",
]

# ---------------------------------------------------------------------------------------------------
# 1. The adapter as a file
# ---------------------------------------------------------------------------------------------------

_PEFT_PREFIX = "base_model.model."


def adapter_bytes(adapter_dir: str | Path) -> int:
    """Bytes on disk of the adapter saved in ``adapter_dir``: every file of the folder, i.e. what is
    shipped (``adapter_model.safetensors``, ``adapter_config.json`` and the ``README.md`` model card
    PEFT writes)."""
    folder = Path(adapter_dir)
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"adapter_dir {str(folder)!r} holds no adapter_config.json: is it a saved PEFT adapter?"
        )
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def save_adapter(model, adapter_dir: str | Path) -> int:
    """Save ``model``'s adapter(s) (a ``PeftModel``) to ``adapter_dir`` and return its bytes on disk.

    Only the LoRA matrices A (``r x in``) and B (``out x r``) of every adapted layer are written, in
    their training dtype, with ``adapter_config.json`` (rank, alpha, target modules, the base's name).
    """
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise TypeError(f"model must be a peft.PeftModel (with an adapter to save), got {type(model).__name__}")
    model.save_pretrained(str(adapter_dir))
    return adapter_bytes(adapter_dir)


def _adapter_shapes(adapter_dir: Path) -> dict[str, tuple[int, ...]]:
    """``{tensor name: shape}`` of a saved adapter, read from the file header (no tensor is loaded)."""
    st = adapter_dir / "adapter_model.safetensors"
    if st.is_file():
        from safetensors import safe_open

        with safe_open(str(st), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    binary = adapter_dir / "adapter_model.bin"
    if binary.is_file():
        return {k: tuple(v.shape) for k, v in torch.load(binary, map_location="meta", weights_only=True).items()}
    raise FileNotFoundError(f"adapter_dir {str(adapter_dir)!r} holds no adapter_model.safetensors or .bin")


def _same_model_name(a: str, b: str) -> bool:
    """Do two ``name_or_path`` strings name the same model? Equal, the same folder, or the same folder
    name (one model installed in two places, as the packaged course model is in every environment)."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists() and pa.resolve() == pb.resolve():
        return True
    return pa.name != "" and pa.name == pb.name


def _module_sizes(module) -> tuple[int, int] | None:
    """``(in, out)`` of a linear layer (4-bit ones included, whose packed weight has another shape),
    ``(num_embeddings, embedding_dim)`` of an embedding, else ``None``."""
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return module.in_features, module.out_features
    if hasattr(module, "num_embeddings") and hasattr(module, "embedding_dim"):
        return module.num_embeddings, module.embedding_dim
    return None


def check_adapter_fits(base, adapter_dir: str | Path, check_name: bool = True) -> dict:
    """Raise ``ValueError`` naming the mismatch if the adapter in ``adapter_dir`` was not made for ``base``.

    Checked before anything is loaded (PEFT's own error is a shape mismatch deep inside ``load_state_dict``):

    - ``check_name``: ``adapter_config.json``'s ``base_model_name_or_path`` names ``base``
      (``base.config.name_or_path``), see :func:`_same_model_name`;
    - every adapted layer exists in ``base``, and for each LoRA pair ``A`` is ``(r, in)`` and ``B`` is
      ``(out, r)`` with ``in``/``out`` the layer's sizes (embeddings: ``A`` is ``(r, rows)``, ``B`` is
      ``(dim, r)``); a fully saved module (``modules_to_save``, a resized embedding) has the layer's shape.

    Returns the adapter's config (the parsed ``adapter_config.json``).
    """
    folder = Path(adapter_dir)
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"adapter_dir {str(folder)!r} holds no adapter_config.json: is it a saved PEFT adapter?"
        )
    config = json.loads(config_file.read_text())
    made_for = config.get("base_model_name_or_path") or ""
    base_name = str(getattr(base.config, "name_or_path", "") or "")
    if check_name and made_for and base_name and not _same_model_name(made_for, base_name):
        raise ValueError(
            f"the adapter in {str(folder)!r} was made for base model {made_for!r}, but base is {base_name!r}. "
            "Load the base it was trained on, or pass check_name=False if this is the same model under another name."
        )
    problems = []
    for key, shape in _adapter_shapes(folder).items():
        path = key.removeprefix(_PEFT_PREFIX)
        for suffix in (".lora_A.weight", ".lora_B.weight", ".lora_embedding_A", ".lora_embedding_B", ".weight"):
            if path.endswith(suffix):
                module_path, kind = path[: -len(suffix)], suffix
                break
        else:
            continue  # a bias or another extra tensor: PEFT reports those itself
        try:
            module = base.get_submodule(module_path)
        except AttributeError:
            problems.append(f"{module_path}: no such layer in the base")
            continue
        sizes = _module_sizes(module)
        if sizes is None:
            continue
        n_in, n_out = sizes
        if kind in (".lora_A.weight", ".lora_embedding_A") and shape[-1] != n_in:
            problems.append(f"{module_path}: LoRA A is {shape}, the layer takes {n_in} inputs")
        elif kind == ".lora_B.weight" and shape[0] != n_out:
            problems.append(f"{module_path}: LoRA B is {shape}, the layer gives {n_out} outputs")
        elif kind == ".lora_embedding_B" and shape[0] != n_out:
            problems.append(f"{module_path}: LoRA B is {shape}, the embedding has width {n_out}")
        elif kind == ".weight" and shape[:1] not in ((n_out,), (n_in,)):
            problems.append(f"{module_path}: saved weight is {shape}, the layer is {n_in} -> {n_out}")
    if problems:
        shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise ValueError(
            f"the adapter in {str(folder)!r} (made for {made_for or 'an unnamed base'!r}) does not fit base "
            f"{base_name or type(base).__name__!r}: {shown}"
        )
    return config


def load_adapter_onto(base, adapter_dir: str | Path, adapter_name: str = "default", check_name: bool = True):
    """A ``PeftModel`` of ``base`` (e.g. a fresh 4-bit model) with the adapter saved in ``adapter_dir``,
    in eval mode, after :func:`check_adapter_fits`. ``base`` is changed in place (LoRA layers wrap its
    linear layers), as with ``PeftModel.from_pretrained``."""
    from peft import PeftModel

    if isinstance(base, PeftModel):
        raise TypeError("base already has adapters (it is a PeftModel): use load_adapters, or load a fresh base")
    check_adapter_fits(base, adapter_dir, check_name=check_name)
    return PeftModel.from_pretrained(base, str(adapter_dir), adapter_name=adapter_name).eval()


# ---------------------------------------------------------------------------------------------------
# 2. GGUF export
# ---------------------------------------------------------------------------------------------------

#: ``dtype`` of :func:`export_gguf` -> how matrices are stored. Vectors (the RMSNorm weights) stay float32
#: in every case, as llama.cpp's converter does.
GGUF_DTYPES = {
    "f32": "F32",  # 4 bytes a weight: exact
    "f16": "F16",  # 2 bytes: exact for bfloat16 weights in float16's range (|w| < 65504, not tiny)
    "q8_0": "Q8_0",  # 34 bytes per block of 32: 32 int8 values and one float16 scale (absmax / 127)
}

#: transformers' parameter names (``{i}`` is the layer) -> llama.cpp's tensor names.
GGUF_TENSOR_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "model.layers.{i}.input_layernorm.weight": "blk.{i}.attn_norm.weight",
    "model.layers.{i}.self_attn.q_proj.weight": "blk.{i}.attn_q.weight",
    "model.layers.{i}.self_attn.k_proj.weight": "blk.{i}.attn_k.weight",
    "model.layers.{i}.self_attn.v_proj.weight": "blk.{i}.attn_v.weight",
    "model.layers.{i}.self_attn.o_proj.weight": "blk.{i}.attn_output.weight",
    "model.layers.{i}.post_attention_layernorm.weight": "blk.{i}.ffn_norm.weight",
    "model.layers.{i}.mlp.gate_proj.weight": "blk.{i}.ffn_gate.weight",
    "model.layers.{i}.mlp.up_proj.weight": "blk.{i}.ffn_up.weight",
    "model.layers.{i}.mlp.down_proj.weight": "blk.{i}.ffn_down.weight",
}


def gguf_tensor_name(name: str) -> str:
    """llama.cpp's name for the Llama parameter ``name`` (``model.layers.3.mlp.up_proj.weight`` ->
    ``blk.3.ffn_up.weight``); ``ValueError`` for a parameter a Llama does not have."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a parameter's name (a str), got {type(name).__name__}")
    parts = name.split(".")
    if len(parts) > 3 and parts[:2] == ["model", "layers"] and parts[2].isdigit():
        pattern = ".".join(parts[:2] + ["{i}"] + parts[3:])
        if pattern in GGUF_TENSOR_NAMES:
            return GGUF_TENSOR_NAMES[pattern].format(i=parts[2])
    elif name in GGUF_TENSOR_NAMES:
        return GGUF_TENSOR_NAMES[name]
    raise ValueError(f"parameter {name!r} has no GGUF name: a plain Llama (no biases, no extra layers) is expected")


def permute_for_rope_pairs(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder the rows of a query or key projection (``(n_heads * head_dim, hidden)``) from transformers'
    rotary layout to llama.cpp's.

    transformers rotates dimension ``j`` of a head with dimension ``j + head_dim/2`` (the two halves);
    llama.cpp rotates ``2j`` with ``2j + 1`` (adjacent pairs). Within each head the rows
    ``[0, 1, ..., h/2-1, h/2, ..., h-1]`` become ``[0, h/2, 1, h/2+1, ...]``. The attention scores are
    unchanged, as queries and keys are permuted alike. ``n_heads``: query heads for ``q_proj``,
    key/value heads for ``k_proj``.
    """
    from . import validate

    validate.tensor(weight, "weight", ndim=2, floating=True)
    validate.positive_int(n_heads, "n_heads")
    rows, cols = weight.shape
    if rows % (2 * n_heads):
        raise ValueError(f"weight has {rows} rows, not a multiple of 2 * n_heads = {2 * n_heads}")
    head_dim = rows // n_heads
    return weight.reshape(n_heads, 2, head_dim // 2, cols).transpose(1, 2).reshape(rows, cols)


def _is_quantized(model) -> bool:
    """Does ``model`` hold bitsandbytes 4- or 8-bit layers (weights that are not plain floats)?"""
    return any(type(m).__module__.split(".")[0] == "bitsandbytes" for m in model.modules()) or any(
        type(p).__module__.split(".")[0] == "bitsandbytes" for p in model.parameters()
    )


def _check_exportable(model) -> None:
    """``ValueError``/``TypeError`` saying what to do for a model :func:`export_gguf` cannot write."""
    try:
        from peft import PeftModel

        if isinstance(model, PeftModel):
            raise ValueError(
                "model still has its adapter as separate LoRA layers (a PeftModel): merge it first, e.g. "
                "merge_adapter_16bit on a 16-bit base, or model.merge_and_unload() on a 16-bit PeftModel"
            )
    except ImportError:
        pass
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
        raise TypeError(f"model_or_dir must be a transformers model or a model folder, got {type(model).__name__}")
    config = model.config
    if getattr(config, "model_type", None) != "llama":
        raise ValueError(
            f"export_gguf writes Llama models only; this one is {getattr(config, 'model_type', None)!r} "
            "(llama.cpp's convert_hf_to_gguf.py handles other architectures)"
        )
    if _is_quantized(model):
        raise ValueError(
            "model is quantized with bitsandbytes (4-bit NF4 or 8-bit): its weights are packed codes, not "
            "numbers GGUF can store. Load the base in 16 bits (or dequantize it) and merge the adapter there "
            "(lesson 5's merge_adapter_16bit), then export the merged model"
        )
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"rope scaling {rope.get('rope_type')!r} is not written by export_gguf (plain RoPE only)")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise ValueError("a Llama with biases (attention_bias or mlp_bias) is not written by export_gguf")


def _byte_level_gpt2(step: dict) -> bool:
    return step.get("type") == "ByteLevel" and step.get("use_regex", True) and not step.get("add_prefix_space", False)


def _pre_tokenizer_name(pre: dict) -> str | None:
    """llama.cpp's name (``tokenizer.ggml.pre``) for the split a byte-level BPE tokenizer makes before its
    merges, or ``None`` if it is not one GGUF can name: ``"gpt-2"`` for GPT-2's split alone (the
    ByteLevel pre-tokenizer with its regex), ``"smollm"`` for digits split one by one first, then GPT-2's
    split (SmolLM, SmolLM2). llama.cpp's converter recognises the same two by the ids they give a test
    text; the course reads the tokenizer's own description instead."""
    if _byte_level_gpt2(pre):
        return "gpt-2"
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    if (
        len(steps) == 2
        and steps[0].get("type") == "Digits"
        and steps[0].get("individual_digits")
        and _byte_level_gpt2(steps[1])
    ):
        return "smollm"
    return None


def _tokenizer_metadata(tokenizer, n_rows: int) -> dict:
    """The ``tokenizer.ggml.*`` values of a byte-level BPE tokenizer (the GPT-2 / Llama 3 kind):
    ``tokens`` (in byte-level spelling, by id), ``token_types``, ``merges`` (``"a b"``), the special ids
    and whether BOS/EOS are added. ``n_rows``: the embedding rows; the vocabulary is padded to it with
    unused ``[PAD{id}]`` tokens, as llama.cpp's converter does.

    Raises ``ValueError`` for a tokenizer GGUF's ``gpt2`` model cannot describe exactly.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TypeError(f"tokenizer must be a fast (tokenizers-backed) tokenizer, got {type(tokenizer).__name__}")
    spec = json.loads(backend.to_str())
    model = spec["model"]
    pre_name = _pre_tokenizer_name(spec.get("pre_tokenizer") or {})
    exact = (
        model.get("type") == "BPE"
        and spec.get("normalizer") is None
        and pre_name is not None
        and (spec.get("decoder") or {}).get("type") == "ByteLevel"
    )
    if not exact:
        pre = spec.get("pre_tokenizer") or {}
        steps = [p.get("type") for p in pre.get("pretokenizers", [])] if pre.get("type") == "Sequence" else []
        raise ValueError(
            "tokenizer is not a byte-level BPE GGUF can name (model BPE, no normalizer, and a ByteLevel "
            "pre-tokenizer with the GPT-2 split, alone or after splitting digits one by one): found model "
            f"{model.get('type')!r}, pre-tokenizer {pre.get('type')!r}{f' {steps}' if steps else ''}, normalizer "
            f"{(spec.get('normalizer') or {}).get('type')!r}. Pass tokenizer=None to write the weights only, and "
            "load the tokenizer from the original model folder"
        )
    vocab = tokenizer.get_vocab()  # model vocabulary plus added tokens
    if len(vocab) > n_rows:
        raise ValueError(f"tokenizer has {len(vocab)} tokens but the embedding only {n_rows} rows: resize the model")
    by_id = {i: t for t, i in vocab.items()}
    added = {t["id"]: t for t in spec.get("added_tokens", [])}
    tokens, types = [], []
    for i in range(n_rows):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(5)  # UNUSED
        elif i in added:
            tokens.append(by_id[i])
            types.append(3 if added[i]["special"] else 4)  # CONTROL, USER_DEFINED
        else:
            tokens.append(by_id[i])
            types.append(1)  # NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    with_specials = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    extra = len(with_specials) - len(plain)
    add_bos = tokenizer.bos_token_id is not None and with_specials[:1] == [tokenizer.bos_token_id] and extra > 0
    add_eos = tokenizer.eos_token_id is not None and with_specials[-1:] == [tokenizer.eos_token_id] and extra > 0
    if extra != int(add_bos) + int(add_eos):
        raise ValueError(
            f"tokenizer adds special tokens other than BOS first and EOS last ({with_specials} for 'a'), which "
            "GGUF cannot describe: pass tokenizer=None and load the tokenizer from the original model folder"
        )
    return {
        "pre": pre_name,
        "tokens": tokens,
        "token_types": types,
        "merges": merges,
        "bos": tokenizer.bos_token_id,
        "eos": tokenizer.eos_token_id,
        "pad": tokenizer.pad_token_id,
        "unk": tokenizer.unk_token_id,
        "add_bos": add_bos,
        "add_eos": add_eos,
    }


def _gguf_array(name: str, weight: torch.Tensor, dtype: str, config):
    """``(numpy array, raw ggml type or None)`` for one parameter, in the layout llama.cpp expects."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    w = weight.detach().to("cpu", torch.float32)
    if name.endswith("self_attn.q_proj.weight"):
        w = permute_for_rope_pairs(w, config.num_attention_heads)
    elif name.endswith("self_attn.k_proj.weight"):
        w = permute_for_rope_pairs(w, config.num_key_value_heads)
    if not torch.isfinite(w).all():
        raise ValueError(f"parameter {name!r} holds inf or nan: the model is broken, nothing to export")
    a = w.numpy()
    if a.ndim == 1 or dtype == "f32":
        return a, None
    if dtype == "f16" or a.shape[-1] % 32:  # Q8_0 needs rows in whole blocks of 32; llama.cpp falls back to F16
        if np.abs(a).max() > np.finfo(np.float16).max:
            raise ValueError(f"parameter {name!r} has entries beyond float16's range (65504): use dtype='f32'")
        return a.astype(np.float16), None
    return quantize(a, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0


def _load_for_export(model_or_dir):
    """A model from a folder (``config.json`` checked first, then loaded on the CPU in its saved dtype), or
    ``model_or_dir`` itself."""
    if isinstance(model_or_dir, str | os.PathLike):
        from transformers import AutoConfig, AutoModelForCausalLM

        folder = Path(model_or_dir)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"model_or_dir {str(folder)!r} is not a model folder (no config.json)")
        config = AutoConfig.from_pretrained(folder)
        if config.model_type != "llama":
            raise ValueError(f"export_gguf writes Llama models only; {str(folder)!r} holds a {config.model_type!r}")
        return AutoModelForCausalLM.from_pretrained(folder, dtype="auto", device_map={"": "cpu"})
    return model_or_dir


def export_gguf(model_or_dir, tokenizer, path: str | Path, dtype: str = "f16", name: str | None = None) -> Path:
    """Write a merged Llama (a ``LlamaForCausalLM`` or a folder holding one) as the GGUF file ``path``.

    - ``dtype``: ``"f32"``, ``"f16"`` or ``"q8_0"`` (see :data:`GGUF_DTYPES`); the norm vectors stay float32.
    - ``tokenizer``: a byte-level BPE fast tokenizer, written as ``tokenizer.ggml.*`` metadata (model
      ``gpt2``, pre-tokenizer ``gpt-2`` or ``smollm``, see :func:`_pre_tokenizer_name`) with its chat
      template, or ``None`` to write the weights only (llama.cpp then cannot run the file; transformers
      can, with the tokenizer loaded from the original folder).
    - Tied input/output embeddings: no ``output.weight`` is written; readers tie it back.

    Metadata: ``llama.*`` hyperparameters (the keys llama.cpp's converter writes), ``general.name``
    (``name``, default the model folder's name) and ``general.file_type``. The file is written to a
    temporary name in ``path``'s folder and renamed into place when complete, so an error leaves no
    partial file. Returns ``path``.
    """
    import gguf

    if dtype not in GGUF_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(GGUF_DTYPES)}, got {dtype!r}")
    path = Path(path)
    if path.suffix != ".gguf":
        raise ValueError(f"path must end in .gguf (readers look for it), got {str(path)!r}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder of path, {str(path.parent)!r}, does not exist")
    model = _load_for_export(model_or_dir)
    _check_exportable(model)
    config = model.config
    n_rows = model.get_input_embeddings().num_embeddings
    vocab = _tokenizer_metadata(tokenizer, n_rows) if tokenizer is not None else None
    tied = bool(getattr(config, "tie_word_embeddings", False))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    name = name or Path(str(getattr(config, "name_or_path", "") or "model")).name or "model"

    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp_name, "llama")
        writer.add_name(name)
        writer.add_context_length(config.max_position_embeddings)
        writer.add_embedding_length(config.hidden_size)
        writer.add_block_count(config.num_hidden_layers)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(config.num_attention_heads)
        writer.add_head_count_kv(config.num_key_value_heads)
        writer.add_rope_dimension_count(head_dim)
        writer.add_rope_freq_base(float((config.rope_parameters or {}).get("rope_theta", 10000.0)))
        writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
        writer.add_vocab_size(n_rows)
        file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16}
        writer.add_file_type(file_type.get(dtype, gguf.LlamaFileType.MOSTLY_Q8_0))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        if vocab is not None:
            writer.add_tokenizer_model("gpt2")
            writer.add_tokenizer_pre(vocab["pre"])
            writer.add_token_list(vocab["tokens"])
            writer.add_token_types(vocab["token_types"])
            writer.add_token_merges(vocab["merges"])
            for key, add in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id)):
                if vocab[key] is not None:
                    add(vocab[key])
            if vocab["pad"] is not None:
                writer.add_pad_token_id(vocab["pad"])
            if vocab["unk"] is not None:
                writer.add_unk_token_id(vocab["unk"])
            writer.add_add_bos_token(vocab["add_bos"])
            writer.add_add_eos_token(vocab["add_eos"])
            if isinstance(getattr(tokenizer, "chat_template", None), str):
                writer.add_chat_template(tokenizer.chat_template)  # llama.cpp's --jinja and Ollama read it
        for param_name, weight in model.state_dict().items():
            if tied and param_name == "lm_head.weight":
                continue
            array, raw = _gguf_array(param_name, weight, dtype, config)
            writer.add_tensor(gguf_tensor_name(param_name), array, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------------------------------------------
# 3. Several adapters on one base
# ---------------------------------------------------------------------------------------------------

#: The name PEFT gives "no adapter" in ``adapter_names``: that row runs on the base alone.
BASE_ADAPTER = "__base__"


def load_adapters(base, adapters: Mapping[str, str | Path], check_name: bool = True):
    """A ``PeftModel`` of ``base`` holding every adapter of ``adapters`` (``{name: adapter folder}``) under
    its name, in eval mode; each is checked with :func:`check_adapter_fits` first. The base's weights
    are shared: each further adapter costs only its own A and B matrices. The first adapter is active."""
    if not isinstance(adapters, Mapping) or not adapters:
        raise ValueError("adapters must be a non-empty mapping {name: adapter folder}")
    for adapter_name in adapters:
        if not isinstance(adapter_name, str) or not adapter_name or adapter_name == BASE_ADAPTER:
            raise ValueError(
                f"adapter names must be non-empty strings other than {BASE_ADAPTER!r}, got {adapter_name!r}"
            )
    items = list(adapters.items())
    model = load_adapter_onto(base, items[0][1], adapter_name=items[0][0], check_name=check_name)
    for adapter_name, folder in items[1:]:
        check_adapter_fits(model.get_base_model(), folder, check_name=check_name)
        model.load_adapter(str(folder), adapter_name=adapter_name)
    model.set_adapter(items[0][0])
    return model.eval()


def _check_adapter_names(model, names: Sequence[str], allow_base: bool) -> None:
    """``ValueError`` listing the adapters ``model`` has, if one of ``names`` is not among them."""
    known = set(getattr(model, "peft_config", {}) or {})
    if not known:
        raise TypeError(f"model must be a PeftModel with adapters, got {type(model).__name__}")
    allowed = known | ({BASE_ADAPTER} if allow_base else set())
    unknown = sorted({str(n) for n in names} - allowed)
    if unknown:
        raise ValueError(
            f"unknown adapter name(s) {unknown}: the model has {sorted(known)}"
            + (f" (and {BASE_ADAPTER!r} for the base alone)" if allow_base else "")
        )


def use_adapter(model, adapter_name: str) -> None:
    """Make ``adapter_name`` the adapter every following request of ``model`` (a ``PeftModel``) uses."""
    _check_adapter_names(model, [adapter_name], allow_base=False)
    model.set_adapter(adapter_name)


def _check_routing(model, batch: int, adapter_names: Sequence[str]) -> list[str]:
    if isinstance(adapter_names, str) or not isinstance(adapter_names, Sequence):
        raise TypeError(f"adapter_names must be a list of names, one per row, got {type(adapter_names).__name__}")
    if len(adapter_names) != batch:
        raise ValueError(f"adapter_names has {len(adapter_names)} names for a batch of {batch} rows: give one per row")
    _check_adapter_names(model, adapter_names, allow_base=True)
    if model.training:
        raise ValueError("model is in training mode; PEFT routes rows per adapter only in eval mode: call model.eval()")
    return list(adapter_names)


@torch.no_grad()
def routed_logits(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, adapter_names: Sequence[str]
) -> torch.Tensor:
    """Logits ``(batch, seq, vocab)`` of one forward pass where row ``i`` of ``input_ids`` (``(batch, seq)``
    int64) goes through adapter ``adapter_names[i]`` (:data:`BASE_ADAPTER` for none). Each LoRA layer
    computes the base output for the whole batch once, then adds ``B A x`` of each adapter on its rows.

    With an ``attention_mask`` (``(batch, seq)``, 1 on tokens, 0 on padding) the positions are counted
    from each row's first token (``cumsum(mask) - 1``), so a left-padded row gets the positions it has
    alone. Without that, left padding shifts a row's positions by its padding; RoPE makes the result the
    same in exact arithmetic, but not in floating point (with bitsandbytes' 4-bit CPU kernel the logits
    then move by up to about 0.03 on the course model).

    bitsandbytes on a CPU with AVX512-BF16: a 4-bit layer's first eval-mode call switches it for good to a
    fused bfloat16 kernel, whose rounding of the activations turns float32-sized differences (a row
    padded or alone, another attention path) into logit differences of up to about 0.02; the float32
    dequantize-then-matmul path (:func:`qlora_course.evaluation.bnb_training_path`, entered before any
    eval call) keeps them near 1e-5.
    """
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be (batch, seq), got shape {tuple(input_ids.shape)}")
    names = _check_routing(model, input_ids.shape[0], adapter_names)
    position_ids = None
    if attention_mask is not None:
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)}, input_ids {tuple(input_ids.shape)}: "
                "they must match"
            )
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    with bnb_training_path(model):  # no lasting switch to bitsandbytes' backward-less CPU kernel
        return model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, adapter_names=names
        ).logits


@torch.no_grad()
def routed_generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    adapter_names: Sequence[str],
    add_special_tokens: bool = True,
    **generate_kwargs,
) -> list[str]:
    """Greedy completions (the new text only) of ``prompts``, prompt ``i`` answered by adapter
    ``adapter_names[i]``, in one batched ``generate``. Prompts are padded on the *left*, so that every
    row's last prompt token is the last column and generation continues right after it.
    ``add_special_tokens=False`` for prompts a chat template rendered (it writes ``<s>`` itself). The 4-bit
    layers stay on bitsandbytes' training path (:func:`qlora_course.evaluation.bnb_training_path`)."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, one per row")
    names = _check_routing(model, len(prompts), adapter_names)
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token: call qlora_course.loading.set_pad_token(tokenizer) first")
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        batch = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=add_special_tokens).to(
            model.device
        )
    finally:
        tokenizer.padding_side = side
    generate_kwargs.setdefault("max_new_tokens", 32)
    generate_kwargs.setdefault("do_sample", False)
    generate_kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
    with torch.no_grad(), bnb_training_path(model):
        out = model.generate(**batch, adapter_names=names, **generate_kwargs)
    return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
