"""The textbook MLP in MXNet Gluon: nn.Dropout trained under autograd.record(), SoftmaxCrossEntropyLoss,
gluon.Trainer('sgd'). Gluon drops only inside record() (train mode); outside it Dropout is the identity."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from suite.experiments.mlp_common import Problem, RunSpec

NAME = "mxnet"


def import_framework() -> Any:
    """Through the adapter, which restores the ``np.bool`` alias MXNet 1.9.1 needs under NumPy >= 1.24."""
    from backends.mxnet_backend import MxnetBackend

    return MxnetBackend().framework()


def versions() -> dict[str, str]:
    return {"mxnet": import_framework().__version__}


def runtime_info() -> dict[str, object]:
    return {"omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"), "dtype": "float32"}


class GluonMLP:
    def __init__(self, problem: Problem, spec: RunSpec) -> None:
        mx = import_framework()
        from mxnet import autograd, gluon, nd

        self.mx, self.autograd, self.nd = mx, autograd, nd
        mx.random.seed(spec.seed)  # drives nn.Dropout's masks
        w = problem.weights(spec.seed)
        nn = gluon.nn
        net = nn.Sequential()
        net.add(nn.Dense(w["w1"].shape[1], activation="relu", in_units=w["w1"].shape[0]), nn.Dropout(spec.rates[0]),
                nn.Dense(w["w2"].shape[1], activation="relu", in_units=w["w2"].shape[0]), nn.Dropout(spec.rates[1]),
                nn.Dense(w["w3"].shape[1], in_units=w["w3"].shape[0]))
        net.initialize()
        for layer, (wk, bk) in zip((net[0], net[2], net[4]), (("w1", "b1"), ("w2", "b2"), ("w3", "b3"))):
            layer.weight.set_data(nd.array(w[wk].T, dtype="float32"))  # Gluon stores (out, in)
            layer.bias.set_data(nd.array(w[bk], dtype="float32"))
        self.net = net
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()  # per example
        self.trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": problem.lr})  # momentum 0, wd 0

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        nd = self.nd
        xb, yb = nd.array(x, dtype="float32"), nd.array(y, dtype="float32")
        with self.autograd.record():  # train mode: Dropout drops
            per_example = self.loss(self.net(xb), yb)
        per_example.backward()  # gradient of the sum ...
        self.trainer.step(len(y))  # ... rescaled by 1/batch: the gradient of the mean loss (the d2l idiom)
        return float(per_example.mean().asscalar())

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.net(self.nd.array(x, dtype="float32")).asnumpy()  # outside record(): predict mode


def build(problem: Problem, spec: RunSpec) -> GluonMLP:
    return GluonMLP(problem, spec)
