"""Fine-tuning from the Python API: it learns a task the tiny models can learn, seeded, with honest cards.

The labels are fixed functions of the sequence (the fraction of lysines; the count of oxygen
atoms in a SMILES), so a head on a random-weight encoder can learn them: the margins below test
learning, not biology. Every table is generated here.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from safetensors.torch import load_file

import bionemo_lite
from bionemo_lite.errors import BaseWeightsMismatchError, CheckpointError, InvalidInputError
from bionemo_lite.finetune import FinetuneOptions
from bionemo_lite.finetune.card import checkpoint_sha256
from bionemo_lite.finetune.metrics import binary_auroc, classification_metrics, regression_metrics
from bionemo_lite.finetune.splits import identity_groups, make_split, scaffold_groups
from bionemo_lite.weights import sha256_of
from bionemo_lite.zoo.finetuned.testing import atom_count_rows, residue_fraction_rows, write_table

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]

BASE = "esm2_t6_8M_UR50D"
QUIET = FinetuneOptions(progress=False)


@pytest.fixture(scope="module")
def fraction_table(tmp_path_factory):
    return write_table(tmp_path_factory.mktemp("data") / "frac.csv", residue_fraction_rows(200), "frac_k")


@pytest.fixture(scope="module")
def head_run(tmp_path_factory, fraction_table, esm2_fair_checkpoint):
    out = tmp_path_factory.mktemp("runs") / "head"
    return bionemo_lite.finetune(BASE, fraction_table, "frac_k", out, QUIET, weights=esm2_fair_checkpoint)


def test_head_learns_the_residue_fraction(head_run):
    test = head_run.metrics["test"]
    assert test["spearman"] >= 0.8, test  # the stated margin
    assert head_run.metrics["baseline_test"]["rmse"] > test["rmse"]  # better than the untrained head


def test_the_card_says_what_was_made_from_what(head_run, fraction_table, esm2_fair_checkpoint):
    card = json.loads((head_run.out_dir / "card.json").read_text())
    assert card["base_model"] == BASE and card["base_weights_sha256"] == sha256_of(esm2_fair_checkpoint)
    assert card["data_sha256"] == sha256_of(fraction_table)
    assert card["task"] == "regression" and card["target"] == "frac_k" and card["method"] == "head"
    assert card["metrics"]["test"] == head_run.metrics["test"] and set(card["metrics"]["test"]) == {"spearman", "rmse"}
    assert card["split"]["method"] == "random"
    assert card["split"]["train"] + card["split"]["validation"] + card["split"]["test"] == 200
    assert card["hyperparameters"]["seed"] == 0 and card["created"].startswith("20")
    assert (head_run.out_dir / "head.safetensors").is_file() and not (head_run.out_dir / "adapter.safetensors").exists()


def test_the_same_seed_gives_identical_weights(tmp_path, fraction_table, esm2_fair_checkpoint):
    runs = [bionemo_lite.finetune(BASE, fraction_table, "frac_k", tmp_path / name, FinetuneOptions(
        progress=False, max_epochs=5, seed=seed), weights=esm2_fair_checkpoint) for name, seed in
        (("a", 0), ("b", 0), ("c", 1))]
    a, b, c = (load_file(r.out_dir / "head.safetensors") for r in runs)
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert not all(np.array_equal(a[k].numpy(), c[k].numpy()) for k in a)


def test_load_by_path_and_by_registered_name_predict_the_same(head_run, fraction_table):
    by_path = bionemo_lite.load(str(head_run.out_dir))
    assert isinstance(by_path, bionemo_lite.Predictor)
    from bionemo_lite.finetune import register_finetune

    register_finetune(head_run.out_dir, "frac_k_model")
    assert "frac_k_model" in [s.name for s in bionemo_lite.list_models(verb="predict")]
    by_name = bionemo_lite.load("frac_k_model")
    rows = residue_fraction_rows(5, seed=9)
    a, b = (m.predict({rid: seq for rid, seq, _ in rows}) for m in (by_path, by_name))
    assert a.ids == b.ids == [rid for rid, _, _ in rows] and a.task == "regression" and a.probabilities is None
    assert np.allclose(a.values, b.values, atol=0, rtol=0)
    assert by_name.name == "frac_k_model" and by_name.spec.family == "finetuned"


def test_other_base_weights_are_refused(head_run, tmp_path):
    from bionemo_lite.zoo.esm2.testing import TinyEsm2, write_fair_esm_checkpoint

    other = write_fair_esm_checkpoint(tmp_path, BASE, TinyEsm2(seed=1))
    with pytest.raises(BaseWeightsMismatchError, match="sha256") as info:
        bionemo_lite.load(str(head_run.out_dir), base_weights=other)
    assert info.value.found == checkpoint_sha256(other) != info.value.expected


def test_a_bad_record_is_named_at_predict(head_run):
    model = bionemo_lite.load(str(head_run.out_dir))
    with pytest.raises(InvalidInputError) as info:
        model.predict({"ok": "MKTAYIAKQR", "bad": "MKT1AY"})
    assert info.value.record == "bad"


@pytest.mark.parametrize("rows, target, message", [
    ([(f"r{i}", "MKTAYIAKQR", "1.0") for i in range(5)], "y", "at least 10"),
    ([(f"r{i}", "MKTAYIAKQR", "1.0") for i in range(12)], "missing", "no target column 'missing'"),
    ([(f"r{i}", "MKTAYIAKQR", "1.0" if i else "high") for i in range(12)], "y", "not a number"),
    ([(f"r{i}", "MKTAYIAKQR" if i != 3 else "MK#T", "1.0") for i in range(12)], "y", "r3"),
])
def test_bad_tables_are_clear_errors(tmp_path, esm2_fair_checkpoint, rows, target, message):
    path = write_table(tmp_path / "bad.csv", rows, "y")
    with pytest.raises(InvalidInputError, match=message):
        bionemo_lite.finetune(BASE, path, target, tmp_path / "out", QUIET, weights=esm2_fair_checkpoint)


def test_bad_options_are_clear_errors(tmp_path, fraction_table, esm2_fair_checkpoint):
    for options, message in ((FinetuneOptions(method="full"), "method must be one of head, lora"),
                             (FinetuneOptions(split="scaffold"), "scaffold split is for SMILES"),
                             (FinetuneOptions(test_fraction=0.9), "test_fraction")):
        with pytest.raises(InvalidInputError, match=message):
            bionemo_lite.finetune(BASE, fraction_table, "frac_k", tmp_path / "o", options, weights=esm2_fair_checkpoint)


def test_classification_gives_class_probabilities(tmp_path, esm2_fair_checkpoint):
    rows = [(rid, seq, "high" if y >= 0.25 else "low") for rid, seq, y in residue_fraction_rows(200, seed=3)]
    path = write_table(tmp_path / "cls.csv", rows, "level")
    result = bionemo_lite.finetune(BASE, path, "level", tmp_path / "cls", FinetuneOptions(
        task="classification", split="identity", progress=False), weights=esm2_fair_checkpoint)
    assert result.metrics["test"]["auroc"] >= 0.85 and result.metrics["test"]["accuracy"] >= 0.75
    assert result.card.classes == ["high", "low"] and result.card.split["method"] == "identity"
    out = bionemo_lite.load(str(result.out_dir)).predict([seq for _, seq, _ in rows[:4]])
    assert out.probabilities.shape == (4, 2) and np.allclose(out.probabilities.sum(1), 1.0)
    assert out.values == [out.classes[k] for k in out.probabilities.argmax(1)]
    # The batch job writes the class and one probability column per class.
    from typer.testing import CliRunner

    from bionemo_lite.cli import app

    fasta = tmp_path / "q.fasta"
    fasta.write_text("".join(f">{rid}\n{seq}\n" for rid, seq, _ in rows[:4]))
    job = CliRunner().invoke(app, ["predict", str(result.out_dir), str(fasta), "-o", str(tmp_path / "q.csv"), "-q"])
    assert job.exit_code == 0, job.output
    header, *lines = (tmp_path / "q.csv").read_text().splitlines()
    assert header.split(",") == ["id", "sequence", "prediction", "truncated", "p_high", "p_low"]
    for line, label, probs in zip(lines, out.values, out.probabilities):
        cells = line.split(",")
        assert cells[2] == label and np.allclose([float(cells[4]), float(cells[5])], probs, atol=1e-6)


@pytest.mark.slow  # LoRA backpropagates through the encoder: ~20 s on two shared cores
def test_lora_learns_and_beats_the_untrained_baseline(tmp_path, esm2_fair_checkpoint):
    path = write_table(tmp_path / "frac.csv", residue_fraction_rows(150, seed=5), "frac_k")
    result = bionemo_lite.finetune(BASE, path, "frac_k", tmp_path / "lora", FinetuneOptions(
        method="lora", max_epochs=8, progress=False), weights=esm2_fair_checkpoint)
    test, baseline = result.metrics["test"], result.metrics["baseline_test"]
    assert test["spearman"] >= 0.8 and test["spearman"] >= (baseline["spearman"] or 0) + 0.3, result.metrics
    adapted = result.card.lora["target_modules"]
    assert (result.out_dir / "adapter.safetensors").is_file()
    assert {n.rpartition(".")[2] for n in adapted} == {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"}
    assert not any("lm_head" in n or "contact" in n for n in adapted)  # only what the encoder runs
    model = bionemo_lite.load(str(result.out_dir))
    again = model.predict([seq for seq in ("MKKKKAYIAK", "MAYIAQRTE")])
    assert again.values[0] > again.values[1]  # more lysines, a higher fraction
    # The base model loaded beside it is not changed by the adapters.
    base = bionemo_lite.load(BASE, weights=esm2_fair_checkpoint).embed(["MKTAYIAKQR"]).embeddings
    assert np.allclose(model.base.embed(["MKTAYIAKQR"]).embeddings, base)


def test_lora_with_the_same_seed_gives_identical_adapters(tmp_path, esm2_fair_checkpoint):
    path = write_table(tmp_path / "frac.csv", residue_fraction_rows(40, seed=7), "frac_k")
    runs = [bionemo_lite.finetune(BASE, path, "frac_k", tmp_path / name, FinetuneOptions(
        method="lora", max_epochs=1, progress=False), weights=esm2_fair_checkpoint) for name in ("a", "b")]
    a, b = (load_file(r.out_dir / "adapter.safetensors") for r in runs)
    assert a.keys() == b.keys() and a and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


@pytest.mark.slow  # the tiny MegaMolBART embeds 200 SMILES
def test_smiles_head_learns_the_oxygen_count_with_a_scaffold_split(tmp_path):
    from bionemo_lite.zoo.megamolbart.testing import tiny_checkpoint

    weights = tiny_checkpoint(tmp_path / "mmb")
    path = write_table(tmp_path / "o.csv", atom_count_rows(200), "oxygens", text_column="smiles")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = bionemo_lite.finetune("megamolbart", path, "oxygens", tmp_path / "mmb_head", FinetuneOptions(
            split="scaffold", progress=False), weights=weights)
    assert result.metrics["test"]["spearman"] >= 0.8, result.metrics
    assert result.card.input_kind == "smiles" and result.card.split["method"] == "scaffold"


# -- splits and metrics, exactly ----------------------------------------------------------------------

def test_identity_split_keeps_similar_sequences_together():
    base = "MKTAYIAKQRQISFVKSHFSRQ"
    sequences = [base, base[:-1] + "A", "GSHMLEDPVDAFWCNPPLLG", "GSHMLEDPVDAFWCNPPLLA", "WWWWYYYYHHHHCCCC"]
    groups = identity_groups(sequences)
    assert groups[0] == groups[1] and groups[2] == groups[3] and len(set(groups)) == 3
    # 12 families of 4 near-identical members: no family may straddle two parts.
    families = [row[1] for row in residue_fraction_rows(12, seed=2, lengths=(30, 40))]
    members = [seq[:k] + "W" + seq[k + 1:] for seq in families for k in (3, 9, 15, 21)]
    groups = identity_groups(members)
    assert len(set(groups)) == 12
    split = make_split("identity", members, "protein", seed=0)
    side = {}
    for part, indices in (("train", split.train), ("validation", split.validation), ("test", split.test)):
        for i in indices:
            side.setdefault(groups[i], set()).add(part)
    assert all(len(parts) == 1 for parts in side.values()) and min(split.sizes().values()) >= 4


def test_scaffold_groups_follow_bemis_murcko():
    groups = scaffold_groups(["c1ccccc1CC", "c1ccccc1CCO", "C1CCCCC1", "CCO", "CCN"])
    assert groups[0] == groups[1] != groups[2] and groups[3] == groups[4] != groups[0]


def test_metrics_are_exact_on_small_cases():
    assert binary_auroc(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.5, 0.1])) == 0.75
    m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert m["spearman"] == 1.0 and m["rmse"] == pytest.approx(np.sqrt(1 / 3))
    c = classification_metrics(np.array([0, 1, 1]), np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]))
    assert c["auroc"] == 1.0 and c["accuracy"] == pytest.approx(2 / 3)


def test_a_damaged_card_is_a_checkpoint_error(tmp_path):
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not readable JSON"):
        bionemo_lite.load(str(tmp_path))


def test_prott5_takes_lora_too(tmp_path):
    from bionemo_lite.zoo.prott5.testing import FULL, tiny_checkpoint

    weights = tiny_checkpoint(tmp_path / "t5", FULL)
    path = write_table(tmp_path / "frac.csv", residue_fraction_rows(60), "frac_k")
    result = bionemo_lite.finetune(FULL, path, "frac_k", tmp_path / "t5_lora", FinetuneOptions(
        method="lora", max_epochs=2, progress=False), weights=weights)
    adapted = {name.rpartition(".")[2] for name in result.card.lora["target_modules"]}
    assert adapted >= {"q", "k", "v", "o"}  # T5's attention projections
    out = bionemo_lite.load(str(result.out_dir)).predict({"a": "MKTAYIAKQR", "b": "GSHMLE"})
    assert out.ids == ["a", "b"] and np.all(np.isfinite(out.values))
