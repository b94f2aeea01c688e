"""Input normalisation and validation shared by every front door."""

import pytest

from bionemo_lite import InvalidInputError, Record
from bionemo_lite.records import (
    apply_length_policy, as_records, check_protein, clean_protein, prepare_inputs, prepare_proteins,
)


def test_input_shapes_keep_order_and_ids():
    assert [r.id for r in as_records(["AAA", "CCC"])] == ["0", "1"]
    assert [r.id for r in as_records({"b": "AAA", "a": "CCC"})] == ["b", "a"]
    assert [(r.id, r.index) for r in as_records([("x", "AAA"), ("y", "C")])] == [("x", 0), ("y", 1)]
    assert as_records("MKV")[0] == Record("0", "MKV", 0)
    assert as_records([Record("p", "MK", 7)])[0].index == 0


def test_cleaning_strips_whitespace_and_uppercases():
    assert clean_protein(Record("a", " mk t\nay ")).sequence == "MKTAY"
    assert clean_protein(Record("a", "XBUZO")).sequence == "XBUZO"


@pytest.mark.parametrize(
    ("sequence", "position", "char"),
    [("MK-AY", 3, "-"), ("MKA.Y", 4, "."), ("M1K", 2, "1"), ("MKA*", 4, "*"), ("MKJ", 3, "J")],
)
def test_bad_residue_names_record_and_position(sequence, position, char):
    with pytest.raises(InvalidInputError) as err:
        clean_protein(Record("rec7", sequence))
    assert err.value.record == "rec7"
    assert err.value.position == position
    assert repr(char) in err.value.reason
    assert "rec7" in str(err.value) and f"position {position}" in str(err.value)


def test_empty_sequence_and_empty_input_rejected():
    with pytest.raises(InvalidInputError, match="empty sequence"):
        clean_protein(Record("e", "  \n"))
    with pytest.raises(InvalidInputError, match="no input records"):
        as_records([])


def test_duplicate_ids_rejected_by_name():
    with pytest.raises(InvalidInputError) as err:
        as_records([("p1", "AAA"), ("p2", "CC"), ("p1", "DD")])
    assert err.value.record == "p1"
    assert "duplicate" in err.value.reason


def test_unknown_input_type_rejected():
    with pytest.raises(InvalidInputError, match="cannot read"):
        as_records([42])


def test_length_policy_error_and_truncate():
    records = as_records({"short": "A" * 5, "long": "C" * 12})
    with pytest.raises(InvalidInputError) as err:
        apply_length_policy(records, 10, "error")
    assert err.value.record == "long" and "12 residues" in err.value.reason
    kept, truncated = apply_length_policy(records, 10, "truncate")
    assert [len(r.sequence) for r in kept] == [5, 10]
    assert truncated == ["long"]
    with pytest.raises(InvalidInputError, match="length policy"):
        apply_length_policy(records, 10, "crop")


def test_prepare_proteins_runs_all_checks_in_order():
    kept, truncated = prepare_proteins(["mkv", "A" * 30], max_length=20, on_too_long="truncate")
    assert kept[0].sequence == "MKV" and len(kept[1].sequence) == 20 and truncated == ["1"]


def test_non_iterable_input_is_an_invalid_input_error():
    with pytest.raises(InvalidInputError, match="cannot read an input of type int"):
        as_records(5)


def test_too_long_message_names_every_front_door():
    with pytest.raises(InvalidInputError) as err:
        apply_length_policy(as_records(["A" * 11]), 10, "error")
    assert "on_too_long='truncate'" in err.value.reason and "--truncate" in err.value.reason
    assert '"truncate": true' in err.value.reason


def test_check_protein_cleans_and_applies_the_length_policy_to_one_record():
    assert check_protein(Record("a", " mk v\n", 3), 5) == (Record("a", "MKV", 3), False)
    assert check_protein(Record("b", "mktayiak"), 5, "truncate") == (Record("b", "MKTAY"), True)
    with pytest.raises(InvalidInputError) as err:
        check_protein(Record("c", "mktayiak"), 5)
    assert err.value.record == "c" and "8 residues" in err.value.reason
    with pytest.raises(InvalidInputError) as err:
        check_protein(Record("d", "mkJ"), 5, "truncate")
    assert (err.value.record, err.value.position) == ("d", 3)


def test_prepare_inputs_follows_the_input_kind():
    records, cut = prepare_inputs({"a": "mk t", "b": "MKTAYIAK"}, "protein", 5, "truncate")
    assert [(r.id, r.sequence) for r in records] == [("a", "MKT"), ("b", "MKTAY")] and cut == ["b"]
    with pytest.raises(InvalidInputError, match="invalid residue") as err:
        prepare_inputs(["MKT", "MKJ"], "protein", 10)
    assert err.value.record == "1"
    # SMILES are only stripped: validity and token counts are the model's own (nothing is cut here)
    records, cut = prepare_inputs([" CCO ", "C1CC"], "smiles", 1)
    assert [r.sequence for r in records] == ["CCO", "C1CC"] and cut == []
    with pytest.raises(InvalidInputError, match="unknown input kind 'dna'"):
        prepare_inputs(["ACGT"], "dna", 10)
