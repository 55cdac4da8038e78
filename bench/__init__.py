"""Benchmarks a user can run; each module states its command, docs/benchmarks.md its results."""
