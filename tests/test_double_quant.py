"""Double quantization of the NF4 constants against bitsandbytes 0.50.2 on CPU: bit for bit."""

from __future__ import annotations

import bitsandbytes.functional as bnbF
import pytest
import torch

from qlora_course.double_quant import (
    LUT_SIZE,
    constant_bits_per_parameter,
    dequantize_absmax,
    dequantize_blockwise_8bit,
    double_quantize,
    dynamic_map,
    quantize_blockwise_8bit,
)
from qlora_course.nf4 import dequantize_nf4, quantize_nf4

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _id(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# --------------------------------------------------------------------------------------------------
# the dynamic map
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signed", [True, False])
def test_dynamic_map_is_bitsandbytes_table(signed):
    code = dynamic_map(signed)
    assert code.dtype == torch.float32 and code.shape == (256,)
    assert torch.equal(code, bnbF.create_dynamic_map(signed=signed))


def test_dynamic_map_shape_of_signed_code():
    code = dynamic_map()
    assert (code < 0).sum() == 127 and (code == 0).sum() == 1 and (code > 0).sum() == 128
    assert code[-1] == 1.0 and -0.994 < code[0] < -0.992  # no -1: the CPU kernel clamps below code[0]
    assert torch.all(code[1:] > code[:-1])
    assert code[code > 0].min() == code[code < 0].max().neg() == pytest.approx(5.5e-7)  # 1e-6 * 0.55
    assert ((code > 0.1) & (code < 1)).sum() == 64 and ((code > 1e-6) & (code < 1e-5)).sum() == 2


# --------------------------------------------------------------------------------------------------
# 8-bit blockwise quantization = bitsandbytes' CPU kernel
# --------------------------------------------------------------------------------------------------


def _near_grid_boundaries() -> torch.Tensor:
    """Float32 values around the points where the CPU kernel's snap ``(s + 1) / 2 * 65535 + 0.5`` crosses
    an integer, in blocks of 255 plus a 1.0 so that the block's absmax is 1 and scaling is exact. Here the
    float32 rounding of the snap decides the grid point (an exact ``floor`` picks another code for some)."""
    k = torch.arange(1, LUT_SIZE - 1, 7, dtype=torch.float64)
    centre = ((k - 0.5) / (LUT_SIZE - 1) * 2 - 1).float().view(torch.int32)
    values = torch.cat([(centre + d).view(torch.float32) for d in range(-2, 3)])
    return _in_unit_blocks(values[values.abs() < 1])


def _blockwise_cases():
    for dtype in DTYPES:
        for n, blocksize in ((1, 256), (255, 256), (256, 256), (1000, 64), (70_001, 256), (70_001, 4096), (5000, 2048)):
            yield pytest.param(dtype, n, blocksize, id=f"{_id(dtype)}-n{n}-b{blocksize}")


@pytest.mark.parametrize("dtype,n,blocksize", list(_blockwise_cases()))
def test_quantize_blockwise_8bit_equals_cpu_kernel(dtype, n, blocksize):
    g = torch.Generator().manual_seed(n + blocksize)
    x = torch.randn(n, generator=g) ** 3  # heavy tails: many values far below the block's absmax
    if n > 2 * blocksize:
        x[blocksize : 2 * blocksize] = 0  # an all-zero block
        x[2 * blocksize + 3] = 0  # an exact zero inside a block
    x = x.to(dtype)
    code = dynamic_map()
    q, absmax = quantize_blockwise_8bit(x, code, blocksize)
    ref_q, state = bnbF.quantize_blockwise(x, blocksize=blocksize)
    assert q.dtype == torch.uint8 and q.shape == x.shape
    assert absmax.dtype == torch.float32 and absmax.shape == (-(-n // blocksize),)
    assert torch.equal(q, ref_q), f"{(q != ref_q).sum()} codes differ"
    assert torch.equal(absmax, state.absmax)
    out = dequantize_blockwise_8bit(q, absmax, code, blocksize)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert torch.equal(out.to(dtype), bnbF.dequantize_blockwise(ref_q, state))


def test_quantize_blockwise_8bit_near_grid_boundaries():
    x = _near_grid_boundaries()
    q, absmax = quantize_blockwise_8bit(x, dynamic_map())
    ref_q, state = bnbF.quantize_blockwise(x, blocksize=256)
    assert torch.all(absmax == 1)
    assert torch.equal(q, ref_q), f"{(q != ref_q).sum()} of {x.numel()} codes differ"


def test_cpu_kernel_stores_zero_off_the_zero_code():
    """The grid has no point at 0 (65,535 steps over [-1, 1]): 0 snaps to 1/65535 and is stored as a
    small positive code value, and an all-zero block gets index 0 (-0.993), which still dequantizes to 0."""
    code = dynamic_map()
    x = torch.zeros(512)
    x[300] = 1.0
    q, absmax = quantize_blockwise_8bit(x, code)
    assert torch.equal(q, bnbF.quantize_blockwise(x, blocksize=256)[0])
    assert torch.all(q[:256] == 0) and absmax[0] == 0
    assert code[q[256].long()] > 0 and code[q[256].long()] < 1e-4
    q_exact, _ = quantize_blockwise_8bit(x, code, exact=True)
    assert torch.all(code[q_exact[q_exact != q_exact[300]].long()] == 0)
    assert torch.all(dequantize_blockwise_8bit(q, absmax, code)[:256] == 0)


def _in_unit_blocks(values: torch.Tensor) -> torch.Tensor:
    """``values`` (in [-1, 1]) in blocks of 255 followed by a 1.0: absmax 1, so scaling changes nothing."""
    values = values[: values.numel() // 255 * 255].reshape(-1, 255)
    return torch.cat([values, torch.ones(values.shape[0], 1)], dim=1).reshape(-1)


def _near_code_midpoints() -> torch.Tensor:
    """The float32 values next to the exact midpoints between neighbouring values of the dynamic map."""
    code = dynamic_map().double()
    centre = ((code[:-1] + code[1:]) / 2).float().view(torch.int32)
    return torch.cat([(centre + d).view(torch.float32) for d in range(-2, 3)])


def test_cpu_table_sends_a_grid_point_on_a_midpoint_to_the_lower_code():
    """A code whose two middle values have a grid point as their exact float32 midpoint."""
    i = 49151
    grid_point = torch.tensor(2.0 * i, dtype=torch.float32) / (LUT_SIZE - 1) - 1  # about 0.5
    below, above = grid_point - 2.0**-20, grid_point + 2.0**-20
    assert (below + above) * 0.5 == grid_point
    code = torch.cat([torch.linspace(-1, 0.4, 127), torch.stack([below, above]), torch.linspace(0.6, 1, 127)])
    x = torch.tensor([grid_point.item(), 1.0])
    q, _ = quantize_blockwise_8bit(x, code)
    assert torch.equal(q, bnbF.quantize_blockwise(x, code=code, blocksize=256)[0])
    assert q[0] == 127  # the lower of the two
    assert quantize_blockwise_8bit(x, code, exact=True)[0][0] == 127


def test_exact_rounding_is_the_nearest_code():
    g = torch.Generator().manual_seed(3)
    x = torch.cat(
        [
            torch.randn(256 * 80, generator=g) ** 5,
            _near_grid_boundaries()[: 256 * 80],
            _in_unit_blocks(_near_code_midpoints()),
        ]
    )
    code = dynamic_map()
    q, absmax = quantize_blockwise_8bit(x, code, exact=True)
    scaled = x.reshape(-1, 256) * (1.0 / absmax)[:, None]
    distance = (scaled.reshape(-1, 1).double() - code.double()).abs()
    best = distance.min(dim=1).values
    assert torch.equal(distance.gather(1, q.long().reshape(-1, 1)).squeeze(1), best)


# --------------------------------------------------------------------------------------------------
# double quantization = the nested QuantState of quantize_4bit(compress_statistics=True)
# --------------------------------------------------------------------------------------------------


def _double_cases():
    # 64-blocks: 1, 2, 256 (one full 256-block), 258 (257 + a partial 64-block), 704, 15625, 900
    for shape in ((64,), (100,), (64 * 256,), (64 * 257 + 5,), (4096, 11), (1000, 1000), (3, 64 * 300)):
        for dtype in DTYPES:
            yield pytest.param(shape, dtype, id=f"{_id(dtype)}-{'x'.join(map(str, shape))}")


@pytest.mark.parametrize("shape,dtype", list(_double_cases()))
def test_double_quantize_equals_nested_quant_state(shape, dtype):
    g = torch.Generator().manual_seed(sum(shape))
    w = (torch.randn(shape, generator=g) * 0.02).to(dtype)
    packed, absmax = quantize_nf4(w, 64)  # the first-level constants (equal to bitsandbytes', lesson 2)
    ref_packed, state = bnbF.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    assert torch.equal(packed, ref_packed) and state.nested

    q, absmax2, offset = double_quantize(absmax)
    assert q.dtype == torch.uint8 and q.shape == absmax.shape
    assert absmax2.dtype == torch.float32 and absmax2.shape == (-(-absmax.numel() // 256),)
    assert offset.dtype == torch.float32 and offset.dim() == 0
    assert torch.equal(q, state.absmax), f"{(q != state.absmax).sum()} codes differ"
    assert torch.equal(absmax2, state.state2.absmax)
    assert torch.equal(offset, state.offset)
    assert torch.equal(dynamic_map(), state.state2.code) and state.state2.blocksize == 256

    restored = dequantize_absmax(q, absmax2, offset)
    assert torch.equal(restored, bnbF.dequantize_blockwise(state.absmax, state.state2) + state.offset)
    if len(shape) == 1 or shape[-1] % 64 == 0:  # where bitsandbytes' native 4-bit CPU kernel is right
        ours = dequantize_nf4(packed, restored, shape, 64, dtype)
        assert torch.equal(ours, bnbF.dequantize_4bit(ref_packed, state).reshape(shape))


# --------------------------------------------------------------------------------------------------
# CPU rounding vs exact rounding on a realistic layer
# --------------------------------------------------------------------------------------------------


def test_exact_vs_cpu_rounding_on_a_4096x4096_layer():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4096, 4096, generator=g) * 0.02
    absmax = w.reshape(-1, 64).abs().amax(dim=1)  # 262,144 NF4 constants, 1,024 blocks of 256
    q_cpu, absmax2, offset = double_quantize(absmax)
    q_exact, absmax2_exact, offset_exact = double_quantize(absmax, exact=True)
    assert torch.equal(absmax2, absmax2_exact) and torch.equal(offset, offset_exact)
    # the CPU result is bitsandbytes' (its 8-bit kernel on the centred constants)
    ref_q, ref_state = bnbF.quantize_blockwise(absmax - absmax.mean(), blocksize=256)
    assert torch.equal(q_cpu, ref_q) and torch.equal(absmax2, ref_state.absmax)

    differ = q_cpu != q_exact
    share = differ.float().mean().item()
    assert 0.0005 < share < 0.005, f"{differ.sum()} of {absmax.numel()} constants differ ({share:.3%})"  # 0.18 %

    code = dynamic_map().double()
    scaled = ((absmax - offset).reshape(-1, 256) * (1.0 / absmax2)[:, None]).reshape(-1).double()
    err_cpu = (code[q_cpu.long()] - scaled).abs()
    err_exact = (code[q_exact.long()] - scaled).abs()
    assert torch.all(err_exact <= err_cpu), "exact rounding is never farther than the CPU kernel's choice"
    assert torch.all(err_exact[differ] < err_cpu[differ])

    restored_cpu = dequantize_absmax(q_cpu, absmax2, offset).double()
    restored_exact = dequantize_absmax(q_exact, absmax2, offset).double()
    assert (restored_exact - absmax.double()).abs().mean() <= (restored_cpu - absmax.double()).abs().mean()
    assert (restored_cpu - absmax.double()).abs().max() < 0.01 * absmax.max()


# --------------------------------------------------------------------------------------------------
# storage
# --------------------------------------------------------------------------------------------------


def test_constant_bits_per_parameter():
    assert constant_bits_per_parameter(double=False) == 0.5
    assert constant_bits_per_parameter() == 8 / 64 + 32 / (64 * 256) == 0.126953125
    assert constant_bits_per_parameter(64, 256, double=True) == pytest.approx(0.127, abs=1e-3)
    assert constant_bits_per_parameter(128, double=False) == 0.25
    assert constant_bits_per_parameter(32, 128) == 8 / 32 + 32 / (32 * 128)


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [torch.empty(0), torch.tensor([0.1, float("nan")]), torch.tensor([0.1, float("inf")]), torch.tensor([1, 2, 3])],
    ids=["empty", "nan", "inf", "int"],
)
def test_double_quantize_rejects_bad_absmax(bad):
    with pytest.raises(ValueError):
        double_quantize(bad)


@pytest.mark.parametrize("blocksize", [0, -256, 100, 255, 256.0, True, "256"])
def test_bad_blocksize(blocksize):
    absmax = torch.rand(1000) + 0.01
    code = dynamic_map()
    with pytest.raises(ValueError, match="power of two"):
        double_quantize(absmax, blocksize=blocksize)
    with pytest.raises(ValueError, match="power of two"):
        quantize_blockwise_8bit(absmax, code, blocksize=blocksize)
    with pytest.raises(ValueError, match="power of two"):
        dequantize_absmax(torch.zeros(1000, dtype=torch.uint8), torch.ones(4), 0.0, blocksize=blocksize)
    with pytest.raises(ValueError, match="power of two"):
        constant_bits_per_parameter(blocksize=blocksize)
    with pytest.raises(ValueError, match="power of two"):
        constant_bits_per_parameter(64, blocksize2=blocksize)


def test_other_bad_input():
    code = dynamic_map()
    x = torch.rand(300)
    with pytest.raises(ValueError, match="256 values"):
        quantize_blockwise_8bit(x, code[:16])
    with pytest.raises(ValueError, match="sorted"):
        quantize_blockwise_8bit(x, code.flip(0))
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize_blockwise_8bit(torch.tensor([1.0, float("-inf")]), code)
    q, absmax = quantize_blockwise_8bit(x, code)
    with pytest.raises(ValueError, match="uint8"):
        dequantize_blockwise_8bit(q.long(), absmax, code)
    with pytest.raises(ValueError, match="need 2 absmax"):
        dequantize_blockwise_8bit(q, absmax[:1], code)
    with pytest.raises(ValueError, match="offset"):
        dequantize_absmax(q, absmax, torch.tensor([0.1, 0.2]))
