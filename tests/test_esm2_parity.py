"""Our ESM-2 against fair-esm and transformers on the same random weights (fp32, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esm2_fixtures import *  # noqa: F403  (fixtures and reference helpers)
from esm2_fixtures import PARITY_TOL, SEQUENCES, fair_marginal, fair_pll, fair_run, hf_run, load_quietly, max_diff

SEQS = list(SEQUENCES.values())


@pytest.mark.parametrize("layers", [[-1], [0, 1, 2, 3], [-2, -4, 1]])
@pytest.mark.parametrize("pooling", ["mean", "bos", "per_residue"])
def test_embeddings_match_fair_esm(fair_model, fair_ref, layers, pooling):
    emb = fair_model.embed(SEQUENCES, layer=layers, pooling=pooling)
    absolute = [layer % 4 for layer in layers]  # 3 layers: -1 -> 3, -4 -> 0
    assert list(emb.layers) == absolute
    assert emb.ids == list(SEQUENCES)
    reps = fair_run(fair_ref, SEQS, absolute)["representations"]
    for layer in absolute:
        ours = emb.by_layer[layer]
        for i, seq in enumerate(SEQS):
            full = reps[layer][i].numpy()
            ref = {
                "mean": full[1 : len(seq) + 1].mean(0),  # fair-esm extract.py's mean: residues only
                "bos": full[0],
                "per_residue": full[1 : len(seq) + 1],
            }[pooling]
            assert np.shape(ours[i]) == ref.shape
            assert max_diff(ours[i], ref) <= PARITY_TOL


def test_hidden_states_and_logits_match_transformers(fair_model, hf_ref, fair_ref):
    tokens, out = hf_run(hf_ref, fair_ref[1], SEQS)
    emb = fair_model.embed(SEQS, layer=[0, 1, 2, 3], pooling="per_residue")
    logits = fair_model.logits(SEQS)
    for i, seq in enumerate(SEQS):
        n = len(seq)
        for layer in range(4):
            ref = out.hidden_states[layer][i, 1 : n + 1].numpy()
            assert max_diff(emb.by_layer[layer][i], ref) <= PARITY_TOL
        assert max_diff(logits[i], out.logits[i, : n + 2].numpy()) <= PARITY_TOL


def test_logits_match_fair_esm(fair_model, fair_ref):
    ref = fair_run(fair_ref, SEQS)["logits"].numpy()
    logits = fair_model.logits(SEQS)
    for i, seq in enumerate(SEQS):
        assert logits[i].shape == (len(seq) + 2, 33)
        assert max_diff(logits[i], ref[i, : len(seq) + 2]) <= PARITY_TOL


def test_contacts_match_fair_esm_and_transformers(fair_model, fair_ref, hf_ref):
    ref = fair_run(fair_ref, SEQS, contacts=True)["contacts"].numpy()
    tokens, _ = hf_run(hf_ref, fair_ref[1], SEQS)
    with torch.no_grad():
        hf = hf_ref.predict_contacts(tokens, attention_mask=tokens.ne(1).long()).numpy()
    contacts = fair_model.contacts(SEQS)
    for i, seq in enumerate(SEQS):
        n = len(seq)
        assert contacts[i].shape == (n, n)
        assert max_diff(contacts[i], ref[i, :n, :n]) <= PARITY_TOL
        assert max_diff(contacts[i], hf[i, :n, :n]) <= PARITY_TOL


def test_pll_matches_fair_esm_masking_each_position(fair_model, fair_ref):
    seqs = {"mid": SEQUENCES["mid"], "short": SEQUENCES["short"], "one": SEQUENCES["one"]}
    scores = fair_model.score(seqs, method="pll", tokens_per_batch=100)
    assert scores.ids == list(seqs) and scores.method == "pll"
    ref = [fair_pll(fair_ref, s) for s in seqs.values()]
    assert max_diff(scores.scores, ref) <= PARITY_TOL


@pytest.mark.parametrize("method, masked", [("masked_marginals", True), ("wt_marginals", False)])
def test_marginals_match_fair_esm_predict_py(fair_model, fair_ref, method, masked):
    wt = SEQUENCES["mid"]
    mutations = ["M1A", "K2W", "T3T", "A4G:Y5F", "Q33P", "K2A:Q33E:I6L"]
    scores = fair_model.score({"wt": wt}, method=method, mutations=mutations)
    assert scores.ids == mutations and scores.mutations == mutations
    ref = [fair_marginal(fair_ref, wt, m, masked) for m in mutations]
    assert max_diff(scores.scores, ref) <= PARITY_TOL
    assert scores.scores[2] == 0.0  # a synonymous substitution scores exactly zero
    assert not np.allclose(ref[0], fair_marginal(fair_ref, wt, "M1A", not masked))  # the two methods differ


def test_both_checkpoint_formats_give_the_same_model(fair_model, hf_model):
    assert fair_model.checkpoint_format == "fair-esm" and hf_model.checkpoint_format == "huggingface"
    assert fair_model.config == hf_model.config
    a = fair_model.embed(SEQS, layer=[0, 2, -1], pooling="per_residue")
    b = hf_model.embed(SEQS, layer=[0, 2, -1], pooling="per_residue")
    for layer in a.layers:
        for x, y in zip(a.by_layer[layer], b.by_layer[layer]):
            assert max_diff(x, y) <= PARITY_TOL
    for x, y in zip(fair_model.logits(SEQS), hf_model.logits(SEQS)):
        assert max_diff(x, y) <= PARITY_TOL
    for x, y in zip(fair_model.contacts(SEQS), hf_model.contacts(SEQS)):
        assert max_diff(x, y) <= PARITY_TOL


def test_fast_numerics_agree_within_rounding(esm2_fair_checkpoint, fair_ref):
    """The fused-kernel path (the GPU default) sums in another order: a few fp32 ulps per layer."""
    fast = load_quietly(esm2_fair_checkpoint, numerics="fast")
    assert fast.network.numerics == "fast"
    ref = fair_run(fair_ref, SEQS, [1, 2, 3])
    emb = fast.embed(SEQS, layer=[1, 2, 3], pooling="per_residue")
    logits = fast.logits(SEQS)
    for i, seq in enumerate(SEQS):
        reps = ref["representations"]
        pairs = [(emb.by_layer[layer][i], reps[layer][i, 1 : len(seq) + 1].numpy()) for layer in (1, 2, 3)]
        pairs.append((logits[i], ref["logits"][i, : len(seq) + 2].numpy()))
        for ours, theirs in pairs:
            # relative to the largest value: fp32 epsilon is 1.2e-7, so this allows ~30 ulps
            assert max_diff(ours, theirs) <= 4e-6 * float(np.abs(theirs).max())
