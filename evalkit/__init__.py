"""evalkit: evaluate LoRA adapters for task gain and forgetting, and gate releases on it.

`import evalkit` stays light: torch, transformers and peft are imported inside the
functions that need them.
"""

__version__ = "0.1.0"
