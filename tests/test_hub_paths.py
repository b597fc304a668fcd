"""Lesson 5 on the paths the hub profiles take, tested on a CPU without network.

Local stand-ins (``standins.py``) carry the quirks of the hub checkpoints: a Llama-2-style tokenizer
without a pad token and weights only in ``pytorch_model.bin``; a Llama-3-style tokenizer with reserved
tokens, no unk and no pad, in sharded safetensors; chat data in Guanaco's format with prompts longer than
``max_length``. The notebook runs end to end against each through the profile machinery
(``QLORA_COURSE_PROFILE``/``_DATASET``/``_SETTINGS``). What a CPU cannot run (float16 training, a 15 GB
T4) is tested through the decisions the notebook takes: the dtype plan and the estimator's fit check.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import standins
import torch
from conftest import ROOT
from notebook_harness import execute_all, kernel, load
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from qlora_course import estimator, llama
from qlora_course.data import load_task_data
from qlora_course.evaluation import _token_batches, choice_accuracy, completion_loss, majority_accuracy
from qlora_course.finetune import fit_to_length, tokenize_example, training_precision, truncate_example
from qlora_course.loading import match_vocabulary, set_pad_token
from qlora_course.methods import checkpointing_args, estimate_method
from qlora_course.models import checkpoint_bytes, checkpoint_files, course_model_path
from qlora_course.profiles import HUB_SHAPES, PROFILES, hub_config, profile_config, resolve_profile
from qlora_course.settings import TRAINING, TrainingSettings, training_settings

QUICK = {
    "max_steps": 3,
    "batch_size": 4,
    "grad_accum": 1,
    "max_length": 96,
    "eval_limit": 6,
    "r": 8,
    "lora_alpha": 16,
    "learning_rate": 1e-3,
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    return {
        "llama2": standins.write_model(root / "llama2", "llama2"),
        "llama3": standins.write_model(root / "llama3", "llama3"),
        "chat": standins.write_chat_dataset(root / "guanaco"),
        "smollm2": standins.write_chat_model(root / "smollm2"),
    }


# --- pad token ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, expected", [("llama2", "<unk>"), ("llama3", "<|finetune_right_pad_id|>")])
def test_pad_token_reuses_an_existing_token(hub, kind, expected):
    tok = AutoTokenizer.from_pretrained(hub[kind])
    n = len(tok)
    assert tok.pad_token is None, "the stand-in ships without a pad token, like its hub model"
    set_pad_token(tok)
    assert tok.pad_token == expected and len(tok) == n, "no new token, so no model needs resizing"
    assert tok.pad_token_id not in (tok.eos_token_id, tok.bos_token_id)
    model = AutoModelForCausalLM.from_pretrained(hub[kind])
    rows = model.get_input_embeddings().num_embeddings
    assert match_vocabulary(model, tok).get_input_embeddings().num_embeddings == rows
    assert model.generation_config.pad_token_id == tok.pad_token_id


def test_pad_token_replaces_eos_padding_and_grows_only_as_a_last_resort(hub):
    tok = AutoTokenizer.from_pretrained(hub["llama3"])
    tok.pad_token = tok.eos_token  # a common shortcut that masks the EOS the model must learn
    set_pad_token(tok)
    assert tok.pad_token_id != tok.eos_token_id
    bare = AutoTokenizer.from_pretrained(course_model_path())
    bare.pad_token = bare.eos_token
    n = len(bare)
    assert "'<pad>'" in set_pad_token(bare) and len(bare) == n, "the course tokenizer's own <pad> is reused"
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({"<s>": 0, "</s>": 1, "a": 2, "b": 3}, unk_token=None))
    plain = PreTrainedTokenizerFast(tokenizer_object=words, bos_token="<s>", eos_token="</s>")
    message = set_pad_token(plain)  # nothing to reuse: the vocabulary must grow, and the message says so
    assert plain.pad_token == "<pad>" and len(plain) == 5 and "match_vocabulary" in message


def test_a_grown_vocabulary_is_matched_by_every_load(hub):
    tok = AutoTokenizer.from_pretrained(hub["llama2"])
    tok.add_special_tokens({"pad_token": "<pad>"})  # what the old notebook did
    first = match_vocabulary(AutoModelForCausalLM.from_pretrained(hub["llama2"]), tok)
    second = match_vocabulary(AutoModelForCausalLM.from_pretrained(hub["llama2"]), tok)
    assert first.get_input_embeddings().num_embeddings == second.get_input_embeddings().num_embeddings == len(tok)
    with pytest.raises(ValueError, match="set_pad_token"):
        match_vocabulary(first, AutoTokenizer.from_pretrained(hub["llama3"]))


# --- checkpoint formats --------------------------------------------------------------------------------


def test_checkpoint_size_counts_the_format_that_is_there(hub, tmp_path):
    bins = checkpoint_files(hub["llama2"])
    assert [f.name for f in bins] == ["pytorch_model.bin"], "training_args.bin is not a weight file"
    shards = checkpoint_files(hub["llama3"])
    assert [f.name for f in shards] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(hub["llama3"]).parameters())
    assert 2 * params <= checkpoint_bytes(hub["llama3"]) <= 2 * params + 100_000, "bfloat16 weights, small headers"
    assert checkpoint_bytes(hub["llama2"]) >= 2 * params
    assert checkpoint_bytes(course_model_path()) == (course_model_path() / "model.safetensors").stat().st_size
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no weight files"):
        checkpoint_files(tmp_path)


# --- long chats ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["llama2", "llama3"])
def test_long_chats_keep_every_completion(hub, kind):
    tok = AutoTokenizer.from_pretrained(hub[kind])
    set_pad_token(tok)
    data = load_task_data(resolve_profile(str(hub[kind]), dataset=str(hub["chat"])))
    fitted, counts = fit_to_length(data["train"], tok, 96)
    assert counts["truncated"] >= 3 and counts["dropped"] >= 1, counts
    assert (
        counts["kept"] + counts["truncated"] + counts["dropped"]
        == len(data["train"])
        == len(fitted) + counts["dropped"]
    )
    originals = {row["completion"] for row in data["train"]}
    for row in fitted:
        assert row["completion"] in originals, "completions are never cut"
        assert len(tokenize_example(tok, row["prompt"], row["completion"])["input_ids"]) <= 96
        assert len(tok(row["prompt"] + row["completion"])["input_ids"]) + 1 <= 96
    long = [r for r in fitted if r["prompt"] not in set(data["train"]["prompt"])]
    assert all(r["prompt"].rstrip().endswith("### Assistant:") for r in long), "the start is cut, the cue stays"


def test_truncate_example_drops_prompt_tokens_from_the_left():
    ex = {"input_ids": [1, 10, 11, 12, 13, 20, 21, 2], "labels": [-100] * 5 + [20, 21, 2]}
    cut = truncate_example(ex, 5, keep_first=1)
    assert cut == {"input_ids": [1, 13, 20, 21, 2], "labels": [-100, -100, 20, 21, 2]}
    assert truncate_example(ex, 4, keep_first=1) is None, "BOS + completion leaves no prompt token"
    assert truncate_example(ex, 8) is ex
    with pytest.raises(ValueError):
        truncate_example(ex, 1)


def test_completion_loss_truncates_like_training_and_bounds_logit_memory(course_tokenizer, course_model):
    tok, model = course_tokenizer, course_model
    from datasets import Dataset

    story = " ".join(["Mira lives in Oslo. Tom has a dog."] * 30)
    rows = Dataset.from_list(
        [
            {"prompt": f"Text: {story}\nAnswer:", "completion": " home"},
            {"prompt": "Text: Ana is a nurse.\nAnswer:", "completion": " job"},
        ]
    )
    short = completion_loss(model, tok, rows, max_length=64)
    ex = truncate_example(
        tokenize_example(tok, rows[0]["prompt"], rows[0]["completion"]), 64, keep_first=tok.bos_token_id
    )
    assert len(ex["input_ids"]) == 64
    with pytest.raises(ValueError, match="does not fit"):
        completion_loss(model, tok, Dataset.from_list([{"prompt": "a", "completion": " b" * 80}]), max_length=32)
    assert short == pytest.approx(completion_loss(model, tok, rows, max_length=64, batch_size=1), rel=1e-5)
    lengths = [{"input_ids": [0] * n} for n in (10, 50, 50, 10, 200)]
    batches = list(_token_batches(lengths, batch_size=8, vocab_size=1000, logits_budget=50 * 1000 * 4 * 2))
    assert [len(b) for b in batches] == [2, 2, 1], "at most two rows of 50 tokens fit the budget; 200 alone"
    assert sum(map(len, batches)) == len(lengths)


# --- what a CPU cannot run: float16 training and a 15 GB T4 --------------------------------------------


def test_float16_training_keeps_trainable_weights_float32():
    assert training_precision("full", torch.float16) == {"load_dtype": torch.float32, "fp16": True, "bf16": False}
    for method in ("qlora", "lora"):
        assert training_precision(method, torch.float16)["load_dtype"] == torch.float16
    assert training_precision("full", torch.bfloat16) == {"load_dtype": torch.bfloat16, "fp16": False, "bf16": True}
    assert training_precision("full", torch.float32) == {"load_dtype": torch.float32, "fp16": False, "bf16": False}
    with pytest.raises(ValueError):
        training_precision("qdora", torch.float16)
    # why: torch's gradient scaler refuses float16 gradients, which a float16-loaded full fine-tune has
    for dtype, refused in ((torch.float16, True), (training_precision("full", torch.float16)["load_dtype"], False)):
        scaler = torch.amp.GradScaler("cpu")
        layer = torch.nn.Linear(4, 4).to(dtype)
        opt = torch.optim.AdamW(layer.parameters())
        scaler.scale(layer(torch.ones(2, 4, dtype=dtype)).float().sum()).backward()
        if refused:
            with pytest.raises(ValueError, match="unscale FP16 gradients"):
                scaler.unscale_(opt)
        else:
            scaler.unscale_(opt)
            scaler.step(opt)
            scaler.update()


def test_the_estimator_decides_what_fits_a_t4():
    t4 = 15e9
    tiny = profile_config("colab-t4")
    assert (
        isinstance(tiny, LlamaConfig)
        and tiny.num_hidden_layers == HUB_SHAPES["TinyLlama/TinyLlama_v1.1"]["num_hidden_layers"]
    )
    settings = training_settings("colab-t4", {})
    need = {
        m: estimate_method(tiny, m, settings, torch.float16).total
        for m in ("QLoRA", "LoRA", "full fine-tuning", "QDoRA")
    }
    assert estimator.check_fit(need["QLoRA"], "cuda", available=t4) and estimator.check_fit(
        need["LoRA"], "cuda", available=t4
    )
    full = estimator.check_fit(need["full fine-tuning"], "cuda", available=t4, what="full fine-tuning")
    assert not full and "does not fit" in full.reason and "full fine-tuning" in full.reason
    # float32 weights, gradients and two AdamW moments: 16 bytes per parameter before activations
    params = llama.llama_param_counts(tiny)["total"]
    assert need["full fine-tuning"] > 16 * params
    big = profile_config("gpu-8b")
    eight = training_settings("gpu-8b", {})
    assert not estimator.check_fit(
        estimate_method(big, "full fine-tuning", eight, torch.bfloat16).total, "cuda", available=24e9
    )
    assert estimator.check_fit(estimate_method(big, "QLoRA", eight, torch.bfloat16).total, "cuda", available=24e9)
    with pytest.raises(ValueError):
        estimator.check_fit(float("nan"), "cpu")
    with pytest.raises(ValueError):
        estimator.check_fit(1.0, "tpu", available=None)


def test_checkpointing_names_follow_the_installed_transformers():
    @dataclasses.dataclass
    class Old:  # transformers before 5.23 (Colab's 5.15)
        gradient_checkpointing: bool = False
        gradient_checkpointing_kwargs: dict | None = None

    @dataclasses.dataclass
    class New(Old):
        activation_checkpointing: bool | None = None
        activation_checkpointing_kwargs: dict | None = None

    assert checkpointing_args(True, Old) == {
        "gradient_checkpointing": True,
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
    }
    assert checkpointing_args(True, New)["activation_checkpointing"] is True
    from trl import SFTConfig

    names = {f.name for f in dataclasses.fields(SFTConfig)}
    assert set(checkpointing_args(False)) <= names


def test_settings_overrides(monkeypatch):
    monkeypatch.setenv("QLORA_COURSE_SETTINGS", '{"max_steps": 5, "gradient_checkpointing": true}')
    s = training_settings("course-tiny")
    assert s.max_steps == 5 and s.gradient_checkpointing is True and s.r == TRAINING["course-tiny"].r
    assert training_settings("course-tiny", {}).max_steps == TRAINING["course-tiny"].max_steps
    for bad in (
        '{"max_step": 5}',
        '{"max_steps": 0}',
        '{"max_steps": 2.5}',
        "[1]",
        "max_steps=5",
        '{"gradient_checkpointing": 1}',
    ):
        with pytest.raises(ValueError):
            training_settings("course-tiny", bad)
    monkeypatch.setenv("QLORA_COURSE_DATASET", "/does/not/exist")
    with pytest.raises(ValueError, match="neither a local folder"):
        load_task_data(resolve_profile("course-tiny"))


def test_training_settings_check_themselves():
    tiny = TRAINING["course-tiny"]
    for change, message in [
        ({"max_steps": 1e4}, "setting 'max_steps' must be a positive integer, got 10000.0 (float)"),
        ({"batch_size": True}, "setting 'batch_size' must be a positive integer, got True (bool)"),
        ({"r": 0}, "setting 'r' must be a positive integer, got 0 (int)"),
        ({"seeds": "3"}, "setting 'seeds' must be a positive integer, got '3' (str)"),
        ({"learning_rate": 0.0}, "setting 'learning_rate' must be a positive finite number, got 0.0 (float)"),
        ({"full_learning_rate": False}, "setting 'full_learning_rate' must be a positive finite number, got False"),
        ({"lora_dropout": 1.0}, "setting 'lora_dropout' must be in [0, 1), got 1.0 (float)"),
        ({"gradient_checkpointing": 1}, "setting 'gradient_checkpointing' must be True or False, got 1 (int)"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            dataclasses.replace(tiny, **change)
    with pytest.raises(ValueError, match="max_steps"):
        training_settings("course-tiny", '{"max_steps": 1e4}')
    with pytest.raises(ValueError, match=re.escape("unknown settings ['lora_rank']")):
        training_settings("course-tiny", {"lora_rank": 8})
    quick = training_settings("course-tiny", {"learning_rate": 1, "lora_dropout": 0, "max_steps": 20})
    assert (quick.learning_rate, quick.lora_dropout, quick.max_steps) == (1.0, 0.0, 20)
    assert type(quick.learning_rate) is float and type(quick.lora_dropout) is float
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.max_steps = 5


def test_chat_settings_per_profile_and_overrides(hub, monkeypatch):
    from qlora_course.settings import CHAT_TRAINING, chat_settings

    monkeypatch.delenv("QLORA_COURSE_SETTINGS", raising=False)
    tiny = chat_settings("course-tiny")
    assert tiny == dataclasses.replace(TRAINING["course-tiny"], max_length=256, eval_limit=80), "lesson 5's recipe"
    assert chat_settings("colab-t4-chat") == CHAT_TRAINING["colab-t4-chat"]
    assert chat_settings(str(hub["smollm2"])) == CHAT_TRAINING["colab-t4-chat"], "any other chat model"
    assert CHAT_TRAINING["colab-t4-chat"].gradient_checkpointing
    monkeypatch.setenv("QLORA_COURSE_SETTINGS", '{"max_steps": 3}')
    assert chat_settings("course-tiny").max_steps == 3
    with pytest.raises(ValueError, match=re.escape("unknown settings ['steps']")):
        chat_settings("course-tiny", {"steps": 3})
    with pytest.raises(ValueError, match="setting 'eval_limit' must be a positive integer"):
        chat_settings("course-tiny", {"eval_limit": 0})


def test_check_profile_stops_a_hub_profile_at_once(hub, monkeypatch):
    from qlora_course.loading import HubUnavailableError, check_profile

    assert check_profile("course-tiny").name == "course-tiny"
    assert check_profile(str(hub["smollm2"])).model == str(hub["smollm2"])
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="'colab-t4-chat' needs a CUDA GPU.*T4 GPU"):
            check_profile("colab-t4-chat")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(hub["smollm2"].parent / "empty-cache"))
    from qlora_course import loading

    monkeypatch.setattr(loading, "_check_gpu", lambda profile: None)
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE is set"):
        check_profile("colab-t4-chat")


def test_the_chat_profile_has_its_published_shape():
    config = hub_config("HuggingFaceTB/SmolLM2-1.7B-Instruct")
    assert PROFILES["colab-t4-chat"].model in HUB_SHAPES and config.tie_word_embeddings
    assert 1.6e9 < llama.llama_param_counts(config)["total"] < 1.8e9, "SmolLM2-1.7B"


# --- the central claim's measures ---------------------------------------------------------------------


def test_baselines(course_tokenizer, course_model):
    from datasets import Dataset

    train = Dataset.from_list([{"prompt": "p", "completion": c} for c in (" job", " job", " pet")])
    test = Dataset.from_list([{"prompt": "p", "completion": c} for c in (" job", " pet", " pet", " food")])
    assert majority_accuracy(train, test) == ("job", 0.25)
    tok, model = course_tokenizer, course_model
    from qlora_course.data import make_task_data

    rows = make_task_data(20, 5, 12, n_test_unseen=5)["test"]
    result = choice_accuracy(model, tok, rows)
    choices = sorted(set(rows["completion"]))
    for prompt, pred in zip(rows["prompt"][:3], result.predictions[:3], strict=True):
        scores = {}
        for c in choices:
            ex = tokenize_example(tok, prompt, c, eos=False)
            ids = torch.tensor([ex["input_ids"]])
            with torch.no_grad():
                logp = model(ids).logits.log_softmax(-1)[0, :-1]
            n = len(ex["input_ids"]) - ex["labels"].count(-100)
            scores[c] = sum(
                logp[i - 1, ids[0, i]].item() for i in range(len(ex["input_ids"]) - n, len(ex["input_ids"]))
            )
        assert pred == max(scores, key=scores.get).strip()
    with pytest.raises(ValueError):
        choice_accuracy(model, tok, rows, choices=[" job"])
    # one-token choices are scored from one forward per prompt: the same numbers as the general path
    from qlora_course.evaluation import _next_token_nlls, completion_nlls

    prompts = list(rows["prompt"][:4])
    fast = _next_token_nlls(model, tok, prompts, [tok(c, add_special_tokens=False)["input_ids"][0] for c in choices], 3)
    slow = completion_nlls(
        model, tok, [p for p in prompts for _ in choices], [c for _ in prompts for c in choices], eos=False
    )
    assert torch.allclose(torch.tensor(fast).flatten(), torch.tensor([n for n, _ in slow]), atol=1e-4)
    two_tokens = choice_accuracy(model, tok, rows, choices=[" job", " pet food"], limit=3)  # the general path
    assert set(two_tokens.predictions) <= {"job", "pet food"}


def test_stored_method_comparison_matches_the_course_settings():
    stored = json.loads((course_model_path() / "method_comparison.json").read_text())
    settings = training_settings("course-tiny", {})
    assert {k: v for k, v in stored["settings"].items() if k != "seeds"} == {
        k: v for k, v in dataclasses.asdict(settings).items() if k != "seeds"
    }, "the profile's settings changed: re-run " + stored["command"]
    assert TrainingSettings(**stored["settings"]) == dataclasses.replace(settings, seeds=stored["settings"]["seeds"])
    assert stored["command"].startswith("python tools/compare_methods.py")
    seeds = {r["seed"] for r in stored["runs"]}
    assert seeds == {0, 1, 2}
    for name in ("QLoRA", "LoRA", "full fine-tuning", "QDoRA"):
        rows = [r for r in stored["runs"] if r["method"] == name]
        assert len(rows) == 3 and all(0 <= r["seen"] <= 1 and 0 <= r["unseen"] <= 1 for r in rows)
    # full fine-tuning trains at the best rate of the stored sweep (validation split), tried around it
    sweep = stored["full_lr_sweep"]
    best = max(sweep, key=lambda row: (row["validation_exact_match"], -row["validation_loss"]))
    assert settings.full_learning_rate == best["full_learning_rate"]
    rates = sorted(row["full_learning_rate"] for row in sweep)
    assert rates[0] < settings.full_learning_rate < rates[-1], "the best rate is at the sweep's edge: widen it"


def test_hub_profiles_are_not_offline():
    assert not PROFILES["colab-t4"].offline and PROFILES["course-tiny"].offline


# --- the notebook, end to end against the stand-ins ----------------------------------------------------

CHECKS = """
import json as _json
_fails = []
if len(tokenizer) != base_config.vocab_size:
    _fails.append(f"the tokenizer grew to {len(tokenizer)} tokens, the model has {base_config.vocab_size}")
if adapter_bytes > 4 * trainable + 100_000:  # float32 adapters and a header: no resized embeddings saved with them
    _fails.append(f"the adapter has {adapter_bytes} bytes for {trainable} float32 parameters")
if not base_bytes > 0:
    _fails.append("base size is zero")
for _split in data:
    for _row in data[_split]:
        if len(tokenize_example(tokenizer, _row["prompt"], _row["completion"])["input_ids"]) > settings.max_length:
            _fails.append(f"{_split}: a row is longer than max_length")
            break
if reload_diff != 0.0:
    _fails.append(f"the reloaded adapter differs by {reload_diff}")
if set(methods) != {"QLoRA", "LoRA", "full fine-tuning", "QDoRA"}:
    _fails.append(f"methods run: {methods}, skipped: {skipped}")
print("CHECKS", _json.dumps(_fails))
"""


@pytest.mark.notebook
@pytest.mark.parametrize("kind", ["llama2", "llama3"])
def test_lesson5_runs_end_to_end_on_hub_standins(hub, kind, tmp_path, monkeypatch):
    monkeypatch.setenv("QLORA_COURSE_PROFILE", str(hub[kind]))
    monkeypatch.setenv("QLORA_COURSE_DATASET", str(hub["chat"]))
    monkeypatch.setenv("QLORA_COURSE_SETTINGS", json.dumps(QUICK))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = load(ROOT / "solutions" / "05_qlora_finetune.ipynb")
    with kernel(nb, tmp_path, timeout=600) as (run, client):
        execute_all(client, nb)
        out = run(CHECKS)
    fails = json.loads(out.split("CHECKS", 1)[1])
    assert not fails, fails
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "'truncated': " in printed and "reused for padding" in printed


# --- lesson 6 on a hub chat model's stand-in -----------------------------------------------------------

CHAT_CHECKS = """
import json as _json
_fails = []
_end = chat_tokenizer.convert_tokens_to_ids("<|im_end|>")
if markers or train_rows.column_names != ["input_ids", "labels"]:
    _fails.append(f"a template without markers must train on labelled rows, got {train_rows.column_names}")
if chat_tokenizer.pad_token_id == chat_tokenizer.eos_token_id:
    _fails.append("padding with the end-of-turn token")
for _row in train_rows.select(range(20)):
    _trained = [t for t in _row["labels"] if t != -100]
    if _trained.count(_end) != 2 or chat_tokenizer.decode(_row["input_ids"]).count("named SmolLM") != 1:
        _fails.append("each answer and its end of turn trained, the default system message once")
        break
if len(data["test"]) != settings.eval_limit or settings.max_steps != 4:
    _fails.append(f"the settings override was not applied: {settings}")
if reload_gap > 1e-5 or merge_gap > 1e-3:
    _fails.append(f"reload {reload_gap}, merge {merge_gap}")
if not gguf_rows[0][2] < 0.05 or not yours_match:
    _fails.append(f"GGUF f16 read back: {gguf_rows}, rope_pairs match {yours_match}")
_fields = gguf.GGUFReader(out_dir / "chat-f16.gguf").fields
if _fields["tokenizer.ggml.pre"].contents() != "smollm":
    _fails.append("the GGUF names the wrong pre-tokenizer")
if _fields["tokenizer.chat_template"].contents() != chat_tokenizer.chat_template:
    _fails.append("the GGUF lacks the model's chat template")
if routing_gap > 1e-4:
    _fails.append(f"routing {routing_gap}")
if "model.safetensors" not in {p.name for p in merged_dir.iterdir()}:
    _fails.append("no merged checkpoint")
print("CHECKS", _json.dumps(_fails))
"""


@pytest.mark.notebook
def test_lesson6_runs_end_to_end_on_a_chat_model_standin(hub, tmp_path, monkeypatch):
    """Lesson 6 with ``QLORA_COURSE_PROFILE`` set to the SmolLM2-Instruct stand-in (a ChatML template
    without generation markers, pad = EOS, tied embeddings, a digit-splitting BPE), a few steps."""
    monkeypatch.setenv("QLORA_COURSE_PROFILE", str(hub["smollm2"]))
    monkeypatch.setenv("QLORA_COURSE_SETTINGS", json.dumps({"max_steps": 4, "eval_limit": 8, "batch_size": 4}))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = load(ROOT / "solutions" / "06_chat_model.ipynb")
    with kernel(nb, tmp_path, timeout=600) as (run, client):
        execute_all(client, nb)
        out = run(CHAT_CHECKS)
    fails = json.loads(out.split("CHECKS", 1)[1])
    assert not fails, fails


def test_a_bfloat16_full_fine_tune_keeps_float32_moments():
    """Every lesson-5 run trains with ``paged_adamw_32bit``: two float32 moments per trainable element,
    whatever the parameters' dtype. gpu-8b's full fine-tune in bfloat16 therefore needs 8 bytes of state per
    weight (an 8B model: about 64 GB of state alone, beyond 80 GB in all), not torch AdamW's 4."""
    big = profile_config("gpu-8b")
    eight = training_settings("gpu-8b", {})
    params = llama.llama_param_counts(big)["total"]
    full = estimate_method(big, "full fine-tuning", eight, torch.bfloat16)
    assert full.optimizer_state == 8 * params
    assert full.weights == full.gradients == 2 * params
    assert not estimator.check_fit(full.total, "cuda", available=80e9)
    for name in ("QLoRA", "LoRA"):
        est = estimate_method(big, name, eight, torch.bfloat16)
        assert est.optimizer_state == 8 * (est.lora_weights // 4)  # float32 adapters: 4 bytes per element


def test_llama_sizes_have_the_published_parameter_counts():
    """The LLaMA shapes lesson 5 sizes against a T4 give the parameter counts of the released checkpoints
    (7B: 6,738,415,616; 13B: 13,015,864,320; 30B: 32,528,943,616; 65B: 65,285,660,672)."""
    from qlora_course.profiles import LLAMA_SIZES, hub_config

    published = {"7b": 6_738_415_616, "13b": 13_015_864_320, "30b": 32_528_943_616, "65b": 65_285_660_672}
    assert {m.rsplit("-", 1)[1] for m in LLAMA_SIZES} == set(published)
    for size, count in published.items():
        assert llama.llama_param_counts(hub_config(f"huggyllama/llama-{size}"))["total"] == count
    with pytest.raises(ValueError, match="no stored shape"):
        hub_config("huggyllama/llama-3b")
