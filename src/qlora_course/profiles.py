"""The profile registry: one place that turns a profile name into a model and a data set.

- ``course-tiny`` (the default): the course's own small Llama (:func:`qlora_course.models.course_model_path`)
  and the generated course task (:func:`qlora_course.data.make_task_data`). Offline, CPU, seconds.
- ``colab-t4``: a ~1B Llama-architecture model from the hub, for a free Colab T4 (float16 compute).
- ``gpu-8b``: an 8B Llama from the hub, for a large GPU (bfloat16 compute).
- ``colab-t4-chat``: lesson 6's chat model, SmolLM2-1.7B-Instruct (Llama architecture, its own ChatML
  template), for a free Colab T4; lesson 6 trains it on the generated conversations.
- Any other hub model id (``"org/name"``) or local model folder also works; it gets the course task
  unless a ``dataset`` is given.

Choose with the argument, or with the environment variable ``QLORA_COURSE_PROFILE``; ``QLORA_COURSE_DATASET``
names another data set (a hub id or a local folder of ``text`` rows in Guanaco's chat format).

This module only names things. Loading them is :mod:`qlora_course.loading` (models, tokenizers, the hub
check) and :func:`qlora_course.data.load_task_data` (data); lesson 5's fine-tuning settings per profile
are :mod:`qlora_course.settings`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from .models import course_model_path

__all__ = [
    "Profile",
    "PROFILES",
    "DEFAULT_PROFILE",
    "COURSE_MODEL",
    "resolve_profile",
    "is_hub_id",
    "HUB_SHAPES",
    "LLAMA_SIZES",
    "hub_config",
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
        return not is_hub_id(self.model) and (self.dataset is None or not is_hub_id(self.dataset))

    def model_path(self) -> str:
        """A path or hub id that ``from_pretrained`` accepts."""
        if self.model == COURSE_MODEL:
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
    "colab-t4-chat": Profile(
        "colab-t4-chat",
        "HuggingFaceTB/SmolLM2-1.7B-Instruct",
        None,
        True,
        "SmolLM2 1.7B Instruct (Llama architecture, Apache-2.0, ungated, a ChatML chat template): lesson 6 "
        "on a free Colab T4, float16 compute",
    ),
}


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
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": dict(
        vocab_size=49152,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=24,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=8192,
        rope_theta=130000.0,
        tie_word_embeddings=True,
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
    # the 70B of "70B on two 24 GB GPUs" (Answer.AI's FSDP-QLoRA, 2024), and today's (its config.json)
    "meta-llama/Llama-2-70b-hf": dict(
        vocab_size=32000,
        hidden_size=8192,
        intermediate_size=28672,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    ),
    # lesson 7's model that does not fit one GPU, even in 4 bits (its config.json; gated on the hub, sized only)
    "meta-llama/Llama-3.1-70B": dict(
        vocab_size=128256,
        hidden_size=8192,
        intermediate_size=28672,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        max_position_embeddings=131072,
        rope_theta=500000.0,
        tie_word_embeddings=False,
    ),
}

# The original LLaMA sizes the QLoRA paper fine-tunes (7B to 65B; "30B" is 33B parameters), from the
# config.json of their hub copies: what lesson 5 sizes against a T4 and a 24 GB GPU. Not profiles.
LLAMA_SIZES = {
    f"huggyllama/llama-{size}": dict(
        vocab_size=32000,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
    )
    for size, hidden, inter, layers, heads in (
        ("7b", 4096, 11008, 32, 32),
        ("13b", 5120, 13824, 40, 40),
        ("30b", 6656, 17920, 60, 52),
        ("65b", 8192, 22016, 80, 64),
    )
}


def hub_config(model: str):
    """A ``LlamaConfig`` of the architecture of ``model``, a key of :data:`HUB_SHAPES` or
    :data:`LLAMA_SIZES`, built without network (no weights)."""
    from transformers import LlamaConfig

    shapes = HUB_SHAPES | LLAMA_SIZES
    if model not in shapes:
        raise ValueError(f"no stored shape for {model!r}; known: {sorted(shapes)}")
    return LlamaConfig(**shapes[model])


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


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")


def is_hub_id(name: str) -> bool:
    """True when ``name`` is a hub id (``org/name`` in the hub's spelling) and not a folder on this machine
    nor the packaged course model."""
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
    elif is_hub_id(name):
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
