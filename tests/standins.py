"""Local stand-ins for the hub checkpoints and data set of lesson 5's GPU profiles.

Nothing here downloads anything: each stand-in is a small random ``LlamaForCausalLM`` folder that loads
with plain ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained`` and carries the quirks of the real
checkpoint it stands for, so that the notebook's hub path can run on a CPU in CI:

- ``llama2``: like TinyLlama and Llama 2: ``<unk>``, ``<s>``, ``</s>``, **no pad token**, a
  SentencePiece-style ("▁") vocabulary, weights only in ``pytorch_model.bin``;
- ``llama3``: like Llama 3.1: ``<|begin_of_text|>``, ``<|end_of_text|>``, reserved special tokens
  including ``<|finetune_right_pad_id|>``, **no unk and no pad token**, byte-level BPE, safetensors
  split in two shards with an index;
- ``smollm2``, for lesson 6's ``colab-t4-chat`` (SmolLM2-1.7B-Instruct): a chat model with its own
  ChatML template, verbatim (``<|im_start|>role\n...<|im_end|>\n``, a default system message written
  when the conversation has none, a newline *after* each end-of-turn token, **no generation markers**),
  ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>`` as ids 0, 1, 2, **pad = EOS = ``<|im_end|>``**
  (the end-of-turn token), nothing added by ``add_special_tokens``, a byte-level BPE that splits
  digits one by one first, **tied embeddings**, one ``model.safetensors``;
- a chat data set in Guanaco's ``### Human: ... ### Assistant: ...`` format, as ``train``/``test`` JSON
  lines with a ``text`` column, with multi-turn conversations and prompts longer than any
  ``max_length`` the lesson uses (and one completion that cannot fit at all).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from qlora_course.data import make_corpus

LLAMA3_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
]


def chat_texts(n: int, seed: int = 0, long_every: int = 7) -> list[str]:
    """``n`` Guanaco-format conversations; every ``long_every``-th has a very long first turn."""
    rng = random.Random(f"chat-{seed}")
    stories = make_corpus(40 * n + 100, seed=100 + seed)
    out = []
    for i in range(n):
        turns = []
        for _ in range(rng.randint(1, 2)):
            question = stories.pop()
            if long_every and i % long_every == 0 and not turns:
                question = " ".join(stories.pop() for _ in range(30))  # far longer than max_length
            turns.append(
                f"### Human: {question} Tell me one fact from this.### Assistant: {stories.pop().split('.')[0]}."
            )
        out.append("".join(turns))
    # one conversation whose answer alone is longer than any max_length: it must be dropped, not cut
    out[-1] = f"### Human: Tell me a long story.### Assistant: {' '.join(stories.pop() for _ in range(40))}"
    return out


def write_chat_dataset(folder: Path, n_train: int = 48, n_test: int = 12) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        with open(folder / f"{split}.jsonl", "w") as f:
            for text in chat_texts(n, seed):
                f.write(json.dumps({"text": text}) + "\n")
    return folder


def _train_tokenizer(kind: str, texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if kind == "llama2":
        specials = ["<unk>", "<s>", "</s>"]
        tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=False))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        bos = "<s>"
    else:
        specials = LLAMA3_SPECIALS
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        bos = "<|begin_of_text|>"
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=specials,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if kind == "llama3" else [],
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return tok, specials


# SmolLM2-Instruct's chat template, as its tokenizer_config.json ships it
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def write_chat_model(folder: Path, seed: int = 0) -> Path:
    """A small random Llama in ``folder`` with SmolLM2-Instruct's tokenizer quirks and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from qlora_course.chat import make_chat_data

    folder.mkdir(parents=True, exist_ok=True)
    data = make_chat_data(n_train=300, n_validation=10, n_test=10, n_test_unseen=10, seed=5)
    texts = make_corpus(300, seed=7) + [
        m["content"] for split in data.values() for messages in split["messages"] for m in messages
    ]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=640,
        special_tokens=specials,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts + ["system user assistant You are a helpful AI assistant named SmolLM"], trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=specials[1:],
    )
    hf.chat_template = SMOLLM2_TEMPLATE
    assert [hf.convert_tokens_to_ids(t) for t in specials] == [0, 1, 2]
    assert hf.pad_token_id == hf.eos_token_id, "SmolLM2-Instruct pads with its end-of-turn token"
    hf.save_pretrained(folder)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(hf),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=True,
        rope_theta=130000.0,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    return folder


def write_model(folder: Path, kind: str, seed: int = 0) -> Path:
    """A small random Llama in ``folder`` with the tokenizer and weight format of ``kind``."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if kind not in ("llama2", "llama3"):
        raise ValueError(kind)
    folder.mkdir(parents=True, exist_ok=True)
    texts = make_corpus(400, seed=7) + chat_texts(40, seed=3)
    tok, specials = _train_tokenizer(kind, texts)
    if kind == "llama2":
        hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    else:
        hf = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<|begin_of_text|>",
            eos_token="<|end_of_text|>",
            additional_special_tokens=specials[2:],
        )
    assert hf.pad_token is None, "the stand-in must have no pad token, like its hub model"
    hf.save_pretrained(folder)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(hf),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=hf.bos_token_id,
        eos_token_id=hf.eos_token_id,
        pad_token_id=None,
        tie_word_embeddings=False,
        rope_theta=10000.0 if kind == "llama2" else 500000.0,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if kind == "llama2":  # older checkpoints: one pickled state dict, no safetensors
        torch.save(state, folder / "pytorch_model.bin")
    else:  # two safetensors shards and their index, as large hub checkpoints are stored
        from safetensors.torch import save_file

        names = sorted(state)
        shards = {
            "model-00001-of-00002.safetensors": names[: len(names) // 2],
            "model-00002-of-00002.safetensors": names[len(names) // 2 :],
        }
        weight_map = {}
        for file, keys in shards.items():
            save_file({k: state[k] for k in keys}, folder / file, metadata={"format": "pt"})
            weight_map.update({k: file for k in keys})
        total = sum(v.numel() * v.element_size() for v in state.values())
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1)
        )
    (folder / "training_args.bin").write_bytes(b"not weights")  # a stray .bin that is not a checkpoint
    return folder
