"""The ESM-1v ensemble: five members loaded from one folder, scores = the members' mean, exactly."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

import bionemo_lite as bl
from bionemo_lite.cli import app as cli_app
from bionemo_lite.errors import CheckpointError
from bionemo_lite.zoo.esm1 import ENSEMBLE, ESM1V_MEMBERS
from bionemo_lite.zoo.esm1.testing import write_ensemble_folder
from esm1_fixtures import ensemble_fair_refs, ensemble_folder, load_quietly  # noqa: F401  (fixtures)
from esm2_fixtures import PARITY_TOL, SEQUENCES, fair_marginal, fair_pll, max_diff

pytestmark = pytest.mark.usefixtures("one_torch_thread")
WT = SEQUENCES["mid"]
MUTATIONS = ["M1A", "K2W", "A4G:Y5F", "Q33P"]
PLL_SEQS = {"short": SEQUENCES["short"], "one": SEQUENCES["one"], "all": SEQUENCES["all"]}


@pytest.fixture(scope="module")
def ensemble(ensemble_folder):
    return load_quietly(ENSEMBLE, ensemble_folder, numerics="reference")


@pytest.fixture(scope="module")
def members(ensemble_folder):
    """Each member loaded on its own, as a user loads one ESM-1v model."""
    return [load_quietly(m, ensemble_folder / f"{m}.pt", numerics="reference") for m in ESM1V_MEMBERS]


def test_the_card_says_score_only_and_names_its_members():
    spec = bl.get_spec(ENSEMBLE)
    assert spec.verbs == {"score"} and "score only" in spec.description
    assert tuple(spec.config["members"]) == ESM1V_MEMBERS
    assert [f.filename for f in spec.weights[0].files] == [f"{m}.pt" for m in ESM1V_MEMBERS]


@pytest.mark.parametrize(
    "method, inputs, mutations",
    [("masked_marginals", WT, MUTATIONS), ("wt_marginals", WT, MUTATIONS), ("pll", PLL_SEQS, None)],
)
def test_scores_are_exactly_the_mean_of_the_members(ensemble, members, method, inputs, mutations):
    ours = ensemble.score(inputs, method=method, mutations=mutations)
    each = [m.score(inputs, method=method, mutations=mutations) for m in members]
    assert all(e.ids == ours.ids for e in each) and not ours.errors
    assert ours.ids == (MUTATIONS if mutations else list(PLL_SEQS))
    np.testing.assert_array_equal(ours.scores, np.mean([e.scores for e in each], axis=0))
    # five different random models: the mean is none of them
    assert all(max_diff(ours.scores, e.scores) > 1e-3 for e in each)


def test_masked_marginals_match_the_mean_of_fair_esm_members(ensemble, ensemble_fair_refs):
    ours = ensemble.score(WT, method="masked_marginals", mutations=MUTATIONS)
    ref = np.mean([[fair_marginal(r, WT, m, masked=True) for m in MUTATIONS] for r in ensemble_fair_refs], axis=0)
    assert max_diff(ours.scores, ref) <= PARITY_TOL


def test_pll_matches_the_mean_of_fair_esm_members(ensemble, ensemble_fair_refs):
    ours = ensemble.score(PLL_SEQS, method="pll")
    ref = np.mean([[fair_pll(r, s) for s in PLL_SEQS.values()] for r in ensemble_fair_refs], axis=0)
    assert max_diff(ours.scores, ref) <= PARITY_TOL


def test_hugging_face_member_folders_give_the_same_scores(tmp_path, ensemble):
    folder = write_ensemble_folder(tmp_path / "hf", huggingface=True)
    assert sorted(p.name for p in folder.iterdir()) == list(ESM1V_MEMBERS)
    hf = load_quietly(ENSEMBLE, folder, numerics="reference")
    assert [m.checkpoint_format for m in hf.members] == ["huggingface"] * 5
    expected = ensemble.score(WT, method="masked_marginals", mutations=MUTATIONS).scores
    assert max_diff(hf.score(WT, method="masked_marginals", mutations=MUTATIONS).scores, expected) <= PARITY_TOL


def test_loading_by_name_finds_the_members_in_the_cache(tmp_path, monkeypatch, ensemble_folder, ensemble):
    home = tmp_path / "home"
    shutil.copytree(ensemble_folder, home / ENSEMBLE)
    monkeypatch.setenv("BIONEMO_LITE_HOME", str(home))
    cached = load_quietly(ENSEMBLE, None, numerics="reference")
    assert cached.weights_path == home / ENSEMBLE
    np.testing.assert_array_equal(cached.score(PLL_SEQS).scores, ensemble.score(PLL_SEQS).scores)


def test_a_missing_member_is_named(tmp_path, ensemble_folder):
    folder = tmp_path / "four"
    shutil.copytree(ensemble_folder, folder)
    (folder / f"{ESM1V_MEMBERS[3]}.pt").unlink()
    with pytest.raises(CheckpointError, match=ESM1V_MEMBERS[3]):
        load_quietly(ENSEMBLE, folder)


def test_a_single_file_is_refused_with_the_layout(ensemble_folder):
    with pytest.raises(CheckpointError, match="folder holding its members"):
        load_quietly(ENSEMBLE, ensemble_folder / f"{ESM1V_MEMBERS[0]}.pt")


def test_a_bad_mutation_is_a_clear_error(ensemble):
    from bionemo_lite.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="K1A"):
        ensemble.score(WT, method="masked_marginals", mutations=["K1A"])  # residue 1 is M


def test_cli_scores_mutations_with_the_ensemble(tmp_path, ensemble_folder, ensemble):
    wt = tmp_path / "wt.fasta"
    wt.write_text(f">wt\n{WT}\n")
    muts = tmp_path / "muts.txt"
    muts.write_text("\n".join(MUTATIONS) + "\n")
    out = tmp_path / "effects.csv"
    args = ["score", ENSEMBLE, str(wt), "-o", str(out), "--weights", str(ensemble_folder), "-q",
            "--method", "masked_marginals", "--mutations", str(muts)]  # fmt: skip
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    import pandas as pd

    table = pd.read_csv(out)
    expected = ensemble.score(WT, method="masked_marginals", mutations=MUTATIONS)
    assert list(table["mutation"]) == MUTATIONS
    assert max_diff(table["score"], expected.scores) <= 1e-3  # the default numerics ("fast") ran here
