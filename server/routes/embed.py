"""``POST /v1/models/{name}/embed``."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from bionemo_lite.spec import ModelSpec

from ..deps import BackendDep, SettingsDep, model_with
from ..errors import ERROR_RESPONSES
from ..responses import json_response
from ..schemas import EmbedRequest, EmbedResponse
from ..validation import check_count, check_proteins

router = APIRouter(tags=["embed"])


@router.post("/v1/models/{name}/embed", response_model=EmbedResponse, responses=ERROR_RESPONSES)
async def embed(
    body: EmbedRequest,
    spec: Annotated[ModelSpec, Depends(model_with("embed"))],
    backend: BackendDep,
    settings: SettingsDep,
) -> Response:
    """Embed sequences: one vector per record (mean or BOS pooling) or one per residue, from any layer."""
    check_count(len(body.sequences), settings.max_sequences)
    check_proteins(spec, body.records(), truncate=body.truncate)
    result = await backend.embed(spec.name, body)
    if body.include_hiddens:
        result.update(await _hiddens(backend, spec.name, body))
    return await json_response(result)


async def _hiddens(backend: BackendDep, name: str, body: EmbedRequest) -> dict[str, Any]:
    """BioNeMo's padded ``hiddens`` + ``mask`` from the per-token states, through whichever backend serves."""
    first = body.layer[0] if isinstance(body.layer, list) else body.layer
    per_token = await backend.embed(name, body.model_copy(update={"pooling": "per_residue", "layer": first}))
    arrays = [np.asarray(a, dtype=np.float32) for a in per_token["embeddings"]]
    width = max((len(a) for a in arrays), default=0)
    dim = per_token["dim"]
    hiddens = np.zeros((len(arrays), width, dim), np.float32)
    mask = np.zeros((len(arrays), width), bool)
    for i, a in enumerate(arrays):
        hiddens[i, : len(a)] = a
        mask[i, : len(a)] = True
    return {"hiddens": hiddens.tolist(), "mask": mask.tolist()}
