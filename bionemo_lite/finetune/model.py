"""`FinetunedModel`: a fine-tune served like any model, answering ``predict``.

It wraps the base model (loaded by name through the registry, so any family works) and
the head (plus, for LoRA, the adapted encoder). `load_finetuned` is the variant's loader:
it checks the base weights it finds against the card's sha256 before reading anything else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..batching import run_batches, token_budget_batches
from ..errors import BaseWeightsMismatchError, CheckpointError
from ..model import BioModel
from ..records import Inputs, LengthPolicy, prepare_inputs
from ..results import Predictions, RecordError
from ..spec import ModelSpec
from .card import ADAPTER_FILE, HEAD_FILE, FinetuneCard, checkpoint_sha256
from .encoders import LoraEncoder, embed_features
from .head import HeadShape, PredictionHead

LORA_TOKENS_PER_BATCH = 4096


class FinetunedModel(BioModel):
    """A loaded fine-tune.

    Attributes:
        card: its `FinetuneCard`.
        base: the loaded base model.
        head: the `PredictionHead`.
        encoder: the `LoraEncoder` (method ``lora``), else None (the base's ``embed`` verb is used).

    Example:
        >>> model = bionemo_lite.load("runs/solubility")  # or the name it was registered under
        >>> model.predict(["MKTAYIAKQR"]).values
    """

    def __init__(self, spec: ModelSpec, card: FinetuneCard, base: Any, head: PredictionHead,
                 encoder: LoraEncoder | None = None):
        super().__init__(spec, base.device, "float32", dict(spec.config))
        self.card, self.base, self.head, self.encoder = card, base, head.eval(), encoder
        if encoder is not None:
            encoder.eval()

    def features(self, sequences: list[str], ids: list[str] | None = None) -> torch.Tensor:
        """Pooled features of already-checked sequences (LoRA path), without gradients; `ids` name bad records."""
        assert self.encoder is not None
        with torch.no_grad():
            return self.encoder(sequences, ids)

    def _outputs(self, features: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            out = self.head(features.float().to(self.head.feature_mean.device))
            if self.card.task == "regression":
                return out[:, 0].double().cpu().numpy()
            return torch.softmax(out.double(), dim=-1).cpu().numpy()

    def predict(
        self, inputs: Inputs, *, on_too_long: LengthPolicy = "error", tokens_per_batch: int | None = None
    ) -> Predictions:
        """Predict the fine-tuned target of each record.

        Args:
            inputs: sequences or SMILES, as the base model takes them (a string, a list, ``{id: text}``, records).
            on_too_long: ``"error"`` or ``"truncate"`` for records over the base model's maximum.
            tokens_per_batch: padded-token budget per batch (None: the base model's default).

        Returns:
            `Predictions`: regression values, or class probabilities and the most probable class;
            records that failed (e.g. out of memory even alone) in ``errors``.

        Raises:
            InvalidInputError: a bad record (naming it), as the base model's verbs do.
        """
        records, truncated = prepare_inputs(inputs, self.spec.input_kind, self.max_length, on_too_long)
        errors: list[RecordError] = []
        if self.encoder is None:
            features, ids, failed = embed_features(self.base, records, on_too_long=on_too_long,
                                                   tokens_per_batch=tokens_per_batch)
            errors.extend(failed)
            outputs = self._outputs(torch.from_numpy(features)) if ids else np.zeros((0,))
        else:
            batches = token_budget_batches([len(r.sequence) for r in records],
                                           tokens_per_batch or LORA_TOKENS_PER_BATCH, 2)
            done, failures = run_batches(batches, lambda batch: dict(zip(batch, self._outputs(self.features(
                [records[i].sequence for i in batch], [records[i].id for i in batch])))))
            ids = [records[i].id for i in sorted(done)]
            outputs = np.asarray([done[i] for i in sorted(done)])
            errors.extend(RecordError(records[i].id, records[i].index, why) for i, why in sorted(failures.items()))
        if self.card.task == "regression":
            values: list[Any] = [float(v) for v in np.asarray(outputs).reshape(-1)]
            probabilities = None
        else:
            probabilities = np.asarray(outputs, dtype=np.float64).reshape(len(ids), -1)
            values = [self.card.classes[int(k)] for k in probabilities.argmax(axis=1)] if ids else []  # type: ignore[index]
        kept = set(ids)
        return Predictions(self.name, self.card.task, ids, values, probabilities, self.card.classes, self.card.target,
                           [t for t in truncated if t in kept], errors)

    def close(self) -> None:
        """Release the base model too."""
        self.base.close()


def base_weights_for(card: FinetuneCard, base_weights: str | Path | None = None) -> Path:
    """The base checkpoint to load: `base_weights`, else the one the card was trained on if it is still
    there, else the weight cache's (`bionemo_lite.weights.resolve_weights`)."""
    from ..registry import get_spec
    from ..weights import resolve_weights

    if base_weights is None and card.base_weights_path and Path(card.base_weights_path).exists():
        base_weights = card.base_weights_path
    return resolve_weights(get_spec(card.base_model), base_weights)


def read_head(folder: Path, card: FinetuneCard) -> PredictionHead:
    from ..weights import read_safetensors

    shape = HeadShape(**card.head)
    head = PredictionHead(shape)
    state = read_safetensors(folder / HEAD_FILE)
    try:
        head.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{str(folder / HEAD_FILE)!r} does not fit the card's head {shape}: "
                              f"{str(exc).splitlines()[0]}") from None
    return head


def load_finetuned(spec: ModelSpec, path: Path, device: str = "cpu", dtype: str | None = None,
                   base_weights: str | Path | None = None, **options: Any) -> FinetunedModel:
    """Load the fine-tune in folder `path` as variant `spec` (the loader of family ``finetuned``).

    Args:
        base_weights: the base model's checkpoint (default: the card's path, else the weight cache).

    Raises:
        CheckpointError: no or a damaged card or head file.
        BaseWeightsMismatchError: the base weights found are not the ones the card names (sha256).
    """
    from ..registry import load

    path = Path(path)
    card = FinetuneCard.read(path)
    base_path = base_weights_for(card, base_weights)
    found = checkpoint_sha256(base_path)
    if found != card.base_weights_sha256:
        raise BaseWeightsMismatchError(spec.name, card.base_model, card.base_weights_sha256, found, base_path)
    base = load(card.base_model, weights=base_path, device=device, dtype=dtype, **options)
    head = read_head(path, card).to(device)
    encoder = None
    if card.method == "lora":
        from ..weights import read_safetensors

        lora = card.lora or {}
        encoder = LoraEncoder(base, rank=lora["rank"], alpha=lora["alpha"], dropout=lora.get("dropout", 0.0),
                              target_modules=lora["target_modules"])
        encoder.load_adapter_state(read_safetensors(path / ADAPTER_FILE))
    model = FinetunedModel(spec, card, base, head, encoder)
    return model


def load_path(path: str | Path, device: str = "cpu", dtype: str | None = None, *, name: str | None = None,
              **options: Any) -> FinetunedModel:
    """A fine-tune by its folder (what `bionemo_lite.load` does for a path), named `name` (default: as its card says)."""
    card = FinetuneCard.read(path)
    model = load_finetuned(card.spec(name), Path(path), device=device, dtype=dtype, **options)
    model.weights_path = Path(path)
    return model
