"""Registered benchmarks (cost against baselines and peer libraries), one module per family."""
