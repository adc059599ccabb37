"""Benchmarks of the platform against the loaders it replaces (`make bench`)."""
