"""Benchmarks: every figure measured against a baseline in the same run, written to docs/benchmarks.md."""
