"""Probes: edge cases as data, their classification, the crash-safe runner, matrix/README rendering."""
