"""OpenFold-3 plugin: tiny random-weight checkpoints in openfold3's own formats, folded
offline on CPU through the real openfold3 featurisation and network (the spec and the
missing-weights error are in test_openfold_spec.py, which needs no openfold3).

Every fold runs under a socket guard: any attempt to open a network connection or
resolve a host name is recorded and refused, and each test asserts there was none.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openfold3")
# Importing openfold3 alone takes ~10 s here, and every test below needs it.
pytestmark = pytest.mark.slow

import torch  # noqa: E402

import bionemo_lite as bl  # noqa: E402
from bionemo_lite.errors import CheckpointError, InvalidInputError  # noqa: E402
from bionemo_lite.structures import StructureFormatError, parse_structure  # noqa: E402
from corrupt_files import DAMAGES, assert_refused, damage  # noqa: E402
from bionemo_lite.zoo.openfold.checkpoint import read_checkpoint  # noqa: E402
from bionemo_lite.zoo.openfold.model import OpenFoldModel, load_openfold  # noqa: E402
from bionemo_lite.zoo.openfold.testing import TINY_MODEL_UPDATE, write_tiny_checkpoint  # noqa: E402

NAME = "openbind-2025-06-30-174k"
SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"  # 33 residues
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"  # 13 heavy atoms
TEST_MAX_TOKENS = 80


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def network_attempts():
    """Refuse (and record) every outgoing connection and DNS lookup in this module."""
    attempts: list[str] = []

    def refuse(what):
        def _refused(*args, **kwargs):
            attempts.append(f"{what}{args[1:] if what.startswith('socket.') else args}")
            raise OSError(f"network access is not allowed in this test ({what})")

        return _refused

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse("socket.connect"))
        mp.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
        mp.setattr(socket, "create_connection", refuse("create_connection"))
        mp.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
        yield attempts


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """The same tiny random weights in the released (EMA-only) and the training layout,
    plus a checkpoint whose atoms land far beyond PDB's columns."""
    folder = tmp_path_factory.mktemp("openfold3")
    return {
        "ema-only": write_tiny_checkpoint(folder / "of3-tiny.pt", "ema-only", seed=0),
        "training": write_tiny_checkpoint(folder / "of3-tiny.ckpt", "training", seed=0),
        "far": write_tiny_checkpoint(folder / "of3-far.pt", "ema-only", seed=0, coordinate_scale=1e4),
    }


@pytest.fixture(scope="module")
def model(checkpoints, network_attempts, one_torch_thread) -> OpenFoldModel:
    """The training-layout checkpoint (it carries its config), loaded through the registry."""
    return bl.load(NAME, weights=checkpoints["training"], max_tokens=TEST_MAX_TOKENS)


@pytest.fixture(scope="module")
def protein_fold(model, network_attempts):
    t0 = time.perf_counter()
    structure = model.fold(SEQ, id="prot")
    print(f"openfold3 tiny CPU protein-only fold ({len(SEQ)} aa): {time.perf_counter() - t0:.2f} s "
          f"{structure.extra['timings']}")
    return structure


# ---------------------------------------------------------------------------- spec, weights


def test_checkpoint_layouts_hold_the_same_weights(checkpoints):
    ema = read_checkpoint(checkpoints["ema-only"])
    training = read_checkpoint(checkpoints["training"])
    assert (ema.layout, training.layout) == ("ema-only", "training-ema")
    assert ema.config is None and training.config is not None
    assert training.config.architecture.shared.c_s == 32
    assert ema.version == training.version == "2.0.0"
    assert ema.params.keys() == training.params.keys()
    assert all(torch.equal(ema.params[k], training.params[k]) for k in ema.params)


def test_unreadable_or_foreign_checkpoints_are_refused(tmp_path, checkpoints):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError):
        read_checkpoint(text)
    import argparse

    pickled = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"args": argparse.Namespace(x=1)}}, pickled)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        read_checkpoint(pickled)
    # The released layout carries no config: without model_update the full-size
    # architecture is built (on the meta device) and the tiny weights do not fit it.
    with pytest.raises(CheckpointError, match="model_update"):
        load_openfold(bl.get_spec(NAME), checkpoints["ema-only"], warm_up=False)


@pytest.mark.parametrize("kind", DAMAGES)
def test_damaged_or_malicious_checkpoints_are_checkpoint_errors_naming_the_file(tmp_path, checkpoints, kind):
    path = tmp_path / "of3.ckpt"
    path.write_bytes(checkpoints["training"].read_bytes())
    damage(path, kind, tmp_path / "code-ran")
    assert_refused(lambda: bl.load(NAME, weights=path, max_tokens=TEST_MAX_TOKENS), path, tmp_path / "code-ran")


def test_precision_is_float32_on_cpu_and_never_float16(checkpoints):
    spec = bl.get_spec(NAME)
    with pytest.raises(ValueError, match="float16"):
        load_openfold(spec, checkpoints["training"], dtype="float16")
    with pytest.raises(ValueError, match="CPU"):
        load_openfold(spec, checkpoints["training"], dtype="bfloat16")


# ---------------------------------------------------------------------------- folding


def test_network_guard_refuses_connections(network_attempts):
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 9), timeout=0.1)
    assert network_attempts and "create_connection" in network_attempts[-1]
    network_attempts.clear()


def test_protein_fold_offline(model, protein_fold, network_attempts):
    s = protein_fold
    assert network_attempts == []
    assert model.featurizer.dataset.template_preprocessor_settings.fetch_missing_structures is False
    assert s.model == NAME and s.id == "prot" and s.sequence == SEQ and s.chains == ["A"]
    assert s.plddt.shape == (len(SEQ),) and s.plddt.dtype == np.float32
    assert np.all((s.plddt >= 0) & (s.plddt <= 100))
    assert s.pae.shape == (len(SEQ), len(SEQ)) and np.all((s.pae >= 0) & (s.pae <= 32))
    assert 0.0 <= s.ptm <= 1.0 and s.iptm is None
    assert s.extra["num_recycles"] == 1 and s.extra["num_samples"] == 2 and s.extra["msa_chains"] == []

    cif = parse_structure(s.mmcif, "mmcif")
    residues = list(cif[0]["A"])
    assert "".join(bl_three_to_one(r.get_resname()) for r in residues) == SEQ
    ca_b = np.array([r["CA"].get_bfactor() for r in residues])
    np.testing.assert_allclose(ca_b, s.plddt, atol=0.01)  # the token's centre atom is CA

    assert s.pdb is not None, s.extra.get("pdb_error")
    pdb = parse_structure(s.pdb, "pdb")
    pdb_ca = np.array([r["CA"].get_coord() for r in pdb[0]["A"]])
    cif_ca = np.array([r["CA"].get_coord() for r in residues])
    np.testing.assert_allclose(pdb_ca, cif_ca, atol=1e-3)
    payload = json.loads(json.dumps(s.to_dict()))  # plain JSON, no numpy inside
    assert len(payload["plddt"]) == len(SEQ) and len(payload["pae"]) == len(SEQ)
    assert isinstance(model, bl.Folder)


def test_protein_ligand_fold_offline(model, network_attempts):
    t0 = time.perf_counter()
    s = model.fold(SEQ, ligands=[ASPIRIN])
    print(f"openfold3 tiny CPU protein+ligand fold ({len(SEQ)} aa + 13 atoms): "
          f"{time.perf_counter() - t0:.2f} s {s.extra['timings']}")
    assert network_attempts == []
    n = len(SEQ) + 13
    assert s.chains == ["A", "B"]
    assert s.plddt.shape == (n,) and s.pae.shape == (n, n)
    assert s.extra["token_chain_ids"] == ["A"] * len(SEQ) + ["B"] * 13
    assert np.all((s.plddt >= 0) & (s.plddt <= 100))
    assert 0.0 <= s.iptm <= 1.0 and set(s.extra["chain_pair_iptm"]) == {"(A, B)"}
    assert s.extra["ligands"] == [{"chain": "B", "smiles": ASPIRIN, "ccd": None, "heavy_atoms": 13}]

    cif = parse_structure(s.mmcif, "mmcif")
    (ligand,) = list(cif[0]["B"])
    assert ligand.id[0].startswith("H_") and len(ligand) == 13
    # the ligand's pLDDT per token is the pLDDT of its atom, written as its B-factor
    np.testing.assert_allclose([a.get_bfactor() for a in ligand], s.plddt[len(SEQ):], atol=0.01)
    if s.pdb is not None:
        pdb_ligand = list(parse_structure(s.pdb, "pdb")[0]["B"])
        assert len(pdb_ligand) == 1 and pdb_ligand[0].get_resname() == "LIG"
    else:
        assert "mmCIF" in s.extra["pdb_error"]


def test_complex_with_msa_and_ccd_ligand(model, network_attempts):
    msa = ">query\nMKTAYIAKQR\n>hit1\nMKSAY-AKQR\n>hit2\nMKTaaAYIAKQ-\n"
    s = model.fold(bl.Record("cplx", "MKTAYIAKQR:GSHMLE"), msa={"A": msa}, ligands=["EDO"],
                   num_samples=1, seed=3)
    assert network_attempts == []
    assert s.id == "cplx"
    assert s.chains == ["A", "B", "C"] and s.sequence == "MKTAYIAKQR:GSHMLE"
    assert s.extra["msa_chains"] == ["A"] and s.extra["num_samples"] == 1 and s.extra["seed"] == 3
    assert s.plddt.shape == (10 + 6 + 4,) and s.iptm is not None
    cif = parse_structure(s.mmcif, "mmcif")
    assert [r.get_resname() for r in cif[0]["C"]] == ["EDO"]


def test_model_is_built_once_and_reused(checkpoints, network_attempts, one_torch_thread, protein_fold, monkeypatch):
    from openfold3.projects.of3_all_atom.model import OpenFold3

    built = []
    original = OpenFold3.__init__

    def counting_init(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(OpenFold3, "__init__", counting_init)
    m = load_openfold(bl.get_spec(NAME), checkpoints["ema-only"], model_update=TINY_MODEL_UPDATE, warm_up=False)
    first = m.fold(SEQ, id="prot")
    second = m.fold(SEQ, id="prot")
    assert len(built) == 1 and m.forward_calls == 2
    assert first.mmcif == second.mmcif  # same seed, same structure
    # Same weights in the other layout (loaded by the `model` fixture): same prediction.
    np.testing.assert_allclose(first.plddt, protein_fold.plddt, atol=1e-4)
    assert first.mmcif == protein_fold.mmcif
    assert network_attempts == []
    m.close()


def test_pdb_overflow_is_reported_not_hidden(checkpoints, network_attempts, one_torch_thread):
    m = load_openfold(bl.get_spec(NAME), checkpoints["far"], model_update=TINY_MODEL_UPDATE, warm_up=False)
    s = m.fold("MKTAYIAKQR", num_samples=1)
    assert s.pdb is None
    assert "PDB" in s.extra["pdb_error"] and "mmCIF" in s.extra["pdb_error"]
    coords = np.array([a.get_coord() for a in parse_structure(s.mmcif, "mmcif").get_atoms()])
    assert np.abs(coords).max() > 9999.999 or coords.min() < -999.999
    with pytest.raises(StructureFormatError, match="mmCIF"):
        m.fold("MKTAYIAKQR", num_samples=1, format="pdb")
    assert network_attempts == []
    m.close()


# ---------------------------------------------------------------------------- bad input

BAD_INPUTS = [
    ("MKTAYJAK", {}, "invalid residue 'J'"),
    ("MKTAY::GSH", {}, "chain B: empty chain"),
    ("", {}, "empty chain"),
    ("MKTAYIAK", {"ligands": ["C1CC(C"]}, "ligand 1: SMILES"),
    ("MKTAYIAK", {"ligands": ["CCO.O"]}, "disconnected"),
    ("MKTAYIAK", {"ligands": ["ccd:QQQQQ"]}, "not in the local Chemical Component Dictionary"),
    ("MKTAYIAK", {"ligands": ["XQZ9"]}, "nor is 'XQZ9' a code in the local Chemical Component Dictionary"),
    ("M" * (TEST_MAX_TOKENS + 1), {}, f"maximum of {TEST_MAX_TOKENS}"),
    ("MKTAYIAK", {"ligands": ["C" * TEST_MAX_TOKENS]}, "ligand heavy atoms"),
    ("MKTAYIAK", {"msa": ">q\nMKTAYIAR\n"}, "does not match the chain"),
    ("MKTAYIAK", {"msa": ">q\nMKTAYIAK\n>s\nMKT\n"}, "match columns"),
    ("MKTAYIAK:GSHM", {"msa": ">q\nMKTAYIAK\n"}, "one MSA was given for 2"),
    ("MKTAYIAK", {"msa": {"C": ">q\nMKTAYIAK\n"}}, "unknown chain 'C'"),
    ("MKTAYIAK", {"format": "xyz"}, "format must be"),
    ("MKTAYIAK", {"num_recycles": -1}, "num_recycles must be an integer in 0..64, got -1"),
    ("MKTAYIAK", {"num_recycles": True}, "num_recycles must be an integer in 0..64, got True"),
    ("MKTAYIAK", {"num_recycles": 65}, "num_recycles must be an integer in 0..64, got 65"),
    ("MKTAYIAK", {"num_samples": 0}, "num_samples must be an integer in 1..100, got 0"),
    ("MKTAYIAK", {"num_samples": 1.5}, "num_samples must be an integer in 1..100, got 1.5"),
    ("MKTAYIAK", {"diffusion_steps": 10**9}, "diffusion_steps must be an integer in 1..10000"),
    ("MKTAYIAK", {"chunk_size": 0}, "chunk_size must be an integer >= 1, got 0"),
    ("MKTAYIAK", {"seed": "x"}, "seed must be an integer >= 0, got 'x'"),
    ("MKTAYIAK", {"seed": False}, "seed must be an integer >= 0, got False"),
    ("MKTAYIAK", {"alignments": ">q\nMKTAYIAK\n"}, "unknown fold option"),
]


@pytest.mark.parametrize(("chains", "options", "reason"), BAD_INPUTS, ids=[b[2][:30] for b in BAD_INPUTS])
def test_invalid_input_is_refused_before_model_work(model, chains, options, reason):
    calls = model.forward_calls
    with pytest.raises(InvalidInputError, match=reason.replace("(", r"\(")) as err:
        model.fold(chains, id="bad", **options)
    assert err.value.record == "bad"
    assert model.forward_calls == calls


def test_bad_residue_error_names_the_position(model):
    with pytest.raises(InvalidInputError) as err:
        model.fold(["MKTAYIAK", "GSHJ"], id="r1")
    assert err.value.position == 4 and "chain B" in err.value.reason


def bl_three_to_one(name: str) -> str:
    from bionemo_lite.structures import ONE_TO_THREE

    return {v: k for k, v in ONE_TO_THREE.items()}[name]
