"""qlora_course: the helper package of the QLoRA course.

One module per idea, in the order the lessons meet them:

- :mod:`qlora_course.lowrank`  -- SVD and the best rank-r approximation (lesson 1)
- :mod:`qlora_course.lora`     -- LoRA / rsLoRA linear layers, DoRA as their subclass, parameter counting (lesson 1)
- :mod:`qlora_course.nf4`      -- NF4, FP4, Int4 blockwise 4-bit quantization, bit for bit as bitsandbytes (lesson 2)
- :mod:`qlora_course.double_quant` -- the 8-bit dynamic map and double quantization of the constants (lesson 3)
- :mod:`qlora_course.toy`      -- the small MLP and synthetic tasks lesson 1 fine-tunes in seconds
- :mod:`qlora_course.data`     -- the generated corpus and instruction task, and a profile's data (``load_task_data``)
- :mod:`qlora_course.models`   -- the course's small Llama (in ``assets/``), weight normality, device and dtype
- :mod:`qlora_course.profiles` -- the profile registry: a name (``course-tiny``, ``colab-t4``, ...) to model and data
- :mod:`qlora_course.loading`  -- loading models and tokenizers: the hub check, the NF4 config, the pad token
- :mod:`qlora_course.settings` -- lessons 5 and 6's fine-tuning settings per profile, a checked ``TrainingSettings``
- :mod:`qlora_course.evaluation` -- perplexity, completion losses, exact match, choice accuracy
- :mod:`qlora_course.finetune` -- completion-only supervised fine-tuning by hand (what SFTTrainer does)
- :mod:`qlora_course.llama`    -- Llama architecture facts: linear layers, shapes, parameter counts, LoRA targets
- :mod:`qlora_course.estimator` -- training memory estimated part by part from a config, and fit checks (lesson 4)
- :mod:`qlora_course.meters`   -- training memory measured on any device, the CPU included (lesson 4)
- :mod:`qlora_course.paging`   -- paged optimizer state, simulated against a device budget (lesson 4)
- :mod:`qlora_course.methods`  -- QLoRA, LoRA, full fine-tuning and QDoRA run the same way with TRL (lesson 5)
- :mod:`qlora_course.chat`     -- chat data, the course template, assistant-only labels, a data validator (lesson 6)
- :mod:`qlora_course.shipping` -- adapters saved and checked, GGUF export, several adapters on one base (lesson 6)
- :mod:`qlora_course.distributed` -- a 4-bit model sharded with FSDP2, its checks, per-rank bytes, torchrun (lesson 7)
- :mod:`qlora_course.fsdp_train` -- the torchrun script: QLoRA steps sharded or not, losses and bytes as JSON (lesson 7)
- :mod:`qlora_course.validate` -- the small argument checks the modules share (``positive_int``, ...)
- :mod:`qlora_course.notebook` -- the setup every notebook runs first (versions, seed, device, dtype)
- :mod:`qlora_course.checks`   -- the kind-of-answer checks every exercise test runs first
- :mod:`qlora_course.public_tests`  -- where the public exercise tests live (``grader.check`` reads them)
- :mod:`qlora_course.report`   -- key figures a notebook records for the course summary
"""

__version__ = "0.1.0"
