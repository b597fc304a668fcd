"""One place that turns a profile name into a model and a data set.

- ``course-tiny`` (the default): the course's own small Llama (:func:`qlora_course.models.course_model_path`)
  and the generated course task (:func:`qlora_course.data.make_task_data`). Offline, CPU, seconds.
- ``colab-t4``: a ~1B Llama-architecture model from the hub, for a free Colab T4 (float16 compute).
- ``gpu-8b``: an 8B Llama from the hub, for a large GPU (bfloat16 compute).
- Any other hub model id (``"org/name"``) or local model folder also works; it gets the course task
  unless a ``dataset`` is given.

Choose with the argument, or with the environment variable ``QLORA_COURSE_PROFILE``; ``QLORA_COURSE_DATASET``
names another data set (a hub id or a local folder of ``text`` rows in Guanaco's chat format), and
``QLORA_COURSE_SETTINGS`` (JSON) overrides fine-tuning settings. A hub model or data set that is neither
cached nor reachable fails at once with a message, not after a long network timeout.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

__all__ = [
    "Profile",
    "PROFILES",
    "HubUnavailableError",
    "resolve_profile",
    "check_hub_access",
    "load_model_and_tokenizer",
    "load_task_data",
    "guanaco_to_prompt_completion",
    "TRAINING",
    "training_settings",
    "set_pad_token",
    "match_vocabulary",
    "HUB_SHAPES",
    "profile_config",
]

DEFAULT_PROFILE = "course-tiny"
COURSE_MODEL = "course-llama"  # stands for the packaged model folder


@dataclass(frozen=True)
class Profile:
    """What a lesson runs on.

    ``model``: a hub id, a local folder, or ``"course-llama"`` (the packaged model). ``dataset``: a hub
    data set id, or ``None`` for the generated course task. ``needs_gpu``: refuse to run without CUDA.
    """

    name: str
    model: str
    dataset: str | None
    needs_gpu: bool
    description: str

    @property
    def offline(self) -> bool:
        """True when nothing in this profile comes from the hub."""
        return not _is_hub_id(self.model) and (self.dataset is None or not _is_hub_id(self.dataset))

    def model_path(self) -> str:
        """A path or hub id that ``from_pretrained`` accepts."""
        if self.model == COURSE_MODEL:
            from .models import course_model_path

            return str(course_model_path())
        return self.model


PROFILES = {
    "course-tiny": Profile(
        "course-tiny",
        COURSE_MODEL,
        None,
        False,
        "the course's own 6M-parameter Llama and generated task data: offline, CPU",
    ),
    "colab-t4": Profile(
        "colab-t4",
        "TinyLlama/TinyLlama_v1.1",
        "timdettmers/openassistant-guanaco",
        True,
        "TinyLlama 1.1B (Llama architecture, Apache-2.0) and the QLoRA paper's OASST1 "
        "subset: a free Colab T4, float16 compute",
    ),
    "gpu-8b": Profile(
        "gpu-8b",
        "unsloth/Meta-Llama-3.1-8B",
        "timdettmers/openassistant-guanaco",
        True,
        "Llama 3.1 8B (an ungated copy of Meta's weights) and the OASST1 subset: a 24 GB+ GPU, bfloat16 compute",
    ),
}


# Fine-tuning settings per profile (lesson 5). The QLoRA paper's released scripts use r=64, alpha=16,
# dropout 0.1 (7B) / 0.05 (13B+), lr 2e-4, constant schedule, warmup ratio 0.03, max_grad_norm 0.3,
# batch 16 (1 x 16 accumulation), paged 32-bit AdamW. The hub profiles keep those; course-tiny keeps the
# schedule and clipping but needs a higher learning rate (a 6M-parameter model, 80 steps on a CPU) and a
# smaller rank (its layers are 256 wide); alpha = 2r keeps the update scale alpha/r at 2.
# ``seeds``: how many seeds the method comparison (lesson 5, section 8) trains live; course-tiny's
# three-seed table comes from tools/compare_methods.py, and the notebook re-trains seed 0 to check it.
# ``gradient_checkpointing``: a course-model step (about 0.3 GB at batch 16) fits any CPU's memory, so
# it trains without (faster); the hub profiles need it to fit.
TRAINING = {
    "course-tiny": dict(
        r=16,
        lora_alpha=32,
        lora_dropout=0.05,
        learning_rate=2e-3,
        full_learning_rate=2e-4,
        max_steps=80,
        batch_size=16,
        grad_accum=1,
        max_length=128,
        eval_limit=200,
        seeds=1,
        gradient_checkpointing=False,
    ),
    "colab-t4": dict(
        r=64,
        lora_alpha=16,
        lora_dropout=0.1,
        learning_rate=2e-4,
        full_learning_rate=2e-5,
        max_steps=100,
        batch_size=4,
        grad_accum=4,
        max_length=512,
        eval_limit=50,
        seeds=1,
        gradient_checkpointing=True,
    ),
    "gpu-8b": dict(
        r=64,
        lora_alpha=16,
        lora_dropout=0.1,
        learning_rate=2e-4,
        full_learning_rate=1e-5,
        max_steps=200,
        batch_size=4,
        grad_accum=4,
        max_length=1024,
        eval_limit=100,
        seeds=1,
        gradient_checkpointing=True,
    ),
}


def training_settings(profile: Profile | str | None = None, overrides: dict | str | None = None) -> dict:
    """Lesson 5's fine-tuning settings for a profile (any other model with chat data, or on a GPU, gets
    ``colab-t4``'s; with the course task, ``course-tiny``'s).

    ``overrides`` (a dict, or JSON text; default ``$QLORA_COURSE_SETTINGS``) replaces some of them, e.g.
    ``{"max_steps": 20, "seeds": 1}`` for a quick run. Unknown names and non-positive sizes raise.
    """
    import json

    profile = profile if isinstance(profile, Profile) else resolve_profile(profile)
    settings = dict(
        TRAINING.get(
            profile.name,
            TRAINING["colab-t4"]
            if profile.needs_gpu or not profile.offline or profile.dataset
            else TRAINING["course-tiny"],
        )
    )
    overrides = os.environ.get("QLORA_COURSE_SETTINGS", "") if overrides is None else overrides
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides) if overrides.strip() else {}
        except json.JSONDecodeError as err:
            raise ValueError(
                f"QLORA_COURSE_SETTINGS must be a JSON object, e.g. '{{\"max_steps\": 20}}': {err}"
            ) from None
    if not isinstance(overrides, dict):
        raise ValueError(f"settings overrides must be a dict, got {type(overrides).__name__}")
    unknown = set(overrides) - set(settings)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(settings)}")
    for key, value in overrides.items():
        if isinstance(settings[key], bool):
            if not isinstance(value, bool):
                raise ValueError(f"setting {key!r} must be true or false, got {value!r}")
            settings[key] = value
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or value < 0
            or (value == 0 and key != "lora_dropout")
        ):
            raise ValueError(f"setting {key!r} must be a positive number, got {value!r}")
        if isinstance(settings[key], int) and not float(value).is_integer():
            raise ValueError(f"setting {key!r} must be a whole number, got {value!r}")
        settings[key] = type(settings[key])(value)
    return settings


# The architectures of the hub profiles' models, from their published config.json, so that the memory
# estimator can size them on a machine that cannot download them.
HUB_SHAPES = {
    "TinyLlama/TinyLlama_v1.1": dict(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
    ),
    "unsloth/Meta-Llama-3.1-8B": dict(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=131072,
        rope_theta=500000.0,
        tie_word_embeddings=False,
    ),
}


def profile_config(profile: Profile | str | None = None):
    """The ``LlamaConfig`` of a profile's model: read from its folder or the local cache, else (a hub
    profile on a machine without network) built from :data:`HUB_SHAPES`."""
    from transformers import AutoConfig, LlamaConfig

    profile = profile if isinstance(profile, Profile) else resolve_profile(profile)
    try:
        return AutoConfig.from_pretrained(profile.model_path(), local_files_only=True)
    except OSError:
        if profile.model in HUB_SHAPES:
            return LlamaConfig(**HUB_SHAPES[profile.model])
        raise


class HubUnavailableError(RuntimeError):
    """A hub model or data set was asked for, but it is not cached and the hub cannot be reached."""


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")


def _is_hub_id(name: str) -> bool:
    """``org/name`` in the hub's spelling, and not a folder on this machine."""
    return (
        name != COURSE_MODEL
        and not Path(name).expanduser().exists()
        and _HUB_ID.fullmatch(name) is not None
        and ".." not in name
        and not name.endswith((".", "-"))
    )


def resolve_profile(name: str | None = None, dataset: str | None = None) -> Profile:
    """The :class:`Profile` for a profile name, a hub model id or a local model folder.

    ``name`` defaults to ``$QLORA_COURSE_PROFILE``, else ``"course-tiny"``. ``dataset`` (default
    ``$QLORA_COURSE_DATASET``) overrides the profile's data set: a hub id, a local data set folder, or
    ``"course"`` for the generated course task.
    """
    name = name or os.environ.get("QLORA_COURSE_PROFILE") or DEFAULT_PROFILE
    dataset = dataset or os.environ.get("QLORA_COURSE_DATASET") or None
    if name in PROFILES:
        profile = PROFILES[name]
    elif Path(name).expanduser().is_dir():
        if not (Path(name).expanduser() / "config.json").exists():
            raise ValueError(f"{name!r} is a folder but has no config.json, so it is not a saved model")
        profile = Profile(name, str(Path(name).expanduser()), None, False, f"local model {name}")
    elif _is_hub_id(name):
        profile = Profile(name, name, None, False, f"hub model {name} with the course task")
    elif name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or "\\" in name:
        raise ValueError(
            f"profile {name!r} looks like a folder, but there is no such folder on this machine; "
            f"use one of {sorted(PROFILES)}, a hub model id like 'TinyLlama/TinyLlama_v1.1', "
            "or the path of a saved model"
        )
    else:
        raise ValueError(
            f"unknown profile {name!r}: use one of {sorted(PROFILES)}, a hub model id like "
            "'TinyLlama/TinyLlama_v1.1' (organisation/name: letters, digits, '-', '_', '.'), "
            "or a local model folder"
        )
    if dataset is not None:
        profile = replace(profile, dataset=None if dataset == "course" else dataset)
    return profile


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
    import torch

    if profile.needs_gpu and not torch.cuda.is_available():
        raise RuntimeError(
            f"Profile {profile.name!r} needs a CUDA GPU and this machine has none. In Colab choose "
            f"Runtime > Change runtime type > T4 GPU; on a CPU use the default profile '{DEFAULT_PROFILE}'."
        )


def load_model_and_tokenizer(
    profile: Profile | str | None = None, quantization: str | None = None, compute_dtype=None, device_map=None, **kwargs
):
    """``(model, tokenizer)`` through plain ``from_pretrained``.

    ``quantization=None`` loads in ``compute_dtype`` (default: the saved dtype); ``"nf4"`` loads 4-bit
    NF4 with double quantization (the QLoRA recipe) computing in ``compute_dtype`` (default float32 on
    CPU, bfloat16 or float16 on a GPU). ``device_map`` defaults to ``{"": "cuda:0"}`` with a GPU, else
    ``{"": "cpu"}``. Extra ``kwargs`` go to ``AutoModelForCausalLM.from_pretrained``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    profile = profile if isinstance(profile, Profile) else resolve_profile(profile)
    _check_gpu(profile)
    if _is_hub_id(profile.model):
        check_hub_access(profile.model)
    if quantization not in (None, "nf4"):
        raise ValueError(f"quantization must be None or 'nf4', got {quantization!r}")
    cuda = torch.cuda.is_available()
    device_map = device_map or {"": "cuda:0" if cuda else "cpu"}
    if quantization == "nf4":
        from .methods import nf4_config
        from .models import pick_device_and_dtype

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


def guanaco_to_prompt_completion(text: str) -> dict:
    """Split an OASST1-Guanaco conversation (``### Human: ... ### Assistant: ...``) at its last
    assistant turn: everything up to and including ``### Assistant:`` is the prompt."""
    cue = "### Assistant:"
    i = text.rfind(cue)
    if i < 0:
        raise ValueError("not a Guanaco conversation: no '### Assistant:' turn")
    return {"prompt": text[: i + len(cue)], "completion": " " + text[i + len(cue) :].strip()}


def load_task_data(profile: Profile | str | None = None, seed: int = 0, **sizes):
    """The profile's data as a ``DatasetDict`` with ``train``, ``validation``, ``test`` and columns
    ``prompt`` and ``completion``. The course task is generated (``sizes`` go to
    :func:`qlora_course.data.make_task_data`); a hub data set is downloaded, converted and split."""
    profile = profile if isinstance(profile, Profile) else resolve_profile(profile)
    if profile.dataset is None:
        from .data import make_task_data

        return make_task_data(seed=seed, **sizes)
    if _is_hub_id(profile.dataset):
        check_hub_access(profile.dataset, repo_type="dataset")
    elif not Path(profile.dataset).expanduser().exists():
        raise ValueError(f"data set {profile.dataset!r} is neither a local folder nor a hub id ('org/name')")
    from datasets import DatasetDict, load_dataset

    raw = load_dataset(str(Path(profile.dataset).expanduser()) if not _is_hub_id(profile.dataset) else profile.dataset)
    if "text" not in raw["train"].column_names:
        raise ValueError(f"{profile.dataset!r}: expected a 'text' column of Guanaco conversations")
    conv = raw.map(lambda row: guanaco_to_prompt_completion(row["text"]), remove_columns=raw["train"].column_names)
    split = conv["train"].train_test_split(test_size=0.05, seed=seed)
    test = conv["test"] if "test" in conv else split["test"]
    return DatasetDict(train=split["train"], validation=split["test"], test=test)
