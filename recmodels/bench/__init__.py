"""Benchmarks behind ``python -m recmodels bench``: latency per model, operation, scale and device
(:mod:`~recmodels.bench.latency`), and concurrent clients of one service (:mod:`~recmodels.bench.concurrency`)."""
