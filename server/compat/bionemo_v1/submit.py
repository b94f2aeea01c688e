"""Generate and fold submissions: the native body of each, run as a task (`tasks.py`).

Each builds the native request, runs its checks now (a bad request is a 400
before any task exists) and hands the model call to the task backend; the task's
``response`` is what the client's parser reads: ``{"samples": [{"sample",
"score"}]}`` for molecules (score: Tanimoto to the seed, or the guided property),
``{"pdbs": [pdb]}`` for structures.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

from bionemo_lite.errors import InvalidInputError

from .. import native
from ...schemas import FoldRequest, GenerateRequest
from .catalog import variant
from .schemas import MoleculeGenerateBody
from .tasks import Submission, TaskView, task_backend

PROPERTIES = {"QED": "qed", "plogP": "plogp", "logP": "logp"}  # the client's names -> bionemo_lite.properties
SEED_ID = "seed"
# What a fold job of the job store applies (server/jobs/execute.py build_task); it validates but drops the
# rest (alignments, ligands, family options), so a fold with any of those runs in this process instead.
JOB_FOLD_OPTIONS = {"relax", "num_recycles", "chunk_size", "format"}


def generate_options(body: MoleculeGenerateBody) -> tuple[dict[str, Any], bool]:
    """The native generate options of a BioNeMo body, and whether the search is guided."""
    options: dict[str, Any] = {"num_samples": body.num_samples, "scaled_radius": body.scaled_radius}
    algorithm = body.algorithm.strip().lower()
    if algorithm in ("none", "", "sampling"):
        return options, False
    if algorithm != "cma-es":
        raise RequestValidationError([{"loc": ("body", "algorithm"), "type": "value_error",
                                              "msg": f"unknown algorithm {body.algorithm!r}: use 'CMA-ES' or 'none'"}])
    if body.minimize:
        raise RequestValidationError([{"loc": ("body", "minimize"), "type": "value_error",
                                              "msg": "minimize=true is not served: guided generation maximises the "
                                                     "property"}])
    options["algorithm"] = "cma-es"
    options["property"] = PROPERTIES[body.property_name or "QED"]
    for key in ("iterations", "particles", "min_similarity"):
        if getattr(body, key) is not None:
            options[key] = getattr(body, key)
    return options, True


def samples_answer(result: dict[str, Any], guided: bool) -> dict[str, Any]:
    """The task answer of a native generate result (one seed)."""
    if result["errors"]:
        raise InvalidInputError(result["errors"][0].get("reason") or "the seed could not be read", record=SEED_ID)
    item = result["generated"][0]
    scores = item["scores"] if guided else item["properties"]["tanimoto"]
    return {"samples": [{"sample": smi, "score": score} for smi, score in zip(item["generated"], scores)],
            "served_by": result["model"]}


async def submit_generate(request: Request, model: str, body: MoleculeGenerateBody) -> TaskView:
    options, guided = generate_options(body)
    native_body = native.parse(GenerateRequest, {"sequences": [{"id": SEED_ID, "sequence": body.smi}], **options})
    name = variant(model)
    run = native.generate(request, name, native_body)
    records = [{"id": SEED_ID, "sequence": body.smi}]

    async def answer() -> dict[str, Any]:
        return samples_answer(await run(), guided)

    submission = Submission(model, answer, "generate", name, options, records,
                            lambda results: samples_answer(_generate_rows(results, name), guided))
    return await task_backend(request.app.state).submit(native.owner_of(request), submission)


def fold_answer(result: dict[str, Any], warning: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"pdbs": [native.structure_text(result, "pdb")], "served_by": result["model"],
                              "mean_plddt": result.get("mean_plddt"), "ptm": result.get("ptm")}
    if warning:
        answer["warning"] = warning
    return answer


async def submit_fold(request: Request, model: str, fold: dict[str, Any], warning: str | None = None) -> TaskView:
    native_body = native.parse(FoldRequest, fold)
    name = variant(model)
    run: Callable[[], Awaitable[dict[str, Any]]] = native.fold(request, name, native_body)

    async def answer() -> dict[str, Any]:
        return fold_answer(await run(), warning)

    options = {k: v for k, v in fold.items() if k not in ("sequence", "format")}
    submission = Submission(model, answer, "fold", name, options, [{"id": "structure", "sequence": fold["sequence"]}],
                            lambda results: fold_answer(_fold_result(results, name), warning), results="file",
                            in_process=bool(set(options) - JOB_FOLD_OPTIONS))
    return await task_backend(request.app.state).submit(native.owner_of(request), submission)


# ---- job store results -> the native result shape (issue 12's output files)
def _generate_rows(results: Any, name: str) -> dict[str, Any]:
    """A finished generate job's rows (in memory, or its parquet / csv file) as a native result."""
    rows = [r for r in _rows(results) if r.get("generated") is not None]  # a seed with nothing kept: an empty row
    generated, scores, tanimoto = [], [], []
    for row in rows:
        generated.append(row.get("generated") or row.get("sample") or row.get("smiles"))
        scores.append(row.get("score", row.get("scores")))
        props = row.get("properties")
        if isinstance(props, str):
            props = json.loads(props)
        tanimoto.append((props or {}).get("tanimoto", row.get("tanimoto")))
    return {"model": name, "errors": [],
            "generated": [{"generated": generated, "scores": scores, "properties": {"tanimoto": tanimoto}}]}


def _fold_result(results: Any, name: str) -> dict[str, Any]:
    """A finished fold job's structure (a zip of structure files, or rows) as a native result."""
    if isinstance(results, Path) and zipfile.is_zipfile(results):
        with zipfile.ZipFile(results) as zf:
            names = sorted(n for n in zf.namelist() if n.endswith((".pdb", ".cif", ".mmcif")))
            relaxed = [n for n in names if "relaxed" in n]
            chosen = (relaxed or names)[0]
            text = zf.read(chosen).decode("utf-8")
        key = "pdb" if chosen.endswith(".pdb") else "mmcif"
        return {"model": name, key: text}
    row = _rows(results)[0]
    return {"model": name, "pdb": row.get("pdb"), "mmcif": row.get("mmcif"), "relaxed": row.get("relaxed"),
            "mean_plddt": row.get("mean_plddt"), "ptm": row.get("ptm")}


def _rows(results: Any) -> list[dict[str, Any]]:
    if isinstance(results, list):
        return [dict(r) for r in results]
    path = Path(results)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix == ".csv":
        import csv

        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    raise ValueError(f"cannot read job results from {path.name}")
