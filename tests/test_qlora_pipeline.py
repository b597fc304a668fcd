"""Lesson 5's pipeline on the course model: BitsAndBytesConfig -> prepare_model_for_kbit_training ->
LoRA -> TRL's SFTTrainer, then the adapter saved and reloaded onto a fresh 4-bit base, and merging."""

from __future__ import annotations

import warnings

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from qlora_course.data import make_task_data
from qlora_course.evaluation import bnb_training_path, completion_loss
from qlora_course.finetune import collate, tokenize_example
from qlora_course.llama import LLAMA_LINEAR
from qlora_course.loading import nf4_config
from qlora_course.models import course_model_path
from qlora_course.profiles import resolve_profile
from qlora_course.settings import TRAINING, training_settings

pytestmark = pytest.mark.slow  # trains the course model with TRL


def _base(quantized=True):
    qc = nf4_config(torch.float32) if quantized else None
    return AutoModelForCausalLM.from_pretrained(
        course_model_path(), quantization_config=qc, dtype=torch.float32, device_map={"": "cpu"}
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A QLoRA model after 12 SFTTrainer steps, its adapter folder and some test data."""
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(course_model_path())
    data = make_task_data(n_train=200, n_validation=10, n_test=16)
    model = prepare_model_for_kbit_training(
        _base(), use_gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False}
    )
    model = get_peft_model(
        model,
        LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=list(LLAMA_LINEAR), task_type="CAUSAL_LM"),
    )
    out = tmp_path_factory.mktemp("qlora")
    loss_before = completion_loss(model, tok, data["test"])
    args = SFTConfig(
        output_dir=str(out / "run"),
        max_steps=12,
        per_device_train_batch_size=8,
        learning_rate=2e-3,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=1,
        max_grad_norm=0.3,
        optim="paged_adamw_32bit",
        gradient_checkpointing=True,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        completion_only_loss=True,
        save_strategy="no",
        report_to="none",
        seed=0,
        bf16=False,
        fp16=False,
        use_cpu=True,
        logging_steps=4,
        disable_tqdm=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        SFTTrainer(model=model, args=args, train_dataset=data["train"], processing_class=tok).train()
    model.save_pretrained(out / "adapter")
    return dict(model=model, tok=tok, data=data, adapter=out / "adapter", loss_before=loss_before)


def _logits(model, tok, data):
    batch = collate([tokenize_example(tok, r["prompt"], r["completion"]) for r in data["test"]], tok.pad_token_id)
    model.eval()
    with torch.no_grad(), bnb_training_path(model):
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def test_training_lowers_the_held_out_completion_loss(trained):
    after = completion_loss(trained["model"], trained["tok"], trained["data"]["test"])
    assert after < 0.5 * trained["loss_before"]


def test_trl_trains_qlora_adapters_in_bfloat16(trained):
    dtypes = {p.dtype for n, p in trained["model"].named_parameters() if p.requires_grad}
    assert dtypes == {torch.bfloat16}


def test_adapter_round_trip_onto_a_fresh_4bit_base_gives_identical_logits(trained):
    model, tok, data = trained["model"], trained["tok"], trained["data"]
    files = {f.name for f in trained["adapter"].iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    size = (trained["adapter"] / "adapter_model.safetensors").stat().st_size
    assert size < 0.1 * (course_model_path() / "model.safetensors").stat().st_size
    trained_dtypes = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}
    fresh = PeftModel.from_pretrained(_base(), trained["adapter"])
    for n, p in fresh.named_parameters():
        if n in trained_dtypes:
            p.data = p.data.to(trained_dtypes[n])
    assert torch.equal(_logits(fresh, tok, data), _logits(model, tok, data))
    # a base model without the adapter is a different model
    assert not torch.allclose(_logits(_base(), tok, data), _logits(model, tok, data), atol=1e-2)


def test_merging_into_16_bit_base_gives_a_plain_model_close_to_the_adapter_model(trained):
    model, tok, data = trained["model"], trained["tok"], trained["data"]
    merged16 = PeftModel.from_pretrained(_base(quantized=False), trained["adapter"]).merge_and_unload()
    assert not any("lora" in n for n, _ in merged16.named_parameters())
    assert all(type(m) is torch.nn.Linear for n, m in merged16.named_modules() if n.endswith("q_proj"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        merged4 = PeftModel.from_pretrained(_base(), trained["adapter"]).merge_and_unload()
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in merged4.modules())  # re-quantized: still 4-bit
    ref = _logits(model, tok, data)
    base_diff = (_logits(_base(), tok, data) - ref).abs().max()
    for merged in (merged16, merged4):
        diff = (_logits(merged, tok, data) - ref).abs().max()
        assert 0 < diff < base_diff


def test_training_settings_per_profile():
    assert training_settings("course-tiny") == TRAINING["course-tiny"]
    t4 = training_settings("colab-t4")
    assert (t4.r, t4.lora_alpha, t4.learning_rate) == (64, 16, 2e-4)  # the paper's released settings
    assert training_settings(resolve_profile("someorg/some-llama")) == TRAINING["colab-t4"]
    with pytest.raises(ValueError, match="unknown profile"):
        training_settings("no such profile")


def test_completion_loss_counts_completion_tokens_only(course_tokenizer):
    tok = course_tokenizer
    data = make_task_data(n_train=10, n_validation=2, n_test=4)["test"]
    model = _base(quantized=False)
    loss = completion_loss(model, tok, data)
    ex = [tokenize_example(tok, r["prompt"], r["completion"]) for r in data]
    batch = collate(ex, tok.pad_token_id)
    with torch.no_grad():
        ref = model(**batch).loss.item()  # mean over the same labelled tokens
    assert loss == pytest.approx(ref, rel=1e-5)
    with pytest.raises(ValueError, match="empty"):
        completion_loss(model, tok, data.select([]))
