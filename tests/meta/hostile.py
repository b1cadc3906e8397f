"""Plugin backends that misbehave the way broken framework builds do: segfault, abort, hang."""
from __future__ import annotations

import os
import signal
import time

from tests.meta.plugins import CorrectDropout


class Segfaults(CorrectDropout):
    name = "segfaults"

    def forward(self, x, spec, *, api):
        os.kill(os.getpid(), signal.SIGSEGV)

    forward_backward = lambda self, x, g, spec, *, api: self.forward(x, spec, api=api)  # noqa: E731


class Aborts(CorrectDropout):
    name = "aborts"

    def forward(self, x, spec, *, api):
        os.abort()

    forward_backward = lambda self, x, g, spec, *, api: self.forward(x, spec, api=api)  # noqa: E731


class Hangs(CorrectDropout):
    name = "hangs"

    def forward(self, x, spec, *, api):
        time.sleep(3600)

    forward_backward = lambda self, x, g, spec, *, api: self.forward(x, spec, api=api)  # noqa: E731
