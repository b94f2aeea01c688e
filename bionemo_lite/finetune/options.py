"""Fine-tuning's typed options and result (no torch: `import bionemo_lite` stays light)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import InvalidInputError
from .card import FinetuneCard
from .data import TASKS, Task
from .splits import SPLIT_METHODS, SplitMethod

Method = Literal["head", "lora"]
METHODS: tuple[str, ...] = ("head", "lora")


@dataclass(frozen=True)
class FinetuneOptions:
    """How to fine-tune.

    Attributes:
        task: ``"regression"`` (a number per record) or ``"classification"`` (a label per record).
        method: ``"head"`` (an MLP on the frozen encoder's cached mean-pooled embeddings; every family)
            or ``"lora"`` (LoRA adapters on the encoder plus the head; ESM-2 and ProtT5).
        split: ``"random"``, ``"identity"`` (proteins: clusters of similar sequences kept on one side)
            or ``"scaffold"`` (SMILES: Bemis-Murcko scaffolds kept on one side).
        test_fraction / validation_fraction: shares of the records held out for the reported metrics
            and for early stopping.
        hidden: width of the head's hidden layer (0: a linear head).
        max_epochs / patience: stop after `patience` epochs without a better validation metric.
        seed: the same seed, data and options give identical weights.
        lora_rank / lora_alpha / lora_dropout: the LoRA adapters (``lora`` only).
        progress: a progress bar with the validation metric.
    """

    task: Task = "regression"
    method: Method = "head"
    split: SplitMethod = "random"
    test_fraction: float = 0.15
    validation_fraction: float = 0.15
    hidden: int = 64
    dropout: float = 0.0
    max_epochs: int = 100
    patience: int = 15
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    identity_threshold: float = 0.5
    progress: bool = True

    def check(self) -> None:
        """Raises `InvalidInputError` naming the first option out of range."""
        choices = {"task": TASKS, "method": METHODS, "split": SPLIT_METHODS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InvalidInputError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("test_fraction", "validation_fraction"):
            if not 0.0 < getattr(self, name) < 0.5:
                raise InvalidInputError(f"{name} must be between 0 and 0.5, got {getattr(self, name)!r}")
        for name, low in (("hidden", 0), ("max_epochs", 1), ("patience", 1), ("batch_size", 1), ("lora_rank", 1),
                          ("lora_alpha", 1)):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < low:
                raise InvalidInputError(f"{name} must be an integer >= {low}, got {getattr(self, name)!r}")
        if not 0 < self.learning_rate <= 1:
            raise InvalidInputError(f"learning_rate must be in (0, 1], got {self.learning_rate!r}")
        for name in ("dropout", "lora_dropout", "weight_decay"):
            if not 0 <= getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")

    def hyperparameters(self) -> dict[str, Any]:
        keep = ("hidden", "dropout", "max_epochs", "patience", "batch_size", "learning_rate", "weight_decay", "seed",
                "test_fraction", "validation_fraction")
        extra = ("lora_rank", "lora_alpha", "lora_dropout") if self.method == "lora" else ()
        extra += ("identity_threshold",) if self.split == "identity" else ()
        return {k: v for k, v in asdict(self).items() if k in keep + extra}


@dataclass(frozen=True)
class FinetuneResult:
    """What `finetune` made: the folder, its card, the held-out metrics and how long it took."""

    out_dir: Path
    card: FinetuneCard
    name: str | None = None

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        """``{"test": {...}, "validation": {...}, "baseline_test": {...}}`` (see the card)."""
        return self.card.metrics

    @property
    def seconds(self) -> float:
        return self.card.seconds
