"""The contract of each public function, as the fuzz test (``tests/test_fuzz_contracts.py``) reads it.

``EXAMPLES["module.name"]`` builds one *valid* call: a function returning the keyword arguments. The
fuzz test replaces one argument at a time by bad values of the kind that argument's valid value
suggests (a str for a list of names, 0 or 1e4 for a count, NaN for a number, a meta or empty tensor,
a dtype's name...) and requires each call to either return a result that passes the function's
postcondition (``POST``, by default: no NaN or infinity anywhere in the result) or raise ``ValueError``
or ``TypeError`` naming the argument. ``ACCEPTS`` lists bad-looking values an argument legitimately
takes (a dtype's name where dtypes are read by name).

``NOT_YET`` names the public functions the fuzz test does not call yet, with the reason: mostly those
that need a model, a tokenizer, files or processes (``tests/test_contracts.py`` and each module's
tests cover their inputs case by case). A public function in neither dictionary fails the coverage
test: a new function declares its contract here.
"""

from __future__ import annotations

import copy
import functools

import torch

_g = torch.Generator().manual_seed(0)


def _randn(*shape):
    return torch.randn(*shape, generator=_g)


def _config(**changes):
    from transformers import LlamaConfig

    sizes = dict(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
    )
    return LlamaConfig(**{**sizes, **changes})


def _setup(**changes):
    from qlora_course.estimator import TrainingSetup

    return TrainingSetup(**changes)


@functools.cache
def _tokenizer():
    from transformers import AutoTokenizer

    from qlora_course.models import course_model_path

    return AutoTokenizer.from_pretrained(course_model_path())


@functools.cache
def _tiny_llama():
    """A two-layer Llama 32 wide with the course tokenizer's vocabulary: every call in a millisecond."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = _tokenizer()
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return LlamaForCausalLM(config).eval()


def _model():
    return copy.deepcopy(_tiny_llama())


def _rows(n: int = 4):
    from datasets import Dataset

    words = ["mat", "hat", "cat", "bat"]
    return Dataset.from_list([{"prompt": f"The {w} sat on the", "completion": f" {w}"} for w in words[:n]])


def _conversation():
    """A generated two-turn conversation, as lesson 6's data holds them."""
    return [
        {"role": "user", "content": "Question: Is mat a home?"},
        {"role": "assistant", "content": "home"},
        {"role": "user", "content": "What about hat?"},
        {"role": "assistant", "content": "job"},
    ]


def _chats():
    from datasets import Dataset

    return Dataset.from_list([{"messages": _conversation()}])


@functools.cache
def _tiny_4bit():
    """A two-layer Llama 64 wide loaded in 4 bits (NF4, bfloat16 storage) as a hub model is."""
    import tempfile

    from transformers import BitsAndBytesConfig, LlamaForCausalLM

    torch.manual_seed(0)
    folder = tempfile.mkdtemp()
    LlamaForCausalLM(_config(num_hidden_layers=2)).save_pretrained(folder)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_quant_storage=torch.bfloat16)
    return LlamaForCausalLM.from_pretrained(folder, quantization_config=quant, dtype=torch.bfloat16)


def _model4():
    return copy.deepcopy(_tiny_4bit())


def _lora_mlp():
    from qlora_course.lora import add_lora

    torch.manual_seed(0)
    mlp = torch.nn.Sequential()
    mlp.add_module("fc1", torch.nn.Linear(8, 16))
    mlp.add_module("fc2", torch.nn.Linear(16, 4))
    add_lora(mlp, ["fc1", "fc2"], r=2, alpha=4)  # in place
    return mlp


def _lora_state():
    from qlora_course.lora import lora_state_dict

    return lora_state_dict(_lora_mlp())


def _packed():
    from qlora_course import nf4

    return nf4.quantize_nf4(_randn(200))


EXAMPLES = {
    # nf4
    "nf4.nf4_code": lambda: {"offset": 0.9677083},
    "nf4.fp4_code": lambda: {},
    "nf4.int4_code": lambda: {},
    "nf4.check_blocksize": lambda: {"blocksize": 64},
    "nf4.quantize_blockwise_4bit": lambda: {"x": _randn(200), "code": torch.linspace(-1, 1, 16), "blocksize": 64},
    "nf4.dequantize_blockwise_4bit": lambda: dict(
        zip(("packed", "absmax"), _packed(), strict=True), shape=(200,), code=torch.linspace(-1, 1, 16), blocksize=64
    ),
    "nf4.quantize_nf4": lambda: {"x": _randn(10, 20), "blocksize": 64},
    "nf4.dequantize_nf4": lambda: dict(zip(("packed", "absmax"), _packed(), strict=True), shape=(200,), blocksize=64),
    "nf4.pack_4bit": lambda: {"idx": torch.randint(0, 16, (20,), generator=_g)},
    "nf4.unpack_4bit": lambda: {"packed": torch.randint(0, 256, (10, 1), generator=_g, dtype=torch.uint8), "n": 19},
    "nf4.round_trip": lambda: {"x": _randn(200), "code": "nf4", "blocksize": 64},
    "nf4.quantization_error": lambda: {"x": _randn(200), "code": "fp4", "blocksize": 64},
    "nf4.code_usage": lambda: {"x": _randn(200), "code": "nf4", "blocksize": 64},
    "nf4.entropy_bits": lambda: {"shares": torch.tensor([0.5, 0.25, 0.25, 0.0])},
    "nf4.bits_per_parameter": lambda: {"blocksize": 64, "code_bits": 4, "absmax_bits": 32},
    "nf4.quantize_model_weights": lambda: {
        "model": torch.nn.Sequential(torch.nn.Linear(8, 8)),
        "code": "nf4",
        "blocksize": 64,
        "skip": ["lm_head"],
    },
    # double quantization
    "double_quant.dynamic_map": lambda: {"signed": True},
    "double_quant.quantize_blockwise_8bit": lambda: {
        "x": _randn(600),
        "code": torch.linspace(-1, 1, 256),
        "blocksize": 256,
        "exact": False,
    },
    "double_quant.dequantize_blockwise_8bit": lambda: {
        "q": torch.randint(0, 256, (600,), generator=_g, dtype=torch.uint8),
        "absmax": torch.rand(3, generator=_g) + 0.1,
        "code": torch.linspace(-1, 1, 256),
        "blocksize": 256,
    },
    "double_quant.double_quantize": lambda: {"absmax": torch.rand(600, generator=_g) + 0.01, "blocksize": 256},
    "double_quant.dequantize_absmax": lambda: {
        "q": torch.randint(0, 256, (600,), generator=_g, dtype=torch.uint8),
        "absmax2": torch.rand(3, generator=_g) + 0.1,
        "offset": 0.05,
        "blocksize": 256,
    },
    "double_quant.constant_bits_per_parameter": lambda: {"blocksize": 64, "blocksize2": 256, "double": True},
    "double_quant.quantized_llama_bytes": lambda: {"config": _config(), "blocksize": 64, "double": True},
    # low rank
    "lowrank.check_matrix": lambda: {"W": _randn(6, 5), "name": "W"},
    "lowrank.low_rank_approx": lambda: {"W": _randn(6, 5), "r": 2},
    "lowrank.low_rank_factors": lambda: {"W": _randn(6, 5), "r": 2},
    "lowrank.relative_error": lambda: {"W": _randn(6, 5), "ranks": [1, 3]},
    "lowrank.energy_kept": lambda: {"W": _randn(6, 5), "r": 2},
    # Llama shapes and LoRA counts
    "llama.target_list": lambda: {"target_modules": ["q_proj", "v_proj"]},
    "llama.check_targets": lambda: {"config": _config(), "target_modules": ["q_proj", "v_proj"]},
    "llama.check_config": lambda: {"config": _config()},
    "llama.llama_linear_shapes": lambda: {"config": _config()},
    "llama.llama_param_counts": lambda: {"config": _config()},
    "llama.parameter_tensor_sizes": lambda: {"config": _config()},
    "lora.lora_param_count": lambda: {"d_in": 64, "d_out": 32, "r": 4},
    "lora.lora_trainable_params": lambda: {"config": _config(), "r": 4, "target_modules": ["q_proj", "down_proj"]},
    "lora.add_lora": lambda: {
        "model": torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4)),
        "target_modules": ["0", "1"],
        "r": 2,
        "alpha": 4.0,
        "dropout": 0.0,
        "use_rslora": False,
        "use_dora": False,
    },
    "lora.count_parameters": lambda: {"model": torch.nn.Linear(4, 4)},
    # memory
    "estimator.estimate_training_memory": lambda: {"config": _config(), "setup": _setup()},
    "estimator.activation_items": lambda: {
        "config": _config(),
        "method": "lora",
        "act_dtype": torch.bfloat16,
        "lora_dropout": 0.1,
        "lora_r": 8,
        "lora_targets": ["q_proj"],
    },
    "estimator.optimizer_state_bytes": lambda: {"sizes": [1000, 5000], "optimizer": "adamw", "param_bytes": 4},
    "estimator.adamw8bit_state_bytes": lambda: {"numel": 10000, "blocksize": 256, "min_8bit_size": 4096},
    "estimator.gpu_terms": lambda: {"config": _config(), "setup": _setup(), "context_bytes": 4e8, "reserve": 0.1},
    "estimator.backward_transients": lambda: {"config": _config(), "setup": _setup()},
    "estimator.check_fit": lambda: {"needed": 1e9, "device": "cpu", "available": 8e9, "headroom": 0.9},
    "paging.training_trace": lambda: {
        "steps": 4,
        "weights": 100,
        "optimizer_state": 200,
        "activations": 50,
        "spike_step": 2,
        "spike_factor": 4.0,
    },
    "distributed.per_rank_parts": lambda: {"parts": {"weights": 1e9, "activations": 2e8}, "world_size": 2},
    "distributed.estimate_per_rank": lambda: {"config": _config(), "setup": _setup(), "world_size": 2},
    "distributed.gathered_layer_bytes": lambda: {"config": _config(), "setup": _setup()},
    "distributed.packed_rows": lambda: {"out_features": 64, "in_features": 32, "storage": torch.float32},
    "distributed.shard_rows": lambda: {"rows": 10, "world_size": 3},
    "distributed.first_departure": lambda: {"reference": [1.0, 2.0, 3.0], "candidate": [1.0, 2.0, 3.5], "tol": 0.1},
    # evaluation, fine-tuning, meters, data
    "evaluation.bootstrap_interval": lambda: {"values": _randn(20), "level": 0.95, "n_boot": 100, "seed": 0},
    "finetune.warmup_cosine": lambda: {"step": 3, "steps": 10, "warmup": 2},
    "finetune.cast_trainable": lambda: {"model": torch.nn.Linear(4, 4), "dtype": torch.float64},
    "finetune.training_precision": lambda: {"method": "qlora", "compute_dtype": torch.bfloat16},
    "meters.tensor_bytes": lambda: {"tensors": [_randn(4, 4), _randn(3)]},
    "data.make_corpus": lambda: {"n_docs": 3, "seed": 0},
    "data.make_task_examples": lambda: {"n": 5, "seed": 0},
    "data.held_out_words": lambda: {"share": 0.18, "seed": 0},
    "data.format_example": lambda: {"text": "The cat sat.", "word": "cat"},
    "data.corpus_digest": lambda: {"docs": ["a b", "c d"]},
    "models.weight_normality": lambda: {"w": _randn(20, 20)},
    "report.within": lambda: {"value": 1.0, "reference": 1.05, "tol": 0.1},
    "toy.evaluate": lambda: {
        "model": torch.nn.Linear(4, 3),
        "X": _randn(10, 4),
        "y": torch.randint(0, 3, (10,), generator=_g),
    },
    "shipping.permute_for_rope_pairs": lambda: {"weight": _randn(16, 8), "n_heads": 2},
    "shipping.gguf_tensor_name": lambda: {"name": "model.layers.0.self_attn.q_proj.weight"},
    "syllabus.lesson": lambda: {"key": 3},
    # evaluation and fine-tuning, on a tiny Llama with the course tokenizer
    "evaluation.perplexity": lambda: {
        "model": _model(),
        "tokenizer": _tokenizer(),
        "texts": ["The cat sat.", "A dog ran."],
        "batch_size": 2,
        "progress": False,
    },
    "evaluation.token_agreement": lambda: {
        "reference": _model(),
        "model": _model(),
        "tokenizer": _tokenizer(),
        "texts": ["The cat sat.", "A dog ran."],
        "batch_size": 2,
        "progress": False,
    },
    "evaluation.generate_completions": lambda: {
        "model": _model(),
        "tokenizer": _tokenizer(),
        "prompts": ["The cat sat on the"],
        "batch_size": 2,
        "max_new_tokens": 2,
        "progress": False,
    },
    "evaluation.exact_match": lambda: {
        "model": _model(),
        "tokenizer": _tokenizer(),
        "dataset": _rows(),
        "batch_size": 2,
        "max_new_tokens": 2,
        "limit": 3,
        "progress": False,
    },
    "evaluation.completion_loss": lambda: {
        "model": _model(),
        "tokenizer": _tokenizer(),
        "dataset": _rows(),
        "batch_size": 2,
        "limit": 3,
        "max_length": 32,
    },
    "evaluation.completion_nlls": lambda: {
        "model": _model(),
        "tokenizer": _tokenizer(),
        "prompts": ["The cat sat on the", "A dog ran to the"],
        "completions": [" mat", " park"],
        "batch_size": 2,
        "eos": True,
        "max_length": 32,
    },
    "evaluation.choice_accuracy": lambda: {
        "model": _model(),
        "tokenizer": _tokenizer(),
        "dataset": _rows(),
        "choices": [" mat", " hat"],
        "limit": 3,
        "batch_size": 2,
    },
    "evaluation.majority_accuracy": lambda: {"train": _rows(), "test": _rows(2)},
    "finetune.tokenize_example": lambda: {
        "tokenizer": _tokenizer(),
        "prompt": "The cat sat on the",
        "completion": " mat",
    },
    "finetune.fit_to_length": lambda: {"dataset": _rows(), "tokenizer": _tokenizer(), "max_length": 12},
    "finetune.train_sft": lambda: {
        "model": _model(),
        "tokenizer": _tokenizer(),
        "dataset": _rows(),
        "steps": 1,
        "batch_size": 2,
        "lr": 1e-3,
        "warmup": 0,
        "seed": 0,
        "progress": False,
    },
    # lesson 6's chat data, labels and replies, with the course tokenizer's chat template
    "chat.make_chat_data": lambda: {
        "n_train": 4,
        "n_validation": 2,
        "n_test": 2,
        "seed": 0,
        "n_test_unseen": 2,
        "held_out_share": 0.18,
    },
    "chat.conversation_problem": lambda: {"messages": _conversation()},
    "chat.has_generation_markers": lambda: {"template": _tokenizer().chat_template},
    "chat.score_chat": lambda: {
        "answers": [["home", "job"], ["pet", "pet"]],
        "replies": [["home", "pet"], ["pet", "pet"]],
        "follow_up": ["other", "repeat"],
    },
    "chat.rendered_turns": lambda: {"tokenizer": _tokenizer(), "messages": _conversation()},
    "chat.assistant_labels": lambda: {"tokenizer": _tokenizer(), "messages": _conversation(), "max_length": 64},
    "chat.labelled_conversations": lambda: {
        "dataset": _chats(),
        "tokenizer": _tokenizer(),
        "max_length": 64,
    },
    "chat.validate_conversations": lambda: {
        "source": [{"messages": _conversation()}],
        "tokenizer": _tokenizer(),
        "max_length": 64,
    },
    "chat.chat_replies": lambda: {
        "model": _model(),
        "tokenizer": _tokenizer(),
        "conversations": [_conversation()],
        "own_answers": True,
        "batch_size": 2,
        "max_new_tokens": 2,
    },
    # lesson 7's helpers, on a tiny 4-bit Llama; adapters on a small MLP
    "distributed.four_bit_layers": lambda: {"model": _model4()},
    "distributed.decoder_layers": lambda: {"model": _model4()},
    "distributed.check_shardable": lambda: {"model": _model4(), "world_size": 2},
    "distributed.keep_4bit_on_training_path": lambda: {"model": _model4()},
    "distributed.rank_bytes": lambda: {"model": _model4()},
    "distributed.fsdp1_unit": lambda: {"module": _model4().model.layers[0]},
    "distributed.adapter_state_dict": lambda: {
        "state_dict": {
            "model.layers.0.q_proj.lora_A.default.weight": _randn(2, 8),
            "model.layers.0.q_proj.base_layer.weight": _randn(8, 8),
        },
        "adapter_name": "default",
    },
    "lora.lora_layers": lambda: {"model": _lora_mlp()},
    "lora.lora_state_dict": lambda: {"model": _lora_mlp()},
    "lora.load_lora_state_dict": lambda: {"model": _lora_mlp(), "state": _lora_state()},
    "models.weight_normality_report": lambda: {"model": torch.nn.Sequential(torch.nn.Linear(8, 8))},
    # the validators themselves
    "validate.positive_int": lambda: {"value": 3, "name": "n"},
    "validate.non_negative_int": lambda: {"value": 0, "name": "n"},
    "validate.positive_number": lambda: {"value": 0.5, "name": "x"},
    "validate.probability": lambda: {"value": 0.5, "name": "p"},
    "validate.texts": lambda: {"value": ["a", "b"], "name": "texts"},
    "validate.names": lambda: {"value": ["a", "b"], "name": "targets"},
    "validate.float_dtype": lambda: {"value": torch.float32, "name": "dtype"},
    "validate.device_name": lambda: {"value": "cpu", "name": "device"},
    "validate.device": lambda: {"value": "cpu", "name": "device"},
    "validate.shape": lambda: {"value": (2, 3), "name": "shape"},
    "validate.tensor": lambda: {"value": _randn(3), "name": "x"},
    "validate.module": lambda: {"value": torch.nn.Linear(2, 2), "name": "model"},
    "validate.real_numbers": lambda: {"value": [1.0, 2.5], "name": "losses"},
    "validate.tokenizer": lambda: {"value": _tokenizer(), "name": "tokenizer"},
}

# bad-looking values an argument legitimately takes: {"module.name": {argument: (values...)}}
ACCEPTS = {
    "finetune.cast_trainable": {"dtype": ("float32", "bfloat16", "float16", "bf16", "fp16", "fp32")},
    "finetune.training_precision": {"compute_dtype": ("float32", "bfloat16", "float16", "bf16", "fp16", "fp32")},
    "estimator.activation_items": {"act_dtype": ("float32", "bfloat16", "float16", "bf16", "fp16", "fp32")},
    "validate.float_dtype": {"value": ("float32", "bfloat16", "float16", "bf16", "fp16", "fp32")},
    "distributed.packed_rows": {"storage": ("float32", "bfloat16", "float16", "bf16", "fp16", "fp32")},
}

NEEDS_MODEL = "needs a model or a tokenizer: tests/test_contracts.py and the module's tests cover its inputs"
NEEDS_FILES = "reads or writes files, a hub or processes: covered by the module's own tests"
NOT_A_CALL = "a class, a context manager or a notebook helper, not a computation on arguments"

NOT_YET = {
    **{
        f"evaluation.{n}": "takes token ids a model has seen: covered by tests/test_course_model.py"
        for n in ("summed_next_token_nll", "next_token_nll_per_row")
    },
    "finetune.truncate_example": "takes a tokenized example: covered by tests/test_qlora_pipeline.py",
    "finetune.collate": "takes tokenized examples: covered by tests/test_qlora_pipeline.py",
    "chat.question_words": "reads back generated questions only: covered by tests/test_chat.py",
    **{
        f"distributed.{n}": "shards with FSDP2: needs a process group (tests/test_distributed.py)"
        for n in ("shard_qlora",)
    },
    "distributed.free_port": "takes no argument",
    "distributed.launch": NEEDS_FILES,
    **{f"meters.{n}": NEEDS_MODEL for n in ("saved_tensor_bytes", "measure_training_memory")},
    "estimator.available_memory": "measures this machine's memory: tests/test_memory.py",
    "paging.trace_from_estimates": "takes MemoryEstimate objects: tests/test_memory.py",
    **{f"models.{n}": NEEDS_FILES for n in ("course_model_path", "checkpoint_files", "checkpoint_bytes")},
    "models.course_model_config": "the course model's config builder: tests/test_course_model.py",
    "models.build_tokenizer": "trains a tokenizer: tests/test_course_model.py",
    "models.pick_device_and_dtype": "takes no argument",
    **{
        f"data.{n}": "covered by tests/test_course_setup.py"
        for n in ("make_world", "make_task_data", "guanaco_to_prompt_completion", "load_task_data")
    },
    **{
        f"shipping.{n}": NEEDS_FILES
        for n in (
            "adapter_bytes",
            "save_adapter",
            "check_adapter_fits",
            "load_adapter_onto",
            "export_gguf",
            "load_adapters",
            "use_adapter",
            "routed_logits",
            "routed_generate",
        )
    },
    **{
        f"loading.{n}": NEEDS_FILES
        for n in ("check_hub_access", "load_model_and_tokenizer", "load_base", "match_vocabulary")
    },
    "loading.check_profile": NEEDS_FILES,
    "loading.nf4_config": "builds a BitsAndBytesConfig: tests/test_hub_paths.py",
    "loading.set_pad_token": NEEDS_MODEL,
    **{
        f"methods.{n}": NEEDS_MODEL
        for n in (
            "checkpointing_args",
            "enable_checkpointing",
            "training_args",
            "run_setup",
            "estimate_run",
            "method_fits_gpu",
            "estimate_method",
            "evaluate_task",
            "run_method",
            "build_method",
            "measure_step",
            "release_memory",
        )
    },
    **{f"optimizer_comparison.{n}": NEEDS_FILES for n in ("run", "load_stored", "gap_summary")},
    **{f"profiles.{n}": NEEDS_FILES for n in ("resolve_profile", "is_hub_id", "hub_config", "profile_config")},
    **{f"settings.{n}": "reads a profile: tests/test_hub_paths.py" for n in ("training_settings", "chat_settings")},
    "report.record": "writes the figures file: tests/test_lesson_figures.py",
    "public_tests.exercise_tests_dir": NEEDS_FILES,
    "syllabus.names": "takes no argument",
    **{f"toy.{n}": "trains or builds the toy tasks: tests/test_lora.py" for n in ("make_tasks", "train")},
    **{
        f"notebook.{n}": NOT_A_CALL
        for n in (
            "seed_everything",
            "package_versions",
            "setup_notebook",
            "static_widgets",
            "interactive",
            "usable_cpus",
            "set_threads",
            "figure_description",
            "describe_figures",
        )
    },
    **{
        f"checks.{n}": "the exercises' public checks: they raise AssertionError for the learner, by design"
        for n in (
            "expect_tensor",
            "expect_number",
            "expect_int",
            "expect_bool",
            "expect_pair",
            "require",
        )
    },
    "validate.shown": "formats any value: it has no bad input",
    "validate.flag": "covered through every flag argument",
    "validate.dataset": NEEDS_FILES,
    "evaluation.evaluating": NOT_A_CALL,
    "evaluation.bnb_training_path": NOT_A_CALL,
}
