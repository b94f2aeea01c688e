"""What a loaded model is: a small lifecycle (load once, then the verbs) and one
Protocol per verb. A plugin's model subclasses `BioModel` and implements the
verbs its spec declares; front doors check ``verb in model.verbs`` and call them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .records import Inputs, LengthPolicy
from .results import Embeddings, Generated, Scores, Structure
from .spec import DEFAULT_POOLINGS, ModelSpec

Pooling = str  # "mean" | "bos" | "per_residue" (families may add their own)
POOLINGS: tuple[str, ...] = DEFAULT_POOLINGS


class BioModel:
    """Base class of every loaded model.

    Attributes:
        spec: the variant's card.
        device: where the weights live (``"cpu"``, ``"cuda:0"``...).
        dtype: compute dtype name (``"float32"``...).
        config: the architecture actually loaded (may differ from `spec.config`
            for fine-tuned or custom-size checkpoints).
    """

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

    def onnx_encoder(self) -> OnnxEncoder:
        """The encoder as a traceable module, for ONNX export (encoders override this)."""
        from .errors import UnsupportedVerbError

        raise UnsupportedVerbError(self.name, "export to ONNX", sorted(self.verbs))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={self.device!r}, dtype={self.dtype!r})"


@dataclass
class OnnxEncoder:
    """What an encoder hands the ONNX exporter.

    Attributes:
        module: ``torch.nn.Module`` whose forward takes the named integer inputs
            (``[batch, length]``) and returns the named float outputs.
        example_inputs: tensors to trace with (any valid batch).
        input_names / output_names: graph tensor names, in forward order.
        dynamic_axes: ``{name: {axis: label}}`` for torch.onnx.export.
        tokenize: sequences -> the named int64 arrays the module expects
            (padded batch), so a server can feed the graph without the plugin.
        residue_mask: from the tokenized arrays, ``[batch, length]`` bool of
            residue positions (pooling excludes special tokens and padding).
        bos_index: position of a BOS token, or None when the model has none.
    """

    module: Any
    example_inputs: tuple
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    tokenize: Callable[[list[str]], dict[str, np.ndarray]]
    residue_mask: Callable[[dict[str, np.ndarray]], np.ndarray]
    bos_index: int | None = 0
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Embedder(Protocol):
    def embed(
        self,
        inputs: Inputs,
        layer: int | Sequence[int] = -1,
        pooling: Pooling = "mean",
        *,
        on_too_long: LengthPolicy = "error",
        tokens_per_batch: int | None = None,
    ) -> Embeddings:
        """Embed sequences (or molecules); see `Embeddings`."""
        ...


@runtime_checkable
class Scorer(Protocol):
    def score(self, inputs: Inputs, method: str = ..., **options: Any) -> Scores:
        """Score records (likelihoods, variant effects); see `Scores`."""
        ...


@runtime_checkable
class Generator(Protocol):
    def generate(self, inputs: Inputs, **options: Any) -> Generated:
        """Generate new sequences or molecules from seeds; see `Generated`."""
        ...


@runtime_checkable
class Folder(Protocol):
    def fold(
        self, sequence: str, *, num_recycles: int | None = None, chunk_size: int | None = None, **options: Any
    ) -> Structure:
        """Predict a structure; see `Structure`."""
        ...
