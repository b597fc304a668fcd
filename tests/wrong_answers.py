"""Answers for every exercise, replacing the answer cell, that the notebook tests try on its tests.

``WRONG[lesson][question]``: plausible mistakes, the common ones among them; each must fail the public
checks (the learner's ``grader.check`` says what is wrong) and score nothing. ``ALTERNATIVES``: other
right answers, which must pass everything. ``CHEATS``: answers that may pass the public checks but must
score nothing.
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
            # the update added without the base layer's bias
            "def lora_forward(x, W, b, A, B, alpha, r):\n    return x @ W.T + (alpha / r) * (x @ A.T) @ B.T\n",
        ],
        "q3": [
            # dropout on the whole layer: the base output is dropped too
            "class LoRALayer(nn.Module):\n    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):\n        super().__init__()\n        self.base = base.requires_grad_(False)\n        self.lora_A = nn.Linear(base.in_features, r, bias=False)\n        self.lora_B = nn.Linear(r, base.out_features, bias=False)\n        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))\n        nn.init.zeros_(self.lora_B.weight)\n        self.drop = nn.Dropout(dropout)\n        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r\n        self.merged = False\n    def forward(self, x):\n        x = self.drop(x)\n        out = self.base(x)\n        return out if self.merged else out + self.scaling * self.lora_B(self.lora_A(x))\n    def merge(self):\n        pass\n    def unmerge(self):\n        pass\n",
            # A set to zero instead of B (B keeps nn.Linear's random init): starts unchanged, but not PEFT's init
            "class LoRALayer(nn.Module):\n    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):\n        super().__init__()\n        self.base = base.requires_grad_(False)\n        self.lora_A = nn.Linear(base.in_features, r, bias=False)\n        self.lora_B = nn.Linear(r, base.out_features, bias=False)\n        nn.init.zeros_(self.lora_A.weight)\n        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()\n        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r\n        self.merged = False\n    def forward(self, x):\n        out = self.base(x)\n        return out if self.merged else out + self.scaling * self.lora_B(self.lora_A(self.dropout(x)))\n    def merge(self):\n        if not self.merged:\n            with torch.no_grad():\n                self.base.weight += self.scaling * self.lora_B.weight @ self.lora_A.weight\n            self.merged = True\n    def unmerge(self):\n        if self.merged:\n            with torch.no_grad():\n                self.base.weight -= self.scaling * self.lora_B.weight @ self.lora_A.weight\n            self.merged = False\n",
            # rsLoRA ignored
            "class LoRALayer(nn.Module):\n    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):\n        super().__init__()\n        self.base = base.requires_grad_(False)\n        self.lora_A = nn.Linear(base.in_features, r, bias=False)\n        self.lora_B = nn.Linear(r, base.out_features, bias=False)\n        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))\n        nn.init.zeros_(self.lora_B.weight)\n        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()\n        self.scaling = alpha / r\n        self.merged = False\n    def forward(self, x):\n        out = self.base(x)\n        return out if self.merged else out + self.scaling * self.lora_B(self.lora_A(self.dropout(x)))\n    def merge(self):\n        if not self.merged:\n            with torch.no_grad():\n                self.base.weight += self.scaling * self.lora_B.weight @ self.lora_A.weight\n            self.merged = True\n    def unmerge(self):\n        if self.merged:\n            with torch.no_grad():\n                self.base.weight -= self.scaling * self.lora_B.weight @ self.lora_A.weight\n            self.merged = False\n",
            # the base left trainable
            "class LoRALayer(nn.Module):\n    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):\n        super().__init__()\n        self.base = base\n        self.lora_A = nn.Linear(base.in_features, r, bias=False)\n        self.lora_B = nn.Linear(r, base.out_features, bias=False)\n        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))\n        nn.init.zeros_(self.lora_B.weight)\n        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()\n        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r\n        self.merged = False\n    def forward(self, x):\n        out = self.base(x)\n        return out if self.merged else out + self.scaling * self.lora_B(self.lora_A(self.dropout(x)))\n    def merge(self):\n        if not self.merged:\n            with torch.no_grad():\n                self.base.weight += self.scaling * self.lora_B.weight @ self.lora_A.weight\n            self.merged = True\n    def unmerge(self):\n        if self.merged:\n            with torch.no_grad():\n                self.base.weight -= self.scaling * self.lora_B.weight @ self.lora_A.weight\n            self.merged = False\n",
            # merge() that adds the update every time it is called, and a forward that adds it after merging
            "class LoRALayer(nn.Module):\n    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):\n        super().__init__()\n        self.base = base.requires_grad_(False)\n        self.lora_A = nn.Linear(base.in_features, r, bias=False)\n        self.lora_B = nn.Linear(r, base.out_features, bias=False)\n        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))\n        nn.init.zeros_(self.lora_B.weight)\n        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()\n        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r\n    def forward(self, x):\n        return self.base(x) + self.scaling * self.lora_B(self.lora_A(self.dropout(x)))\n    def merge(self):\n        with torch.no_grad():\n            self.base.weight += self.scaling * self.lora_B.weight @ self.lora_A.weight\n    def unmerge(self):\n        with torch.no_grad():\n            self.base.weight -= self.scaling * self.lora_B.weight @ self.lora_A.weight\n",
        ],
        "q4": [
            "def merged_weight(W, A, B, alpha, r):\n    return W + B @ A\n",
            "def merged_weight(W, A, B, alpha, r):\n    return W + (r / alpha) * (B @ A)\n",
        ],
        "q5": [
            # the norm over columns (one per input feature) instead of rows
            "def dora_forward(x, W0, b, A, B, magnitude, scaling):\n    W = W0 + scaling * (B @ A)\n    return x @ (magnitude[:, None] * W / torch.linalg.norm(W, dim=0)).T + b\n",
            # the norm of W0 alone, not of the updated weight
            "def dora_forward(x, W0, b, A, B, magnitude, scaling):\n    W = W0 + scaling * (B @ A)\n    return (magnitude / torch.linalg.norm(W0, dim=1)) * (x @ W.T) + b\n",
            # the bias scaled with the weight
            "def dora_forward(x, W0, b, A, B, magnitude, scaling):\n    W = W0 + scaling * (B @ A)\n    return (magnitude / torch.linalg.norm(W, dim=1)) * (x @ W.T + b)\n",
        ],
        "q6": [
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
            # rounds up to the next code value instead of to the nearest
            "def quantize_blocks(x, code, blocksize):\n    blocks = x.float().view(-1, blocksize)\n    a = blocks.abs().amax(dim=1)\n    s = (blocks / a.clamp(min=1e-38)[:, None]).reshape(-1)\n    return torch.bucketize(s, code).clamp(max=15), a\n",
            # rounds down
            "def quantize_blocks(x, code, blocksize):\n    blocks = x.float().view(-1, blocksize)\n    a = blocks.abs().amax(dim=1)\n    s = (blocks / a.clamp(min=1e-38)[:, None]).reshape(-1)\n    return (torch.bucketize(s, code, right=True) - 1).clamp(min=0), a\n",
        ],
        "q4": [
            # first index in the low nibble
            "def pack_pairs(idx):\n    return (idx[1::2] * 16 + idx[0::2]).to(torch.uint8)\n",
            # forgets to combine: keeps one index per byte
            "def pack_pairs(idx):\n    return idx[0::2].to(torch.uint8)\n",
            # bitsandbytes' own layout, shape (n/2, 1): right bytes, wrong shape for this exercise
            "def pack_pairs(idx):\n    return (idx[0::2] * 16 + idx[1::2]).to(torch.uint8)[:, None]\n",
        ],
        "q5": [
            # low nibble first
            "def dequantize_blocks(packed, absmax, code, blocksize):\n    p = packed.reshape(-1).long()\n    idx = torch.stack([p & 0xF, p >> 4], dim=1).reshape(-1)\n    return code[idx] * absmax.repeat_interleave(blocksize)\n",
            # absmax repeated block after block (repeat) instead of each block's own
            "def dequantize_blocks(packed, absmax, code, blocksize):\n    p = packed.reshape(-1).long()\n    idx = torch.stack([p >> 4, p & 0xF], dim=1).reshape(-1)\n    return code[idx] * absmax.repeat(blocksize)\n",
            # forgets the absmax
            "def dequantize_blocks(packed, absmax, code, blocksize):\n    p = packed.reshape(-1).long()\n    return code[torch.stack([p >> 4, p & 0xF], dim=1).reshape(-1)]\n",
        ],
    },
    "03_double_quant": {
        "q1": [
            # counts the second-level constants as 8-bit too
            "def constant_bits(blocksize, blocksize2=None):\n    if blocksize2 is None:\n        return 32 / blocksize\n    return 8 / blocksize + 8 / (blocksize * blocksize2)\n",
            # forgets the second-level constants
            "def constant_bits(blocksize, blocksize2=None):\n    return 32 / blocksize if blocksize2 is None else 8 / blocksize\n",
        ],
        "q3": [
            # does not centre: offset left in the values
            "def centre_and_scale(absmax, blocksize=256):\n    blocks = absmax.view(-1, blocksize)\n    a2 = blocks.abs().amax(dim=1)\n    return (blocks / a2[:, None]).reshape(-1), a2, absmax.mean()\n",
            # one scale for all blocks
            "def centre_and_scale(absmax, blocksize=256):\n    off = absmax.mean()\n    c = absmax - off\n    a2 = c.abs().max().repeat(absmax.numel() // blocksize)\n    return c / c.abs().max(), a2, off\n",
        ],
        "q4": [
            # the farthest instead of the nearest
            "def nearest_index(scaled, code):\n    return (scaled[:, None] - code[None, :]).abs().argmax(dim=1)\n",
            # first code value at or above: rounds up, not to the nearest
            "def nearest_index(scaled, code):\n    return torch.searchsorted(code, scaled).clamp(max=code.numel() - 1)\n",
            # rounds down: the last code value at or below
            "def nearest_index(scaled, code):\n    return (torch.searchsorted(code, scaled, right=True) - 1).clamp(min=0)\n",
        ],
        "q2": [
            # linear points instead of midpoints
            "def dynamic_map_signed():\n    vals = [torch.tensor([0.0, 1.0])]\n    for i in range(7):\n        m = torch.linspace(0.1, 1.0, 2**i + 1)[1:] * 10.0 ** (i - 6)\n        vals += [m, -m]\n    return torch.cat(vals).sort().values\n",
            # exponents the wrong way round: the finest steps at the largest values
            "def dynamic_map_signed():\n    vals = [torch.tensor([0.0, 1.0])]\n    for i in range(7):\n        b = torch.linspace(0.1, 1.0, 2**i + 1)\n        m = (b[:-1] + b[1:]) / 2 * 10.0 ** (-i)\n        vals += [m, -m]\n    return torch.cat(vals).sort().values\n",
            # a uniform 8-bit grid
            "def dynamic_map_signed():\n    return torch.linspace(-1, 1, 256)\n",
        ],
        "q5": [
            # forgets the offset
            "def reconstruct_absmax(q, code, absmax2, offset, blocksize=256):\n    q = q.reshape(-1).long()\n    return code[q] * absmax2.repeat_interleave(blocksize)[: q.numel()]\n",
            # uses the code index itself instead of the code value
            "def reconstruct_absmax(q, code, absmax2, offset, blocksize=256):\n    q = q.reshape(-1).float()\n    return q / 255 * absmax2.repeat_interleave(blocksize)[: q.numel()] + offset\n",
            # one scale for everything
            "def reconstruct_absmax(q, code, absmax2, offset, blocksize=256):\n    return code[q.reshape(-1).long()] * absmax2.max() + offset\n",
        ],
    },
    "04_memory": {
        "q1": [
            # forgets grouped-query attention: k and v as wide as q
            "def llama_param_count(config):\n    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size\n    per_layer = 4 * h * h + 3 * h * i + 2 * h\n    return config.num_hidden_layers * per_layer + 2 * v * h + h\n",
            # forgets the norms and always counts two embedding matrices
            "def llama_param_count(config):\n    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size\n    kv = config.num_key_value_heads * (h // config.num_attention_heads)\n    return config.num_hidden_layers * (2 * h * h + 2 * h * kv + 3 * h * i) + 2 * v * h\n",
            # counts lm_head even when it is the embedding itself (tied)
            "def llama_param_count(config):\n    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size\n    kv = config.num_key_value_heads * (h // config.num_attention_heads)\n    return config.num_hidden_layers * (2 * h * h + 2 * h * kv + 3 * h * i + 2 * h) + 2 * v * h + h\n",
        ],
        "q3": [
            # one hidden state per token for the whole model, not per layer
            "def checkpointed_layer_inputs(config, batch_size, seq_len, bytes_per_value):\n    return batch_size * seq_len * config.hidden_size * bytes_per_value\n",
            # the intermediate (MLP) width instead of the hidden size
            "def checkpointed_layer_inputs(config, batch_size, seq_len, bytes_per_value):\n    return config.num_hidden_layers * batch_size * seq_len * config.intermediate_size * bytes_per_value\n",
            # forgets the batch
            "def checkpointed_layer_inputs(config, batch_size, seq_len, bytes_per_value):\n    return config.num_hidden_layers * seq_len * config.hidden_size * bytes_per_value\n",
            # forgets the sequence length
            "def checkpointed_layer_inputs(config, batch_size, seq_len, bytes_per_value):\n    return config.num_hidden_layers * batch_size * config.hidden_size * bytes_per_value\n",
        ],
        "q4": [
            # forgets the absmax of each block
            "def adamw8bit_bytes(numel):\n    return 8 * numel if numel < 4096 else 2 * numel\n",
            # rounds the number of blocks down
            "def adamw8bit_bytes(numel):\n    return 8 * numel if numel < 4096 else 2 * numel + 8 * (numel // 256)\n",
            # no 32-bit fallback for small tensors
            "def adamw8bit_bytes(numel):\n    import math\n    return 2 * numel + 8 * math.ceil(numel / 256)\n",
        ],
        "q2": [
            # k and v as wide as q (no grouped-query attention)
            "def attention_saved_bytes(config, bytes_per_value):\n    return 4 * config.hidden_size * bytes_per_value + 4 * config.num_attention_heads\n",
            # the log-sum-exp in the activation dtype
            "def attention_saved_bytes(config, bytes_per_value):\n    d = config.hidden_size // config.num_attention_heads\n    q, kv = config.num_attention_heads * d, config.num_key_value_heads * d\n    return bytes_per_value * (2 * q + 2 * kv + config.num_attention_heads)\n",
            # forgets the attention output
            "def attention_saved_bytes(config, bytes_per_value):\n    d = config.hidden_size // config.num_attention_heads\n    q, kv = config.num_attention_heads * d, config.num_key_value_heads * d\n    return bytes_per_value * (q + 2 * kv) + 4 * config.num_attention_heads\n",
        ],
        "q5": [
            # the code tables counted per tensor
            "def bnb_adamw_state_bytes(sizes, eight_bit):\n    if not eight_bit:\n        return 8 * sum(sizes)\n    return sum(adamw8bit_bytes(n) + (2048 if n >= 4096 else 0) for n in sizes)\n",
            # 8-bit for every tensor, small ones included
            "def bnb_adamw_state_bytes(sizes, eight_bit):\n    import math\n    if not eight_bit:\n        return 8 * sum(sizes)\n    return sum(2 * n + 8 * math.ceil(n / 256) for n in sizes) + 2048\n",
            # 32-bit state as one moment
            "def bnb_adamw_state_bytes(sizes, eight_bit):\n    if not eight_bit:\n        return 4 * sum(sizes)\n    return sum(adamw8bit_bytes(n) for n in sizes) + (2048 if any(n >= 4096 for n in sizes) else 0)\n",
        ],
    },
    "05_qlora_finetune": {
        "q1": [
            # forgets the EOS: the model never learns to stop
            "def completion_only_example(tokenizer, prompt, completion):\n    p = tokenizer(prompt)['input_ids']\n    c = tokenizer(completion, add_special_tokens=False)['input_ids']\n    return {'input_ids': p + c, 'labels': [-100] * len(p) + c}\n",
            # trains on the prompt as well
            "def completion_only_example(tokenizer, prompt, completion):\n    ids = tokenizer(prompt)['input_ids'] + tokenizer(completion, add_special_tokens=False)['input_ids'] + [tokenizer.eos_token_id]\n    return {'input_ids': ids, 'labels': list(ids)}\n",
            # trains only the EOS token: the completion's own tokens get -100
            "def completion_only_example(tokenizer, prompt, completion):\n    p = tokenizer(prompt)['input_ids']\n    c = tokenizer(completion, add_special_tokens=False)['input_ids']\n    return {'input_ids': p + c + [tokenizer.eos_token_id], 'labels': [-100] * (len(p) + len(c)) + [tokenizer.eos_token_id]}\n",
        ],
        "q3": [
            # bitsandbytes' default 4-bit type, FP4
            "def qlora_bnb_config(compute_dtype):\n    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype)\n",
            # no double quantization, compute dtype left at its default
            "def qlora_bnb_config(compute_dtype):\n    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4')\n",
        ],
        "q4": [
            # keeps lm_head
            "def lora_target_modules(model):\n    return sorted({n.rsplit('.', 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})\n",
            # attention only
            "def lora_target_modules(model):\n    return ['k_proj', 'o_proj', 'q_proj', 'v_proj']\n",
        ],
        "q2": [
            # pads on the left
            "def pad_batch(examples, pad_id):\n    n = max(len(e['input_ids']) for e in examples)\n    ids = torch.tensor([[pad_id] * (n - len(e['input_ids'])) + e['input_ids'] for e in examples])\n    labels = torch.tensor([[-100] * (n - len(e['labels'])) + e['labels'] for e in examples])\n    mask = (torch.arange(n)[None, :] >= torch.tensor([n - len(e['input_ids']) for e in examples])[:, None]).long()\n    return {'input_ids': ids, 'attention_mask': mask, 'labels': labels}\n",
            # labels padded with the pad id: padding gets trained
            "def pad_batch(examples, pad_id):\n    n = max(len(e['input_ids']) for e in examples)\n    ids = torch.tensor([e['input_ids'] + [pad_id] * (n - len(e['input_ids'])) for e in examples])\n    labels = torch.tensor([e['labels'] + [pad_id] * (n - len(e['labels'])) for e in examples])\n    return {'input_ids': ids, 'attention_mask': (ids != pad_id).long(), 'labels': labels}\n",
            # labels recomputed from the ids: the prompt is trained
            "def pad_batch(examples, pad_id):\n    n = max(len(e['input_ids']) for e in examples)\n    ids = torch.tensor([e['input_ids'] + [pad_id] * (n - len(e['input_ids'])) for e in examples])\n    mask = torch.tensor([[1] * len(e['input_ids']) + [0] * (n - len(e['input_ids'])) for e in examples])\n    return {'input_ids': ids, 'attention_mask': mask, 'labels': ids.masked_fill(mask == 0, -100)}\n",
        ],
        "q5": [
            # forgets the scale alpha / r
            "def merge_adapter_16bit(model, adapter_dir, scaling):\n    from safetensors.torch import load_file\n    state = load_file(str(Path(adapter_dir) / 'adapter_model.safetensors'))\n    with torch.no_grad():\n        for k, A in state.items():\n            if k.endswith('.lora_A.weight'):\n                path = k[len('base_model.model.'):-len('.lora_A.weight')]\n                B = state[k.replace('lora_A', 'lora_B')]\n                w = model.get_submodule(path).weight\n                w.copy_((w.float() + (B.float() @ A.float()).to(w.device)).to(w.dtype))\n    return model\n",
            # merges only the first adapted layer
            "def merge_adapter_16bit(model, adapter_dir, scaling):\n    from safetensors.torch import load_file\n    state = load_file(str(Path(adapter_dir) / 'adapter_model.safetensors'))\n    with torch.no_grad():\n        for k, A in state.items():\n            if k.endswith('.lora_A.weight'):\n                path = k[len('base_model.model.'):-len('.lora_A.weight')]\n                B = state[k.replace('lora_A', 'lora_B')]\n                w = model.get_submodule(path).weight\n                w.copy_((w.float() + scaling * (B.float() @ A.float()).to(w.device)).to(w.dtype))\n                break\n    return model\n",
            # the product the wrong way round (A^T B^T: the transpose of the update)
            "def merge_adapter_16bit(model, adapter_dir, scaling):\n    from safetensors.torch import load_file\n    state = load_file(str(Path(adapter_dir) / 'adapter_model.safetensors'))\n    with torch.no_grad():\n        for k, A in state.items():\n            if k.endswith('.lora_A.weight'):\n                path = k[len('base_model.model.'):-len('.lora_A.weight')]\n                B = state[k.replace('lora_A', 'lora_B')]\n                w = model.get_submodule(path).weight\n                d = (B.float() @ A.float())\n                d = d.T if d.T.shape == w.shape else d * 0\n                w.copy_((w.float() + scaling * d.to(w.device)).to(w.dtype))\n    return model\n",
        ],
    },
}


# Other correct answers: the tests must pass on each (a right answer written another way never fails).
ALTERNATIVES = {
    "01_lowrank_lora": {
        "q1": [
            "def rank_r_approx(W, r):\n    U, S, Vh = torch.linalg.svd(W)\n    return U[:, :r] @ torch.diag(S[:r]) @ Vh[:r, :]\n"
        ],
        "q2": [
            "def lora_forward(x, W, b, A, B, alpha, r):\n    import torch.nn.functional as F\n    return F.linear(x, W, b) + F.linear(F.linear(x, A), B) * alpha / r\n"
        ],
        "q3": [
            # functional dropout, merge state kept as the delta itself, rsLoRA written as r ** -0.5
            "class LoRALayer(nn.Module):\n    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):\n        super().__init__()\n        for p in base.parameters():\n            p.requires_grad = False\n        self.base = base\n        self.p = dropout\n        self.lora_A = nn.Linear(base.in_features, r, bias=False, dtype=base.weight.dtype)\n        self.lora_B = nn.Linear(r, base.out_features, bias=False, dtype=base.weight.dtype)\n        torch.nn.init.kaiming_uniform_(self.lora_A.weight, a=5 ** 0.5)\n        self.lora_B.weight.data.zero_()\n        self.scaling = alpha * r ** -0.5 if use_rslora else alpha / r\n        self._delta = None\n    def forward(self, x):\n        y = self.base(x)\n        if self._delta is not None:\n            return y\n        return y + self.lora_B(self.lora_A(torch.nn.functional.dropout(x, self.p, self.training))) * self.scaling\n    @torch.no_grad()\n    def merge(self):\n        if self._delta is None:\n            self._delta = self.scaling * self.lora_B.weight @ self.lora_A.weight\n            self.base.weight.add_(self._delta)\n    @torch.no_grad()\n    def unmerge(self):\n        if self._delta is not None:\n            self.base.weight.sub_(self._delta)\n            self._delta = None\n",
        ],
        "q4": ["def merged_weight(W, A, B, alpha, r):\n    return W + torch.einsum('or,ri->oi', B, A) * (alpha / r)\n"],
        "q5": [
            "def dora_forward(x, W0, b, A, B, magnitude, scaling):\n    import torch.nn.functional as F\n    W = W0 + scaling * B @ A\n    W = W * (magnitude / W.norm(p=2, dim=1)).unsqueeze(1)\n    return F.linear(x, W, b)\n"
        ],
        "q6": ["def lora_trainable(d_in, d_out, r):\n    return r * d_in + d_out * r\n"],
    },
    "02_nf4": {
        # float32 probabilities, the natural way
        "q1": [
            "def entropy_in_bits(counts):\n    p = counts / counts.sum()\n    return -sum(float(q) * math.log2(float(q)) for q in p if q > 0)\n"
        ],
        "q2": [
            "def normal_float_code(offset=0.9677083):\n    from statistics import NormalDist\n    q = NormalDist().inv_cdf\n    pos = [q(p) for p in torch.linspace(offset, 0.5, 9)[:-1].tolist()]\n    neg = [-q(p) for p in torch.linspace(offset, 0.5, 8)[:-1].tolist()]\n    v = torch.tensor(sorted(pos + [0.0] + neg), dtype=torch.float64)\n    return (v / v.max()).float()\n"
        ],
        "q3": [
            "def quantize_blocks(x, code, blocksize):\n    blocks = x.float().reshape(-1, blocksize)\n    absmax = blocks.abs().max(dim=1).values\n    scaled = blocks / torch.where(absmax == 0, torch.ones_like(absmax), absmax)[:, None]\n    idx = (scaled.reshape(-1, 1) - code.reshape(1, -1)).abs().argmin(dim=1)\n    return idx, absmax\n"
        ],
        "q4": [
            "def pack_pairs(idx):\n    pairs = idx.view(-1, 2).to(torch.uint8)\n    return (pairs[:, 0] << 4) | pairs[:, 1]\n"
        ],
        "q5": [
            "def dequantize_blocks(packed, absmax, code, blocksize):\n    hi = (packed.reshape(-1) // 16).long()\n    lo = (packed.reshape(-1) % 16).long()\n    idx = torch.empty(2 * packed.numel(), dtype=torch.long)\n    idx[0::2], idx[1::2] = hi, lo\n    return (code[idx].view(-1, blocksize) * absmax.view(-1, 1)).reshape(-1)\n",
        ],
    },
    "03_double_quant": {
        "q1": [
            "def constant_bits(blocksize, blocksize2=None):\n    if blocksize2:\n        return (8 + 32 / blocksize2) / blocksize\n    return 32.0 / blocksize\n"
        ],
        # the offset as a Python float
        "q3": [
            "def centre_and_scale(absmax, blocksize=256):\n    offset = absmax.mean().item()\n    c = (absmax - offset).reshape(-1, blocksize)\n    a2 = c.abs().max(dim=1).values\n    return (c / a2.unsqueeze(1)).flatten(), a2, offset\n"
        ],
        "q4": [
            "def nearest_index(scaled, code):\n    mid = (code[1:] + code[:-1]) / 2\n    return torch.bucketize(scaled, mid)\n"
        ],
        "q2": [
            "def dynamic_map_signed():\n    out = [0.0, 1.0]\n    for i in range(7):\n        b = torch.linspace(0.1, 1, 2 ** i + 1, dtype=torch.float32)\n        mids = ((b[1:] + b[:-1]) / 2 / 10.0 ** (6 - i)).tolist()\n        out += mids + [-m for m in mids]\n    return torch.tensor(sorted(out), dtype=torch.float32)\n",
        ],
        "q5": [
            "def reconstruct_absmax(q, code, absmax2, offset, blocksize=256):\n    vals = code[q.flatten().to(torch.int64)]\n    out = torch.empty_like(vals)\n    for start in range(0, vals.numel(), blocksize):\n        out[start:start + blocksize] = vals[start:start + blocksize] * absmax2[start // blocksize]\n    return out + torch.as_tensor(offset, dtype=torch.float32)\n",
        ],
    },
    "04_memory": {
        "q1": [
            "def llama_param_count(config):\n    head_dim = getattr(config, 'head_dim', None) or config.hidden_size // config.num_attention_heads\n    h = config.hidden_size\n    attn = h * config.num_attention_heads * head_dim * 2 + h * config.num_key_value_heads * head_dim * 2\n    mlp = 3 * h * config.intermediate_size\n    emb = config.vocab_size * h * (1 if config.tie_word_embeddings else 2)\n    return config.num_hidden_layers * (attn + mlp + 2 * h) + emb + h\n"
        ],
        "q3": [
            "def checkpointed_layer_inputs(config, batch_size, seq_len, bytes_per_value):\n    per_token = config.hidden_size * bytes_per_value\n    return per_token * seq_len * batch_size * config.num_hidden_layers\n"
        ],
        "q4": [
            "def adamw8bit_bytes(numel):\n    if numel < 4096:\n        return 8 * numel\n    blocks = -(-numel // 256)\n    return 2 * (numel + 4 * blocks)\n"
        ],
        "q2": [
            "def attention_saved_bytes(config, bytes_per_value):\n    hd = getattr(config, 'head_dim', None) or config.hidden_size // config.num_attention_heads\n    per_head = {'q': config.num_attention_heads, 'k': config.num_key_value_heads, 'v': config.num_key_value_heads, 'out': config.num_attention_heads}\n    return sum(n * hd * bytes_per_value for n in per_head.values()) + 4 * config.num_attention_heads\n",
        ],
        "q5": [
            "def bnb_adamw_state_bytes(sizes, eight_bit):\n    total = 0\n    has_8bit = False\n    for n in sizes:\n        if eight_bit and n >= 4096:\n            has_8bit = True\n            total += 2 * n + 8 * (-(-n // 256))\n        else:\n            total += 8 * n\n    return total + (2 * 256 * 4 if has_8bit else 0)\n",
        ],
    },
    "05_qlora_finetune": {
        "q1": [
            "def completion_only_example(tokenizer, prompt, completion):\n    ids = tokenizer(prompt)['input_ids']\n    labels = [-100 for _ in ids]\n    for t in tokenizer.encode(completion, add_special_tokens=False) + [tokenizer.eos_token_id]:\n        ids = ids + [t]\n        labels = labels + [t]\n    return dict(input_ids=ids, labels=labels)\n"
        ],
        "q3": [
            "def qlora_bnb_config(compute_dtype):\n    cfg = dict(load_in_4bit=True, bnb_4bit_quant_type='nf4', bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype, bnb_4bit_quant_storage=torch.uint8)\n    return BitsAndBytesConfig(**cfg)\n"
        ],
        # the QLoRA reference script's way: only the 4-bit linear layers
        "q4": [
            "def lora_target_modules(model):\n    import bitsandbytes as bnb\n    names = set()\n    for name, module in model.named_modules():\n        if isinstance(module, bnb.nn.Linear4bit):\n            names.add(name.split('.')[-1])\n    names.discard('lm_head')\n    return sorted(names)\n"
        ],
        "q2": [
            "def pad_batch(examples, pad_id):\n    from torch.nn.utils.rnn import pad_sequence\n    ids = pad_sequence([torch.tensor(e['input_ids']) for e in examples], batch_first=True, padding_value=pad_id)\n    labels = pad_sequence([torch.tensor(e['labels']) for e in examples], batch_first=True, padding_value=-100)\n    mask = pad_sequence([torch.ones(len(e['input_ids']), dtype=torch.long) for e in examples], batch_first=True)\n    return dict(input_ids=ids, attention_mask=mask, labels=labels)\n",
        ],
        "q5": [
            "def merge_adapter_16bit(model, adapter_dir, scaling):\n    from safetensors import safe_open\n    pairs = {}\n    with safe_open(str(Path(adapter_dir) / 'adapter_model.safetensors'), 'pt') as f:\n        for key in f.keys():\n            module, kind = key.removeprefix('base_model.model.').rsplit('.lora_', 1)\n            pairs.setdefault(module, {})[kind[0]] = f.get_tensor(key)\n    for module, ab in pairs.items():\n        layer = model.get_submodule(module)\n        new = layer.weight.detach().float() + scaling * (ab['B'].float() @ ab['A'].float()).to(layer.weight.device)\n        layer.weight.data = new.to(layer.weight.dtype)\n    return model\n",
        ],
    },
}

# Answers that must score nothing although they may pass the public checks: the public tests' expected
# values looked up, and an object that claims to equal anything. One of the second kind is made for
# every question by the notebook tests; the first kind is listed here.
CHEATS = {
    "01_lowrank_lora": {
        "q6": [
            "def lora_trainable(d_in, d_out, r):\n    return {(4096, 4096, 8): 65536, (4096, 11008, 8): 120832}.get((d_in, d_out, r), 0)\n"
        ],
    },
    "03_double_quant": {
        "q1": [
            "def constant_bits(blocksize, blocksize2=None):\n    return 0.5 if blocksize2 is None else 0.126953125\n"
        ],
    },
    "04_memory": {
        "q1": ["def llama_param_count(config):\n    return 6738415616 if config.hidden_size == 4096 else 152384\n"],
        "q4": ["def adamw8bit_bytes(numel):\n    return {30000: 60944, 100: 800}.get(numel, 0)\n"],
    },
}
