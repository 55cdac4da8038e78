"""Benchmarks a user can run; each module documents its command and docs/benchmarks.md its results."""
