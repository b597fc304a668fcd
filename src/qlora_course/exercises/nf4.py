"""Lesson 2's exercises: NF4 from scratch.

References are the package's finished versions (``qlora_course.nf4``, equal to bitsandbytes bit for bit:
``tests/test_nf4.py``). A nearest-code answer is judged by the distance it achieves, not by the index it
picks: where two code values are equally near (or a right answer's scaling differs from bitsandbytes' in
the last bit), either index is right.
"""

from __future__ import annotations

import torch

from qlora_grading import Exercise, Tolerance

from .. import nf4
from ._draw import choice, floats, ints

BNB = "bitsandbytes.functional"


def _entropy_in_bits(answer, g):
    counts = [torch.tensor([10]), torch.ones(16, dtype=torch.long), torch.randint(0, 50, (12,), generator=g)]
    counts[2][ints(g, 0, 12)] = 0
    counts[2][0] = 7
    counts.append(torch.randint(0, 10**6, (16,), generator=g) ** 2 // 10**6)  # a long tail, zeros likely
    counts.append(torch.tensor([0, 3, 0, 0, 1]))
    return {f"case {k}": answer(c) for k, c in enumerate(counts)}


def _entropy_reference(counts):
    return nf4.entropy_bits(counts.double() / counts.sum())


def _normal_float_code(answer, g):
    return {"default": answer(), "other offset": answer(floats(g, 0.95, 0.99)), "low offset": answer(0.9)}


def _scaled(x: torch.Tensor, blocksize: int) -> torch.Tensor:
    """``x`` divided by its blocks' absmax (0 where a block is all zero), as float64: where a right
    answer's rounding ends, measured from the exact scaled value."""
    blocks = x.double().view(-1, blocksize)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    return (blocks / torch.where(absmax == 0, 1.0, absmax)).reshape(-1)


def _quantize_blocks(answer, g):
    x = torch.randn(64 * 50, generator=g)
    zero = ints(g, 0, 25)  # one block of 128 (two of 64) all zero: absmax 0, every code of value 0
    x[128 * zero : 128 * (zero + 1)] = 0
    outlier = 128 * ((zero + 1 + ints(g, 0, 24)) % 25) + ints(g, 0, 128)  # in another block
    x[outlier] = 3.0 * choice(g, [-1, 1])
    out = {}
    for label, code, bs in (("nf4", nf4.nf4_code(), 64), ("int4, blocks of 128", nf4.int4_code(), 128)):
        result = answer(x, code, bs)
        idx, absmax = result if isinstance(result, (tuple, list)) and len(result) == 2 else (None, None)
        out[f"{label}: a pair"] = idx is not None
        if idx is None:
            continue
        out[f"{label}: absmax"] = absmax
        out[f"{label}: index dtype and shape"] = [str(getattr(idx, "dtype", None)), list(getattr(idx, "shape", []))]
        chosen = code.double()[idx.reshape(-1).long().clamp(0, code.numel() - 1)]
        out[f"{label}: distance to the chosen value"] = (_scaled(x, bs) - chosen).abs().float()
    return out


def _quantize_blocks_reference(x, code, blocksize):
    packed, absmax = nf4.quantize_blockwise_4bit(x, code, blocksize)
    return nf4.unpack_4bit(packed, x.numel()), absmax


def _pack_pairs(answer, g):
    return {"packed": answer(torch.randint(0, 16, (1000,), generator=g)), "one pair": answer(torch.tensor([15, 1]))}


def _pack_pairs_reference(idx):
    return nf4.pack_4bit(idx).flatten()


def _dequantize_blocks(answer, g):
    out = {}
    for bs, nblocks in ((64, ints(g, 2, 60)), (128, 3), (4096, 2)):
        packed, absmax = nf4.quantize_nf4(torch.randn(bs * nblocks, generator=g), bs)
        out[f"blocks of {bs}"] = answer(packed.flatten(), absmax, nf4.nf4_code(), bs)
    # another code than NF4's: the answer must use the code it is given
    idx = torch.randint(0, 16, (32,), generator=g)
    out["given code"] = answer(nf4.pack_4bit(idx).flatten(), torch.tensor([1.5]), torch.linspace(-1, 1, 16), 32)
    return out


def _dequantize_blocks_reference(packed, absmax, code, blocksize):
    return nf4.dequantize_blockwise_4bit(packed, absmax, (2 * packed.numel(),), code, blocksize)


EXERCISES = [
    Exercise(
        "entropy_in_bits",
        points=1,
        probe=_entropy_in_bits,
        reference=_entropy_reference,
        finished=(nf4.entropy_bits,),
        wrong=(
            # natural log instead of bits
            """
def entropy_in_bits(counts):
    p = counts.double() / counts.sum()
    p = p[p > 0]
    return float(-(p * torch.log(p)).sum())
""",
            # forgets to drop zero counts: NaN
            """
def entropy_in_bits(counts):
    p = counts.double() / counts.sum()
    return float(-(p * torch.log2(p)).sum())
""",
        ),
        alternatives=(
            """
def entropy_in_bits(counts):
    p = counts / counts.sum()
    return -sum(float(q) * math.log2(float(q)) for q in p if q > 0)
""",
            # a NumPy float64
            """
def entropy_in_bits(counts):
    import numpy as np
    p = counts.numpy() / counts.numpy().sum()
    p = p[p > 0]
    return -(p * np.log2(p)).sum()
""",
            # float32 throughout, a 0-d tensor
            """
def entropy_in_bits(counts):
    p = counts.float() / counts.sum()
    return -(p * torch.log2(p)).nan_to_num().sum()
""",
        ),
        cheats=(
            # the package's function
            """
def entropy_in_bits(counts):
    return nf4.entropy_bits(counts / counts.sum())
""",
        ),
    ),
    Exercise(
        "normal_float_code",
        points=2,
        probe=_normal_float_code,
        reference=nf4.nf4_code,
        # quantiles in float64 or float32, normalised: a few float32 steps
        tolerance=Tolerance(ulps=8),
        finished=(nf4.nf4_code, f"{BNB}.get_4bit_type", f"{BNB}.create_normal_map"),
        wrong=(
            # symmetric 8 + 8 code without an exact zero
            """
def normal_float_code(offset=0.9677083):
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double())
    v = torch.cat([pos, -pos]).float().sort().values
    return v / v.max()
""",
            # forgets to rescale: the raw quantiles, from -1.85 to 1.85
            """
def normal_float_code(offset=0.9677083):
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double())
    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8)[:-1].double())
    return torch.cat([pos, torch.zeros(1, dtype=torch.float64), neg]).float().sort().values
""",
            # ignores the offset argument
            """
def normal_float_code(offset=0.9677083):
    return nf4.nf4_code().clone()
""",
        ),
        alternatives=(
            """
def normal_float_code(offset=0.9677083):
    from statistics import NormalDist
    q = NormalDist().inv_cdf
    pos = [q(p) for p in torch.linspace(offset, 0.5, 9)[:-1].tolist()]
    neg = [-q(p) for p in torch.linspace(offset, 0.5, 8)[:-1].tolist()]
    v = torch.tensor(sorted(pos + [0.0] + neg), dtype=torch.float64)
    return (v / v.max()).float()
""",
        ),
        cheats=(
            # bitsandbytes' table
            """
def normal_float_code(offset=0.9677083):
    return bnbF.get_4bit_type('nf4', device='cpu')
""",
        ),
    ),
    Exercise(
        "quantize_blocks",
        points=2,
        probe=_quantize_blocks,
        reference=_quantize_blocks_reference,
        # absmax is exact; a distance may differ by the last bits of the scaling (multiplying by 1 / absmax
        # as bitsandbytes does, or dividing)
        tolerance={"": Tolerance(ulps=0), "distance to the chosen value": Tolerance(ulps=4)},
        finished=(nf4.quantize_blockwise_4bit, nf4.quantize_nf4, f"{BNB}.quantize_4bit"),
        wrong=(
            # one absmax for the whole tensor instead of per block
            """
def quantize_blocks(x, code, blocksize):
    a = x.abs().max()
    mid = (code[1:] + code[:-1]) / 2
    return torch.bucketize(x / a, mid), a.repeat(x.numel() // blocksize)
""",
            # rounds the raw values without scaling them by the absmax
            """
def quantize_blocks(x, code, blocksize):
    blocks = x.view(-1, blocksize)
    mid = (code[1:] + code[:-1]) / 2
    return torch.bucketize(x, mid), blocks.abs().amax(dim=1)
""",
            # rounds up to the next code value instead of to the nearest
            """
def quantize_blocks(x, code, blocksize):
    blocks = x.float().view(-1, blocksize)
    a = blocks.abs().amax(dim=1)
    s = (blocks / a.clamp(min=1e-38)[:, None]).reshape(-1)
    return torch.bucketize(s, code).clamp(max=15), a
""",
            # rounds down
            """
def quantize_blocks(x, code, blocksize):
    blocks = x.float().view(-1, blocksize)
    a = blocks.abs().amax(dim=1)
    s = (blocks / a.clamp(min=1e-38)[:, None]).reshape(-1)
    return (torch.bucketize(s, code, right=True) - 1).clamp(min=0), a
""",
            # an all-zero block's absmax clamped to 1e-8: its stored absmax is no longer 0
            """
def quantize_blocks(x, code, blocksize):
    blocks = x.float().view(-1, blocksize)
    absmax = blocks.abs().amax(dim=1).clamp(min=1e-8)
    mid = (code[1:] + code[:-1]) / 2
    return torch.bucketize((blocks / absmax[:, None]).reshape(-1), mid), absmax
""",
        ),
        alternatives=(
            """
def quantize_blocks(x, code, blocksize):
    blocks = x.float().reshape(-1, blocksize)
    absmax = blocks.abs().max(dim=1).values
    scaled = blocks / torch.where(absmax == 0, torch.ones_like(absmax), absmax)[:, None]
    idx = (scaled.reshape(-1, 1) - code.reshape(1, -1)).abs().argmin(dim=1)
    return idx, absmax
""",
            # bitsandbytes' arithmetic: multiply by the reciprocal, clamp, the upper code on a tie
            """
def quantize_blocks(x, code, blocksize):
    blocks = x.float().view(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    s = (blocks * (1.0 / absmax.clamp(min=1e-38))[:, None]).clamp(-1, 1).reshape(-1)
    mid = (code[1:] + code[:-1]) / 2
    return torch.bucketize(s, mid, right=True), absmax
""",
        ),
        cheats=(
            # the package's quantizer
            """
def quantize_blocks(x, code, blocksize):
    packed, absmax = nf4.quantize_blockwise_4bit(x, code, blocksize)
    return nf4.unpack_4bit(packed, x.numel()), absmax
""",
        ),
    ),
    Exercise(
        "pack_pairs",
        points=1,
        probe=_pack_pairs,
        reference=_pack_pairs_reference,
        tolerance=Tolerance(ulps=0),
        finished=(nf4.pack_4bit,),
        wrong=(
            # first index in the low nibble
            """
def pack_pairs(idx):
    return (idx[1::2] * 16 + idx[0::2]).to(torch.uint8)
""",
            # forgets to combine: keeps one index per byte
            """
def pack_pairs(idx):
    return idx[0::2].to(torch.uint8)
""",
            # bitsandbytes' own layout, shape (n/2, 1): right bytes, wrong shape for this exercise
            """
def pack_pairs(idx):
    return (idx[0::2] * 16 + idx[1::2]).to(torch.uint8)[:, None]
""",
        ),
        alternatives=(
            """
def pack_pairs(idx):
    pairs = idx.view(-1, 2).to(torch.uint8)
    return (pairs[:, 0] << 4) | pairs[:, 1]
""",
        ),
        cheats=(
            # the package's packer
            """
def pack_pairs(idx):
    return nf4.pack_4bit(idx).flatten()
""",
        ),
    ),
    Exercise(
        "dequantize_blocks",
        points=2,
        probe=_dequantize_blocks,
        reference=_dequantize_blocks_reference,
        # one float32 product per value: exact, but for a double rounding via float64
        tolerance=Tolerance(ulps=1),
        finished=(nf4.dequantize_blockwise_4bit, nf4.dequantize_nf4, nf4.unpack_4bit, f"{BNB}.dequantize_4bit"),
        wrong=(
            # low nibble first
            """
def dequantize_blocks(packed, absmax, code, blocksize):
    p = packed.reshape(-1).long()
    idx = torch.stack([p & 0xF, p >> 4], dim=1).reshape(-1)
    return code[idx] * absmax.repeat_interleave(blocksize)
""",
            # absmax repeated block after block (repeat) instead of each block's own
            """
def dequantize_blocks(packed, absmax, code, blocksize):
    p = packed.reshape(-1).long()
    idx = torch.stack([p >> 4, p & 0xF], dim=1).reshape(-1)
    return code[idx] * absmax.repeat(blocksize)
""",
            # forgets the absmax
            """
def dequantize_blocks(packed, absmax, code, blocksize):
    p = packed.reshape(-1).long()
    return code[torch.stack([p >> 4, p & 0xF], dim=1).reshape(-1)]
""",
        ),
        alternatives=(
            """
def dequantize_blocks(packed, absmax, code, blocksize):
    hi = (packed.reshape(-1) // 16).long()
    lo = (packed.reshape(-1) % 16).long()
    idx = torch.empty(2 * packed.numel(), dtype=torch.long)
    idx[0::2], idx[1::2] = hi, lo
    return (code[idx].view(-1, blocksize) * absmax.view(-1, 1)).reshape(-1)
""",
            # in float64, cast back
            """
def dequantize_blocks(packed, absmax, code, blocksize):
    p = packed.reshape(-1).long()
    idx = torch.stack([p // 16, p % 16], dim=1).reshape(-1)
    return (code.double()[idx] * absmax.double().repeat_interleave(blocksize)).float()
""",
        ),
        cheats=(
            # the package's dequantizer
            """
def dequantize_blocks(packed, absmax, code, blocksize):
    return nf4.dequantize_blockwise_4bit(packed, absmax, (2 * packed.numel(),), code, blocksize)
""",
        ),
    ),
]
