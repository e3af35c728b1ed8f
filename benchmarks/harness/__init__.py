"""Helpers of benchmarks/run.py."""
