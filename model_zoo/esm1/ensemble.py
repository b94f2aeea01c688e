"""The ESM-1v ensemble: the five ESM-1v models' scores, averaged (Meier et al. 2021).

fair-esm's ``examples/variant-prediction`` scores a variant with each of
``esm1v_t33_650M_UR90S_1`` .. ``_5`` and averages the five scores; this model
does exactly that for every `score` method the members offer (``pll``,
``masked_marginals``, ``wt_marginals``). It only scores: embeddings of five
different models have no meaningful mean.

Weights are a folder holding, per member, either ``<member>.pt`` (fair-esm)
or a ``<member>/`` folder (Hugging Face, or one holding the ``.pt``); the
members' names are the spec's ``config["members"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bionemo_lite.errors import CheckpointError
from bionemo_lite.model import BioModel
from bionemo_lite.records import Inputs, LengthPolicy
from bionemo_lite.registry import get_spec
from bionemo_lite.results import RecordError, Scores
from bionemo_lite.spec import ModelSpec
from bionemo_lite.zoo.esm2.network import Numerics

from .loading import load_esm1
from .model import ESM1Model


def member_path(folder: Path, member: str) -> Path:
    """Where `member`'s checkpoint sits in an ensemble folder: ``<member>.pt`` or ``<member>/``.

    Raises:
        CheckpointError: neither is there.
    """
    for candidate in (folder / f"{member}.pt", folder / member):
        if candidate.exists():
            return candidate
    raise CheckpointError(
        f"{folder}: no weights for ensemble member {member} (expected {member}.pt or a {member}/ folder)"
    )


class ESM1vEnsemble(BioModel):
    """Five ESM-1v models scoring together; each score is the mean of the members' scores.

    Attributes:
        members: the loaded `ESM1Model`s, in the spec's ``config["members"]`` order.

    Example:
        >>> ensemble = bionemo_lite.load("esm1v_ensemble", weights="esm1v/")  # the five .pt files
        >>> ensemble.score("MKTAYIAKQR", method="masked_marginals", mutations=["K2A", "T3S:A4G"]).scores
    """

    def __init__(self, spec: ModelSpec, members: Sequence[ESM1Model], *, device: str = "cpu"):
        super().__init__(spec, device, members[0].dtype, dict(spec.config))
        self.members = list(members)

    def close(self) -> None:
        """Release every member."""
        for member in self.members:
            member.close()

    def score(
        self,
        inputs: Inputs,
        method: str = "pll",
        mutations: str | Sequence[str] | None = None,
        *,
        on_too_long: LengthPolicy = "error",
        tokens_per_batch: int | None = None,
    ) -> Scores:
        """Score with every member and average (arguments and result as `ESM2Model.score`).

        A record or mutation that any member could not compute is reported in
        ``errors`` (with that member's reason) instead of being averaged over fewer models.
        """
        method = self.spec.score_method(method)
        results = [
            m.score(inputs, method, mutations, on_too_long=on_too_long, tokens_per_batch=tokens_per_batch)
            for m in self.members
        ]
        by_member = [dict(zip(r.ids, r.scores)) for r in results]
        failed: dict[str, RecordError] = {}
        for member, result in zip(self.members, results):
            for err in result.errors:
                failed.setdefault(
                    err.id, RecordError(err.id, err.index, f"{member.name}: {err.reason}", err.position)
                )
        ids = [i for i in results[0].ids if i not in failed and all(i in d for d in by_member)]
        stacked = np.array([[d[i] for i in ids] for d in by_member], dtype=np.float64).reshape(len(by_member), -1)
        return Scores(
            model=self.name,
            method=method,
            ids=ids,
            scores=stacked.mean(axis=0),
            mutations=list(ids) if results[0].mutations is not None else None,
            truncated=results[0].truncated,
            windowed=results[0].windowed,  # every member has the same maximum length, so the same windows
            errors=sorted(failed.values(), key=lambda e: e.index),
        )


def load_esm1v_ensemble(
    spec: ModelSpec,
    path: Path,
    *,
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
    numerics: Numerics | None = None,
) -> ESM1vEnsemble:
    """Load the members named in ``spec.config["members"]`` from the folder `path` (see the module doc).

    Raises:
        CheckpointError: `path` is not a folder, or a member's weights are missing or unreadable.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder}: {spec.name} loads from a folder holding its members' weights "
            f"({', '.join(f'{m}.pt' for m in spec.config['members'])})"
        )
    members = [
        load_esm1(get_spec(m), member_path(folder, m), device=device, dtype=dtype, numerics=numerics)
        for m in spec.config["members"]
    ]
    return ESM1vEnsemble(spec, members, device=device)
