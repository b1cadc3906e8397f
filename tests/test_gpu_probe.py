"""The GPU probe cases (cuda:*): n/a with the reason without a GPU, and measured right where one is.

No GPU here, so "a GPU" is a fake backend that claims cuda:0 and draws its mask from a generator of
its own per device (as torch's CPU and CUDA generators are), or from one shared generator.
"""
from __future__ import annotations

import numpy as np
import pytest

from suite.probe import cases as probes
from suite.probe.runner import plan_for, run_case

SEED = 20260101


class FakeDevices:
    """Inverted dropout whose mask comes from ``seed`` (+ 1 on the "GPU" when ``gpu_offset``)."""

    name = "fake"
    apis = ("drop",)
    capabilities = {"seed", "backward", "eval"}
    dtypes = ("float32", "float16")

    def __init__(self, devices: list[str], gpu_offset: int = 0) -> None:
        self._devices, self.gpu_offset = devices, gpu_offset
        self.calls: list[str] = []

    def available(self) -> bool:
        return True

    def versions(self) -> dict[str, str]:
        return {}

    def devices(self) -> list[str]:
        return list(self._devices)

    def forward(self, x: np.ndarray, spec, *, api: str) -> np.ndarray:
        self.calls.append(spec.device)
        if not spec.training:
            return x.copy()
        seed = int(spec.seed) + (self.gpu_offset if spec.device != "cpu" else 0)
        keep = 1.0 - float(spec.rate)
        mask = np.random.default_rng(seed).random(x.shape) < keep
        return np.where(mask, x / np.asarray(keep, dtype=x.dtype), 0).astype(x.dtype)

    def forward_backward(self, x, grad_out, spec, *, api):
        raise NotImplementedError


def test_gpu_cases_are_not_part_of_the_cpu_map() -> None:
    backend = FakeDevices(["cpu"])
    planned = {case for _, case in plan_for(backend, "main", None, None)}
    assert planned.isdisjoint(probes.GPU_CASE_IDS)
    assert set(probes.GPU_CASE_IDS) <= {case for _, case in plan_for(backend, "main", None, None, device="cuda")}
    assert all(probes.BY_ID[c].device == "cuda" for c in probes.GPU_CASE_IDS)


@pytest.mark.parametrize("case_id", probes.GPU_CASE_IDS)
def test_without_a_gpu_every_gpu_case_is_na_with_the_reason(case_id: str) -> None:
    """A plugin that would happily run spec.device="cuda" on the CPU must not be recorded as a GPU run."""
    backend = FakeDevices(["cpu"])
    record = run_case(backend, "drop", probes.BY_ID[case_id], SEED)
    assert record["outcome"] == "n/a"
    assert "sees no cuda device here (devices: cpu)" in record["message"]
    assert backend.calls == []  # the API was never called


@pytest.mark.parametrize("offset, finding", [(0, probes.SAME_MASK), (1, probes.NEW_MASK)])
def test_same_seed_on_cpu_and_gpu(offset: int, finding: str) -> None:
    backend = FakeDevices(["cpu", "cuda:0"], gpu_offset=offset)
    record = run_case(backend, "drop", probes.BY_ID["cuda:seed-vs-cpu"], SEED)
    assert record["outcome"] == "inverted" and record["finding"] == finding, record
    assert backend.calls == ["cuda", "cpu"]  # once on each device, the GPU first


def test_a_gpu_only_api_has_no_host_mask_to_compare() -> None:
    record = run_case(FakeDevices(["cuda:0"]), "drop", probes.BY_ID["cuda:seed-vs-cpu"], SEED)
    assert record["outcome"] == "n/a" and "no CPU path" in record["message"]


def test_gpu_eval_and_half_scales_run_on_the_device() -> None:
    backend = FakeDevices(["cpu", "cuda:0"])
    assert run_case(backend, "drop", probes.BY_ID["cuda:eval"], SEED)["outcome"] == "identity"
    half = run_case(backend, "drop", probes.BY_ID["cuda:float16-scale@0.1"], SEED)
    assert half["finding"] == "1.111 (+0 ulp)", half
    assert set(backend.calls) == {"cuda"}
    bf16 = run_case(backend, "drop", probes.BY_ID["cuda:bfloat16-scale@0.1"], SEED)
    assert bf16["outcome"] == "n/a" and "bfloat16" in bf16["message"]  # the fake declares no bfloat16
