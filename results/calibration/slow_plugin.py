"""Calibration plugins for `dropbench compare`: numpy:fast doing a known amount of extra work.

``Slow25`` ("calib25"), ``Slow10`` ("calib10"), ``Slow05`` ("calib05") and ``SlowAA`` ("calibaa",
never slowed) time numpy's fast kernel on an input with ``factor`` times as many rows as the case
asks for, so each step does ``factor`` x the element-wise work (memory- and RNG-bound at 2^22, so
time follows work). The factor is read from the environment (``DROPBENCH_CALIB25`` / ``..10`` /
``..05`` / ``..AA``, default 1.0), so the same backend name, API id and rows appear in an unchanged
run (1.0) and in a slowed one, and compare matches them. The row count is rounded: the work factor
actually done is recorded as ``versions["work_factor"]`` (2^22 = 4096 rows: 5120/4096 = 1.25
exactly, 4506/4096 = 1.1001, 4301/4096 = 1.0500).
Used only by results/calibration/calibrate.py, never by the suite.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from backends.numpy_backend import NumpyBackend


class _Slow(NumpyBackend):
    env = ""

    apis = ("fast",)
    infos = {"fast": NumpyBackend.infos["fast"]}

    @property
    def factor(self) -> float:
        return float(os.environ.get(self.env, "1.0"))

    def versions(self) -> dict[str, str]:
        return {**super().versions(), "work_factor": os.environ.get(self.env, "1.0")}

    def prepare(self, shape: Sequence[int], spec: Any, *, api: str, direction: str,
                compiled: bool = False) -> Callable[[], None]:
        rows = max(1, round(int(shape[0]) * self.factor))
        return super().prepare((rows, *shape[1:]), spec, api=api, direction=direction, compiled=compiled)


def _variant(cls_name: str, name: str, doc: str = "") -> type[_Slow]:
    """One calibration backend: its name, and the variable DROPBENCH_<NAME> that sets its work factor."""
    return type(cls_name, (_Slow,), {"name": name, "env": f"DROPBENCH_{name.upper()}", "__doc__": doc or None,
                                     "__module__": __name__})


Slow25 = _variant("Slow25", "calib25")
Slow10 = _variant("Slow10", "calib10")
Slow05 = _variant("Slow05", "calib05")
SlowAA = _variant("SlowAA", "calibaa", "Never slowed by calibrate.py: the A/A rows (factor 1.0 on both sides).")
SlowAB = _variant("SlowAB", "calibab", "calibaa's twin under another name: the A/A NEW side when both sides share "
                                       "one process (same-process duets).")
