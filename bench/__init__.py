"""Benchmarks (``python -m bench``): they run against the local stack (``tipstream dev up``)."""
