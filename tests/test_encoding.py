"""Layer and option checks of the shared embed flow."""

import pytest

from bionemo_lite import InvalidInputError
from bionemo_lite.encoding import resolve_layers
from bionemo_lite.pooling import get_pooling
from bionemo_lite.weights import resolve_dtype


def test_layers_resolve_negative_and_dedupe():
    assert resolve_layers(-1, 6) == (6,)
    assert resolve_layers([0, -1, 6, 3], 6) == (0, 6, 3)


@pytest.mark.parametrize("layer", [7, -8, "last", 1.5, True, [1, "2"], []])
def test_bad_layers_are_invalid_input(layer):
    with pytest.raises(InvalidInputError):
        resolve_layers(layer, 6)


def test_bad_pooling_and_dtype_are_invalid_input():
    with pytest.raises(InvalidInputError, match="mean, bos, per_residue"):
        get_pooling("maximum")
    with pytest.raises(InvalidInputError, match="unknown dtype 'int8'"):
        resolve_dtype("int8", "cpu")


@pytest.mark.parametrize("budget", [0, -5, "4", 2.5, True])
def test_bad_token_budget_is_invalid_input(budget):
    from bionemo_lite.encoding import embed_records

    def never_called(records, layers, pooling):
        raise AssertionError("the model must not run")

    with pytest.raises(InvalidInputError, match="tokens_per_batch"):
        embed_records("m", ["MKV"], never_called, num_layers=2, max_length=10, tokens_per_batch=budget)
