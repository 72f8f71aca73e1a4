"""Benchmarks, crash and load runs (make bench / make crash / make load)."""
