"""Benchmarks of flyte-deploy against Flyte's own deploy path and the physical limits (see README.md)."""
