"""The textbook MLP in PyTorch: nn.Sequential with nn.Dropout, nn.CrossEntropyLoss, optim.SGD."""
from __future__ import annotations

from typing import Any

import numpy as np

from suite.experiments.mlp_common import Problem, RunSpec

NAME = "torch"


def import_framework() -> Any:
    import torch

    return torch


def versions() -> dict[str, str]:
    return {"torch": import_framework().__version__}


def runtime_info() -> dict[str, object]:
    torch = import_framework()
    return {"threads": torch.get_num_threads(), "dtype": "float32"}


class TorchMLP:
    def __init__(self, problem: Problem, spec: RunSpec) -> None:
        torch = import_framework()
        nn = torch.nn
        self.torch = torch
        torch.manual_seed(spec.seed)  # drives nn.Dropout's masks
        w = problem.weights(spec.seed)
        n_in, n_h1, n_h2, n_out = w["w1"].shape[0], w["w1"].shape[1], w["w2"].shape[1], w["w3"].shape[1]
        self.model = nn.Sequential(
            nn.Linear(n_in, n_h1), nn.ReLU(), nn.Dropout(spec.rates[0]),
            nn.Linear(n_h1, n_h2), nn.ReLU(), nn.Dropout(spec.rates[1]),
            nn.Linear(n_h2, n_out),
        )
        with torch.no_grad():
            for layer, (wk, bk) in zip((self.model[0], self.model[3], self.model[6]), (("w1", "b1"), ("w2", "b2"), ("w3", "b3"))):
                layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(w[wk].T)))  # torch stores (out, in)
                layer.bias.copy_(torch.from_numpy(w[bk]))
        self.loss = nn.CrossEntropyLoss()  # mean over the batch
        self.opt = torch.optim.SGD(self.model.parameters(), lr=problem.lr)  # no momentum, no weight decay

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        self.model.train()
        self.opt.zero_grad()
        loss = self.loss(self.model(self.torch.from_numpy(x)), self.torch.from_numpy(y))
        loss.backward()
        self.opt.step()
        return float(loss.item())

    def logits(self, x: np.ndarray) -> np.ndarray:
        self.model.eval()
        with self.torch.no_grad():
            return self.model(self.torch.from_numpy(x)).numpy()


def build(problem: Problem, spec: RunSpec) -> TorchMLP:
    return TorchMLP(problem, spec)
