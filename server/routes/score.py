"""``POST /v1/models/{name}/score``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from bionemo_lite.spec import ModelSpec

from ..budget import check_budget, score_cost
from ..deps import ProviderDep, SettingsDep, model_with
from ..errors import ERROR_RESPONSES
from ..responses import json_response
from ..schemas import ScoreRequest, ScoreResponse
from ..validation import check_count, check_proteins

router = APIRouter(tags=["score"])


@router.post("/v1/models/{name}/score", response_model=ScoreResponse, responses=ERROR_RESPONSES)
async def score(
    body: ScoreRequest,
    spec: Annotated[ModelSpec, Depends(model_with("score"))],
    provider: ProviderDep,
    settings: SettingsDep,
) -> Response:
    """Score records: pseudo-log-likelihood per sequence, or one variant-effect score per mutation."""
    check_count(len(body.sequences), settings.max_sequences)
    if spec.score_methods:  # before loading, like poolings
        spec.score_method(body.method)
    check_proteins(spec, body.records(), on_too_long=body.on_too_long)
    check_budget(score_cost(spec, body), settings)  # before any model work
    options, records = body.verb_options(), body.records()
    result = await provider.run(spec.name, "score", lambda model: options.run(model, records).to_dict())
    return await json_response(result)
