"""Records -> Scores: metrics, text measures and LLM judges."""
