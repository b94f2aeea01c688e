"""The training loop shared by both methods: seeded minibatches, AdamW, early stopping on validation.

`Trainable` is what a method hands the loop: the parameters to train and a function from
record indices to the head's standardised output. Same seed, data and options give
identical weights (the shuffles and initialisation draw from one seeded generator).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..cancellation import raise_if_cancelled
from .metrics import classification_metrics, regression_metrics

logger = logging.getLogger(__name__)


@dataclass
class Trainable:
    """modules: what is trained and saved (their ``state_dict``s are kept at the best epoch);
    outputs: record indices -> standardised head output ``[B, out]`` (with gradients);
    predict: record indices -> predictions in user units (regression ``[B]``, classification ``[B, C]``)."""

    modules: Sequence[nn.Module]
    outputs: Callable[[np.ndarray], torch.Tensor]
    predict: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TrainSettings:
    max_epochs: int
    patience: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int
    progress: bool


def evaluate(task: str, trainable: Trainable, indices: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """The held-out metrics of `indices` (see `bionemo_lite.finetune.metrics`)."""
    predicted = trainable.predict(indices)
    if task == "regression":
        return regression_metrics(targets[indices], predicted)
    return classification_metrics(targets[indices], predicted)


def _loss(task: str, output: torch.Tensor, target: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    if task == "regression":
        mean, std = scale
        return nn.functional.mse_loss(output[:, 0], (target - mean) / std)
    return nn.functional.cross_entropy(output, target)


def _score(task: str, metrics: dict[str, float]) -> float:
    """Higher is better: Spearman (then -RMSE) or AUROC (then accuracy); NaN counts as worst."""
    value = metrics["spearman"] if task == "regression" else metrics["auroc"]
    return -math.inf if math.isnan(value) else value


def train(
    task: str, trainable: Trainable, targets: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
    settings: TrainSettings, target_scale: tuple[float, float] = (0.0, 1.0),
) -> tuple[int, dict[str, float]]:
    """Train until the validation metric has not improved for `patience` epochs; restore the best epoch.

    Returns:
        The best epoch (1-based) and its validation metrics.
    """
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(settings.seed)
    params = [p for m in trainable.modules for p in m.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    dtype = torch.float32 if task == "regression" else torch.long
    all_targets = torch.as_tensor(targets, dtype=dtype)
    best = (-math.inf, 0, evaluate(task, trainable, val_idx, targets))
    best_state = [copy.deepcopy(m.state_dict()) for m in trainable.modules]
    stale = 0
    bar = tqdm(range(1, settings.max_epochs + 1), desc="fine-tuning", unit="epoch", disable=not settings.progress,
               leave=False)
    metric = "spearman" if task == "regression" else "auroc"
    for epoch in bar:
        for m in trainable.modules:
            m.train()
        order = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
        for start in range(0, len(order), settings.batch_size):
            raise_if_cancelled()  # one optimiser step: a batch boundary (HTTP requests can be cancelled)
            batch = order[start : start + settings.batch_size]
            optimiser.zero_grad()
            output = trainable.outputs(batch)
            loss = _loss(task, output, all_targets[torch.as_tensor(batch)].to(output.device), target_scale)
            loss.backward()
            optimiser.step()
        for m in trainable.modules:
            m.eval()
        metrics = evaluate(task, trainable, val_idx, targets)
        bar.set_postfix({f"val_{metric}": f"{metrics[metric]:.3f}"})
        if _score(task, metrics) > best[0]:
            best, stale = (_score(task, metrics), epoch, metrics), 0
            best_state = [copy.deepcopy(m.state_dict()) for m in trainable.modules]
        else:
            stale += 1
            if stale >= settings.patience:
                break
    bar.close()
    for m, state in zip(trainable.modules, best_state):
        m.load_state_dict(state)
    logger.info("best epoch %d: validation %s", best[1], best[2])
    return best[1], best[2]
