"""The core mutation parser (`bionemo_lite.mutations`) that ESM-2, the batch jobs and the HTTP service share.

Front-door tests (test_esm2_verbs.py, test_jobs.py, test_cli_esm2.py,
test_server_esm2.py) check that each of them reports these same messages.
"""

from __future__ import annotations

import pytest

from bionemo_lite.errors import InvalidInputError
from bionemo_lite.mutations import Mutation, Substitution, normalize_mutation, parse_mutation, parse_mutations

WILD_TYPE = "MKTAYIAKQR"


def test_single_and_multi_site_mutations():
    assert parse_mutations(["K2A", "T3S:A4G"], WILD_TYPE) == [
        Mutation("K2A", (Substitution("K", 2, "A"),)),
        Mutation("T3S:A4G", (Substitution("T", 3, "S"), Substitution("A", 4, "G"))),
    ]
    assert parse_mutations("M1W", WILD_TYPE) == [Mutation("M1W", (Substitution("M", 1, "W"),))]


def test_case_and_spaces_are_normalised():
    assert normalize_mutation(" t3s : a4g ") == "T3S:A4G"
    parsed = parse_mutation("k2a", WILD_TYPE)
    assert parsed == parse_mutation("K2A", WILD_TYPE) and parsed.text == "K2A"


@pytest.mark.parametrize(
    "mutation, fragment, position",
    [
        ("A2G", "the wild-type residue at position 2 is 'K', not 'A'", 2),
        ("M0A", "position 0 is outside the wild-type sequence (1..10)", 0),
        ("M11A", "position 11 is outside the wild-type sequence (1..10)", 11),
        ("M1", "malformed mutation 'M1'", None),
        ("1A", "malformed mutation '1A'", None),
        ("MA1", "malformed mutation 'MA1'", None),
        ("M1A:", "malformed mutation ''", None),
        ("M1A;K2A", "malformed mutation 'M1A;K2A'", None),
        ("M-1A", "malformed mutation 'M-1A'", None),
        ("M1J", "'J' is not an amino-acid letter", 1),
        ("M1A:m1g", "position 1 is mutated twice", 1),
    ],
)
def test_bad_mutations_name_the_mutation_as_written(mutation, fragment, position):
    with pytest.raises(InvalidInputError) as err:
        parse_mutations(["K2A", mutation], WILD_TYPE)
    assert (err.value.record, err.value.position) == (mutation, position)
    assert fragment in err.value.reason


def test_the_same_mutation_in_another_case_is_a_duplicate():
    with pytest.raises(InvalidInputError) as err:
        parse_mutations(["K2A", "T3S", "k2a"], WILD_TYPE)
    assert err.value.record == "k2a" and "duplicate mutation (same as 'K2A'" in err.value.reason


def test_a_position_past_a_truncation_has_its_own_message():
    kept = WILD_TYPE[:6]
    assert parse_mutation("I6V", kept, truncated=True).substitutions == (Substitution("I", 6, "V"),)
    with pytest.raises(InvalidInputError) as err:
        parse_mutation("A8G", kept, truncated=True)
    assert (err.value.record, err.value.position) == ("A8G", 8)
    assert "past the first 6 residues, where the wild type was truncated" in err.value.reason
    with pytest.raises(InvalidInputError, match="outside the wild-type sequence"):
        parse_mutation("A8G", kept)  # not truncated: simply outside


@pytest.mark.parametrize(
    "mutations, fragment", [(None, "needs mutations"), ([], "no mutations"), ([42], "must be a string")]
)
def test_missing_or_non_string_mutations(mutations, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        parse_mutations(mutations, WILD_TYPE)
