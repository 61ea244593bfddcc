"""The exact text a model sees for a prompt: one function shared by evaluation and
training, so an adapter is trained on the same text it is evaluated on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evalkit.engines.base import ChatPrompt


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


def encode_chat(tokenizer: Any, prompt: ChatPrompt) -> list[int]:
    """The token ids of a chat prompt as every engine that templates on the client sends
    them: the rendered text, with no special tokens added (the template has them)."""
    text = render_chat(tokenizer, prompt.user, system=prompt.system)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def generation_stops(tokenizer: Any, stop: Sequence[str]) -> list[str]:
    """A task's stop strings and the end of turn: where every engine cuts a completion."""
    return [s for s in (*stop, end_of_turn(tokenizer)) if s]


def cut_at_stops(text: str, stops: list[str], tokenizer: Any) -> str:
    """Cut a completion at its first stop string and drop special tokens after that."""
    cut = len(text)
    for s in stops:
        pos = text.find(s)
        if pos != -1:
            cut = min(cut, pos)
    text = text[:cut]
    for special in tokenizer.all_special_tokens:
        text = text.replace(special, "")
    return text.strip()
