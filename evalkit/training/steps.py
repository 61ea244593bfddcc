"""The pieces of one training step: batching, the completion-only loss, validation and
the learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from evalkit.training.data import IGNORE_INDEX
from evalkit.training.settings import LoraSettings

Encoded = tuple[list[int], list[int]]


def batches(encoded: list[Encoded], size: int, pad_id: int, gen: Any) -> list[tuple[Any, ...]]:
    """One epoch of right-padded (input_ids, attention_mask, labels) batches.

    The order is shuffled with `gen`; within windows of 16 batches, examples are sorted
    by length so a batch holds similar lengths (less padding), then the batches are
    shuffled again.
    """
    import torch

    order = torch.randperm(len(encoded), generator=gen).tolist()
    groups: list[list[int]] = []
    for w in range(0, len(order), size * 16):
        part = sorted(order[w : w + size * 16], key=lambda i: len(encoded[i][0]))
        groups += [part[j : j + size] for j in range(0, len(part), size)]
    out = []
    for g in torch.randperm(len(groups), generator=gen).tolist():
        out.append(_pad([encoded[i] for i in groups[g]], pad_id))
    return out


def _pad(chunk: list[Encoded], pad_id: int) -> tuple[Any, Any, Any]:
    import torch

    width = max(len(ids) for ids, _ in chunk)
    ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(chunk), width), dtype=torch.long)
    labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
    for row, (x, y) in enumerate(chunk):
        ids[row, : len(x)] = torch.tensor(x)
        mask[row, : len(x)] = 1
        labels[row, : len(y)] = torch.tensor(y)
    return ids, mask, labels


def completion_loss(
    model: Any, ids: Any, mask: Any, labels: Any, *, reduction: str = "mean"
) -> Any:
    """Next-token cross-entropy over the labelled (completion) tokens.

    Equal to the model's own `labels=` loss, but logits are computed only from the
    position that predicts the first labelled token on: prompt positions need none, and
    the vocabulary projection is a large share of a small model's cost.
    """
    import torch
    import torch.nn.functional as F

    first = int((labels != IGNORE_INDEX).any(dim=0).nonzero()[0])
    start = max(first - 1, 0)
    out = model(
        input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=ids.shape[1] - start
    )
    # Shift the labels, not the logits: dropping the last logit makes a non-contiguous
    # slice that flatten() copies (a (batch x length x vocab) copy per step); the last
    # position instead gets an ignored label.
    target = torch.full_like(labels[:, start:], IGNORE_INDEX)
    target[:, :-1] = labels[:, start + 1 :]
    logits = out.logits.flatten(0, 1).float()  # a view for float32 logits
    return F.cross_entropy(logits, target.flatten(), ignore_index=IGNORE_INDEX, reduction=reduction)


def lr_lambda(s: LoraSettings, total: int) -> Callable[[int], float]:
    warmup = min(round(s.warmup_ratio * total), total - 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if s.lr_schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if s.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1.0 - progress)

    return factor


def validation_loss(model: Any, val: list[Encoded], size: int, pad_id: int, device: Any) -> float:
    """Token-weighted mean completion loss over the held-out examples."""
    import torch

    was = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for j in range(0, len(val), size):
            ids, mask, labels = (t.to(device) for t in _pad(val[j : j + size], pad_id))
            total += float(completion_loss(model, ids, mask, labels, reduction="sum"))
            count += int((labels[:, 1:] != IGNORE_INDEX).sum())
    model.train(was)
    return total / max(1, count)
