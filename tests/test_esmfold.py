"""ESMFold plugin on a tiny random-weight checkpoint, against transformers' own EsmForProteinFolding."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

import bionemo_lite as bl
from bionemo_lite.errors import CheckpointError, InvalidInputError
from bionemo_lite.structures import ATOM37_NAMES, parse_structure
from corrupt_files import DAMAGES, assert_refused, damage
from bionemo_lite.zoo.esmfold.testing import write_tiny_esmfold_dir
from bionemo_lite.zoo.esmfold.inputs import CHAIN_LINKER, RESIDUE_INDEX_OFFSET, encode

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQACDNPW"  # all 20 residues
CA = ATOM37_NAMES.index("CA")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_esmfold_dir(tmp_path_factory.mktemp("esmfold") / "esmfold_tiny")


@pytest.fixture(scope="module")
def model(tiny_dir):
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bl.load("esmfold_v1", weights=tiny_dir)


def _transformers_model(tiny_dir, fp16_esm: bool = True):
    """transformers' own model on the same files, untouched by the plugin."""
    from transformers import EsmConfig, EsmForProteinFolding

    config = EsmConfig.from_pretrained(str(tiny_dir))
    config.esmfold_config.fp16_esm = fp16_esm
    return EsmForProteinFolding.from_pretrained(str(tiny_dir), config=config).eval()


@pytest.fixture(scope="module")
def reference(tiny_dir):
    """The reference in float32 throughout (with the file's fp16_esm, transformers would halve the stem)."""
    return _transformers_model(tiny_dir, fp16_esm=False)


def _reference_atom37(out):
    from transformers.models.esm.openfold_utils.feats import atom14_to_atom37

    return atom14_to_atom37(out["positions"][-1], out)[0].numpy()


def _counting_calls(network):
    calls = []
    handle = network.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls, handle


# ------------------------------------------------------------------ spec and loading

def test_spec_is_registered():
    spec = bl.get_spec("esmfold_v1")
    assert spec in bl.list_models(verb="fold")
    assert spec.verbs == frozenset({"fold"}) and spec.license == "MIT" and spec.family == "esmfold"
    assert spec.max_length == 1022
    assert spec.config["esm_layers"] == 36 and spec.config["trunk_blocks"] == 48
    files = {f.filename for f in spec.weights[0].files}
    assert files == {"config.json", "pytorch_model.bin"} and spec.weights[0].entry is None
    assert "esmfold_3B_v1.pt" in spec.description


@pytest.mark.slow
def test_params_match_the_published_architecture():
    from transformers import EsmConfig, EsmForProteinFolding

    from bionemo_lite.zoo.esmfold.config import hf_config_dict

    with torch.device("meta"):
        net = EsmForProteinFolding(EsmConfig(**hf_config_dict()))
    assert bl.get_spec("esmfold_v1").params == sum(p.numel() for p in net.parameters())


def test_listing_imports_no_torch():
    code = "import sys, bionemo_lite.zoo.esmfold as m; m.specs(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_custom_size_checkpoint_loads_with_a_warning(tiny_dir):
    with pytest.warns(UserWarning, match=r"not the published esmfold_v1 architecture: esm_layers=2 \(published 36\)"):
        m = bl.load("esmfold_v1", weights=tiny_dir)
    assert m.config["esm_layers"] == 2 and m.config["trunk_blocks"] == 1
    assert m.dtype == "float32" and m.network.esm.embeddings.word_embeddings.weight.dtype == torch.float32
    assert next(m.network.trunk.parameters()).dtype == torch.float32


def test_float32_run_keeps_the_stored_weights_unrounded(model, tiny_dir):
    """The file asks for an fp16 stem (as esmfold_v1 does); a float32 run must not see fp16-rounded weights."""
    from safetensors.torch import load_file

    stored = load_file(str(tiny_dir / "model.safetensors"))
    ours = model.network.state_dict()
    for key in ("esm.encoder.layer.0.attention.self.query.weight", "esm.embeddings.word_embeddings.weight",
                "trunk.blocks.0.seq_attention.proj.weight"):
        assert stored[key].dtype == torch.float32 and torch.equal(ours[key], stored[key]), key


def test_loading_from_a_file_inside_the_directory(tiny_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = bl.load("esmfold_v1", weights=tiny_dir / "config.json")
    assert m.fold("MKT").plddt.shape == (3,)


def test_fair_esm_file_gets_the_conversion_hint(tmp_path):
    pt = tmp_path / "esmfold_3B_v1.pt"
    pt.write_bytes(b"not needed")
    with pytest.raises(CheckpointError, match="bionemo_lite.zoo.esmfold.convert"):
        bl.load("esmfold_v1", weights=pt)


def test_esm2_directory_is_not_esmfold(esm2_hf_dir):
    with pytest.raises(CheckpointError, match="not an ESMFold model"):
        bl.load("esmfold_v1", weights=esm2_hf_dir)


def test_missing_or_mismatched_weights(tiny_dir, tmp_path):
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((tiny_dir / "config.json").read_text())
    with pytest.raises(CheckpointError, match="no weights file"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bl.load("esmfold_v1", weights=no_weights)

    wrong = tmp_path / "wrong_shape"
    wrong.mkdir()
    config = json.loads((tiny_dir / "config.json").read_text())
    config["esmfold_config"]["trunk"]["num_blocks"] = 2  # the file holds one block
    (wrong / "config.json").write_text(json.dumps(config))
    (wrong / "model.safetensors").write_bytes((tiny_dir / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="missing"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bl.load("esmfold_v1", weights=wrong)


@pytest.fixture(scope="module")
def tiny_bin_dir(tiny_dir, tmp_path_factory):
    """The same weights as ``pytorch_model.bin`` (facebook/esmfold_v1's layout)."""
    from safetensors.torch import load_file

    folder = tmp_path_factory.mktemp("esmfold_bin") / "esmfold_tiny"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_dir / "config.json").read_text())
    torch.save(load_file(str(tiny_dir / "model.safetensors")), folder / "pytorch_model.bin")
    return folder


@pytest.mark.parametrize("weights", ["pytorch_model.bin", "model.safetensors"])
@pytest.mark.parametrize("kind", DAMAGES)
def test_damaged_or_malicious_weights_are_checkpoint_errors_naming_the_file(
    tiny_dir, tiny_bin_dir, tmp_path, weights, kind
):
    """transformers raised its own errors (UnpicklingError, EOFError, SafetensorError): HTTP 500."""
    folder = shutil.copytree(tiny_bin_dir if weights.endswith(".bin") else tiny_dir, tmp_path / "esmfold")
    damaged = damage(folder / weights, kind, tmp_path / "code-ran")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_refused(lambda: bl.load("esmfold_v1", weights=folder), damaged, tmp_path / "code-ran")


def test_bin_weights_load_as_the_safetensors_ones(model, tiny_bin_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_bin = bl.load("esmfold_v1", weights=tiny_bin_dir)
    np.testing.assert_array_equal(from_bin.predict("MKTAYIAK").positions, model.predict("MKTAYIAK").positions)


def test_shard_index_naming_a_missing_shard_is_a_checkpoint_error(tiny_dir, tmp_path):
    folder = tmp_path / "sharded"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_dir / "config.json").read_text())
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"esm.embeddings.word_embeddings.weight": "model-00001.safetensors"}}))
    with pytest.raises(CheckpointError, match="model-00001.safetensors"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bl.load("esmfold_v1", weights=folder)
    index.write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable shard index"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bl.load("esmfold_v1", weights=folder)


# ------------------------------------------------------------------ parity with transformers

def test_parity_with_transformers(model, reference):
    pred = model.predict(SEQ)
    with torch.no_grad():
        out = reference.infer(SEQ)  # transformers' own residue mapping and defaults
    ref_pos = _reference_atom37(out)
    ref_exists = out["atom37_atom_exists"][0].numpy() > 0.5
    np.testing.assert_array_equal(pred.atom_mask, ref_exists)
    pos_diff = np.abs(pred.positions - ref_pos)[ref_exists].max()
    plddt_diff = np.abs(pred.plddt_atoms - 100 * out["plddt"][0].numpy())[ref_exists].max()
    ca_diff = np.abs(pred.plddt - 100 * out["plddt"][0, :, CA].numpy()).max()
    pae_diff = np.abs(pred.pae - out["predicted_aligned_error"][0].numpy()).max()
    ptm_diff = abs(pred.ptm - float(out["ptm"]))
    print(f"\nparity vs transformers (L={len(SEQ)}): positions {pos_diff:.2e} A, pLDDT {plddt_diff:.2e} "
          f"(CA {ca_diff:.2e}), PAE {pae_diff:.2e} A, pTM {ptm_diff:.2e}")
    assert pos_diff < 1e-4 and plddt_diff < 1e-3 and ca_diff < 1e-3 and pae_diff < 1e-4 and ptm_diff < 1e-6
    # The random weights give non-trivial values (a constant would hide scale bugs).
    assert pred.plddt.std() > 0.1 and 1.0 < pred.plddt.mean() < 99.0 and pred.pae.std() > 0.01


def test_half_precision_stem_matches_transformers_default(tiny_dir):
    """transformers' default for this config: ESM-2 stem in float16, trunk float32; ours with dtype='float16'."""
    ref = _transformers_model(tiny_dir)
    assert ref.esm.embeddings.word_embeddings.weight.dtype == torch.float16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = bl.load("esmfold_v1", weights=tiny_dir, dtype="float16")
    assert half.dtype == "float16" and next(half.network.trunk.parameters()).dtype == torch.float32
    pred = half.predict(SEQ)
    with torch.no_grad():
        out = ref.infer(SEQ)
    exists = out["atom37_atom_exists"][0].numpy() > 0.5
    pos_diff = np.abs(pred.positions - _reference_atom37(out))[exists].max()
    pae_diff = np.abs(pred.pae - out["predicted_aligned_error"][0].numpy()).max()
    print(f"\nparity vs transformers, float16 stem: positions {pos_diff:.2e} A, PAE {pae_diff:.2e} A")
    assert pos_diff < 1e-4 and pae_diff < 1e-4


def test_structure_text_matches_transformers_pdb(model, reference):
    s = model.fold(SEQ)
    with torch.no_grad():
        ref_pdb = reference.infer_pdb(SEQ)
    ours = {(a.get_parent().id[1], a.get_id()): a for a in parse_structure(s.pdb).get_atoms()}
    theirs = {(a.get_parent().id[1], a.get_id()): a for a in parse_structure(ref_pdb).get_atoms()}
    assert ours.keys() == theirs.keys()
    for key, atom in ours.items():
        np.testing.assert_allclose(atom.coord, theirs[key].coord, atol=1.1e-3)
        # transformers writes pLDDT on 0-1 into the B-factors; ours is the same number on 0-100.
        assert atom.bfactor == pytest.approx(100 * theirs[key].bfactor, abs=1.0)


def test_fold_result(model):
    s = model.fold(SEQ.lower())
    assert s.model == "esmfold_v1" and s.id == "sequence" and s.sequence == SEQ and s.chains == ["A"]
    assert s.plddt.shape == (len(SEQ),) and s.pae.shape == (len(SEQ), len(SEQ))
    assert s.plddt.dtype == np.float32 and np.all((s.plddt >= 0) & (s.plddt <= 100))
    assert 0.0 <= s.ptm <= 1.0 and s.mean_plddt == pytest.approx(float(np.mean(s.plddt)))
    residues = list(parse_structure(s.pdb).get_residues())
    assert [r.id[1] for r in residues] == list(range(1, len(SEQ) + 1))
    for residue, value in zip(residues, s.plddt):
        assert residue["CA"].bfactor == pytest.approx(float(value), abs=5.01e-3)
    cif_residues = list(parse_structure(s.mmcif, "mmcif").get_residues())
    assert [r.resname for r in cif_residues] == [r.resname for r in residues]
    json.dumps(s.to_dict())  # JSON-ready, no numpy left


def test_fold_is_deterministic_and_fast_on_cpu(model):
    start = time.perf_counter()
    a = model.fold(SEQ)
    elapsed = time.perf_counter() - start
    b = model.fold(SEQ)
    print(f"\ntiny ESMFold fold of {len(SEQ)} residues on CPU: {elapsed * 1000:.0f} ms")
    assert a.pdb == b.pdb and np.array_equal(a.pae, b.pae)
    assert elapsed < 5.0


# ------------------------------------------------------------------ complexes

def test_two_chains_without_linker(model, reference):
    chain_a, chain_b = "MKTAYIAKQR", "GSHWLVE"
    s = model.fold(f"{chain_a}:{chain_b}")
    n = len(chain_a) + len(chain_b)
    assert s.chains == ["A", "B"] and s.sequence == f"{chain_a}:{chain_b}"
    assert s.plddt.shape == (n,) and s.pae.shape == (n, n)
    structure = parse_structure(s.pdb)
    chains = {c.id: [r for r in c] for c in structure[0]}
    assert list(chains) == ["A", "B"]
    assert [r.id[1] for r in chains["A"]] == list(range(1, len(chain_a) + 1))
    assert [r.id[1] for r in chains["B"]] == list(range(1, len(chain_b) + 1))
    three = {"M": "MET", "K": "LYS", "T": "THR", "A": "ALA", "Y": "TYR", "I": "ILE", "Q": "GLN", "R": "ARG",
             "G": "GLY", "S": "SER", "H": "HIS", "W": "TRP", "L": "LEU", "V": "VAL", "E": "GLU"}
    assert [r.resname for r in chains["A"]] == [three[a] for a in chain_a]
    assert [r.resname for r in chains["B"]] == [three[a] for a in chain_b]
    assert [c.id for c in parse_structure(s.mmcif, "mmcif")[0]] == ["A", "B"]

    # Upstream layout (fair-esm encode_sequence): a poly-G linker, and every chain's block
    # (with the linker after it) shifted by 512 in residue index.
    joined = chain_a + CHAIN_LINKER + chain_b
    residx = torch.arange(len(joined))
    residx[len(chain_a) + len(CHAIN_LINKER):] += RESIDUE_INDEX_OFFSET
    keep = np.r_[np.arange(len(chain_a)), np.arange(len(chain_a) + len(CHAIN_LINKER), len(joined))]
    with torch.no_grad():
        out = reference.infer(joined, position_ids=residx)
    pred = model.predict(f"{chain_a}:{chain_b}")
    assert np.abs(pred.positions - _reference_atom37(out)[keep])[pred.atom_mask].max() < 1e-4
    assert np.abs(pred.pae - out["predicted_aligned_error"][0].numpy()[np.ix_(keep, keep)]).max() < 1e-4
    assert np.abs(pred.plddt - 100 * out["plddt"][0, keep, CA].numpy()).max() < 1e-3
    assert pred.ptm == pytest.approx(float(out["ptm"]), abs=1e-6)


def test_layout_matches_upstream_formula():
    lay = encode("AC:DE:F", 100, linker="GG", residue_index_offset=10)
    assert lay.aatype.tolist() == [0, 4, 7, 7, 3, 6, 7, 7, 13]  # AlphaFold order: A=0 C=4 G=7 D=3 E=6 F=13
    assert lay.residue_index.tolist() == [0, 1, 2, 3, 14, 15, 16, 17, 28]
    assert lay.is_linker.tolist() == [False, False, True, True, False, False, True, True, False]
    assert lay.per_residue_chain_ids() == ["A", "A", "B", "B", "C"]
    assert lay.per_residue_numbers() == [1, 2, 1, 2, 1]


def test_unknown_residues_keep_a_ca(model):
    s = model.fold("MKBXZA")
    residues = list(parse_structure(s.pdb).get_residues())
    assert [r.resname for r in residues] == ["MET", "LYS", "UNK", "UNK", "UNK", "ALA"]
    assert all([a.get_id() for a in r] == ["CA"] for r in residues[2:5])
    assert s.plddt.shape == (6,)
    ca = np.array([r["CA"].coord for r in residues])
    assert np.all(np.linalg.norm(np.diff(ca, axis=0), axis=1) > 0.5)  # placed, not at the origin


# ------------------------------------------------------------------ options

def test_num_recycles_and_chunk_size(model):
    base = model.predict(SEQ)
    none = model.predict(SEQ, num_recycles=0)
    assert np.abs(base.positions - none.positions).max() > 1e-3
    # Upstream's default is max_recycles passes in all, i.e. max_recycles - 1 recycles.
    same = model.predict(SEQ, num_recycles=model.config["max_recycles"] - 1)
    assert np.array_equal(same.positions, base.positions)
    chunked = model.predict(SEQ, chunk_size=4)
    unchunked = model.predict(SEQ, chunk_size=0)
    assert np.abs(chunked.positions - base.positions).max() < 1e-3
    assert np.abs(unchunked.positions - base.positions).max() < 1e-3
    assert model.network.trunk.chunk_size == model._default_chunk_size  # restored after the call


@pytest.mark.parametrize("options, match", [
    ({"num_recycles": -1}, r"num_recycles must be an integer in 0\.\.64, got -1"),
    ({"num_recycles": 1000}, r"num_recycles must be an integer in 0\.\.64, got 1000"),
    ({"num_recycles": True}, "num_recycles must be an integer in 0..64, got True"),
    ({"num_recycles": "3"}, "num_recycles must be an integer in 0..64, got '3'"),
    ({"num_recycles": 2.0}, "num_recycles must be an integer in 0..64, got 2.0"),
    ({"chunk_size": -4}, "chunk_size must be an integer >= 0, got -4"),
    ({"chunk_size": 2.5}, "chunk_size must be an integer >= 0, got 2.5"),
    ({"chunk_size": float("nan")}, "chunk_size must be an integer >= 0, got nan"),
    ({"ligands": ["CCO"]}, "does not accept the option.*ligands"),
    ({"alignments": ">a\nMKT"}, "does not accept the option.*alignments"),
])
def test_bad_options(model, options, match):
    calls, handle = _counting_calls(model.network)
    try:
        with pytest.raises(InvalidInputError, match=match):
            model.fold("MKTAYIAK", **options)
    finally:
        handle.remove()
    assert not calls


# ------------------------------------------------------------------ invalid input

@pytest.mark.parametrize("sequence, record, position, reason", [
    ("MKTJAYIAK", "sequence", 4, "invalid residue 'J'"),
    ("MKT-AYIAK", "sequence", 4, "gaps are not allowed"),
    ("AAAA:BBJ", "sequence", 3, "chain B: invalid residue 'J'"),
    ("AAAA::BBB", "sequence", None, "chain B: empty chain"),
    ("AAAA:", "sequence", None, "chain B: empty chain"),
    (":AAAA", "sequence", None, "chain A: empty chain"),
    ("  ", "sequence", None, "empty chain"),
])
def test_invalid_sequences(model, sequence, record, position, reason):
    calls, handle = _counting_calls(model.network)
    try:
        with pytest.raises(InvalidInputError) as err:
            model.fold(sequence)
    finally:
        handle.remove()
    assert not calls
    assert err.value.record == record and err.value.position == position and reason in err.value.reason


def test_too_long_is_refused_before_any_model_work(model):
    calls, handle = _counting_calls(model.network)
    try:
        with pytest.raises(InvalidInputError, match="1023 residues, more than the model's maximum of 1022") as err:
            model.fold("A" * 1023, record_id="long")
        assert err.value.record == "long"
        with pytest.raises(InvalidInputError, match="1100 residues in 2 chains"):
            model.fold("A" * 600 + ":" + "C" * 500)
    finally:
        handle.remove()
    assert not calls
    # Linkers are not counted: 1022 residues over two chains is accepted.
    assert encode("A" * 600 + ":" + "C" * 422, model.max_length).num_residues == 1022


def test_max_length_can_be_raised_at_load(tiny_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = bl.load("esmfold_v1", weights=tiny_dir, max_length=8)
    assert m.max_length == 8 and m.fold("MKTAYIAK").plddt.shape == (8,)
    with pytest.raises(InvalidInputError, match="maximum of 8"):
        m.fold("MKTAYIAKQ")
