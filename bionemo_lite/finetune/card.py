"""The card of a fine-tuned model (``card.json`` in its folder) and the files beside it.

A fine-tune's folder holds ``card.json``, ``head.safetensors`` and, for LoRA,
``adapter.safetensors``. The card says what it was made from (the base model and the
sha256 of its weights, the data's sha256), how (method, split, hyperparameters), when,
and how well it did on the held-out split. `checkpoint_sha256` is the digest both the
trainer and the loader compute, so a load on other base weights is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..spec import ModelSpec, WeightFile, WeightSource

CARD_FILE = "card.json"
HEAD_FILE = "head.safetensors"
ADAPTER_FILE = "adapter.safetensors"
CARD_FORMAT = "bionemo-lite-finetune"
CARD_VERSION = 1
FAMILY = "finetuned"
LOADER = "bionemo_lite.zoo.finetuned.loading:load_finetuned"  # the family's plugin (it re-exports the core loader)


@dataclass(frozen=True)
class FinetuneCard:
    """What ``card.json`` holds (see the module docstring)."""

    name: str
    base_model: str
    base_weights_sha256: str
    base_weights_path: str
    input_kind: str
    max_length: int
    task: str
    target: str
    method: str
    classes: list[str] | None
    metrics: dict[str, dict[str, float]]
    split: dict[str, Any]
    data_sha256: str
    data_file: str
    created: str
    hyperparameters: dict[str, Any]
    head: dict[str, Any]
    lora: dict[str, Any] | None = None
    seconds: float = 0.0
    format: str = CARD_FORMAT
    version: int = CARD_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, folder: Path) -> Path:
        from ..io.atomic import write_text_atomic

        path = folder / CARD_FILE
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def read(cls, folder: str | Path) -> FinetuneCard:
        """The card of the fine-tune in `folder`.

        Raises:
            CheckpointError: no card there, or not one this version reads.
        """
        path = Path(folder) / CARD_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{str(folder)!r} is not a fine-tuned model: it has no {CARD_FILE}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{str(path)!r} is not readable JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != CARD_FORMAT:
            raise CheckpointError(f"{str(path)!r} is not a bionemo-lite fine-tune card")
        if data.get("version") != CARD_VERSION:
            raise CheckpointError(f"{str(path)!r}: card version {data.get('version')!r}; this bionemo-lite reads "
                                  f"version {CARD_VERSION}")
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise CheckpointError(f"{str(path)!r}: incomplete card ({exc})") from None

    def files(self) -> tuple[str, ...]:
        return (CARD_FILE, HEAD_FILE) + ((ADAPTER_FILE,) if self.method == "lora" else ())

    def spec(self, name: str | None = None) -> ModelSpec:
        """The variant this fine-tune is, under `name` (default: its card's); its weights are its folder."""
        name = name or self.name
        return ModelSpec(
            name=name,
            family=FAMILY,
            verbs=frozenset({"predict"}),
            loader=LOADER,
            input_kind=self.input_kind,  # type: ignore[arg-type]
            max_length=self.max_length,
            config={"base_model": self.base_model, "task": self.task, "target": self.target, "method": self.method,
                    "classes": self.classes, "metrics": self.metrics},
            license="as the base model's",
            weights=(WeightSource(format=CARD_FORMAT, files=tuple(WeightFile(f, "", required=True)
                                                                   for f in self.files())),),
            description=f"{self.method} fine-tune of {self.base_model}: {self.task} of {self.target!r}",
            poolings=(),
        )


def is_finetune_folder(path: str | Path) -> bool:
    """Whether `path` is a folder holding a fine-tune card."""
    return (Path(path) / CARD_FILE).is_file()


def checkpoint_sha256(path: str | Path) -> str:
    """sha256 of a checkpoint file; of a checkpoint folder, the sha256 of its files' relative paths and digests."""
    from ..weights import sha256_of

    path = Path(path)
    if path.is_file():
        return sha256_of(path)
    lines = "".join(f"{p.relative_to(path)}\0{sha256_of(p)}\n" for p in sorted(path.rglob("*")) if p.is_file())
    return hashlib.sha256(lines.encode()).hexdigest()
