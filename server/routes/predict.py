"""``POST /v1/models/{name}/predict``: a fine-tuned model's predictions (`bionemo_lite.finetune`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from bionemo_lite.spec import ModelSpec

from ..budget import check_budget, predict_cost
from ..deps import ProviderDep, SettingsDep, model_with
from ..errors import ERROR_RESPONSES
from ..responses import json_response
from ..schemas import PredictRequest, PredictResponse
from ..validation import check_count, check_proteins

router = APIRouter(tags=["predict"])


@router.post("/v1/models/{name}/predict", response_model=PredictResponse, responses=ERROR_RESPONSES)
async def predict(
    body: PredictRequest,
    spec: Annotated[ModelSpec, Depends(model_with("predict"))],
    provider: ProviderDep,
    settings: SettingsDep,
) -> Response:
    """Predict the fine-tuned target of each record: a value (regression) or class probabilities."""
    check_count(len(body.sequences), settings.max_sequences)
    check_proteins(spec, body.records(), truncate=body.truncate)
    check_budget(predict_cost(spec, body), settings)  # before any model work
    options, records = body.verb_options(), body.records()
    result = await provider.run(spec.name, "predict", lambda model: options.run(model, records).to_dict())
    return await json_response(result)
