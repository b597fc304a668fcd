"""Low-rank approximation with the SVD (lesson 1).

Eckart--Young: for a matrix ``W`` with SVD ``W = U diag(S) V^T`` (singular values sorted in
decreasing order), the best rank-``r`` approximation in both the Frobenius and the spectral norm is

    W_r = U[:, :r] diag(S[:r]) V[:, :r]^T,

and its Frobenius error is ``sqrt(sum_{i>r} S_i^2)``.
"""

from __future__ import annotations

import torch

from . import validate

__all__ = ["check_matrix", "low_rank_approx", "low_rank_factors", "relative_error", "energy_kept"]


def check_matrix(W: torch.Tensor, name: str = "W") -> None:
    """Raise ``ValueError`` unless ``W`` is a finite 2-D floating-point tensor."""
    if not isinstance(W, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(W).__name__}")
    if W.is_meta:
        raise ValueError(f"{name} is on the meta device (a shape without data): it has no values to use")
    if W.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(W.shape)}")
    if not W.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {W.dtype}")
    if W.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(W.shape)})")
    if not torch.isfinite(W).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def _check_nonzero(W: torch.Tensor, name: str = "W") -> None:
    """A share of ``||W||`` is undefined for an all-zero matrix (0 / 0): refuse it by name."""
    if not bool(W.any()):
        raise ValueError(f"{name} is all zeros: a share of its norm is 0 / 0, undefined")


def _check_rank(r: int, W: torch.Tensor) -> None:
    if not isinstance(r, int) or isinstance(r, bool):
        raise ValueError(f"rank r must be an int, got {type(r).__name__}")
    max_rank = min(W.shape)
    if not 1 <= r <= max_rank:
        raise ValueError(
            f"rank r must be between 1 and min(out, in) = {max_rank} for a matrix of shape {tuple(W.shape)}, got r={r}"
        )


def _truncated_svd(W: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Checked input, then the top-r SVD ``U_r (out, r), S_r (r,), Vh_r (r, in)`` in float32 or float64."""
    check_matrix(W)
    _check_rank(r, W)
    work = W if W.dtype == torch.float64 else W.float()
    U, S, Vh = torch.linalg.svd(work, full_matrices=False)
    return U[:, :r], S[:r], Vh[:r]


def low_rank_factors(W: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors ``(B, A)`` of the best rank-``r`` approximation, ``W_r = B @ A``.

    Args:
        W: matrix of shape ``(out, in)``, any floating dtype (the SVD runs in float32 or float64).
        r: the rank, ``1 <= r <= min(out, in)``.

    Returns:
        ``B`` of shape ``(out, r)`` (``U_r * sqrt(S_r)``) and ``A`` of shape ``(r, in)``
        (``sqrt(S_r) * V_r^T``), in ``W``'s dtype. The split of the singular values between the two
        factors is balanced, as LoRA's ``lora_B @ lora_A`` would hold them.
    """
    U, S, Vh = _truncated_svd(W, r)
    root = S.sqrt()
    B = U * root
    A = root[:, None] * Vh
    return B.to(W.dtype), A.to(W.dtype)


def low_rank_approx(W: torch.Tensor, r: int) -> torch.Tensor:
    """The best rank-``r`` approximation of ``W`` (Eckart--Young).

    Args:
        W: matrix of shape ``(out, in)``, any floating dtype.
        r: the rank, ``1 <= r <= min(out, in)``.

    Returns:
        ``U[:, :r] @ diag(S[:r]) @ Vh[:r]``, shape ``(out, in)``, in ``W``'s dtype.
    """
    U, S, Vh = _truncated_svd(W, r)
    return ((U * S) @ Vh).to(W.dtype)


def relative_error(W: torch.Tensor, ranks: list[int] | None = None) -> torch.Tensor:
    """Relative Frobenius error ``||W - W_r|| / ||W||`` of the best rank-r approximation.

    Computed from the singular values alone: ``sqrt(sum_{i>r} S_i^2 / sum_i S_i^2)``.

    Args:
        W: matrix of shape ``(out, in)``.
        ranks: the ranks to evaluate; default ``1 .. min(out, in)``.

    Returns:
        float64 tensor of shape ``(len(ranks),)``.
    """
    check_matrix(W)
    _check_nonzero(W)
    S = torch.linalg.svdvals(W.double())
    if ranks is None:
        ranks = list(range(1, len(S) + 1))
    if isinstance(ranks, (str, bytes)) or not isinstance(ranks, (list, tuple, range)) or not len(ranks):
        raise ValueError(f"ranks must be a non-empty list of ranks, got {validate.shown(ranks)}")
    for r in ranks:
        try:
            _check_rank(r, W)
        except ValueError as err:
            raise ValueError(f"ranks: {err}") from None
    tail = (S**2).flip(0).cumsum(0).flip(0)  # tail[i] = sum_{j >= i} S_j^2
    total = tail[0]
    out = [tail[r].sqrt() / total.sqrt() if r < len(S) else torch.zeros((), dtype=torch.float64) for r in ranks]
    return torch.stack(out)


def energy_kept(W: torch.Tensor, r: int) -> float:
    """Share of ``||W||_F^2`` that the top ``r`` singular values hold, in ``[0, 1]``."""
    check_matrix(W)
    _check_rank(r, W)
    _check_nonzero(W)
    S2 = torch.linalg.svdvals(W.double()) ** 2
    return float(S2[:r].sum() / S2.sum())
