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

from .. import lora, lowrank
from ._draw import floats, ints, seed

PEFT_LORA = "peft.tuners.lora.layer.Linear"
PEFT_DORA = "peft.tuners.lora.dora.DoraLinearLayer"


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


def _merged_weight(answer, g):
    out = {}
    for r in (3, ints(g, 1, 5)):
        W, A, B = torch.randn(5, 8, generator=g), torch.randn(r, 8, generator=g), torch.randn(5, r, generator=g)
        out[f"r={r}"] = answer(W, A, B, _alpha(g, r), r)
    return out


def _merged_weight_reference(W, A, B, alpha, r):
    """The package's LoRA layer with these weights, merged: its base weight."""
    layer = lora.LoRALinear(nn.Linear(W.shape[1], W.shape[0], dtype=W.dtype), r=r, alpha=alpha)
    with torch.no_grad():
        layer.base.weight.copy_(W)
        layer.lora_A.weight.copy_(A)
        layer.lora_B.weight.copy_(B)
        layer.merge()
    return layer.base.weight.detach().clone()


def _dora_forward(answer, g):
    out = {}
    for k in range(3):
        r = ints(g, 2, 6)
        x, W0, b = torch.randn(3, 7, 16, generator=g), torch.randn(9, 16, generator=g), torch.randn(9, generator=g)
        A, B = torch.randn(r, 16, generator=g), 0.2 * torch.randn(9, r, generator=g)
        m = torch.linalg.norm(W0, dim=1) * (torch.rand(9, generator=g) + 0.5)
        out[f"case {k}"] = answer(x, W0, b, A, B, m, floats(g, 0.3, 3.0))
    return out


def _dora_forward_reference(x, W0, b, A, B, magnitude, scaling):
    """The package's DoRA layer with these weights and magnitude."""
    r = A.shape[0]
    layer = lora.DoRALinear(nn.Linear(W0.shape[1], W0.shape[0], dtype=W0.dtype), r=r, alpha=scaling * r)
    with torch.no_grad():
        layer.base.weight.copy_(W0)
        layer.base.bias.copy_(b)
        layer.lora_A.weight.copy_(A)
        layer.lora_B.weight.copy_(B)
        layer.magnitude.copy_(magnitude)
        return layer.eval()(x)


def _lora_trainable(answer, g):
    cases = [(ints(g, 1, 6000), ints(g, 1, 6000), ints(g, 1, 65)) for _ in range(4)] + [(10, 3, 1), (3, 10, 2)]
    return {str(c): answer(*c) for c in cases}


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
        "merged_weight",
        points=2,
        probe=_merged_weight,
        reference=_merged_weight_reference,
        tolerance=Tolerance(ulps=64, dtype_matters=False),
        finished=(lora.LoRALinear, PEFT_LORA),
        wrong=(
            """
def merged_weight(W, A, B, alpha, r):
    return W + B @ A
""",
            """
def merged_weight(W, A, B, alpha, r):
    return W + (r / alpha) * (B @ A)
""",
            # integer division: alpha // r
            """
def merged_weight(W, A, B, alpha, r):
    return W + (alpha // r) * (B @ A)
""",
        ),
        alternatives=(
            """
def merged_weight(W, A, B, alpha, r):
    return W + torch.einsum('or,ri->oi', B, A) * (alpha / r)
""",
            # in float64, cast back
            """
def merged_weight(W, A, B, alpha, r):
    return (W.double() + alpha / r * (B.double() @ A.double())).to(W.dtype)
""",
        ),
    ),
    Exercise(
        "dora_forward",
        points=2,
        probe=_dora_forward,
        reference=_dora_forward_reference,
        tolerance=Tolerance(ulps=64, dtype_matters=False),
        finished=(lora.DoRALinear, PEFT_DORA),
        wrong=(
            # the norm over columns (one per input feature) instead of rows
            """
def dora_forward(x, W0, b, A, B, magnitude, scaling):
    W = W0 + scaling * (B @ A)
    return x @ (magnitude[:, None] * W / torch.linalg.norm(W, dim=0)).T + b
""",
            # the norm of W0 alone, not of the updated weight
            """
def dora_forward(x, W0, b, A, B, magnitude, scaling):
    W = W0 + scaling * (B @ A)
    return (magnitude / torch.linalg.norm(W0, dim=1)) * (x @ W.T) + b
""",
            # the bias scaled with the weight
            """
def dora_forward(x, W0, b, A, B, magnitude, scaling):
    W = W0 + scaling * (B @ A)
    return (magnitude / torch.linalg.norm(W, dim=1)) * (x @ W.T + b)
""",
        ),
        alternatives=(
            """
def dora_forward(x, W0, b, A, B, magnitude, scaling):
    import torch.nn.functional as F
    W = W0 + scaling * B @ A
    W = W * (magnitude / W.norm(p=2, dim=1)).unsqueeze(1)
    return F.linear(x, W, b)
""",
        ),
    ),
    Exercise(
        "lora_trainable",
        points=1,
        probe=_lora_trainable,
        reference=lora.lora_param_count,
        finished=(lora.lora_param_count, lora.lora_trainable_params),
        wrong=(
            # right only for square layers
            """
def lora_trainable(d_in, d_out, r):
    return 2 * r * d_in
""",
            """
def lora_trainable(d_in, d_out, r):
    return r * d_in * d_out
""",
        ),
        alternatives=(
            """
def lora_trainable(d_in, d_out, r):
    return r * d_in + d_out * r
""",
            # a float that is a whole number (from a division)
            """
def lora_trainable(d_in, d_out, r):
    return (d_in + d_out) * r / 1
""",
        ),
        cheats=(
            """
def lora_trainable(d_in, d_out, r):
    return {(4096, 4096, 8): 65536, (4096, 11008, 8): 120832}.get((d_in, d_out, r), 0)
""",
            # the package's count
            """
def lora_trainable(d_in, d_out, r):
    return lora.lora_param_count(d_in, d_out, r)
""",
        ),
    ),
]
