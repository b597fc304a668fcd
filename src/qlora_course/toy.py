"""A small MLP and synthetic teacher tasks that lesson 1 trains on a CPU in seconds.

The tasks are labelled by a random "teacher" network, so they are exactly reproducible from a seed and
need no download. Task A pretrains the student; task B is a related task (the teacher's first layer is
perturbed by a *full-rank* random matrix and its classes are relabelled), so whatever low-rank structure
the fine-tuning update ``W_B - W_A`` shows comes from training, not from the way the task was built.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import validate

__all__ = ["Task", "make_tasks", "MLP", "train", "evaluate"]


@dataclass
class Task:
    """A classification task: ``X_*`` float32 ``(n, d_in)``, ``y_*`` int64 ``(n,)``."""

    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor


def _teacher_labels(X: torch.Tensor, W1: torch.Tensor, W2: torch.Tensor) -> torch.Tensor:
    return (torch.tanh(X @ W1.T) @ W2.T).argmax(dim=1)


def make_tasks(
    seed: int = 0,
    d_in: int = 32,
    n_classes: int = 10,
    n_train: int = 20_000,
    n_test: int = 5_000,
    shift: float = 0.6,
    n_tasks: int = 2,
) -> list[Task]:
    """``n_tasks`` related tasks on the same input distribution ``N(0, I_{d_in})``.

    Task 0 ("A") is labelled by a teacher ``argmax(W2 tanh(W1 x))`` with ``W1`` of shape
    ``(4 d_in, d_in)``. Each later task perturbs ``W1`` by ``shift`` times an independent Gaussian
    matrix of the same scale (full rank) and permutes the class labels.
    """
    if d_in <= 0 or n_classes < 2 or n_train <= 0 or n_test <= 0 or n_tasks < 1:
        raise ValueError("d_in, n_train and n_test must be positive, n_classes >= 2, n_tasks >= 1")
    g = torch.Generator().manual_seed(seed)
    hidden = 4 * d_in
    W1 = torch.randn(hidden, d_in, generator=g) / d_in**0.5
    W2 = torch.randn(n_classes, hidden, generator=g) / hidden**0.5
    X_train = torch.randn(n_train, d_in, generator=g)
    X_test = torch.randn(n_test, d_in, generator=g)
    tasks = []
    for k in range(n_tasks):
        if k == 0:
            W1_k, perm = W1, torch.arange(n_classes)
        else:
            W1_k = W1 + shift * torch.randn(hidden, d_in, generator=g) / d_in**0.5
            perm = torch.randperm(n_classes, generator=g)
        tasks.append(
            Task(
                name="ABCDEFGH"[k] if k < 8 else f"T{k}",
                X_train=X_train,
                y_train=perm[_teacher_labels(X_train, W1_k, W2)],
                X_test=X_test,
                y_test=perm[_teacher_labels(X_test, W1_k, W2)],
            )
        )
    return tasks


class MLP(nn.Module):
    """``d_in -> hidden -> hidden -> n_classes`` with GELU; layers named ``fc1``, ``fc2``, ``head``."""

    def __init__(self, d_in: int = 32, hidden: int = 256, n_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.gelu(self.fc2(F.gelu(self.fc1(x)))))


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of ``model`` on ``(X, y)``, in eval mode: ``X`` float of shape
    ``(n, d_in)``, ``y`` the ``n`` class labels (int64, each within the model's outputs)."""
    validate.module(model, "model")
    validate.tensor(X, "X", ndim=2, floating=True)
    validate.tensor(y, "y", ndim=1, floating=False)
    if y.numel() != X.shape[0]:
        raise ValueError(f"y has {y.numel()} labels for the {X.shape[0]} rows of X")
    was_training = model.training
    model.eval()
    try:
        logits = model(X)
    finally:
        model.train(was_training)
    if int(y.min()) < 0 or int(y.max()) >= logits.shape[-1]:
        raise ValueError(f"y must hold labels from 0 to {logits.shape[-1] - 1}, got {int(y.min())} to {int(y.max())}")
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def train(
    model: nn.Module,
    task: Task,
    steps: int = 1000,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
    desc: str | None = None,
) -> list[float]:
    """Train the parameters of ``model`` that require grad with AdamW on ``task``; returns the losses.

    Mini-batches are drawn with their own seeded generator, so two runs with the same seed see the
    same batches.
    """
    if steps <= 0 or batch_size <= 0 or not lr > 0:
        raise ValueError(f"steps, batch_size and lr must be positive, got {steps}, {batch_size}, {lr}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (did you freeze everything?)")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    n = len(task.y_train)
    losses = []
    model.train()
    for _ in tqdm(range(steps), desc=desc or f"train on {task.name}", disable=not progress, leave=False):
        idx = torch.randint(0, n, (batch_size,), generator=g)
        loss = F.cross_entropy(model(task.X_train[idx]), task.y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
