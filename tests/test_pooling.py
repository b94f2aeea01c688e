"""The pooling registry: one object per pooling, torch and numpy giving the same arrays."""

import numpy as np
import pytest
import torch

from bionemo_lite import InvalidInputError
from bionemo_lite.pooling import POOLINGS, get_pooling, is_per_position
from bionemo_lite.spec import ModelSpec

RNG = np.random.default_rng(0)
HIDDEN = RNG.normal(size=(2, 6, 4)).astype(np.float32)
MASK = np.array([[0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 0]], dtype=bool)  # BOS at 0, residues, EOS/padding


@pytest.mark.parametrize("name", sorted(POOLINGS))
def test_torch_and_numpy_pool_the_same(name):
    pooling = POOLINGS[name]
    from_torch = pooling.torch(torch.from_numpy(HIDDEN), torch.from_numpy(MASK), bos_index=0)
    from_numpy = pooling.numpy(HIDDEN, MASK, bos_index=0)
    for a, b in zip(from_torch, from_numpy, strict=True):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
        assert a.ndim == (2 if pooling.per_position else 1)


def test_mean_excludes_specials_and_padding_and_rows_are_the_residues():
    np.testing.assert_allclose(POOLINGS["mean"].numpy(HIDDEN, MASK)[1], HIDDEN[1, 1:5].mean(0), atol=1e-6)
    np.testing.assert_array_equal(POOLINGS["per_residue"].numpy(HIDDEN, MASK)[0], HIDDEN[0, 1:4])
    np.testing.assert_array_equal(POOLINGS["bos"].numpy(HIDDEN, MASK)[1], HIDDEN[1, 0])


def test_bos_needs_a_bos_token():
    assert POOLINGS["bos"].needs_bos and not POOLINGS["mean"].needs_bos
    with pytest.raises(InvalidInputError, match="no BOS token"):
        POOLINGS["bos"].numpy(HIDDEN, MASK, bos_index=None)
    assert len(POOLINGS["mean"].numpy(HIDDEN, MASK, bos_index=None)) == 2


def test_lookup_names_the_allowed_poolings_and_per_position_is_a_property():
    assert get_pooling("per_token", ("mean", "per_token")) is POOLINGS["per_token"]
    with pytest.raises(InvalidInputError, match="mean, per_residue; got 'bos'"):
        get_pooling("bos", ("mean", "per_residue"))
    assert [n for n in POOLINGS if is_per_position(n)] == ["per_residue", "per_token"]
    assert not is_per_position("max")


def test_a_spec_can_only_offer_registered_poolings():
    with pytest.raises(ValueError, match="'attention'"):
        ModelSpec(name="m", family="f", verbs={"embed"}, loader="m:f", poolings=("mean", "attention"))


def test_max_takes_each_dimension_s_largest_residue_value():
    np.testing.assert_array_equal(POOLINGS["max"].numpy(HIDDEN, MASK)[1], HIDDEN[1, 1:5].max(0))
    assert not POOLINGS["max"].per_position and not POOLINGS["max"].needs_bos
