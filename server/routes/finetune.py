"""``POST /v1/models/{name}/finetune``: fine-tune model `name` on the request's records, register the result.

Synchronous, and so bounded like every request: by the compute budget (`server/budget.py:
finetune_cost`; a LoRA run over many epochs is a batch job, ``bionemo-lite finetune``) and the
request deadline. The run is written to ``finetune_dir/<name>/`` and registered under `name` in
the weight cache, so ``POST /v1/models/<name>/predict`` answers at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from bionemo_lite.spec import ModelSpec

from ..budget import check_budget, finetune_cost
from ..deps import ProviderDep, SettingsDep, model_with
from ..errors import ERROR_RESPONSES
from ..responses import json_response
from ..schemas import FinetuneRequest, FinetuneResponse
from ..settings import Settings
from ..validation import check_count, check_proteins

router = APIRouter(tags=["finetune"])


def runs_folder(settings: Settings) -> Path:
    """Where the service writes fine-tunes: ``finetune_dir``, else ``$BIONEMO_LITE_HOME/finetune-runs``."""
    from bionemo_lite.weights import cache_home

    return Path(settings.finetune_dir) if settings.finetune_dir else cache_home() / "finetune-runs"


@router.post("/v1/models/{name}/finetune", response_model=FinetuneResponse, responses=ERROR_RESPONSES)
async def finetune(
    body: FinetuneRequest,
    spec: Annotated[ModelSpec, Depends(model_with("embed"))],
    provider: ProviderDep,
    settings: SettingsDep,
) -> Response:
    """Fine-tune this model on the records and targets; answer the held-out metrics and the card."""
    from bionemo_lite.finetune.data import labelled_set, rows_sha256
    from bionemo_lite.finetune.store import check_free_name

    check_count(len(body.sequences), settings.max_finetune_records)
    check_free_name(body.name)  # before any work: the run would be refused at the end
    options = body.finetune_options()
    options.check()
    records, _ = check_proteins(spec, body.records(), truncate=False)
    labelled = labelled_set(records, body.targets, body.target, body.task, rows_sha256(records, body.targets),
                            where="request")
    check_budget(finetune_cost(spec, body), settings)  # before any model work
    out_dir = runs_folder(settings) / body.name

    def job(model: Any) -> dict[str, Any]:
        from bionemo_lite.finetune.api import finetune as run_finetune

        result = run_finetune(model, labelled, body.target, out_dir, options, name=body.name)
        card = result.card
        return {"model": body.name, "base_model": card.base_model, "task": card.task, "method": card.method,
                "metrics": card.metrics, "seconds": card.seconds, "card": card.to_dict()}

    return await json_response(await provider.run(spec.name, "embed", job))
