"""Benchmarks, run from the repository root as ``python -m benchmarks.<group>.<name>``
(README.md in this folder); what they share is in ``benchmarks.common``."""
