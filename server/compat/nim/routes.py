"""The BioNeMo NIM shapes under ``/nim``, which stands for NVIDIA's hosted base URL
(``https://health.api.nvidia.com/v1``): a client written for a NIM changes only its base URL.

    POST /nim/biology/meta/esm2-650m            {"sequences": [...], "format": "npz"}  -> npz: embeddings [N, D]
    POST /nim/biology/nvidia/esmfold            {"sequence": "..."}                    -> {"pdbs": [...]}
    POST /nim/biology/openfold/openfold3/predict {"inputs": [{"molecules": [...]}]}    -> {"outputs": [...]}
    POST /nim/biology/nvidia/molmim/{embedding,hidden,decode,sampling,generate}        (served by MegaMolBART)

Each route runs the native verb (`..native`); the limits the NIM docs give are
the bodies' (`schemas`), answered 422 as the NIMs do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from bionemo_lite.chains import chain_ids
from bionemo_lite.errors import InvalidInputError

from ...errors import ERROR_RESPONSES, error_response
from ...responses import json_response
from ...schemas import DecodeRequest, EmbedRequest, FoldRequest, GenerateRequest
from .. import native
from ..bionemo_v1.catalog import variant
from ..bionemo_v1.embeddings import SERVED_BY, file_answer, pooled
from ..bionemo_v1.submit import PROPERTIES
from .schemas import (
    Esm2Body,
    EsmFoldBody,
    MolmimDecodeBody,
    MolmimGenerateBody,
    MolmimSamplingBody,
    MolmimSequences,
    OpenFold3Body,
    OpenFold3Input,
)

PREFIX = "/nim"
MOLMIM = "megamolbart"  # what answers the MolMIM routes here
router = APIRouter(prefix=PREFIX, tags=["NIM"], responses=ERROR_RESPONSES)


def _invalid(where: tuple[Any, ...], msg: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", *where), "msg": msg, "type": "value_error"}])


async def _json(content: Any, served_by: str) -> Response:
    response = await json_response(content)
    response.headers[SERVED_BY] = served_by
    return response


@router.post("/biology/meta/esm2-{size}", responses={200: {"description": "npz / h5: `embeddings` [N, D]."}})
async def esm2(size: str, body: Esm2Body, request: Request) -> Response:
    """ESM2 embeddings (650m, 3b, 15b): mean over each sequence's residues, last layer."""
    name = f"esm2-{size}"
    if size not in ("650m", "3b", "15b"):
        return await native_not_found(name)
    model = variant(name)
    return await file_answer({"embeddings": await pooled(request, model, list(body.sequences))}, body.format, model)


async def native_not_found(name: str) -> Response:
    return error_response(404, "unknown_model", f"no NIM model {name!r} here: esm2-650m, esm2-3b, esm2-15b are served")


@router.post("/biology/nvidia/esmfold")
async def esmfold(body: EsmFoldBody, request: Request) -> Response:
    """ESMFold: ``{"pdbs": [pdb]}`` with the confidences beside it."""
    model = variant("esmfold")
    result = await native.fold(request, model, native.parse(FoldRequest, {"sequence": body.sequence}))()
    return await _json({"pdbs": [native.structure_text(result)], "mean_plddt": result["mean_plddt"],
                        "ptm": result["ptm"]}, model)


def openfold3_fold(item: OpenFold3Input) -> dict[str, Any]:
    """The native fold body of one OpenFold3 NIM input: proteins joined as chains, their MSAs by chain,
    ligands (SMILES, or CCD codes as ``ccd:CODE``)."""
    proteins = [m for m in item.molecules if m.type == "protein"]
    others = [i for i, m in enumerate(item.molecules) if m.type in ("dna", "rna")]
    if others:
        raise _invalid(("inputs", 0, "molecules", others[0], "type"),
                       "DNA and RNA chains are not served here: proteins and ligands only")
    if not proteins:
        raise _invalid(("inputs", 0, "molecules"), "at least one protein is needed")
    for i, m in enumerate(item.molecules):
        if m.type == "protein" and not m.sequence:
            raise _invalid(("inputs", 0, "molecules", i, "sequence"), "a protein needs its sequence")
        if m.type == "ligand" and bool(m.smiles) == bool(m.ccd_codes):
            raise _invalid(("inputs", 0, "molecules", i), "a ligand needs smiles or ccd_codes (one of them)")
    ids = chain_ids(len(proteins))
    alignments = {cid: m.msa.main.a3m.alignment for cid, m in zip(ids, proteins) if m.msa is not None}
    ligands: list[str] = []
    for m in item.molecules:
        if m.type == "ligand":
            codes = [m.ccd_codes] if isinstance(m.ccd_codes, str) else (m.ccd_codes or [])
            ligands += [m.smiles] if m.smiles else [f"ccd:{c}" for c in codes]
    fold: dict[str, Any] = {"sequence": ":".join(m.sequence or "" for m in proteins),
                            "format": "pdb" if item.output_format == "pdb" else "mmcif"}
    if item.input_id:
        fold["id"] = item.input_id
    if alignments:
        fold["alignments"] = alignments
    if ligands:
        fold["ligands"] = ligands
    return fold


@router.post("/biology/openfold/openfold3/predict")
async def openfold3(body: OpenFold3Body, request: Request) -> Response:
    """OpenFold3: ``outputs[0].structures_with_scores`` (one fold per diffusion sample, sample seeds 0..n-1),
    best confidence first."""
    item = body.inputs[0]
    fold = openfold3_fold(item)
    model = variant("openfold")
    structures = []
    for seed in range(item.diffusion_samples):
        result = await native.fold(request, model, native.parse(FoldRequest, {**fold, "seed": seed}))()
        fmt = "pdb" if item.output_format == "pdb" else "mmcif"
        structures.append({"structure": native.structure_text(result, fmt), "format": item.output_format,
                           "confidence_score": result["mean_plddt"], "avg_plddt": result["mean_plddt"],
                           "ptm_score": result["ptm"], "iptm_score": result["iptm"], "sample_seed": seed})
    structures.sort(key=lambda s: -(s["confidence_score"] or 0.0))
    return await _json({"request_id": body.request_id,
                        "outputs": [{"input_id": item.input_id, "structures_with_scores": structures}]}, model)


# ---- MolMIM's routes, answered by MegaMolBART
@router.post("/biology/nvidia/molmim/embedding")
async def molmim_embedding(body: MolmimSequences, request: Request) -> Response:
    """``{"embeddings": [[...]]}``: MegaMolBART's masked-mean encoder embeddings."""
    embeddings = await pooled(request, MOLMIM, list(body.sequences))
    return await _json({"embeddings": embeddings.tolist()}, MOLMIM)


@router.post("/biology/nvidia/molmim/hidden")
async def molmim_hidden(body: MolmimSequences, request: Request) -> Response:
    """``{"hiddens": [B, T, D], "mask": [B, T]}``: the per-token encoder states, zero-padded, for /decode."""
    native_body = native.parse(EmbedRequest, {"sequences": list(body.sequences), "pooling": "per_residue"})
    result = await native.embed(request, MOLMIM, native_body)
    rows = [np.asarray(a, dtype=np.float32) for a in result["embeddings"]]
    width = max(len(a) for a in rows)
    hiddens = np.zeros((len(rows), width, int(result["dim"])), np.float32)
    mask = np.zeros((len(rows), width), bool)
    for i, a in enumerate(rows):
        hiddens[i, : len(a)], mask[i, : len(a)] = a, True
    return await _json({"hiddens": hiddens.tolist(), "mask": mask.tolist()}, MOLMIM)


@router.post("/biology/nvidia/molmim/decode")
async def molmim_decode(body: MolmimDecodeBody, request: Request) -> Response:
    """``{"generated": [smiles]}`` from hiddens + mask."""
    native_body = native.parse(DecodeRequest, {"hiddens": body.hiddens, "mask": body.mask})
    return await _json({"generated": await native.decode(request, MOLMIM, native_body)}, MOLMIM)


@router.post("/biology/nvidia/molmim/sampling")
async def molmim_sampling(body: MolmimSamplingBody, request: Request) -> Response:
    """``{"generated": [[smiles]]}``: molecules sampled around each seed."""
    options: dict[str, Any] = {"num_samples": body.num_molecules, "scaled_radius": body.scaled_radius}
    if body.beam_size > 1:
        options.update(method="beam-search-perturbate", beam_size=body.beam_size)
    native_body = native.parse(GenerateRequest, {"sequences": list(body.sequences), **options})
    result = await native.generate(request, MOLMIM, native_body)()
    return await _json({"generated": [item["generated"] for item in result["generated"]],
                        "errors": result["errors"]}, MOLMIM)


@router.post("/biology/nvidia/molmim/generate")
async def molmim_generate(body: MolmimGenerateBody, request: Request) -> Response:
    """``{"generated": [{"smiles", "score"}]}``: CMA-ES-guided (score: the property) or sampled
    (``algorithm: none``; score: Tanimoto to the seed)."""
    options: dict[str, Any] = {"num_samples": body.num_molecules, "scaled_radius": body.scaled_radius}
    guided = body.algorithm == "CMA-ES"
    if guided:
        if body.minimize:
            raise _invalid(("minimize",), "minimize=true is not served: guided generation maximises the property")
        options.update(algorithm="cma-es", property=PROPERTIES[body.property_name], iterations=body.iterations,
                       particles=body.particles, min_similarity=body.min_similarity)
    native_body = native.parse(GenerateRequest, {"sequences": [{"id": "smi", "sequence": body.smi}], **options})
    result = await native.generate(request, MOLMIM, native_body)()
    if result["errors"]:
        raise InvalidInputError(result["errors"][0].get("reason") or "the seed could not be read", record="smi")
    item = result["generated"][0]
    scores = item["scores"] if guided else item["properties"]["tanimoto"]
    return await _json({"generated": [{"smiles": s, "score": v} for s, v in zip(item["generated"], scores)]}, MOLMIM)
