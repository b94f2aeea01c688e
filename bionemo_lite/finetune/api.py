"""`finetune()`: adapt a base model to a labelled table in minutes, and save the result as a variant.

    >>> import bionemo_lite as bl
    >>> result = bl.finetune("esm2_t6_8M_UR50D", "dms.csv", target="fitness", out_dir="runs/fitness",
    ...                      options=bl.FinetuneOptions(method="lora", split="identity"), name="my_fitness")
    >>> result.metrics["test"]["spearman"], bl.load("my_fitness").predict(["MKTAYIAKQR"]).values
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError
from .card import ADAPTER_FILE, HEAD_FILE, FinetuneCard, checkpoint_sha256
from .data import LabelledSet, read_labelled
from .encoders import POOLING, LoraEncoder, embed_features, lora_capable
from .head import HeadShape, PredictionHead
from .options import FinetuneOptions, FinetuneResult
from .splits import make_split
from .trainer import TrainSettings, Trainable, evaluate, train

logger = logging.getLogger(__name__)
def _head_trainable(head: PredictionHead, features: torch.Tensor, task: str) -> Trainable:
    def predict(indices: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = head(features[torch.as_tensor(indices)])
        return out[:, 0].double().numpy() if task == "regression" else torch.softmax(out.double(), -1).numpy()

    return Trainable([head], lambda idx: head.normalised(features[torch.as_tensor(idx)]), predict)


def _lora_trainable(head: PredictionHead, encoder: LoraEncoder, sequences: list[str], task: str,
                    eval_batch: int) -> Trainable:
    def pooled(indices: np.ndarray) -> torch.Tensor:
        return encoder([sequences[i] for i in indices])

    def predict(indices: np.ndarray) -> np.ndarray:
        outs = []
        with torch.no_grad():
            for start in range(0, len(indices), eval_batch):
                out = head(pooled(indices[start : start + eval_batch]))
                outs.append(out[:, 0].double() if task == "regression" else torch.softmax(out.double(), -1))
        return torch.cat(outs).cpu().numpy()

    return Trainable([encoder, head], lambda idx: head.normalised(pooled(idx)), predict)


def finetune(
    base_model: str | Any,
    data: str | Path | LabelledSet,
    target: str,
    out_dir: str | Path,
    options: FinetuneOptions | None = None,
    *,
    weights: str | Path | None = None,
    device: str = "cpu",
    name: str | None = None,
) -> FinetuneResult:
    """Fine-tune `base_model` to predict column `target` of `data`, and write the result to `out_dir`.

    Args:
        base_model: a registered name (loaded with `weights`, `device`), or an already loaded model
            (its ``weights_path`` is hashed into the card).
        data: a CSV/TSV table (an id column, ``sequence`` or ``smiles``, and `target`), or a `LabelledSet`.
        target: the column to predict.
        out_dir: the folder to write (``card.json``, ``head.safetensors``, ``adapter.safetensors`` for LoRA).
        options: `FinetuneOptions` (task, method, split, hyperparameters, seed).
        name: also register the fine-tune under this name in the weight cache (see `register_finetune`).

    Returns:
        `FinetuneResult`: the folder, the card and the held-out metrics (Spearman/RMSE or AUROC/accuracy).

    Raises:
        InvalidInputError: a bad option, table, record or target (naming the record), or ``lora``
            for a model that does not expose its encoder.
    """
    from ..registry import load

    options = options or FinetuneOptions()
    options.check()
    if name is not None:
        from .store import check_free_name

        check_free_name(name)
    started = time.perf_counter()
    model = load(base_model, weights=weights, device=device) if isinstance(base_model, str) else base_model
    if "embed" not in model.verbs:
        raise InvalidInputError(f"{model.name} has no embed verb, so it cannot be fine-tuned")
    if options.method == "lora" and not lora_capable(model):
        raise InvalidInputError(f"LoRA needs the encoder's torch module, which {model.name} does not expose; "
                                "use method='head'")
    if model.weights_path is None:
        raise InvalidInputError(f"{model.name} was not loaded from a checkpoint (weights_path is None): the card "
                                "needs the base weights' sha256")
    base_sha = checkpoint_sha256(model.weights_path)
    kind = model.spec.input_kind
    labelled = data if isinstance(data, LabelledSet) else read_labelled(data, target, options.task, kind,
                                                                         model.max_length)
    sequences = [r.sequence for r in labelled.records]
    split = make_split(options.split, sequences, kind, (options.test_fraction, options.validation_fraction),
                       options.seed, options.identity_threshold, [r.id for r in labelled.records])
    targets = labelled.targets
    torch.manual_seed(options.seed)  # head initialisation and dropout
    features = torch.from_numpy(_all_features(model, labelled))  # the frozen encoder: once, for every epoch
    out_dim = 1 if options.task == "regression" else len(labelled.classes or ())
    head = PredictionHead(HeadShape(int(features.shape[1]), options.hidden, out_dim, options.dropout))
    train_y = torch.as_tensor(targets[split.train], dtype=torch.float32) if options.task == "regression" else None
    head.fit_scales(features[torch.as_tensor(split.train)], train_y)
    target_scale = (float(head.target_mean), float(head.target_scale))
    encoder = None
    if options.method == "head":
        trainable = _head_trainable(head, features, options.task)
    else:
        encoder = LoraEncoder(model, options.lora_rank, options.lora_alpha, options.lora_dropout)
        head.to(encoder.device)  # beside the encoder's output (features stay on the CPU for `head`)
        trainable = _lora_trainable(head, encoder, sequences, options.task, options.batch_size)
    baseline = evaluate(options.task, trainable, split.test, targets)  # the untrained model, for comparison
    settings = TrainSettings(options.max_epochs, options.patience, options.batch_size, options.learning_rate,
                             options.weight_decay, options.seed, options.progress)
    best_epoch, validation = train(options.task, trainable, targets, split.train, split.validation, settings,
                                   target_scale)
    test = evaluate(options.task, trainable, split.test, targets)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _save(out, head, encoder)
    card = FinetuneCard(
        name=name or out.resolve().name,
        base_model=model.name,
        base_weights_sha256=base_sha,
        base_weights_path=str(Path(model.weights_path).resolve()),
        input_kind=kind,
        max_length=model.max_length,
        task=options.task,
        target=target,
        method=options.method,
        classes=labelled.classes,
        metrics={"test": _json_safe(test), "validation": _json_safe(validation), "baseline_test": _json_safe(baseline)},
        split={"method": options.split, **split.sizes(), "best_epoch": best_epoch},
        data_sha256=labelled.data_sha256,
        data_file=str(Path(data).resolve()) if not isinstance(data, LabelledSet) else "",
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        hyperparameters=options.hyperparameters(),
        head={"in_dim": head.shape.in_dim, "hidden": head.shape.hidden, "out_dim": head.shape.out_dim,
              "dropout": head.shape.dropout},
        lora=({"rank": options.lora_rank, "alpha": options.lora_alpha, "dropout": options.lora_dropout,
               "target_modules": encoder.target_modules} if encoder is not None else None),
        seconds=round(time.perf_counter() - started, 3),
        extra={"embedding": {"layer": -1, "pooling": POOLING}},
    )
    card.write(out)
    if name is not None:
        from .store import register_finetune

        register_finetune(out, name)
    return FinetuneResult(out, card, name)


def _json_safe(metrics: dict[str, float]) -> dict[str, float | None]:
    """NaN (an undefined metric, e.g. Spearman of constant predictions) as None: the card is strict JSON."""
    return {k: (None if v != v else float(v)) for k, v in metrics.items()}


def _all_features(model: Any, labelled: LabelledSet) -> np.ndarray:
    features, ids, errors = embed_features(model, labelled.records)
    if errors:
        first = errors[0]
        raise InvalidInputError(f"could not embed: {first.reason}", record=first.id)
    return features


def _save(out: Path, head: PredictionHead, encoder: LoraEncoder | None) -> None:
    from safetensors.torch import save_file

    from ..io.atomic import atomic_path

    with atomic_path(out / HEAD_FILE) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, str(tmp))
    if encoder is not None:
        with atomic_path(out / ADAPTER_FILE) as tmp:
            save_file(encoder.adapter_state(), str(tmp))
