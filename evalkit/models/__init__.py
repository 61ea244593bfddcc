"""The Engine: one base model in memory, variants switched on it, batched requests."""
