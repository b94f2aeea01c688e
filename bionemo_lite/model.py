"""What a loaded model is: a small lifecycle (load once, then the verbs).

A plugin's model subclasses `BioModel` and implements the Protocols of
`bionemo_lite.verbs` for the verbs its spec declares; front doors check
``verb in model.verbs`` and call them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .spec import ModelSpec


class BioModel:
    """Base class of every loaded model.

    Attributes:
        spec: the variant's card.
        device: where the weights live (``"cpu"``, ``"cuda:0"``...).
        dtype: compute dtype name (``"float32"``...).
        config: the architecture actually loaded (may differ from `spec.config`
            for fine-tuned or custom-size checkpoints).
        weights_path: the checkpoint file or directory it was loaded from, as
            `bionemo_lite.load` resolved it (None for a model built in memory).
        numerics: the numerics mode it runs with (None: the family has no choice).
    """

    weights_path: Path | None = None
    numerics: str | None = None

    def __init__(self, spec: ModelSpec, device: str = "cpu", dtype: str = "float32", config: dict | None = None):
        self.spec = spec
        self.device = str(device)
        self.dtype = dtype
        self.config: dict[str, Any] = dict(config if config is not None else spec.config)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def verbs(self) -> frozenset[str]:
        return self.spec.verbs

    @property
    def max_length(self) -> int:
        return self.spec.max_length

    def close(self) -> None:
        """Release accelerator memory; the model is unusable afterwards."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={self.device!r}, dtype={self.dtype!r})"
