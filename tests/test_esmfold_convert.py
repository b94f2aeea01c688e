"""fair-esm ESMFold checkpoints -> Hugging Face directory (`bionemo_lite.zoo.esmfold.convert`).

The fixtures write the fair-esm layout from real fair-esm modules where they
import (the ESM-2 stem is fair-esm's own ``ESM2``; fair-esm's ESMFold needs
openfold, so its folding weights come from a tiny transformers model, whose
module names transformers' conversion script copies one to one).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import bionemo_lite as bl
from bionemo_lite.errors import CheckpointError
from esmfold_fixtures import FAIR_CFG, TINY_SHAPE, fair_esm2_stem, save_with_fake_dictconfig, write_fair_esmfold
from bionemo_lite.zoo.esmfold.config import shape_of
from bionemo_lite.zoo.esmfold.convert import convert_fair_esmfold, load_fair_checkpoint


class Payload:
    """Stands for anything in a pickle beyond configuration objects: refused, never unpickled."""


def _load(folder):
    """transformers' own loading, stem kept at the stored precision."""
    from transformers import EsmConfig, EsmForProteinFolding

    config = EsmConfig.from_pretrained(str(folder))
    config.esmfold_config.fp16_esm = False  # else transformers rounds the stem to float16 on load
    return EsmForProteinFolding.from_pretrained(str(folder), config=config).eval()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """fair-esm ESMFold file + esm2_t36_3B_UR50D.pt beside it, converted."""
    folder = tmp_path_factory.mktemp("fair_esmfold")
    pt, sources = write_fair_esmfold(folder / "fair")
    out = convert_fair_esmfold(pt, folder / "hf")
    return out, sources


def test_config_is_read_from_the_pickled_dictconfig_without_omegaconf(tmp_path, monkeypatch):
    pt, _ = write_fair_esmfold(tmp_path)
    names = torch.serialization.get_unsafe_globals_in_checkpoint(str(pt))
    assert "omegaconf.dictconfig.DictConfig" in names
    monkeypatch.setitem(sys.modules, "omegaconf", None)  # the reader must work without omegaconf
    data = load_fair_checkpoint(pt)
    from bionemo_lite.zoo.esmfold.convert import _model_cfg

    cfg = _model_cfg(data)
    assert cfg["trunk"]["max_recycles"] == TINY_SHAPE["max_recycles"]
    assert cfg["trunk"]["structure_module"]["no_blocks"] == TINY_SHAPE["structure_module_blocks"]


def test_converted_architecture(converted):
    out, _ = converted
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["EsmForProteinFolding"] and config["is_folding_model"] is True
    assert shape_of(config) == TINY_SHAPE
    sm = config["esmfold_config"]["trunk"]["structure_module"]
    assert (sm["ipa_dim"], sm["num_qk_points"], sm["num_v_points"], sm["resnet_dim"]) == (8, 2, 2, 16)


def test_folding_weights_are_copied_exactly(converted):
    out, sources = converted
    state = _load(out).state_dict()
    for key, value in sources["folding"].items():
        assert torch.equal(state[key], value), key


def test_stem_matches_fair_esm(converted):
    """The converted stem's hidden states equal fair-esm's own ESM2 on the same tokens."""
    out, _ = converted
    stem, alphabet = fair_esm2_stem(seed=1)
    _, _, tokens = alphabet.get_batch_converter()([("a", "MKTAYIAKQRQISFVK"), ("b", "GSHWLVEA")])
    with torch.no_grad():
        theirs = stem(tokens, repr_layers=range(TINY_SHAPE["esm_layers"] + 1))["representations"]
        ours = _load(out).esm(tokens, attention_mask=tokens != alphabet.padding_idx, output_hidden_states=True)
    mask = (tokens != alphabet.padding_idx).unsqueeze(-1)
    diffs = [float(((ours.hidden_states[i] - theirs[i]) * mask).abs().max()) for i in sorted(theirs)]
    print(f"\nESM-2 stem vs fair-esm, per layer max abs diff: {max(diffs):.2e}")
    assert max(diffs) < 1e-5


def test_converted_checkpoint_folds(converted):
    out, _ = converted
    with pytest.warns(UserWarning, match="not the published"):
        model = bl.load("esmfold_v1", weights=out)
    s = model.fold("MKTAYIAK:GSHW")
    assert s.chains == ["A", "B"] and s.plddt.shape == (12,) and np.isfinite(s.pae).all()


def test_stem_inside_the_esmfold_file_gives_the_same_weights(converted, tmp_path):
    out, _ = converted
    pt, _ = write_fair_esmfold(tmp_path / "inside", stem_inside=True)
    with pytest.raises(CheckpointError, match="--esm-heads"):
        convert_fair_esmfold(pt, tmp_path / "no_heads")  # dim 32 is no published ESM-2 size
    other = convert_fair_esmfold(pt, tmp_path / "hf", esm_heads=TINY_SHAPE["esm_heads"])
    a, b = _load(out).state_dict(), _load(other).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_command_line(tmp_path):
    pt, _ = write_fair_esmfold(tmp_path / "fair")
    out = tmp_path / "hf"
    done = subprocess.run([sys.executable, "-m", "bionemo_lite.zoo.esmfold.convert", str(pt), str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()


def test_command_line_errors_are_one_line(tmp_path, capsys):
    from bionemo_lite.zoo.esmfold.convert import main

    pt, _ = write_fair_esmfold(tmp_path / "fair")
    assert main([str(pt), str(tmp_path / "hf"), "--esm2", str(tmp_path / "nope.pt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "nope.pt" in err and "Traceback" not in err


def test_missing_stem_is_a_clear_error(tmp_path):
    pt, _ = write_fair_esmfold(tmp_path)
    (tmp_path / "esm2_t36_3B_UR50D.pt").unlink()
    with pytest.raises(CheckpointError, match="esm2_t36_3B_UR50D.pt.*--esm2"):
        convert_fair_esmfold(pt, tmp_path / "out")


def test_incomplete_or_foreign_checkpoints(tmp_path):
    _, sources = write_fair_esmfold(tmp_path / "a")
    body = {k: v for k, v in sources["folding"].items() if k != "trunk.structure_module.ipa.head_weights"}
    broken = tmp_path / "a" / "broken.pt"
    save_with_fake_dictconfig(lambda to_cfg: {"model": body, "cfg": {"model": to_cfg(FAIR_CFG)}}, broken)
    with pytest.raises(CheckpointError, match="head_weights"):
        convert_fair_esmfold(broken, tmp_path / "out", esm2_path=tmp_path / "a" / "esm2_t36_3B_UR50D.pt")

    evil = tmp_path / "evil.pt"
    torch.save({"model": {"x": torch.ones(1)}, "cfg": Payload()}, evil)
    with pytest.raises(CheckpointError, match="never loaded"):
        convert_fair_esmfold(evil, tmp_path / "out2")

    extra = dict(sources["folding"])
    extra["some_adapter.weight"] = torch.ones(2)
    odd = tmp_path / "a" / "odd.pt"
    torch.save({"model": extra}, odd)
    with pytest.raises(CheckpointError, match="unexpected weight 'some_adapter.weight'"):
        convert_fair_esmfold(odd, tmp_path / "out3")


def test_conversion_loads_no_pickled_code(tmp_path, monkeypatch):
    """Only weights_only loading: a checkpoint that would need full unpickling is refused."""
    pt, _ = write_fair_esmfold(tmp_path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        convert_fair_esmfold(pt, tmp_path / "out")
    assert calls and all(c is True for c in calls)
