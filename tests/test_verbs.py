"""The verb contract's own bookkeeping: every verb has a Protocol and typed options, built from plain keywords."""

import pytest

from bionemo_lite import InvalidInputError
from bionemo_lite.verbs import (
    VERB_OPTIONS,
    VERB_PROTOCOLS,
    ContactsOptions,
    EmbedOptions,
    FoldOptions,
    GenerateOptions,
    ScoreOptions,
    options_from_keywords,
)


def test_every_verb_has_a_protocol_and_options():
    assert set(VERB_OPTIONS) == set(VERB_PROTOCOLS) == {"embed", "contacts", "score", "generate", "fold", "decode", "predict"}


def test_options_from_keywords_name_fields_and_keep_the_family_s_own():
    assert options_from_keywords("score", {"method": "pll", "mutations": ["A1G"], "alpha": 1}) == ScoreOptions(
        "pll", mutations=["A1G"], extra={"alpha": 1})
    assert options_from_keywords("generate", {"seed": 1, "num_samples": 2}) == GenerateOptions(
        {"seed": 1, "num_samples": 2})
    assert options_from_keywords("fold", {"num_recycles": 2, "msa": "x"}) == FoldOptions(2, None, {"msa": "x"})
    assert options_from_keywords("embed", {"layers": [1, -1], "pooling": "max"}) == EmbedOptions((1, -1), "max")


def test_a_verb_without_family_options_refuses_unknown_keywords():
    assert options_from_keywords("contacts", {"on_too_long": "truncate"}) == ContactsOptions("truncate")
    with pytest.raises(InvalidInputError, match="unknown option.*'pooling'.*contacts"):
        options_from_keywords("contacts", {"pooling": "mean"})
