"""What every framework's MLP run shares: the run description, the epoch loop, the metrics.

A framework module (``mlp_<name>.py``) only builds its own model from the given initial weights
and returns a :class:`Trainer` (one SGD step on a batch, and eval-mode logits). Everything that
must be identical across frameworks -- batch order, epoch loss, accuracy, timing -- lives here.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

LAYER_KEYS = ("w1", "b1", "w2", "b2", "w3", "b3")  # weights are (in, out), NumPy/Keras layout


@dataclass(frozen=True)
class RunSpec:
    """One training run: which seed's initial weights and batch order, the two dropout rates, and
    how many epochs (None: all the problem's epochs)."""

    label: str
    seed: int
    rates: tuple[float, float]
    epochs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "seed": self.seed, "rates": list(self.rates), "n_epochs": self.epochs}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        epochs = d.get("n_epochs")
        return cls(str(d["label"]), int(d["seed"]), (float(d["rates"][0]), float(d["rates"][1])),
                   None if epochs is None else int(epochs))


@dataclass(frozen=True)
class Problem:
    """Data, initial weights and batch orders, loaded from the bundle the parent wrote once."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    lr: float
    batch_size: int
    epochs: int
    arrays: dict[str, np.ndarray]

    def weights(self, seed: int) -> dict[str, np.ndarray]:
        return {k: self.arrays[f"init{seed}_{k}"] for k in LAYER_KEYS}

    def order(self, seed: int, epoch: int) -> np.ndarray:
        return self.arrays[f"perm{seed}"][epoch]


class Trainer(Protocol):
    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One SGD step on a batch with dropout in training mode; returns the batch's mean loss."""

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Eval-mode (dropout off) logits as float NumPy."""


Build = Callable[[Problem, RunSpec], Trainer]


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean softmax cross-entropy in float64 (for the test loss, identical for every framework)."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


def batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def train_run(problem: Problem, spec: RunSpec, build: Build) -> dict[str, Any]:
    """Train one run; per epoch: train loss (sample-weighted mean of batch losses), test acc/loss, times."""
    t0 = time.perf_counter()
    trainer = build(problem, spec)
    build_s = time.perf_counter() - t0
    epochs = []
    for epoch in range(min(spec.epochs or problem.epochs, problem.epochs)):
        t0 = time.perf_counter()
        total, seen = 0.0, 0
        for idx in batches(problem.order(spec.seed, epoch), problem.batch_size):
            total += trainer.step(problem.x_train[idx], problem.y_train[idx]) * len(idx)
            seen += len(idx)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        logits = np.asarray(trainer.logits(problem.x_test))
        eval_s = time.perf_counter() - t0
        epochs.append({
            "epoch": epoch + 1, "train_loss": total / seen,
            "test_acc": float(np.mean(logits.argmax(axis=1) == problem.y_test)),
            "test_loss": softmax_cross_entropy(logits, problem.y_test),
            "train_s": train_s, "eval_s": eval_s,
        })
    return {**spec.to_dict(), "build_s": build_s, "epochs": epochs}


def dropout_probe(problem: Problem, build: Build, rate: float = 0.5) -> dict[str, Any]:
    """Does the framework's MLP draw a fresh mask every step, and is eval mode the identity?

    Learning rate 0, so the weights never change: three training steps on one batch must give three
    different losses (a mask reused across steps would repeat the loss), and eval-mode logits of the
    dropout model must equal those of the same model built without dropout (inverted dropout).
    """
    frozen = dataclasses.replace(problem, lr=0.0)
    x, y = problem.x_train[: problem.batch_size], problem.y_train[: problem.batch_size]
    dropped = build(frozen, RunSpec("probe", 0, (rate, rate)))
    losses = [dropped.step(x, y) for _ in range(3)]
    plain = build(frozen, RunSpec("probe", 0, (0.0, 0.0)))
    with_dropout, without = np.asarray(dropped.logits(problem.x_test)), np.asarray(plain.logits(problem.x_test))
    return {"rate": rate, "train_losses_same_batch": losses, "fresh_mask_each_step": len(set(losses)) == len(losses),
            "eval_max_abs_diff_vs_no_dropout": float(np.max(np.abs(with_dropout - without))),
            "eval_is_identity": bool(np.allclose(with_dropout, without, rtol=1e-6, atol=1e-6))}
