"""Lesson 6's chat pieces: the generated conversations, the course model's chat template, the
assistant-only labels (checked token for token against TRL's own) and the validator of a learner's file."""

from __future__ import annotations

import json
import logging

import pytest

from qlora_course.chat import (
    CHAT_TEMPLATE,
    assistant_labels,
    chat_replies,
    has_generation_markers,
    labelled_conversations,
    make_chat_data,
    question_words,
    rendered_turns,
    score_chat,
    validate_conversations,
)
from qlora_course.data import KINDS, held_out_words
from qlora_course.finetune import IGNORE_INDEX
from qlora_course.models import course_model_path

TWO_TURNS = [{"role": "user", "content": "Is Oslo a home?"}, {"role": "assistant", "content": "home"}]


@pytest.fixture(scope="module")
def tok(course_tokenizer):
    assert course_tokenizer.chat_template is not None, "the course model's folder has no chat template"
    return course_tokenizer


@pytest.fixture(scope="module")
def data():
    return make_chat_data(n_train=60, n_validation=10, n_test=10, n_test_unseen=20, seed=0)


def trained_spans(ids: list[int], labels: list[int]) -> list[list[int]]:
    """The runs of consecutive trained tokens."""
    spans, run = [], []
    for i, label in zip(ids, labels, strict=True):
        if label == IGNORE_INDEX:
            spans, run = (spans + [run] if run else spans), []
        else:
            assert label == i, "a trained label must be the token itself"
            run.append(i)
    return spans + [run] if run else spans


# --- the template ------------------------------------------------------------------------------------


def test_the_template_ships_with_the_course_model(tok):
    from transformers import AutoTokenizer

    stored = (course_model_path() / "chat_template.jinja").read_text(encoding="utf-8")
    assert stored == CHAT_TEMPLATE, "chat_template.jinja and chat.CHAT_TEMPLATE differ: copy one to the other"
    fresh = AutoTokenizer.from_pretrained(course_model_path())
    assert fresh.chat_template == CHAT_TEMPLATE
    assert len(fresh) == 1002 and fresh.get_added_vocab() == {"<s>": 0, "</s>": 1, "<pad>": 2}, "no token added"


def test_a_two_turn_conversation_token_by_token(tok):
    assert tok.apply_chat_template(TWO_TURNS, tokenize=False) == "<s>User: Is Oslo a home?</s>Assistant: home</s>"
    out = tok.apply_chat_template(TWO_TURNS, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    tokens = tok.convert_ids_to_tokens(out["input_ids"])
    assert tokens == (
        ["<s>", "U", "s", "er", ":", "ĠI", "s", "ĠOslo", "Ġa", "Ġhome", "?", "</s>"]  # <s>User: Is Oslo a home?</s>
        + ["A", "s", "s", "ist", "an", "t", ":"]  # Assistant:
        + ["Ġhome", "</s>"]  # the answer, its space and the end of turn: the only trained tokens
    )
    assert out["assistant_masks"] == [0] * 19 + [1, 1]
    hand = assistant_labels(tok, TWO_TURNS)
    assert hand["input_ids"] == out["input_ids"]
    assert hand["labels"] == [IGNORE_INDEX] * 19 + tok.convert_tokens_to_ids(["Ġhome", "</s>"])


def test_the_generation_prompt_ends_with_the_assistant_header(tok):
    prompt = tok.apply_chat_template(TWO_TURNS[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("</s>Assistant:")
    ids = tok.apply_chat_template(TWO_TURNS[:1], tokenize=True, add_generation_prompt=True, return_dict=True)
    full = tok.apply_chat_template(TWO_TURNS, tokenize=True, return_dict=True)["input_ids"]
    assert full[: len(ids["input_ids"])] == ids["input_ids"], "the reply continues the prompt token for token"
    assert tok.decode(full[len(ids["input_ids"]) :]) == " home</s>"


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "assistant", "content": "home"}],
        [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}],
        [*TWO_TURNS, {"role": "system", "content": "late"}],
    ],
)
def test_the_template_refuses_roles_out_of_order(tok, messages):
    from jinja2.exceptions import TemplateError

    with pytest.raises(TemplateError, match="system message"):
        tok.apply_chat_template(messages, tokenize=False)


def test_end_of_turn_and_answers_are_trained_the_prompt_is_not(tok, data):
    for row in data["train"].select(range(10)):
        messages = [{"role": "system", "content": "Answer in one word."}, *row["messages"]]
        out = assistant_labels(tok, messages)
        spans = trained_spans(out["input_ids"], out["labels"])
        replies = [m["content"] for m in messages if m["role"] == "assistant"]
        assert [tok.decode(s) for s in spans] == [f" {r}{tok.eos_token}" for r in replies]
        assert all(s[-1] == tok.eos_token_id for s in spans), "every assistant turn trains its end-of-turn token"
        untrained = [i for i, label in zip(out["input_ids"], out["labels"], strict=True) if label == IGNORE_INDEX]
        assert untrained[0] == tok.bos_token_id
        text = tok.decode(untrained)
        for m in messages:
            if m["role"] != "assistant":
                assert m["content"] + tok.eos_token in text, "system and user turns are context only"


def test_rendered_turns_cut_the_text_without_loss(tok, data):
    messages = data["train"][0]["messages"]
    pieces = rendered_turns(tok, messages)
    assert "".join(p for p, _ in pieces) == tok.apply_chat_template(messages, tokenize=False)
    assert [p for p, trained in pieces if trained] == [
        f" {m['content']}</s>" for m in messages if m["role"] == "assistant"
    ]


def test_assistant_labels_refuses_a_conversation_ending_with_the_user(tok):
    with pytest.raises(ValueError, match="last message is 'user'"):
        assistant_labels(tok, [*TWO_TURNS, {"role": "user", "content": "And Rome?"}])
    with pytest.raises(ValueError, match="max_length"):
        assistant_labels(tok, TWO_TURNS, max_length=0)
    with pytest.raises(ValueError, match="no assistant token is left"):
        assistant_labels(tok, TWO_TURNS, max_length=10)


# --- the same labels as TRL's SFTTrainer(assistant_only_loss=True) -----------------------------------


def trl_labels(tok, conversations: list[list[dict]], tmp_path, max_length: int | None) -> dict[int, list[int]]:
    """``{row index: labels}`` of the train set an ``SFTTrainer`` with ``assistant_only_loss=True`` prepares:
    TRL's own path (``_prepare_dataset``: ``apply_chat_template(..., return_assistant_tokens_mask=True)``,
    its label building and ``keep_start`` truncation, which drops rows left without a trained token)."""
    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    args = SFTConfig(
        output_dir=str(tmp_path), assistant_only_loss=True, max_length=max_length, report_to="none",
        use_cpu=True, bf16=False, dataset_num_proc=None,
    )  # fmt: skip
    ds = Dataset.from_dict({"messages": conversations, "row": list(range(len(conversations)))})
    trainer = SFTTrainer(model=LlamaForCausalLM(config), args=args, train_dataset=ds, processing_class=tok)
    prepared = trainer.train_dataset
    assert trainer.chat_template is None, "TRL used the tokenizer's own template, not a substitute"
    return dict(zip(prepared["row"], prepared["labels"], strict=True))


def test_labels_equal_trls_on_multi_turn_conversations(tok, data, tmp_path, caplog):
    conversations = list(data["train"]["messages"][:24]) + list(data["test_unseen"]["messages"][:4])
    conversations.append([{"role": "system", "content": "You answer in one word."}, *conversations[0]])
    conversations.append(
        [*TWO_TURNS, {"role": "user", "content": " And Rome?\n"}, {"role": "assistant", "content": " :) café\nhome "}]
    )
    with caplog.at_level(logging.WARNING):
        theirs = trl_labels(tok, conversations, tmp_path, max_length=None)
    assert "end-of-turn token" not in caplog.text, "TRL finds the end of turn trained"
    assert sorted(theirs) == list(range(len(conversations)))
    for i, messages in enumerate(conversations):
        assert assistant_labels(tok, messages)["labels"] == theirs[i], f"conversation {i}"


def test_truncated_labels_equal_trls(tok, data, tmp_path):
    conversations = list(data["train"]["messages"][:12])
    lengths = [len(assistant_labels(tok, m)["input_ids"]) for m in conversations]
    max_length = sorted(lengths)[len(lengths) // 2] - 3  # half the rows lose their last tokens
    theirs = trl_labels(tok, conversations, tmp_path, max_length=max_length)
    assert any(n > max_length for n in lengths)
    assert sorted(theirs) == list(range(len(conversations))), "every row keeps a trained token"
    for i, messages in enumerate(conversations):
        mine = assistant_labels(tok, messages, max_length=max_length)
        assert mine["labels"] == theirs[i], f"conversation {i}"
        assert len(mine["input_ids"]) == min(lengths[i], max_length)
    # a conversation whose answer falls past max_length: TRL drops the row, assistant_labels says so
    long = [{"role": "user", "content": TWO_TURNS[0]["content"] * 20}, {"role": "assistant", "content": "home"}]
    n_prompt = len(
        tok.apply_chat_template(long[:1], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    )
    assert 0 not in trl_labels(tok, [long, *conversations[:1]], tmp_path, max_length=n_prompt)
    with pytest.raises(ValueError, match="no assistant token"):
        assistant_labels(tok, long, max_length=n_prompt)


# --- a hub chat model's template: no generation markers -------------------------------------------------


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    """The SmolLM2-Instruct stand-in's tokenizer (tests/standins.py): ChatML, no markers, pad = EOS."""
    import standins
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(standins.write_chat_model(tmp_path_factory.mktemp("smollm2")))


def _tiny_model(vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    small = dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1
    )
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, **small))


def test_has_generation_markers(tok, smol):
    assert has_generation_markers(tok) and has_generation_markers(CHAT_TEMPLATE)
    assert not has_generation_markers(smol) and not has_generation_markers(None)
    assert has_generation_markers("{%- generation -%}x{%- endgeneration -%}")
    assert has_generation_markers({"default": CHAT_TEMPLATE, "tool_use": "x"})
    assert not has_generation_markers("{# no {% generation %} here? #}".replace("{% generation %}", "generation"))
    with pytest.raises(TypeError, match="template must be"):
        has_generation_markers(3)


def test_trl_cannot_mask_a_template_it_does_not_know(smol, tmp_path):
    """Why lesson 6 labels the turns itself: TRL's assistant_only_loss on SmolLM2's template stops. If a
    TRL upgrade learns this template, this test fails: then the lesson can let TRL do it."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(0)
    model = _tiny_model(len(smol))
    args = SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, report_to="none", use_cpu=True, bf16=False)
    with pytest.raises(ValueError, match="patching is not supported"):
        SFTTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"messages": [TWO_TURNS]}),
                   processing_class=smol)  # fmt: skip


def test_labelled_conversations_train_the_turn_its_end_and_nothing_else(smol, data, tmp_path):
    """SmolLM2's quirks: a default system message the data does not have, pad = EOS = the end-of-turn
    token, a newline after it. The labels train each answer, its <|im_end|> and that newline (TRL's own
    patched ChatML templates train the newline too); TRL keeps them as they are, and its collator pads by
    position, so the end-of-turn token stays trained although it is also the pad token."""
    import torch
    from trl import SFTConfig, SFTTrainer

    assert smol.pad_token_id == smol.eos_token_id == smol.convert_tokens_to_ids("<|im_end|>")
    rows = data["train"].select(range(8))
    ds = labelled_conversations(rows, smol, max_length=512)
    assert ds.column_names == ["input_ids", "labels"] and len(ds) == 8
    end = smol.convert_tokens_to_ids("<|im_end|>")
    for messages, row in zip(rows["messages"], ds, strict=True):
        text = smol.decode(row["input_ids"])
        assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
        spans = trained_spans(row["input_ids"], row["labels"])
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        assert [smol.decode(s) for s in spans] == [a + "<|im_end|>\n" for a in answers]
        assert all(end in s for s in spans)
    torch.manual_seed(0)
    model = _tiny_model(len(smol))
    args = SFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, max_length=512,
                     per_device_train_batch_size=4)  # fmt: skip
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=smol)
    assert trainer.train_dataset["labels"] == ds["labels"], "TRL trains on the labels as given"
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    for row, labels in zip(ds.select(range(4)), batch["labels"].tolist(), strict=True):
        n = len(row["labels"])
        assert labels[:n] == row["labels"] and set(labels[n:]) <= {IGNORE_INDEX}


def test_labelled_conversations_name_the_bad_row(tok, data):
    from datasets import Dataset

    bad = Dataset.from_dict({"messages": [data["train"][0]["messages"], TWO_TURNS[:1]]})
    with pytest.raises(ValueError, match="dataset row 1: messages: roles out of order"):
        labelled_conversations(bad, tok, max_length=256)
    with pytest.raises(TypeError, match="'messages' column"):
        labelled_conversations([TWO_TURNS], tok, max_length=256)
    with pytest.raises(ValueError, match="max_length"):
        labelled_conversations(bad, tok, max_length=0)


# --- the generated data ------------------------------------------------------------------------------


def test_the_data_is_deterministic_and_has_no_duplicate(data):
    again = make_chat_data(n_train=60, n_validation=10, n_test=10, n_test_unseen=20, seed=0)
    other = make_chat_data(n_train=60, n_validation=10, n_test=10, n_test_unseen=20, seed=1)
    for split in data:
        assert data[split].to_list() == again[split].to_list(), split
    assert data["train"]["messages"] != other["train"]["messages"]
    keys = [json.dumps(m) for split in data for m in data[split]["messages"]]
    assert len(keys) == len(set(keys)) == 100
    bigger = make_chat_data(n_train=6000, seed=0)  # big enough for stories to repeat; they must be skipped
    keys = [json.dumps(m) for split in bigger for m in bigger[split]["messages"]]
    assert len(keys) == len(set(keys)) == 6600


def test_answers_are_the_kinds_of_the_asked_words(data):
    kind_of = {w: k for k, words in KINDS.items() for w in words}
    for split in data:
        for row in data[split]:
            words = question_words(row["messages"])
            assert words == row["words"]
            assert row["answers"] == [m["content"] for m in row["messages"] if m["role"] == "assistant"]
            assert row["answers"] == [kind_of[w] for w in words]
            story = row["messages"][0]["content"].split("\nQuestion:")[0]
            assert all(w in story.split() or w + "." in story.split() for w in words), "asked about the story"
            assert (row["follow_up"] == "repeat") == (words[0] == words[1])
    follow_ups = data["train"]["follow_up"]
    assert 0.2 < follow_ups.count("repeat") / len(follow_ups) < 0.8


def test_the_unseen_split_asks_about_no_training_word(data):
    train_words = {
        w for split in ("train", "validation", "test") for m in data[split]["messages"] for w in question_words(m)
    }
    unseen_words = {w for m in data["test_unseen"]["messages"] for w in question_words(m)}
    assert unseen_words and not unseen_words & train_words
    assert unseen_words <= held_out_words()
    assert not train_words & held_out_words()


@pytest.mark.parametrize("bad", [{"n_train": 0}, {"n_test": 2.0}, {"system": ""}, {"held_out_share": 1.5}])
def test_make_chat_data_checks_its_arguments(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        make_chat_data(**{"n_train": 5, "n_validation": 1, "n_test": 1, "n_test_unseen": 1, **bad})


# --- the validator -----------------------------------------------------------------------------------


def test_the_validator_reports_every_reason_and_keeps_the_good_lines(tok, tmp_path):
    good = {"messages": TWO_TURNS}
    good_system = {"messages": [{"role": "system", "content": "Be brief."}, *TWO_TURNS], "source": "mine"}
    long = {"messages": [{"role": "user", "content": "Is Oslo a home? " * 20}, TWO_TURNS[1]]}
    max_length = 40
    eos_in_content = {"role": "assistant", "content": "home" + tok.eos_token}
    long_n = len(tok.apply_chat_template(long["messages"], tokenize=True, return_dict=True)["input_ids"])
    assert (
        long_n
        > max_length
        >= len(tok.apply_chat_template(good_system["messages"], tokenize=True, return_dict=True)["input_ids"])
    )
    lines = {
        "good": json.dumps(good).encode(),
        "not UTF-8": b'{"messages": "caf\xe9"}',
        "not JSON": b'{"messages": [',
        "no messages": json.dumps({"conversation": TWO_TURNS}).encode(),
        "message without role/content": json.dumps({"messages": [{"role": "user"}, TWO_TURNS[1]]}).encode(),
        "unknown role": json.dumps({"messages": [TWO_TURNS[0], {"role": "bot", "content": "home"}]}).encode(),
        "empty content": json.dumps({"messages": [TWO_TURNS[0], {"role": "assistant", "content": " "}]}).encode(),
        "roles out of order": json.dumps({"messages": TWO_TURNS[:1]}).encode(),
        "special token in content": json.dumps({"messages": [TWO_TURNS[0], eos_in_content]}).encode(),
        "too long": json.dumps(long).encode(),
        "good too": json.dumps(good_system, ensure_ascii=False).encode(),
    }  # fmt: skip
    path = tmp_path / "mine.jsonl"
    path.write_bytes(b"\n".join(lines.values()) + b"\n")
    report = validate_conversations(path, tok, max_length=max_length)
    line_of = {reason: n for n, reason in enumerate(lines, start=1)}
    assert report.kept_lines == [line_of["good"], line_of["good too"]]
    assert report.kept["messages"] == [good["messages"], good_system["messages"]]
    assert {d.reason: d.line for d in report.dropped} == {r: n for r, n in line_of.items() if not r.startswith("good")}
    assert report.counts() == {"kept": 2, **{r: 1 for r in lines if not r.startswith("good")}}
    detail = {d.reason: d.detail for d in report.dropped}
    assert "0xe9" in detail["not UTF-8"]
    assert "Expecting" in detail["not JSON"]
    assert f"{long_n} tokens, {long_n - max_length} over" in detail["too long"]
    assert "'bot'" in detail["unknown role"] and "'</s>'" in detail["special token in content"]
    text = str(report)
    for reason, n in line_of.items():
        if not reason.startswith("good"):
            assert f"line {n}: {reason}" in text
            assert any(row.startswith(reason) and row.split()[-1] == str(n) for row in report.table().splitlines())
    assert report.table().splitlines()[-1].split() == ["total", str(len(lines))]


def test_the_validator_reads_lists_and_datasets(tok, data):
    rows = data["validation"].to_list()[:3] + [{"messages": []}, TWO_TURNS]
    report = validate_conversations(rows, tok, max_length=512)
    assert report.unit == "row" and report.kept_lines == [0, 1, 2]
    assert [(d.line, d.reason) for d in report.dropped] == [(3, "no messages"), (4, "no messages")]
    report = validate_conversations(data["validation"], tok, max_length=512)
    assert report.kept["messages"] == data["validation"]["messages"] and not report.dropped
    assert "too long" in validate_conversations(data["validation"], tok, max_length=20).counts()


@pytest.mark.parametrize(
    "kwargs,name",
    [({"source": 42}, "source"), ({"source": "no/such/file.jsonl"}, "source"), ({"max_length": 0}, "max_length"),
     ({"max_length": 2.5}, "max_length")],
)  # fmt: skip
def test_the_validator_names_a_bad_argument(tok, kwargs, name):
    with pytest.raises(ValueError, match=name):
        validate_conversations(**{"source": [], "tokenizer": tok, "max_length": 64, **kwargs})


# --- replies and scores ------------------------------------------------------------------------------


def test_score_chat_counts_accuracy_and_consistency():
    answers = [["home", "job"], ["pet", "pet"], ["food", "food"]]
    replies = [["home", "pet"], ["pet", "pet"], ["job", "job"]]
    scores = score_chat(answers, replies, ["other", "repeat", "repeat"])
    assert scores["first_turn"] == pytest.approx(2 / 3) and scores["second_turn"] == pytest.approx(1 / 3)
    assert scores["accuracy"] == pytest.approx(3 / 6)
    assert scores["consistency"] == 1.0 and scores["n_repeat"] == 2, "a wrong answer repeated is consistent"
    with pytest.raises(ValueError, match="replies"):
        score_chat(answers, replies[:2], ["other"] * 3)


def test_chat_replies_feed_the_models_own_answers_back(course_model, tok, data):
    import torch

    rows = data["test"].select(range(3))
    own = chat_replies(course_model, tok, rows["messages"], max_new_tokens=2, batch_size=2)
    forced = chat_replies(course_model, tok, rows["messages"], own_answers=False, max_new_tokens=2)
    assert [len(r) for r in own] == [len(r) for r in forced] == [2, 2, 2]
    assert [r[0] for r in own] == [r[0] for r in forced], "the first turn has no earlier answer to differ in"
    for messages, reply in zip(rows["messages"], own, strict=True):
        ids = tok.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=True, return_dict=True)
        gen = course_model.generate(
            **{k: torch.tensor([v]) for k, v in ids.items()}, do_sample=False, max_new_tokens=2,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        )  # fmt: skip
        assert reply[0] == tok.decode(gen[0, len(ids["input_ids"]) :], skip_special_tokens=True).strip()


def test_scoring_a_4bit_model_leaves_it_trainable(tok, data):
    """Scoring before a fine-tune must not switch bitsandbytes' CPU layers to their backward-less kernel (on a
    CPU with AVX512-BF16, an eval-mode call repacks the weight for good): after chat_replies, a gradient
    still reaches the input of every 4-bit layer."""
    import bitsandbytes as bnb
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from qlora_course.models import course_model_path

    model = AutoModelForCausalLM.from_pretrained(
        course_model_path(),
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32),
        dtype=torch.float32,
    )
    chat_replies(model, tok, data["test"].select(range(2))["messages"], max_new_tokens=1)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers)
    layer = layers[0]
    layer.train()
    x = torch.randn(2, layer.in_features, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0, "no gradient through the 4-bit layer after scoring"
