"""Lesson 5's exercises: the pieces of a QLoRA fine-tune.

References are the package's finished versions (``qlora_course.finetune``, ``qlora_course.loading``,
checked against TRL in ``tests/test_qlora_pipeline.py``) and PEFT's own merge. The probes build what
they need from the package (the course tokenizer, task examples, small random Llamas), never from a
notebook's state, so an exercise is graded on its own and quickly.
"""

from __future__ import annotations

import copy
import tempfile
from functools import cache
from pathlib import Path

import torch
from torch import nn

from qlora_grading import Exercise, Tolerance

from .. import finetune, loading
from ..data import make_task_examples
from ._draw import choice, floats, ints, sample, seed

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]


@cache
def course_tokenizer():
    """The course model's tokenizer, loaded once per process (read-only)."""
    from transformers import AutoTokenizer

    from ..models import course_model_path

    return AutoTokenizer.from_pretrained(course_model_path())


def tiny_llama(g: torch.Generator, dtype=torch.float32):
    """A small random Llama (2 layers, 64 wide): the course model's layer names, built in milliseconds."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=96,
        hidden_size=64,
        intermediate_size=ints(g, 80, 160),
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=choice(g, [2, 4]),
    )
    torch.manual_seed(seed(g))
    return LlamaForCausalLM(cfg).to(dtype).eval()


def _completion_only_example(answer, g):
    tok, out = course_tokenizer(), {}
    for k, row in enumerate(make_task_examples(4, seed=seed(g))):
        out[f"row {k}"] = answer(tok, row["prompt"], row["completion"])
    out["short"] = answer(tok, "abc", " d")
    # the exercise asks for input_ids and labels; other keys (an attention mask) are the answer's business
    return {k: {f: v.get(f) for f in ("input_ids", "labels")} if isinstance(v, dict) else v for k, v in out.items()}


def _pad_batch(answer, g):
    tok = course_tokenizer()
    rows = [finetune.tokenize_example(tok, r["prompt"], r["completion"]) for r in make_task_examples(7, seed=seed(g))]
    rows.insert(ints(g, 0, 7), {"input_ids": [tok.bos_token_id, 11], "labels": [-100, 11]})
    fields = ("input_ids", "attention_mask", "labels")
    out = {"batch": answer(rows, tok.pad_token_id), "one row": answer([{"input_ids": [4, 4], "labels": [-100, 4]}], 99)}
    return {k: {f: v.get(f) for f in fields} if isinstance(v, dict) else v for k, v in out.items()}


def _qlora_bnb_config(answer, g):
    from transformers import BitsAndBytesConfig

    out = {}
    for dt in (torch.float16, torch.bfloat16, torch.float32):
        c = answer(dt)
        keys = ("load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant")
        out[str(dt)] = {"is a BitsAndBytesConfig": isinstance(c, BitsAndBytesConfig)} | {
            k: getattr(c, k, None) for k in keys
        }
        out[str(dt)]["compute dtype"] = str(getattr(c, "bnb_4bit_compute_dtype", None))
    return out


def _lora_target_modules(answer, g):
    import bitsandbytes as bnb

    llama = tiny_llama(g)
    for name, module in list(llama.named_modules()):  # as a 4-bit load leaves it: Linear4bit but lm_head
        if isinstance(module, nn.Linear) and name != "lm_head":
            parent, _, child = name.rpartition(".")
            four_bit = bnb.nn.Linear4bit(module.in_features, module.out_features, bias=False)
            setattr(llama.get_submodule(parent), child, four_bit)
    a, b = sample(g, ["a_proj", "wo", "fc_in", "w2", "dense", "query_key_value"], 2)
    other = nn.Sequential()
    for block in ("b0", "b1"):
        other.add_module(
            block, nn.ModuleDict({a: bnb.nn.Linear4bit(64, 64), b: bnb.nn.Linear4bit(64, 32), "act": nn.ReLU()})
        )
    other.add_module("lm_head", nn.Linear(64, 3))
    return {"a 4-bit Llama": answer(llama), "another model": answer(other)}


def _lora_target_modules_reference(model):
    """What ``target_modules="all-linear"`` means to PEFT: every linear layer's short name but the output
    layer's."""
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    return sorted(names - {"lm_head"})


def _merge_adapter_16bit(answer, g):
    from peft import LoraConfig, get_peft_model

    base = tiny_llama(g, torch.bfloat16)
    targets = sample(g, ATTENTION, ints(g, 1, 3)) + sample(g, MLP, ints(g, 1, 3))  # never attention only
    r = choice(g, [2, 4, 8])
    alpha = r * choice(g, [floats(g, 1.5, 4.0), floats(g, 0.1, 0.6)])  # a scale far from 1
    fresh = copy.deepcopy(base)
    peft = get_peft_model(base, LoraConfig(r=r, lora_alpha=alpha, target_modules=targets))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    with tempfile.TemporaryDirectory(prefix="probe-adapter-") as tmp:  # removed after the answer ran
        folder = Path(tmp)
        peft.save_pretrained(folder)
        got = answer(fresh, folder, alpha / r)
    params = dict(got.named_parameters()) if isinstance(got, nn.Module) else {}
    untouched = [n for n in params if n.startswith("model.layers.") and n.endswith("proj.weight")]
    untouched = [n for n in untouched if not any(t in n for t in targets)][:1]
    keep = [n for n in params if any(t in n for t in targets)] + untouched + ["model.layers.0.input_layernorm.weight"]
    return {"a model": isinstance(got, nn.Module)} | {n: params[n] for n in keep if n in params}


def _merge_adapter_16bit_reference(model, adapter_dir, scaling):
    """PEFT's own merge of the saved adapter (its config holds the same ``alpha / r``)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()


def _training_settings(g):
    """A profile's settings with every value the two config exercises use drawn anew."""
    import dataclasses

    from ..settings import training_settings

    r = choice(g, [2, 4, 8, 16, 64])
    return dataclasses.replace(
        training_settings("course-tiny", {}),
        r=r,
        lora_alpha=choice(g, [2 * r, 3 * r, max(1, r // 4)]),  # never r: a swapped r and alpha shows
        lora_dropout=choice(g, [0.0, 0.05, 0.1]),
        learning_rate=choice(g, [1e-4, 2e-4, 1e-3, 2e-3]),
        max_steps=ints(g, 10, 2000),
        batch_size=choice(g, [1, 2, 4, 16]),
        grad_accum=choice(g, [1, 2, 4, 16]),
        max_length=choice(g, [128, 512, 1024, 2048]),
    )


def _qlora_lora_config(answer, g):
    from peft import LoraConfig, get_peft_model

    settings = _training_settings(g)
    config = answer(settings)
    out = {"a LoraConfig": isinstance(config, LoraConfig)}
    if not out["a LoraConfig"]:
        return out
    model = get_peft_model(tiny_llama(g), copy.deepcopy(config))
    adapted = sorted(
        {n.split(".lora_A.")[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters() if ".lora_A." in n}
    )
    layer = model.base_model.model.model.layers[0].self_attn.v_proj
    return out | {
        "adapted layers": adapted,
        "r": config.r,
        "scale alpha / r": layer.scaling["default"] if hasattr(layer, "scaling") else None,
        "dropout": config.lora_dropout,
        "bias": config.bias,
        "a causal-LM model": type(model).__name__,
    }


def _qlora_lora_config_reference(settings):
    """The recipe's adapters: every linear layer but the output layer (PEFT's ``"all-linear"``)."""
    from peft import LoraConfig

    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


# what the course's own runs add to the recipe's SFTConfig (a probe passes them as **course)
def _course_fields(g):
    return dict(seed=ints(g, 0, 1000), logging_steps=ints(g, 1, 20), save_strategy="no", report_to="none", use_cpu=True)


def _qlora_sft_config(answer, g):
    from trl import SFTConfig

    settings, out = _training_settings(g), {}
    for dt in (torch.float16, torch.bfloat16, torch.float32):
        course = _course_fields(g)
        with tempfile.TemporaryDirectory(prefix="probe-sft-") as folder:  # SFTConfig creates nothing in it
            c = answer(folder, settings, dt, **course)
        name = str(dt).removeprefix("torch.")
        out[f"{name}: an SFTConfig"] = isinstance(c, SFTConfig)
        if not isinstance(c, SFTConfig):
            continue
        warmup = c.get_warmup_steps(c.max_steps)
        row = {f: getattr(c, f) for f in SFT_FIELDS} | {
            "optim": str(getattr(c.optim, "value", c.optim)),
            "lr_scheduler_type": str(getattr(c.lr_scheduler_type, "value", c.lr_scheduler_type)),
            "warmup: 3% of the steps (at least 1)": warmup >= 1 and abs(warmup - 0.03 * c.max_steps) < 1,
            "output_dir": c.output_dir == folder,
            "the course's fields passed on": all(getattr(c, k) == v for k, v in course.items() if k != "report_to"),
        }
        out |= {f"{name}: {k}": v for k, v in row.items()}
    return out


SFT_FIELDS = (
    "max_steps",
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_length",
    "completion_only_loss",
    "max_grad_norm",
    "fp16",
    "bf16",
)


def _qlora_sft_config_reference(output_dir, settings, compute_dtype, **course):
    """The recipe's trainer settings, as ``qlora_course.methods.training_args`` writes them for QLoRA."""
    from ..methods import training_args

    return training_args(settings, output_dir, "qlora", compute_dtype, "cpu", gradient_checkpointing=False, **course)


EXERCISES = [
    Exercise(
        "completion_only_example",
        points=1,
        probe=_completion_only_example,
        reference=finetune.tokenize_example,
        finished=(finetune.tokenize_example,),
        wrong=(
            # forgets the EOS: the model never learns to stop
            """
def completion_only_example(tokenizer, prompt, completion):
    p = tokenizer(prompt)['input_ids']
    c = tokenizer(completion, add_special_tokens=False)['input_ids']
    return {'input_ids': p + c, 'labels': [-100] * len(p) + c}
""",
            # trains on the prompt as well
            """
def completion_only_example(tokenizer, prompt, completion):
    ids = tokenizer(prompt)['input_ids'] + tokenizer(completion, add_special_tokens=False)['input_ids'] + [tokenizer.eos_token_id]
    return {'input_ids': ids, 'labels': list(ids)}
""",
            # trains only the EOS token: the completion's own tokens get -100
            """
def completion_only_example(tokenizer, prompt, completion):
    p = tokenizer(prompt)['input_ids']
    c = tokenizer(completion, add_special_tokens=False)['input_ids']
    return {'input_ids': p + c + [tokenizer.eos_token_id], 'labels': [-100] * (len(p) + len(c)) + [tokenizer.eos_token_id]}
""",
        ),
        alternatives=(
            """
def completion_only_example(tokenizer, prompt, completion):
    ids = tokenizer(prompt)['input_ids']
    labels = [-100 for _ in ids]
    for t in tokenizer.encode(completion, add_special_tokens=False) + [tokenizer.eos_token_id]:
        ids = ids + [t]
        labels = labels + [t]
    return dict(input_ids=ids, labels=labels)
""",
            # an attention mask as well: more than was asked, nothing wrong
            """
def completion_only_example(tokenizer, prompt, completion):
    p = tokenizer(prompt)['input_ids']
    c = tokenizer(completion, add_special_tokens=False)['input_ids'] + [tokenizer.eos_token_id]
    return {'input_ids': p + c, 'attention_mask': [1] * (len(p) + len(c)), 'labels': [-100] * len(p) + c}
""",
        ),
        cheats=(
            # the package's tokenizer step
            """
def completion_only_example(tokenizer, prompt, completion):
    from qlora_course.finetune import tokenize_example
    return tokenize_example(tokenizer, prompt, completion)
""",
        ),
    ),
    Exercise(
        "pad_batch",
        points=2,
        probe=_pad_batch,
        reference=finetune.collate,
        finished=(finetune.collate,),
        wrong=(
            # pads on the left
            """
def pad_batch(examples, pad_id):
    n = max(len(e['input_ids']) for e in examples)
    ids = torch.tensor([[pad_id] * (n - len(e['input_ids'])) + e['input_ids'] for e in examples])
    labels = torch.tensor([[-100] * (n - len(e['labels'])) + e['labels'] for e in examples])
    mask = (torch.arange(n)[None, :] >= torch.tensor([n - len(e['input_ids']) for e in examples])[:, None]).long()
    return {'input_ids': ids, 'attention_mask': mask, 'labels': labels}
""",
            # labels padded with the pad id: padding gets trained
            """
def pad_batch(examples, pad_id):
    n = max(len(e['input_ids']) for e in examples)
    ids = torch.tensor([e['input_ids'] + [pad_id] * (n - len(e['input_ids'])) for e in examples])
    labels = torch.tensor([e['labels'] + [pad_id] * (n - len(e['labels'])) for e in examples])
    return {'input_ids': ids, 'attention_mask': (ids != pad_id).long(), 'labels': labels}
""",
            # labels recomputed from the ids: the prompt is trained
            """
def pad_batch(examples, pad_id):
    n = max(len(e['input_ids']) for e in examples)
    ids = torch.tensor([e['input_ids'] + [pad_id] * (n - len(e['input_ids'])) for e in examples])
    mask = torch.tensor([[1] * len(e['input_ids']) + [0] * (n - len(e['input_ids'])) for e in examples])
    return {'input_ids': ids, 'attention_mask': mask, 'labels': ids.masked_fill(mask == 0, -100)}
""",
        ),
        alternatives=(
            """
def pad_batch(examples, pad_id):
    from torch.nn.utils.rnn import pad_sequence
    ids = pad_sequence([torch.tensor(e['input_ids']) for e in examples], batch_first=True, padding_value=pad_id)
    labels = pad_sequence([torch.tensor(e['labels']) for e in examples], batch_first=True, padding_value=-100)
    mask = pad_sequence([torch.ones(len(e['input_ids']), dtype=torch.long) for e in examples], batch_first=True)
    return dict(input_ids=ids, attention_mask=mask, labels=labels)
""",
        ),
        cheats=(
            # the package's collator
            """
def pad_batch(examples, pad_id):
    from qlora_course.finetune import collate
    return collate(examples, pad_id)
""",
        ),
    ),
    Exercise(
        "qlora_bnb_config",
        points=1,
        probe=_qlora_bnb_config,
        reference=loading.nf4_config,
        finished=(loading.nf4_config,),
        wrong=(
            # bitsandbytes' default 4-bit type, FP4
            """
def qlora_bnb_config(compute_dtype):
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype)
""",
            # no double quantization, compute dtype left at its default
            """
def qlora_bnb_config(compute_dtype):
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4')
""",
        ),
        alternatives=(
            """
def qlora_bnb_config(compute_dtype):
    cfg = dict(load_in_4bit=True, bnb_4bit_quant_type='nf4', bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype, bnb_4bit_quant_storage=torch.uint8)
    return BitsAndBytesConfig(**cfg)
""",
        ),
        cheats=(
            # the package's config
            """
def qlora_bnb_config(compute_dtype):
    from qlora_course.loading import nf4_config
    return nf4_config(compute_dtype)
""",
        ),
    ),
    Exercise(
        "lora_target_modules",
        points=1,
        probe=_lora_target_modules,
        reference=_lora_target_modules_reference,
        wrong=(
            # keeps lm_head
            """
def lora_target_modules(model):
    return sorted({n.rsplit('.', 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
""",
            # attention only
            """
def lora_target_modules(model):
    return ['k_proj', 'o_proj', 'q_proj', 'v_proj']
""",
            # only exact nn.Linear layers: a 4-bit model's Linear4bit layers are missed
            """
def lora_target_modules(model):
    names = {n.rsplit('.', 1)[-1] for n, m in model.named_modules() if type(m) is torch.nn.Linear}
    return sorted(names - {'lm_head'})
""",
        ),
        alternatives=(
            """
def lora_target_modules(model):
    import bitsandbytes as bnb
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            names.add(name.split('.')[-1])
    names.discard('lm_head')
    return sorted(names)
""",
        ),
    ),
    Exercise(
        "qlora_lora_config",
        points=2,
        probe=_qlora_lora_config,
        reference=_qlora_lora_config_reference,
        parts={
            "the adapted layers": (1, r"adapted layers|a LoraConfig"),
            "rank, scale, dropout, task": (1, r"r$|scale|dropout|bias|causal"),
        },
        wrong=(
            # PEFT's default for Llama: q_proj and v_proj only (the LoRA paper's choice, not QLoRA's)
            """
def qlora_lora_config(settings):
    return LoraConfig(r=settings.r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout, task_type='CAUSAL_LM')
""",
            # r and alpha swapped: the scale becomes r / alpha
            """
def qlora_lora_config(settings):
    return LoraConfig(r=settings.lora_alpha, lora_alpha=settings.r, lora_dropout=settings.lora_dropout, target_modules='all-linear', task_type='CAUSAL_LM')
""",
            # every linear layer, lm_head included
            """
def qlora_lora_config(settings):
    names = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'lm_head']
    return LoraConfig(r=settings.r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout, target_modules=names, task_type='CAUSAL_LM')
""",
            # no task type: a bare PeftModel, which neither SFTTrainer's generation nor saving treats as a causal LM
            """
def qlora_lora_config(settings):
    return LoraConfig(r=settings.r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout, target_modules='all-linear')
""",
        ),
        alternatives=(
            # the layer names written out (what Exercise lora_target_modules finds for a Llama)
            """
def qlora_lora_config(settings):
    names = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
    return LoraConfig(task_type='CAUSAL_LM', target_modules=names, r=settings.r,
                      lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout, bias='none')
""",
        ),
    ),
    Exercise(
        "qlora_sft_config",
        points=3,
        probe=_qlora_sft_config,
        reference=_qlora_sft_config_reference,
        finished=("qlora_course.methods.training_args",),
        parts={
            "the run's size and loss": (
                1,
                r"max_steps|learning_rate|per_device|gradient_accum|max_length|completion_only|output_dir|course|an SFTConfig",
            ),
            "optimizer, schedule, clipping": (1, r"optim$|lr_scheduler|warmup|max_grad_norm"),
            "precision for the device": (1, r"fp16|bf16"),
        },
        wrong=(
            # the default optimizer: AdamW without paging
            """
def qlora_sft_config(output_dir, settings, compute_dtype, **course):
    return SFTConfig(output_dir=output_dir, max_steps=settings.max_steps, learning_rate=settings.learning_rate,
                     per_device_train_batch_size=settings.batch_size, gradient_accumulation_steps=settings.grad_accum,
                     max_length=settings.max_length, completion_only_loss=True, lr_scheduler_type='constant_with_warmup',
                     warmup_steps=max(1, round(0.03 * settings.max_steps)), max_grad_norm=0.3,
                     fp16=compute_dtype == torch.float16, bf16=compute_dtype == torch.bfloat16, **course)
""",
            # bf16 everywhere: a T4 (float16) has no bfloat16
            """
def qlora_sft_config(output_dir, settings, compute_dtype, **course):
    return SFTConfig(output_dir=output_dir, max_steps=settings.max_steps, learning_rate=settings.learning_rate,
                     per_device_train_batch_size=settings.batch_size, gradient_accumulation_steps=settings.grad_accum,
                     max_length=settings.max_length, completion_only_loss=True, optim='paged_adamw_32bit',
                     lr_scheduler_type='constant_with_warmup', warmup_steps=max(1, round(0.03 * settings.max_steps)),
                     max_grad_norm=0.3, bf16=True, **course)
""",
            # the trainer's default schedule (linear decay) and clipping (1.0)
            """
def qlora_sft_config(output_dir, settings, compute_dtype, **course):
    return SFTConfig(output_dir=output_dir, max_steps=settings.max_steps, learning_rate=settings.learning_rate,
                     per_device_train_batch_size=settings.batch_size, gradient_accumulation_steps=settings.grad_accum,
                     max_length=settings.max_length, completion_only_loss=True, optim='paged_adamw_32bit',
                     fp16=compute_dtype == torch.float16, bf16=compute_dtype == torch.bfloat16, **course)
""",
            # completion_only_loss left to TRL's default, and the course's fields dropped
            """
def qlora_sft_config(output_dir, settings, compute_dtype, **course):
    return SFTConfig(output_dir=output_dir, max_steps=settings.max_steps, learning_rate=settings.learning_rate,
                     per_device_train_batch_size=settings.batch_size, gradient_accumulation_steps=settings.grad_accum,
                     max_length=settings.max_length, optim='paged_adamw_32bit', lr_scheduler_type='constant_with_warmup',
                     warmup_steps=max(1, round(0.03 * settings.max_steps)), max_grad_norm=0.3,
                     fp16=compute_dtype == torch.float16, bf16=compute_dtype == torch.bfloat16)
""",
        ),
        alternatives=(
            # warmup as a ratio (transformers reads warmup_steps < 1 as a fraction of the steps)
            """
def qlora_sft_config(output_dir, settings, compute_dtype, **course):
    kwargs = dict(output_dir=output_dir, max_steps=settings.max_steps, learning_rate=settings.learning_rate,
                  per_device_train_batch_size=settings.batch_size, gradient_accumulation_steps=settings.grad_accum,
                  max_length=settings.max_length, completion_only_loss=True, optim='paged_adamw_32bit',
                  lr_scheduler_type='constant_with_warmup', warmup_steps=0.03, max_grad_norm=0.3)
    kwargs['fp16'] = compute_dtype is torch.float16
    kwargs['bf16'] = compute_dtype is torch.bfloat16
    kwargs.update(course)
    return SFTConfig(**kwargs)
""",
        ),
        cheats=(
            # the package's builder
            """
def qlora_sft_config(output_dir, settings, compute_dtype, **course):
    from qlora_course.methods import training_args
    return training_args(settings, output_dir, 'qlora', compute_dtype, 'cpu', gradient_checkpointing=False, **course)
""",
        ),
    ),
    Exercise(
        "merge_adapter_16bit",
        points=3,
        probe=_merge_adapter_16bit,
        reference=_merge_adapter_16bit_reference,
        # bfloat16 weights: a merge rounds once (or twice, via a bfloat16 product) to bfloat16's 8 bits
        tolerance=Tolerance(ulps=4),
        finished=(
            "peft.tuners.tuners_utils.BaseTuner.merge_and_unload",
            "peft.tuners.lora.layer.Linear.merge",
            "peft.tuners.lora.layer.Linear.get_delta_weight",
        ),
        wrong=(
            # forgets the scale alpha / r
            """
def merge_adapter_16bit(model, adapter_dir, scaling):
    from safetensors.torch import load_file
    state = load_file(str(Path(adapter_dir) / 'adapter_model.safetensors'))
    with torch.no_grad():
        for k, A in state.items():
            if k.endswith('.lora_A.weight'):
                path = k[len('base_model.model.'):-len('.lora_A.weight')]
                B = state[k.replace('lora_A', 'lora_B')]
                w = model.get_submodule(path).weight
                w.copy_((w.float() + (B.float() @ A.float()).to(w.device)).to(w.dtype))
    return model
""",
            # merges only the first adapted layer
            """
def merge_adapter_16bit(model, adapter_dir, scaling):
    from safetensors.torch import load_file
    state = load_file(str(Path(adapter_dir) / 'adapter_model.safetensors'))
    with torch.no_grad():
        for k, A in state.items():
            if k.endswith('.lora_A.weight'):
                path = k[len('base_model.model.'):-len('.lora_A.weight')]
                B = state[k.replace('lora_A', 'lora_B')]
                w = model.get_submodule(path).weight
                w.copy_((w.float() + scaling * (B.float() @ A.float()).to(w.device)).to(w.dtype))
                break
    return model
""",
            # the product the wrong way round (A^T B^T: the transpose of the update)
            """
def merge_adapter_16bit(model, adapter_dir, scaling):
    from safetensors.torch import load_file
    state = load_file(str(Path(adapter_dir) / 'adapter_model.safetensors'))
    with torch.no_grad():
        for k, A in state.items():
            if k.endswith('.lora_A.weight'):
                path = k[len('base_model.model.'):-len('.lora_A.weight')]
                B = state[k.replace('lora_A', 'lora_B')]
                w = model.get_submodule(path).weight
                d = (B.float() @ A.float())
                d = d.T if d.T.shape == w.shape else d * 0
                w.copy_((w.float() + scaling * d.to(w.device)).to(w.dtype))
    return model
""",
            # merges the attention layers only
            """
def merge_adapter_16bit(model, adapter_dir, scaling):
    from safetensors.torch import load_file
    state = load_file(str(Path(adapter_dir) / 'adapter_model.safetensors'))
    with torch.no_grad():
        for k, A in state.items():
            if k.endswith('.lora_A.weight') and 'self_attn' in k:
                path = k[len('base_model.model.'):-len('.lora_A.weight')]
                B = state[k.replace('lora_A', 'lora_B')]
                w = model.get_submodule(path).weight
                w.copy_((w.float() + scaling * B.float() @ A.float()).to(w.dtype))
    return model
""",
        ),
        alternatives=(
            """
def merge_adapter_16bit(model, adapter_dir, scaling):
    from safetensors import safe_open
    pairs = {}
    with safe_open(str(Path(adapter_dir) / 'adapter_model.safetensors'), 'pt') as f:
        for key in f.keys():
            module, kind = key.removeprefix('base_model.model.').rsplit('.lora_', 1)
            pairs.setdefault(module, {})[kind[0]] = f.get_tensor(key)
    for module, ab in pairs.items():
        layer = model.get_submodule(module)
        new = layer.weight.detach().float() + scaling * (ab['B'].float() @ ab['A'].float()).to(layer.weight.device)
        layer.weight.data = new.to(layer.weight.dtype)
    return model
""",
        ),
        cheats=(
            # PEFT's merge does the work
            """
def merge_adapter_16bit(model, adapter_dir, scaling):
    from peft import PeftModel
    return PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
""",
        ),
    ),
]
