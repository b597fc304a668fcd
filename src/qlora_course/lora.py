"""LoRA, rsLoRA and DoRA linear layers built from scratch (lesson 1).

LoRA (Hu et al. 2021) freezes a pretrained weight ``W0`` of shape ``(out, in)`` and learns a low-rank
update ``B @ A`` with ``A`` of shape ``(r, in)`` and ``B`` of shape ``(out, r)``:

    h = W0 x + b + s * B A dropout(x),    s = alpha / r   (rsLoRA: s = alpha / sqrt(r)).

``A`` starts kaiming-uniform and ``B`` at zero, so a freshly wrapped layer computes exactly what the
base layer did (:class:`LoRALinear`). DoRA (Liu et al. 2024, :class:`DoRALinear`, a subclass as PEFT
keeps it) splits the merged weight into a direction and a learned magnitude ``m`` (one value per output
feature):

    W' = m * (W0 + s B A) / ||W0 + s B A||_row,   the norm detached from the gradient (paper section 4.3).

The parameter and module names (``lora_A``, ``lora_B``, both ``nn.Linear`` without bias) follow PEFT,
so weights can be copied across and outputs compared; see ``tests/test_lora.py``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from . import validate
from .llama import check_targets, llama_linear_shapes, target_list

__all__ = [
    "LoRALinear",
    "DoRALinear",
    "add_lora",
    "lora_layers",
    "OneLinear",
    "lora_state_dict",
    "load_lora_state_dict",
    "count_parameters",
    "lora_param_count",
    "lora_trainable_params",
]


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update.

    Args:
        base: the pretrained layer, weight ``(out, in)``; it is frozen in place.
        r: rank of the update, ``1 <= r <= min(in, out)``.
        alpha: numerator of the scaling ``alpha / r`` (or ``alpha / sqrt(r)`` with ``use_rslora``).
        dropout: dropout probability on the LoRA branch only, in ``[0, 1)``.
        use_rslora: rank-stabilised scaling ``alpha / sqrt(r)``.

    Shapes: input ``(..., in)``, output ``(..., out)``, in the base layer's dtype. DoRA is the subclass
    :class:`DoRALinear`.
    """

    kind = "LoRA"

    def __init__(
        self,
        base: nn.Linear,
        r: int,
        alpha: float,
        dropout: float = 0.0,
        use_rslora: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise ValueError(
                f"{type(self).__name__} wraps an nn.Linear, got {type(base).__name__}; "
                "pick a linear layer (e.g. model.layers[0].self_attn.q_proj)"
            )
        if hasattr(base.weight, "quant_state") or base.weight.dtype == torch.uint8:
            raise ValueError(
                f"base is a {type(base).__name__} holding packed 4-bit codes (weight of shape "
                f"{tuple(base.weight.shape)}), not a weight matrix: wrap 4-bit layers with PEFT "
                "(get_peft_model, lesson 5), which reads their quantization state"
            )
        out_features, in_features = base.weight.shape
        if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
            raise ValueError(f"rank r must be a positive int, got {r!r}")
        if r > min(in_features, out_features):
            raise ValueError(
                f"rank r={r} is larger than min(in, out) = {min(in_features, out_features)} for a "
                f"layer of shape (out={out_features}, in={in_features}); a rank above that adds "
                "parameters without adding expressiveness"
            )
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not (0 < alpha < math.inf):
            raise ValueError(f"alpha must be positive and finite, got {alpha!r}")
        validate.probability(dropout, "dropout")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")

        self.base = base
        self.base.requires_grad_(False)
        self.r = r
        self.alpha = alpha
        self.use_rslora = use_rslora
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        factory = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.lora_A = nn.Linear(in_features, r, bias=False, **factory)
        self.lora_B = nn.Linear(r, out_features, bias=False, **factory)
        self.lora_dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.reset_lora_parameters()

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def reset_lora_parameters(self) -> None:
        """A kaiming-uniform (``nn.Linear``'s own default), B zero: the update ``B @ A`` starts at 0."""
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def delta_weight(self) -> torch.Tensor:
        """The LoRA update ``s * B @ A``, shape ``(out, in)``."""
        return self.scaling * (self.lora_B.weight @ self.lora_A.weight)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"input's last dimension is {x.shape[-1]}, but this layer expects in_features="
                f"{self.in_features} (input shape {tuple(x.shape)})"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``W0 x + b + s * B A dropout(x)``; once merged, the base layer alone."""
        self._check_input(x)
        result = self.base(x)
        if self.merged:
            return result
        return result + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight: ``W0 <- W0 + sBA``.

        Afterwards ``forward`` is a single matrix multiply, as fast as the base layer alone.
        """
        if self.merged:
            return
        self.base.weight.data += self.delta_weight()
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge`, recovering ``W0`` up to floating-point rounding."""
        if not self.merged:
            return
        self.base.weight.data -= self.delta_weight()
        self.merged = False

    def extra_repr(self) -> str:
        scale = f"alpha/sqrt(r)={self.scaling:.4g}" if self.use_rslora else f"alpha/r={self.scaling:.4g}"
        return f"{self.kind}: in={self.in_features}, out={self.out_features}, r={self.r}, {scale}, merged={self.merged}"


class DoRALinear(LoRALinear):
    """LoRA with a learned magnitude (DoRA): ``W' = m * (W0 + sBA) / ||W0 + sBA||_row``.

    Takes :class:`LoRALinear`'s arguments and adds ``magnitude``, a trainable vector of shape ``(out,)``
    that starts at the row norms of ``W0``, so that a fresh layer computes what the base layer did. The
    row norm is detached from the gradient (paper section 4.3), as in PEFT. A base weight with an
    all-zero row is refused: its direction is undefined.
    """

    kind = "DoRA"

    def __init__(
        self,
        base: nn.Linear,
        r: int,
        alpha: float,
        dropout: float = 0.0,
        use_rslora: bool = False,
    ) -> None:
        super().__init__(base, r, alpha, dropout, use_rslora)
        zero_rows = (base.weight.detach() == 0).all(dim=1).nonzero().flatten().tolist()
        if zero_rows:
            raise ValueError(
                f"DoRA divides each output row by its norm, and row(s) {zero_rows[:8]} of the "
                "weight are all zero; use plain LoRA for this layer"
            )
        self._merged_norm: torch.Tensor | None = None
        # m starts at the row norms of W0 + s*B*A (= ||W0|| since B = 0): the layer starts unchanged.
        self.magnitude = nn.Parameter(self.weight_norm().detach().clone())

    def weight_norm(self) -> torch.Tensor:
        """Row norms ``||W0 + s B A||`` of shape ``(out,)``, with the LoRA part detached (as in DoRA)."""
        weight = self.base.weight + self.delta_weight().detach()
        return torch.linalg.norm(weight, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(m / ||W0 + sBA||) (W0 x + s B A dropout(x)) + b``, computed without forming ``W'``; the norm
        is a constant for the gradient. With dropout in training, the base term uses the dropped input
        too (as PEFT does)."""
        self._check_input(x)
        result = self.base(x)
        if self.merged:
            return result
        x_drop = self.lora_dropout(x)
        lora_out = self.lora_B(self.lora_A(x_drop))
        mag_scale = self.magnitude / self.weight_norm().detach()
        if isinstance(self.lora_dropout, nn.Identity) or not self.training:
            base_out = result if self.base.bias is None else result - self.base.bias
        else:
            base_out = F.linear(x_drop, self.base.weight)
        return result + ((mag_scale - 1) * base_out + mag_scale * lora_out * self.scaling)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update and the magnitude into the base weight: ``W0 <- m (W0 + sBA) / ||W0 + sBA||``."""
        if self.merged:
            return
        delta = self.delta_weight()
        self._merged_norm = self.weight_norm()
        factor = (self.magnitude / self._merged_norm)[:, None]
        self.base.weight.data = factor * (self.base.weight + delta)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge`, recovering ``W0`` up to floating-point rounding."""
        if not self.merged:
            return
        delta = self.delta_weight()
        factor = (self.magnitude / self._merged_norm)[:, None]
        self.base.weight.data = self.base.weight / factor - delta
        self._merged_norm = None
        self.merged = False


class OneLinear(nn.Module):
    """A model holding one linear layer named ``proj``: the smallest thing PEFT's ``get_peft_model`` can
    wrap (``target_modules=["proj"]``), so a single layer can be compared with PEFT's on the same weights.
    Input ``(..., in)``, output ``(..., out)``."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.proj = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def add_lora(
    model: nn.Module,
    target_modules: Iterable[str],
    r: int,
    alpha: float,
    dropout: float = 0.0,
    use_rslora: bool = False,
    use_dora: bool = False,
    layer: type[nn.Module] | None = None,
) -> list[str]:
    """Freeze ``model`` and wrap every ``nn.Linear`` whose name ends with a target in a LoRA layer.

    Args:
        model: any module; changed in place.
        target_modules: name suffixes, e.g. ``["q_proj", "v_proj"]`` (as PEFT's ``target_modules``).
        use_dora: wrap in :class:`DoRALinear` instead of :class:`LoRALinear`.
        layer: the LoRA layer class, called as ``layer(base, r, alpha, dropout, use_rslora)`` (default
            :class:`LoRALinear`, or :class:`DoRALinear` with ``use_dora``); lesson 1 passes the learner's
            own class.

    Returns:
        The full names of the wrapped layers. Raises ``ValueError`` if none matched.
    """
    validate.module(model, "model")
    targets = target_list(target_modules)
    validate.positive_int(r, "r")
    validate.positive_number(alpha, "alpha")
    validate.probability(dropout, "dropout")
    validate.flag(use_rslora, "use_rslora")
    validate.flag(use_dora, "use_dora")
    if layer is not None and use_dora:
        raise ValueError("use_dora picks the package's DoRALinear; leave layer=None")
    layer = layer or (DoRALinear if use_dora else LoRALinear)
    wrapped = sorted(lora_layers(model))
    if wrapped:
        raise ValueError(
            f"the model already has LoRA layers ({', '.join(wrapped[:4])}): add_lora was applied before; "
            "start again from a fresh copy of the base model"
        )
    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and any(name == t or name.endswith("." + t) for t in targets)
    ]
    if not names:
        linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ValueError(f"no nn.Linear matches {targets}; the model's linear layers are {linear[:12]}")
    # every new layer is built (and so checked) before the model changes: a bad rank for one layer
    # leaves the model as it was, not half wrapped
    built, trainable = {}, [(p, p.requires_grad) for p in model.parameters()]
    for name in names:
        try:
            built[name] = layer(model.get_submodule(name), r, alpha, dropout, use_rslora)
        except ValueError as err:
            for p, flag in trainable:  # a layer built so far froze its base: undo that too
                p.requires_grad_(flag)
            raise ValueError(f"{name}: {err}; the model was not changed") from None
    model.requires_grad_(False)
    for module in built.values():  # the adapters train; their bases stay frozen
        for pname, p in module.named_parameters():
            p.requires_grad_(not pname.startswith("base."))
    for name, module in built.items():
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, module)
    return names


def lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every LoRA layer of ``model`` by name: a module with ``lora_A`` and ``lora_B`` (any class, as PEFT's)."""
    validate.module(model, "model")
    return {name: m for name, m in model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "lora_B")}


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every adapter tensor of ``model`` under its full name (what an adapter checkpoint holds): the
    parameters of its LoRA layers except their frozen ``base``, cloned."""
    out = {}
    for name, module in lora_layers(model).items():
        for k, v in module.named_parameters():
            if not k.startswith("base."):
                out[f"{name}.{k}"] = v.detach().clone()
    return out


def load_lora_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load an adapter saved by :func:`lora_state_dict` into a model wrapped by :func:`add_lora`."""
    layers = lora_layers(model)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TypeError(f"state must be a dict of tensors (from lora_state_dict), got {type(state).__name__}")
    own = {f"{name}.{k}": p for name, m in layers.items() for k, p in m.named_parameters() if not k.startswith("base.")}
    if set(state) != set(own):
        missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        raise ValueError(f"state (the adapter) does not fit this model: missing {missing[:4]}, unexpected {extra[:4]}")
    if any(getattr(m, "merged", False) for m in layers.values()):
        raise ValueError("unmerge() the layers before loading another adapter")
    with torch.no_grad():
        for k, v in state.items():
            if own[k].shape != v.shape:
                raise ValueError(f"{k}: shape {tuple(v.shape)} does not fit {tuple(own[k].shape)}")
            own[k].copy_(v)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts of ``model``."""
    validate.module(model, "model")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def lora_param_count(d_in: int, d_out: int, r: int) -> int:
    """Trainable parameters of one LoRA update on a ``(d_out, d_in)`` weight: ``r * (d_in + d_out)``."""
    for name, v in (("d_in", d_in), ("d_out", d_out), ("r", r)):
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    return r * (d_in + d_out)


def lora_trainable_params(config, r: int, target_modules: Iterable[str]) -> int:
    """Trainable LoRA parameters for a whole Llama model: layers x sum over targets of ``r (in + out)``."""
    shapes = llama_linear_shapes(config)
    targets = check_targets(config, target_modules)
    per_layer = sum(lora_param_count(*shapes[t], r) for t in targets)
    return config.num_hidden_layers * per_layer
