"""ESM-1 cards, weights layouts and what happens with the wrong file or too long a sequence."""

from __future__ import annotations

import pytest

import bionemo_lite as bl
from bionemo_lite.errors import CheckpointError, InvalidInputError
from bionemo_lite.zoo.esm1 import ENSEMBLE, ESM1B, ESM1V_MEMBERS, MAX_POSITIONS
from esm1_fixtures import ensemble_folder, esm1b_fair_checkpoint, esm1b_hf_dir, load_quietly  # noqa: F401
from esm2_fixtures import ESM2_NAME

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAIR = "https://dl.fbaipublicfiles.com/fair-esm"


def test_the_seven_variants_are_registered_through_the_entry_point():
    names = [s.name for s in bl.list_models(pattern="esm1*")]
    assert names == [ESM1B, *ESM1V_MEMBERS, ENSEMBLE]  # same size: by name, the ensemble (5x) last
    assert {s.family for s in bl.list_models(pattern="esm1*")} == {"esm1"}


def test_esm1b_ships_contact_regression_and_esm1v_does_not():
    esm1b = bl.get_spec(ESM1B)
    assert esm1b.verbs == {"embed", "score", "contacts"}
    assert [(f.filename, f.url, f.required) for f in esm1b.weights[0].files] == [
        (f"{ESM1B}.pt", f"{FAIR}/models/{ESM1B}.pt", True),
        (f"{ESM1B}-contact-regression.pt", f"{FAIR}/regression/{ESM1B}-contact-regression.pt", False),
    ]
    for name in ESM1V_MEMBERS:
        spec = bl.get_spec(name)
        assert spec.verbs == {"embed", "score"}
        assert [f.url for f in spec.weights[0].files] == [f"{FAIR}/models/{name}.pt"]
        assert spec.weights[1].homepage == f"https://huggingface.co/facebook/{name}"
    assert bl.get_spec(ESM1B).poolings == bl.get_spec(ESM2_NAME).poolings
    assert bl.get_spec(ESM1B).score_methods == bl.get_spec(ESM2_NAME).score_methods


def test_both_layouts_load_with_their_shape(esm1b_fair_checkpoint, esm1b_hf_dir):
    for weights, layout in ((esm1b_fair_checkpoint, "fair-esm"), (esm1b_hf_dir, "huggingface")):
        model = load_quietly(ESM1B, weights)
        assert model.checkpoint_format == layout and model.has_contacts
        assert model.config["position_embedding"] == "learned" and model.config["emb_layer_norm_before"]
        assert model.config["max_positions"] == MAX_POSITIONS and model.num_layers == 3


def test_the_tiny_shape_warns_that_it_is_not_the_published_one(esm1b_fair_checkpoint):
    from bionemo_lite.zoo.esm2.loading import ArchitectureWarning

    with pytest.warns(ArchitectureWarning, match=ESM1B):
        bl.load(ESM1B, weights=esm1b_fair_checkpoint)


def test_a_member_is_found_by_name_in_the_ensemble_folder(ensemble_folder):
    model = load_quietly(ESM1V_MEMBERS[2], ensemble_folder)
    assert model.checkpoint_path == ensemble_folder / f"{ESM1V_MEMBERS[2]}.pt"


def test_an_esm2_checkpoint_is_not_an_esm1b(esm2_fair_checkpoint, esm2_hf_dir):
    with pytest.raises(CheckpointError, match="esm2"):
        load_quietly(ESM1B, esm2_fair_checkpoint)
    with pytest.raises(CheckpointError, match="position_embedding_type is 'rotary'"):
        load_quietly(ESM1B, esm2_hf_dir)


@pytest.mark.filterwarnings("ignore::UserWarning")  # the tiny shape is not esm2_t6_8M's either
def test_an_esm1b_checkpoint_is_not_an_esm2(esm1b_fair_checkpoint, esm1b_hf_dir):
    with pytest.raises(CheckpointError, match="embed_positions"):
        bl.load(ESM2_NAME, weights=esm1b_fair_checkpoint)
    with pytest.raises(CheckpointError, match="ESM-1 models are not ESM-2"):
        bl.load(ESM2_NAME, weights=esm1b_hf_dir)


def test_the_1022_residue_window(esm1b_fair_checkpoint):
    model = load_quietly(ESM1B, esm1b_fair_checkpoint)
    too_long = "A" * 1100
    with pytest.raises(InvalidInputError, match="1022"):
        model.embed({"long": too_long})
    emb = model.embed({"long": too_long}, on_too_long="truncate", pooling="per_residue")
    assert emb.truncated == ["long"] and emb.by_layer[3][0].shape == (1022, 48)
