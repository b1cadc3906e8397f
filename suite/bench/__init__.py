"""Timing: cases and traffic model, baselines, the pytest-benchmark plugin (the engine), the orchestrator."""
