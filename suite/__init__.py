"""dropbench harness: spec, checks, probes, timing and reports. Imports no framework."""
__version__ = "0.1.0"
