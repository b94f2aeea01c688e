"""Held-out metrics: Spearman and RMSE (regression), AUROC and accuracy (classification).

Spearman and AUROC come from ranks (`scipy.stats`), AUROC as the Mann-Whitney U statistic
(one-vs-rest averaged over classes for more than two), so ties count half as usual.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata, spearmanr


def regression_metrics(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """``spearman`` (NaN when either side is constant) and ``rmse``."""
    y, predicted = np.asarray(y, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    rho = float("nan") if np.ptp(y) == 0 or np.ptp(predicted) == 0 else float(spearmanr(y, predicted).statistic)
    return {"spearman": rho, "rmse": float(math.sqrt(np.mean((y - predicted) ** 2)))}


def binary_auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (NaN with one class only)."""
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(y: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """``auroc`` (one-vs-rest mean over the classes present) and ``accuracy``."""
    y = np.asarray(y, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape[1] == 2:
        auroc = binary_auroc(y == 1, probabilities[:, 1])
    else:
        values = [binary_auroc(y == c, probabilities[:, c]) for c in range(probabilities.shape[1])]
        values = [v for v in values if not math.isnan(v)]
        auroc = float(np.mean(values)) if values else float("nan")
    return {"auroc": auroc, "accuracy": float(np.mean(probabilities.argmax(axis=1) == y))}
