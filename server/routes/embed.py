"""``POST /v1/models/{name}/embed``."""

from __future__ import annotations

from typing import Annotated

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
    return await json_response(await backend.embed(spec.name, body))
