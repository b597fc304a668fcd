"""Double quantization: storing the NF4 absmax constants in 8 bits (lesson 3).

NF4 keeps one float32 ``absmax`` per block of 64 weights: 32 / 64 = 0.5 extra bits per parameter. QLoRA
(Dettmers et al. 2023, section 3, "Double Quantization") quantizes these constants a second time:

1. **Centre**: ``offset = absmax.mean()``; the constants are all positive, so subtracting their mean
   makes them symmetric around zero and lets a *signed* code use all of its 256 values.
2. **Blocks of 256**: the centred constants are cut into blocks of 256; each block keeps its own
   float32 absolute maximum ``absmax2`` and is divided by it, so it lies in [-1, 1].
3. **8-bit dynamic code**: each scaled constant gets the index of a value of the signed 8-bit
   *dynamic* map (:func:`dynamic_map`), a float-like code with a sign, a run of zero bits that acts as
   a decimal exponent, and a linear fraction.

Storage drops to ``8 / 64 + 32 / (64 * 256)`` = about 0.127 bits per parameter
(:func:`constant_bits_per_parameter`). Reconstruction: ``code[q] * absmax2 + offset``.

How the index is chosen -- bit-for-bit details of bitsandbytes 0.50.2 on CPU
------------------------------------------------------------------------------
``bitsandbytes.functional.quantize_blockwise`` on a CPU float32 tensor calls the C++ kernel
``cquantize_blockwise_cpu_fp32`` (``csrc/cpu_ops.cpp``, ``quantize_cpu_impl``). It does **not** search
the code for the nearest value. Instead it

* builds, once per code, a table of 65,536 entries: grid point ``g_i = (2 * i) / 65535 - 1``
  (float32 arithmetic, ``i = 0..65535``) maps to the code index whose float32 midpoints
  ``(code[j] + code[j + 1]) * 0.5`` lie strictly below ``g_i`` (nearest code, a tie to the lower one);
* scales a value by *multiplying* with ``1 / absmax`` (float32), clamps it to [-1, 1] and snaps it to a
  grid point: ``i = trunc(fma((s + 1) * 0.5, 65535, 0.5))``. The compiled 0.50.2 library contracts
  ``t * 65535 + 0.5`` into one fused multiply-add (rounded once to float32; rounding the product first
  gave the same index on every value tried). The float32 rounding itself matters: a sum just below an
  integer ``k`` rounds up to ``k`` before the truncation, so this is not an exact ``floor(t*65535 + 0.5)``;
* returns the table entry for that grid point; a block whose absmax is 0 gets index 0 everywhere.

So the value is first rounded to the nearest of 65,535 evenly spaced points (spacing about
3.05e-5 of the block's absmax) and only then to the nearest code value. Where two code values are
closer together than the grid (the dynamic map is very fine near zero) or a value lies near a midpoint,
the chosen code is not always the nearest one. On the constants of a 4096 x 4096 weight drawn from
N(0, 0.02**2) about 0.18 % of them get another code than exact rounding would give (a neighbour in most
cases, up to 4 codes away among the finely spaced small values), for a negligible change of the error.
The grid has no point at 0: an exact 0 snaps to ``1 / 65535`` and is stored as the code value 2.125e-5
(times the block's absmax), not as the code's exact 0.
``exact=True`` gives true nearest-value rounding instead: the rule the CUDA kernel implements with a
binary search (CUDA compares against float32 midpoints, so it can differ from this exact rule only for
values within a rounding error of a midpoint).

Dequantization is plain: ``code[q] * absmax2`` in float32, then ``+ offset`` in float32.
"""

from __future__ import annotations

import math

import torch

from . import validate

__all__ = [
    "LUT_SIZE",
    "dynamic_map",
    "quantize_blockwise_8bit",
    "dequantize_blockwise_8bit",
    "double_quantize",
    "dequantize_absmax",
    "constant_bits_per_parameter",
    "quantized_llama_bytes",
]

LUT_SIZE = 65536  # grid points of bitsandbytes' CPU lookup table for 8-bit blockwise quantization
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------------


def _check_blocksize(blocksize: int, name: str = "blocksize") -> None:
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize <= 0 or blocksize & (blocksize - 1):
        raise ValueError(f"{name} must be a positive power of two (1, 2, 4, ..., 256, ...), got {blocksize!r}")


def _check_values(x: torch.Tensor, what: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_meta:
        raise ValueError(f"{what} is on the meta device (a shape without data): it has no values to use")
    if x.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{what} must be float32, float16 or bfloat16, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{what} is empty: there is nothing to quantize")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{what} has {bad} NaN or infinite entries; a single one would make its block's "
            "absmax (and the mean offset) NaN or infinite"
        )


def _check_code(code: torch.Tensor) -> torch.Tensor:
    if isinstance(code, torch.Tensor) and code.is_meta:
        raise ValueError("code is on the meta device (a shape without data): it has no values to use")
    if not isinstance(code, torch.Tensor) or code.dim() != 1 or code.numel() != 256:
        raise ValueError(
            "code must be a 1-D tensor of 256 values (an 8-bit code), got "
            f"{tuple(code.shape) if isinstance(code, torch.Tensor) else type(code).__name__}"
        )
    code = code.float()
    if not torch.isfinite(code).all() or (code[1:] < code[:-1]).any():
        raise ValueError("code must hold 256 finite values sorted in increasing order")
    return code


def _check_codes_and_scales(q: torch.Tensor, absmax: torch.Tensor, blocksize: int, name: str = "absmax") -> None:
    if not isinstance(q, torch.Tensor) or q.dtype != torch.uint8:
        raise ValueError(
            f"q must be a uint8 tensor of code indices, got "
            f"{q.dtype if isinstance(q, torch.Tensor) else type(q).__name__}"
        )
    if q.numel() == 0:
        raise ValueError("q is empty: there is nothing to dequantize")
    if q.is_meta:
        raise ValueError("q is on the meta device (a shape without data): it has no values to use")
    blocks = -(-q.numel() // blocksize)
    if not isinstance(absmax, torch.Tensor) or absmax.numel() != blocks:
        got = absmax.numel() if isinstance(absmax, torch.Tensor) else type(absmax).__name__
        raise ValueError(f"{name}: {q.numel()} codes in blocks of {blocksize} need {blocks} {name} values, got {got}")
    validate.tensor(absmax, name, floating=True)  # finite: a NaN scale would make its whole block NaN


# --------------------------------------------------------------------------------------------------
# the 8-bit dynamic code
# --------------------------------------------------------------------------------------------------


def dynamic_map(signed: bool = True) -> torch.Tensor:
    """The 8-bit dynamic quantization map (Dettmers 2015), 256 float32 values sorted in increasing order.

    Read a code byte as: a sign bit, then ``z`` zero bits (0..6) acting as a decimal exponent, an
    indicator 1 bit, and the remaining ``6 - z`` bits (``7 - z`` unsigned, where there is no sign bit) as a
    linear fraction. The values with ``z`` zeros lie in ``[0.1, 1] * 10**-z``: the midpoints of
    ``2**(6 - z) + 1`` evenly spaced float32 boundaries in [0.1, 1], times ``10**-z``. So the decade
    0.1 .. 1 gets 64 values (steps of 0.014), each smaller decade half as many, and 1e-7 .. 1e-6 just one
    (5.5e-7): a large dynamic range with a fine relative resolution for large values.

    Signed: 127 negative values (from about -0.993 to -5.5e-7), 0, and 128 positive values (5.5e-7 up to
    exactly 1.0). Unsigned: 254 positive values, 0 and 1.0. Equals
    ``bitsandbytes.functional.create_dynamic_map(signed)`` exactly (same float32 arithmetic).
    """
    values: list[torch.Tensor] = []
    for zeros in range(7):
        fraction_bits = 6 - zeros if signed else 7 - zeros
        boundaries = torch.linspace(0.1, 1.0, 2**fraction_bits + 1, dtype=torch.float32)
        fractions = (boundaries[:-1] + boundaries[1:]) / 2
        magnitude = fractions * 10.0 ** (-zeros)  # float32 times a Python float: computed in float32
        values.append(magnitude)
        if signed:
            values.append(-magnitude)
    values.append(torch.tensor([0.0, 1.0]))
    code = torch.cat(values)  # 254 + 2 = 256 values in both cases
    return code.sort().values


# --------------------------------------------------------------------------------------------------
# 8-bit blockwise quantization
# --------------------------------------------------------------------------------------------------


def _cpu_lookup_table(code: torch.Tensor) -> torch.Tensor:
    """bitsandbytes' CPU table: for each of the 65,536 grid points in [-1, 1] the index (int64) of the
    nearest code value, judged against float32 midpoints, a grid point on a midpoint going to the lower."""
    midpoints = (code[:-1] + code[1:]) * 0.5
    grid = (2.0 * torch.arange(LUT_SIZE, dtype=torch.float32)) / float(LUT_SIZE - 1) - 1.0
    return torch.searchsorted(midpoints, grid, side="left")  # number of midpoints strictly below g


def _cpu_grid_index(scaled: torch.Tensor) -> torch.Tensor:
    """The grid point (int64, 0..65535) the CPU kernel snaps a scaled float32 value to:
    ``trunc(fma((s + 1) * 0.5, 65535, 0.5))`` in float32.

    The FMA is rounded once: ``t`` is a multiple of 2**-25 below 1, so ``t * 65535 + 0.5`` is exact in
    float64 and a single cast to float32 gives the fused result."""
    t = (scaled.clamp(-1.0, 1.0) + 1.0) * 0.5
    fused = (t.double() * float(LUT_SIZE - 1) + 0.5).float()
    return fused.long()  # non-negative, so truncation is floor


def _nearest_code(scaled: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Index (int64) of the code value nearest to each scaled value, a tie going to the lower value.
    Midpoints and comparisons in float64, where the midpoint of two float32 values is exact."""
    code64 = code.double()
    midpoints = (code64[:-1] + code64[1:]) / 2
    return torch.bucketize(scaled.double(), midpoints, right=False)


def quantize_blockwise_8bit(
    x: torch.Tensor, code: torch.Tensor, blocksize: int = 256, exact: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise 8-bit quantization of ``x`` with a sorted 256-value ``code`` in [-1, 1].

    ``x``: any shape, float32/float16/bfloat16, finite, non-empty (half precision is widened to float32
    first, as bitsandbytes does). It is flattened and cut into blocks of ``blocksize`` (a positive power
    of two); the last block may be shorter. Each block keeps ``absmax = max |x|`` and each value is scaled
    by multiplying with ``1 / absmax`` (float32) -- the last, partial block too.

    ``exact=False``: the index bitsandbytes 0.50.2's CPU kernel stores (value snapped to a grid of 65,536
    points, then looked up in a table; see the module docstring), bit for bit. ``exact=True``: the index
    of the truly nearest code value (ties to the lower one), the rule CUDA uses.

    Returns ``(q, absmax)``: ``q`` uint8 with the shape of ``x``; ``absmax`` float32 of shape
    ``(ceil(numel / blocksize),)``. A block whose absmax is 0 gets index 0 (``exact=False``, as the CPU
    kernel does) or the index of the code value nearest to 0 (``exact=True``); either dequantizes to 0.
    """
    _check_blocksize(blocksize)
    _check_values(x, "x")
    code = _check_code(code)
    flat = x.reshape(-1).float()
    n = flat.numel()
    blocks = -(-n // blocksize)
    width = min(blocksize, n)  # a block larger than the data is the data: never allocate the padding
    padded = torch.cat([flat, flat.new_zeros(blocks * width - n)]).reshape(blocks, width)
    absmax = padded.abs().amax(dim=1)  # zero padding cannot change a maximum of absolute values
    scaled = padded * (1.0 / absmax)[:, None]  # 0 * inf = NaN in an all-zero block: replaced below
    zero_block = (absmax == 0)[:, None]
    if exact:
        idx = _nearest_code(scaled.clamp(-1.0, 1.0), code)
        idx = torch.where(zero_block, _nearest_code(torch.zeros(1), code), idx)
    else:
        table = _cpu_lookup_table(code)
        idx = table[_cpu_grid_index(torch.where(zero_block, 0.0, scaled))]
        idx = torch.where(zero_block, 0, idx)
    q = idx.reshape(-1)[:n].to(torch.uint8).reshape(x.shape)
    return q, absmax


def dequantize_blockwise_8bit(
    q: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int = 256
) -> torch.Tensor:
    """Undo :func:`quantize_blockwise_8bit`: ``code[q] * absmax`` of its block, float32, shape of ``q``.

    ``q``: uint8 indices (any shape, flattened in blocks of ``blocksize``); ``absmax``: one value per
    block, ``ceil(numel / blocksize)`` of them (used as float32); ``code``: the 256-value code.
    """
    _check_blocksize(blocksize)
    _check_codes_and_scales(q, absmax, blocksize)
    code = _check_code(code)
    values = code[q.reshape(-1).long()]
    scales = absmax.reshape(-1).float().repeat_interleave(min(blocksize, values.numel()))[: values.numel()]
    return (values * scales).reshape(q.shape)


# --------------------------------------------------------------------------------------------------
# double quantization of the NF4 constants
# --------------------------------------------------------------------------------------------------


def double_quantize(
    absmax: torch.Tensor, blocksize: int = 256, exact: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize the first-level constants ``absmax`` (the float32 per-block maxima of NF4) to 8 bits.

    ``offset = absmax.mean()``; ``absmax - offset`` is quantized blockwise (blocks of ``blocksize``,
    256 in QLoRA) with the signed dynamic map; see :func:`quantize_blockwise_8bit` for ``exact``.

    ``absmax``: any shape (flattened), float32 (float16/bfloat16 are widened), finite, non-empty.
    Returns ``(q, absmax2, offset)``: ``q`` uint8 of shape ``(numel,)``, ``absmax2`` float32 of shape
    ``(ceil(numel / blocksize),)``, ``offset`` a float32 0-d tensor. With ``exact=False`` these equal
    ``state.absmax``, ``state.state2.absmax`` and ``state.offset`` of bitsandbytes'
    ``quantize_4bit(..., compress_statistics=True)`` on CPU, bit for bit.
    """
    _check_blocksize(blocksize)
    _check_values(absmax, "absmax")
    constants = absmax.reshape(-1).float()
    offset = constants.mean()
    q, absmax2 = quantize_blockwise_8bit(constants - offset, dynamic_map(signed=True), blocksize, exact=exact)
    return q, absmax2, offset


def dequantize_absmax(
    q: torch.Tensor, absmax2: torch.Tensor, offset: torch.Tensor | float, blocksize: int = 256
) -> torch.Tensor:
    """Rebuild the first-level constants: ``dynamic_map()[q] * absmax2 + offset`` (float32, shape
    ``(numel(q),)``), exactly what bitsandbytes' ``dequantize_4bit`` uses for a nested quant state
    (``dequantize_blockwise(state.absmax, state.state2) + state.offset``)."""
    _check_blocksize(blocksize)
    _check_codes_and_scales(q, absmax2, blocksize, "absmax2")
    if isinstance(offset, torch.Tensor):
        offset = validate.tensor(offset, "offset", floating=True).float()
        if offset.numel() != 1:
            raise ValueError(f"offset must be one number, got {offset.numel()} values")
    else:
        if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not math.isfinite(offset):
            raise ValueError(f"offset must be one finite number, got {validate.shown(offset)}")
        offset = torch.tensor(float(offset))
    values = dequantize_blockwise_8bit(q.reshape(-1), absmax2, dynamic_map(signed=True), blocksize)
    return values + offset.reshape(())


def constant_bits_per_parameter(blocksize: int = 64, blocksize2: int = 256, double: bool = True) -> float:
    """Bits per weight spent on the quantization constants.

    Without double quantization: one float32 absmax per block, ``32 / blocksize`` (0.5 for 64). With it:
    an 8-bit code per block plus one float32 ``absmax2`` per ``blocksize2`` blocks,
    ``8 / blocksize + 32 / (blocksize * blocksize2)`` (about 0.127 for 64 and 256). The single float32
    offset and the 256-value code per tensor are left out (they do not grow with the tensor).
    """
    _check_blocksize(blocksize)
    if not double:
        return 32 / blocksize
    _check_blocksize(blocksize2, "blocksize2")
    return 8 / blocksize + 32 / (blocksize * blocksize2)


def quantized_llama_bytes(config, blocksize: int = 64, blocksize2: int = 256, double: bool = True) -> dict:
    """Bytes of a Llama (a ``LlamaConfig``) stored the QLoRA way: the decoder's linear weights in 4 bits
    plus their constants, everything else (embeddings, ``lm_head``, norms) in 16 bits.

    Returns ``{"linear_params", "other_params", "weights_4bit", "constants", "other_16bit", "total"}``
    (counts, then bytes). Constants: ``constant_bits_per_parameter`` per linear weight (the per-tensor
    offset and code are left out).
    """
    from .llama import llama_param_counts

    counts = llama_param_counts(config)
    linear, other = counts["linear"], counts["embeddings"] + counts["norms"]
    out = {
        "linear_params": linear,
        "other_params": other,
        "weights_4bit": linear * 4 / 8,
        "constants": linear * constant_bits_per_parameter(blocksize, blocksize2, double) / 8,
        "other_16bit": other * 2,
    }
    out["total"] = out["weights_4bit"] + out["constants"] + out["other_16bit"]
    return out
