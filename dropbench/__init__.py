"""The public Python API of dropbench (the distribution's own name, so a test imports what it installed).

    from dropbench import verify_dropout
    verify_dropout(my_dropout).assert_ok()

The implementation lives in suite/kit/; the pytest fixture ``dropout_conformance`` comes with the plugin.
"""
from suite import __version__
from suite.kit.api import ConformanceResult, FunctionBackend, verify_dropout

__all__ = ["ConformanceResult", "FunctionBackend", "__version__", "verify_dropout"]
