"""Throughput and latency baseline: ``python -m bench.run`` (writes docs/benchmarks.md)."""
