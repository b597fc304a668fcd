"""Lesson 3's exercises: double quantization.

References are the package's finished versions (``qlora_course.double_quant``) or bitsandbytes itself;
``tests/test_double_quant.py`` checks the package against bitsandbytes bit for bit. Probe data is
asymmetric (blocks entirely above or below the mean), so a signed maximum cannot pass for the largest
magnitude; a nearest-code answer is judged by the distance it achieves.
"""

from __future__ import annotations

import torch

from qlora_grading import Exercise, Tolerance

from .. import double_quant as dq
from ._draw import choice, floats, ints

BNB = "bitsandbytes.functional"


def _constant_bits(answer, g):
    cases = [(128,), (32, 128), (4096, 64), (64, 256)] + [(2 ** ints(g, 5, 13), 2 ** ints(g, 5, 9))]
    return {str(c): answer(*c) for c in cases}


def _constant_bits_reference(blocksize, blocksize2=None):
    if blocksize2 is None:
        return dq.constant_bits_per_parameter(blocksize, double=False)
    return dq.constant_bits_per_parameter(blocksize, blocksize2, double=True)


def _dynamic_map(answer, g):
    return {"map": answer()}


def _dynamic_map_reference():
    import bitsandbytes.functional as bnbF

    return bnbF.create_dynamic_map(signed=True)


def _constants(g: torch.Generator, blocks: int, blocksize: int) -> torch.Tensor:
    """NF4-like first-level constants, skewed, with whole blocks above or below the mean."""
    a = 0.02 + 0.1 * torch.rand(blocks, blocksize, generator=g) ** 3
    shift = torch.tensor([-0.05] + [choice(g, [-0.05, 0.0, 0.05]) for _ in range(blocks - 2)] + [0.05])
    shift = shift[torch.randperm(blocks, generator=g)]  # one block below the mean, one above, in any place
    return (a + shift[:, None]).clamp(min=1e-4).reshape(-1)


def _centre_and_scale(answer, g):
    out = {}
    for k, (blocks, bs) in enumerate(((4, 256), (ints(g, 2, 9), 64))):
        result = answer(_constants(g, blocks, bs), bs) if bs != 256 else answer(_constants(g, blocks, bs))
        ok = isinstance(result, (tuple, list)) and len(result) == 3
        out[f"{k}: three results"] = ok
        if ok:
            out[f"{k}: scaled"], out[f"{k}: absmax2"], out[f"{k}: offset"] = result
    return out


def _centre_and_scale_reference(absmax, blocksize=256):
    """The centring and scaling that ``double_quantize`` applies before it rounds to 8 bits."""
    offset = absmax.mean()
    centred = (absmax - offset).view(-1, blocksize)
    absmax2 = centred.abs().amax(dim=1)
    return (centred / absmax2[:, None]).reshape(-1), absmax2, offset


def _nearest_index(answer, g):
    x = torch.rand(5000, generator=g) * 2 - 1
    out = {}
    for label, code in (("dynamic map", dq.dynamic_map(signed=True)), ("uniform code", torch.linspace(-1, 1, 256))):
        idx = answer(x, code)
        out[f"{label}: dtype and shape"] = [str(getattr(idx, "dtype", None)), list(getattr(idx, "shape", []))]
        chosen = code.double()[idx.reshape(-1).long().clamp(0, 255)]
        out[f"{label}: distance to the chosen value"] = (x.double() - chosen).abs().float()
    return out


def _nearest_index_reference(scaled, code):
    return (scaled[:, None] - code[None, :]).abs().argmin(dim=1)


def _reconstruct_absmax(answer, g):
    import bitsandbytes.functional as bnbF

    out = {}
    for k, n in enumerate((64 * 300, 64 * ints(g, 2, 200), 64 * 1000 + 64)):
        w = torch.randn(n, generator=g) * 0.02
        _, st = bnbF.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
        out[f"case {k}"] = answer(st.absmax, st.state2.code, st.state2.absmax, st.offset, st.state2.blocksize)
    q = torch.randint(0, 256, (ints(g, 3, 40),), generator=g, dtype=torch.uint8)
    scales = torch.rand(-(-q.numel() // 4), generator=g) + 1
    out["given code, blocks of 4"] = answer(q, torch.linspace(-1, 1, 256), scales, floats(g, -1, 1), 4)
    return out


def _reconstruct_absmax_reference(q, code, absmax2, offset, blocksize=256):
    return dq.dequantize_blockwise_8bit(q.reshape(-1), absmax2, code, blocksize) + torch.as_tensor(offset).float()


EXERCISES = [
    Exercise(
        "constant_bits",
        points=1,
        probe=_constant_bits,
        reference=_constant_bits_reference,
        finished=(dq.constant_bits_per_parameter,),
        wrong=(
            # counts the second-level constants as 8-bit too
            """
def constant_bits(blocksize, blocksize2=None):
    if blocksize2 is None:
        return 32 / blocksize
    return 8 / blocksize + 8 / (blocksize * blocksize2)
""",
            # forgets the second-level constants
            """
def constant_bits(blocksize, blocksize2=None):
    return 32 / blocksize if blocksize2 is None else 8 / blocksize
""",
        ),
        alternatives=(
            """
def constant_bits(blocksize, blocksize2=None):
    if blocksize2:
        return (8 + 32 / blocksize2) / blocksize
    return 32.0 / blocksize
""",
        ),
        cheats=(
            """
def constant_bits(blocksize, blocksize2=None):
    return 0.5 if blocksize2 is None else 0.126953125
""",
            # the package's formula
            """
def constant_bits(blocksize, blocksize2=None):
    return dq.constant_bits_per_parameter(blocksize, blocksize2 or 256, blocksize2 is not None)
""",
        ),
    ),
    Exercise(
        "dynamic_map_signed",
        points=2,
        probe=_dynamic_map,
        reference=_dynamic_map_reference,
        # values from 5.5e-7 to 1, each built on its own: relative to each value
        tolerance=Tolerance(ulps=8, scale="element"),
        finished=(dq.dynamic_map, f"{BNB}.create_dynamic_map"),
        wrong=(
            # linear points instead of midpoints
            """
def dynamic_map_signed():
    vals = [torch.tensor([0.0, 1.0])]
    for i in range(7):
        m = torch.linspace(0.1, 1.0, 2**i + 1)[1:] * 10.0 ** (i - 6)
        vals += [m, -m]
    return torch.cat(vals).sort().values
""",
            # exponents the wrong way round: the finest steps at the largest values
            """
def dynamic_map_signed():
    vals = [torch.tensor([0.0, 1.0])]
    for i in range(7):
        b = torch.linspace(0.1, 1.0, 2**i + 1)
        m = (b[:-1] + b[1:]) / 2 * 10.0 ** (-i)
        vals += [m, -m]
    return torch.cat(vals).sort().values
""",
            # a uniform 8-bit grid
            """
def dynamic_map_signed():
    return torch.linspace(-1, 1, 256)
""",
        ),
        alternatives=(
            """
def dynamic_map_signed():
    out = [0.0, 1.0]
    for i in range(7):
        b = torch.linspace(0.1, 1, 2 ** i + 1, dtype=torch.float32)
        mids = ((b[1:] + b[:-1]) / 2 / 10.0 ** (6 - i)).tolist()
        out += mids + [-m for m in mids]
    return torch.tensor(sorted(out), dtype=torch.float32)
""",
        ),
        cheats=(
            # bitsandbytes' own map
            """
def dynamic_map_signed():
    return bnbF.create_dynamic_map(signed=True)
""",
        ),
    ),
    Exercise(
        "centre_and_scale",
        points=2,
        probe=_centre_and_scale,
        reference=_centre_and_scale_reference,
        # a mean of 1024 values, a division (or a multiplication by the reciprocal): a few float32 steps
        tolerance=Tolerance(ulps=16, dtype_matters=False),
        finished=(dq.double_quantize,),
        wrong=(
            # does not centre: offset left in the values
            """
def centre_and_scale(absmax, blocksize=256):
    blocks = absmax.view(-1, blocksize)
    a2 = blocks.abs().amax(dim=1)
    return (blocks / a2[:, None]).reshape(-1), a2, absmax.mean()
""",
            # one scale for all blocks
            """
def centre_and_scale(absmax, blocksize=256):
    off = absmax.mean()
    c = absmax - off
    a2 = c.abs().max().repeat(absmax.numel() // blocksize)
    return c / c.abs().max(), a2, off
""",
            # the signed maximum instead of the largest magnitude
            """
def centre_and_scale(absmax, blocksize=256):
    offset = absmax.mean()
    blocks = (absmax - offset).view(-1, blocksize)
    absmax2 = blocks.amax(dim=1)
    return (blocks / absmax2[:, None]).reshape(-1), absmax2, offset
""",
        ),
        alternatives=(
            """
def centre_and_scale(absmax, blocksize=256):
    offset = absmax.mean().item()
    c = (absmax - offset).reshape(-1, blocksize)
    a2 = c.abs().max(dim=1).values
    return (c / a2.unsqueeze(1)).flatten(), a2, offset
""",
            # the offset computed in float64
            """
def centre_and_scale(absmax, blocksize=256):
    offset = absmax.double().mean()
    c = (absmax.double() - offset).view(-1, blocksize)
    a2 = c.abs().amax(dim=1)
    return (c / a2[:, None]).reshape(-1).float(), a2.float(), offset
""",
        ),
    ),
    Exercise(
        "nearest_index",
        points=1,
        probe=_nearest_index,
        reference=_nearest_index_reference,
        tolerance=Tolerance(ulps=4),
        finished=(dq.quantize_blockwise_8bit,),
        wrong=(
            # the farthest instead of the nearest
            """
def nearest_index(scaled, code):
    return (scaled[:, None] - code[None, :]).abs().argmax(dim=1)
""",
            # first code value at or above: rounds up, not to the nearest
            """
def nearest_index(scaled, code):
    return torch.searchsorted(code, scaled).clamp(max=code.numel() - 1)
""",
            # rounds down: the last code value at or below
            """
def nearest_index(scaled, code):
    return (torch.searchsorted(code, scaled, right=True) - 1).clamp(min=0)
""",
        ),
        alternatives=(
            """
def nearest_index(scaled, code):
    mid = (code[1:] + code[:-1]) / 2
    return torch.bucketize(scaled, mid)
""",
            # bucketize with the upper value on a tie
            """
def nearest_index(scaled, code):
    mid = (code[1:] + code[:-1]) / 2
    return torch.bucketize(scaled, mid, right=True)
""",
        ),
        cheats=(
            # the package's exact 8-bit quantizer, with a scale of 1
            """
def nearest_index(scaled, code):
    q, _ = dq.quantize_blockwise_8bit(torch.cat([scaled, torch.ones(1)]), code, 8192, exact=True)
    return q[:-1].long()
""",
        ),
    ),
    Exercise(
        "reconstruct_absmax",
        points=2,
        probe=_reconstruct_absmax,
        reference=_reconstruct_absmax_reference,
        # a product and a sum per value, in float32 or float64
        tolerance=Tolerance(ulps=4),
        finished=(dq.dequantize_absmax, dq.dequantize_blockwise_8bit, f"{BNB}.dequantize_blockwise"),
        wrong=(
            # forgets the offset
            """
def reconstruct_absmax(q, code, absmax2, offset, blocksize=256):
    q = q.reshape(-1).long()
    return code[q] * absmax2.repeat_interleave(blocksize)[: q.numel()]
""",
            # uses the code index itself instead of the code value
            """
def reconstruct_absmax(q, code, absmax2, offset, blocksize=256):
    q = q.reshape(-1).float()
    return q / 255 * absmax2.repeat_interleave(blocksize)[: q.numel()] + offset
""",
            # one scale for everything
            """
def reconstruct_absmax(q, code, absmax2, offset, blocksize=256):
    return code[q.reshape(-1).long()] * absmax2.max() + offset
""",
        ),
        alternatives=(
            """
def reconstruct_absmax(q, code, absmax2, offset, blocksize=256):
    vals = code[q.flatten().to(torch.int64)]
    out = torch.empty_like(vals)
    for start in range(0, vals.numel(), blocksize):
        out[start:start + blocksize] = vals[start:start + blocksize] * absmax2[start // blocksize]
    return out + torch.as_tensor(offset, dtype=torch.float32)
""",
        ),
        cheats=(
            # bitsandbytes' dequantization
            """
def reconstruct_absmax(q, code, absmax2, offset, blocksize=256):
    return dq.dequantize_blockwise_8bit(q.reshape(-1), absmax2, code, blocksize) + offset
""",
        ),
    ),
]
