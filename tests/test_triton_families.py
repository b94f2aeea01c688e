"""ProtT5, MegaMolBART and ESMFold exported to Triton and served by one real tritonserver (CPU).

One repository holds every family: ProtT5 in the python format and, as its
encoder-only variant, in the ONNX format run by onnxruntime inside the python
backend; MegaMolBART (trained here for a few seconds until it rebuilds its
training SMILES) with embed, decode, generate and score; ESMFold's fold. One
tritonserver serves it for the whole module, and one API process (uvicorn,
backend=triton) fronts it. Every answer is compared with the same model run
in this process.
"""

from __future__ import annotations

import io
import json
import warnings

import httpx
import numpy as np
import pytest

import bionemo_lite
from bionemo_lite import chem
from bionemo_lite.errors import BackendUnavailableError, InvalidInputError
from bionemo_lite.triton.client import AsyncTritonClient, TritonClient
from bionemo_lite.triton.config import read_parameters
from bionemo_lite.triton.export import export_model
from bionemo_lite.triton.launch import TritonServer, find_tritonserver, required_backends
from bionemo_lite.zoo.esmfold.testing import write_tiny_esmfold_dir
from bionemo_lite.zoo.prott5.testing import write_full as write_prott5_full
from bionemo_lite.zoo.prott5.testing import write_half_encoder as write_prott5_half_encoder
from server_fixtures import running_server, uvicorn_factory
from triton_family_fixtures import TRAINING_SMILES, write_trained_megamolbart
from triton_fixtures import max_abs_diff

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]  # one tritonserver with seven python-backend models for the module

PROTT5 = "prot_t5_xl_uniref50"  # python format
PROTT5_ONNX = "prot_t5_xl_half_uniref50-enc"  # ONNX format (onnxruntime inside the python backend)
MMB = "megamolbart"
ESMFOLD = "esmfold_v1"
PARITY = 1e-5
ONNX_PARITY = 1e-4
FOLD_PARITY = 1e-4
PROTEINS = {
    "p1": "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ",
    "p2": "GSHMLE",
    "p3": "ACDEFGHIKLMNPQRSTVWYXBUZO",
    "p4": "M",
}
SMILES = {name: TRAINING_SMILES[name] for name in ("aspirin", "caffeine", "ibuprofen", "nicotine")}
FOLD_SEQUENCE = "MKTAYIAKQRQISFVKSHFSRQLEERLGL"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("family_weights")
    return {
        PROTT5: write_prott5_full(root / "prott5_full"),
        PROTT5_ONNX: write_prott5_half_encoder(root / "prott5_half"),
        MMB: write_trained_megamolbart(root / "megamolbart"),
        ESMFOLD: write_tiny_esmfold_dir(root / "esmfold"),
    }


@pytest.fixture(scope="module")
def exported(checkpoints, tmp_path_factory) -> dict:
    """Every family in one repository; returns the repository and the export reports."""
    repo = tmp_path_factory.mktemp("families") / "repository"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny checkpoints under published names warn about their size
        reports = {
            PROTT5: export_model(PROTT5, repo, weights=checkpoints[PROTT5], num_threads=1),
            PROTT5_ONNX: export_model(PROTT5_ONNX, repo, weights=checkpoints[PROTT5_ONNX], format="onnx",
                                      onnx_runtime="embedded", num_threads=1),
            MMB: export_model(MMB, repo, weights=checkpoints[MMB], num_threads=1),
            ESMFOLD: export_model(ESMFOLD, repo, weights=checkpoints[ESMFOLD], num_threads=1),
        }
    return {"repository": repo, "reports": reports}


@pytest.fixture(scope="module")
def triton(exported, tmp_path_factory):
    server = TritonServer(exported["repository"], log_path=tmp_path_factory.mktemp("tlog") / "triton.log",
                          startup_timeout=240)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(triton):
    with TritonClient(triton.http_url, "http") as c:
        yield c


@pytest.fixture(scope="module")
def local(checkpoints) -> dict:
    """The same checkpoints run in this process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {name: bionemo_lite.load(name, weights=path) for name, path in checkpoints.items()}


@pytest.fixture(scope="module")
def api(triton, tmp_path_factory):
    env = {"BIONEMO_LITE_BACKEND": "triton", "BIONEMO_LITE_TRITON_URL": triton.grpc_url,
           "BIONEMO_LITE_TRITON_PROTOCOL": "grpc", "BIONEMO_LITE_LOG_LEVEL": "warning"}
    with running_server(uvicorn_factory("bionemo_lite.server.app:create_app"), env, tmp_path_factory.mktemp("api")) as server:
        with httpx.Client(base_url=server.base_url, timeout=120) as http:
            yield http


def invalid_input(fn, *args, **kwargs) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        fn(*args, **kwargs)
    return info.value


def same_error(served: InvalidInputError, local: InvalidInputError) -> None:
    assert (served.record, served.position, served.reason) == (local.record, local.position, local.reason)
    assert str(served) == str(local)


def error_body(exc: InvalidInputError) -> dict:
    """The 422 body the in-process backend answers for `exc` (less its per-request ``request_id``)."""
    return {"error": "invalid_input", "detail": str(exc), **exc.to_dict()}


def body_of(response) -> dict:
    """A JSON error body without its ``request_id``, which every answer has and no two share."""
    body = dict(response.json())
    assert body.pop("request_id") == response.headers["x-request-id"]
    return body


# ---------------------------------------------------------------- the repository


def test_every_family_loads_in_one_server(triton, client, exported):
    states = {m["name"]: m["state"] for m in client.models()}
    assert states == dict.fromkeys([
        PROTT5, PROTT5_ONNX, MMB, f"{MMB}__decode", f"{MMB}__generate", f"{MMB}__score", f"{ESMFOLD}__fold",
    ], "READY")
    reports, repo = exported["reports"], exported["repository"]
    assert reports[MMB].triton_models == {"embed": MMB, "score": f"{MMB}__score", "generate": f"{MMB}__generate",
                                          "decode": f"{MMB}__decode"}
    assert reports[ESMFOLD].triton_models == {"fold": f"{ESMFOLD}__fold"}
    assert reports[PROTT5].triton_models == {"embed": PROTT5}

    smiles_embed = (repo / MMB / "config.pbtxt").read_text()
    assert 'name: "sequences" data_type: TYPE_STRING dims: [ 1 ]' in smiles_embed and "dynamic_batching" in smiles_embed
    assert read_parameters(smiles_embed)["input_kind"] == "smiles"
    decode = (repo / f"{MMB}__decode" / "config.pbtxt").read_text()
    assert 'name: "hiddens" data_type: TYPE_FP32 dims: [ -1, -1, -1 ]' in decode
    assert 'name: "mask" data_type: TYPE_BOOL dims: [ -1, -1 ]' in decode and "max_batch_size: 0" in decode
    fold = (repo / f"{ESMFOLD}__fold" / "config.pbtxt").read_text()
    assert 'name: "sequence" data_type: TYPE_STRING dims: [ 1 ]' in fold
    assert 'name: "pae" data_type: TYPE_FP32 dims: [ -1, -1 ]' in fold and "max_batch_size: 0" in fold
    # Weights travel inside the repository, once per model, shared by the verb models.
    assert (repo / f"{ESMFOLD}__fold" / "1" / "weights" / "esmfold" / "config.json").is_file()
    assert read_parameters(decode)["weights"] == "../../megamolbart/1/weights/megamolbart"


def test_prott5_onnx_export_report(exported):
    """The width comes from the encoder (T5 calls it d_model); the parity check is in the report."""
    repo = exported["repository"]
    saved = json.loads((repo / PROTT5_ONNX / "export_report.json").read_text())
    onnx = saved["onnx"]
    print(f"\nProtT5 ONNX vs torch in onnxruntime: max abs diff {onnx['max_abs_diff']:.2e} over {onnx['per_shape']}")
    assert onnx["max_abs_diff"] <= ONNX_PARITY and onnx["tolerance"] == ONNX_PARITY
    assert len(onnx["per_shape"]) >= 4
    params = read_parameters((repo / PROTT5_ONNX / "config.pbtxt").read_text())
    assert params["embed_dim"] == "32" and params["runtime"] == "onnxruntime"
    assert json.loads(params["onnx_outputs"]) == ["last_hidden_state"]
    tokenizer = json.loads((repo / PROTT5_ONNX / "1" / "tokenizer.json").read_text())
    assert tokenizer["attention_mask_name"] == "attention_mask" and tokenizer["append"] == [1]


def test_prott5_onnx_as_a_standard_triton_onnx_model(checkpoints, tmp_path):
    """``--onnx-runtime triton``: the graph as ``<model>__onnx`` for Triton's onnxruntime backend."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = export_model(PROTT5_ONNX, tmp_path / "repo", weights=checkpoints[PROTT5_ONNX], format="onnx",
                              onnx_runtime="triton")
    assert report.onnx["max_abs_diff"] <= ONNX_PARITY
    graph = tmp_path / "repo" / f"{PROTT5_ONNX}__onnx"
    config = (graph / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and (graph / "1" / "model.onnx").is_file()
    assert 'name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ]' in config
    assert 'name: "attention_mask" data_type: TYPE_INT64 dims: [ -1 ]' in config
    assert 'name: "last_hidden_state" data_type: TYPE_FP32 dims: [ -1, 32 ]' in config
    assert required_backends(tmp_path / "repo") == {PROTT5_ONNX: "python", f"{PROTT5_ONNX}__onnx": "onnxruntime"}
    installation = find_tritonserver()
    if "onnxruntime" not in (installation.available_backends() or set()):
        with pytest.raises(BackendUnavailableError, match="onnxruntime.*--onnx-runtime embedded"):
            TritonServer(tmp_path / "repo", installation=installation).start()


def test_export_command_chooses_verbs(checkpoints, tmp_path):
    import typer
    from typer.testing import CliRunner

    from bionemo_lite.triton.cli import export_command

    app = typer.Typer()
    app.command("export")(export_command)
    app.command("noop")(lambda: None)  # two commands, so typer keeps "export" as a subcommand
    repo = tmp_path / "repo"
    result = CliRunner().invoke(app, ["export", MMB, "--repository", str(repo), "--weights", str(checkpoints[MMB]),
                                      "--verb", "decode", "--verb", "embed"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in repo.iterdir()) == [MMB, f"{MMB}__decode"]
    assert f"{MMB}__decode\tdecode" in result.output
    result = CliRunner().invoke(app, ["export", ESMFOLD, "--repository", str(repo), "--format", "onnx"])
    assert result.exit_code == 1 and "cannot export fold to ONNX" in result.output and "python format" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["export", MMB, "--repository", str(repo), "--weights", str(checkpoints[MMB]),
                                      "--format", "onnx"])
    assert result.exit_code == 1 and "export to ONNX" in result.output
    result = CliRunner().invoke(app, ["export", PROTT5, "--repository", str(repo), "--verb", "fold"])
    assert result.exit_code == 1 and "serve 'fold' on Triton" in result.output


# ---------------------------------------------------------------- ProtT5


@pytest.mark.parametrize("pooling,layer", [("mean", -1), ("per_residue", -1), ("mean", [0, 1, -1])])
def test_prott5_python_format_matches_inprocess(client, local, pooling, layer):
    served = client.embed(PROTT5, PROTEINS, layer=layer, pooling=pooling)
    diff = max_abs_diff(served, local[PROTT5].embed(PROTEINS, layer=layer, pooling=pooling))
    print(f"\nProtT5 python format, {pooling}, layer {layer}: in-process vs Triton max abs diff {diff:.2e}")
    assert diff <= PARITY and served.dim == 32 and served.ids == list(PROTEINS)


@pytest.mark.parametrize("pooling", ["mean", "per_residue"])
def test_prott5_onnx_format_matches_inprocess(client, local, pooling):
    served = client.embed(PROTT5_ONNX, PROTEINS, pooling=pooling)
    diff = max_abs_diff(served, local[PROTT5_ONNX].embed(PROTEINS, pooling=pooling))
    print(f"\nProtT5 ONNX (embedded onnxruntime), {pooling}: in-process torch vs Triton max abs diff {diff:.2e}")
    assert diff <= ONNX_PARITY
    with pytest.raises(InvalidInputError, match="ONNX export holds layer"):
        client.embed(PROTT5_ONNX, PROTEINS, layer=0)


@pytest.mark.parametrize("name", [PROTT5, PROTT5_ONNX])
def test_prott5_bad_residue_is_the_same_error(client, local, name):
    bad = {"ok": "MKT", "bad": "MKTJAYI"}
    served = invalid_input(client.embed, name, bad)
    same_error(served, invalid_input(local[name].embed, bad))
    assert served.record == "bad" and served.position == 4


# ---------------------------------------------------------------- MegaMolBART


@pytest.mark.parametrize("pooling,layer", [("mean", -1), ("per_token", -1), ("mean", [0, -1])])
def test_megamolbart_embed_matches_inprocess(client, local, pooling, layer):
    served = client.embed(MMB, SMILES, layer=layer, pooling=pooling)
    mine = local[MMB].embed(SMILES, layer=layer, pooling=pooling)
    diff = max_abs_diff(served, mine)
    print(f"\nMegaMolBART embed, {pooling}, layer {layer}: in-process vs Triton max abs diff {diff:.2e}")
    assert diff <= PARITY and served.lengths == mine.lengths and served.ids == list(SMILES)


def test_megamolbart_length_policy_counts_tokens(client, local):
    """SMILES are cut (or refused) by the model, in tokens, never by characters in the server."""
    long = {"chain": "C" * 80, "short": SMILES["nicotine"]}
    served = client.embed(MMB, long, pooling="per_token", on_too_long="truncate")
    mine = local[MMB].embed(long, pooling="per_token", on_too_long="truncate")
    assert served.truncated == mine.truncated == ["chain"] and served.lengths == mine.lengths
    assert max_abs_diff(served, mine) <= PARITY
    same_error(invalid_input(client.embed, MMB, long), invalid_input(local[MMB].embed, long))


def test_megamolbart_decode_gives_back_the_molecules(client, local):
    model = local[MMB]
    hiddens, mask = model.encode(list(SMILES.values()))
    served = client.decode(MMB, hiddens, mask)
    assert served == model.decode(hiddens, mask)
    assert [chem.canonical_smiles(s) for s in served] == [chem.canonical_smiles(s) for s in SMILES.values()]
    assert client.decode(MMB, hiddens, mask, method="beam", beam_size=3) == model.decode(
        hiddens, mask, method="beam", beam_size=3)
    rows = [h[m] for h, m in zip(hiddens, mask)]  # the other accepted shape: one [L_i, D] array per molecule
    assert client.decode(MMB, rows) == served
    served_err = invalid_input(client.decode, MMB, hiddens[:, :, :8], mask)
    same_error(served_err, invalid_input(model.decode, hiddens[:, :, :8], mask))


def test_megamolbart_score_matches_inprocess(client, local):
    for method in ("loglik", "loglik_per_token"):
        served = client.score(MMB, SMILES, method=method)
        mine = local[MMB].score(SMILES, method=method)
        diff = float(np.abs(served.scores - mine.scores).max())
        print(f"\nMegaMolBART score {method}: in-process vs Triton max abs diff {diff:.2e}")
        assert diff <= PARITY and served.ids == mine.ids == list(SMILES) and served.method == method


def test_megamolbart_generate_with_seed_is_the_same(client, local):
    seeds = {k: SMILES[k] for k in ("aspirin", "nicotine")}
    options = {"num_molecules": 6, "scaled_radius": 0.5, "seed": 7}
    served = client.generate(MMB, seeds, **options).to_dict()
    mine = local[MMB].generate(seeds, **options).to_dict()
    for got, want in zip(served["generated"], mine["generated"], strict=True):
        assert got["id"] == want["id"] and got["generated"] == want["generated"] and got["stats"] == want["stats"]
        np.testing.assert_allclose(got["scores"], want["scores"], atol=PARITY)
    assert sum(len(r["generated"]) for r in served["generated"]) > 0


@pytest.mark.parametrize("verb", ["embed", "score", "generate"])
def test_megamolbart_bad_smiles_is_the_same_error(client, local, verb):
    bad = {"aspirin": SMILES["aspirin"], "broken": "C1CC"}
    served = invalid_input(getattr(client, verb), MMB, bad)
    same_error(served, invalid_input(getattr(local[MMB], verb), bad))
    assert served.record == "broken"


def test_bad_smiles_fails_only_its_own_request_in_a_batch(triton):
    """Requests merged by the dynamic batcher: the broken one gets its error, the others their answers."""
    import asyncio

    async def run() -> list:
        c = AsyncTritonClient(triton.http_url, "http")
        try:
            bodies = [{k: v} for k, v in SMILES.items()]
            bodies.insert(1, {"broken": "c1cccc1"})
            return await asyncio.gather(*(c.embed(MMB, b) for b in bodies), return_exceptions=True)
        finally:
            await c.close()

    results = asyncio.run(run())
    broken = results.pop(1)
    assert isinstance(broken, InvalidInputError) and broken.record == "broken"
    assert [r.ids for r in results] == [[k] for k in SMILES]


# ---------------------------------------------------------------- ESMFold


def _parse_pdb(text: str):
    from Bio.PDB import PDBParser

    return PDBParser(QUIET=True).get_structure("s", io.StringIO(text))


def test_esmfold_fold_matches_inprocess(client, local):
    for sequence, options in ((FOLD_SEQUENCE, {}), ("MKTAYIAKQR:GSHMLEV", {"num_recycles": 0, "id": "complex"})):
        served = client.fold(ESMFOLD, sequence, **options)
        binding = {"record_id": options["id"]} if "id" in options else {}
        mine = local[ESMFOLD].fold(sequence, **{k: v for k, v in options.items() if k != "id"}, **binding)
        diffs = {"plddt": float(np.abs(served.plddt - mine.plddt).max()),
                 "pae": float(np.abs(served.pae - mine.pae).max()), "ptm": abs(served.ptm - mine.ptm)}
        print(f"\nESMFold {served.id} ({len(served.plddt)} residues): in-process vs Triton {diffs}")
        assert max(diffs.values()) <= FOLD_PARITY
        assert (served.id, served.sequence, served.chains) == (mine.id, mine.sequence, mine.chains)
        assert served.mmcif is not None and served.mmcif.startswith("data_")
        structure = _parse_pdb(served.pdb)
        residues = [r for r in structure.get_residues()]
        assert len(residues) == len(served.plddt) == len(sequence.replace(":", ""))
        assert [c.id for c in structure.get_chains()] == served.chains
        b_factors = [r["CA"].get_bfactor() for r in residues]
        np.testing.assert_allclose(b_factors, served.plddt, atol=0.01)  # pLDDT 0-100 in the B-factors


def test_esmfold_bad_residue_is_the_same_error(client, local):
    for sequence in ("MKTJAYI", "MKTAY:GS1H", "MKT::GSH"):
        served = invalid_input(client.fold, ESMFOLD, sequence)
        same_error(served, invalid_input(local[ESMFOLD].fold, sequence))
    served = invalid_input(client.fold, ESMFOLD, "MKT", temperature=1.0)
    same_error(served, invalid_input(local[ESMFOLD].fold, "MKT", temperature=1.0))


# ---------------------------------------------------------------- the REST API on Triton


def test_api_serves_every_family_through_triton(api, local):
    listed = {m["name"]: m for m in api.get("/v1/models").json()["models"]}
    assert listed[MMB]["triton_verbs"] == ["decode", "embed", "generate", "score"]
    assert listed[ESMFOLD]["triton_verbs"] == ["fold"] and listed[PROTT5]["triton_verbs"] == ["embed"]

    # SMILES embed: the same JSON as the in-process backend (numbers within the parity bound).
    got = api.post(f"/v1/models/{MMB}/embed", json={"sequences": [{"id": k, "sequence": v} for k, v in SMILES.items()]})
    assert got.status_code == 200, got.text
    want = local[MMB].embed(SMILES).to_dict()
    body = got.json()
    assert np.abs(np.asarray(body.pop("embeddings")) - np.asarray(want.pop("embeddings"))).max() <= PARITY
    assert body == want

    hiddens, mask = local[MMB].encode(list(SMILES.values()))
    got = api.post(f"/v1/models/{MMB}/decode", json={"hiddens": hiddens.tolist(), "mask": mask.tolist()})
    assert got.status_code == 200, got.text
    assert got.json() == {"model": MMB, "generated": local[MMB].decode(hiddens, mask)}

    got = api.post(f"/v1/models/{MMB}/score", json={"sequences": list(SMILES.values())})
    assert got.status_code == 200, got.text
    want = local[MMB].score(list(SMILES.values())).to_dict()
    body = got.json()
    np.testing.assert_allclose(body.pop("scores"), want.pop("scores"), atol=PARITY)
    assert body == want

    # "num_molecules" (MolMIM's name) arrives as num_samples and is bound as in-process.
    got = api.post(f"/v1/models/{MMB}/generate",
                   json={"smis": [SMILES["aspirin"]], "num_molecules": 4, "seed": 3, "scaled_radius": 0.5})
    assert got.status_code == 200, got.text
    want = local[MMB].generate([SMILES["aspirin"]], num_molecules=4, seed=3, scaled_radius=0.5).to_dict()
    assert [r["generated"] for r in got.json()["generated"]] == [r["generated"] for r in want["generated"]]

    got = api.post(f"/v1/models/{ESMFOLD}/fold", json={"sequence": FOLD_SEQUENCE, "id": "q1"})
    assert got.status_code == 200, got.text
    body = got.json()
    mine = local[ESMFOLD].fold(FOLD_SEQUENCE, record_id="q1")
    assert body["format"] == "pdb" and body["mmcif"] is None and body["id"] == "q1"
    assert np.abs(np.asarray(body["plddt"]) - mine.plddt).max() <= FOLD_PARITY
    assert np.abs(np.asarray(body["pae"]) - mine.pae).max() <= FOLD_PARITY
    assert len(list(_parse_pdb(body["pdb"]).get_residues())) == len(FOLD_SEQUENCE)
    bare = api.post(f"/v1/models/{ESMFOLD}/fold", json={"sequence": FOLD_SEQUENCE},
                    headers={"Accept": "chemical/x-pdb"})
    assert bare.status_code == 200 and bare.headers["content-type"].startswith("chemical/x-pdb")

    got = api.post(f"/v1/models/{PROTT5}/embed", json={"sequences": list(PROTEINS.values()), "pooling": "mean"})
    assert got.status_code == 200, got.text
    want = local[PROTT5].embed(list(PROTEINS.values())).embeddings
    assert np.abs(np.asarray(got.json()["embeddings"]) - want).max() <= PARITY


def test_api_bad_inputs_are_422_with_the_inprocess_body(api, local):
    bad = {"aspirin": SMILES["aspirin"], "broken": "C1CC"}
    got = api.post(f"/v1/models/{MMB}/embed", json={"sequences": [{"id": k, "sequence": v} for k, v in bad.items()]})
    assert got.status_code == 422, got.text
    assert body_of(got) == error_body(invalid_input(local[MMB].embed, bad))

    got = api.post(f"/v1/models/{MMB}/score", json={"sequences": list(bad.values())})
    assert got.status_code == 422, got.text
    assert body_of(got) == error_body(invalid_input(local[MMB].score, list(bad.values())))

    got = api.post(f"/v1/models/{ESMFOLD}/fold", json={"sequence": "MKTJAYI"})
    assert got.status_code == 422, got.text
    assert body_of(got) == error_body(invalid_input(local[ESMFOLD].fold, "MKTJAYI"))

    # Found by the model inside Triton (routes do not know ESMFold's options).
    got = api.post(f"/v1/models/{ESMFOLD}/fold", json={"sequence": "MKTAYI", "temperature": 0.5})
    assert got.status_code == 422, got.text
    assert body_of(got) == error_body(invalid_input(local[ESMFOLD].fold, "MKTAYI", temperature=0.5))

    got = api.post(f"/v1/models/{PROTT5}/embed", json={"sequences": [{"id": "x", "sequence": "MK1"}]})
    assert got.status_code == 422 and got.json()["record"] == "x" and got.json()["position"] == 3
