"""Reference computations shared by the ESM-2 tests (their fixtures are in conftest.py).

The references are the upstream implementations run on the same tiny random
checkpoints (`bionemo_lite.zoo.esm2.testing`): fair-esm's ``ESM2``
(``load_model_and_alphabet_local``) and transformers' ``EsmForMaskedLM``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
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
