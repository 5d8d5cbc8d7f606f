"""Benchmarks of fal-queue-mcp against the local sandbox upstream: run with `python -m bench` (see README.md)."""
