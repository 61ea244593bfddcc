"""Datasets, prompt rendering and the built-in general probes."""
