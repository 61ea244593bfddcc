"""Scores -> decisions: paired statistics, comparisons and verdicts, integrity checks,
baselines, gates and the exit code."""
