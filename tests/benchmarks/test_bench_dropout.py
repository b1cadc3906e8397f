"""The dropout benchmarks, collected from the package (suite/bench/bench_dropout.py) so that
``pytest --benchmark-only`` from a checkout times exactly what ``dropbench bench`` times."""
from suite.bench.bench_dropout import test_baseline, test_dropout  # noqa: F401 - collected by pytest
