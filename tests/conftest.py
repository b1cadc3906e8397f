"""Repository-wide pytest configuration."""


def pytest_configure(config):
    """--benchmark-only wins over pyproject's addopts --benchmark-disable (pytest-benchmark refuses both).

    A plain `pytest` keeps --benchmark-disable and runs every benchmark once as a smoke test.
    """
    if config.getoption("benchmark_only", default=False):
        config.option.benchmark_enable = True
