"""The course's own Llama, its generated data, the evaluation and the profiles (all offline)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from qlora_course.data import guanaco_to_prompt_completion, make_corpus, make_task_data, make_task_examples
from qlora_course.evaluation import (
    bootstrap_interval,
    exact_match,
    generate_completions,
    perplexity,
    token_agreement,
)
from qlora_course.finetune import IGNORE_INDEX, collate, tokenize_example
from qlora_course.loading import HubUnavailableError, load_model_and_tokenizer
from qlora_course.models import course_model_path, weight_normality, weight_normality_report
from qlora_course.profiles import PROFILES, resolve_profile

PATH = course_model_path()
FACTS = json.loads((PATH / "training_facts.json").read_text())


@pytest.fixture
def tokenizer(course_tokenizer):
    return course_tokenizer


@pytest.fixture
def model(course_model):
    return course_model


@pytest.fixture(scope="module")
def data():
    return make_task_data(seed=0)


# --- the model ---------------------------------------------------------------------------------------


def test_shipped_size_and_parameter_count():
    size = (PATH / "model.safetensors").stat().st_size
    assert size <= 25e6, f"weights are {size / 1e6:.1f} MB; the package may carry 25 MB at most"
    m = AutoModelForCausalLM.from_pretrained(PATH)
    n = sum(p.numel() for p in m.parameters())
    assert 5e6 <= n <= 20e6
    assert n == FACTS["parameters"]
    assert m.dtype == torch.bfloat16, "saved in 16 bits, and from_pretrained keeps the saved dtype"
    assert type(m).__name__ == "LlamaForCausalLM"


def test_loads_in_16_bits_like_a_hub_model(tokenizer):
    m = AutoModelForCausalLM.from_pretrained(PATH, dtype=torch.float16)
    assert {p.dtype for p in m.parameters()} == {torch.float16}
    # every linear layer that 4-bit loading quantizes has an output size bitsandbytes' CPU path accepts
    for name, mod in m.named_modules():
        if isinstance(mod, torch.nn.Linear) and name != "lm_head":
            assert mod.out_features % 32 == 0, name


def test_loads_in_4_bits_nf4_with_double_quantization(model, tokenizer):
    import bitsandbytes as bnb

    from qlora_course.loading import nf4_config

    cfg = nf4_config(torch.float32)
    m4 = AutoModelForCausalLM.from_pretrained(PATH, quantization_config=cfg, device_map={"": "cpu"})
    layers = [m for m in m4.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 7 * m4.config.num_hidden_layers  # q k v o gate up down in every layer
    state = layers[0].weight.quant_state
    assert state.quant_type == "nf4" and state.nested, "NF4 with double quantization"
    assert m4.get_memory_footprint() < 0.6 * model.get_memory_footprint() / 2  # well under half of 16 bits
    # the 4-bit model still models the corpus: perplexity within 10% of the 16-bit one
    texts = make_corpus(64, seed=1)
    p16, p4 = perplexity(model, tokenizer, texts, progress=False), perplexity(m4, tokenizer, texts, progress=False)
    assert p4 < 1.10 * p16, (p16, p4)


def test_profile_loader_gives_the_same_model(model):
    m, tok = load_model_and_tokenizer("course-tiny", compute_dtype=torch.float32)
    for (n1, p1), (n2, p2) in zip(model.named_parameters(), m.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)
    assert tok.pad_token_id not in (None, tok.eos_token_id)


def test_tokenizer_round_trip_and_special_tokens(tokenizer):
    text = "Text: Mira lives in Oslo.\nQuestion: Where does Mira live?\nAnswer: Oslo"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id, "<s> is prepended, as Llama does"
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert len({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}) == 3
    assert tokenizer.decode(tokenizer("naïve café ☕")["input_ids"], skip_special_tokens=True) == "naïve café ☕"


@pytest.mark.slow
def test_model_card_reports_what_the_model_measures(model, tokenizer):
    card = (PATH / "README.md").read_text()
    assert f"{FACTS['parameters']:,} parameters" in card
    assert f"held-out perplexity {FACTS['ppl_fp32']:.3f}" in card
    assert "python tools/pretrain_course_model.py" in card
    # re-measured on the first 100 held-out stories (the card's figure uses 1,000): the shipped weights,
    # loaded in float32 as the pretraining script checked them
    ppl = perplexity(
        model, tokenizer, make_corpus(FACTS["heldout_docs"], seed=1)[: FACTS["check_docs"]], progress=False
    )
    assert ppl == pytest.approx(FACTS["ppl_check"], rel=1e-3), "the shipped weights give the recorded perplexity"
    assert ppl == pytest.approx(FACTS["ppl_bf16"], rel=0.05), "100 stories are representative of the card's 1,000"
    assert ppl < 0.5 * FACTS["vocab"] ** 0.5, "the model has learned the corpus (far below a guess)"


@pytest.mark.slow
def test_training_corpus_is_the_one_the_model_was_trained_on():
    from qlora_course.data import corpus_digest

    corpus = make_corpus(FACTS["train_docs"], seed=0)
    assert corpus_digest(corpus) == FACTS["train_sha256"], "make_corpus changed: retrain the course model"
    assert corpus_digest(corpus[:-1]) != FACTS["train_sha256"] and corpus_digest([]) != FACTS["train_sha256"]


def test_generation_is_deterministic(model, tokenizer):
    prompts = [e["prompt"] for e in make_task_examples(8, seed=7)]
    a = generate_completions(model, tokenizer, prompts, batch_size=4, max_new_tokens=6, progress=False)
    b = generate_completions(model, tokenizer, prompts, batch_size=8, max_new_tokens=6, progress=False)
    assert a == b, "greedy decoding must not depend on the run or on how prompts are batched"
    from qlora_course.data import CITIES, PETS

    for start, words in (
        ("Tom is a baker. Mira lives in", CITIES),
        ("Ana likes the colour red. Ana owns a small", PETS),
    ):
        story = tokenizer(start, return_tensors="pt")
        out = model.generate(**story, do_sample=False, max_new_tokens=1, pad_token_id=tokenizer.pad_token_id)
        assert tokenizer.decode(out[0, -1:]).strip() in words, (
            "the pretrained model fills each slot with the right kind of word"
        )


def test_weight_normality_report(model):
    rows = weight_normality_report(model)
    assert len(rows) == 7 * model.config.num_hidden_layers + 1
    g = torch.Generator().manual_seed(0)
    normal = weight_normality(torch.randn(200_000, generator=g))
    assert abs(normal["excess_kurtosis"]) < 0.05 and normal["ks_distance"] < 0.01
    heavy = weight_normality(torch.distributions.StudentT(3.0).sample((200_000,)))
    assert heavy["excess_kurtosis"] > 3 and heavy["share_beyond_4std"] > 10 * normal["share_beyond_4std"]
    with pytest.raises(ValueError, match="finite"):
        weight_normality(torch.tensor([1.0, float("nan")]))


# --- the data ----------------------------------------------------------------------------------------


def test_data_is_deterministic_and_seeded(data):
    again = make_task_data(seed=0)
    for split in data:
        assert data[split].to_list() == again[split].to_list()
    assert make_task_data(50, 10, 10, seed=1)["train"]["prompt"] != data["train"]["prompt"][:50]
    assert make_corpus(20, seed=0) == make_corpus(20, seed=0) != make_corpus(20, seed=1)


def test_splits_are_disjoint_and_well_formed(data):
    assert {k: len(v) for k, v in data.items()} == {"train": 2000, "validation": 200, "test": 200, "test_unseen": 200}
    prompts = {k: set(v["prompt"]) for k, v in data.items()}
    assert sum(len(p) for p in prompts.values()) == 2600, "no prompt repeats, within or across splits"
    from qlora_course.data import held_out_words

    unseen = held_out_words()
    asked = {k: set(v["word"]) for k, v in data.items()}
    assert asked["test_unseen"] <= unseen and not (asked["train"] | asked["validation"] | asked["test"]) & unseen
    assert len(asked["test_unseen"]) >= 0.8 * len(unseen), "the unseen split covers most held-out words"
    assert 0.1 < len(unseen) / 100 < 0.25 and held_out_words(seed=1) != unseen
    # the held-out stories are those the pretraining script found disjoint from its training stories
    from qlora_course.data import corpus_digest

    assert corpus_digest(make_corpus(FACTS["heldout_docs"], seed=1)) == FACTS["heldout_sha256"]
    assert FACTS["heldout_in_train"] == 0, "perplexity is measured on unseen text"
    from qlora_course.data import KINDS

    for row in data["test"]:
        assert row["completion"].startswith(" ") and row["word"] in KINDS[row["completion"].strip()]
        assert f"Is {row['word']} a home" in row["prompt"] and row["prompt"].endswith("\nAnswer:")
        assert row["word"] in row["prompt"].split("\nQuestion")[0], "the word is one of the story's"
    kinds = [r.strip() for r in data["train"]["completion"]]
    assert min(kinds.count(k) for k in KINDS) > 0.15 * len(kinds), "every kind is asked about often"


def test_base_model_cannot_do_the_task(model, tokenizer, data):
    res = exact_match(model, tokenizer, data["test"], progress=False)
    assert len(res.predictions) == 200
    assert res.accuracy < 0.20, f"base model exact match {res.accuracy:.1%}: the task must need fine-tuning"


def test_exact_match_counts_right_answers(model, tokenizer, data):
    from datasets import Dataset

    test = data["test"].select(range(16))
    preds = generate_completions(model, tokenizer, test["prompt"], progress=False)
    # a data set whose references are the model's own predictions scores 100%; a changed one scores less
    own = Dataset.from_dict({"prompt": test["prompt"], "completion": [" " + p for p in preds]})
    assert exact_match(model, tokenizer, own, progress=False).accuracy == 1.0
    wrong = Dataset.from_dict({"prompt": test["prompt"], "completion": [" x" + p for p in preds]})
    assert exact_match(model, tokenizer, wrong, progress=False).accuracy == 0.0
    with pytest.raises(ValueError, match="completion"):
        exact_match(model, tokenizer, Dataset.from_dict({"prompt": ["a"]}))


def test_completion_only_labels_and_padding(tokenizer):
    ex = tokenize_example(tokenizer, "Text: Ana has a dog.\nQuestion: What pet does Ana have?\nAnswer:", " dog")
    p = tokenizer("Text: Ana has a dog.\nQuestion: What pet does Ana have?\nAnswer:")["input_ids"]
    assert ex["labels"][: len(p)] == [IGNORE_INDEX] * len(p)
    assert ex["labels"][len(p) :] == ex["input_ids"][len(p) :] and ex["input_ids"][-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ex["input_ids"][len(p) : -1]) == " dog"
    b = collate([ex, tokenize_example(tokenizer, "Hi", " yes")], tokenizer.pad_token_id)
    short = b["attention_mask"][1] == 0
    assert (b["input_ids"][1][short] == tokenizer.pad_token_id).all() and (b["labels"][1][short] == IGNORE_INDEX).all()


# --- profiles ----------------------------------------------------------------------------------------


def test_profiles_resolve():
    assert resolve_profile().name == "course-tiny" and resolve_profile().offline
    assert resolve_profile("colab-t4").needs_gpu and not resolve_profile("colab-t4").offline
    assert resolve_profile("some-org/some-llama").model == "some-org/some-llama"
    assert resolve_profile("colab-t4", dataset="course").dataset is None
    assert resolve_profile(str(PATH)).offline
    with pytest.raises(ValueError, match="unknown profile 'tiny'.*course-tiny"):
        resolve_profile("tiny")
    assert set(PROFILES) >= {"course-tiny", "colab-t4", "gpu-8b"}


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("QLORA_COURSE_PROFILE", "gpu-8b")
    assert resolve_profile().name == "gpu-8b"


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}])
def test_unreachable_hub_model_fails_fast_with_a_helpful_message(monkeypatch, tmp_path, env):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # nothing cached
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))
    import socket

    import transformers

    # fast by construction: at most one connection attempt, with a timeout of seconds, and no download
    # (transformers' own retries would wait much longer); no wall clock is read
    attempts = []
    real = socket.create_connection
    monkeypatch.setattr(
        socket,
        "create_connection",
        lambda addr, timeout=None, **kw: (attempts.append(timeout), real(addr, timeout=timeout, **kw))[1],
    )

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", no_download)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_download)
    with pytest.raises(HubUnavailableError) as err:
        load_model_and_tokenizer("some-org/llama-that-is-not-cached")
    assert len(attempts) <= 1 and all(t is not None and t <= 5 for t in attempts), attempts
    msg = str(err.value)
    assert "some-org/llama-that-is-not-cached" in msg and "course-tiny" in msg and "not in the local" in msg


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_gpu_profile_without_gpu_says_so():
    with pytest.raises(RuntimeError, match="needs a CUDA GPU.*course-tiny"):
        load_model_and_tokenizer("colab-t4")


def test_guanaco_conversion():
    text = "### Human: Hi!### Assistant: Hello.### Human: Name a colour.### Assistant: Blue."
    row = guanaco_to_prompt_completion(text)
    assert row == {
        "prompt": "### Human: Hi!### Assistant: Hello.### Human: Name a colour.### Assistant:",
        "completion": " Blue.",
    }
    with pytest.raises(ValueError, match="Assistant"):
        guanaco_to_prompt_completion("no turns")


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(tokenizer):
    class Uniform(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask=None):
            return type("Out", (), {"logits": torch.zeros(*input_ids.shape, len(tokenizer))})()

    ppl = perplexity(Uniform(), tokenizer, ["Mira has a cat.", "Tom lives in Rome. Tom is a cook."], progress=False)
    assert math.isclose(ppl, len(tokenizer), rel_tol=1e-6)  # float32 log-softmax


def test_token_agreement_is_zero_kl_for_the_same_model_and_gives_perplexity(course_model, course_tokenizer):
    from qlora_course import nf4

    texts = ["Mira has a cat.", "Tom lives in Rome. Tom is a cook.", "Ana likes tea."]
    same = token_agreement(course_model, course_model, course_tokenizer, texts, batch_size=2, progress=False)
    assert same["kl"].shape == (3,) and same["kl"].abs().max() < 1e-6 and bool((same["top1"] == 1).all())
    m = copy.deepcopy(course_model)
    with torch.no_grad():
        nf4.quantize_model_weights(m, "e3m0", 64)
    r = token_agreement(course_model, m, course_tokenizer, texts, batch_size=2, progress=False)
    assert bool((r["kl"] > 0).all()), "a quantized model moves every story's predictions"
    ppl = math.exp(r["nll"].sum() / r["tokens"].sum())
    assert ppl == pytest.approx(perplexity(m, course_tokenizer, texts, progress=False), rel=1e-4)
    with pytest.raises(ValueError, match="texts must hold at least one"):
        token_agreement(course_model, m, course_tokenizer, [], progress=False)
    # several models in one pass (the reference runs once a batch): each result equals its own call's
    both = token_agreement(course_model, {"e3m0": m, "same": course_model}, course_tokenizer, texts, 2, False)
    assert set(both) == {"e3m0", "same"}
    for key in r:
        assert torch.equal(both["e3m0"][key], r[key]) and torch.equal(both["same"][key], same[key])
    with pytest.raises(ValueError, match="at least one model"):
        token_agreement(course_model, {}, course_tokenizer, texts, progress=False)


def test_bootstrap_interval_is_repeatable_and_covers_the_mean():
    x = torch.arange(100, dtype=torch.float64)
    mean, lo, hi = bootstrap_interval(x)
    assert mean == 49.5 and lo < mean < hi and (lo, hi) == bootstrap_interval(x)[1:]
    assert bootstrap_interval(torch.full((10,), 2.0)) == (2.0, 2.0, 2.0)
    for bad, msg in [(torch.tensor([1.0]), "at least 2"), (torch.tensor([1.0, float("nan")]), "NaN")]:
        with pytest.raises(ValueError, match=msg):
            bootstrap_interval(bad)


@pytest.mark.model_card
def test_lora_learns_the_task_in_minutes(tokenizer, data):
    """The task is learnable: a plain LoRA fine-tune (the model card's recipe, fewer test questions).
    ``make check-model`` runs it; ``make test`` does not, since lesson 5's notebook test trains QLoRA on the
    task and checks its exact match against the recorded figure."""
    from peft import LoraConfig, get_peft_model

    from qlora_course.finetune import train_sft

    check = json.loads((PATH / "task_check.json").read_text())
    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_pretrained(PATH, dtype=torch.float32)
    m = get_peft_model(
        m,
        LoraConfig(
            r=check["r"],
            lora_alpha=check["alpha"],
            task_type="CAUSAL_LM",
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        ),
    )
    losses = train_sft(
        m, tokenizer, data["train"], steps=check["steps"], batch_size=check["batch"], lr=check["lr"], progress=False
    )
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10, "the completion loss must fall"
    acc = exact_match(m, tokenizer, data["test"], limit=100, progress=False).accuracy
    assert acc >= 0.80, f"LoRA reached only {acc:.0%} exact match"


@pytest.mark.slow
def test_evaluating_a_4bit_model_leaves_it_trainable(tokenizer, data):
    """On AVX512-BF16 CPUs bitsandbytes repacks a 4-bit layer for a kernel without backward the first
    time it runs in eval mode without grad; our evaluation must not trigger that, or a LoRA fine-tune
    after a baseline evaluation would silently get no gradients."""
    from peft import LoraConfig, get_peft_model

    m, tok = load_model_and_tokenizer("course-tiny", quantization="nf4", compute_dtype=torch.float32)
    exact_match(m, tok, data["test"], limit=4, progress=False)
    perplexity(m, tok, ["Mira lives in Oslo."], progress=False)
    assert not any(
        getattr(getattr(mod, "weight", None), "quant_state", None) is not None
        and getattr(mod.weight.quant_state, "packing_format_for_cpu", False)
        for mod in m.modules()
    )
    m = get_peft_model(m, LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    m.train()
    enc = tok(["Mira lives in Oslo."], return_tensors="pt")
    m(**enc, labels=enc["input_ids"]).loss.backward()
    grads = [p.grad for n, p in m.named_parameters() if "lora_B" in n]  # (A's is 0 while B starts at 0)
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), "LoRA got no gradients"
