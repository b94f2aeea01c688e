"""`bind_options`: user options to a verb's keyword arguments, checked against the verb's own
annotations (the real MegaMolBART and ESM-2 signatures; no model is loaded)."""

from __future__ import annotations

import math

import pytest

from bionemo_lite.binding import bind_options
from bionemo_lite.errors import InvalidInputError
from bionemo_lite.zoo.esm2.model import ESM2Model
from bionemo_lite.zoo.megamolbart.model import MegaMolBARTModel

MMB = "megamolbart"


def bind_generate(**options):
    # Unbound methods: `self` and the inputs are the two leading parameters the caller fills.
    return bind_options(MegaMolBARTModel.generate, options, MMB, positional=2)


def test_values_of_the_annotated_type_pass_unchanged():
    kwargs = bind_generate(num_samples=3, scaled_radius=0.5, top_p=0.9, canonicalize=False, on_invalid="skip")
    assert kwargs == {"num_molecules": 3, "scaled_radius": 0.5, "top_p": 0.9, "canonicalize": False,
                      "on_invalid": "skip"}
    assert bind_generate(scaled_radius=1) == {"scaled_radius": 1}  # a JSON integer is a number
    assert bind_generate(top_k=None, seed=None) == {}  # None: the verb's default


@pytest.mark.parametrize("option, value, why", [
    ("scaled_radius", "abc", "valid number"),
    ("scaled_radius", math.inf, "finite number"),
    ("scaled_radius", math.nan, "finite number"),
    ("scaled_radius", True, "valid number"),  # a boolean is not a number
    ("top_p", "0.9", "valid number"),
    ("beam_size", 2.0, "valid integer"),
    ("beam_size", True, "valid integer"),
    ("num_molecules", "3", "valid integer"),
    ("canonicalize", 1, "valid boolean"),
    ("on_invalid", "drop", "'error' or 'skip'"),
    ("method", 3, "valid string"),
])
def test_a_value_of_the_wrong_type_names_the_option(option, value, why):
    with pytest.raises(InvalidInputError) as err:
        bind_generate(**{option: value})
    message = str(err.value)
    assert f"option {option!r}" in message and why in message, message


def test_unknown_options_are_all_named_with_the_accepted_ones():
    with pytest.raises(InvalidInputError) as err:
        bind_generate(scaled_radius=0.5, radius=1.0, temprature=0.7)
    message = str(err.value)
    assert "'radius', 'temprature'" in message
    assert "it accepts: num_molecules, scaled_radius" in message


def test_two_names_of_one_parameter_are_refused():
    with pytest.raises(InvalidInputError, match="'num_samples' and 'num_molecules' both set 'num_molecules'"):
        bind_generate(num_samples=2, num_molecules=3)


def test_decode_and_esm2_verbs_are_checked_the_same_way():
    with pytest.raises(InvalidInputError, match="option 'length_penalty': input should be a finite number"):
        bind_options(MegaMolBARTModel.decode, {"length_penalty": math.inf}, MMB, positional=3)
    esm2 = bind_options(ESM2Model.generate, {"order": "left_to_right", "temperature": 0.5}, "esm2", positional=2)
    assert esm2 == {"order": "left_to_right", "temperature": 0.5}
    with pytest.raises(InvalidInputError, match="option 'order'"):
        bind_options(ESM2Model.generate, {"order": 1}, "esm2", positional=2)
    with pytest.raises(InvalidInputError, match="option 'on_too_long'.*'error', 'truncate' or 'window'"):
        bind_options(ESM2Model.embed, {"on_too_long": "cut"}, "esm2", positional=2)


def test_a_catch_all_takes_any_value_and_unannotated_parameters_are_not_checked():
    def fold(sequence, *, num_recycles: int | None = None, flag=None, **options):
        return None

    assert bind_options(fold, {"num_recycles": 2, "flag": "anything", "extra": [1]}, "m") == {
        "num_recycles": 2, "flag": "anything", "extra": [1]}
    with pytest.raises(InvalidInputError, match="option 'num_recycles'"):
        bind_options(fold, {"num_recycles": True}, "m")
