"""Lesson 6's shipping helpers (:mod:`qlora_course.shipping`): the adapter round trip, GGUF export read back
by transformers, and several adapters on one 4-bit base with per-row routing.

Adapters are made without training: LoRA B is set to small seeded random values (A is PEFT's random
init), so each adapter changes the model, reproducibly, in a fraction of a second."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from qlora_course.loading import load_model_and_tokenizer
from qlora_course.models import course_model_config, course_model_path
from qlora_course.shipping import (
    BASE_ADAPTER,
    adapter_bytes,
    check_adapter_fits,
    export_gguf,
    gguf_tensor_name,
    load_adapter_onto,
    load_adapters,
    permute_for_rope_pairs,
    routed_generate,
    routed_logits,
    save_adapter,
    use_adapter,
)

TEXTS = [
    "The cat sat on the mat.",
    "A longer prompt, with more tokens than the first one has.",
    "Third row",
    "x",
]


def _base_4bit():
    """A fresh 4-bit NF4 course model computing in float32, with its tokenizer (right padding)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, tok = load_model_and_tokenizer("course-tiny", quantization="nf4", compute_dtype=torch.float32)
    return model.eval(), tok


def _with_random_adapter(base, seed: int, r: int = 4, scale: float = 0.05):
    """``base`` with a LoRA adapter whose B matrices are seeded random values of standard deviation ``scale``
    (not zero, as PEFT initialises them: the adapter changes the model)."""
    config = LoraConfig(
        r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]
    )
    torch.manual_seed(seed)  # PEFT draws A from the global generator
    model = get_peft_model(base, config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def _tiny_llama(seed: int = 0, **overrides) -> LlamaForCausalLM:
    """A randomly initialised 2-layer Llama with the course vocabulary (1002 tokens), in float32."""
    torch.manual_seed(seed)
    kw = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    return LlamaForCausalLM(course_model_config(1002, **(kw | overrides))).eval()


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """Two adapters for the course model saved to disk ("a": seed 0, small; "b": seed 1, large enough to
    change greedy generations), with a right-padded batch and the logits of each in-memory adapter model."""
    out = tmp_path_factory.mktemp("adapters")
    base, tok = _base_4bit()
    batch = tok(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        base_logits = base(**batch).logits
    found = {"tok": tok, "batch": batch, "base_logits": base_logits, "bytes": {}, "logits": {}}
    for seed, (name, scale) in enumerate([("a", 0.05), ("b", 0.3)]):
        model = _with_random_adapter(_base_4bit()[0], seed, scale=scale)
        with torch.no_grad():
            found["logits"][name] = model(**batch).logits
        found["bytes"][name] = save_adapter(model, out / name)
        found[name] = out / name
    return found


# --- 1. the adapter round trip -------------------------------------------------------------------------


def test_saved_adapter_is_small_and_its_size_is_the_files_on_disk(adapters):
    folder = adapters["a"]
    files = {f.name: f.stat().st_size for f in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(files)
    assert adapters["bytes"]["a"] == adapter_bytes(folder) == sum(files.values())
    # r=4 on q, k, v, up, down in 8 layers, float32: 8 * 4 * (512 + 384 + 384 + 960 + 960) * 4 bytes = 0.41 MB
    assert 0.4e6 < files["adapter_model.safetensors"] < 0.43e6
    assert adapters["bytes"]["a"] < 0.05 * (course_model_path() / "model.safetensors").stat().st_size


def test_adapter_reloaded_onto_a_fresh_4bit_base_gives_the_same_logits(adapters):
    model = load_adapter_onto(_base_4bit()[0], adapters["a"])
    with torch.no_grad():
        logits = model(**adapters["batch"]).logits
    # the same NF4 codes, the same saved float32 LoRA weights, the same kernels: bit for bit
    assert torch.equal(logits, adapters["logits"]["a"])
    # and the adapter matters: the base alone is another model
    assert (adapters["base_logits"] - logits).abs().max() > 0.1


def test_an_adapter_for_another_base_is_refused_before_peft_loads_it(adapters, tmp_path):
    # another model of the same family but another width: the shapes say so
    other = _tiny_llama()
    with pytest.raises(ValueError, match=r"does not fit base.*LoRA A is \(4, 256\), the layer takes 64 inputs"):
        check_adapter_fits(other, adapters["a"])
    with pytest.raises(ValueError, match="does not fit"):
        load_adapter_onto(other, adapters["a"])
    # the same shapes but another base named in adapter_config.json
    folder = tmp_path / "renamed"
    folder.mkdir()
    for f in adapters["a"].iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "someone/another-llama"
    (folder / "adapter_config.json").write_text(json.dumps(config))
    base = _base_4bit()[0]
    with pytest.raises(ValueError, match="made for base model 'someone/another-llama'"):
        check_adapter_fits(base, folder)
    assert check_adapter_fits(base, folder, check_name=False)["r"] == 4
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        check_adapter_fits(base, tmp_path)
    with pytest.raises(TypeError, match="PeftModel"):
        save_adapter(base, tmp_path / "x")


# --- 2. GGUF export ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def merged(adapters):
    """Lesson 5's merge path: the NF4 base dequantized to 16 bits (bfloat16), adapter "a" merged there;
    with the logits of a float32 model holding exactly the merged weights.

    The reference is loaded afresh, not ``merged.float()``: ``.to(torch.bfloat16)`` also rounds the RoPE
    frequencies (the buffer ``inv_freq``), which no checkpoint stores (logits move by up to 0.16)."""
    from peft import PeftModel

    base = _base_4bit()[0].dequantize().to(torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = PeftModel.from_pretrained(base, adapters["a"]).merge_and_unload().eval()
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    ids = adapters["tok"](TEXTS[:2], return_tensors="pt", padding=True)
    reference = AutoModelForCausalLM.from_pretrained(course_model_path(), dtype=torch.float32).eval()
    reference.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    with torch.no_grad():
        logits = reference(**ids).logits
    return {"model": model, "ids": ids, "logits": logits}


def _read_gguf(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


def test_gguf_f32_and_f16_read_back_by_transformers_give_the_merged_models_logits(merged, adapters, tmp_path):
    tok = adapters["tok"]
    for dtype, tolerance in (("f32", 0.0), ("f16", 1e-4)):  # measured: 0 and about 1e-5 (logits of std ~6.6)
        path = export_gguf(merged["model"], tok, tmp_path / f"course-{dtype}.gguf", dtype=dtype)
        model = _read_gguf(path)
        assert not model.config.tie_word_embeddings
        assert (model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id) == (0, 1, 2)
        with torch.no_grad():
            diff = (model(**merged["ids"]).logits - merged["logits"]).abs().max().item()
        assert diff <= tolerance, f"{dtype}: {diff}"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["course-f16.gguf", "course-f32.gguf"]  # no leftovers
    sizes = {f.name: f.stat().st_size for f in tmp_path.iterdir()}
    assert 0.45 < sizes["course-f16.gguf"] / sizes["course-f32.gguf"] < 0.55


def test_gguf_q8_0_holds_exactly_the_q8_0_rounded_weights(merged, adapters, tmp_path):
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    path = export_gguf(merged["model"], adapters["tok"], tmp_path / "course-q8_0.gguf", dtype="q8_0")
    model = _read_gguf(path)
    read, original = model.state_dict(), merged["model"].state_dict()
    q8 = GGMLQuantizationType.Q8_0
    for name, w in original.items():
        w = w.float().numpy()  # bfloat16 -> float32 is exact
        expected = w if w.ndim == 1 else dequantize(quantize(w, q8), q8)  # norms stay float32
        np.testing.assert_array_equal(read[name].numpy(), expected, err_msg=name)
    with torch.no_grad():
        logits = model(**merged["ids"]).logits
    mask = merged["ids"]["attention_mask"].bool()
    # 8-bit blocks move the logits, but hardly the predicted tokens
    diff = (logits - merged["logits"])[mask].abs()
    # measured: max 0.68, mean 0.054, on logits of std about 6.6
    assert diff.max() < 1.5 and diff.mean() < 0.1
    assert (logits.argmax(-1) == merged["logits"].argmax(-1))[mask].float().mean() > 0.95


def test_the_gguf_tokenizer_encodes_like_the_original(merged, adapters, tmp_path):
    tok = adapters["tok"]
    path = export_gguf(merged["model"], tok, tmp_path / "course.gguf", dtype="f16")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read = AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    texts = TEXTS + ["héllo  wörld 123\n\tcode: x = {1, 2}", "  two leading spaces 🙂", "</s><pad> specials"]
    for text in texts:
        assert read(text)["input_ids"] == tok(text)["input_ids"], text
        assert read.decode(read(text)["input_ids"], skip_special_tokens=True) == text.replace("</s><pad>", "")
    assert (read.bos_token, read.eos_token, read.pad_token) == ("<s>", "</s>", "<pad>")


def test_q_and_k_rows_are_reordered_into_llamacpps_rope_pairs():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    w = torch.arange(2 * 8, dtype=torch.float32)[:, None].repeat(1, 3)  # 2 heads of dim 8; row i holds i
    p = permute_for_rope_pairs(w, n_heads=2)
    assert p[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]
    # transformers' GGUF reader undoes it
    back = LlamaTensorProcessor({"num_attention_heads": 2, "num_key_value_heads": 2})._reverse_permute_weights(
        p.numpy(), 2, 2
    )
    np.testing.assert_array_equal(back, w.numpy())
    assert gguf_tensor_name("model.layers.7.self_attn.k_proj.weight") == "blk.7.attn_k.weight"
    with pytest.raises(ValueError, match="has no GGUF name"):
        gguf_tensor_name("model.layers.0.self_attn.q_proj.bias")


def test_tied_embeddings_are_written_once_and_tied_again_on_reading(tmp_path):
    from gguf import GGUFReader

    model = _tiny_llama(tie_word_embeddings=True)
    path = export_gguf(model, None, tmp_path / "tied.gguf", dtype="f32")  # weights only: no tokenizer
    names = {t.name for t in GGUFReader(path).tensors}
    assert "token_embd.weight" in names and "output.weight" not in names
    read = _read_gguf(path)
    assert read.config.tie_word_embeddings
    ids = torch.tensor([[0, 5, 77, 300, 1001]])
    with torch.no_grad():
        assert torch.equal(read(ids).logits, model(ids).logits)


def test_export_gguf_refuses_what_it_cannot_write(adapters, tmp_path):
    tok = adapters["tok"]
    tiny = _tiny_llama()
    with pytest.raises(ValueError, match=r"dtype must be one of \['f16', 'f32', 'q8_0'\], got 'q4_k'"):
        export_gguf(tiny, tok, tmp_path / "m.gguf", dtype="q4_k")
    with pytest.raises(ValueError, match="must end in .gguf"):
        export_gguf(tiny, tok, tmp_path / "m.bin")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_gguf(tiny, tok, tmp_path / "nowhere" / "m.gguf")
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=1002, n_positions=64))
    with pytest.raises(ValueError, match="Llama models only; this one is 'gpt2'"):
        export_gguf(gpt2, tok, tmp_path / "m.gguf")
    base4 = _base_4bit()[0]
    with pytest.raises(ValueError, match="quantized with bitsandbytes.*merge the adapter"):
        export_gguf(base4, tok, tmp_path / "m.gguf")
    with pytest.raises(ValueError, match="merge it first"):
        export_gguf(_with_random_adapter(_tiny_llama(), 0), tok, tmp_path / "m.gguf")
    # a tokenizer GGUF's byte-level BPE cannot describe (a sentencepiece-style one)
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    sp = Tokenizer(models.BPE(vocab={"a": 0, "b": 1}, merges=[]))
    sp.pre_tokenizer = pre_tokenizers.Metaspace()
    with pytest.raises(ValueError, match="not a byte-level BPE GGUF can name.*tokenizer=None"):
        export_gguf(tiny, PreTrainedTokenizerFast(tokenizer_object=sp), tmp_path / "m.gguf")
    assert list(tmp_path.iterdir()) == []  # nothing written by any refusal


def test_a_chat_models_tokenizer_and_template_go_into_the_file(tmp_path):
    """SmolLM2's tokenizer (tests/standins.py) splits digits before GPT-2's split: llama.cpp calls that
    pre-tokenizer "smollm"; its chat template goes into the file for llama.cpp's --jinja and Ollama."""
    import gguf
    import standins
    from transformers import AutoTokenizer

    folder = standins.write_chat_model(tmp_path / "smollm2")
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    path = export_gguf(model, tok, tmp_path / "chat.gguf")
    fields = gguf.GGUFReader(path).fields
    assert fields["tokenizer.ggml.pre"].contents() == "smollm"
    assert fields["tokenizer.chat_template"].contents() == tok.chat_template
    assert fields["tokenizer.ggml.eos_token_id"].contents() == tok.eos_token_id == 2
    assert "output.weight" not in {t.name for t in gguf.GGUFReader(path).tensors}, "tied: written once"
    ids = torch.tensor([tok("Mira lives in Oslo 12.", add_special_tokens=False)["input_ids"]])
    read = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="chat.gguf", dtype=torch.float32)
    with torch.no_grad():
        assert (read(ids).logits - model(ids).logits).abs().max() < 0.05
    course = export_gguf(_tiny_llama(), AutoTokenizer.from_pretrained(course_model_path()), tmp_path / "c.gguf")
    assert gguf.GGUFReader(course).fields["tokenizer.ggml.pre"].contents() == "gpt-2"


def test_a_failed_export_leaves_no_partial_file_and_keeps_the_old_one(adapters, tmp_path, monkeypatch):
    import gguf

    path = tmp_path / "model.gguf"
    path.write_bytes(b"the previous export")
    broken = _tiny_llama()
    with torch.no_grad():
        broken.model.layers[1].mlp.down_proj.weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match="down_proj.weight' holds inf or nan"):
        export_gguf(broken, adapters["tok"], path)
    assert [f.name for f in tmp_path.iterdir()] == ["model.gguf"] and path.read_bytes() == b"the previous export"

    def disk_full(self, **kwargs):  # half the data written, then the disk is full
        self.fout[0].write(b"\0" * 1000)
        raise OSError("No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_gguf(_tiny_llama(), adapters["tok"], path)
    assert [f.name for f in tmp_path.iterdir()] == ["model.gguf"] and path.read_bytes() == b"the previous export"


# --- 3. several adapters on one base ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def multi(adapters):
    return load_adapters(_base_4bit()[0], {"a": adapters["a"], "b": adapters["b"]})


def test_switching_adapters_gives_each_adapters_own_model(multi, adapters):
    for name in ("b", "a"):
        use_adapter(multi, name)
        with torch.no_grad():
            assert torch.equal(multi(**adapters["batch"]).logits, adapters["logits"][name])


@pytest.mark.parametrize("side", ["right", "left"])
def test_a_routed_batch_equals_each_adapter_run_alone_on_its_rows(adapters, side):
    from qlora_course.evaluation import bnb_training_path

    tok = adapters["tok"]
    tok.padding_side = side
    try:
        batch = tok(TEXTS, return_tensors="pt", padding=True)
    finally:
        tok.padding_side = "right"
    names = ["a", "b", BASE_ADAPTER, "b"]
    mask = batch["attention_mask"].bool()
    # a fresh base kept on bitsandbytes' float32 path from its first call (see routed_logits' docstring)
    model = load_adapters(_base_4bit()[0], {"a": adapters["a"], "b": adapters["b"]})
    with bnb_training_path(model):
        routed = routed_logits(model, batch["input_ids"], batch["attention_mask"], names)
        for i, name in enumerate(names):
            single = tok(TEXTS[i], return_tensors="pt")
            if name == BASE_ADAPTER:
                with model.disable_adapter(), torch.no_grad():
                    alone = model(**single).logits[0]
            else:
                use_adapter(model, name)
                with torch.no_grad():
                    alone = model(**single).logits[0]
            # measured: 0 to 1.1e-5, from padding (another attention path) and each adapter's B A x
            # being computed on its sub-batch
            torch.testing.assert_close(routed[i][mask[i]], alone, rtol=0, atol=1e-4, msg=f"row {i} ({name}, {side})")
        # the same padded batch, one adapter at a time: the routed rows are those rows
        for name in ("a", "b"):
            use_adapter(model, name)
            with torch.no_grad():
                whole = model(**batch).logits
            rows = [i for i, n in enumerate(names) if n == name]
            torch.testing.assert_close(routed[rows][mask[rows]], whole[rows][mask[rows]], rtol=0, atol=1e-4)
    # and the routing matters: row 0 through "b" (the last `whole`) is another model
    assert (routed[0][mask[0]] - whole[0][mask[0]]).abs().max() > 1e-2


def test_routed_generate_answers_each_prompt_with_its_adapter(multi, adapters):
    tok = adapters["tok"]
    prompts, names = ["The cat", "Once upon a time there was"], ["a", "b"]
    together = routed_generate(multi, tok, prompts, names, max_new_tokens=6)
    alone = [routed_generate(multi, tok, [p], [n], max_new_tokens=6)[0] for p, n in zip(prompts, names, strict=True)]
    assert together == alone
    assert tok.padding_side == "right"  # restored
    swapped = routed_generate(multi, tok, prompts, ["b", "a"], max_new_tokens=6)
    assert swapped != together


def test_unknown_adapter_names_and_bad_routing_are_refused(multi, adapters):
    batch = adapters["batch"]
    with pytest.raises(ValueError, match=r"unknown adapter name\(s\) \['c'\]: the model has \['a', 'b'\]"):
        use_adapter(multi, "c")
    with pytest.raises(ValueError, match=r"unknown adapter name\(s\) \['typo'\]"):
        routed_logits(multi, batch["input_ids"], batch["attention_mask"], ["a", "typo", "b", "a"])
    with pytest.raises(ValueError, match="3 names for a batch of 4 rows"):
        routed_logits(multi, batch["input_ids"], batch["attention_mask"], ["a", "b", "a"])
    with pytest.raises(TypeError, match="one per row"):
        routed_logits(multi, batch["input_ids"], batch["attention_mask"], "a")
    with pytest.raises(ValueError, match="non-empty mapping"):
        load_adapters(_tiny_llama(), {})
