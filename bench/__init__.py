"""Benchmark suite (``./run bench``)."""
