"""pytest plugin (entry point ``pytest11``, name ``dropbench``): the ``dropout_conformance`` fixture.

pytest loads this module in EVERY run of an environment where dropbench is installed, dropbench's own
bench workers included. So it imports nothing but pytest (the checks, NumPy and the backends load when a
test calls the fixture) and defines no hook: other test runs behave exactly as without it. Disable it
with ``-p no:dropbench``.

    def test_my_dropout(dropout_conformance):
        dropout_conformance(my_dropout)  # a backend class/instance or f(x, rate, training, seed) -> y
"""
from __future__ import annotations

from typing import Any, Callable

import pytest


@pytest.fixture
def dropout_conformance() -> Callable[..., Any]:
    """A function that runs verify's checks on its argument and fails the test with verify's message."""

    def check(target: Any, **options: Any) -> Any:
        from suite.kit.api import verify_dropout  # noqa: PLC0415 - the checks load only when a test asks

        result = verify_dropout(target, **options)
        if not result.certified:
            pytest.fail(result.message, pytrace=False)
        return result

    return check
