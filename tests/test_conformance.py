"""The conformance grid: every registered variant x every verb it declares, through every door.

Nothing here is written per family. Each family ships ``testing.tiny_checkpoint(folder)`` next to
its loader (``bionemo_lite.zoo.<family>.testing``; families whose variants are stored in different
layouts also take ``name=``), and the grid loads it under every variant's name:

- Python API (all variants): the model is an instance of the verb's Protocol and one call returns
  the verb's result type;
- CLI, HTTP (in-process ASGI app) and Triton (one variant per family, every verb): one call
  each; for Triton every family is exported into one repository served by one real tritonserver
  (marked slow).

A verb the grid has no case for fails `test_every_declared_verb_has_a_case`: a new verb brings
its row here.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import bionemo_lite
from bionemo_lite.cli import app as cli_app
from bionemo_lite.verbs import VERB_PROTOCOLS
from bionemo_lite.results import Decoded, Embeddings, Generated, Scores, Structure
from bionemo_lite.results import Predictions
from bionemo_lite.spec import ModelSpec

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]

PROTEINS = {"p1": "MKTAYIAKQRQISFV", "p2": "GSHMLE"}
SMILES = {"aspirin": "CC(=O)Oc1ccccc1C(=O)O", "ethanol": "CCO"}
MASKED_PROTEINS = {"p1": "MKT<mask>AYIAK<mask>Q"}
FOLD_SEQUENCE = "MKTAYIAKQR"


def records(spec: ModelSpec) -> dict[str, str]:
    return SMILES if spec.input_kind == "smiles" else PROTEINS


def generation_seeds(spec: ModelSpec) -> dict[str, str]:
    """Seeds for ``generate``: SMILES to sample around, or proteins with positions to fill."""
    return SMILES if spec.input_kind == "smiles" else MASKED_PROTEINS


def input_file(folder: Path, inputs: dict[str, str], kind: str) -> Path:
    if kind == "smiles":
        path = folder / "in.smi"
        path.write_text("".join(f"{smiles} {rid}\n" for rid, smiles in inputs.items()))
    else:
        path = folder / "in.fasta"
        path.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in inputs.items()))
    return path


def check_contacts(result: Any, spec: ModelSpec) -> None:
    assert [np.shape(m) for m in result] == [(len(s), len(s)) for s in records(spec).values()]


def check_decoded(result: Any, spec: ModelSpec) -> None:
    assert isinstance(result, Decoded) and len(result) == len(SMILES) and all(isinstance(s, str) for s in result)


def decode_inputs(model: Any) -> tuple[Any, Any]:
    return model.encode(list(SMILES.values()))


@dataclass(frozen=True)
class VerbCase:
    """How the grid calls one verb at each door.

    Attributes:
        result: the type one Python call returns, or a check of what it returns.
        call: one Python call on a loaded model.
        cli: the CLI arguments after ``VERB NAME INPUT`` (None: the CLI has no such command).
        output: the CLI output name.
        http: the JSON body of ``POST /v1/models/{name}/{verb}`` for a model.
        cli_inputs: the records the CLI input file holds.
        triton: one call on the `RemoteModel` serving the variant on Triton, given the local model too
            (None: Triton does not serve the verb).
    """

    result: type | Callable[[Any, ModelSpec], None]
    call: Callable[[Any, ModelSpec], Any]
    cli: tuple[str, ...] | None
    output: str
    http: Callable[[Any, ModelSpec], dict[str, Any]]
    cli_inputs: Callable[[ModelSpec], dict[str, str]] = field(default=records)
    triton: Callable[[Any, Any, ModelSpec], Any] | None = None


def _body(inputs: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"sequences": [{"id": rid, "sequence": seq} for rid, seq in inputs.items()], **extra}


CASES: dict[str, VerbCase] = {
    "embed": VerbCase(
        Embeddings, lambda m, s: m.embed(records(s)), (), "out.parquet", lambda m, s: _body(records(s)),
        triton=lambda r, m, s: r.embed(records(s)),
    ),
    "score": VerbCase(
        Scores, lambda m, s: m.score(records(s)), (), "out.csv", lambda m, s: _body(records(s)),
        triton=lambda r, m, s: r.score(records(s)),
    ),
    "generate": VerbCase(
        Generated, lambda m, s: m.generate(generation_seeds(s), seed=0),
        ("--num-samples", "2", "--seed", "0"), "out.csv",
        lambda m, s: _body(generation_seeds(s), num_samples=2, seed=0), cli_inputs=generation_seeds,
        triton=lambda r, m, s: r.generate(generation_seeds(s), seed=0),
    ),
    "fold": VerbCase(
        Structure, lambda m, s: m.fold(FOLD_SEQUENCE), (), "structures",
        lambda m, s: {"sequence": FOLD_SEQUENCE}, cli_inputs=lambda s: {"f1": FOLD_SEQUENCE},
        triton=lambda r, m, s: r.fold(FOLD_SEQUENCE),
    ),
    "contacts": VerbCase(
        check_contacts, lambda m, s: m.contacts(records(s)), (), "out.npz", lambda m, s: _body(records(s))
    ),
    "decode": VerbCase(
        check_decoded, lambda m, s: m.decode(*decode_inputs(m)), None, "",
        lambda m, s: dict(zip(("hiddens", "mask"), (np.asarray(a).tolist() for a in decode_inputs(m)))),
        triton=lambda r, m, s: r.decode(*decode_inputs(m)),  # hiddens from the local model
    ),
}
CASES["predict"] = VerbCase(  # fine-tuned models (bionemo_lite.finetune)
    Predictions, lambda m, s: m.predict(records(s)), (), "out.csv", lambda m, s: _body(records(s)),
    triton=lambda r, m, s: r.predict(records(s)),
)


def _finetune_specs() -> list[ModelSpec]:
    """A tiny fine-tune variant (written and registered on first use by the ``finetuned`` family's
    ``tiny_checkpoint``), so the grid covers ``predict``; none is registered before then."""
    from bionemo_lite.zoo.finetuned.testing import tiny_spec

    return [tiny_spec()]


SPECS = bionemo_lite.list_models() + _finetune_specs()
FAMILIES = sorted({spec.family for spec in SPECS})
ONE_PER_FAMILY = {family: next(s for s in SPECS if s.family == family) for family in FAMILIES}
VARIANT_VERBS = [pytest.param(s, v, id=f"{s.name}-{v}") for s in SPECS for v in sorted(s.verbs)]
DOOR_VERBS = [pytest.param(s, v, id=f"{s.name}-{v}") for s in ONE_PER_FAMILY.values() for v in sorted(s.verbs)]


def family_testing_module(spec: ModelSpec) -> Any:
    """``testing`` beside the spec's loader module (``pkg.family.loading:load`` -> ``pkg.family.testing``)."""
    package = spec.loader.partition(":")[0].rpartition(".")[0]
    return importlib.import_module(f"{package}.testing")


class TinyCheckpoints:
    """One tiny checkpoint per variant, written on first use; models loaded once per variant."""

    def __init__(self, root: Path):
        self.root = root
        self.paths: dict[str, Path] = {}
        self.models: dict[str, Any] = {}

    def path(self, spec: ModelSpec) -> Path:
        if spec.name not in self.paths:
            make = family_testing_module(spec).tiny_checkpoint
            takes_name = "name" in inspect.signature(make).parameters
            folder = self.root / spec.name
            self.paths[spec.name] = make(folder, name=spec.name) if takes_name else make(folder)
        return self.paths[spec.name]

    def model(self, spec: ModelSpec) -> Any:
        if spec.name not in self.models:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tiny checkpoints are not the published shapes
                self.models[spec.name] = bionemo_lite.load(spec.name, weights=self.path(spec))
        return self.models[spec.name]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> TinyCheckpoints:
    return TinyCheckpoints(tmp_path_factory.mktemp("tiny_checkpoints"))


@pytest.fixture(scope="module")
def http(tiny) -> TestClient:
    """The service over every family's tiny checkpoint (in-process ASGI; models load on first request)."""
    from bionemo_lite.server.app import create_app
    from bionemo_lite.server.settings import Settings

    weights = {spec.name: str(tiny.path(spec)) for spec in ONE_PER_FAMILY.values()}
    with TestClient(create_app(Settings(weights=weights, default_model="off", workers=1))) as client:
        yield client


def test_every_registered_family_ships_a_tiny_checkpoint():
    assert FAMILIES, "no model family is registered"
    for family, spec in ONE_PER_FAMILY.items():
        assert callable(getattr(family_testing_module(spec), "tiny_checkpoint", None)), family


@pytest.mark.parametrize("spec, verb", VARIANT_VERBS)
def test_every_declared_verb_has_a_case(spec, verb):
    assert verb in CASES, f"{spec.name} declares {verb!r}: add its row to CASES"


@pytest.mark.parametrize("spec, verb", VARIANT_VERBS)
def test_python_api(tiny, spec, verb):
    case = CASES[verb]
    model = tiny.model(spec)
    assert isinstance(model, bionemo_lite.BioModel) and model.name == spec.name and verb in model.verbs
    assert isinstance(model, VERB_PROTOCOLS[verb])
    result = case.call(model, spec)
    if isinstance(case.result, type):
        assert isinstance(result, case.result)
        assert not getattr(result, "errors", [])
    else:
        case.result(result, spec)


@pytest.mark.parametrize("spec, verb", DOOR_VERBS)
def test_cli(tiny, tmp_path, spec, verb):
    case = CASES[verb]
    if case.cli is None:
        pytest.skip(f"the CLI has no {verb!r} command")
    source = input_file(tmp_path, case.cli_inputs(spec), spec.input_kind)
    out = tmp_path / case.output
    result = CliRunner().invoke(
        cli_app, [verb, spec.name, str(source), "-o", str(out), "--weights", str(tiny.path(spec)), "-q", *case.cli]
    )
    assert result.exit_code == 0, result.output
    assert out.exists() and not Path(f"{out}.errors.csv").exists()


@pytest.mark.parametrize("spec, verb", DOOR_VERBS)
def test_http(tiny, http, spec, verb):
    response = http.post(f"/v1/models/{spec.name}/{verb}", json=CASES[verb].http(tiny.model(spec), spec))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == spec.name
    assert not body.get("errors")


@pytest.mark.parametrize("spec", ONE_PER_FAMILY.values(), ids=lambda s: s.family)
def test_triton_export(tiny, tmp_path, spec):
    from bionemo_lite.triton.export import export_model
    from bionemo_lite.triton.protocol import SERVABLE_VERBS, triton_model_name

    servable = tuple(v for v in SERVABLE_VERBS if v in spec.verbs)
    if not servable:
        pytest.skip(f"{spec.family} serves no verb on Triton")
    report = export_model(spec.name, tmp_path / "repository", weights=tiny.path(spec), copy=False)
    assert report.triton_models == {verb: triton_model_name(spec.name, verb) for verb in servable}
    for model in report.triton_models.values():
        assert (tmp_path / "repository" / model / "config.pbtxt").is_file()


@pytest.fixture(scope="module")
def triton(tiny, tmp_path_factory):
    """One tritonserver serving every family's tiny checkpoint (python backend); yields a client."""
    from bionemo_lite.triton.client import TritonClient
    from bionemo_lite.triton.export import export_model
    from bionemo_lite.triton.launch import TritonServer, find_tritonserver

    if find_tritonserver() is None:
        pytest.skip("no tritonserver binary (install the triton extra)")
    repository = tmp_path_factory.mktemp("conformance") / "repository"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for spec in ONE_PER_FAMILY.values():
            export_model(spec.name, repository, weights=tiny.path(spec), num_threads=1)
    server = TritonServer(repository, log_path=tmp_path_factory.mktemp("tlog") / "triton.log", startup_timeout=240)
    server.start()
    try:
        with TritonClient(server.http_url, "http") as client:
            yield client
    finally:
        server.stop()


TRITON_VERBS = [pytest.param(s, v, id=f"{s.name}-{v}") for s, v in (p.values for p in DOOR_VERBS)
                if CASES[v].triton is not None]


@pytest.mark.slow
@pytest.mark.parametrize("spec, verb", TRITON_VERBS)
def test_triton(tiny, triton, spec, verb):
    from bionemo_lite.triton.remote import RemoteModel

    case = CASES[verb]
    remote = RemoteModel(spec, triton)  # the same verb Protocols as the in-process model
    assert isinstance(remote, VERB_PROTOCOLS[verb])
    result = case.triton(remote, tiny.model(spec), spec)
    if isinstance(case.result, type):
        assert isinstance(result, case.result)
        assert not getattr(result, "errors", [])
    else:
        case.result(result, spec)
