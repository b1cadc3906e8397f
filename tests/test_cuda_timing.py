"""CUDA-event timing (backends/cuda_timing.py) against a fake asynchronous device, and on a GPU where one is.

The fake device runs nothing when work is launched: launches queue up on its stream, and only a
synchronize runs them, advancing the device clock and completing the events recorded between them
(what CUDA does asynchronously). Reading an event that has not completed raises, as
``cudaEventElapsedTime`` does. A kernel takes 3 ms after an L2 flush and 2 ms when its data is
still in L2; the flush itself takes 5 ms. So the figures are exact, and wrong code cannot pass.
"""
from __future__ import annotations

import pytest

from backends import cuda_timing
from backends.base import Unsupported
from backends.cupy_backend import CupyBackend
from backends.torch_backend import TorchBackend
from backends.triton_backend import TritonBackend, TritonInterpreted

WARM_S, COLD_S, FLUSH_S = 0.002, 0.003, 0.005


class FakeDevice:
    def __init__(self) -> None:
        self.queue: list[tuple[str, object]] = []
        self.clock = 0.0
        self.cold = True
        self.syncs = 0

    # -- the torch.cuda surface that event_times uses ---------------------------------------
    def Event(self, enable_timing: bool = False) -> "FakeEvent":  # noqa: N802
        assert enable_timing, "an event without timing cannot be read"
        return FakeEvent(self)

    def synchronize(self) -> None:
        self.syncs += 1
        for kind, item in self.queue:
            if kind == "event":
                item.at = self.clock
            elif kind == "flush":
                self.clock += FLUSH_S
                self.cold = True
            else:  # a kernel
                self.clock += COLD_S if self.cold else WARM_S
                self.cold = False
        self.queue.clear()

    # -- what a step and a flush launch ----------------------------------------------------------
    def launch_kernel(self) -> None:
        self.queue.append(("kernel", None))

    def launch_flush(self) -> None:
        self.queue.append(("flush", None))


class FakeEvent:
    def __init__(self, device: FakeDevice) -> None:
        self.device, self.at = device, None

    def record(self) -> None:
        self.at = None
        self.device.queue.append(("event", self))

    def elapsed_time(self, end: "FakeEvent") -> float:
        if self.at is None or end.at is None:
            raise RuntimeError("event not completed: cudaErrorNotReady (read before synchronizing)")
        return (end.at - self.at) * 1e3  # milliseconds, as torch.cuda.Event


def test_warm_and_cold_per_call_times_are_the_kernels() -> None:
    device = FakeDevice()
    result = cuda_timing.event_timing(device.launch_kernel, cuda=device, flush=device.launch_flush, calls=7)
    assert result["warm"]["median_s"] == pytest.approx(WARM_S) and result["warm"]["max_s"] == pytest.approx(WARM_S)
    # cold: every call after a flush, and the flush's own 5 ms is outside the events
    assert result["cold"]["min_s"] == pytest.approx(COLD_S) and result["cold"]["max_s"] == pytest.approx(COLD_S)
    assert result["warm"]["calls"] == result["cold"]["calls"] == 7
    assert result["flush_bytes"] >= 4 * 60 * 2**20  # larger than an H200's 60 MB L2, several times


def test_an_asynchronous_step_is_read_only_after_synchronizing() -> None:
    """A step that only launches (no sync of its own): the events still cover its kernel, because
    event_times synchronizes before reading; reading earlier raises in the fake, as in CUDA."""
    device = FakeDevice()
    times = cuda_timing.event_times(device.launch_kernel, calls=3, cuda=device)
    assert times == pytest.approx([WARM_S] * 3)  # the warm-up call left the data in L2
    assert device.syncs == 2  # after the warm-up, and once before reading every event
    start, end = device.Event(enable_timing=True), device.Event(enable_timing=True)
    start.record(); device.launch_kernel(); end.record()  # noqa: E702
    with pytest.raises(RuntimeError, match="not completed"):
        start.elapsed_time(end)


def test_a_step_that_synchronizes_itself_is_timed_the_same() -> None:
    device = FakeDevice()

    def step() -> None:  # what a prepare() closure does: launch, then the framework's synchronize
        device.launch_kernel()
        device.synchronize()

    assert cuda_timing.event_times(step, calls=4, cuda=device, flush=device.launch_flush) == pytest.approx([COLD_S] * 4)


def test_quantiles_and_bad_calls() -> None:
    q = cuda_timing.quantiles([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (q["min_s"], q["q1_s"], q["median_s"], q["q3_s"], q["max_s"], q["calls"]) == (1.0, 2.0, 3.0, 4.0, 5.0, 5)
    with pytest.raises(ValueError, match="got 0"):
        cuda_timing.event_times(lambda: None, calls=0, cuda=FakeDevice())


@pytest.mark.parametrize("backend", [TorchBackend(), CupyBackend(), TritonBackend(), TritonInterpreted()],
                         ids=lambda b: type(b).__name__)
def test_event_timing_refuses_what_is_no_gpu_step(backend) -> None:
    with pytest.raises(Unsupported, match="CUDA events time GPU steps only"):
        backend.event_timing(lambda: None, "cpu")


def test_event_timing_on_a_gpu() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip(f"no CUDA device (torch {torch.__version__} sees none): the fake device above stands in")
    from suite.spec import DropoutSpec

    backend = TorchBackend()
    step = backend.prepare((1024, 1024), DropoutSpec(rate=0.5, device="cuda"), api="F.dropout", direction="forward")
    result = backend.event_timing(step, "cuda:0")
    assert result["clock"] == "torch.cuda.Event" and result["warm"]["calls"] == cuda_timing.EVENT_CALLS
    assert 0 < result["warm"]["min_s"] <= result["warm"]["median_s"] <= result["warm"]["max_s"]


class FakeNumbaCuda:
    """numba.cuda's spelling of the same device: ``event(timing=...)`` and ``synchronize()``."""

    def __init__(self, device: FakeDevice) -> None:
        self.device = device

    def event(self, timing: bool = True) -> FakeEvent:
        return self.device.Event(enable_timing=timing)

    def synchronize(self) -> None:
        self.device.synchronize()


def test_numba_events_time_the_same_as_torch_names() -> None:
    """numba-cuda:fused's adapter (NumbaEvents) gives event_timing the figures the torch names give."""
    device = FakeDevice()
    timing = cuda_timing.event_timing(device.launch_kernel, cuda=cuda_timing.NumbaEvents(FakeNumbaCuda(device)),
                                      flush=device.launch_flush, calls=5)
    assert timing["warm"]["median_s"] == pytest.approx(WARM_S) and timing["cold"]["median_s"] == pytest.approx(COLD_S)
