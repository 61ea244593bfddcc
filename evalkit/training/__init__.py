"""LoRA and QLoRA training, suite-declared adapters, sweeps and merging.

`import evalkit.training` stays light: torch, transformers and peft are imported inside
the functions that need them.
"""

from evalkit.training.data import (
    IGNORE_INDEX,
    DataSpec,
    Example,
    data_sha256,
    encode_example,
    load_examples,
    split_validation,
)  # fmt: skip
from evalkit.training.loop import completion_loss, train_lora, training_key
from evalkit.training.settings import (
    TRAINING_CODE_VERSION,
    LoraSettings,
    TrainingDiverged,
    TrainingError,
    TrainResult,
)  # fmt: skip

__all__ = [
    "IGNORE_INDEX", "DataSpec", "Example", "LoraSettings", "TRAINING_CODE_VERSION",
    "TrainResult", "TrainingDiverged", "TrainingError", "completion_loss", "data_sha256",
    "encode_example", "load_examples", "split_validation", "train_lora", "training_key",
]  # fmt: skip
