"""Embedding poolings: one object per pooling, one registry of them.

A pooling turns one layer's hidden states ``[B, T, D]`` and a residue mask
``[B, T]`` (true on residues/tokens only: no BOS/EOS, no padding) into one
float32 array per record: a vector ``[D]``, or a matrix ``[L_i, D]`` for the
per-position poolings. Each pooling has a torch implementation (plugins pool on
the device, so only what was asked for is copied back) and a numpy one (ONNX
encoders served by Triton run without torch); both give the same numbers.

Adding a pooling is one `Pooling` in `POOLINGS` below, plus the families that
offer it naming it in their ``ModelSpec.poolings``. Everything else (writers,
Triton, the HTTP service) asks the object, never compares names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidInputError

if TYPE_CHECKING:
    import torch

# hidden [B, T, D], residue mask [B, T], BOS position -> one float32 array per record
PoolFn = Callable[[Any, Any, int], list[np.ndarray]]


@dataclass(frozen=True)
class Pooling:
    """One way of reducing a layer's hidden states to the arrays users get.

    Attributes:
        name: what users pass as ``pooling=`` (``"mean"``, ``"bos"``, ...).
        per_position: True when the result is one vector per residue/token
            (``[L_i, D]`` per record), False for one vector per record (``[D]``).
        needs_bos: True when the pooling reads the BOS token, so families
            without one (ProtT5) cannot offer it.
        description: one line for help texts.
    """

    name: str
    per_position: bool
    needs_bos: bool
    description: str
    _torch: PoolFn
    _numpy: PoolFn

    def torch(self, hidden: torch.Tensor, residue_mask: torch.Tensor, bos_index: int | None = 0) -> list[np.ndarray]:
        """Pool torch hidden states ``[B, T, D]`` (any dtype, any device) into float32 numpy arrays.

        Args:
            hidden: one layer's hidden states.
            residue_mask: ``[B, T]`` true on residue tokens only: padding and
                special tokens never enter a mean or a per-position matrix.
            bos_index: position of the BOS token; None for models without one.

        Raises:
            InvalidInputError: a BOS pooling on a model without a BOS token.
        """
        return self._torch(hidden.float(), residue_mask, self._bos(bos_index))

    def numpy(self, hidden: np.ndarray, residue_mask: np.ndarray, bos_index: int | None = 0) -> list[np.ndarray]:
        """`torch` for numpy arrays (float32 results), for encoders that run without torch."""
        return self._numpy(np.asarray(hidden).astype(np.float32, copy=False), np.asarray(residue_mask, bool),
                           self._bos(bos_index))

    def _bos(self, bos_index: int | None) -> int:
        if not self.needs_bos:
            return -1  # unused
        if bos_index is None:
            raise InvalidInputError("this model has no BOS token; use pooling 'mean' or 'per_residue'")
        return bos_index


def _mean_torch(hidden: Any, residue_mask: Any, _: int) -> list[np.ndarray]:
    mask = residue_mask.unsqueeze(-1).to(hidden.dtype)
    return list(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu().numpy())


def _mean_numpy(hidden: np.ndarray, residue_mask: np.ndarray, _: int) -> list[np.ndarray]:
    mask = residue_mask[..., None].astype(np.float32)
    return list((hidden * mask).sum(1) / np.maximum(mask.sum(1), 1.0))


def _max_torch(hidden: Any, residue_mask: Any, _: int) -> list[np.ndarray]:
    return list(hidden.masked_fill(~residue_mask.unsqueeze(-1), float("-inf")).amax(1).cpu().numpy())


def _max_numpy(hidden: np.ndarray, residue_mask: np.ndarray, _: int) -> list[np.ndarray]:
    return list(np.where(residue_mask[..., None], hidden, -np.inf).max(1).astype(np.float32))


def _bos_torch(hidden: Any, _: Any, bos_index: int) -> list[np.ndarray]:
    return list(hidden[:, bos_index].cpu().numpy())


def _bos_numpy(hidden: np.ndarray, _: np.ndarray, bos_index: int) -> list[np.ndarray]:
    return list(hidden[:, bos_index])


def _rows_torch(hidden: Any, residue_mask: Any, _: int) -> list[np.ndarray]:
    return [row[mask].cpu().numpy() for row, mask in zip(hidden, residue_mask)]


def _rows_numpy(hidden: np.ndarray, residue_mask: np.ndarray, _: int) -> list[np.ndarray]:
    return [row[mask] for row, mask in zip(hidden, residue_mask)]


MEAN = Pooling("mean", False, False, "mean over the residues (BOS, EOS and padding excluded)", _mean_torch, _mean_numpy)
MAX = Pooling("max", False, False, "largest value of each dimension over the residues", _max_torch, _max_numpy)
BOS = Pooling("bos", False, True, "the BOS token's vector", _bos_torch, _bos_numpy)
PER_RESIDUE = Pooling("per_residue", True, False, "one vector per residue", _rows_torch, _rows_numpy)
# MegaMolBART's (BioNeMo's) name for the per-position hiddens of a SMILES.
PER_TOKEN = Pooling("per_token", True, False, "one vector per SMILES token", _rows_torch, _rows_numpy)

POOLINGS: Mapping[str, Pooling] = MappingProxyType({p.name: p for p in (MEAN, MAX, BOS, PER_RESIDUE, PER_TOKEN)})
DEFAULT_POOLINGS: tuple[str, ...] = ("mean", "bos", "per_residue")  # a protein encoder with a BOS token


def get_pooling(name: str, allowed: Sequence[str] = DEFAULT_POOLINGS) -> Pooling:
    """The pooling called `name`, if it is one of `allowed` (a family's ``ModelSpec.poolings``).

    Raises:
        InvalidInputError: `name` is not among `allowed` (the message lists them).
    """
    if not isinstance(name, str) or name not in allowed or name not in POOLINGS:
        raise InvalidInputError(f"pooling must be one of {', '.join(allowed)}; got {name!r}")
    return POOLINGS[name]


def is_per_position(name: str) -> bool:
    """True when pooling `name` returns one vector per position (unknown names: False)."""
    pooling = POOLINGS.get(name)
    return pooling is not None and pooling.per_position
