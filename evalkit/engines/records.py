"""Records: what each variant produced for each example, before any scoring."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Record:
    """One example × one variant. Fields are filled by the request kinds the task needs."""

    task: str
    example_id: str
    variant: str
    output: str | None = None
    # log p(reference | prompt) and its token count (reference perplexity)
    ref_logprob: float | None = None
    ref_tokens: int | None = None
    # log p(option | prompt) per option (multiple choice)
    choice_logprobs: list[float] = field(default_factory=list)
    # negative log-likelihood of a whole text and its token count (rolling perplexity)
    nll: float | None = None
    n_tokens: int | None = None
    # KL(base || variant) summed over the text's first kl_tokens tokens (nats); 0 for the base
    kl: float | None = None
    kl_tokens: int | None = None
    # of those kl_tokens positions, how many the variant's argmax is the base's
    top1: int | None = None
    # of the generated answer's tokens, how many fall outside the base's top-k at their
    # prefix (open-shift), and how many tokens the answer has
    shift_outside: int | None = None
    shift_tokens: int | None = None
    # "NEED: reason" for each request kind (Needs: loglikelihood, choice, rolling,
    # rolling_kl) the engine could not compute for this record; the metrics that need it
    # are unscored with the reason. A flat list of strings, so records.parquet types it.
    unscored: list[str] = field(default_factory=list)

    def mark_unscored(self, need: str, reason: str) -> None:
        """Record that the engine could not compute `need` for this record, and why."""
        self.unscored = [u for u in self.unscored if not u.startswith(f"{need}: ")]
        self.unscored.append(f"{need}: {reason}")

    def unscored_reason(self, need: str) -> str | None:
        """Why the engine could not compute `need` here (None: it did, or was not asked)."""
        prefix = f"{need}: "
        return next((u[len(prefix) :] for u in self.unscored if u.startswith(prefix)), None)
