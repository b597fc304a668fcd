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

__all__ = ["VALID_BLOCKSIZES", "nf4_code", "fp4_code", "int4_code", "check_blocksize", "quantize_blockwise_4bit",
           "dequantize_blockwise_4bit", "quantize_nf4", "dequantize_nf4", "pack_4bit", "unpack_4bit"]

VALID_BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
NF4_OFFSET = 0.9677083  # the outermost quantile probability, (1 - 1/(2*15) + 1 - 1/(2*16)) / 2
_MIN_ABSMAX = 1e-38


def nf4_code() -> torch.Tensor:
    """The 16 NF4 values, float32, sorted: 7 negative, an exact 0, 8 positive, from -1 to 1.

    Positive half: quantiles of N(0, 1) at 8 probabilities evenly spaced from ``NF4_OFFSET`` down to
    0.5 (0.5 itself excluded); negative half: minus the quantiles at 7 such probabilities. Both are
    divided by the largest, so the ends are exactly -1 and 1. The probabilities are float32 (as
    ``torch.linspace`` makes them in bitsandbytes), the quantiles float64, the result float32.
    """
    p_pos = torch.linspace(NF4_OFFSET, 0.5, 9)[:-1].double()   # float32 grid, as bnb builds it
    p_neg = torch.linspace(NF4_OFFSET, 0.5, 8)[:-1].double()
    pos = torch.special.ndtri(p_pos)                             # the normal quantile function
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
        raise ValueError(f"blocksize must be a power of two from 32 to 4096 ({', '.join(map(str, VALID_BLOCKSIZES))}),"
                         f" got {blocksize!r}")


def _check_input(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"expected float32, float16 or bfloat16 values, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError("cannot quantize an empty tensor")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise ValueError(f"cannot quantize non-finite values: {bad} NaN or infinite entries; "
                         "a single one would make its block's absmax NaN or infinite")


def pack_4bit(idx: torch.Tensor) -> torch.Tensor:
    """Pack 4-bit indices (int, values 0-15, flat, even length) two per byte: ``(n/2, 1)`` uint8,
    the first of each pair in the high nibble."""
    q = idx.to(torch.uint8)
    return ((q[0::2] << 4) | q[1::2]).unsqueeze(1)


def unpack_4bit(packed: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` 4-bit indices (int64, flat) of a packed uint8 tensor."""
    flat = packed.reshape(-1).to(torch.int64)
    idx = torch.stack([flat >> 4, flat & 0xF], dim=1).reshape(-1)
    return idx[:n]


def quantize_blockwise_4bit(x: torch.Tensor, code: torch.Tensor, blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize ``x`` (any shape, float32/16, bfloat16) with a 16-value (or fewer) ``code`` in [-1, 1].

    Returns ``(packed, absmax)``: ``packed`` uint8 of shape ``(ceil(n / 2), 1)`` holding the indices
    into ``code``, ``absmax`` float32 of shape ``(ceil(n / blocksize),)``.
    """
    check_blocksize(blocksize)
    _check_input(x)
    if code.numel() > 16:
        raise ValueError(f"a 4-bit code has at most 16 values, got {code.numel()}")
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
    if n % 2:
        scaled = torch.cat([scaled, scaled.new_zeros(1)])
    # nearest code value: sort the code, compare with the midpoints between neighbours
    values, order = code.float().sort()
    midpoints = (values[:-1] + values[1:]) / 2
    nearest = torch.bucketize(scaled, midpoints)  # on a midpoint: the lower value
    return pack_4bit(order[nearest]), absmax


def dequantize_blockwise_4bit(packed: torch.Tensor, absmax: torch.Tensor, shape, code: torch.Tensor,
                              blocksize: int = 64, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Undo :func:`quantize_blockwise_4bit`: ``code[index] * absmax`` of its block, in float32, then
    cast to ``dtype``; returns a tensor of ``shape``."""
    check_blocksize(blocksize)
    shape = torch.Size(shape)
    n = math.prod(shape)
    if n == 0:
        raise ValueError("shape has no elements")
    if packed.dtype != torch.uint8:
        raise ValueError(f"packed must be uint8, got {packed.dtype}")
    if packed.numel() != (n + 1) // 2:
        raise ValueError(f"packed has {packed.numel()} bytes but shape {tuple(shape)} needs {(n + 1) // 2} "
                         f"(two 4-bit values per byte)")
    n_blocks = -(-n // blocksize)
    if absmax.numel() != n_blocks:
        raise ValueError(f"absmax has {absmax.numel()} values but {n} elements in blocks of {blocksize} "
                         f"need {n_blocks}")
    values = code.float()[unpack_4bit(packed, n)]
    scale = absmax.float().repeat_interleave(blocksize)[:n]
    return (values * scale).reshape(shape).to(dtype)


def quantize_nf4(x: torch.Tensor, blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """NF4-quantize ``x``: ``(packed uint8 (ceil(n/2), 1), absmax float32 (ceil(n/blocksize),))``.

    Equal, bit for bit, to ``bitsandbytes.functional.quantize_4bit(x, blocksize=blocksize,
    quant_type="nf4")`` on CPU (its packed tensor and ``quant_state.absmax``).
    """
    return quantize_blockwise_4bit(x, nf4_code(), blocksize)


def dequantize_nf4(packed: torch.Tensor, absmax: torch.Tensor, shape, blocksize: int = 64,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Undo :func:`quantize_nf4`; equal to ``bitsandbytes.functional.dequantize_4bit`` bit for bit."""
    return dequantize_blockwise_4bit(packed, absmax, shape, nf4_code(), blocksize, dtype)
