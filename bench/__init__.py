"""Benchmarks of sfls: each `bench_*.py` module exposes `run() -> list[dict]` rows; `python -m bench` runs them all."""
