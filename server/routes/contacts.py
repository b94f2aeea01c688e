"""``POST /v1/models/{name}/contacts``: residue-residue contact maps (ESM-2's contact head)."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from bionemo_lite.spec import ModelSpec

from ..deps import ProviderDep, SettingsDep, model_with
from ..budget import check_budget, contacts_cost
from ..errors import ERROR_RESPONSES
from ..payloads import file_content_types, file_response, metadata_without, per_record, strings
from ..responses import json_response
from ..schemas import ContactsRequest, ContactsResponse
from ..validation import check_count, check_proteins

router = APIRouter(tags=["contacts"])


@router.post(
    "/v1/models/{name}/contacts",
    response_model=ContactsResponse,
    responses={**ERROR_RESPONSES, 200: {"content": file_content_types(),
                                        "description": 'JSON, or a file with "format": "npz" or "h5".'}},
)
async def contacts(
    body: ContactsRequest,
    spec: Annotated[ModelSpec, Depends(model_with("contacts"))],
    provider: ProviderDep,
    settings: SettingsDep,
) -> Response:
    """Contact probabilities between every pair of residues, per record (fair-esm's ``return_contacts``).

    Models loaded without contact-regression weights answer 503 naming the file to add.
    """
    check_count(len(body.sequences), settings.max_sequences)
    records, truncated = check_proteins(spec, body.records(), truncate=body.truncate)
    check_budget(contacts_cost(spec, body), settings)  # before any model work
    options, inputs = body.verb_options(), body.records()
    maps = await provider.run(spec.name, "contacts",
                              lambda model: [np.asarray(m).tolist() for m in options.run(model, inputs)])
    answer = {"model": spec.name, "ids": [r.id for r in records], "contacts": maps,
              "lengths": [len(r.sequence) for r in records], "truncated": truncated}
    if body.format == "json":
        return await json_response(answer)
    arrays = await run_in_threadpool(contact_arrays, answer)
    return await file_response(arrays, metadata_without(answer, *arrays, "contacts"), body.format,
                               f"{spec.name}-contacts")


def contact_arrays(answer: dict[str, Any]) -> dict[str, np.ndarray]:
    """``ids``, ``lengths`` and one ``contacts/{i}`` [L_i, L_i] array per record."""
    return {"ids": strings(answer["ids"]), "lengths": np.asarray(answer["lengths"], dtype=np.int64),
            **per_record("contacts", answer["contacts"])}
