"""QLoRA, LoRA, full fine-tuning and QDoRA, each run the same way with TRL (lesson 5, section 8).

Lesson 5 builds the QLoRA run step by step. Comparing it with the other methods means repeating that
recipe with one thing changed at a time, for several seeds, which is what this module does:

- :func:`training_args` builds the ``SFTConfig`` every run shares (paged 32-bit AdamW, constant schedule
  after a 3 % warmup, clipping at 0.3, completion-only loss), with the mixed precision that
  :func:`qlora_course.finetune.training_precision` chooses and checkpointing under the name the
  installed transformers uses;
- :func:`load_base` loads the base for a method: 4-bit NF4 with double quantization, or 16/32-bit;
- :func:`estimate_method` asks lesson 4's estimator how much memory a run needs, so that a run that
  cannot fit the device is skipped with the reason instead of crashing;
- :func:`run_method` builds, trains and evaluates one method for one seed and frees what it loaded.

Every run keeps its adapters in float32 (:func:`qlora_course.finetune.cast_trainable`): TRL would make a
quantized model's adapters bfloat16 and a 16-bit model's float32, which would mix a second difference
into the QLoRA-versus-LoRA comparison.
"""

from __future__ import annotations

import dataclasses
import gc
import time
import warnings

import torch

__all__ = [
    "METHODS",
    "checkpointing_args",
    "enable_checkpointing",
    "training_args",
    "nf4_config",
    "load_base",
    "estimate_method",
    "evaluate_task",
    "run_method",
    "release_memory",
]

# name -> (memory-estimator method, DoRA?)
METHODS = {
    "QLoRA": ("qlora", False),
    "LoRA": ("lora", False),
    "full fine-tuning": ("full", False),
    "QDoRA": ("qlora", True),
}


def _method(name: str) -> tuple[str, bool]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {list(METHODS)}")
    return METHODS[name]


def checkpointing_args(on: bool, args_class=None) -> dict:
    """Keyword arguments that turn activation (gradient) checkpointing ``on`` or off in a trainer config.

    transformers 5.23 renamed ``gradient_checkpointing(_kwargs)`` to ``activation_checkpointing(_kwargs)``
    and deprecated the old names; older releases (Colab's) know only the old ones. The names of
    ``args_class`` (default TRL's ``SFTConfig``) decide.
    """
    if args_class is None:
        from trl import SFTConfig as args_class
    names = {f.name for f in dataclasses.fields(args_class)}
    prefix = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {prefix: bool(on), f"{prefix}_kwargs": {"use_reentrant": False} if on else None}


def enable_checkpointing(model) -> None:
    """Turn on non-reentrant activation checkpointing under whichever name ``model`` has."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def training_args(
    settings: dict,
    output_dir: str,
    method: str,
    compute_dtype,
    device: str,
    *,
    seed: int = 0,
    steps: int | None = None,
    learning_rate: float | None = None,
    gradient_checkpointing=None,
    **overrides,
):
    """The ``SFTConfig`` of a lesson-5 run of ``method`` (``"qlora"``, ``"lora"`` or ``"full"``) with a
    profile's ``settings``. ``steps``/``learning_rate`` default to the settings' ``max_steps`` and the
    method's learning rate; ``gradient_checkpointing`` to the settings'."""
    from trl import SFTConfig

    from .finetune import training_precision

    precision = training_precision(method, compute_dtype)
    steps = steps or settings["max_steps"]
    lr = learning_rate or (settings["full_learning_rate"] if method == "full" else settings["learning_rate"])
    if gradient_checkpointing is None:
        gradient_checkpointing = settings.get("gradient_checkpointing", True)
    kwargs = dict(
        output_dir=output_dir,
        max_steps=steps,
        learning_rate=lr,
        per_device_train_batch_size=settings["batch_size"],
        gradient_accumulation_steps=settings["grad_accum"],
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=max(1, round(0.03 * steps)),
        max_grad_norm=0.3,
        optim="paged_adamw_32bit",
        max_length=settings["max_length"],
        completion_only_loss=True,
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        seed=seed,
        data_seed=seed,
        bf16=precision["bf16"],
        fp16=precision["fp16"],
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
        **checkpointing_args(gradient_checkpointing, SFTConfig),
    )
    kwargs.update(overrides)
    return SFTConfig(**kwargs)


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

    from .finetune import training_precision
    from .profiles import match_vocabulary

    precision = training_precision(method, compute_dtype)
    if method == "qlora":
        quantization_config = quantization_config or nf4_config(compute_dtype)
    else:
        quantization_config = None
    model = AutoModelForCausalLM.from_pretrained(
        model_path, quantization_config=quantization_config, dtype=precision["load_dtype"], device_map=device_map
    )
    return match_vocabulary(model, tokenizer)


def estimate_method(config, name: str, settings: dict, compute_dtype, gradient_checkpointing: bool = True):
    """Lesson 4's estimate (a :class:`qlora_course.estimator.MemoryEstimate`) for one run of method ``name``
    (a key of :data:`METHODS`) with a profile's ``settings``, loaded as :func:`load_base` loads it."""
    from .estimator import estimate_run
    from .finetune import training_precision

    method, dora = _method(name)
    load = training_precision(method, compute_dtype)["load_dtype"]
    return estimate_run(
        config,
        method,
        settings,
        compute_dtype,
        load_dtype=load,
        gradient_checkpointing=gradient_checkpointing,
        use_dora=dora,
    )


def evaluate_task(model, tokenizer, data, settings: dict) -> dict:
    """Held-out measures of ``model``: ``seen`` and ``unseen`` exact match (the course task's ``test`` and
    ``test_unseen`` splits; ``None`` for chat data) and ``loss``, the completion loss on ``test``."""
    from .evaluation import completion_loss, exact_match

    limit = settings["eval_limit"]
    out = {"seen": None, "unseen": None}
    if "test_unseen" in data:
        out["seen"] = exact_match(
            model, tokenizer, data["test"], limit=limit, max_new_tokens=4, progress=False
        ).accuracy
        out["unseen"] = exact_match(
            model, tokenizer, data["test_unseen"], limit=limit, max_new_tokens=4, progress=False
        ).accuracy
    out["loss"] = completion_loss(model, tokenizer, data["test"], limit=limit, max_length=settings["max_length"])
    return out


def release_memory() -> None:
    """Collect garbage and return torch's cached GPU memory to the driver (after ``del`` of a model)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_method(
    name: str,
    *,
    model_path: str,
    tokenizer,
    data,
    settings: dict,
    targets: list[str],
    compute_dtype,
    device: str,
    device_map,
    output_dir: str,
    seed: int = 0,
    step_peak=None,
) -> dict:
    """Build, train and evaluate method ``name`` (a key of :data:`METHODS`) for one ``seed``.

    Returns ``{"seen", "unseen", "loss", "trainable", "seconds", "curve", "peak"}``; ``peak`` is
    ``step_peak(model)`` (bytes of one training step) if given. Everything the run loaded is freed
    before it returns.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from trl import SFTTrainer

    from .finetune import cast_trainable

    method, dora = _method(name)
    checkpointing = settings.get("gradient_checkpointing", True)
    torch.manual_seed(seed)
    model = load_base(model_path, tokenizer, method, compute_dtype, device_map)
    if method == "qlora":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    elif checkpointing:
        enable_checkpointing(model)
    if method != "full":
        torch.manual_seed(seed)  # the adapters' initialisation depends on the seed alone
        model = get_peft_model(
            model,
            LoraConfig(
                r=settings["r"],
                lora_alpha=settings["lora_alpha"],
                lora_dropout=settings["lora_dropout"],
                target_modules=targets,
                use_dora=dora,
                task_type="CAUSAL_LM",
            ),
        )
    trainer = SFTTrainer(
        model=model,
        args=training_args(
            settings, f"{output_dir}/{name.replace(' ', '-')}-{seed}", method, compute_dtype, device, seed=seed
        ),
        train_dataset=data["train"],
        processing_class=tokenizer,
    )
    cast_trainable(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # bitsandbytes: paged optimizers fall back on a CPU
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    result = evaluate_task(model, tokenizer, data, settings)
    result.update(
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        seconds=seconds,
        curve=[(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h],
        peak=step_peak(model) if step_peak is not None else None,
    )
    del trainer, model
    release_memory()
    return result
