"""Fixtures and reference computations shared by the ESM-2 tests.

The references are the upstream implementations run on the same tiny random
checkpoints: fair-esm's ``ESM2`` (``load_model_and_alphabet_local``) and
transformers' ``EsmForMaskedLM``. Test modules pull these in with
``from esm2_fixtures import *``.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

import bionemo_lite as bl

ESM2_NAME = "esm2_t6_8M_UR50D"
PARITY_TOL = 1e-5

# Mixed lengths, every standard residue, and the rare letters X B U Z O.
SEQUENCES = {
    "short": "MKT",
    "mid": "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ",
    "all": "ACDEFGHIKLMNPQRSTVWYXBUZO",
    "one": "W",
    "long": "GSHMSLFDFFKNKGSAAATPAAAPAAAPAAAPAAAQETKKSVRQRIEELTRSDRLERQLLQKLLG",
}


def load_quietly(weights: Path | str, **options) -> bl.BioModel:
    """`bl.load` of the tiny checkpoint, which is (on purpose) not the published shape."""
    from bionemo_lite.zoo.esm2.loading import ArchitectureWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ArchitectureWarning)
        return bl.load(ESM2_NAME, weights=weights, **options)


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every ESM-2 test module runs on one torch thread (see conftest)."""


@pytest.fixture(scope="session")
def fair_model(esm2_fair_checkpoint):
    """The tiny fair-esm checkpoint loaded as users get it (``numerics="fast"``, the default)."""
    return load_quietly(esm2_fair_checkpoint)


@pytest.fixture(scope="session")
def reference_model(esm2_fair_checkpoint):
    """The same checkpoint with ``numerics="reference"``: fair-esm's arithmetic, for the bit-exact parity tests."""
    return load_quietly(esm2_fair_checkpoint, numerics="reference")


@pytest.fixture(scope="session")
def hf_model(esm2_hf_dir):
    return load_quietly(esm2_hf_dir)


@pytest.fixture(scope="session")
def fair_ref(esm2_fair_checkpoint):
    """fair-esm's own model and alphabet loaded from the same file."""
    import esm

    with torch.serialization.safe_globals([argparse.Namespace]):
        model, alphabet = esm.pretrained.load_model_and_alphabet_local(str(esm2_fair_checkpoint))
    return model.eval(), alphabet


@pytest.fixture(scope="session")
def hf_ref(esm2_hf_dir):
    """transformers' EsmForMaskedLM (eager attention, so it can return attention maps)."""
    from transformers import EsmForMaskedLM

    return EsmForMaskedLM.from_pretrained(str(esm2_hf_dir), attn_implementation="eager").eval()


def fair_tokens(alphabet, seqs: Sequence[str]) -> torch.Tensor:
    _, _, tokens = alphabet.get_batch_converter()([(str(i), s) for i, s in enumerate(seqs)])
    return tokens


def fair_run(fair_ref, seqs: Sequence[str], layers: Sequence[int] = (), contacts: bool = False) -> dict:
    model, alphabet = fair_ref
    with torch.no_grad():
        return model(fair_tokens(alphabet, seqs), repr_layers=list(layers), return_contacts=contacts)


def hf_run(hf_ref, fair_alphabet, seqs: Sequence[str]):
    tokens = fair_tokens(fair_alphabet, seqs)
    with torch.no_grad():
        out = hf_ref(tokens, attention_mask=tokens.ne(1).long(), output_hidden_states=True)
    return tokens, out


def fair_log_probs(fair_ref, tokens: torch.Tensor) -> torch.Tensor:
    model, _ = fair_ref
    with torch.no_grad():
        return torch.log_softmax(model(tokens)["logits"], dim=-1)


def fair_pll(fair_ref, seq: str) -> float:
    """Pseudo-log-likelihood by masking each residue in turn (token i+1 for residue i: no BOS off-by-one)."""
    _, alphabet = fair_ref
    tokens = fair_tokens(alphabet, [seq])
    total = 0.0
    for i in range(1, len(seq) + 1):
        masked = tokens.clone()
        masked[0, i] = alphabet.mask_idx
        total += fair_log_probs(fair_ref, masked)[0, i, tokens[0, i]].item()
    return total


def fair_marginal(fair_ref, seq: str, mutation: str, masked: bool) -> float:
    """fair-esm examples/variant-prediction/predict.py's label_row (wt- or masked-marginals), summed over ':'."""
    _, alphabet = fair_ref
    tokens = fair_tokens(alphabet, [seq])
    total = 0.0
    for part in mutation.split(":"):
        wt, idx, mt = part[0], int(part[1:-1]) - 1, part[-1]
        assert seq[idx] == wt
        if masked:
            m = tokens.clone()
            m[0, 1 + idx] = alphabet.mask_idx
            probs = fair_log_probs(fair_ref, m)
        else:
            probs = fair_log_probs(fair_ref, tokens)
        total += (probs[0, 1 + idx, alphabet.get_idx(mt)] - probs[0, 1 + idx, alphabet.get_idx(wt)]).item()
    return total


def max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


__all__ = [
    "ESM2_NAME", "PARITY_TOL", "SEQUENCES", "_one_thread", "fair_log_probs", "fair_marginal", "fair_model", "fair_pll",
    "fair_ref", "fair_run", "fair_tokens", "hf_model", "hf_ref", "hf_run", "load_quietly", "max_diff",
    "reference_model",
]  # fmt: skip
