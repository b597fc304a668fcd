"""Everything that loads a model: the hub check, the 4-bit config, models with their tokenizer.

- :func:`check_hub_access` answers in seconds whether a hub model or data set can be loaded (cached, or
  the hub reachable), and raises :class:`HubUnavailableError` saying what to do instead, rather than
  letting ``from_pretrained`` wait for a network timeout; :func:`check_profile` adds the GPU a hub
  profile needs;
- :func:`nf4_config` is the QLoRA paper's ``BitsAndBytesConfig`` (4-bit NF4, double quantization);
- :func:`load_model_and_tokenizer` loads a profile's model and tokenizer through plain ``from_pretrained``;
  :func:`load_base` loads a fresh base for one of lesson 5's methods (4-bit for QLoRA);
- :func:`set_pad_token` gives a tokenizer a pad token distinct from EOS without growing its vocabulary,
  and :func:`match_vocabulary` keeps every model loaded for it in step.

The data a profile trains on is loaded by :func:`qlora_course.data.load_task_data`.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import torch

from .finetune import training_precision
from .models import pick_device_and_dtype
from .profiles import DEFAULT_PROFILE, Profile, is_hub_id, resolve_profile

__all__ = [
    "HubUnavailableError",
    "check_hub_access",
    "check_profile",
    "nf4_config",
    "load_model_and_tokenizer",
    "load_base",
    "set_pad_token",
    "match_vocabulary",
]


class HubUnavailableError(RuntimeError):
    """A hub model or data set was asked for, but it is not cached and the hub cannot be reached."""


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Can a TCP connection to the hub endpoint (``$HF_ENDPOINT``, default huggingface.co) be opened?"""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_mode() -> bool:
    """True when ``$HF_HUB_OFFLINE`` forbids downloads."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def check_hub_access(repo_id: str, repo_type: str = "model") -> None:
    """Return if ``repo_id`` can be loaded (cached, or the hub is reachable); else raise
    :class:`HubUnavailableError` with what to do instead. Takes at most a few seconds."""
    from huggingface_hub import try_to_load_from_cache

    marker = "config.json" if repo_type == "model" else "README.md"
    cached = isinstance(try_to_load_from_cache(repo_id, marker, repo_type=repo_type), str)
    if cached:
        return
    why = "HF_HUB_OFFLINE is set" if _offline_mode() else None
    if why is None and not _hub_reachable():
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        why = f"{endpoint} cannot be reached from this machine"
    if why:
        raise HubUnavailableError(
            f"The {repo_type} {repo_id!r} is not in the local Hugging Face cache and {why}. "
            f"Use the offline default instead: resolve_profile('{DEFAULT_PROFILE}') (or unset "
            f"QLORA_COURSE_PROFILE), which loads the course's own Llama and generated data from the "
            f"installed package. To use {repo_id!r}, run once on a machine with internet access "
            f"(e.g. Colab) so that it is downloaded and cached."
        )


def _check_gpu(profile: Profile) -> None:
    """Raise ``RuntimeError`` saying what to do when ``profile`` needs a CUDA GPU and there is none."""
    if profile.needs_gpu and not torch.cuda.is_available():
        raise RuntimeError(
            f"Profile {profile.name!r} needs a CUDA GPU and this machine has none. In Colab choose "
            f"Runtime > Change runtime type > T4 GPU; on a CPU use the default profile '{DEFAULT_PROFILE}'."
        )


def check_profile(profile: Profile | str | None = None) -> Profile:
    """Return the :class:`Profile` if this machine can run it; else raise at once, saying what to do: a
    ``RuntimeError`` when it needs a CUDA GPU and there is none, :class:`HubUnavailableError` when its
    model is a hub id that is neither cached nor reachable. A local folder or the course model passes."""
    profile = profile if isinstance(profile, Profile) else resolve_profile(profile)
    _check_gpu(profile)
    if is_hub_id(profile.model):
        check_hub_access(profile.model)
    return profile


def load_model_and_tokenizer(
    profile: Profile | str | None = None, quantization: str | None = None, compute_dtype=None, device_map=None, **kwargs
):
    """``(model, tokenizer)`` through plain ``from_pretrained``.

    ``quantization=None`` loads in ``compute_dtype`` (default: the saved dtype); ``"nf4"`` loads 4-bit
    NF4 with double quantization (the QLoRA recipe) computing in ``compute_dtype`` (default float32 on
    CPU, bfloat16 or float16 on a GPU). ``device_map`` defaults to ``{"": "cuda:0"}`` with a GPU, else
    ``{"": "cpu"}``. Extra ``kwargs`` go to ``AutoModelForCausalLM.from_pretrained``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    profile = check_profile(profile)
    if quantization not in (None, "nf4"):
        raise ValueError(f"quantization must be None or 'nf4', got {quantization!r}")
    cuda = torch.cuda.is_available()
    device_map = device_map or {"": "cuda:0" if cuda else "cpu"}
    if quantization == "nf4":
        compute_dtype = compute_dtype or pick_device_and_dtype()[1]
        kwargs["quantization_config"] = nf4_config(compute_dtype)
        kwargs.setdefault("dtype", compute_dtype)
    elif compute_dtype is not None:
        kwargs["dtype"] = compute_dtype
    path = profile.model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    set_pad_token(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(path, device_map=device_map, **kwargs)
    return match_vocabulary(model, tokenizer), tokenizer


# Tokens that hub Llamas reserve and never use in text, in the order a pad token is taken from them.
_PAD_CANDIDATES = ("<pad>", "[PAD]", "<|pad|>", "<|finetune_right_pad_id|>", "<|finetune_right_pad|>")


def set_pad_token(tokenizer) -> str:
    """Give ``tokenizer`` a pad token distinct from EOS *without growing its vocabulary*, and say which.

    Many hub Llamas ship without one. Adding a new ``<pad>`` token would make the vocabulary larger than
    the model's embedding matrix: every model loaded for that tokenizer must then be resized, and a saved
    adapter carries the resized embeddings. So an existing token is reused, in this order: the pad
    token it has (if not EOS); a token reserved for padding (``<|finetune_right_pad_id|>`` in Llama 3.1);
    the unknown token (Llama 2, TinyLlama); another reserved special token (``<|reserved_special_token_0|>``
    in Llama 3). Only a tokenizer with none of these gets a new ``<pad>`` token; then
    :func:`match_vocabulary` must be applied to every model loaded for it.
    """
    eos = tokenizer.eos_token_id
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != eos:
        return f"its own pad token {tokenizer.pad_token!r}"
    vocab = tokenizer.get_vocab()
    candidates = [t for t in _PAD_CANDIDATES if t in vocab]
    if tokenizer.unk_token is not None and tokenizer.unk_token_id is not None:
        candidates.append(tokenizer.unk_token)
    candidates += sorted((t for t in vocab if t.startswith("<|reserved_special_token_")), key=lambda t: vocab[t])
    for token in candidates:
        if vocab.get(token) not in (None, eos, tokenizer.bos_token_id):
            tokenizer.pad_token = token
            return f"the existing token {token!r} (id {vocab[token]}), reused for padding: no new embedding row"
    tokenizer.add_special_tokens({"pad_token": "<pad>"})
    return "a new token '<pad>': the vocabulary grew by one, so every model must be resized (match_vocabulary)"


def match_vocabulary(model, tokenizer):
    """Resize ``model``'s embeddings if ``tokenizer`` has more tokens than it has rows, and set the pad id
    that ``generate`` uses. Returns ``model``. Call it on *every* model loaded for the tokenizer."""
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token: call set_pad_token(tokenizer) first")
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def nf4_config(compute_dtype):
    """The QLoRA paper's ``BitsAndBytesConfig``: 4-bit NF4, double quantization, ``compute_dtype``."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def load_base(model_path: str, tokenizer, method: str, compute_dtype, device_map, quantization_config=None):
    """A fresh base model for ``method``: 4-bit NF4 (``"qlora"``) or in the dtype
    :func:`qlora_course.finetune.training_precision` gives; resized to ``tokenizer`` if needed."""
    from transformers import AutoModelForCausalLM

    precision = training_precision(method, compute_dtype)
    if method == "qlora":
        quantization_config = quantization_config or nf4_config(compute_dtype)
    else:
        quantization_config = None
    model = AutoModelForCausalLM.from_pretrained(
        model_path, quantization_config=quantization_config, dtype=precision["load_dtype"], device_map=device_map
    )
    return match_vocabulary(model, tokenizer)
