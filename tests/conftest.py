"""Repository-wide pytest configuration: the benchmark engine's hooks and fixtures.

The engine is the installed plugin ``suite.bench.plugin`` (what `dropbench bench` workers load
with ``-p``); importing its hooks here makes them active for every `pytest` run from this checkout,
whichever path is named, so `pytest`, `pytest tests/benchmarks` and `pytest --benchmark-only`
collect the same cases.
"""
from suite.bench.plugin import (  # noqa: F401 - pytest finds hooks and fixtures by name
    bench,
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_generate_tests,
    pytest_runtest_logreport,
    pytest_runtest_logstart,
    pytest_sessionfinish,
    pytest_sessionstart,
    pytest_unconfigure,
    timed,
)
