"""Configuration of the HTTP service, from arguments or ``BIONEMO_LITE_*`` environment variables.

    BIONEMO_LITE_WEIGHTS='esm2_t6_8M_UR50D=/models/esm2_t6_8M_UR50D.pt'   # or a JSON object
    BIONEMO_LITE_PRELOAD=esm2_t6_8M_UR50D                                  # or a JSON list
    BIONEMO_LITE_BACKEND=triton BIONEMO_LITE_TRITON_URL=127.0.0.1:8011
    BIONEMO_LITE_NUMERICS=reference                                        # bit-exact ESM-2 (default: fast)
    BIONEMO_LITE_DEFAULT_MODEL=off                                         # never download at start-up

What is loaded at start-up: the `preload` list when given; else, when no
`weights` are given either, every model in the weight cache; else, when the
cache is empty too, `default_model`, downloaded into the cache first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIB = 1 << 20
DEFAULT_MODEL = "esm2_t6_8M_UR50D"  # 30 MB: small enough to fetch on a first start
_OFF = {"", "off", "none", "no", "false", "0"}


def _parse_mapping(value: Any) -> Any:
    """Accept a mapping, a JSON object, or ``NAME=PATH`` items separated by commas (or a list of them)."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        if text.startswith("{"):
            return json.loads(text)
        value = text.split(",")
    if isinstance(value, (list, tuple)):
        out: dict[str, str] = {}
        for item in value:
            name, sep, path = str(item).strip().partition("=")
            if not sep or not name.strip() or not path.strip():
                raise ValueError(f"weights must be given as NAME=PATH, got {item!r}")
            out[name.strip()] = path.strip()
        return out
    if isinstance(value, Mapping):
        # The CLI passes paths as `Path` objects; keep them as text.
        return {str(k): os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in value.items()}
    return value


def _parse_names(value: Any) -> Any:
    """Accept a list, a JSON list, or names separated by commas."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [name.strip() for name in text.split(",") if name.strip()]
    return value


class Settings(BaseSettings):
    """Everything the service needs to start.

    Attributes:
        host: address to bind.
        port: port to bind.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` for the in-process backend.
        dtype: ``"float32"``, ``"float16"``, ``"bfloat16"``; None lets each family choose.
        weights: checkpoint path per model name; other models are looked up in the cache.
        backend: ``"inprocess"`` runs models in this process; ``"triton"`` forwards to a Triton server.
        triton_url: ``host:port`` of the Triton server (HTTP or gRPC port per `triton_protocol`).
        triton_protocol: ``"http"`` or ``"grpc"``.
        max_sequences: most records one request may carry (422 above it).
        max_body_bytes: largest request body accepted (413 above it).
        preload: models loaded at start-up instead of on their first request.
        log_level: uvicorn / logging level.
        torch_threads: intra-op threads for torch on CPU; None keeps torch's default.
        workers: threads running model calls (one call at a time per model).
        batch_window_ms: concurrent ``embed`` requests to one model with the same options that
            arrive within this many milliseconds are merged into one model call (0: never merged).
        max_batch_records: most records in one merged ``embed`` call.
        numerics: ``"fast"`` or ``"reference"`` arithmetic for the families that offer both
            (`bionemo_lite.load`'s ``numerics``); None keeps each family's default (fast).
        default_model: the model downloaded (official URL, sha256-checked when published) and
            served when nothing is configured and the weight cache is empty; ``off`` (or an
            empty value) never downloads. Offline, the service starts anyway and the readiness
            probe names the fix.
        log_format: ``"text"`` (human lines, the default) or ``"json"`` (one JSON object per line,
            with the request id; uvicorn's access log too). See `server.logs`.
        api_keys: the API-key file (`bionemo-lite keys add`); set, every route but health, metrics
            and docs needs ``Authorization: Bearer KEY``. None: no keys (loopback addresses only).
        insecure: serve without keys on a non-loopback address.
        requests_per_minute: each key's rate limit unless its entry sets one (0: none).
        max_in_flight: each key's concurrent requests unless its entry sets one (0: none).
        limit_by_address: without keys, apply the two limits per client address.
        max_token_passes: most work of one embed / contacts / score / generate request, in
            token-passes (residues x forward passes; PLL is the sum of L^2): 422 above it
            (`server.budget`). The default lets 32 x 350-residue PLL through.
        max_fold_work: most work of one fold request, in residue^3-passes (L^3 x (recycles + 1)):
            422 above it. The default lets 1,022 residues with up to 6 recycles through.
        request_timeout_s: a request still unanswered after this many seconds is cancelled (its
            model work stops at the next batch boundary) and answered 504; None: no deadline.
        shutdown_timeout_s: on SIGTERM, how long in-flight requests may finish before the rest
            are cancelled and the process exits (0), under `serve` / ``bionemo-lite serve``
            (``uvicorn --factory`` takes ``--timeout-graceful-shutdown`` instead).
    """

    model_config = SettingsConfigDict(env_prefix="BIONEMO_LITE_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    device: str = "cpu"
    dtype: str | None = None
    weights: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    backend: Literal["inprocess", "triton"] = "inprocess"
    triton_url: str | None = None
    triton_protocol: Literal["http", "grpc"] = "http"
    max_sequences: int = Field(32, ge=1)
    max_body_bytes: int = Field(8 * MIB, ge=1024)
    preload: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    torch_threads: int | None = Field(None, ge=1)
    workers: int = Field(4, ge=1)
    batch_window_ms: float = Field(2.0, ge=0)
    max_batch_records: int = Field(256, ge=1)
    numerics: Literal["fast", "reference"] | None = None
    default_model: str | None = DEFAULT_MODEL
    # observability (server/logs.py, server/metrics.py)
    log_format: Literal["text", "json"] = "text"
    # API keys and per-client limits (server/auth.py, server/keyfile.py, server/ratelimit.py).
    api_keys: str | None = None
    insecure: bool = False
    requests_per_minute: int = Field(600, ge=0)
    max_in_flight: int = Field(16, ge=0)
    limit_by_address: bool = False
    # ---- bounded work per request and graceful shutdown (server/budget.py, server/lifetime.py)
    max_token_passes: int = Field(4_000_000, ge=1)
    max_fold_work: int = Field(8_000_000_000, ge=1)
    request_timeout_s: float | None = Field(300.0, gt=0)
    shutdown_timeout_s: float = Field(30.0, ge=0)
    # ----
    # ---- fine-tuning over HTTP (server/routes/finetune.py): where the runs are written, how many records one takes
    finetune_dir: str | None = None  # None: $BIONEMO_LITE_HOME/finetune-runs
    max_finetune_records: int = Field(5000, ge=1)
    # ----
    # ---- jobs over HTTP (server/jobs/, server/routes/jobs.py): the store, the job folders, the workers
    job_store: str | None = None  # SQLAlchemy URL (sqlite:///..., postgresql://...); None: SQLite beside job_dir
    job_dir: str | None = None  # None: $BIONEMO_LITE_HOME/jobs (shared storage when workers run on other machines)
    job_workers: int = Field(1, ge=0)  # worker processes this service starts (0: workers run elsewhere)
    job_worker_init: str | None = None  # "module:function" each worker calls first (e.g. registering plugins)
    job_worker_models: int = Field(1, ge=1)  # models one worker keeps loaded
    job_chunk_size: int = Field(64, ge=1)  # records per model call and manifest commit
    job_lease_s: float = Field(10.0, gt=0)  # a worker silent this long has lost its job to the others
    job_slice_s: float = Field(30.0, gt=0)  # a job runs this long at most while others wait (fairness)
    job_poll_s: float = Field(0.2, gt=0)
    max_upload_bytes: int = Field(256 * MIB, ge=1024)  # largest file POST /v1/jobs takes (413 above it)
    max_job_records: int = Field(1_000_000, ge=1)
    job_executor: Literal["local", "ray"] = "local"  # ray: each worker runs its jobs on a Ray actor pool
    ray_address: str | None = None  # auto, ray://head:10001; None: a local Ray instance per worker
    ray_actors: int = Field(2, ge=1)
    ray_gpus_per_actor: float = Field(0.0, ge=0)
    # ----

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, value: Any) -> Any:
        return _parse_mapping(value)

    @field_validator("preload", mode="before")
    @classmethod
    def _preload(cls, value: Any) -> Any:
        return _parse_names(value)

    @field_validator("default_model", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip().lower() in _OFF else value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _no_keys(cls, value: Any) -> Any:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        return None if isinstance(value, str) and not value.strip() else value  # an empty variable: keys off

    @field_validator("numerics", mode="before")
    @classmethod
    def _numerics(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower() or None  # an empty variable means "not set", as in the core
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value
