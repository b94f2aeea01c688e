"""Layer and option checks of the shared embed flow."""

import pytest

from bionemo_lite import InvalidInputError
from bionemo_lite.encoding import check_pooling, resolve_layers
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
        check_pooling("max")
    with pytest.raises(InvalidInputError, match="unknown dtype 'int8'"):
        resolve_dtype("int8", "cpu")
