"""NF4: 4-bit NormalFloat blockwise quantization, written so that its bytes equal bitsandbytes' (lesson 2).

The recipe (QLoRA, Dettmers et al. 2023, section 3):

1. **The code**: 16 values at quantiles of N(0, 1), rescaled to [-1, 1], with an exact zero
   (:func:`nf4_code`).
2. **Blocks**: flatten the tensor, cut it into blocks of ``blocksize`` values; each block keeps its
   absolute maximum ``absmax`` (float32) and is divided by it, so it lies in [-1, 1].
3. **Rounding**: each scaled value gets the index of the nearest code value (4 bits).
4. **Packing**: two indices per byte, the first element in the high nibble.

Dequantization looks the index up in the code and multiplies by the block's absmax.

Bit-for-bit details that match bitsandbytes 0.50.2 on CPU (``backends/default/ops.py``): a full block
is scaled by *multiplying* with ``1 / absmax`` while the last, partial block is *divided* by its absmax
(the two can differ in the last bit); absmax is clamped to at least 1e-38 before scaling (the partial
block's stored absmax is the clamped value); a value exactly on the midpoint between two codes goes to
the lower one; an odd number of elements is padded with one zero code.
"""

from __future__ import annotations

import math

import torch

from . import validate

__all__ = [
    "VALID_BLOCKSIZES",
    "CODES",
    "nf4_code",
    "fp4_code",
    "int4_code",
    "check_blocksize",
    "quantize_blockwise_4bit",
    "dequantize_blockwise_4bit",
    "quantize_nf4",
    "dequantize_nf4",
    "pack_4bit",
    "unpack_4bit",
    "round_trip",
    "quantization_error",
    "code_usage",
    "entropy_bits",
    "bits_per_parameter",
    "NF4Linear",
    "quantize_model_weights",
]

VALID_BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
NF4_OFFSET = 0.9677083  # the outermost quantile probability, (1 - 1/(2*15) + 1 - 1/(2*16)) / 2
_MIN_ABSMAX = 1e-38


def nf4_code(offset: float = NF4_OFFSET) -> torch.Tensor:
    """The 16 NF4 values, float32, sorted: 7 negative, an exact 0, 8 positive, from -1 to 1.

    Positive half: quantiles of N(0, 1) at 8 probabilities evenly spaced from ``offset`` down to
    0.5 (0.5 itself excluded); negative half: minus the quantiles at 7 such probabilities. Both are
    divided by the largest, so the ends are exactly -1 and 1. The probabilities are float32 (as
    ``torch.linspace`` makes them in bitsandbytes), the quantiles float64, the result float32. The
    default ``offset`` gives bitsandbytes' NF4 table; another (in (0.5, 1)) a code of the same recipe.
    """
    if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not 0.5 < offset < 1:
        raise ValueError(f"offset must be a probability between 0.5 and 1 (exclusive), got {offset!r}")
    p_pos = torch.linspace(offset, 0.5, 9)[:-1].double()  # float32 grid, as bnb builds it
    p_neg = torch.linspace(offset, 0.5, 8)[:-1].double()
    pos = torch.special.ndtri(p_pos)  # the normal quantile function
    neg = -torch.special.ndtri(p_neg)
    values = torch.cat([pos, torch.zeros(1, dtype=torch.float64), neg]).float().sort().values
    return values / values.max()


def fp4_code() -> torch.Tensor:
    """bitsandbytes' FP4 (1 sign, 2 exponent, 1 mantissa bit, bias 2), in index order, float32.

    Magnitudes ``{0, 0.0625, 8, 12, 4, 6, 2, 3} / 12``; indices 8-15 are the negatives (index 8 is -0).
    """
    mags = torch.tensor([0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0])
    return torch.cat([mags, -mags]) / 12.0


def int4_code() -> torch.Tensor:
    """A symmetric 4-bit integer grid ``k / 7`` for ``k = -7..7`` (15 values), float32, sorted.

    The "Int4" baseline of the QLoRA paper: evenly spaced levels, absmax scaling, an exact zero.
    """
    return torch.arange(-7, 8, dtype=torch.float32) / 7.0


def check_blocksize(blocksize: int) -> None:
    """Raise ``ValueError`` unless ``blocksize`` is one of 32, 64, ..., 4096 (what bitsandbytes accepts)."""
    if not isinstance(blocksize, int) or blocksize not in VALID_BLOCKSIZES:
        raise ValueError(
            f"blocksize must be a power of two from 32 to 4096 ({', '.join(map(str, VALID_BLOCKSIZES))}),"
            f" got {blocksize!r}"
        )


def _check_input(x: torch.Tensor, name: str = "x") -> None:
    validate.tensor(x, name, finite=False)  # a tensor with data (not meta, not empty); non-finite: below
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"{name} must hold float32, float16 or bfloat16 values, got {x.dtype}")


def _check_code(code) -> None:
    if isinstance(code, torch.Tensor) and code.is_meta:
        raise ValueError("code is on the meta device (a shape without data): it has no values to use")
    if not isinstance(code, torch.Tensor) or not code.is_floating_point():
        raise TypeError(
            f"code must be a float tensor of values in [-1, 1], got {getattr(code, 'dtype', type(code).__name__)}"
        )
    if code.ndim != 1 or not 1 <= code.numel() <= 16:
        raise ValueError(f"a 4-bit code is a flat tensor of 1 to 16 values, got shape {tuple(code.shape)}")
    if not torch.isfinite(code).all() or code.abs().max() > 1:
        raise ValueError(f"code values must be finite and within [-1, 1], got {code.tolist()}")


def _check_float_dtype(dtype, name: str) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point dtype (float32, float16, bfloat16), got {dtype}")


def pack_4bit(idx: torch.Tensor) -> torch.Tensor:
    """Pack 4-bit indices (int, values 0-15, flat, even length) two per byte: ``(n/2, 1)`` uint8,
    the first of each pair in the high nibble."""
    if not isinstance(idx, torch.Tensor) or idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        raise TypeError(f"idx must be a tensor of integer indices, got {getattr(idx, 'dtype', type(idx).__name__)}")
    validate.tensor(idx, "idx", ndim=1)
    if idx.numel() % 2:
        raise ValueError(f"idx must be a flat tensor of even length (two per byte), got shape {tuple(idx.shape)}")
    if int(idx.min()) < 0 or int(idx.max()) > 15:
        raise ValueError(f"idx must hold 4-bit indices, 0 to 15, got values from {int(idx.min())} to {int(idx.max())}")
    q = idx.to(torch.uint8)
    return ((q[0::2] << 4) | q[1::2]).unsqueeze(1)


def unpack_4bit(packed: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` 4-bit indices (int64, flat) of a packed uint8 tensor."""
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
        raise TypeError(f"packed must be a uint8 tensor, got {getattr(packed, 'dtype', type(packed).__name__)}")
    validate.tensor(packed, "packed")
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 2 * packed.numel():
        raise ValueError(f"n must be a whole number from 0 to {2 * packed.numel()} (two values per byte), got {n!r}")
    flat = packed.reshape(-1).to(torch.int64)
    idx = torch.stack([flat >> 4, flat & 0xF], dim=1).reshape(-1)
    return idx[:n]


def quantize_blockwise_4bit(
    x: torch.Tensor, code: torch.Tensor, blocksize: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize ``x`` (any shape, float32/16, bfloat16) with a 16-value (or fewer) ``code`` in [-1, 1].

    Returns ``(packed, absmax)``: ``packed`` uint8 of shape ``(ceil(n / 2), 1)`` holding the indices
    into ``code``, ``absmax`` float32 of shape ``(ceil(n / blocksize),)``.
    """
    check_blocksize(blocksize)
    _check_input(x)
    _check_code(code)
    flat = x.reshape(-1).float()
    n = flat.numel()
    full = n - n % blocksize
    blocks = flat[:full].reshape(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    scaled = (blocks * (1.0 / absmax.clamp(min=_MIN_ABSMAX))[:, None]).clamp(-1, 1).reshape(-1)
    if full < n:  # the last, partial block: divided, and its absmax stored clamped
        tail_max = flat[full:].abs().max().clamp(min=_MIN_ABSMAX)
        absmax = torch.cat([absmax, tail_max[None]])
        scaled = torch.cat([scaled, (flat[full:] / tail_max).clamp(-1, 1)])
    if not torch.isfinite(absmax).all():  # a NaN or infinity anywhere makes its block's absmax one too
        bad = (~torch.isfinite(flat)).sum().item()
        raise ValueError(
            f"cannot quantize non-finite values: {bad} NaN or infinite entries; "
            "a single one would make its block's absmax NaN or infinite"
        )
    if n % 2:
        scaled = torch.cat([scaled, scaled.new_zeros(1)])
    # nearest code value: sort the code, compare with the midpoints between neighbours
    values, order = code.float().sort()
    midpoints = (values[:-1] + values[1:]) / 2
    nearest = torch.bucketize(scaled, midpoints, out_int32=True)  # on a midpoint: the lower value
    if not torch.equal(order, torch.arange(order.numel())):  # FP4 lists its values out of order
        nearest = order.to(torch.int32)[nearest]
    return pack_4bit(nearest), absmax


def dequantize_blockwise_4bit(
    packed: torch.Tensor,
    absmax: torch.Tensor,
    shape,
    code: torch.Tensor,
    blocksize: int = 64,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Undo :func:`quantize_blockwise_4bit`: ``code[index] * absmax`` of its block, in float32, then
    cast to ``dtype``; returns a tensor of ``shape``."""
    check_blocksize(blocksize)
    _check_code(code)
    _check_float_dtype(dtype, "dtype")
    shape = torch.Size(validate.shape(shape, "shape"))
    n = math.prod(shape)
    validate.tensor(packed, "packed")
    validate.tensor(absmax, "absmax", floating=True)  # finite: a NaN scale would make its block NaN
    if packed.dtype != torch.uint8:
        raise ValueError(f"packed must be uint8, got {packed.dtype}")
    if packed.numel() != (n + 1) // 2:
        raise ValueError(
            f"packed has {packed.numel()} bytes but shape {tuple(shape)} needs {(n + 1) // 2} "
            f"(two 4-bit values per byte)"
        )
    n_blocks = -(-n // blocksize)
    if absmax.numel() != n_blocks:
        raise ValueError(
            f"absmax has {absmax.numel()} values but {n} elements in blocks of {blocksize} need {n_blocks}"
        )
    values = code.float()[unpack_4bit(packed, n)]
    scale = absmax.float().repeat_interleave(blocksize)[:n]
    return (values * scale).reshape(shape).to(dtype)


def quantize_nf4(x: torch.Tensor, blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """NF4-quantize ``x``: ``(packed uint8 (ceil(n/2), 1), absmax float32 (ceil(n/blocksize),))``.

    Equal, bit for bit, to ``bitsandbytes.functional.quantize_4bit(x, blocksize=blocksize,
    quant_type="nf4")`` on CPU (its packed tensor and ``quant_state.absmax``).
    """
    return quantize_blockwise_4bit(x, nf4_code(), blocksize)


def dequantize_nf4(
    packed: torch.Tensor, absmax: torch.Tensor, shape, blocksize: int = 64, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Undo :func:`quantize_nf4`; equal to ``bitsandbytes.functional.dequantize_4bit`` bit for bit, except
    where bitsandbytes 0.50.2 is wrong: its AVX-512 CPU kernel, for rows whose length is a multiple of 16
    but not of ``blocksize`` (see ``tests/test_nf4.py``)."""
    return dequantize_blockwise_4bit(packed, absmax, shape, nf4_code(), blocksize, dtype)


def e3m0_code() -> torch.Tensor:
    """A 4-bit float with 3 exponent bits and no mantissa (the QLoRA paper's "Float4 (E3M0)"), float32, sorted.

    Magnitudes are powers of two, ``2**-6 .. 2**0``, plus an exact 0 (exponent field 0); with the sign bit
    that is 16 codes and 15 distinct values (+0 and -0 coincide). Each step up doubles the value: dense
    near zero, coarse near the absmax.
    """
    mags = 2.0 ** torch.arange(-6, 1, dtype=torch.float32)
    return torch.cat([-mags.flip(0), torch.zeros(1), mags])


CODES = {"nf4": nf4_code, "fp4": fp4_code, "int4": int4_code, "e3m0": e3m0_code}


def _code(name_or_code) -> torch.Tensor:
    if isinstance(name_or_code, torch.Tensor):
        _check_code(name_or_code)
        return name_or_code
    if not isinstance(name_or_code, str) or name_or_code not in CODES:
        raise ValueError(f"code must be a 4-bit data type, one of {sorted(CODES)}, or a tensor, got {name_or_code!r}")
    return CODES[name_or_code]()


def round_trip(x: torch.Tensor, code="nf4", blocksize: int = 64) -> torch.Tensor:
    """Quantize and dequantize ``x`` with ``code`` ("nf4", "fp4", "int4", "e3m0" or a tensor): same shape and dtype."""
    c = _code(code)
    packed, absmax = quantize_blockwise_4bit(x, c, blocksize)
    return dequantize_blockwise_4bit(packed, absmax, x.shape, c, blocksize, x.dtype)


def quantization_error(x: torch.Tensor, code="nf4", blocksize: int = 64) -> dict:
    """Round-trip error of ``x``: ``mse`` (mean squared error) and ``sqnr_db`` (signal-to-quantization-noise
    ratio, ``10 log10(mean x^2 / mse)``, higher is better), computed in float64."""
    err = (round_trip(x, code, blocksize).double() - x.double()).pow(2).mean().item()
    signal = x.double().pow(2).mean().item()
    return {"mse": err, "sqnr_db": 10 * math.log10(signal / err) if err > 0 else math.inf}


def code_usage(x: torch.Tensor, code="nf4", blocksize: int = 64) -> torch.Tensor:
    """How often each of the code's values is chosen for ``x``: float64 shares of shape ``(len(code),)``,
    in the code's index order. (An odd element count's padding zero is not counted.)"""
    c = _code(code)
    packed, _ = quantize_blockwise_4bit(x, c, blocksize)
    idx = unpack_4bit(packed, x.numel())
    return torch.bincount(idx, minlength=c.numel()).double() / x.numel()


def entropy_bits(shares: torch.Tensor) -> float:
    """Shannon entropy ``-sum p log2 p`` of a distribution (zeros ignored): the bits of information each
    4-bit index actually carries; at most log2(16) = 4 when all 16 values are used equally often."""
    validate.tensor(shares, "shares", ndim=1, floating=True)
    if bool((shares < 0).any()):
        raise ValueError("shares must be non-negative (a distribution), got negative values")
    total = float(shares.double().sum())
    if abs(total - 1) > 1e-6:
        raise ValueError(
            f"shares must sum to 1 (a distribution), they sum to {total:.6g}: counts? divide them by their sum"
        )
    p = shares[shares > 0].double()
    return float(-(p * p.log2()).sum())


def bits_per_parameter(blocksize: int, code_bits: int = 4, absmax_bits: int = 32) -> float:
    """Storage per weight: the code index plus a share of its block's absmax, ``4 + 32 / blocksize``."""
    check_blocksize(blocksize)
    return code_bits + absmax_bits / blocksize


class NF4Linear(torch.nn.Module):
    """A linear layer whose weight is stored as NF4 (packed codes + absmax) and dequantized in ``forward``.

    Buffers: ``packed`` uint8 ``(out*in/2, 1)``, ``absmax`` float32 ``(out*in/blocksize,)`` and an optional
    ``bias`` in ``compute_dtype``. ``forward(x)`` for ``x`` of shape ``(..., in_features)`` dequantizes the
    weight to ``compute_dtype`` and returns ``x W^T + b`` in ``x``'s dtype -- what
    ``bitsandbytes.nn.Linear4bit`` computes when its input needs gradients (its CPU inference kernel
    takes a fused bfloat16 path instead).
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        blocksize: int = 64,
        compute_dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        _check_float_dtype(compute_dtype, "compute_dtype")
        if weight.ndim != 2:
            raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}")
        packed, absmax = quantize_nf4(weight.detach(), blocksize)
        self.out_features, self.in_features = weight.shape
        self.blocksize, self.compute_dtype = blocksize, compute_dtype
        self.register_buffer("packed", packed)
        self.register_buffer("absmax", absmax)
        self.register_buffer("bias", None if bias is None else bias.detach().to(compute_dtype).clone())

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, blocksize: int = 64, compute_dtype: torch.dtype = torch.float32):
        return cls(linear.weight, linear.bias, blocksize, compute_dtype)

    def dequantized_weight(self) -> torch.Tensor:
        """The weight as the layer computes with it: ``(out_features, in_features)`` in ``compute_dtype``."""
        return dequantize_nf4(
            self.packed, self.absmax, (self.out_features, self.in_features), self.blocksize, self.compute_dtype
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected input of shape (..., {self.in_features}), got {tuple(x.shape)}")
        y = torch.nn.functional.linear(x.to(self.compute_dtype), self.dequantized_weight(), self.bias)
        return y.to(x.dtype)

    def memory_bytes(self) -> int:
        """Bytes of the stored weight and bias: packed codes + absmax (+ bias)."""
        return sum(t.numel() * t.element_size() for t in (self.packed, self.absmax, self.bias) if t is not None)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, blocksize={self.blocksize}"


@torch.no_grad()
def quantize_model_weights(model: torch.nn.Module, code="nf4", blocksize: int = 64, skip=("lm_head",)) -> int:
    """Replace, in place, the weight of every ``nn.Linear`` (except names containing one of ``skip``) by its
    4-bit round trip ("fake quantization"): the model then computes exactly with the values a 4-bit
    model would dequantize to. Returns the number of weights changed. ``skip``: a list of names (a single
    string is refused: ``("lm_head")`` without its comma is one); nothing is changed before every
    argument is checked."""
    validate.module(model, "model")
    skip = validate.texts(skip, "skip", allow_empty=True)
    _code(code)
    check_blocksize(blocksize)
    count = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not any(s in name for s in skip):
            module.weight.copy_(round_trip(module.weight, code, blocksize))
            count += module.weight.numel()
    if count == 0:
        raise ValueError("no nn.Linear weights were quantized")
    return count
