"""`bionemo_lite.merging`: several embed requests as one call, split back per request (the helper the
HTTP batcher and Triton's model.py share), on the toy plugin's real embed."""

from __future__ import annotations

import numpy as np
import pytest

import bionemo_lite
from bionemo_lite.errors import InvalidInputError
from bionemo_lite.merging import merge_records, run_merged, split_embeddings
from bionemo_lite.records import Record
from server_fixtures import register_toys, write_toy_weights


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    register_toys()
    return bionemo_lite.load("toy_encoder", weights=write_toy_weights(tmp_path_factory.mktemp("toy") / "toy.npz"))


def requests_of(*groups: dict[str, str]) -> list[list[Record]]:
    return [[Record(rid, seq, i) for i, (rid, seq) in enumerate(group.items())] for group in groups]


def test_colliding_ids_are_split_back_to_their_requests(toy):
    requests = requests_of({"0": "MKTAYIAKQR", "a": "GSH"}, {"0": "MKTAY" * 10}, {"0": "MA"})
    merged = merge_records(requests)
    assert [r.id for r in merged] == ["0/0", "0/a", "1/0", "2/0"] and [r.index for r in merged] == [0, 1, 2, 3]

    def embed(records):
        return toy.embed(records, [0, -1], "per_residue", on_too_long="truncate")

    outcomes, calls = run_merged(embed, requests)
    assert calls == 1
    for records, outcome in zip(requests, outcomes):
        alone = embed(records)
        assert outcome.ids == alone.ids == [r.id for r in records]
        assert outcome.lengths == alone.lengths and outcome.truncated == alone.truncated
        assert outcome.layers == alone.layers
        for layer in alone.layers:
            for got, want in zip(outcome.by_layer[layer], alone.by_layer[layer]):
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert outcomes[1].truncated == ["0"] and outcomes[0].truncated == []


def test_pooled_arrays_split_by_row(toy):
    requests = requests_of({"x": "MKT", "y": "GSHMLE"}, {"x": "ACDE"})
    result = toy.embed(merge_records(requests), pooling="mean")
    parts = split_embeddings(result, requests)
    assert [p.ids for p in parts] == [["x", "y"], ["x"]]
    np.testing.assert_array_equal(parts[1].embeddings, result.embeddings[2:])


def test_a_refused_record_fails_only_its_own_request(toy):
    requests = requests_of({"0": "MKTAYIAKQR"}, {"0": "MK", "bad": "MKT*A"}, {"0": "GSHMLE"})
    with pytest.raises(InvalidInputError):
        toy.embed(merge_records(requests))
    outcomes, calls = run_merged(toy.embed, requests)
    assert calls == 3
    assert isinstance(outcomes[1], InvalidInputError) and outcomes[1].record == "bad"
    for n in (0, 2):
        np.testing.assert_array_equal(outcomes[n].embeddings, toy.embed(requests[n]).embeddings)


def test_other_failures_of_the_merged_call_propagate():
    def crash(records):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        run_merged(crash, requests_of({"a": "MK"}, {"b": "MKT"}))
