"""Asynchronous jobs: ``POST /v1/jobs``, poll, download, cancel, delete (the service in `server.jobs`).

    POST /v1/jobs  {"verb": "embed", "model": "esm2_t6_8M_UR50D", "records": [{"id": "p1", "sequence": "MKT..."}]}
    POST /v1/jobs  multipart: request=<JobRequest as JSON>, file=@proteins.fasta
    GET  /v1/jobs/{id}  ->  {"state": "running", "n_done": 512, "n_total": 2000, "progress": 0.256, ...}
    GET  /v1/jobs/{id}/results   (409 job_not_done until done; the file, streamed)

Jobs belong to the API key that made them (``anonymous`` without keys): another
key's job answers 404, like an unknown id.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..errors import ERROR_RESPONSES, error_response
from ..jobs.schemas import JobPage, JobRequest, JobView
from ..jobs.service import ANONYMOUS, JobNotDoneError, JobNotFoundError, JobService
from ..ratelimit import CLIENT_STATE
from ..responses import SafeJSONResponse
from ..schemas import ErrorBody

router = APIRouter(tags=["jobs"])

MEDIA_TYPES = {".parquet": "application/vnd.apache.parquet", ".h5": "application/x-hdf5",
               ".npz": "application/octet-stream", ".csv": "text/csv", ".zip": "application/zip"}
JOB_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    404: {"model": ErrorBody, "description": "No such job for this API key (job_not_found), or on submission an "
                                             "unknown model or a verb it lacks."},
    409: {"model": ErrorBody, "description": "The job is not done yet (error job_not_done)."},
    413: {"model": ErrorBody, "description": "Upload over the server's limit (setting max_upload_bytes)."},
}


def owner_of(request: Request) -> str:
    """The API key's name; ``anonymous`` when the service runs without keys."""
    client = request.scope.get("state", {}).get(CLIENT_STATE)
    if client is not None and client.id.startswith("key:"):
        return client.id[4:]
    return ANONYMOUS


def _service(request: Request) -> JobService:
    return request.app.state.jobs


def _links(job_id: str) -> dict[str, str]:
    base = f"/v1/jobs/{job_id}"
    return {"self": base, "results": f"{base}/results", "errors": f"{base}/errors", "cancel": f"{base}/cancel"}


def _answer(view: JobView, status: int = 200) -> SafeJSONResponse:
    return SafeJSONResponse({**view.model_dump(), "links": _links(view.id)}, status_code=status)


def _not_found(exc: JobNotFoundError) -> SafeJSONResponse:
    return error_response(404, "job_not_found", str(exc), job=exc.job_id)


def _parse(text: str | bytes) -> JobRequest:
    try:
        return JobRequest.model_validate_json(text)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]) from None


def _inline_schema(model: type) -> dict[str, Any]:
    """`model`'s JSON schema with its ``$defs`` written in place (the route parses its body itself, so
    FastAPI does not list the model among the document's components)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.split("/")[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


_REQUEST_SCHEMA = {"content": {
    "application/json": {"schema": _inline_schema(JobRequest)},
    "multipart/form-data": {"schema": {"type": "object", "required": ["request", "file"], "properties": {
        "request": {"type": "string", "description": "The JobRequest as JSON text (without records)."},
        "file": {"type": "string", "format": "binary", "description": "FASTA, CSV/TSV or SMI (format from its name)."},
    }}},
}, "required": True}


@router.post("/v1/jobs", status_code=202, responses=JOB_RESPONSES, openapi_extra={"requestBody": _REQUEST_SCHEMA},
             response_model=JobView)
async def submit_job(request: Request) -> Response:
    """Queue a job: JSON (a `JobRequest` with inline ``records``) or multipart (``request`` + ``file``)."""
    service = _service(request)
    owner = owner_of(request)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        settings = request.app.state.settings
        form = await request.form(max_files=1, max_fields=2, max_part_size=1 << 20)
        try:
            text, upload = form.get("request"), form.get("file")
            if not isinstance(text, str):
                return error_response(422, "invalid_request", "multipart jobs need a 'request' field: the JobRequest "
                                      "as JSON text")
            if not isinstance(upload, UploadFile) or not upload.filename:
                return error_response(422, "invalid_request", "multipart jobs need a 'file' field with a file name")
            body = _parse(text)
            folder = service.root / "uploads"
            folder.mkdir(parents=True, exist_ok=True)
            name = Path(upload.filename).name
            with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".upload") as fh:
                await run_in_threadpool(shutil.copyfileobj, upload.file, fh, 1 << 20)
                path = Path(fh.name)
            if path.stat().st_size > settings.max_upload_bytes:  # the body limit caught most; the file alone too
                path.unlink(missing_ok=True)
                return error_response(413, "payload_too_large", f"the file is larger than this server's limit of "
                                      f"{settings.max_upload_bytes} bytes (setting max_upload_bytes)",
                                      limit=settings.max_upload_bytes)
            try:
                view = await run_in_threadpool(service.submit, owner, body, path, name)
            finally:
                path.unlink(missing_ok=True)
        finally:
            await form.close()
    else:
        body = _parse(await request.body())
        view = await run_in_threadpool(service.submit, owner, body)
    return _answer(view, 202)


@router.get("/v1/jobs", response_model=JobPage, responses=JOB_RESPONSES)
async def list_jobs(request: Request, limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0)) -> Response:
    """The caller's jobs, newest first; ``next_offset`` is null on the last page."""
    views = await run_in_threadpool(_service(request).list, owner_of(request), limit + 1, offset)
    more = len(views) > limit
    jobs = [{**v.model_dump(), "links": _links(v.id)} for v in views[:limit]]
    return SafeJSONResponse({"jobs": jobs, "next_offset": offset + limit if more else None})


@router.get("/v1/jobs/{job_id}", response_model=JobView, responses=JOB_RESPONSES)
async def get_job(request: Request, job_id: str) -> Response:
    try:
        return _answer(await run_in_threadpool(_service(request).get, owner_of(request), job_id))
    except JobNotFoundError as exc:
        return _not_found(exc)


@router.get("/v1/jobs/{job_id}/results", responses=JOB_RESPONSES)
async def job_results(request: Request, job_id: str, format: str | None = Query(None)) -> Response:
    """The finished output, streamed: embed/contacts Parquet/HDF5/NPZ, score/generate/predict Parquet/CSV,
    fold a zip of the structures and ``summary.csv``. ``format`` converts a table (parquet <-> csv)."""
    service = _service(request)
    owner = owner_of(request)
    try:
        path = await run_in_threadpool(service.results_path, owner, job_id)
    except JobNotFoundError as exc:
        return _not_found(exc)
    except JobNotDoneError as exc:
        return error_response(409, "job_not_done", str(exc), state=exc.state)
    if format is not None and f".{format}" != path.suffix:
        from ..jobs.convert import converted

        try:
            path = await run_in_threadpool(converted, path, format)
        except ValueError as exc:
            return error_response(422, "invalid_request", str(exc))
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
                        filename=f"{job_id}{path.suffix}")


@router.get("/v1/jobs/{job_id}/errors", responses=JOB_RESPONSES)
async def job_errors(request: Request, job_id: str) -> Response:
    """The failed records so far as CSV (``id``, ``reason``); just the header when none failed."""
    try:
        path = await run_in_threadpool(_service(request).errors_path, owner_of(request), job_id)
    except JobNotFoundError as exc:
        return _not_found(exc)
    if path is None:
        return Response("id,reason\n", media_type="text/csv")
    return FileResponse(path, media_type="text/csv", filename=f"{job_id}.errors.csv")


@router.post("/v1/jobs/{job_id}/cancel", response_model=JobView, responses=JOB_RESPONSES)
async def cancel_job(request: Request, job_id: str) -> Response:
    try:
        return _answer(await run_in_threadpool(_service(request).cancel, owner_of(request), job_id))
    except JobNotFoundError as exc:
        return _not_found(exc)


@router.delete("/v1/jobs/{job_id}", status_code=204, responses=JOB_RESPONSES)
async def delete_job(request: Request, job_id: str) -> Response:
    try:
        await run_in_threadpool(_service(request).delete, owner_of(request), job_id)
    except JobNotFoundError as exc:
        return _not_found(exc)
    return Response(status_code=204)

