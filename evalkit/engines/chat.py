"""The exact text a model sees for a prompt: one function shared by evaluation and
training, so an adapter is trained on the same text it is evaluated on."""

from __future__ import annotations

from typing import Any


def render_chat(tokenizer: Any, prompt: str, *, system: str | None = None) -> str:
    """Wrap a user prompt in the model's chat template, ready for the assistant's turn.

    Models without a chat template (base models) get the prompt unchanged.
    """
    if not getattr(tokenizer, "chat_template", None):
        return prompt
    messages = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return str(text)


def end_of_turn(tokenizer: Any) -> str:
    """The text that closes an assistant turn: the training target ends with it, and
    generation stops on it."""
    eos = tokenizer.eos_token or ""
    return str(eos)
