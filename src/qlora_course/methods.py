"""QLoRA, LoRA, full fine-tuning and QDoRA, each run the same way with TRL (lesson 5, section 8).

Lesson 5 builds the QLoRA run step by step. Comparing it with the other methods means repeating that
recipe with one thing changed at a time, for several seeds, which is what this module does:

- :func:`training_args` builds the ``SFTConfig`` every run shares (paged 32-bit AdamW, constant schedule
  after a 3 % warmup, clipping at 0.3, completion-only loss), with the mixed precision that
  :func:`qlora_course.finetune.training_precision` chooses and checkpointing under the name the
  installed transformers uses;
- :func:`qlora_course.loading.load_base` loads the base for a method: 4-bit NF4 with double
  quantization, or 16/32-bit;
- :func:`estimate_method` asks lesson 4's estimator (through :func:`estimate_run`) how much memory a run
  needs, so that a run that cannot fit the device is skipped with the reason instead of crashing, and
  :func:`method_fits_gpu` adds what a CUDA run needs beyond it;
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

from . import validate
from .estimator import MemoryEstimate, TrainingSetup, check_fit, estimate_training_memory
from .evaluation import completion_loss, exact_match
from .finetune import cast_trainable, training_precision
from .llama import LLAMA_LINEAR, llama_linear_shapes
from .loading import load_base
from .settings import TrainingSettings

__all__ = [
    "COMPARED_METHODS",
    "checkpointing_args",
    "enable_checkpointing",
    "training_args",
    "RUN_OPTIMIZER",
    "run_setup",
    "estimate_run",
    "method_fits_gpu",
    "estimate_method",
    "evaluate_task",
    "run_method",
    "build_method",
    "measure_step",
    "release_memory",
]

# The methods lesson 5 compares, by the name it shows: name -> (the estimator's method, DoRA?)
COMPARED_METHODS = {
    "QLoRA": ("qlora", False),
    "LoRA": ("lora", False),
    "full fine-tuning": ("full", False),
    "QDoRA": ("qlora", True),
}

# The optimizer of every lesson-5 run: (TRL/transformers' ``optim`` name, the estimator's name for its state)
RUN_OPTIMIZER = ("paged_adamw_32bit", "adamw32bit")


def _compared(name: str) -> tuple[str, bool]:
    """``(method, dora)`` of a compared method's name, e.g. ``"QDoRA" -> ("qlora", True)``."""
    if name not in COMPARED_METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {list(COMPARED_METHODS)}")
    return COMPARED_METHODS[name]


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
    settings: TrainingSettings,
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

    precision = training_precision(method, compute_dtype)
    # None means "the settings' value"; 0 is a value, and refused, not read as "unset"
    steps = settings.max_steps if steps is None else validate.positive_int(steps, "steps")
    if learning_rate is None:
        lr = settings.full_learning_rate if method == "full" else settings.learning_rate
    else:
        lr = validate.positive_number(learning_rate, "learning_rate")
    device = validate.device_name(device, "device")
    if gradient_checkpointing is None:
        gradient_checkpointing = settings.gradient_checkpointing
    kwargs = dict(
        output_dir=output_dir,
        max_steps=steps,
        learning_rate=lr,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=max(1, round(0.03 * steps)),
        max_grad_norm=0.3,
        optim=RUN_OPTIMIZER[0],
        max_length=settings.max_length,
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


def run_setup(
    config,
    method: str,
    settings: TrainingSettings,
    compute_dtype,
    *,
    load_dtype=None,
    batch_size: int | None = None,
    seq_len: int | None = None,
    gradient_checkpointing: bool = True,
) -> TrainingSetup:
    """The estimator's :class:`~qlora_course.estimator.TrainingSetup` of one of lesson 5's runs: ``method``
    in ``{"qlora", "lora", "full"}`` with a profile's ``settings`` (``r``, ``lora_dropout``, ``batch_size``,
    ``max_length``), every sequence at ``max_length`` (the worst case), the optimizer every run uses
    (``paged_adamw_32bit``: two float32 moments per trainable element, whatever the parameter's dtype, so a
    bfloat16 full fine-tune keeps 8 bytes of state per weight, not 4) and float32 adapters. ``load_dtype``
    is the dtype the base is loaded in (default ``compute_dtype``; full fine-tuning under float16 mixed
    precision loads float32)."""
    return TrainingSetup(
        method,
        settings.batch_size if batch_size is None else batch_size,  # 0 is refused by the setup, not "unset"
        settings.max_length if seq_len is None else seq_len,
        weight_dtype=compute_dtype if load_dtype is None else load_dtype,
        compute_dtype=compute_dtype,
        lora_r=settings.r,
        lora_dtype=torch.float32,
        lora_dropout=settings.lora_dropout if method != "full" else 0.0,
        gradient_checkpointing=gradient_checkpointing,
        optimizer=RUN_OPTIMIZER[1],
    )


def estimate_run(config, method: str, settings: TrainingSettings, compute_dtype, *, use_dora: bool = False, **setup):
    """The estimate for one of lesson 5's runs (:func:`run_setup` says which; ``setup`` takes its keyword
    arguments). DoRA adds a float32 magnitude vector per adapted layer, trained like the adapters (a
    gradient and two AdamW moments)."""
    est = estimate_training_memory(config, run_setup(config, method, settings, compute_dtype, **setup))
    if not use_dora or method == "full":
        return est
    shapes = llama_linear_shapes(config)
    extra = sum(shapes[t][1] for t in LLAMA_LINEAR) * config.num_hidden_layers * 4  # float32 magnitudes
    return dataclasses.replace(
        est,
        lora_weights=est.lora_weights + extra,
        gradients=est.gradients + extra,
        optimizer_state=est.optimizer_state + 2 * extra,
    )


def _method_setup(name: str, compute_dtype) -> tuple[str, bool, dict]:
    method, dora = _compared(name)
    return method, dora, {"load_dtype": training_precision(method, compute_dtype)["load_dtype"]}


def estimate_method(
    config, name: str, settings: TrainingSettings, compute_dtype, gradient_checkpointing: bool = True
) -> MemoryEstimate:
    """Lesson 4's estimate for one run of method ``name`` (a key of :data:`COMPARED_METHODS`) with a
    profile's ``settings``, loaded as :func:`qlora_course.loading.load_base` loads it: the bytes alive
    when the forward pass ends (what the CPU meter checks)."""
    method, dora, load = _method_setup(name, compute_dtype)
    return estimate_run(
        config, method, settings, compute_dtype, use_dora=dora, gradient_checkpointing=gradient_checkpointing, **load
    )


def method_fits_gpu(
    config,
    name: str,
    settings: TrainingSettings,
    compute_dtype,
    available: float,
    gradient_checkpointing: bool = True,
    **setup,
):
    """Does method ``name`` fit a GPU with ``available`` bytes? :func:`estimate_method`'s estimate plus what a
    CUDA run adds at its peak (:func:`qlora_course.estimator.gpu_terms`: the backward's transients, the CUDA
    context, the allocator's reserve, bitsandbytes' dequantization buffer), through
    :func:`~qlora_course.estimator.check_fit`. ``setup`` overrides ``batch_size``/``seq_len``. Returns the
    :class:`~qlora_course.estimator.FitDecision` (its ``needed`` includes the GPU terms)."""
    from .estimator import gpu_terms

    method, dora, load = _method_setup(name, compute_dtype)
    kwargs = dict(load, gradient_checkpointing=gradient_checkpointing, **setup)
    est = estimate_run(config, method, settings, compute_dtype, use_dora=dora, **kwargs)
    terms = gpu_terms(config, run_setup(config, method, settings, compute_dtype, **kwargs))
    return check_fit(est.total, "cuda", available=available, what=name, terms=terms)


def evaluate_task(model, tokenizer, data, settings: TrainingSettings) -> dict:
    """Held-out measures of ``model``: ``seen`` and ``unseen`` exact match (the course task's ``test`` and
    ``test_unseen`` splits; ``None`` for chat data) and ``loss``, the completion loss on ``test``."""
    limit = settings.eval_limit
    out = {"seen": None, "unseen": None}
    if "test_unseen" in data:
        out["seen"] = exact_match(
            model, tokenizer, data["test"], limit=limit, max_new_tokens=4, progress=False
        ).accuracy
        out["unseen"] = exact_match(
            model, tokenizer, data["test_unseen"], limit=limit, max_new_tokens=4, progress=False
        ).accuracy
    out["loss"] = completion_loss(model, tokenizer, data["test"], limit=limit, max_length=settings.max_length)
    return out


def release_memory() -> None:
    """Collect garbage and return torch's cached GPU memory to the driver (after ``del`` of a model)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def build_method(
    name: str,
    *,
    model_path: str,
    tokenizer,
    settings: TrainingSettings,
    targets: list[str],
    compute_dtype,
    device_map,
    seed: int = 0,
):
    """The model method ``name`` (a key of :data:`COMPARED_METHODS`) trains, before training: its base
    (4-bit for QLoRA and QDoRA), prepared as the run prepares it, with its adapters (seeded by ``seed``)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    method, dora = _compared(name)
    checkpointing = settings.gradient_checkpointing
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
                r=settings.r,
                lora_alpha=settings.lora_alpha,
                lora_dropout=settings.lora_dropout,
                target_modules=targets,
                use_dora=dora,
                task_type="CAUSAL_LM",
            ),
        )
    return model


def measure_step(name: str, step_peak, step_time, **build) -> tuple[float, float]:
    """``(peak bytes, seconds)`` of one training step of method ``name``'s model, untrained (its adapters
    cast to float32 as every run keeps them): ``step_peak(model)`` and ``step_time(model)``. Training
    changes no tensor's size, so the peak equals a trained model's."""
    model = build_method(name, **build)
    cast_trainable(model)
    result = step_peak(model), step_time(model)
    del model
    release_memory()
    return result


def run_method(
    name: str,
    *,
    model_path: str,
    tokenizer,
    data,
    settings: TrainingSettings,
    targets: list[str],
    compute_dtype,
    device: str,
    device_map,
    output_dir: str,
    seed: int = 0,
    step_peak=None,
) -> dict:
    """Build, train and evaluate method ``name`` (a key of :data:`COMPARED_METHODS`) for one ``seed``.

    Returns ``{"seen", "unseen", "loss", "trainable", "seconds", "curve", "peak"}``; ``peak`` is
    ``step_peak(model)`` (bytes of one training step) if given. Everything the run loaded is freed
    before it returns.
    """
    from trl import SFTTrainer

    method, _ = _compared(name)
    model = build_method(
        name,
        model_path=model_path,
        tokenizer=tokenizer,
        settings=settings,
        targets=targets,
        compute_dtype=compute_dtype,
        device_map=device_map,
        seed=seed,
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
