"""The prediction head: a small MLP (or a linear layer) on pooled encoder features.

Inputs are standardised with the training set's feature mean and spread, regression
targets with the training targets' (both kept as buffers, so a saved head is whole).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class HeadShape:
    """in_dim: pooled feature size; hidden: MLP width (0: linear); out_dim: 1 (regression) or classes."""

    in_dim: int
    hidden: int
    out_dim: int
    dropout: float = 0.0


class PredictionHead(nn.Module):
    """``features [B, in_dim] -> [B, out_dim]`` (regression: in target units; classification: logits)."""

    def __init__(self, shape: HeadShape):
        super().__init__()
        self.shape = shape
        if shape.hidden:
            self.net: nn.Module = nn.Sequential(
                nn.Linear(shape.in_dim, shape.hidden), nn.GELU(), nn.Dropout(shape.dropout),
                nn.Linear(shape.hidden, shape.out_dim),
            )
        else:
            self.net = nn.Linear(shape.in_dim, shape.out_dim)
        self.register_buffer("feature_mean", torch.zeros(shape.in_dim))
        self.register_buffer("feature_scale", torch.ones(shape.in_dim))
        self.register_buffer("target_mean", torch.zeros(1))
        self.register_buffer("target_scale", torch.ones(1))

    def fit_scales(self, features: torch.Tensor, targets: torch.Tensor | None) -> None:
        """Standardise by the training features (and regression targets)."""
        self.feature_mean.copy_(features.mean(0))
        self.feature_scale.copy_(features.std(0).clamp_min(1e-6))
        if targets is not None:
            self.target_mean.copy_(targets.mean().reshape(1))
            self.target_scale.copy_(targets.std().clamp_min(1e-6).reshape(1))

    def normalised(self, features: torch.Tensor) -> torch.Tensor:
        """Output in standardised units (what the loss sees)."""
        return self.net((features - self.feature_mean) / self.feature_scale)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.normalised(features)
        return out * self.target_scale + self.target_mean if self.shape.out_dim == 1 else out
