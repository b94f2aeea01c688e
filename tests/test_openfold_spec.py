"""OpenFold-3 plugin without the model: the spec, the missing-weights error and request
validation (none of these import torch or openfold3)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import bionemo_lite as bl
from bionemo_lite.errors import InvalidInputError, WeightsNotFoundError
from bionemo_lite.zoo.openfold import MAX_TOKENS, specs
from bionemo_lite.zoo.openfold.inputs import build_request, parse_a3m

NAME = "openbind-2025-06-30-174k"
URL = "https://openfold3-data.s3.amazonaws.com/openfold3-parameters/of3-ob-2025-06-30-174k.pt"


def test_spec_is_declared_without_importing_torch():
    (spec,) = specs()
    assert spec.name == NAME and spec.family == "openfold"
    assert spec.verbs == frozenset({"fold"}) and spec.license == "Apache-2.0"
    assert spec.max_length == MAX_TOKENS and spec.params and spec.params > 3e8
    (source,) = spec.weights
    assert source.format == "openfold3" and source.entry == "of3-ob-2025-06-30-174k.pt"
    assert source.files[0].url == URL
    assert bl.get_spec(NAME) == spec  # registered through the entry point
    code = "import sys, bionemo_lite.zoo.openfold as m; m.specs(); print('torch' in sys.modules, 'openfold3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_missing_weights_name_the_file_and_where_to_get_it(tmp_path):
    with pytest.raises(WeightsNotFoundError) as err:
        bl.load(NAME)
    assert "of3-ob-2025-06-30-174k.pt" in str(err.value)
    assert "openfold-3.readthedocs.io" in str(err.value)
    with pytest.raises(WeightsNotFoundError, match="nowhere.pt"):
        bl.load(NAME, weights=tmp_path / "nowhere.pt")


def test_request_chains_ligands_and_tokens():
    # (CCD-code ligands read biotite's dictionary, seconds: they are covered in test_openfold.py)
    req = build_request("mktay iak:GSHU", ligands=["CCO", {"smiles": "c1ccccc1"}], max_tokens=100, record_id="r")
    assert [c.chain_id for c in req.proteins] == ["A", "B"]
    assert [c.sequence for c in req.proteins] == ["MKTAYIAK", "GSHU"]
    assert req.proteins[1].model_sequence == "GSHX"  # openfold3 has no selenocysteine token
    assert [(lig.chain_id, lig.heavy_atoms, lig.ccd) for lig in req.ligands] == [("C", 3, None), ("D", 6, None)]
    assert req.num_tokens == 8 + 4 + 3 + 6
    assert req.chain_ids == ["A", "B", "C", "D"] and req.sequence == "MKTAYIAK:GSHU"


def test_msa_is_checked_against_its_chain_and_rewritten_for_openfold():
    a3m = "# hhblits\n>query\nMKTAYIAU\n>hit\nMK-aaAYIAK\n"
    assert [h for h, _ in parse_a3m(a3m)] == ["query", "hit"]
    req = build_request(["MKTAYIAU", "GSH"], msa=[a3m, None], max_tokens=100)
    assert req.proteins[0].msa.splitlines()[:2] == [">query", "MKTAYIAX"]  # query row as sent to the model
    assert req.proteins[1].msa is None
    by_id = build_request("MKTAYIAU:GSH", msa={"B": ">q\nGSH\n"}, max_tokens=100)
    assert by_id.proteins[0].msa is None and by_id.proteins[1].msa.startswith(">q\nGSH")


@pytest.mark.parametrize(
    ("chains", "options", "reason"),
    [
        ("MKTAYJAK", {}, "position 6: invalid residue 'J'"),
        (["MKTAY", ""], {}, "chain B: empty chain"),
        ([], {}, "no protein chain"),
        ("MKT", {"ligands": ["C1CC(C"]}, "ligand 1: SMILES"),
        ("MKT", {"ligands": ["CC", {"ccd": "ATP", "smiles": "C"}]}, "ligand 2: give exactly one"),
        ("MKT", {"ligands": ["ccd:AT-P"]}, "not a CCD code"),
        ("MKT", {"ligands": [{"smiles": "CC", "charge": 1}]}, "give exactly one"),
        ("MKT", {"ligands": [""]}, "ligand 1: empty SMILES"),
        ("M" * 11, {}, "maximum of 10"),
        ("MKT", {"msa": ">q\nMKT\n>s\nMKTT\n"}, "row 2"),
        ("MKT", {"msa": "MKT\n"}, "must start with a '>'"),
        ("MKT", {"msa": [None, None]}, "2 MSAs were given for 1"),
    ],
)
def test_invalid_requests(chains, options, reason):
    with pytest.raises(InvalidInputError, match=reason.replace("(", r"\(")) as err:
        build_request(chains, max_tokens=10, record_id="bad", **options)
    assert err.value.record == "bad"


def test_msa_file_paths_are_read(tmp_path):
    path = tmp_path / "a.a3m"
    path.write_text(">q\nMKT\n")
    assert build_request("MKT", msa=path, max_tokens=10).proteins[0].msa.startswith(">q\nMKT")
    with pytest.raises(InvalidInputError, match="does not exist"):
        build_request("MKT", msa=tmp_path / "missing.a3m", max_tokens=10)
