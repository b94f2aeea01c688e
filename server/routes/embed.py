"""``POST /v1/models/{name}/embed``: JSON, or the arrays as an ``.npz`` / ``.h5`` file (``format``)."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from bionemo_lite.pooling import PER_RESIDUE, is_per_position
from bionemo_lite.spec import ModelSpec

from ..budget import check_budget, embed_cost
from ..deps import ProviderDep, SettingsDep, model_with
from ..errors import ERROR_RESPONSES
from ..payloads import file_content_types, file_response, metadata_without, per_record, stacked, strings
from ..responses import json_response
from ..schemas import EmbedRequest, EmbedResponse
from ..validation import check_count, check_proteins

router = APIRouter(tags=["embed"])


@router.post(
    "/v1/models/{name}/embed",
    response_model=EmbedResponse,
    responses={**ERROR_RESPONSES, 200: {"content": file_content_types(),
                                        "description": 'JSON, or a file with "format": "npz" or "h5".'}},
)
async def embed(
    body: EmbedRequest,
    spec: Annotated[ModelSpec, Depends(model_with("embed"))],
    provider: ProviderDep,
    settings: SettingsDep,
) -> Response:
    """Embed sequences: one vector per record (mean or BOS pooling) or one per residue, from any layer."""
    check_count(len(body.sequences), settings.max_sequences)
    check_proteins(spec, body.records(), on_too_long=body.on_too_long)
    check_budget(embed_cost(spec, body), settings)  # before any model work
    result = one_layout(await provider.embed(spec.name, body.verb_options(), body.records()))
    if body.include_hiddens:
        result.update(await _hiddens(provider, spec.name, body))
    if body.format == "json":
        return await json_response(result)
    arrays = await run_in_threadpool(embedding_arrays, result)  # lists to arrays: CPU work, off the loop
    metadata = metadata_without(result, *arrays, "embeddings", "by_layer")
    return await file_response(arrays, metadata, body.format, f"{spec.name}-embeddings")


def one_layout(result: dict[str, Any]) -> dict[str, Any]:
    """One layer: ``embeddings`` + ``layer``; several: ``by_layer`` alone, so no layer travels twice."""
    out = dict(result)
    if len(out["layers"]) > 1:
        out.pop("embeddings", None)
        out.pop("layer", None)
    else:
        out.pop("by_layer", None)
    return out


def embedding_arrays(result: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of an embed answer under their file paths (see `server.payloads`)."""
    per_residue = is_per_position(result["pooling"])
    dim = int(result["dim"])

    def layer_arrays(name: str, values: list[Any]) -> dict[str, np.ndarray]:
        return per_record(name, values) if per_residue else {name: stacked(values, dim)}

    arrays: dict[str, np.ndarray] = {
        "ids": strings(result["ids"]),
        "lengths": np.asarray(result["lengths"], dtype=np.int64),
        "layers": np.asarray(result["layers"], dtype=np.int64),
    }
    if "by_layer" in result:
        for layer, values in result["by_layer"].items():
            arrays.update(layer_arrays(f"by_layer/{layer}", values))
    else:
        arrays.update(layer_arrays("embeddings", result["embeddings"]))
    if "hiddens" in result:
        empty = not result["ids"]  # [] has no shape to give: [0, 0, D]
        arrays["hiddens"] = np.zeros((0, 0, dim), np.float32) if empty else np.asarray(result["hiddens"], np.float32)
        arrays["mask"] = np.zeros((0, 0), bool) if empty else np.asarray(result["mask"], bool)
    return arrays


async def _hiddens(provider: ProviderDep, name: str, body: EmbedRequest) -> dict[str, Any]:
    """BioNeMo's padded ``hiddens`` + ``mask`` from the per-token states, through whichever provider serves."""
    first = body.layer[0] if isinstance(body.layer, list) else body.layer
    per_token_body = body.model_copy(update={"pooling": PER_RESIDUE.name, "layer": first})
    per_token = await provider.embed(name, per_token_body.verb_options(), per_token_body.records())
    arrays = [np.asarray(a, dtype=np.float32) for a in per_token["embeddings"]]
    width = max((len(a) for a in arrays), default=0)
    dim = per_token["dim"]
    hiddens = np.zeros((len(arrays), width, dim), np.float32)
    mask = np.zeros((len(arrays), width), bool)
    for i, a in enumerate(arrays):
        hiddens[i, : len(a)] = a
        mask[i, : len(a)] = True
    return {"hiddens": hiddens.tolist(), "mask": mask.tolist()}
