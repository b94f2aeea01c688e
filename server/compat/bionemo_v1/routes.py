"""The BioNeMo service v1 routes, under ``/bionemo/v1``:

    client = BionemoClient(api_key=KEY, api_host="http://HOST:8000/bionemo/v1")

Paths, bodies and answers are those of the official client (``bionemo==0.3.1.post2``,
``bionemo/api/api.py``); the API key it sends as ``Authorization: Bearer`` is the
server's own key check. Every route translates to the native verbs (`..native`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from ...errors import ERROR_RESPONSES
from ...responses import json_response
from .. import native
from . import catalog, embeddings, submit
from .errors import BioNeMoRoute, not_hosted, task_not_found
from .schemas import EsmFoldBody, MoleculeEmbeddingsBody, MoleculeGenerateBody, ProteinEmbeddingsBody
from .tasks import TaskNotFoundError, TaskView, task_backend

PREFIX = "/bionemo/v1"
router = APIRouter(prefix=PREFIX, tags=["BioNeMo service v1"], route_class=BioNeMoRoute,
                   responses={k: v for k, v in ERROR_RESPONSES.items() if k != 422})
FILE_ANSWER = {200: {"content": {embeddings.MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                     "description": "An npz (or h5) file, one row per input; X-Served-By names the variant."}}
TASK_ANSWER = {200: {"description": "The task: `correlation_id`, `control_info.status` "
                                    "(SUBMITTED / PROCESSING / DONE / CANCEL / ERROR) and `response` (JSON text)."}}


def _submitted(view: TaskView) -> dict[str, Any]:
    return view.to_dict()


@router.get("/models")
async def list_models(request: Request) -> Response:
    """``list_models`` / ``verify_key``: the service models this server hosts, the variant serving each."""
    listed = {m["name"]: m for m in await native.provider_of(request).models()}
    models = [catalog.entry(h, bool(listed.get(h.variant, {}).get("weights_available"))) for h in catalog.HOSTED]
    return await json_response({"models": models, "not_hosted": sorted(catalog.NOT_HOSTED)})


@router.post("/protein-embedding/{model}/embeddings", responses=FILE_ANSWER)
async def protein_embeddings(model: str, body: ProteinEmbeddingsBody, request: Request) -> Response:
    """``esm2_sync`` (esm2-650m / esm2-3b / esm2-15b) and ``esm1nv_sync`` (answered by ESM-1b)."""
    if model not in catalog.BY_NAME or catalog.BY_NAME[model].path.split("/")[1] != "protein-embedding":
        return not_hosted(model)
    return await embeddings.protein_embeddings(request, model, body.sequence, body.format)


@router.post("/molecule/{model}/embeddings", responses=FILE_ANSWER)
async def molecule_embeddings(model: str, body: MoleculeEmbeddingsBody, request: Request) -> Response:
    """``megamolbart_embeddings_sync``: the masked-mean encoder embeddings."""
    if model != "megamolbart":
        return not_hosted(model)
    return await embeddings.molecule_embeddings(request, model, body.smis, body.format)


@router.post("/molecule/{model}/generate", responses=TASK_ANSWER)
async def molecule_generate(model: str, body: MoleculeGenerateBody, request: Request) -> Response:
    """``megamolbart_unguided_generate_{sync,async}`` and guided generation (``algorithm: CMA-ES``): a task."""
    if model != "megamolbart":
        return not_hosted(model)
    return await json_response(_submitted(await submit.submit_generate(request, model, body)))


@router.post("/molecule/{model}/decoder")
async def molecule_decoder(model: str) -> Response:
    """``molmim_decode_sync`` / ``moflow_decode_sync``: not hosted (MolMIM's fixed 512-d latent is not MegaMolBART's)."""
    return not_hosted(model)


@router.post("/protein-structure/esmfold/predict-no-aln", responses=TASK_ANSWER)
async def esmfold(body: EsmFoldBody, request: Request) -> Response:
    """``esmfold_{sync,async}``: a task whose answer is ``{"pdbs": [pdb]}``."""
    return await json_response(_submitted(await submit.submit_fold(request, "esmfold", {"sequence": body.sequence})))


@router.post("/protein-structure/openfold/predict", responses=TASK_ANSWER)
async def openfold(
    request: Request,
    sequence: Annotated[str, Form(min_length=1, description="Protein sequence.")],
    msas: Annotated[list[UploadFile] | None, File(description="a3m alignments (several are merged).")] = None,
    use_msa: Annotated[bool, Form(description="Use the uploaded MSAs.")] = True,
    relax_prediction: Annotated[bool, Form(description="AMBER-relax the prediction.")] = True,
) -> Response:
    """``openfold_{sync,async}``: multipart (``sequence``, ``msas`` a3m files, ``use_msa``, ``relax_prediction``)."""
    texts = []
    for i, upload in enumerate(msas or []):
        try:
            texts.append((await upload.read()).decode("utf-8"))
        except UnicodeDecodeError:
            raise RequestValidationError([{"loc": ("body", "msas", i), "type": "value_error",
                                           "msg": f"{upload.filename or 'the MSA file'} is not UTF-8 a3m text"}]) from None
    fold: dict[str, Any] = {"sequence": sequence, "relax": relax_prediction}
    warning = None
    if use_msa and texts:
        fold["alignments"] = merge_a3m(texts)
    elif use_msa or not texts:
        # The service searched databases for MSAs; this server searches none: the fold is single-sequence.
        warning = "no MSA was uploaded: folded from the sequence alone (this server runs no MSA search)"
    return await json_response(_submitted(await submit.submit_fold(request, "openfold", fold, warning)))


def merge_a3m(texts: list[str]) -> str:
    """Several a3m files of one query as one: the first whole, the others without their query row."""
    merged = [texts[0].strip()]
    for text in texts[1:]:
        lines = text.strip().splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith(">")]
        if len(starts) > 1:
            merged.append("\n".join(lines[starts[1]:]))
    return "\n".join(merged) + "\n"


# ---- tasks
@router.get("/task/{correlation_id}", responses=TASK_ANSWER)
async def get_task(correlation_id: str, request: Request) -> Response:
    """``fetch_task_status`` and the client's polling."""
    try:
        view = await task_backend(request.app.state).get(native.owner_of(request), correlation_id)
    except TaskNotFoundError:
        return task_not_found(correlation_id)
    return await json_response(view.to_dict())


@router.delete("/task/{correlation_id}")
async def delete_task(correlation_id: str, request: Request) -> Response:
    """``delete_task``: cancels the task if it still runs, then forgets it."""
    try:
        await task_backend(request.app.state).delete(native.owner_of(request), correlation_id)
    except TaskNotFoundError:
        return task_not_found(correlation_id)
    return await json_response({"correlation_id": correlation_id, "deleted": True})


@router.put("/cancel/{correlation_id}")
async def cancel_task(correlation_id: str, request: Request) -> Response:
    """``cancel_task``: the task stops at its next batch boundary (CANCEL); a finished one is left as it is."""
    try:
        view = await task_backend(request.app.state).cancel(native.owner_of(request), correlation_id)
    except TaskNotFoundError:
        return task_not_found(correlation_id)
    return await json_response(view.to_dict())


@router.get("/tasks")
async def list_tasks(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 10,
                     source: Annotated[str | None, Query(description="Ignored (the client sends 'api').")] = None,
                     ) -> Response:
    """``fetch_tasks``: this API key's most recent tasks, newest first."""
    views = await task_backend(request.app.state).list(native.owner_of(request), limit)
    return await json_response({"tasks": [v.to_dict() for v in views]})


# ---- what this server does not host: a 400 the client raises as IncorrectParamsError, naming what it hosts
@router.post("/protein-structure/alphafold2/predict")
async def alphafold2() -> Response:
    """``alphafold2_{sync,async}``: not hosted."""
    return not_hosted("alphafold2")


@router.post("/molecular-docking/diffdock/generate")
async def diffdock() -> Response:
    """``diffdock_{sync,async}``: not hosted."""
    return not_hosted("diffdock")


@router.post("/protein-sequence/protgpt2/generate")
async def protgpt2() -> Response:
    """``protgpt2_{sync,async}``: not hosted."""
    return not_hosted("protgpt2")


@router.post("/msa-calculation/{algorithm}/align")
async def msa(algorithm: str) -> Response:
    """``msa_{sync,async}``: no sequence database is searched here."""
    return not_hosted("msa")


@router.get("/uniprot/{uniprot_id}")
async def uniprot(uniprot_id: str) -> Response:
    """``get_uniprot``: no outside look-ups."""
    return not_hosted("uniprot")


@router.get("/pubchem/{pubchem_cid}")
async def pubchem(pubchem_cid: str) -> Response:
    """``get_smiles``: no outside look-ups."""
    return not_hosted("pubchem")
