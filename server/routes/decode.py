"""``POST /v1/models/{name}/decode``."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends
from fastapi.responses import Response

from bionemo_lite.spec import ModelSpec

from ..deps import ProviderDep, SettingsDep, model_with
from ..errors import ERROR_RESPONSES
from ..responses import json_response
from ..schemas import DecodeRequest, DecodeResponse
from ..validation import check_count

router = APIRouter(tags=["decode"])


@router.post("/v1/models/{name}/decode", response_model=DecodeResponse, responses=ERROR_RESPONSES)
async def decode(
    body: DecodeRequest,
    spec: Annotated[ModelSpec, Depends(model_with("decode"))],
    provider: ProviderDep,
    settings: SettingsDep,
) -> Response:
    """Decode encoder hidden states (hiddens + mask) back to sequences, e.g. MegaMolBART SMILES."""
    check_count(len(body.hiddens), settings.max_sequences)
    hiddens, mask = np.asarray(body.hiddens, dtype=np.float32), np.asarray(body.mask, dtype=bool)
    options = body.verb_options()
    generated = await provider.run(spec.name, "decode", lambda model: list(options.run(model, hiddens, mask)))
    return await json_response({"model": spec.name, "generated": generated})
