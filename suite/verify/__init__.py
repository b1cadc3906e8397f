"""Conformance: checks (pure functions), their statistics, the per-API plan, known divergences."""
