"""LoRA fine-tuning of MegaMolBART's encoder: the hook, its equivalence with ``embed``, learning, both doors.

The label is the count of oxygen atoms in a SMILES (`atom_count_rows`), a fixed function of the
molecule that a tiny random-weight encoder with adapters can learn: the margins test learning,
not chemistry. Every table and checkpoint is generated here.
"""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import bionemo_lite
from bionemo_lite.cli import app
from bionemo_lite.errors import InvalidInputError
from bionemo_lite.finetune import FinetuneOptions
from bionemo_lite.finetune.encoders import LoraEncoder, lora_capable
from bionemo_lite.finetune.metrics import regression_metrics
from bionemo_lite.verbs import LoraAdaptable, OnnxExportable
from bionemo_lite.zoo.finetuned.testing import atom_count_rows, write_table

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]

BASE = "megamolbart"
# Not canonical as written (RDKit rewrites them), of several lengths (the batch has padding).
SMILES = ["OCC", "c1ccccc1C(=O)O", "C(Cl)CCN", "C", "O=C(O)c1ccncc1CC1CCOC1"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from bionemo_lite.zoo.megamolbart.testing import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("mmb"))


@pytest.fixture(scope="module")
def base(weights):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny checkpoint is not the published shape
        return bionemo_lite.load(BASE, weights=weights)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, weights):
    folder = tmp_path_factory.mktemp("runs")
    path = write_table(folder / "o.csv", atom_count_rows(200), "oxygens", text_column="smiles")
    return bionemo_lite.finetune(BASE, path, "oxygens", folder / "lora", FinetuneOptions(
        method="lora", max_epochs=10, progress=False), weights=weights)


def test_megamolbart_offers_lora_without_claiming_an_onnx_graph(base):
    assert isinstance(base, LoraAdaptable) and lora_capable(base)
    assert not isinstance(base, OnnxExportable)  # Triton keeps serving it through the python backend


def test_zero_adapters_pool_exactly_like_embed(base):
    encoder = LoraEncoder(base)
    assert all(name.startswith("network.encoder.") for name in encoder.target_modules)  # no decoder, no LM head
    assert {n.rpartition(".")[2] for n in encoder.target_modules} == {
        "query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"}
    with torch.no_grad():
        pooled = encoder(SMILES).numpy()
    expected = base.embed(SMILES, pooling="mean").embeddings
    assert pooled.shape == expected.shape == (len(SMILES), base.network.config.hidden_size)
    assert np.abs(pooled - expected).max() <= 1e-5
    # The tokenizer canonicalises as embed does: two spellings of one molecule give one row.
    with torch.no_grad():
        same = encoder(["OCC", "CCO", "C(O)C"]).numpy()
    assert np.abs(same - same[0]).max() <= 1e-6


def test_a_bad_smiles_is_named_by_its_id(base):
    encoder = LoraEncoder(base)
    with pytest.raises(InvalidInputError, match="cannot be parsed") as info:
        encoder(["CCO", "C1CC"], ["good", "ring"])
    assert info.value.record == "ring"


def test_lora_learns_the_oxygen_count(lora_run, weights):
    test, baseline = lora_run.metrics["test"], lora_run.metrics["baseline_test"]
    # This table, 10 epochs, seeds 0-2: held-out Spearman 0.91-0.96 against untrained baselines of -0.39-0.61;
    # on the 60 fresh molecules below 0.92-0.94.
    assert test["spearman"] >= 0.8 and test["spearman"] >= (baseline["spearman"] or 0) + 0.3, lora_run.metrics
    card = lora_run.card
    assert card.method == "lora" and card.base_model == BASE and card.input_kind == "smiles"
    assert all(name.startswith("network.encoder.") for name in card.lora["target_modules"])
    adapters = load_file(lora_run.out_dir / "adapter.safetensors")
    trained_b = [v for k, v in adapters.items() if "lora_B" in k]
    assert trained_b and any(float(v.abs().max()) > 0 for v in trained_b)  # the adapters moved from zero
    # The fine-tune loads and predicts fresh molecules it never saw.
    model = bionemo_lite.load(str(lora_run.out_dir))
    fresh = atom_count_rows(60, seed=9)
    out = model.predict({rid: smiles for rid, smiles, _ in fresh})
    assert out.ids == [rid for rid, _, _ in fresh] and not out.errors
    assert regression_metrics(np.array([y for _, _, y in fresh]), np.array(out.values))["spearman"] >= 0.8
    # The base model loaded beside it is not changed by the adapters.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        untouched = bionemo_lite.load(BASE, weights=weights).embed(SMILES).embeddings
    assert np.allclose(model.base.embed(SMILES).embeddings, untouched, atol=0, rtol=0)


def test_predict_names_a_bad_smiles(lora_run):
    model = bionemo_lite.load(str(lora_run.out_dir))
    with pytest.raises(InvalidInputError) as info:
        model.predict({"ok": "CCO", "bad": "C1CC"})
    assert info.value.record == "bad"


def test_cli_finetunes_and_predicts_with_lora(tmp_path, weights):
    table = write_table(tmp_path / "o.csv", atom_count_rows(60, seed=4), "oxygens", text_column="smiles")
    out = tmp_path / "cli_lora"
    job = CliRunner().invoke(app, ["finetune", BASE, str(table), "--target", "oxygens", "-o", str(out),
                                   "--weights", str(weights), "--method", "lora", "--max-epochs", "3", "-q"])
    assert job.exit_code == 0, job.output
    assert "lora fine-tune of megamolbart" in job.output and (out / "adapter.safetensors").is_file()
    query = tmp_path / "q.smi"
    query.write_text("OCC first\nC1CC broken\nO=C(O)c1ccccc1 third\n")
    pred = CliRunner().invoke(app, ["predict", str(out), str(query), "-o", str(tmp_path / "p.csv"), "-q"])
    assert pred.exit_code == 0, pred.output
    with open(tmp_path / "p.csv", newline="") as fh:
        got = {row["id"]: float(row["prediction"]) for row in csv.DictReader(fh)}
    assert list(got) == ["first", "third"]  # the bad record is recorded, the job goes on
    assert "broken" in (tmp_path / "p.csv.errors.csv").read_text()
    python = bionemo_lite.load(str(out)).predict({"first": "OCC", "third": "O=C(O)c1ccccc1"})
    assert np.allclose(list(got.values()), python.values, atol=1e-5, rtol=0)
