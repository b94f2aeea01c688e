"""ESM-2 verbs: batching invariance, length policy, bad input, generation, out-of-memory splitting."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import torch
from torch import nn

import bionemo_lite as bl
from bionemo_lite.errors import BionemoLiteError, CheckpointError, InvalidInputError
from esm2_fixtures import ESM2_NAME, PARITY_TOL, SEQUENCES, load_quietly, max_diff
from bionemo_lite.zoo.esm2.alphabet import ALPHABET, STANDARD_AMINO_ACIDS
from bionemo_lite.zoo.esm2.testing import write_fair_esm_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # every ESM-2 test module runs on one torch thread
STANDARD = set(STANDARD_AMINO_ACIDS)


def random_proteins(n: int, low: int, high: int, seed: int = 0) -> dict[str, str]:
    rng = random.Random(seed)
    return {f"p{i}": "".join(rng.choice(STANDARD_AMINO_ACIDS) for _ in range(rng.randint(low, high))) for i in range(n)}


# ------------------------------------------------------------------ batching


def test_batched_equals_one_by_one(fair_model):
    seqs = random_proteins(7, 1, 60, seed=1)
    batched = fair_model.embed(seqs, layer=[0, 2, -1], pooling="per_residue", tokens_per_batch=150)
    pooled = fair_model.embed(seqs, layer=[0, 2, -1], pooling="mean", tokens_per_batch=150)
    logits = fair_model.logits(seqs, tokens_per_batch=150)
    assert batched.ids == list(seqs) and batched.lengths == [len(s) for s in seqs.values()]
    for i, (rid, seq) in enumerate(seqs.items()):
        alone = fair_model.embed({rid: seq}, layer=[0, 2, -1], pooling="per_residue")
        for layer in alone.layers:
            assert max_diff(batched.by_layer[layer][i], alone.by_layer[layer][0]) <= PARITY_TOL
            assert max_diff(pooled.by_layer[layer][i], alone.by_layer[layer][0].mean(0)) <= PARITY_TOL
        assert max_diff(logits[i], fair_model.logits([seq])[0]) <= PARITY_TOL


def test_pll_is_independent_of_batching(fair_model):
    seqs = random_proteins(3, 2, 12, seed=2)
    small = fair_model.score(seqs, tokens_per_batch=20).scores
    large = fair_model.score(seqs, tokens_per_batch=4096).scores
    alone = [fair_model.score([s]).scores[0] for s in seqs.values()]
    assert max_diff(small, large) <= PARITY_TOL and max_diff(small, alone) <= PARITY_TOL


def test_padding_never_leaks_into_contacts(fair_model):
    seqs = [SEQUENCES["short"], SEQUENCES["long"], SEQUENCES["mid"]]
    together = fair_model.contacts(seqs)
    for seq, contact in zip(seqs, together):
        assert max_diff(contact, fair_model.contacts([seq])[0]) <= PARITY_TOL


class OutOfMemoryAbove(nn.Module):
    """Wraps the first layer; pretends the device ran out of memory for batches of more than `limit` rows."""

    def __init__(self, layer: nn.Module, limit: int):
        super().__init__()
        self.layer, self.limit, self.calls = layer, limit, []

    def forward(self, x, *args, **kwargs):
        self.calls.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return self.layer(x, *args, **kwargs)


def test_out_of_memory_batches_are_split_and_nothing_is_lost(esm2_fair_checkpoint):
    # The wrapper counts padded rows (layer.forward); the packed path's split: tests/test_packing.py.
    model = load_quietly(esm2_fair_checkpoint, packing=False)
    seqs = random_proteins(7, 3, 20, seed=3)
    expected_emb = model.embed(seqs, pooling="mean")
    expected_logits = model.logits(seqs)
    expected_pll = model.score(seqs, tokens_per_batch=4096)
    wrapper = OutOfMemoryAbove(model.network.layers[0], limit=2)
    model.network.layers[0] = wrapper

    emb = model.embed(seqs, pooling="mean")
    assert emb.ids == list(seqs) and not emb.errors
    assert max_diff(emb.embeddings, expected_emb.embeddings) <= PARITY_TOL
    assert max(wrapper.calls) == 7 and any(c <= 2 for c in wrapper.calls)  # it did fail, then split
    for got, want in zip(model.logits(seqs), expected_logits):
        assert max_diff(got, want) <= PARITY_TOL
    pll = model.score(seqs, tokens_per_batch=4096)
    assert pll.ids == expected_pll.ids and max_diff(pll.scores, expected_pll.scores) <= PARITY_TOL
    seed = {"s": "MK<mask>AY<mask>"}
    generated = model.generate(seed, num_samples=5, seed=4).records[0].generated
    model.network.layers[0] = wrapper.layer
    assert generated == model.generate(seed, num_samples=5, seed=4).records[0].generated


def test_a_record_that_never_fits_is_reported_not_dropped(esm2_fair_checkpoint):
    model = load_quietly(esm2_fair_checkpoint, packing=False)  # padded rows, as above
    model.network.layers[0] = OutOfMemoryAbove(model.network.layers[0], limit=0)
    emb = model.embed({"a": "MKT", "b": "AAAA"})
    assert emb.ids == [] and [e.id for e in emb.errors] == ["a", "b"]
    assert "out of memory" in emb.errors[0].reason
    with pytest.raises(BionemoLiteError, match="out of memory"):
        model.logits(["MKT"])


# ------------------------------------------------------------------ length policy


def test_length_policy_error_and_truncate(fair_model):
    long = random_proteins(1, 1030, 1030, seed=5)["p0"]
    with pytest.raises(InvalidInputError) as err:
        fair_model.embed({"ok": "MKT", "too_long": long})
    assert err.value.record == "too_long" and "1030" in str(err.value) and "1022" in str(err.value)
    emb = fair_model.embed({"ok": "MKT", "too_long": long}, on_too_long="truncate", pooling="per_residue")
    assert emb.truncated == ["too_long"] and emb.lengths == [3, 1022]
    cut = fair_model.embed({"cut": long[:1022]}, pooling="per_residue")
    assert max_diff(emb.by_layer[3][1], cut.by_layer[3][0]) <= PARITY_TOL
    logits = fair_model.logits([long], on_too_long="truncate")
    assert logits[0].shape == (1024, 33)
    with pytest.raises(InvalidInputError):
        fair_model.logits([long])


def test_truncated_ids_reported_by_score(fair_model):
    from dataclasses import replace

    from bionemo_lite.zoo.esm2.loading import ArchitectureWarning, load_esm2

    small = replace(fair_model.spec, max_length=8)  # a spec copy with a short limit keeps PLL cheap
    with pytest.warns(ArchitectureWarning):
        model = load_esm2(small, fair_model.checkpoint_path)
    scores = model.score({"a": "MKTAYIAKQRQ", "b": "MKT"}, on_too_long="truncate")
    assert scores.truncated == ["a"]
    assert scores.scores[0] == pytest.approx(fair_model.score(["MKTAYIAK"]).scores[0], abs=PARITY_TOL)
    with pytest.raises(InvalidInputError, match="more than the model's maximum of 8"):
        model.score({"a": "MKTAYIAKQRQ"})


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "sequence, position, fragment",
    [
        ("MKTJAY", 4, "'J'"),
        ("MKT-AY", 4, "gaps are not allowed"),
        ("MK.AY", 3, "gaps are not allowed"),
        ("MK7AY", 3, "'7'"),
        ("MKTAY*", 6, "'*'"),
        ("MK<mask>AY", 3, "'<'"),  # masks are for generate only
    ],
)
def test_bad_residue_names_record_and_position(fair_model, sequence, position, fragment):
    with pytest.raises(InvalidInputError) as err:
        fair_model.embed({"good": "MKT", "bad": sequence})
    assert err.value.record == "bad" and err.value.position == position and fragment in str(err.value)


def test_lowercase_and_whitespace_are_normalised(fair_model):
    a = fair_model.embed(["mkt ay\nik"]).embeddings
    b = fair_model.embed(["MKTAYIK"]).embeddings
    assert max_diff(a, b) == 0.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m.embed({"e": ""}), "empty sequence"),
        (lambda m: m.embed([("x", "MKT"), ("x", "AAA")]), "duplicate record id"),
        (lambda m: m.embed([]), "no input records"),
        (lambda m: m.embed("MKT", layer=4), "layer 4 does not exist"),
        (lambda m: m.embed("MKT", layer=-5), "layer -5 does not exist"),
        (lambda m: m.embed("MKT", pooling="maximum"), "pooling must be one of"),
        (lambda m: m.embed("MKT", on_too_long="crop"), "length policy"),
        (lambda m: m.embed("MKT", tokens_per_batch=0), "tokens_per_batch"),
        (lambda m: m.logits("MKT", tokens_per_batch=-3), "tokens_per_batch"),
        (lambda m: m.score("MKT", method="ppl"), "method must be one of"),
        (lambda m: m.score("MKT", mutations=["M1A"]), "only used by"),
        (lambda m: m.score(["MKT", "AAA"], method="masked_marginals", mutations=["M1A"]), "one wild-type"),
        (lambda m: m.score("MKT", method="wt_marginals"), "needs mutations"),
        (lambda m: m.score("MKT", method="wt_marginals", mutations=[]), "no mutations"),
    ],
)
def test_bad_arguments_are_input_errors(fair_model, call, match):
    with pytest.raises(InvalidInputError, match=match):
        call(fair_model)


@pytest.mark.parametrize(
    "mutation, fragment, position",
    [
        ("A2G", "is 'K', not 'A'", 2),
        ("M0A", "outside the wild-type sequence", 0),
        ("M11A", "outside the wild-type sequence", 11),
        ("M1", "malformed mutation", None),
        ("1A", "malformed mutation", None),
        ("MA1", "malformed mutation", None),
        ("M1A:", "malformed mutation", None),
        ("M1A;K2A", "malformed mutation", None),
        ("M1J", "'J' is not an amino-acid letter", 1),
        ("M1A:M1G", "mutated twice", 1),
    ],
)
@pytest.mark.parametrize("method", ["masked_marginals", "wt_marginals"])
def test_bad_mutation_names_the_mutation(fair_model, method, mutation, fragment, position):
    with pytest.raises(InvalidInputError) as err:
        fair_model.score("MKTAYIAKQR", method=method, mutations=["K2A", mutation])
    assert err.value.record == mutation and err.value.position == position and fragment in str(err.value)


def test_duplicate_mutation_rejected(fair_model):
    with pytest.raises(InvalidInputError, match="duplicate mutation"):
        fair_model.score("MKTAYIAKQR", method="wt_marginals", mutations=["K2A", "K2A"])


@pytest.mark.parametrize("method", ["masked_marginals", "wt_marginals"])
def test_mutation_case_is_normalised(fair_model, method):
    upper = fair_model.score("MKTAYIAKQR", method=method, mutations=["K2A", "T3S:A4G"])
    lower = fair_model.score("MKTAYIAKQR", method=method, mutations=["k2a", " t3s : a4g"])
    assert lower.ids == lower.mutations == upper.mutations == ["K2A", "T3S:A4G"]
    assert max_diff(lower.scores, upper.scores) == 0.0
    with pytest.raises(InvalidInputError) as err:
        fair_model.score("MKTAYIAKQR", method=method, mutations=["K2A", "k2a"])
    assert err.value.record == "k2a" and "duplicate mutation (same as 'K2A'" in err.value.reason


def _short_model(fair_model, max_length: int):
    """The session model's weights under a spec with a short length limit (keeps truncation cases cheap)."""
    from dataclasses import replace

    from bionemo_lite.zoo.esm2.loading import ArchitectureWarning, load_esm2

    with pytest.warns(ArchitectureWarning):
        return load_esm2(replace(fair_model.spec, max_length=max_length), fair_model.checkpoint_path)


@pytest.mark.parametrize("method", ["masked_marginals", "wt_marginals"])
def test_mutations_past_a_truncation_are_named(fair_model, method):
    model = _short_model(fair_model, 8)
    scores = model.score({"wt": "MKTAYIAKQR"}, method=method, mutations=["K2A"], on_too_long="truncate")
    assert scores.truncated == ["wt"]
    cut = fair_model.score({"wt": "MKTAYIAK"}, method=method, mutations=["K2A"])
    assert max_diff(scores.scores, cut.scores) <= PARITY_TOL
    with pytest.raises(InvalidInputError) as err:
        model.score({"wt": "MKTAYIAKQR"}, method=method, mutations=["K2A", "Q9A"], on_too_long="truncate")
    assert (err.value.record, err.value.position) == ("Q9A", 9)
    assert "past the first 8 residues, where the wild type was truncated" in err.value.reason


@pytest.mark.parametrize("budget", [0, -3, 2.5, True])
@pytest.mark.parametrize(
    "call",
    [
        lambda m, t: m.embed("MKT", tokens_per_batch=t),
        lambda m, t: m.logits("MKT", tokens_per_batch=t),
        lambda m, t: m.contacts("MKT", tokens_per_batch=t),
        lambda m, t: m.score("MKT", tokens_per_batch=t),
        lambda m, t: m.score("MKT", method="wt_marginals", mutations=["K2A"], tokens_per_batch=t),
        lambda m, t: m.generate("MK<mask>", tokens_per_batch=t, seed=0),
    ],
    ids=["embed", "logits", "contacts", "pll", "marginals", "generate"],
)
def test_tokens_per_batch_has_one_check_and_one_message(fair_model, call, budget):
    with pytest.raises(InvalidInputError, match="tokens_per_batch must be a positive number of tokens"):
        call(fair_model, budget)


def test_contacts_without_regression_weights(tmp_path):
    path = write_fair_esm_checkpoint(tmp_path, ESM2_NAME, with_regression=False)
    model = load_quietly(path)
    assert not model.has_contacts
    with pytest.raises(CheckpointError, match="contact-regression"):
        model.contacts(["MKT"])
    assert model.logits(["MKT"])[0].shape == (5, 33)  # everything else still works


# ------------------------------------------------------------------ generate


def test_generate_is_seeded_and_fills_every_mask(fair_model):
    seeds = {"a": "MK<mask>AY<mask><mask>KQR", "b": "<MASK>acd<mask>"}
    first = fair_model.generate(seeds, num_samples=4, seed=7, temperature=1.5)
    again = fair_model.generate(seeds, num_samples=4, seed=7, temperature=1.5, tokens_per_batch=24)
    other = fair_model.generate(seeds, num_samples=4, seed=8, temperature=1.5)
    assert [r.generated for r in first.records] == [r.generated for r in again.records]
    assert [r.generated for r in first.records] != [r.generated for r in other.records]
    for rec, template in zip(first.records, ["MK.AY..KQR", ".ACD."]):
        assert rec.seed == seeds[rec.id] and rec.stats["masked"] == template.count(".")
        assert len(rec.generated) == 4 and len(rec.scores) == 4
        for seq in rec.generated:
            assert len(seq) == len(template)
            assert all(c == t if t != "." else c in STANDARD for c, t in zip(seq, template))
        # scores are the PLL of each generated sequence
        assert max_diff(rec.scores, fair_model.score(rec.generated).scores) <= PARITY_TOL


def test_generate_order_and_top_k(fair_model, fair_ref):
    greedy = fair_model.generate("MKT<mask>AYIAK", num_samples=3, top_k=1, order="left_to_right", seed=1)
    assert len(set(greedy.records[0].generated)) == 1  # top_k=1 is deterministic whatever the stream
    model, alphabet = fair_ref
    tokens = alphabet.get_batch_converter()([("s", "MKTAAYIAK")])[2]
    tokens[0, 4] = alphabet.mask_idx
    with torch.no_grad():
        logits = model(tokens)["logits"][0, 4]
    best = max(STANDARD_AMINO_ACIDS, key=lambda c: float(logits[alphabet.get_idx(c)]))
    assert greedy.records[0].generated[0] == f"MKT{best}AYIAK"
    random_order = fair_model.generate("<mask>" * 6, num_samples=2, seed=3)
    assert all(len(s) == 6 and set(s) <= STANDARD for s in random_order.records[0].generated)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"inputs": "MKTAY"}, "nothing to generate"),
        ({"inputs": "MK<mask>J"}, "invalid residue 'J'"),
        ({"inputs": "MK<mask", "num_samples": 1}, "invalid residue '<'"),
        ({"inputs": "MK<mask>", "num_samples": 0}, "num_samples"),
        ({"inputs": "MK<mask>", "temperature": 0}, "temperature"),
        ({"inputs": "MK<mask>", "top_k": 0}, "top_k"),
        ({"inputs": "MK<mask>", "order": "sideways"}, "order must be one of"),
        ({"inputs": "MK<mask>", "seed": -1}, "seed"),
    ],
)
def test_generate_rejects_bad_input(fair_model, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        fair_model.generate(**kwargs)


TEMPERATURES = "temperature must be a finite number in [0.001, 100.0]"
BAD_SAMPLING = [
    ({"temperature": 1e-40}, f"{TEMPERATURES}, got 1e-40"),  # logits / 1e-40 overflowed to inf, then NaN
    ({"temperature": 1e-4}, f"{TEMPERATURES}, got 0.0001"),
    ({"temperature": 0}, f"{TEMPERATURES}, got 0.0"),
    ({"temperature": -1.0}, f"{TEMPERATURES}, got -1.0"),
    ({"temperature": float("inf")}, f"{TEMPERATURES}, got inf"),
    ({"temperature": float("nan")}, f"{TEMPERATURES}, got nan"),
    ({"temperature": 1e3}, f"{TEMPERATURES}, got 1000.0"),
    ({"temperature": "hot"}, f"{TEMPERATURES}, got 'hot'"),
    ({"temperature": True}, f"{TEMPERATURES}, got True"),
    ({"top_k": 21}, "top_k must be an integer in 1..20, got 21"),
    ({"top_k": 2.5}, "top_k must be an integer in 1..20, got 2.5"),
    ({"top_k": True}, "top_k must be an integer in 1..20, got True"),
    ({"num_samples": 1001}, "num_samples must be an integer in 1..1000, got 1001"),
    ({"num_samples": 2.0}, "num_samples must be an integer in 1..1000, got 2.0"),
    ({"num_samples": "3"}, "num_samples must be an integer in 1..1000, got '3'"),
    ({"seed": True}, "seed must be an integer >= 0, got True"),
    ({"seed": 1.5}, "seed must be an integer >= 0, got 1.5"),
    ({"tokens_per_batch": 0}, "tokens_per_batch must be a positive number of tokens, got 0"),
]


@pytest.mark.parametrize("options, message", BAD_SAMPLING, ids=[m for _, m in BAD_SAMPLING])
def test_generate_sampling_options_are_checked_before_any_work(fair_model, options, message):
    # The seed has a bad residue: an option error proves the options were checked first.
    with pytest.raises(InvalidInputError, match=re.escape(message)) as err:
        fair_model.generate("MK<mask>J", **options)
    assert err.value.record is None


def test_lowest_temperature_samples_the_most_likely_residue(fair_model, fair_ref):
    """At the floor (0.001) sampling is greedy wherever the top two residues differ by 0.1 nats or more."""
    seed = "MKT<mask>AYIAK"
    model, alphabet = fair_ref
    tokens = alphabet.get_batch_converter()([("s", "MKTAAYIAK")])[2]
    tokens[0, 4] = alphabet.mask_idx
    with torch.no_grad():
        logits = model(tokens)["logits"][0, 4]
    top = sorted((float(logits[alphabet.get_idx(c)]) for c in STANDARD_AMINO_ACIDS), reverse=True)
    assert top[0] - top[1] > 0.1  # precondition on these random weights
    greedy = fair_model.generate(seed, num_samples=1, top_k=1, seed=0).records[0].generated
    coldest = fair_model.generate(seed, num_samples=8, temperature=1e-3, seed=0).records[0].generated
    assert coldest == greedy * 8


def test_generate_error_position_counts_mask_as_one_residue(fair_model):
    with pytest.raises(InvalidInputError) as err:
        fair_model.generate({"s": "M<mask>K9"})
    assert err.value.record == "s" and err.value.position == 4


def test_seeds_are_cleaned_like_every_protein_input(fair_model):
    from bionemo_lite.records import WHITESPACE
    from bionemo_lite.zoo.esm2 import generation

    assert generation.WHITESPACE is WHITESPACE  # one definition of what is stripped, in the core
    spaced = fair_model.generate({"s": " m k\t<mask>\nay "}, seed=3).records[0].generated
    assert spaced == fair_model.generate({"s": "MK<mask>AY"}, seed=3).records[0].generated
    with pytest.raises(InvalidInputError, match="more than the model's maximum of 1022"):
        fair_model.generate({"long": "M" * 1022 + "<mask>"})


# ------------------------------------------------------------------ tokens for export


def test_model_has_the_verb_protocols(fair_model):
    assert isinstance(fair_model, bl.Embedder) and isinstance(fair_model, bl.Scorer)
    assert isinstance(fair_model, bl.Generator) and set(fair_model.verbs) == {"embed", "score", "generate", "contacts"}


def test_tokenize_layout(fair_model, fair_ref):
    seqs = ["MKT", "ACDEFGHIKLMNPQRSTVWYXBUZO", "W"]
    tokens = fair_model.tokenize(seqs)
    assert tokens.dtype == torch.long
    assert torch.equal(tokens, fair_ref[1].get_batch_converter()([(str(i), s) for i, s in enumerate(seqs)])[2])
    assert tokens[2].tolist()[:4] == [ALPHABET.cls_idx, ALPHABET.get_idx("W"), ALPHABET.eos_idx, ALPHABET.pad_idx]
    assert ALPHABET.mask_idx == 32 and ALPHABET.decode(ALPHABET.encode("MK<mask>")) == "MK<mask>"
    out = fair_model.network(tokens, repr_layers=[0, 3])
    assert out.logits.shape == (3, 27, 33) and out.last_hidden_state.shape == (3, 27, 48)
    assert torch.equal(out.hidden_states[1], out.last_hidden_state) and np.isfinite(out.logits.detach().numpy()).all()
