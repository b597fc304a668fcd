"""Plausible wrong answers for every exercise: each must make that exercise's tests fail.

``WRONG[lesson][question]`` is a list of replacement code for the answer cell.
"""

WRONG = {
    "01_lowrank_lora": {
        "q1": [
            # forgets the singular values
            "def rank_r_approx(W, r):\n    U, S, Vh = torch.linalg.svd(W, full_matrices=False)\n    return U[:, :r] @ Vh[:r]\n",
            # keeps the smallest r singular values instead of the largest
            "def rank_r_approx(W, r):\n    U, S, Vh = torch.linalg.svd(W, full_matrices=False)\n    return (U[:, -r:] * S[-r:]) @ Vh[-r:]\n",
        ],
        "q2": [
            # forgets the scale alpha / r
            "def lora_forward(x, W, b, A, B, alpha, r):\n    return x @ W.T + b + (x @ A.T) @ B.T\n",
            # uses alpha * r
            "def lora_forward(x, W, b, A, B, alpha, r):\n    return x @ W.T + b + alpha * r * (x @ A.T) @ B.T\n",
        ],
        "q3": [
            "def merged_weight(W, A, B, alpha, r):\n    return W + B @ A\n",
            "def merged_weight(W, A, B, alpha, r):\n    return W + (r / alpha) * (B @ A)\n",
        ],
        "q4": [
            # right only for square layers
            "def lora_trainable(d_in, d_out, r):\n    return 2 * r * d_in\n",
            "def lora_trainable(d_in, d_out, r):\n    return r * d_in * d_out\n",
        ],
    },
    "02_nf4": {
        "q1": [
            # natural log instead of bits
            "def entropy_in_bits(counts):\n    p = counts.double() / counts.sum()\n    p = p[p > 0]\n    return float(-(p * torch.log(p)).sum())\n",
            # forgets to drop zero counts: NaN
            "def entropy_in_bits(counts):\n    p = counts.double() / counts.sum()\n    return float(-(p * torch.log2(p)).sum())\n",
        ],
        "q2": [
            # symmetric 8 + 8 code without an exact zero
            "def normal_float_code(offset=0.9677083):\n    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double())\n    v = torch.cat([pos, -pos]).float().sort().values\n    return v / v.max()\n",
            # forgets to rescale: the raw quantiles, from -1.85 to 1.85
            "def normal_float_code(offset=0.9677083):\n    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double())\n    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8)[:-1].double())\n    return torch.cat([pos, torch.zeros(1, dtype=torch.float64), neg]).float().sort().values\n",
        ],
        "q3": [
            # one absmax for the whole tensor instead of per block
            "def quantize_blocks(x, code, blocksize):\n    a = x.abs().max()\n    mid = (code[1:] + code[:-1]) / 2\n    return torch.bucketize(x / a, mid), a.repeat(x.numel() // blocksize)\n",
            # rounds the raw values without scaling them by the absmax
            "def quantize_blocks(x, code, blocksize):\n    blocks = x.view(-1, blocksize)\n    mid = (code[1:] + code[:-1]) / 2\n    return torch.bucketize(x, mid), blocks.abs().amax(dim=1)\n",
        ],
        "q4": [
            # first index in the low nibble
            "def pack_pairs(idx):\n    return (idx[1::2] * 16 + idx[0::2]).to(torch.uint8)\n",
            # forgets to combine: keeps one index per byte
            "def pack_pairs(idx):\n    return idx[0::2].to(torch.uint8)\n",
        ],
    },
    "03_double_quant": {
        "q1": [
            # counts the second-level constants as 8-bit too
            "def constant_bits(blocksize, blocksize2=None):\n    if blocksize2 is None:\n        return 32 / blocksize\n    return 8 / blocksize + 8 / (blocksize * blocksize2)\n",
            # forgets the second-level constants
            "def constant_bits(blocksize, blocksize2=None):\n    return 32 / blocksize if blocksize2 is None else 8 / blocksize\n",
        ],
        "q2": [
            # does not centre: offset left in the values
            "def centre_and_scale(absmax, blocksize=256):\n    blocks = absmax.view(-1, blocksize)\n    a2 = blocks.abs().amax(dim=1)\n    return (blocks / a2[:, None]).reshape(-1), a2, absmax.mean()\n",
            # one scale for all blocks
            "def centre_and_scale(absmax, blocksize=256):\n    off = absmax.mean()\n    c = absmax - off\n    a2 = c.abs().max().repeat(absmax.numel() // blocksize)\n    return c / c.abs().max(), a2, off\n",
        ],
        "q3": [
            # the farthest instead of the nearest
            "def nearest_index(scaled, code):\n    return (scaled[:, None] - code[None, :]).abs().argmax(dim=1)\n",
            # first code value at or above: rounds up, not to the nearest
            "def nearest_index(scaled, code):\n    return torch.searchsorted(code, scaled).clamp(max=code.numel() - 1)\n",
        ],
    },
    "04_memory": {
        "q1": [
            # forgets grouped-query attention: k and v as wide as q
            "def llama_param_count(config):\n    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size\n    per_layer = 4 * h * h + 3 * h * i + 2 * h\n    return config.num_hidden_layers * per_layer + 2 * v * h + h\n",
            # forgets the norms and always counts two embedding matrices
            "def llama_param_count(config):\n    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size\n    kv = config.num_key_value_heads * (h // config.num_attention_heads)\n    return config.num_hidden_layers * (2 * h * h + 2 * h * kv + 3 * h * i) + 2 * v * h\n",
        ],
        "q2": [
            # one hidden state per token for the whole model, not per layer
            "def checkpointed_layer_inputs(config, batch_size, seq_len, bytes_per_value):\n    return batch_size * seq_len * config.hidden_size * bytes_per_value\n",
            # the intermediate (MLP) width instead of the hidden size
            "def checkpointed_layer_inputs(config, batch_size, seq_len, bytes_per_value):\n    return config.num_hidden_layers * batch_size * seq_len * config.intermediate_size * bytes_per_value\n",
        ],
        "q3": [
            # forgets the absmax of each block
            "def adamw8bit_bytes(numel):\n    return 8 * numel if numel < 4096 else 2 * numel\n",
            # rounds the number of blocks down
            "def adamw8bit_bytes(numel):\n    return 8 * numel if numel < 4096 else 2 * numel + 8 * (numel // 256)\n",
            # no 32-bit fallback for small tensors
            "def adamw8bit_bytes(numel):\n    import math\n    return 2 * numel + 8 * math.ceil(numel / 256)\n",
        ],
    },
    "05_qlora_finetune": {
        "q1": [
            # forgets the EOS: the model never learns to stop
            "def completion_only_example(tokenizer, prompt, completion):\n    p = tokenizer(prompt)['input_ids']\n    c = tokenizer(completion, add_special_tokens=False)['input_ids']\n    return {'input_ids': p + c, 'labels': [-100] * len(p) + c}\n",
            # trains on the prompt as well
            "def completion_only_example(tokenizer, prompt, completion):\n    ids = tokenizer(prompt)['input_ids'] + tokenizer(completion, add_special_tokens=False)['input_ids'] + [tokenizer.eos_token_id]\n    return {'input_ids': ids, 'labels': list(ids)}\n",
        ],
        "q2": [
            # bitsandbytes' default 4-bit type, FP4
            "def qlora_bnb_config(compute_dtype):\n    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype)\n",
            # no double quantization, compute dtype left at its default
            "def qlora_bnb_config(compute_dtype):\n    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4')\n",
        ],
        "q3": [
            # keeps lm_head
            "def lora_target_modules(model):\n    return sorted({n.rsplit('.', 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})\n",
            # attention only
            "def lora_target_modules(model):\n    return ['k_proj', 'o_proj', 'q_proj', 'v_proj']\n",
        ],
    },
}
