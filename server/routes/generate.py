"""``POST /v1/models/{name}/generate``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from bionemo_lite.spec import ModelSpec

from ..budget import check_budget, generate_cost
from ..deps import ProviderDep, SettingsDep, model_with
from ..errors import ERROR_RESPONSES
from ..responses import json_response
from ..schemas import GenerateRequest, GenerateResponse
from ..validation import check_count, check_smiles

router = APIRouter(tags=["generate"])


@router.post("/v1/models/{name}/generate", response_model=GenerateResponse, responses=ERROR_RESPONSES)
async def generate(
    body: GenerateRequest,
    spec: Annotated[ModelSpec, Depends(model_with("generate"))],
    provider: ProviderDep,
    settings: SettingsDep,
) -> Response:
    """Generate new sequences or molecules from seeds (masked infilling, latent-space sampling)."""
    check_count(len(body.sequences), settings.max_sequences)
    records = body.records()  # duplicate ids -> 422 now; residues are the model's to check (seeds carry <mask>)
    check_smiles(spec, records)  # SMILES seeds: length and characters, before RDKit
    check_budget(generate_cost(spec, body), settings)  # before any model work
    options = body.verb_options()
    result = await provider.run(spec.name, "generate", lambda model: options.run(model, records).to_dict())
    return await json_response(result)
