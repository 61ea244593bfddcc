"""Kept for `from evalkit.train import ...`: the trainer now lives in `evalkit.training`."""

from evalkit.training import (
    IGNORE_INDEX,
    LoraSettings,
    TrainResult,
    completion_loss,
    data_sha256,
    encode_example,
    train_lora,
)  # fmt: skip

__all__ = ["IGNORE_INDEX", "LoraSettings", "TrainResult", "completion_loss", "data_sha256",
           "encode_example", "train_lora"]  # fmt: skip
