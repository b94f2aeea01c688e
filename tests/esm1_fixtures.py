"""Fixtures and references shared by the ESM-1 tests (import the fixtures you use by name).

The checkpoints are `bionemo_lite.zoo.esm1.testing`'s tiny random ones; the
references are fair-esm's ``ProteinBertModel`` (``load_model_and_alphabet_local``)
and transformers' ``EsmForMaskedLM`` on the same weights. The reference
computations themselves (PLL, marginals, runs) are ESM-2's (`esm2_fixtures`):
the same functions serve both families.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import pytest

import bionemo_lite as bl
from bionemo_lite.zoo.esm1 import ENSEMBLE, ESM1B, ESM1V_MEMBERS
from bionemo_lite.zoo.esm1.testing import write_ensemble_folder, write_fair_esm1_checkpoint, write_hf_esm1_dir


def load_quietly(name: str, weights: Path | str, **options) -> bl.BioModel:
    """`bl.load` of a tiny checkpoint, which is (on purpose) not the published shape."""
    from bionemo_lite.zoo.esm2.loading import ArchitectureWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ArchitectureWarning)
        return bl.load(name, weights=weights, **options)


def fair_esm_load(path: Path):
    """fair-esm's own model and alphabet from a ``.pt`` (its regression file beside it where it has one)."""
    import esm
    import torch

    with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Regression weights not found")  # ESM-1v publishes none
        model, alphabet = esm.pretrained.load_model_and_alphabet_local(str(path))
    return model.eval(), alphabet


@pytest.fixture(scope="module")
def esm1b_fair_checkpoint(tmp_path_factory) -> Path:
    """``esm1b_t33_650M_UR50S.pt`` + ``-contact-regression.pt`` with tiny random weights (fair-esm layout)."""
    return write_fair_esm1_checkpoint(tmp_path_factory.mktemp("esm1b_fair"), ESM1B)


@pytest.fixture(scope="module")
def esm1b_hf_dir(tmp_path_factory) -> Path:
    """The same weights, as fair-esm loads them, as a Hugging Face ``EsmForMaskedLM`` folder."""
    return write_hf_esm1_dir(tmp_path_factory.mktemp("esm1b_hf") / ESM1B, ESM1B)


@pytest.fixture(scope="module")
def esm1b_fair_ref(esm1b_fair_checkpoint):
    return fair_esm_load(esm1b_fair_checkpoint)


@pytest.fixture(scope="module")
def esm1b_hf_ref(esm1b_hf_dir):
    """transformers' EsmForMaskedLM (eager attention, so it can return attention maps)."""
    from transformers import EsmForMaskedLM

    return EsmForMaskedLM.from_pretrained(str(esm1b_hf_dir), attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def ensemble_folder(tmp_path_factory) -> Path:
    """The five ESM-1v members' ``.pt`` files in one folder (each with its own random weights)."""
    return write_ensemble_folder(tmp_path_factory.mktemp(ENSEMBLE))


@pytest.fixture(scope="module")
def ensemble_fair_refs(ensemble_folder):
    """fair-esm's model of each member, in member order."""
    return [fair_esm_load(ensemble_folder / f"{m}.pt") for m in ESM1V_MEMBERS]
