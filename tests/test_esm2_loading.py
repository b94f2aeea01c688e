"""ESM-2 specs, weight resolution and the checkpoint readers (both formats, their variants and failures)."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import bionemo_lite as bl
from bionemo_lite.errors import CheckpointError, WeightsNotFoundError
from corrupt_files import DAMAGES, assert_refused, damage
from esm2_fixtures import ESM2_NAME, PARITY_TOL, SEQUENCES, load_quietly, max_diff
from bionemo_lite.zoo.esm2 import count_parameters, specs
from bionemo_lite.zoo.esm2.loading import ArchitectureWarning, load_esm2
from bionemo_lite.zoo.esm2.testing import random_fair_esm2

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # every ESM-2 test module runs on one torch thread
PUBLISHED = {
    "esm2_t6_8M_UR50D": (6, 320, 20),
    "esm2_t12_35M_UR50D": (12, 480, 20),
    "esm2_t30_150M_UR50D": (30, 640, 20),
    "esm2_t33_650M_UR50D": (33, 1280, 20),
    "esm2_t36_3B_UR50D": (36, 2560, 40),
    "esm2_t48_15B_UR50D": (48, 5120, 40),
}
SEQS = list(SEQUENCES.values())


# ------------------------------------------------------------------ specs


def test_all_six_variants_registered_with_their_configs():
    listed = {s.name: s for s in bl.list_models(pattern="esm2_*")}
    assert set(listed) == set(PUBLISHED)
    assert [s.name for s in specs()] == list(PUBLISHED)  # smallest first
    for name, (layers, dim, heads) in PUBLISHED.items():
        spec = bl.get_spec(name)
        assert spec.family == "esm2" and spec.verbs == {"embed", "score", "generate", "contacts"}
        assert spec.input_kind == "protein" and spec.max_length == 1022 and spec.license == "MIT"
        assert dict(spec.config) == {
            "num_layers": layers, "embed_dim": dim, "attention_heads": heads, "ffn_dim": 4 * dim,
            "vocab_size": 33, "max_positions": 1026, "token_dropout": True,
        }  # fmt: skip
        fair, hub = spec.weights
        assert fair.format == "fair-esm" and fair.entry == f"{name}.pt"
        assert [(f.filename, f.url, f.required) for f in fair.files] == [
            (f"{name}.pt", f"https://dl.fbaipublicfiles.com/fair-esm/models/{name}.pt", True),
            (
                f"{name}-contact-regression.pt",
                f"https://dl.fbaipublicfiles.com/fair-esm/regression/{name}-contact-regression.pt",
                False,
            ),
        ]
        assert hub.format == "huggingface" and hub.entry is None
        assert [f.url for f in hub.files] == [
            f"https://huggingface.co/facebook/{name}/resolve/main/{f}" for f in ("config.json", "model.safetensors")
        ]
    published_millions = {"8M": 8e6, "35M": 35e6, "150M": 150e6, "650M": 650e6, "3B": 3e9, "15B": 15e9}
    for name, spec in listed.items():
        label = name.split("_")[2]
        assert abs(spec.params / published_millions[label] - 1) < 0.1, (name, spec.params)


def test_parameter_formula_matches_fair_esm(tiny_esm2_arch):
    model, _ = random_fair_esm2(tiny_esm2_arch)
    n = sum(p.numel() for p in model.parameters())  # parameters() counts the tied LM-head weight once
    assert count_parameters(tiny_esm2_arch.num_layers, tiny_esm2_arch.embed_dim, tiny_esm2_arch.attention_heads) == n


def test_listing_does_not_import_torch():
    code = "import sys, bionemo_lite.zoo.esm2 as m; m.specs(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ weight resolution


def test_missing_weights_name_the_file():
    with pytest.raises(WeightsNotFoundError) as err:
        bl.load(ESM2_NAME)
    assert err.value.filename == f"{ESM2_NAME}.pt"
    message = str(err.value)
    assert "weights pull esm2_t6_8M_UR50D" in message and "esm2_t6_8M_UR50D-contact-regression.pt" in message


def test_weights_found_in_the_cache(esm2_fair_checkpoint, fair_model):
    from bionemo_lite.weights import cache_home

    folder = cache_home() / ESM2_NAME
    folder.mkdir(parents=True)
    for f in esm2_fair_checkpoint.parent.iterdir():
        shutil.copy(f, folder / f.name)
    with pytest.warns(ArchitectureWarning, match="not the published esm2_t6_8M_UR50D"):
        model = bl.load(ESM2_NAME)
    assert model.checkpoint_path == folder / f"{ESM2_NAME}.pt" and model.has_contacts
    assert max_diff(model.embed(SEQS).embeddings, fair_model.embed(SEQS).embeddings) == 0.0


def test_hf_folder_found_in_the_cache(esm2_hf_dir):
    from bionemo_lite.weights import cache_home

    shutil.copytree(esm2_hf_dir, cache_home() / ESM2_NAME)
    with pytest.warns(ArchitectureWarning):
        model = bl.load(ESM2_NAME)
    assert model.checkpoint_format == "huggingface"


# ------------------------------------------------------------------ shapes and warnings


def test_custom_size_warns_and_loads_with_the_checkpoint_shape(esm2_fair_checkpoint):
    with pytest.warns(ArchitectureWarning, match=r"num_layers 3 \(published 6\)"):
        model = bl.load(ESM2_NAME, weights=esm2_fair_checkpoint)
    assert model.config["num_layers"] == 3 and model.config["embed_dim"] == 48 and model.num_layers == 3
    assert model.embed("MKT").dim == 48


def test_matching_shape_does_not_warn(esm2_fair_checkpoint):
    spec = bl.get_spec(ESM2_NAME)
    tiny = replace(spec, config={**spec.config, "num_layers": 3, "embed_dim": 48, "attention_heads": 4})
    with warnings.catch_warnings():
        warnings.simplefilter("error", ArchitectureWarning)
        load_esm2(tiny, esm2_fair_checkpoint)


# ------------------------------------------------------------------ format variants


def test_folder_with_one_pt_and_hf_file_paths(esm2_fair_checkpoint, esm2_hf_dir, fair_model):
    ref = fair_model.logits(SEQS)
    for path in (esm2_fair_checkpoint.parent, esm2_hf_dir / "config.json", esm2_hf_dir / "model.safetensors"):
        model = load_quietly(path)
        assert model.has_contacts
        for a, b in zip(model.logits(SEQS), ref):
            assert max_diff(a, b) <= PARITY_TOL


def _hf_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_hf_pytorch_model_bin_and_plain_names(esm2_hf_dir, tmp_path, fair_model):
    from safetensors.torch import load_file

    folder = _hf_copy(esm2_hf_dir, tmp_path / "bin")
    tensors = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    # The names transformers 4 wrote: LayerNorm weight/bias, per-layer rotary buffers, an explicit decoder.
    renamed = {}
    for k, v in tensors.items():
        k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if "*" in k:
            continue
        renamed[k] = v
    for i in range(3):
        renamed[f"esm.encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq"] = 1.0 / (
            10000 ** (torch.arange(0, 12, 2).float() / 12)
        )
    renamed["lm_head.decoder.weight"] = renamed["esm.embeddings.word_embeddings.weight"].clone()
    renamed["esm.embeddings.position_ids"] = torch.arange(1026)[None]
    torch.save(renamed, folder / "pytorch_model.bin")
    model = load_quietly(folder)
    assert model.network.lm_head.weight is model.network.embed_tokens.weight  # an equal decoder stays tied
    for a, b in zip(model.logits(SEQS), fair_model.logits(SEQS)):
        assert max_diff(a, b) <= PARITY_TOL


def test_sharded_safetensors(esm2_hf_dir, tmp_path, fair_model):
    from safetensors.torch import load_file, save_file

    folder = _hf_copy(esm2_hf_dir, tmp_path / "sharded")
    tensors = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    keys = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, part in shards.items():
        save_file({k: tensors[k] for k in part}, str(folder / name))
    index = {"weight_map": {k: name for name, part in shards.items() for k in part}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    model = load_quietly(folder)
    for a, b in zip(model.logits(SEQS), fair_model.logits(SEQS)):
        assert max_diff(a, b) <= PARITY_TOL


def test_plain_state_dict_infers_the_shape(esm2_fair_checkpoint, tmp_path, fair_model):
    """A bare fair-esm state_dict (no cfg): layers, dim and heads come from the tensors."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        data = torch.load(esm2_fair_checkpoint, weights_only=True)
    path = tmp_path / "finetuned.pt"
    torch.save(data["model"], path)
    model = load_quietly(path)
    assert (model.config["num_layers"], model.config["embed_dim"], model.config["attention_heads"]) == (3, 48, 4)
    assert not model.has_contacts  # no sibling finetuned-contact-regression.pt
    assert max_diff(model.embed(SEQS).embeddings, fair_model.embed(SEQS).embeddings) == 0.0


def test_untied_lm_head_is_kept(esm2_hf_dir, tmp_path, hf_ref):
    from safetensors.torch import load_file, save_file

    folder = _hf_copy(esm2_hf_dir, tmp_path / "untied")
    tensors = load_file(str(folder / "model.safetensors"))
    decoder = tensors["esm.embeddings.word_embeddings.weight"] + 0.5
    tensors["lm_head.decoder.weight"] = decoder
    save_file(tensors, str(folder / "model.safetensors"))
    model = load_quietly(folder)
    assert model.network.lm_head.weight is not model.network.embed_tokens.weight
    assert torch.equal(model.network.lm_head.weight, decoder)


# ------------------------------------------------------------------ broken checkpoints


def _resave(src: Path, dst: Path, edit) -> Path:
    with torch.serialization.safe_globals([argparse.Namespace]):
        data = torch.load(src, weights_only=True)
    edit(data["model"])
    torch.save(data, dst)
    return dst


def test_unknown_and_missing_keys_are_listed(esm2_fair_checkpoint, tmp_path):
    def edit(state):
        state["encoder.sentence_encoder.layers.0.adapter.weight"] = torch.zeros(2)
        del state["encoder.sentence_encoder.layers.1.fc2.bias"]

    path = _resave(esm2_fair_checkpoint, tmp_path / "broken.pt", edit)
    with pytest.raises(CheckpointError) as err:
        load_quietly(path)
    assert "unexpected: layers.0.adapter.weight" in str(err.value) and "missing: layers.1.fc2.bias" in str(err.value)


def test_wrong_shape_is_reported(esm2_fair_checkpoint, tmp_path):
    def edit(state):
        state["encoder.sentence_encoder.layers.2.fc1.weight"] = torch.zeros(100, 48)

    with pytest.raises(CheckpointError, match=r"wrong shape: layers.2.fc1.weight \(100, 48\) != \(192, 48\)"):
        load_quietly(_resave(esm2_fair_checkpoint, tmp_path / "shape.pt", edit))


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a zip file")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_quietly(junk)
    other = tmp_path / "weights.npz"
    other.write_bytes(b"")
    with pytest.raises(CheckpointError, match="not an ESM-2 checkpoint"):
        load_quietly(other)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="found 0 candidate"):
        load_quietly(tmp_path / "empty")


class Payload:
    """Anything that is not a tensor or an allow-listed type must never be unpickled."""


def test_arbitrary_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "extra": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        load_quietly(path)


def _damaged_copy(target: str, esm2_fair_checkpoint: Path, esm2_hf_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of a tiny checkpoint and the file of it to damage."""
    if target in ("fair-esm .pt", "contact regression"):
        folder = _hf_copy(esm2_fair_checkpoint.parent, tmp_path / "fair")
        weights = folder / esm2_fair_checkpoint.name
        return weights, weights if target == "fair-esm .pt" else folder / f"{ESM2_NAME}-contact-regression.pt"
    folder = _hf_copy(esm2_hf_dir, tmp_path / "hf")
    if target == "hf pytorch_model.bin":
        from safetensors.torch import load_file

        torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
        return folder, folder / "pytorch_model.bin"
    return folder, folder / "model.safetensors"


@pytest.mark.parametrize("target", ["fair-esm .pt", "contact regression", "hf model.safetensors",
                                    "hf pytorch_model.bin"])
@pytest.mark.parametrize("kind", DAMAGES)
def test_damaged_or_malicious_files_are_checkpoint_errors_naming_them(
    esm2_fair_checkpoint, esm2_hf_dir, tmp_path, target, kind
):
    weights, file = _damaged_copy(target, esm2_fair_checkpoint, esm2_hf_dir, tmp_path)
    damage(file, kind, tmp_path / "code-ran")
    error = assert_refused(lambda: load_quietly(weights), file, tmp_path / "code-ran")
    assert "weights_only=False" not in str(error) and "weights_only` set to `False`" not in str(error)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"position_embedding_type": "absolute"}, "not 'rotary'"),
        ({"model_type": "bert"}, "not 'esm'"),
        ({"is_folding_model": True}, "ESMFold"),
        ({"mask_token_id": 4}, "mask/pad token ids"),
    ],
)
def test_hf_configs_that_are_not_esm2(esm2_hf_dir, tmp_path, change, match):
    folder = _hf_copy(esm2_hf_dir, tmp_path / "cfg")
    config = json.loads((folder / "config.json").read_text())
    config.update(change)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=match):
        load_quietly(folder)


def test_hf_folder_without_weights(esm2_hf_dir, tmp_path):
    folder = _hf_copy(esm2_hf_dir, tmp_path / "noweights")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin"):
        load_quietly(folder)


# ------------------------------------------------------------------ dtype and export


def test_numerics_default_to_fast_with_reference_on_request(esm2_fair_checkpoint, fair_model, monkeypatch):
    assert fair_model.dtype == "float32" and fair_model.network.numerics == "fast"
    assert load_quietly(esm2_fair_checkpoint, numerics="reference").network.numerics == "reference"
    monkeypatch.setenv("BIONEMO_LITE_NUMERICS", "reference")  # the server's switch
    assert load_quietly(esm2_fair_checkpoint).network.numerics == "reference"
    assert load_quietly(esm2_fair_checkpoint, numerics="fast").network.numerics == "fast"  # the argument wins
    with pytest.raises(bl.InvalidInputError, match="numerics must be one of fast, reference"):
        load_quietly(esm2_fair_checkpoint, numerics="exact")


def test_dtype_choice(esm2_fair_checkpoint, fair_model):
    assert fair_model.dtype == "float32"
    half = load_quietly(esm2_fair_checkpoint, dtype="bfloat16")
    assert half.dtype == "bfloat16" and half.network.numerics == "fast"
    assert all(p.dtype == torch.bfloat16 for p in half.network.parameters())
    a, b = half.embed(SEQS).embeddings, fair_model.embed(SEQS).embeddings
    assert a.dtype == np.float32 and np.isfinite(a).all()
    # bf16 keeps 8 bits of mantissa: the pooled vectors stay close, not equal
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99
    with pytest.raises(ValueError, match="unknown dtype"):
        load_quietly(esm2_fair_checkpoint, dtype="int8")


def test_network_exports_to_onnx_with_dynamic_shapes(fair_model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = tmp_path / "esm2.onnx"
    torch.onnx.export(
        fair_model.network,
        (fair_model.tokenize(["MKTAYIAKQR", "ACD"]),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["tokens"],
        output_names=["logits", "last_hidden_state"],
        dynamic_axes={name: {0: "batch", 1: "length"} for name in ("tokens", "logits", "last_hidden_state")},
    )
    session = ort.InferenceSession(str(path))
    for seqs in (["MKTAYIAKQRQISFVK", "ACD", "MMMMMMM"], ["A" * 40]):
        tokens = fair_model.tokenize(seqs)
        logits, hidden = session.run(None, {"tokens": tokens.numpy()})
        with torch.no_grad():
            ref = fair_model.network(tokens)
        # onnxruntime fuses and reorders fp32 arithmetic: a few ulps of values up to ~10
        assert max_diff(logits, ref.logits.numpy()) <= 2e-5
        assert max_diff(hidden, ref.last_hidden_state.numpy()) <= 2e-5
