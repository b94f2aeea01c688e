"""ESM-1b and ESM-1v against fair-esm and transformers on the same random weights (fp32, CPU).

Both published layouts are checked: the fair-esm ``.pt`` against fair-esm's
``ProteinBertModel``, and the Hugging Face folder against transformers'
``EsmForMaskedLM`` and against fair-esm (same weights). ``numerics="reference"``
is held to `PARITY_TOL` (1e-5); the default ``"fast"`` to ESM-2's measured bounds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esm1_fixtures import (  # noqa: F401  (fixtures)
    ensemble_fair_refs,
    ensemble_folder,
    esm1b_fair_checkpoint,
    esm1b_fair_ref,
    esm1b_hf_dir,
    esm1b_hf_ref,
    fair_esm_load,
    load_quietly,
)
from esm2_fixtures import PARITY_TOL, SEQUENCES, fair_marginal, fair_pll, fair_run, hf_run, max_diff

from bionemo_lite.zoo.esm1 import ESM1B, ESM1V_MEMBERS
from bionemo_lite.zoo.esm2.alphabet import ALPHABET

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SEQS = list(SEQUENCES.values())
LAYERS = [0, 1, 2, 3]
WT = SEQUENCES["mid"]
MUTATIONS = ["M1A", "K2W", "A4G:Y5F", "Q33P"]


@pytest.fixture(scope="module", params=["fair-esm", "huggingface"])
def esm1b(request, esm1b_fair_checkpoint, esm1b_hf_dir):
    """Our ESM-1b with fair-esm's arithmetic, from each published layout."""
    weights = esm1b_fair_checkpoint if request.param == "fair-esm" else esm1b_hf_dir
    model = load_quietly(ESM1B, weights, numerics="reference")
    assert model.checkpoint_format == request.param
    return model


def test_the_tiny_file_stores_a_live_mask_row_that_fair_esm_zeroes(esm1b_fair_checkpoint, esm1b_fair_ref):
    # Else the logits parity below could not tell whether we zero it as fair-esm's loader does.
    stored = torch.load(esm1b_fair_checkpoint, weights_only=False)["model"]
    assert stored["encoder.sentence_encoder.embed_tokens.weight"][ALPHABET.mask_idx].abs().sum() > 0
    assert esm1b_fair_ref[0].embed_tokens.weight[ALPHABET.mask_idx].abs().sum() == 0


@pytest.mark.parametrize("pooling", ["per_residue", "bos", "mean", "max"])
def test_hidden_states_match_fair_esm(esm1b, esm1b_fair_ref, pooling):
    emb = esm1b.embed(SEQUENCES, layer=LAYERS, pooling=pooling)
    reps = fair_run(esm1b_fair_ref, SEQS, LAYERS)["representations"]
    for layer in LAYERS:
        for i, seq in enumerate(SEQS):
            full = reps[layer][i].numpy()
            residues = full[1 : len(seq) + 1]
            ref = {"per_residue": residues, "bos": full[0], "mean": residues.mean(0), "max": residues.max(0)}[pooling]
            assert np.shape(emb.by_layer[layer][i]) == ref.shape
            assert max_diff(emb.by_layer[layer][i], ref) <= PARITY_TOL


def test_hidden_states_and_logits_match_transformers(esm1b, esm1b_hf_ref, esm1b_fair_ref):
    _, out = hf_run(esm1b_hf_ref, esm1b_fair_ref[1], SEQS)
    emb = esm1b.embed(SEQS, layer=LAYERS, pooling="per_residue")
    logits = esm1b.logits(SEQS)
    for i, seq in enumerate(SEQS):
        n = len(seq)
        for layer in LAYERS:
            assert max_diff(emb.by_layer[layer][i], out.hidden_states[layer][i, 1 : n + 1].numpy()) <= PARITY_TOL
        assert max_diff(logits[i], out.logits[i, : n + 2].numpy()) <= PARITY_TOL


def test_logits_match_fair_esm(esm1b, esm1b_fair_ref):
    ref = fair_run(esm1b_fair_ref, SEQS)["logits"].numpy()
    for i, (ours, seq) in enumerate(zip(esm1b.logits(SEQS), SEQS)):
        assert ours.shape == (len(seq) + 2, 33)
        assert max_diff(ours, ref[i, : len(seq) + 2]) <= PARITY_TOL


def test_contacts_match_fair_esm_and_transformers(esm1b, esm1b_fair_ref, esm1b_hf_ref):
    ref = fair_run(esm1b_fair_ref, SEQS, contacts=True)["contacts"].numpy()
    tokens, _ = hf_run(esm1b_hf_ref, esm1b_fair_ref[1], SEQS)
    with torch.no_grad():
        hf = esm1b_hf_ref.predict_contacts(tokens, attention_mask=tokens.ne(1).long()).numpy()
    for i, (ours, seq) in enumerate(zip(esm1b.contacts(SEQS), SEQS)):
        n = len(seq)
        assert ours.shape == (n, n)
        assert max_diff(ours, ref[i, :n, :n]) <= PARITY_TOL
        assert max_diff(ours, hf[i, :n, :n]) <= PARITY_TOL


def test_pll_matches_fair_esm(esm1b, esm1b_fair_ref):
    seqs = {"mid": SEQUENCES["mid"], "short": SEQUENCES["short"], "one": SEQUENCES["one"]}
    scores = esm1b.score(seqs, method="pll", tokens_per_batch=100)
    assert scores.ids == list(seqs)
    assert max_diff(scores.scores, [fair_pll(esm1b_fair_ref, s) for s in seqs.values()]) <= PARITY_TOL


@pytest.mark.parametrize("method", ["masked_marginals", "wt_marginals"])
def test_marginals_match_fair_esm_predict(esm1b, esm1b_fair_ref, method):
    scores = esm1b.score(WT, method=method, mutations=MUTATIONS)
    assert scores.mutations == MUTATIONS
    ref = [fair_marginal(esm1b_fair_ref, WT, m, masked=method == "masked_marginals") for m in MUTATIONS]
    assert max_diff(scores.scores, ref) <= PARITY_TOL


def test_fast_numerics_stay_within_esm2s_measured_bounds(esm1b_fair_checkpoint, esm1b_fair_ref):
    fast = load_quietly(ESM1B, esm1b_fair_checkpoint)  # the default: fused attention kernels
    assert fast.numerics == "fast"
    ref = fair_run(esm1b_fair_ref, SEQS, [3], contacts=True)
    emb = fast.embed(SEQS, layer=3, pooling="per_residue").by_layer[3]
    for i, seq in enumerate(SEQS):
        n = len(seq)
        assert max_diff(emb[i], ref["representations"][3][i, 1 : n + 1].numpy()) <= 1e-3
        assert max_diff(fast.logits([seq])[0], ref["logits"][i, : n + 2].numpy()) <= 1e-4
        assert max_diff(fast.contacts([seq])[0], ref["contacts"][i, :n, :n].numpy()) <= 1e-5


def test_an_esm1v_member_without_regression_matches_fair_esm(ensemble_folder, ensemble_fair_refs):
    name = ESM1V_MEMBERS[2]
    model = load_quietly(name, ensemble_folder / f"{name}.pt", numerics="reference")
    assert not model.has_contacts and "contacts" not in model.verbs
    ref = ensemble_fair_refs[2]
    logits = model.logits(SEQS)
    full = fair_run(ref, SEQS)["logits"].numpy()
    for i, seq in enumerate(SEQS):
        assert max_diff(logits[i], full[i, : len(seq) + 2]) <= PARITY_TOL
    scores = model.score(WT, method="masked_marginals", mutations=MUTATIONS)
    assert max_diff(scores.scores, [fair_marginal(ref, WT, m, masked=True) for m in MUTATIONS]) <= PARITY_TOL
