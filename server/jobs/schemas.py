"""The bodies of the jobs API: `JobRequest` in, `JobView` out (the contract in docs/architecture.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..schemas import RecordId, StrictBody

VERBS = ("embed", "score", "fold", "generate", "predict", "contacts")
JobState = Literal["queued", "running", "done", "failed", "cancelled"]
OutputFormat = Literal["parquet", "h5", "npz", "csv", "zip"]


class JobRecord(StrictBody):
    """One inline input record; without an id it gets its 0-based index, as in the sync routes."""

    id: RecordId | None = None
    sequence: str = Field(min_length=1, description="Residues (one-letter codes), a SMILES, or chains joined by ':'.")


class JobRequest(StrictBody):
    """What to run: a verb of a model over inline records or an uploaded file (FASTA/CSV/SMI)."""

    verb: Literal["embed", "score", "fold", "generate", "predict", "contacts"]
    model: str = Field(min_length=1, max_length=256, description="A registered model name (GET /v1/models).")
    options: dict[str, Any] = Field(default_factory=dict, description=(
        "The option fields of the verb's synchronous route body (embed: layer, pooling, truncate, window, "
        "window_stride; score: method, truncate, window, window_stride; fold: format, num_recycles, chunk_size, "
        "relax; generate: num_samples, temperature, top_k, seed and family options; predict/contacts: truncate)."))
    records: list[JobRecord] | None = Field(None, min_length=1, description="Inline input (or upload a file).")
    output_format: OutputFormat | None = Field(None, description=(
        "embed/contacts: parquet (default), h5, npz; score/generate/predict: parquet (default) or csv; fold: zip."))
    dedup: bool = Field(True, description="Serve records computed by an earlier job with the same model, "
                                          "weights and options from the store instead of computing them again.")
    priority: int = Field(0, ge=-100, le=100, description="Higher runs first among one owner's jobs and ahead "
                                                         "of other owners' lower ones.")


class JobView(BaseModel):
    """A job as its owner sees it."""

    model_config = ConfigDict(extra="allow")

    id: str
    owner: str
    verb: str
    model: str
    state: JobState
    n_done: int = Field(description="Records finished (in the results).")
    n_failed: int = Field(description="Records that failed (in the errors file).")
    n_total: int = Field(description="Records in the input.")
    progress: float = Field(ge=0, le=1)
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    output_format: str
    n_cached: int = Field(0, description="Records served from the store (dedup) instead of computed.")
    priority: int = 0


class JobPage(BaseModel):
    jobs: list[dict[str, Any]]
    next_offset: int | None
