"""One chain splitter and one chain-id scheme for every folding model and door."""

import pytest

from bionemo_lite import InvalidInputError
from bionemo_lite.chains import MAX_CHAINS, chain_ids, clean_chains, split_chains
from bionemo_lite.records import Record


def test_chains_are_named_as_in_pdb_files():
    ids = chain_ids(MAX_CHAINS)
    assert MAX_CHAINS == 62 and ids[:3] == ["A", "B", "C"] and ids[26] == "a" and ids[-1] == "9"
    assert split_chains("MKT:GSH", "r") == [("A", "MKT"), ("B", "GSH")]
    assert split_chains(["MKT", "gs h"], "r") == [("A", "MKT"), ("B", "gs h")]
    assert split_chains(Record("r", "MKT"), "r") == [("A", "MKT")]


def test_past_62_chains_is_an_error_naming_the_record():
    with pytest.raises(InvalidInputError, match="63 chains were given; at most 62") as err:
        split_chains(":".join(["G"] * 63), "cplx")
    assert err.value.record == "cplx"


def test_clean_chains_names_the_chain_and_the_position():
    assert clean_chains("mkt:g s h", "r") == [("A", "MKT"), ("B", "GSH")]
    with pytest.raises(InvalidInputError, match="chain B: invalid residue 'J'") as err:
        clean_chains("MKT:GJ", "r")
    assert (err.value.record, err.value.position) == ("r", 2)
    with pytest.raises(InvalidInputError, match=r"chain C: empty chain \(two ':' in a row"):
        clean_chains("MKT:G::", "r")
    with pytest.raises(InvalidInputError, match="position 2: invalid residue 'J'"):  # one chain: no chain to name
        clean_chains("GJ", "r")
    with pytest.raises(InvalidInputError, match="no protein chain"):
        clean_chains([], "r")
    with pytest.raises(InvalidInputError, match="cannot read chains from a int"):
        clean_chains(42, "r")
