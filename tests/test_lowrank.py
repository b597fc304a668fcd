import pytest
import torch

from qlora_course import lowrank


def test_low_rank_approx_meets_eckart_young():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(30, 17, generator=g, dtype=torch.float64)
    S = torch.linalg.svdvals(W)
    for r in (1, 4, 17):
        Wr = lowrank.low_rank_approx(W, r)
        assert torch.linalg.matrix_rank(Wr) == r
        assert torch.isclose(torch.linalg.norm(W - Wr), S[r:].square().sum().sqrt(), atol=1e-10)
    # no other rank-4 matrix does better: compare with random rank-4 projections of W
    best = torch.linalg.norm(W - lowrank.low_rank_approx(W, 4))
    for _ in range(20):
        Q, _ = torch.linalg.qr(torch.randn(17, 4, generator=g, dtype=torch.float64))
        assert torch.linalg.norm(W - W @ Q @ Q.T) >= best


def test_factors_multiply_to_the_approximation_and_keep_dtype():
    W = torch.randn(12, 20).to(torch.bfloat16)
    B, A = lowrank.low_rank_factors(W, 3)
    assert B.shape == (12, 3) and A.shape == (3, 20) and B.dtype == torch.bfloat16
    assert torch.allclose((B.float() @ A.float()), lowrank.low_rank_approx(W, 3).float(), atol=0.05)


def test_relative_error_and_energy_agree_with_direct_computation():
    W = torch.randn(40, 25)
    errors = lowrank.relative_error(W, [1, 5, 25])
    for r, e in zip([1, 5, 25], errors, strict=True):
        direct = torch.linalg.norm(W - lowrank.low_rank_approx(W, r)) / torch.linalg.norm(W)
        assert abs(e.item() - direct.item()) < 1e-5
    assert errors[-1] == 0
    assert abs(lowrank.energy_kept(W, 5) - (1 - errors[1].item() ** 2)) < 1e-6


@pytest.mark.parametrize(
    "W, r, message",
    [
        (torch.randn(4, 5), 0, "between 1 and"),
        (torch.randn(4, 5), 5, "between 1 and"),
        (torch.randn(4, 5, 2), 1, "2-D"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), 1, "NaN"),
        (torch.ones(3, 3, dtype=torch.int64), 1, "floating"),
        ("not a tensor", 1, "torch.Tensor"),
    ],
)
def test_bad_input_raises_a_clear_error(W, r, message):
    with pytest.raises(ValueError, match=message):
        lowrank.low_rank_approx(W, r)
