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
from .. import nf4
from ._draw import choice, floats, ints

BNB = "bitsandbytes.functional"
PEFT_4BIT = "peft.tuners.lora.bnb.Linear4bit"


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


# (out_features, in_features, blocksize): more than 256 first-level blocks (two second-level blocks), a
# last block shorter than the others with blocks straddling rows, and blocks of 128. Row lengths are
# multiples of the block size or not multiples of 16: bitsandbytes 0.50.2's AVX-512 dequantization is
# wrong for rows that are a multiple of 16 but not of the block size (pinned in tests/test_nf4.py).
_EQ6_SHAPES = ((80, 256, 64), (30, 70, 64), (24, 256, 128))


def _qlora_forward(answer, g):
    import bitsandbytes.functional as bnbF

    out = {}
    for k, (d_out, d_in, blocksize) in enumerate(_EQ6_SHAPES):
        scale = 0.01 + 0.1 * torch.rand(d_out, 1, generator=g)  # rows of very different sizes
        W = torch.randn(d_out, d_in, generator=g) * scale
        packed, state = bnbF.quantize_4bit(W, blocksize=blocksize, quant_type="nf4", compress_statistics=True)
        r = ints(g, 2, 8)
        A, B = 0.2 * torch.randn(r, d_in, generator=g), 0.2 * torch.randn(d_out, r, generator=g)
        x = torch.randn(2, ints(g, 1, 4), d_in, generator=g)
        out[f"case {k}: {d_out}x{d_in}, blocks of {blocksize}"] = answer(x, packed, state, A, B, floats(g, 0.3, 3.0))
    return out


def _qlora_forward_reference(x, packed, state, lora_A, lora_B, scaling):
    """bitsandbytes' Linear4bit holding ``packed`` and ``state``, wrapped by PEFT's LoRA layer for 4-bit
    bases, with these factors: its output (training mode, so bitsandbytes does not repack the weight)."""
    import bitsandbytes as bnb
    from peft import LoraConfig
    from peft.tuners.lora.bnb import Linear4bit as LoraLinear4bit

    d_out, d_in = state.shape
    base = bnb.nn.Linear4bit(d_in, d_out, bias=False, compute_dtype=torch.float32, quant_type="nf4")
    base.weight = bnb.nn.Params4bit(
        packed, requires_grad=False, quant_state=state, quant_type="nf4", bnb_quantized=True, module=base
    )
    r = lora_A.shape[0]
    config = LoraConfig(r=r, lora_alpha=scaling * r)
    layer = LoraLinear4bit(base, "default", config, r=r, lora_alpha=scaling * r)
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(lora_A)
        layer.lora_B["default"].weight.copy_(lora_B)
        return layer(x)


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
    Exercise(
        "qlora_forward",
        points=3,
        probe=_qlora_forward,
        reference=_qlora_forward_reference,
        # a matrix product over d_in terms plus the adapter's: rounding relative to the largest output
        tolerance=Tolerance(ulps=64, dtype_matters=False),
        finished=(
            f"{BNB}.dequantize_4bit",
            f"{BNB}.dequantize_blockwise",
            "bitsandbytes.matmul_4bit",
            PEFT_4BIT,
            dq.dequantize_absmax,
            dq.dequantize_blockwise_8bit,
            nf4.dequantize_nf4,
            nf4.dequantize_blockwise_4bit,
            nf4.unpack_4bit,
        ),
        wrong=(
            # forgets the offset the constants were centred by
            """
def qlora_forward(x, packed, state, lora_A, lora_B, scaling):
    s2 = state.state2
    c = s2.code[state.absmax.long()] * s2.absmax.repeat_interleave(s2.blocksize)[: state.absmax.numel()]
    n = state.shape[0] * state.shape[1]
    p = packed.reshape(-1).long()
    idx = torch.stack([p >> 4, p & 15], dim=1).reshape(-1)[:n]
    W = (state.code[idx] * c.repeat_interleave(state.blocksize)[:n]).reshape(state.shape)
    return x @ W.T + scaling * (x @ lora_A.T) @ lora_B.T
""",
            # the low nibble first
            """
def qlora_forward(x, packed, state, lora_A, lora_B, scaling):
    s2 = state.state2
    c = s2.code[state.absmax.long()] * s2.absmax.repeat_interleave(s2.blocksize)[: state.absmax.numel()] + state.offset
    n = state.shape[0] * state.shape[1]
    p = packed.reshape(-1).long()
    idx = torch.stack([p & 15, p >> 4], dim=1).reshape(-1)[:n]
    W = (state.code[idx] * c.repeat_interleave(state.blocksize)[:n]).reshape(state.shape)
    return x @ W.T + scaling * (x @ lora_A.T) @ lora_B.T
""",
            # the 8-bit codes of the constants read as the constants themselves
            """
def qlora_forward(x, packed, state, lora_A, lora_B, scaling):
    c = state.absmax.float()
    n = state.shape[0] * state.shape[1]
    p = packed.reshape(-1).long()
    idx = torch.stack([p >> 4, p & 15], dim=1).reshape(-1)[:n]
    W = (state.code[idx] * c.repeat_interleave(state.blocksize)[:n]).reshape(state.shape)
    return x @ W.T + scaling * (x @ lora_A.T) @ lora_B.T
""",
            # the second level cut in blocks of the first level's size
            """
def qlora_forward(x, packed, state, lora_A, lora_B, scaling):
    s2 = state.state2
    k = state.absmax.numel()
    c = s2.code[state.absmax.long()] * s2.absmax.repeat_interleave(state.blocksize)[:k] + state.offset
    n = state.shape[0] * state.shape[1]
    p = packed.reshape(-1).long()
    idx = torch.stack([p >> 4, p & 15], dim=1).reshape(-1)[:n]
    W = (state.code[idx] * c.repeat_interleave(state.blocksize)[:n]).reshape(state.shape)
    return x @ W.T + scaling * (x @ lora_A.T) @ lora_B.T
""",
            # the adapter without its scaling
            """
def qlora_forward(x, packed, state, lora_A, lora_B, scaling):
    s2 = state.state2
    c = s2.code[state.absmax.long()] * s2.absmax.repeat_interleave(s2.blocksize)[: state.absmax.numel()] + state.offset
    n = state.shape[0] * state.shape[1]
    p = packed.reshape(-1).long()
    idx = torch.stack([p >> 4, p & 15], dim=1).reshape(-1)[:n]
    W = (state.code[idx] * c.repeat_interleave(state.blocksize)[:n]).reshape(state.shape)
    return x @ W.T + (x @ lora_A.T) @ lora_B.T
""",
            # each row its own blocks (right only when a row is a whole number of blocks)
            """
def qlora_forward(x, packed, state, lora_A, lora_B, scaling):
    s2 = state.state2
    c = s2.code[state.absmax.long()] * s2.absmax.repeat_interleave(s2.blocksize)[: state.absmax.numel()] + state.offset
    rows, cols = state.shape
    p = packed.reshape(-1).long()
    idx = torch.stack([p >> 4, p & 15], dim=1).reshape(-1)[: rows * cols].reshape(rows, cols)
    per_row = -(-cols // state.blocksize)
    scales = c[: rows * per_row].reshape(rows, per_row).repeat_interleave(state.blocksize, dim=1)[:, :cols]
    W = state.code[idx] * scales
    return x @ W.T + scaling * (x @ lora_A.T) @ lora_B.T
""",
        ),
        alternatives=(
            # the adapter merged into the dequantized weight, in float64
            """
def qlora_forward(x, packed, state, lora_A, lora_B, scaling):
    s2 = state.state2
    k = state.absmax.numel()
    blocks2 = torch.arange(k) // s2.blocksize
    c = s2.code.double()[state.absmax.to(torch.int64)] * s2.absmax.double()[blocks2] + float(state.offset)
    n = state.shape.numel()
    b = packed.flatten()
    idx = torch.empty(2 * b.numel(), dtype=torch.int64)
    idx[0::2], idx[1::2] = b // 16, b % 16
    W = state.code.double()[idx[:n]] * c[torch.arange(n) // state.blocksize]
    W = W.view(state.shape) + scaling * lora_B.double() @ lora_A.double()
    return (x.double() @ W.T).float()
""",
            # with the pieces written earlier in the lesson (exercise 5's reconstruction, inlined here)
            """
def reconstruct(q, code, absmax2, offset, blocksize):
    q = q.reshape(-1).long()
    return code[q] * absmax2.float().repeat_interleave(blocksize)[: q.numel()] + offset

def qlora_forward(x, packed, state, lora_A, lora_B, scaling):
    c = reconstruct(state.absmax, state.state2.code, state.state2.absmax, state.offset, state.state2.blocksize)
    n = state.shape[0] * state.shape[1]
    hi, lo = packed.reshape(-1) >> 4, packed.reshape(-1) & 0xF
    idx = torch.stack([hi, lo], dim=1).reshape(-1)[:n].long()
    W = (state.code[idx] * c.repeat_interleave(state.blocksize)[:n]).reshape(state.shape)
    return torch.nn.functional.linear(x, W) + scaling * torch.nn.functional.linear(torch.nn.functional.linear(x, lora_A), lora_B)
""",
        ),
        cheats=(
            # bitsandbytes dequantizes
            """
def qlora_forward(x, packed, state, lora_A, lora_B, scaling):
    W = bnbF.dequantize_4bit(packed, state)
    return x @ W.T + scaling * (x @ lora_A.T) @ lora_B.T
""",
            # the package's pieces
            """
def qlora_forward(x, packed, state, lora_A, lora_B, scaling):
    c = dq.dequantize_absmax(state.absmax, state.state2.absmax, state.offset, state.state2.blocksize)
    W = nf4.dequantize_nf4(packed, c, state.shape, state.blocksize)
    return x @ W.T + scaling * (x @ lora_A.T) @ lora_B.T
""",
        ),
    ),
]
