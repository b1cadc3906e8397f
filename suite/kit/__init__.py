"""The conformance kit: verify's checks from a kernel author's own tests (api.py) and the pytest plugin.

Deliberately empty: pytest imports ``suite.kit.pytest_plugin`` in every run of an environment that has
dropbench installed, and that import must not pull NumPy or the checks in.
"""
