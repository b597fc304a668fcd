"""Lesson 1's exercises: low rank and LoRA.

References are the package's finished versions (``qlora_course.lowrank``, ``qlora_course.lora``), which
``tests/test_lora.py`` checks against PEFT; the probes draw shapes, ranks and scales at random, with α
never a multiple of r (so ``alpha // r`` cannot pass for ``alpha / r``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from qlora_grading import Exercise, Tolerance

from .. import llama, lora, lowrank
from ._draw import choice, floats, ints, sample, seed

PEFT_LORA = "peft.tuners.lora.layer.Linear"
PEFT_DORA = "peft.tuners.lora.dora.DoraLinearLayer"
PEFT_INJECT = ("peft.inject_adapter_in_model", "peft.get_peft_model", "peft.tuners.lora.model.LoraModel")


def _alpha(g: torch.Generator, r: int) -> float:
    """A LoRA alpha that is not a multiple of ``r``: ``alpha // r`` and ``alpha / r`` differ by >= 1/4."""
    return r * (ints(g, 0, 4) + floats(g, 0.25, 0.75))


def _rank_r_approx(answer, g):
    W = torch.randn(9, 30, generator=g, dtype=torch.float64)
    out = {f"r={r}": answer(W, r) for r in (1, ints(g, 2, 8), 9)}
    out["float32"] = answer(W.float(), ints(g, 2, 8))
    out["tall float32"] = answer(torch.randn(25, 7, generator=g), ints(g, 1, 7))
    return out


def _lora_forward(answer, g):
    out = {}
    for r in (2, ints(g, 3, 6)):
        x, W, b = torch.randn(2, 3, 10, generator=g), torch.randn(6, 10, generator=g), torch.randn(6, generator=g)
        A, B = torch.randn(r, 10, generator=g), torch.randn(6, r, generator=g)
        out[f"r={r}"] = answer(x, W, b, A, B, _alpha(g, r), r)
    return out


def _lora_forward_reference(x, W, b, A, B, alpha, r):
    """The package's LoRA layer with these weights."""
    layer = lora.LoRALinear(nn.Linear(W.shape[1], W.shape[0], dtype=W.dtype), r=r, alpha=alpha)
    with torch.no_grad():
        layer.base.weight.copy_(W)
        layer.base.bias.copy_(b)
        layer.lora_A.weight.copy_(A)
        layer.lora_B.weight.copy_(B)
    with torch.no_grad():
        return layer(x)


def _lora_layer(answer, g):
    """Three cases (dtype, dropout, rsLoRA); in each, the set-up, the forward, then merge and unmerge. Every
    input is drawn before the answer runs and each part runs on its own, so a merge that raises loses the
    merge's results only."""
    out = {}
    cases = ((False, 0.0, torch.float32), (True, 0.3, torch.float64), (False, 0.5, torch.float32))
    for k, (rslora, drop, dtype) in enumerate(cases):
        r = ints(g, 2, 9)
        alpha = _alpha(g, r)
        base = nn.Linear(32, 24).to(dtype)
        with torch.no_grad():
            base.weight.copy_(torch.randn(24, 32, generator=g))
            base.bias.copy_(torch.randn(24, generator=g))
        x = torch.randn(2, 5, 32, generator=g, dtype=dtype)
        A, B = 0.1 * torch.randn(r, 32, generator=g), 0.1 * torch.randn(24, r, generator=g)
        seeds = seed(g), seed(g)
        try:
            layer = answer(copy.deepcopy(base), r=r, alpha=alpha, dropout=drop, use_rslora=rslora)
            out[f"{k}.scaling"] = float(layer.scaling)
            out[f"{k}.base frozen"] = [not p.requires_grad for p in layer.base.parameters()]
            out[f"{k}.A, B trained"] = [layer.lora_A.weight.requires_grad, layer.lora_B.weight.requires_grad]
            out[f"{k}.A, B dtypes"] = [str(layer.lora_A.weight.dtype), str(layer.lora_B.weight.dtype)]
            layer.train()
            torch.manual_seed(seeds[0])
            out[f"{k}.fresh: the base's output"] = bool(torch.equal(layer(x), layer.base(x)))
            with torch.no_grad():
                layer.lora_A.weight.copy_(A)
                layer.lora_B.weight.copy_(B)
        except Exception:  # noqa: BLE001 - the answer's error costs this case's results
            continue
        try:
            torch.manual_seed(seeds[1])
            out[f"{k}.train"] = layer.train()(x)
            out[f"{k}.eval"] = layer.eval()(x)
        except Exception:  # noqa: BLE001
            pass
        try:
            with torch.no_grad():
                layer.eval().merge()
                layer.merge()  # merging twice changes nothing
                out[f"{k}.merged weight"] = layer.base.weight.clone()
                out[f"{k}.merged output"] = layer(x)
                layer.unmerge()
                out[f"{k}.unmerged weight"] = layer.base.weight.clone()
                out[f"{k}.unmerged output"] = layer(x)
            torch.manual_seed(seeds[1])
            out[f"{k}.unmerged, training output"] = layer.train()(x)
        except Exception:  # noqa: BLE001
            pass
    fresh = answer(nn.Linear(20, 12), r=4, alpha=8.0)
    a = fresh.lora_A.weight
    out["fresh: B zero"] = bool(torch.count_nonzero(fresh.lora_B.weight) == 0)
    out["fresh: A kaiming-uniform"] = bool(a.abs().max() <= 1 / 20**0.5 and a.std() > 0.1)
    wide = answer(nn.Linear(400, 3), r=2, alpha=1.0)
    out["wide: A kaiming-uniform"] = bool(wide.lora_A.weight.abs().max() <= 0.05 and wide.lora_A.weight.std() > 0.025)
    return out


class _Block(nn.Module):
    """A decoder-like block whose linear layers have names a suffix match can confuse (``xq_proj``)."""

    def __init__(self) -> None:
        super().__init__()
        self.q_proj, self.xq_proj, self.v_proj = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)
        self.mlp = nn.ModuleDict({"up": nn.Linear(8, 12), "down": nn.Linear(12, 8)})
        self.norm = nn.LayerNorm(8)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.q_proj(h) * torch.tanh(self.xq_proj(h)) + self.v_proj(h)
        return self.norm(h + self.mlp["down"](torch.relu(self.mlp["up"](h))))


class _Net(nn.Module):
    """Two blocks and an output layer: every linear layer changes the output."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([_Block(), _Block()])
        self.lm_head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(x)


def _factor(module: nn.Module, name: str) -> torch.Tensor:
    """``lora_A``/``lora_B``'s weight, whether it is an ``nn.Linear`` (the course's) or PEFT's dict of them."""
    part = getattr(module, name)
    return part.weight if isinstance(part, nn.Linear) else part["default"].weight


# (targets, r): short names with a decoy (xq_proj), a dotted full name, the output layer targeted
_ADD_LORA_CASES = ((["q_proj", "down"], 2), (["layers.1.v_proj", "up", "lm_head"], 3))


def _add_lora(answer, g):
    out = {}
    for k, (targets, r) in enumerate(_ADD_LORA_CASES):
        net = _Net()
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(0.4 * torch.randn(p.shape, generator=g))
        x = torch.randn(3, 8, generator=g)
        alpha = _alpha(g, r)
        factors = [0.3 * torch.randn(64, generator=g) for _ in range(12)]  # drawn before the answer runs
        try:
            returned = answer(net, list(targets), r, alpha)
        except Exception:  # noqa: BLE001 - the answer's error costs this case's results
            continue
        wrapped = sorted(n for n, m in net.named_modules() if hasattr(m, "lora_A") and hasattr(m, "lora_B"))
        out[f"{k}: wrapped layers"] = wrapped
        out[f"{k}: names returned"] = sorted(returned) if isinstance(returned, (list, tuple)) else repr(returned)
        out[f"{k}: trainable parameters"] = sum(p.numel() for p in net.parameters() if p.requires_grad)
        try:
            with torch.no_grad():
                out[f"{k}: fresh output"] = net(x)
                for j, name in enumerate(wrapped[:6]):
                    module = net.get_submodule(name)
                    for i, which in enumerate(("lora_A", "lora_B")):
                        w = _factor(module, which)
                        w.copy_(factors[2 * j + i][: w.numel()].reshape(w.shape))
                out[f"{k}: output with the factors set"] = net(x)
        except Exception:  # noqa: BLE001
            pass
    return out


def _add_lora_reference(model, target_modules, r, alpha):
    """PEFT's LoRA injected into ``model`` (its names matching), everything but the adapters frozen."""
    from peft import LoraConfig, inject_adapter_in_model

    inject_adapter_in_model(LoraConfig(r=r, lora_alpha=alpha, target_modules=list(target_modules)), model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    return [n for n, m in model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "lora_B")]


def _extract_lora(answer, g):
    out = {}
    for k, (m, n, dtype) in enumerate(
        ((12, 20, torch.float64), (30, 16, torch.float32), (ints(g, 8, 24), 24, torch.float64))
    ):
        W0 = torch.randn(m, n, generator=g, dtype=dtype)
        # a fine-tuning update: a few strong directions plus small noise, singular values well apart
        U, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))
        V, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
        S = 0.5 * 0.6 ** torch.arange(min(m, n), dtype=torch.float64)
        W_tuned = W0 + ((U[:, : S.numel()] * S) @ V[:, : S.numel()].T).to(dtype)
        r = ints(g, 1, 6)
        alpha = _alpha(g, r)
        result = answer(W_tuned, W0, r, alpha)
        ok = isinstance(result, (tuple, list)) and len(result) == 2 and all(isinstance(t, torch.Tensor) for t in result)
        out[f"{k}: (A, B)"] = ok
        if ok:
            A, B = result
            out[f"{k}: shapes"] = [list(A.shape), list(B.shape)]
            out[f"{k}: dtypes"] = [str(A.dtype), str(B.dtype)]
            if A.shape == (r, n) and B.shape == (m, r):
                out[f"{k}: merged weight"] = (W0.double() + alpha / r * (B.double() @ A.double())).to(dtype)
    return out


def _extract_lora_reference(W_tuned, W0, r, alpha):
    """The truncated SVD of the update, its singular values split evenly between B and A, divided by s."""
    U, S, Vh = torch.linalg.svd(W_tuned - W0, full_matrices=False)
    root = (S[:r] / (alpha / r)).sqrt()
    return root[:, None] * Vh[:r], U[:, :r] * root


def _dora_layer(answer, g):
    out = {}
    for k, (rslora, dtype) in enumerate(((False, torch.float32), (True, torch.float64))):
        r = ints(g, 2, 7)
        alpha = _alpha(g, r)
        base = nn.Linear(20, 14).to(dtype)
        with torch.no_grad():
            base.weight.copy_(torch.randn(14, 20, generator=g))
            base.bias.copy_(torch.randn(14, generator=g))
        x = torch.randn(2, 5, 20, generator=g, dtype=dtype)
        A, B = 0.3 * torch.randn(r, 20, generator=g), 0.3 * torch.randn(14, r, generator=g)
        grow = 0.5 + torch.rand(14, generator=g)  # the magnitude "after training"
        probe_w = torch.randn(2, 5, 14, generator=g, dtype=dtype)
        try:
            layer = answer(copy.deepcopy(base), r=r, alpha=alpha, use_rslora=rslora)
            out[f"{k}: magnitude at the start"] = layer.magnitude.detach().clone()
            out[f"{k}: magnitude trained"] = bool(layer.magnitude.requires_grad)
            with torch.no_grad():
                out[f"{k}: fresh output"] = layer(x)
                layer.lora_A.weight.copy_(A)
                layer.lora_B.weight.copy_(B)
                layer.magnitude.mul_(grow.to(dtype))
        except Exception:  # noqa: BLE001 - the answer's error costs this case's results
            continue
        try:
            y = layer.train()(x)
            out[f"{k}: output"] = y.detach().clone()
            (y * probe_w).sum().backward()
            for name, p in (("magnitude", layer.magnitude), ("A", layer.lora_A.weight), ("B", layer.lora_B.weight)):
                out[f"{k}: gradient of {name}"] = p.grad.clone() if p.grad is not None else "no gradient"
        except Exception:  # noqa: BLE001
            pass
        try:
            with torch.no_grad():
                layer.eval().merge()
                layer.merge()  # merging twice changes nothing
                out[f"{k}: merged weight"] = layer.base.weight.clone()
                out[f"{k}: merged output"] = layer(x)
                layer.unmerge()
                out[f"{k}: unmerged weight"] = layer.base.weight.clone()
                out[f"{k}: unmerged output"] = layer(x)
        except Exception:  # noqa: BLE001
            pass
    return out


def _llama_config(g):
    from transformers import LlamaConfig

    heads = choice(g, [4, 6, 8])
    kv = choice(g, [h for h in (1, 2, heads) if heads % h == 0])
    head_dim = choice(g, [None, 16, 24])  # None: hidden_size / heads
    hidden = heads * choice(g, [8, 12, 16])
    return LlamaConfig(
        hidden_size=hidden,
        intermediate_size=ints(g, 40, 400),
        num_hidden_layers=ints(g, 1, 40),
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=head_dim,
        vocab_size=1000,
    )


def _lora_trainable(answer, g):
    from transformers import LlamaConfig

    out = {}
    llama7b = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32)
    out["7B, q and v, r=8"] = answer(llama7b, 8, ["q_proj", "v_proj"])
    # grouped-query attention and a head_dim that is not hidden_size / heads, every layer targeted
    gqa = LlamaConfig(
        hidden_size=96,
        intermediate_size=200,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        vocab_size=1000,
    )
    out["GQA, head_dim 32, all linear"] = answer(gqa, ints(g, 1, 16), list(llama.LLAMA_LINEAR))
    for k in range(4):
        config = _llama_config(g)
        targets = sample(g, list(llama.LLAMA_LINEAR), ints(g, 1, 7))
        out[f"{k}: {len(targets)} targets"] = answer(config, ints(g, 1, 64), targets)
    return out


EXERCISES = [
    Exercise(
        "rank_r_approx",
        points=2,
        probe=_rank_r_approx,
        reference=lowrank.low_rank_approx,
        # an SVD's error is about max(m, n) * eps * ||W||: 16 x 30 columns
        tolerance=Tolerance(ulps=512),
        finished=(lowrank.low_rank_approx, lowrank.low_rank_factors),
        wrong=(
            # forgets the singular values
            """
def rank_r_approx(W, r):
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return U[:, :r] @ Vh[:r]
""",
            # keeps the smallest r singular values instead of the largest
            """
def rank_r_approx(W, r):
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return (U[:, -r:] * S[-r:]) @ Vh[-r:]
""",
            # drops the last kept singular value (r - 1 pieces)
            """
def rank_r_approx(W, r):
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return (U[:, :r - 1] * S[:r - 1]) @ Vh[:r - 1]
""",
            # always float32
            """
def rank_r_approx(W, r):
    U, S, Vh = torch.linalg.svd(W.float(), full_matrices=False)
    return (U[:, :r] * S[:r]) @ Vh[:r]
""",
        ),
        alternatives=(
            """
def rank_r_approx(W, r):
    U, S, Vh = torch.linalg.svd(W)
    return U[:, :r] @ torch.diag(S[:r]) @ Vh[:r, :]
""",
            # the SVD in float64, cast back to W's dtype
            """
def rank_r_approx(W, r):
    U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
    return ((U[:, :r] * S[:r]) @ Vh[:r]).to(W.dtype)
""",
            # a debug print left in
            """
def rank_r_approx(W, r):
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    print('singular values', S)
    return U[:, :r] @ torch.diag_embed(S[:r]) @ Vh[:r]
""",
        ),
        cheats=(
            # hands the work to the package's finished version
            """
def rank_r_approx(W, r):
    return lowrank.low_rank_approx(W, r)
""",
        ),
    ),
    Exercise(
        "lora_forward",
        points=2,
        probe=_lora_forward,
        reference=_lora_forward_reference,
        tolerance=Tolerance(ulps=64, dtype_matters=False),
        finished=(lora.LoRALinear, PEFT_LORA),
        wrong=(
            # forgets the scale alpha / r
            """
def lora_forward(x, W, b, A, B, alpha, r):
    return x @ W.T + b + (x @ A.T) @ B.T
""",
            # uses alpha * r
            """
def lora_forward(x, W, b, A, B, alpha, r):
    return x @ W.T + b + alpha * r * (x @ A.T) @ B.T
""",
            # the update added without the base layer's bias
            """
def lora_forward(x, W, b, A, B, alpha, r):
    return x @ W.T + (alpha / r) * (x @ A.T) @ B.T
""",
            # integer division: alpha // r
            """
def lora_forward(x, W, b, A, B, alpha, r):
    return x @ W.T + b + (alpha // r) * ((x @ A.T) @ B.T)
""",
        ),
        alternatives=(
            """
def lora_forward(x, W, b, A, B, alpha, r):
    import torch.nn.functional as F
    return F.linear(x, W, b) + F.linear(F.linear(x, A), B) * alpha / r
""",
            # merge first, then one matrix product
            """
def lora_forward(x, W, b, A, B, alpha, r):
    return x @ (W + (alpha / r) * (B @ A)).T + b
""",
            # einsum
            """
def lora_forward(x, W, b, A, B, alpha, r):
    h = torch.einsum('...i,ri->...r', x, A)
    return torch.einsum('...i,oi->...o', x, W) + b + alpha / r * torch.einsum('...r,or->...o', h, B)
""",
        ),
        cheats=(
            # the package's LoRA layer does the work
            """
def lora_forward(x, W, b, A, B, alpha, r):
    layer = lora.LoRALinear(nn.Linear(W.shape[1], W.shape[0]), r=r, alpha=alpha)
    with torch.no_grad():
        layer.base.weight.copy_(W); layer.base.bias.copy_(b)
        layer.lora_A.weight.copy_(A); layer.lora_B.weight.copy_(B)
        return layer(x)
""",
        ),
    ),
    Exercise(
        "LoRALayer",
        points=3,
        probe=_lora_layer,
        reference=lora.LoRALinear,
        tolerance=Tolerance(ulps=64),
        finished=(lora.LoRALinear, PEFT_LORA),
        # three properties, scored on their own: a layer whose merge is wrong keeps its forward's point
        parts={
            "set-up (frozen base, A and B, their start, the scaling)": (
                1,
                r"scaling|frozen|trained|dtypes|fresh|kaiming",
            ),
            "forward (dropout on the LoRA branch only)": (1, r"\.(train|eval)$"),
            "merge and unmerge": (1, r"merged"),
        },
        wrong=(
            # dropout on the whole layer: the base output is dropped too
            """
class LoRALayer(nn.Module):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.drop = nn.Dropout(dropout)
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        self.merged = False
    def forward(self, x):
        x = self.drop(x)
        out = self.base(x)
        return out if self.merged else out + self.scaling * self.lora_B(self.lora_A(x))
    def merge(self):
        pass
    def unmerge(self):
        pass
""",
            # A set to zero instead of B (B keeps nn.Linear's random init): starts unchanged, but not PEFT's init
            """
class LoRALayer(nn.Module):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.zeros_(self.lora_A.weight)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        self.merged = False
    def forward(self, x):
        out = self.base(x)
        return out if self.merged else out + self.scaling * self.lora_B(self.lora_A(self.dropout(x)))
    def merge(self):
        if not self.merged:
            with torch.no_grad():
                self.base.weight += self.scaling * self.lora_B.weight @ self.lora_A.weight
            self.merged = True
    def unmerge(self):
        if self.merged:
            with torch.no_grad():
                self.base.weight -= self.scaling * self.lora_B.weight @ self.lora_A.weight
            self.merged = False
""",
            # rsLoRA ignored
            """
class LoRALayer(nn.Module):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling = alpha / r
        self.merged = False
    def forward(self, x):
        out = self.base(x)
        return out if self.merged else out + self.scaling * self.lora_B(self.lora_A(self.dropout(x)))
    def merge(self):
        if not self.merged:
            with torch.no_grad():
                self.base.weight += self.scaling * self.lora_B.weight @ self.lora_A.weight
            self.merged = True
    def unmerge(self):
        if self.merged:
            with torch.no_grad():
                self.base.weight -= self.scaling * self.lora_B.weight @ self.lora_A.weight
            self.merged = False
""",
            # the base left trainable
            """
class LoRALayer(nn.Module):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        self.merged = False
    def forward(self, x):
        out = self.base(x)
        return out if self.merged else out + self.scaling * self.lora_B(self.lora_A(self.dropout(x)))
    def merge(self):
        if not self.merged:
            with torch.no_grad():
                self.base.weight += self.scaling * self.lora_B.weight @ self.lora_A.weight
            self.merged = True
    def unmerge(self):
        if self.merged:
            with torch.no_grad():
                self.base.weight -= self.scaling * self.lora_B.weight @ self.lora_A.weight
            self.merged = False
""",
            # merge() that adds the update every time it is called, and a forward that adds it after merging
            """
class LoRALayer(nn.Module):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
    def forward(self, x):
        return self.base(x) + self.scaling * self.lora_B(self.lora_A(self.dropout(x)))
    def merge(self):
        with torch.no_grad():
            self.base.weight += self.scaling * self.lora_B.weight @ self.lora_A.weight
    def unmerge(self):
        with torch.no_grad():
            self.base.weight -= self.scaling * self.lora_B.weight @ self.lora_A.weight
""",
        ),
        alternatives=(
            # functional dropout, merge state kept as the delta itself, rsLoRA written as r ** -0.5
            """
class LoRALayer(nn.Module):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):
        super().__init__()
        for p in base.parameters():
            p.requires_grad = False
        self.base = base
        self.p = dropout
        self.lora_A = nn.Linear(base.in_features, r, bias=False, dtype=base.weight.dtype)
        self.lora_B = nn.Linear(r, base.out_features, bias=False, dtype=base.weight.dtype)
        torch.nn.init.kaiming_uniform_(self.lora_A.weight, a=5 ** 0.5)
        self.lora_B.weight.data.zero_()
        self.scaling = alpha * r ** -0.5 if use_rslora else alpha / r
        self._delta = None
    def forward(self, x):
        y = self.base(x)
        if self._delta is not None:
            return y
        return y + self.lora_B(self.lora_A(torch.nn.functional.dropout(x, self.p, self.training))) * self.scaling
    @torch.no_grad()
    def merge(self):
        if self._delta is None:
            self._delta = self.scaling * self.lora_B.weight @ self.lora_A.weight
            self.base.weight.add_(self._delta)
    @torch.no_grad()
    def unmerge(self):
        if self._delta is not None:
            self.base.weight.sub_(self._delta)
            self._delta = None
""",
        ),
        cheats=(
            # the package's finished layer, renamed
            """
class LoRALayer(lora.LoRALinear):
    pass
""",
        ),
    ),
    Exercise(
        "add_lora",
        points=2,
        probe=_add_lora,
        reference=_add_lora_reference,
        tolerance=Tolerance(ulps=64),
        finished=(lora.add_lora, *PEFT_INJECT),
        wrong=(
            # a bare suffix match: "q_proj" also catches "xq_proj"
            """
def add_lora(model, target_modules, r, alpha, **layer_args):
    model.requires_grad_(False)
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and any(n.endswith(t) for t in target_modules)]
    for n in names:
        parent, _, child = n.rpartition(".")
        holder = model.get_submodule(parent) if parent else model
        setattr(holder, child, LoRALayer(getattr(holder, child), r, alpha, **layer_args))
    return names
""",
            # the rest of the model left trainable
            """
def add_lora(model, target_modules, r, alpha, **layer_args):
    names = [n for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and any(n == t or n.endswith("." + t) for t in target_modules)]
    for n in names:
        parent, _, child = n.rpartition(".")
        holder = model.get_submodule(parent) if parent else model
        setattr(holder, child, LoRALayer(getattr(holder, child), r, alpha, **layer_args))
    return names
""",
            # only the model's direct children are looked at
            """
def add_lora(model, target_modules, r, alpha, **layer_args):
    model.requires_grad_(False)
    names = []
    for n, child in list(model.named_children()):
        if isinstance(child, nn.Linear) and n in target_modules:
            setattr(model, n, LoRALayer(child, r, alpha, **layer_args))
            names.append(n)
    return names
""",
            # the whole name must equal a target: short names match nothing
            """
def add_lora(model, target_modules, r, alpha, **layer_args):
    model.requires_grad_(False)
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n in target_modules]
    for n in names:
        parent, _, child = n.rpartition(".")
        holder = model.get_submodule(parent) if parent else model
        setattr(holder, child, LoRALayer(getattr(holder, child), r, alpha, **layer_args))
    return names
""",
            # every linear layer, whatever the targets
            """
def add_lora(model, target_modules, r, alpha, **layer_args):
    model.requires_grad_(False)
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    for n in names:
        parent, _, child = n.rpartition(".")
        holder = model.get_submodule(parent) if parent else model
        setattr(holder, child, LoRALayer(getattr(holder, child), r, alpha, **layer_args))
    return names
""",
        ),
        alternatives=(
            # recursive, freezing as it goes
            """
def add_lora(model, target_modules, r, alpha, **layer_args):
    for p in model.parameters():
        p.requires_grad = False
    done = []
    def visit(module, prefix):
        for child_name, child in list(module.named_children()):
            full = f"{prefix}.{child_name}" if prefix else child_name
            hit = any(full == t or full.endswith("." + t) for t in target_modules)
            if isinstance(child, nn.Linear) and hit:
                setattr(module, child_name, LoRALayer(child, r, alpha, **layer_args))
                done.append(full)
            else:
                visit(child, full)
    visit(model, "")
    return done
""",
            # matching on the dotted parts of the name
            """
def add_lora(model, target_modules, r, alpha, **layer_args):
    model.requires_grad_(False)
    chosen = []
    for name, module in list(model.named_modules()):
        parts = name.split(".")
        if isinstance(module, nn.Linear) and any(t.split(".") == parts[-len(t.split(".")):] for t in target_modules):
            chosen.append(name)
    for name in chosen:
        *path, last = name.split(".")
        parent = model
        for step in path:
            parent = getattr(parent, step)
        setattr(parent, last, LoRALayer(getattr(parent, last), r, alpha, **layer_args))
    return chosen
""",
        ),
        cheats=(
            # the package's function, with the learner's layer
            """
def add_lora(model, target_modules, r, alpha, **layer_args):
    return lora.add_lora(model, target_modules, r, alpha, layer=LoRALayer)
""",
        ),
    ),
    Exercise(
        "extract_lora",
        points=2,
        probe=_extract_lora,
        reference=_extract_lora_reference,
        # an SVD: its rounding is relative to the largest value, and larger than a product's
        tolerance=Tolerance(ulps=2048, dtype_matters=False),
        finished=(),
        wrong=(
            # forgets to divide by the scaling s = alpha / r
            """
def extract_lora(W_tuned, W0, r, alpha):
    U, S, Vh = torch.linalg.svd(W_tuned - W0, full_matrices=False)
    return Vh[:r], U[:, :r] * S[:r]
""",
            # the SVD of the tuned weight instead of the update
            """
def extract_lora(W_tuned, W0, r, alpha):
    U, S, Vh = torch.linalg.svd(W_tuned, full_matrices=False)
    return Vh[:r], U[:, :r] * S[:r] / (alpha / r)
""",
            # the r smallest singular directions
            """
def extract_lora(W_tuned, W0, r, alpha):
    U, S, Vh = torch.linalg.svd(W_tuned - W0, full_matrices=False)
    return Vh[-r:], U[:, -r:] * S[-r:] / (alpha / r)
""",
            # alpha // r: an integer division
            """
def extract_lora(W_tuned, W0, r, alpha):
    U, S, Vh = torch.linalg.svd(W_tuned - W0, full_matrices=False)
    return Vh[:r], U[:, :r] * S[:r] / max(alpha // r, 1)
""",
        ),
        alternatives=(
            # all of S in B
            """
def extract_lora(W_tuned, W0, r, alpha):
    U, S, Vh = torch.linalg.svd(W_tuned - W0, full_matrices=False)
    return Vh[:r].clone(), (U[:, :r] * S[:r] * r / alpha)
""",
            # all of S and the scaling in A, computed in float64
            """
def extract_lora(W_tuned, W0, r, alpha):
    D = (W_tuned - W0).double()
    U, S, Vh = torch.linalg.svd(D)
    A = torch.diag(S[:r]) @ Vh[:r] / (alpha / r)
    return A.to(W0.dtype), U[:, :r].to(W0.dtype)
""",
        ),
    ),
    Exercise(
        "DoRALayer",
        points=3,
        probe=_dora_layer,
        reference=lora.DoRALinear,
        tolerance=Tolerance(ulps=256),
        finished=(lora.DoRALinear, PEFT_DORA),
        parts={
            "magnitude and forward": (1, r"magnitude at|magnitude trained|fresh|: output$"),
            "gradient (the norm a constant)": (1, r"gradient"),
            "merge and unmerge": (1, r"merged"),
        },
        wrong=(
            # the norm left in the gradient
            """
class DoRALayer(LoRALayer):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):
        super().__init__(base, r, alpha, dropout, use_rslora)
        self.merged = False
        self.magnitude = nn.Parameter(torch.linalg.norm(base.weight.detach(), dim=1))
        self.norm = None
    def forward(self, x):
        if self.merged:
            return self.base(x)
        W = self.base.weight + self.scaling * self.lora_B.weight @ self.lora_A.weight
        scale = self.magnitude / torch.linalg.norm(W, dim=1)
        return scale * (x @ W.T) + self.base.bias
    def merge(self):
        if not self.merged:
            with torch.no_grad():
                W = self.base.weight + self.scaling * self.lora_B.weight @ self.lora_A.weight
                self.norm = torch.linalg.norm(W, dim=1)
                self.base.weight.copy_((self.magnitude / self.norm)[:, None] * W)
            self.merged = True
    def unmerge(self):
        if self.merged:
            with torch.no_grad():
                W = self.base.weight / (self.magnitude / self.norm)[:, None]
                self.base.weight.copy_(W - self.scaling * self.lora_B.weight @ self.lora_A.weight)
            self.merged = False
""",
            # one norm per input column instead of per output row
            """
class DoRALayer(LoRALayer):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):
        super().__init__(base, r, alpha, dropout, use_rslora)
        self.merged = False
        self.magnitude = nn.Parameter(torch.linalg.norm(base.weight.detach(), dim=0))
    def forward(self, x):
        W = self.base.weight + self.scaling * self.lora_B.weight @ self.lora_A.weight
        W = self.magnitude * W / torch.linalg.norm(W, dim=0).detach()
        return x @ W.T + self.base.bias
""",
            # the magnitude starts at 1, so a fresh layer is not the base layer
            """
class DoRALayer(LoRALayer):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):
        super().__init__(base, r, alpha, dropout, use_rslora)
        self.merged = False
        self.magnitude = nn.Parameter(torch.ones(base.out_features, dtype=base.weight.dtype))
        self.norm = None
    def forward(self, x):
        if self.merged:
            return self.base(x)
        W = self.base.weight + self.scaling * self.lora_B.weight @ self.lora_A.weight
        scale = self.magnitude / torch.linalg.norm(W, dim=1).detach()
        return scale * (x @ W.T) + self.base.bias
""",
            # LoRA's merge inherited: the magnitude is not folded in
            """
class DoRALayer(LoRALayer):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):
        super().__init__(base, r, alpha, dropout, use_rslora)
        self.merged = False
        self.magnitude = nn.Parameter(torch.linalg.norm(base.weight.detach(), dim=1))
    def forward(self, x):
        if self.merged:
            return self.base(x)
        W = self.base.weight + self.scaling * self.lora_B.weight @ self.lora_A.weight
        scale = self.magnitude / torch.linalg.norm(W, dim=1).detach()
        return scale * (x @ W.T) + self.base.bias
""",
            # the bias scaled with the weight
            """
class DoRALayer(LoRALayer):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):
        super().__init__(base, r, alpha, dropout, use_rslora)
        self.merged = False
        self.magnitude = nn.Parameter(torch.linalg.norm(base.weight.detach(), dim=1))
    def forward(self, x):
        W = self.base.weight + self.scaling * self.lora_B.weight @ self.lora_A.weight
        return self.magnitude / torch.linalg.norm(W, dim=1).detach() * (x @ W.T + self.base.bias)
""",
        ),
        alternatives=(
            # the norm from the parts PEFT uses: base output without bias plus the LoRA branch
            """
class DoRALayer(LoRALayer):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False):
        super().__init__(base, r, alpha, dropout, use_rslora)
        self.merged = False
        self.magnitude = nn.Parameter(base.weight.detach().norm(dim=1).clone())
        self._norm = None
    def _row_norm(self):
        with torch.no_grad():
            return (self.base.weight + self.scaling * self.lora_B.weight @ self.lora_A.weight).norm(dim=1)
    def forward(self, x):
        if self.merged:
            return self.base(x)
        k = self.magnitude / self._row_norm()
        plain = nn.functional.linear(x, self.base.weight)
        return k * (plain + self.scaling * self.lora_B(self.lora_A(x))) + self.base.bias
    def merge(self):
        if self.merged:
            return
        with torch.no_grad():
            self._norm = self._row_norm()
            W = self.base.weight + self.scaling * self.lora_B.weight @ self.lora_A.weight
            self.base.weight.data = (self.magnitude / self._norm).unsqueeze(1) * W
        self.merged = True
    def unmerge(self):
        if not self.merged:
            return
        with torch.no_grad():
            W = self.base.weight / (self.magnitude / self._norm).unsqueeze(1)
            self.base.weight.data = W - self.scaling * self.lora_B.weight @ self.lora_A.weight
        self.merged = False
""",
        ),
        cheats=(
            """
class DoRALayer(lora.DoRALinear):
    pass
""",
        ),
    ),
    Exercise(
        "lora_trainable",
        points=2,
        probe=_lora_trainable,
        reference=lora.lora_trainable_params,
        finished=(lora.lora_param_count, lora.lora_trainable_params, "qlora_course.llama.llama_linear_shapes"),
        wrong=(
            # grouped-query attention ignored: k and v as wide as q
            """
def lora_trainable(config, r, target_modules):
    h, i = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q = config.num_attention_heads * head_dim
    shapes = {"q_proj": (h, q), "k_proj": (h, q), "v_proj": (h, q), "o_proj": (q, h),
              "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    return config.num_hidden_layers * sum(r * sum(shapes[t]) for t in target_modules)
""",
            # every attention projection hidden x hidden: head_dim assumed hidden / heads
            """
def lora_trainable(config, r, target_modules):
    h, i = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    shapes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
              "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    return config.num_hidden_layers * sum(r * sum(shapes[t]) for t in target_modules)
""",
            # one layer only
            """
def lora_trainable(config, r, target_modules):
    h, i = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    shapes = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
              "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    return sum(r * sum(shapes[t]) for t in target_modules)
""",
            # A counted, B forgotten
            """
def lora_trainable(config, r, target_modules):
    h, i = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q = config.num_attention_heads * head_dim
    d_in = {"q_proj": h, "k_proj": h, "v_proj": h, "o_proj": q, "gate_proj": h, "up_proj": h, "down_proj": i}
    return config.num_hidden_layers * sum(r * d_in[t] for t in target_modules)
""",
        ),
        alternatives=(
            """
def lora_trainable(config, r, target_modules):
    d = config.hidden_size
    hd = config.head_dim if getattr(config, "head_dim", None) else d // config.num_attention_heads
    n_q, n_kv = config.num_attention_heads * hd, config.num_key_value_heads * hd
    total = 0
    for t in target_modules:
        d_in, d_out = {
            "q_proj": (d, n_q), "k_proj": (d, n_kv), "v_proj": (d, n_kv), "o_proj": (n_q, d),
            "gate_proj": (d, config.intermediate_size), "up_proj": (d, config.intermediate_size),
            "down_proj": (config.intermediate_size, d),
        }[t]
        total += r * d_in + d_out * r
    return total * config.num_hidden_layers
""",
            # counted from a model built on the meta device (no memory), as PEFT would
            """
def lora_trainable(config, r, target_modules):
    from transformers import LlamaForCausalLM
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    total = 0
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in target_modules:
            total += r * (m.in_features + m.out_features)
    return total
""",
        ),
        cheats=(
            """
def lora_trainable(config, r, target_modules):
    return lora.lora_trainable_params(config, r, target_modules)
""",
        ),
    ),
]
