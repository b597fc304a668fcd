"""The course's own small Llama: where it lives, how it is built, and what its weights look like.

The model is a plain ``LlamaForCausalLM`` pretrained by ``tools/pretrain_course_model.py`` on the
corpus of :mod:`qlora_course.data`. Its weights (bfloat16 safetensors), tokenizer and model card ship
inside this package, so ``AutoModelForCausalLM.from_pretrained(course_model_path())`` works offline and
in Colab after ``pip install``, through exactly the calls a hub model uses.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "COURSE_MODEL_DIR",
    "course_model_path",
    "course_model_config",
    "build_tokenizer",
    "weight_normality",
    "weight_normality_report",
    "checkpoint_files",
    "checkpoint_bytes",
    "pick_device_and_dtype",
]

COURSE_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "course-llama"

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}


def course_model_path() -> Path:
    """The folder with ``config.json``, ``model.safetensors``, the tokenizer files and ``README.md``."""
    if not (COURSE_MODEL_DIR / "model.safetensors").exists():
        raise FileNotFoundError(
            f"The course model is missing from {COURSE_MODEL_DIR}. Reinstall the package "
            "(pip install qlora-course) or re-train it with `python tools/pretrain_course_model.py`."
        )
    return COURSE_MODEL_DIR


def course_model_config(vocab_size: int, **overrides):
    """The course Llama's architecture: 8 layers, hidden 256, 8 query heads sharing 4 key/value heads.

    The proportions follow Llama: SwiGLU MLP of width about 8/3 of the hidden size, RMSNorm, rotary
    position embeddings, grouped-query attention (as in Llama 3), untied input and output embeddings.
    Every linear layer's output size is a multiple of 32: bitsandbytes' CPU inference path (on CPUs
    with AVX512-BF16) repacks 4-bit weights in blocks of 32 output rows and refuses other sizes.
    """
    from transformers import LlamaConfig

    kw = dict(
        vocab_size=vocab_size,
        hidden_size=256,
        intermediate_size=704,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )
    kw.update(overrides)
    return LlamaConfig(**kw)


def build_tokenizer(texts, vocab_size: int = 1024):
    """Train a byte-level BPE tokenizer (the GPT-2 / Llama 3 kind) on ``texts``.

    Ids 0, 1, 2 are ``<s>`` (prepended to every encoded text, as Llama does), ``</s>`` (end of
    sequence) and ``<pad>``: padding gets its own token, distinct from EOS, so that a fine-tune that
    masks padding never masks the EOS it must learn to emit. Byte-level means any string encodes.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS.values())
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **SPECIAL_TOKENS)


def weight_normality(w: torch.Tensor) -> dict:
    """How close the entries of ``w`` (any shape) are to a normal distribution.

    Returns the standard deviation, the excess kurtosis (0 for a normal; large and positive when a few
    entries are far out), the largest ``|w - mean| / std``, the share of entries beyond 4 standard
    deviations (6.3e-5 for a normal), and the Kolmogorov-Smirnov distance between the standardised
    entries and N(0, 1) (the largest gap between the two cumulative distributions, 0 to 1).
    """
    from . import validate

    validate.tensor(w, "w", floating=True)
    x = w.detach().double().flatten()
    if x.numel() < 2 or not torch.isfinite(x).all():
        raise ValueError("weight_normality needs at least 2 finite values")
    if x.std() == 0:
        raise ValueError("w is constant (every entry equal, e.g. a fresh LoRA B): its normality is undefined")
    z = (x - x.mean()) / x.std()
    zs = z.sort().values
    n = zs.numel()
    cdf = 0.5 * (1 + torch.erf(zs / math.sqrt(2)))
    i = torch.arange(1, n + 1, dtype=torch.float64)
    ks = torch.maximum(i / n - cdf, cdf - (i - 1) / n).max()
    return {
        "std": x.std().item(),
        "excess_kurtosis": (z**4).mean().item() - 3.0,
        "max_abs_z": z.abs().max().item(),
        "share_beyond_4std": (z.abs() > 4).double().mean().item(),
        "ks_distance": ks.item(),
    }


def weight_normality_report(model: nn.Module) -> list[dict]:
    """:func:`weight_normality` of the weight of every ``nn.Linear`` in ``model`` (what NF4 quantizes).
    Constant weights (a fresh LoRA ``B`` is all zeros) have no normality and are left out."""
    from . import validate

    validate.module(model, "model")
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.weight.numel() > 1 and bool(module.weight.std() > 0):
            rows.append({"layer": name, "shape": tuple(module.weight.shape), **weight_normality(module.weight)})
    if not rows:
        raise ValueError("the model has no nn.Linear layers")
    return rows


def _checkpoint_folder(model: str | Path) -> Path:
    folder = Path(model).expanduser()
    if folder.is_dir():
        return folder
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(str(model), "config.json")
    if not isinstance(config, str):
        raise FileNotFoundError(
            f"{model!r} is neither a local folder nor a model in the Hugging Face cache "
            "(load it once with from_pretrained)"
        )
    return Path(config).parent


def checkpoint_files(model: str | Path) -> list[Path]:
    """The weight files of a saved model: a local folder, or a hub id already in the local cache.

    Checkpoints come in two formats: ``*.safetensors`` (most today) and ``pytorch_model*.bin`` (older
    ones, pickled). Safetensors files are returned when there are any, else the ``.bin`` shards; other
    ``.bin`` files (``training_args.bin``) and sub-folders (Meta's ``original/``) are not weights of this
    checkpoint. Raises when the folder has neither.
    """
    folder = _checkpoint_folder(model)
    safetensors = sorted(f for f in folder.glob("*.safetensors") if not f.name.startswith("adapter_"))
    if safetensors:
        return safetensors
    bins = sorted(f for f in folder.glob("*.bin") if f.name.startswith(("pytorch_model", "model")))
    if bins:
        return bins
    raise FileNotFoundError(
        f"no weight files (*.safetensors or pytorch_model*.bin) in {folder}: "
        f"it holds {sorted(f.name for f in folder.iterdir())}"
    )


def checkpoint_bytes(model: str | Path) -> int:
    """Bytes on disk of a saved model's weights (see :func:`checkpoint_files`); links are followed, as the
    Hugging Face cache links snapshot files to blobs."""
    return sum(f.stat().st_size for f in checkpoint_files(model))


def pick_device_and_dtype() -> tuple[str, torch.dtype]:
    """``("cuda", bfloat16)`` on Ampere or newer, ``("cuda", float16)`` on a T4, else ``("cpu", float32)``.

    ``is_bf16_supported(including_emulation=False)`` is used because a T4 emulates bfloat16 slowly and
    the plain call answers True there.
    """
    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        return "cuda", torch.bfloat16 if bf16 else torch.float16
    return "cpu", torch.float32
