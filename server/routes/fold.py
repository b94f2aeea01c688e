"""``POST /v1/models/{name}/fold``: JSON with confidences, or the bare structure file by ``Accept``.

``pae_format`` makes the PAE matrix compact: base64 float16 inside the JSON,
or the whole answer as an ``.npz`` file (`server.payloads`).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from bionemo_lite.spec import ModelSpec

from ..budget import check_budget, fold_cost
from ..deps import ProviderDep, model_with
from ..errors import ERROR_RESPONSES, error_response
from ..payloads import base64_float16, file_content_types, file_response, metadata_without
from ..responses import json_response
from ..schemas import FoldRequest, FoldResponse
from ..validation import check_fold_sequence

router = APIRouter(tags=["fold"])

MEDIA_TYPES = {"pdb": "chemical/x-pdb", "mmcif": "chemical/x-mmcif"}


def _wanted_file(accept: str) -> str | None:
    """``"pdb"`` / ``"mmcif"`` when the client asked for the bare file, else None (JSON)."""
    for fmt, media in MEDIA_TYPES.items():
        if media in accept:
            return fmt
    return None


def _json_body(result: dict[str, Any], fmt: str) -> dict[str, Any]:
    """Only the requested structure text; the other one if the model could not write it."""
    other = "mmcif" if fmt == "pdb" else "pdb"
    body = dict(result)
    if body.get(fmt) is None and body.get(other) is not None:
        body["warning"] = f"the structure could not be written as {fmt}; returned as {other}"
        fmt, other = other, fmt
    body[other] = None
    body["format"] = fmt
    if body.get("relaxed") is not None:
        body["relaxed"] = {**body["relaxed"], other: None}
    return body


def structure_arrays(answer: dict[str, Any]) -> dict[str, Any]:
    """The arrays (``plddt``, ``pae``) and the structure text of a fold answer, by file path."""
    arrays: dict[str, Any] = {"plddt": np.asarray(answer["plddt"], dtype=np.float32)}
    if answer.get("pae") is not None:
        arrays["pae"] = np.asarray(answer["pae"], dtype=np.float32)
    for fmt in MEDIA_TYPES:
        if answer.get(fmt) is not None:
            arrays[fmt] = answer[fmt]
    return arrays


@router.post(
    "/v1/models/{name}/fold",
    response_model=FoldResponse,
    responses={
        **ERROR_RESPONSES,
        200: {"content": {**{media: {"schema": {"type": "string"}} for media in MEDIA_TYPES.values()},
                          **file_content_types("npz")},
              "description": "JSON, or the bare PDB / mmCIF text with Accept: chemical/x-pdb or chemical/x-mmcif, "
                             'or an .npz file with "pae_format": "npz".'},
        406: {"description": "The structure cannot be written in the format the Accept header asks for."},
    },
)
async def fold(
    body: FoldRequest,
    spec: Annotated[ModelSpec, Depends(model_with("fold"))],
    provider: ProviderDep,
    request: Request,
) -> Response:
    """Predict a structure: PDB or mmCIF text with per-residue pLDDT, pTM and PAE."""
    check_fold_sequence(spec, body.sequence, body.id or "sequence")  # before any model work
    check_budget(fold_cost(spec, body), request.app.state.settings)
    options = body.verb_options()
    result = await provider.run(spec.name, "fold", lambda model: options.run(model, body.sequence).to_dict())
    wanted = _wanted_file(request.headers.get("accept", ""))
    if wanted is None:
        answer = _json_body(result, body.format)
        if body.pae_format == "npz":
            arrays = await run_in_threadpool(structure_arrays, answer)
            return await file_response(arrays, metadata_without(answer, *arrays), "npz", f"{spec.name}-structure")
        if body.pae_format == "base64_float16" and answer.get("pae") is not None:
            answer["pae"] = await run_in_threadpool(base64_float16, answer["pae"])
        return await json_response(answer)
    text = (result["relaxed"] if body.relax else result).get(wanted)
    if text is None:
        return error_response(406, "not_acceptable",
                              f"{spec.name} gave no {wanted} text for this structure; ask for JSON or the other format")
    return PlainTextResponse(text, media_type=MEDIA_TYPES[wanted])
