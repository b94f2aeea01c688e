"""The durable job store: SQLAlchemy 2 Core over SQLite (the default) or PostgreSQL (several API replicas).

    BIONEMO_LITE_JOB_STORE=sqlite:////var/lib/bionemo-lite/jobs.sqlite     # default: $BIONEMO_LITE_HOME/jobs.sqlite
    BIONEMO_LITE_JOB_STORE=postgresql://user:pass@db:5432/bionemo          # shared by every replica and worker

Two tables: ``jobs`` (one row per job: what was asked, its state and counts, and
the lease of the worker running it) and ``record_cache`` (finished record
payloads keyed by model identity, options and sequence hash, for dedup across
jobs). The schema is created and upgraded by `migrations.migrate` when the
store opens. A worker *claims* a job with one conditional UPDATE (no row locks,
so the same code is safe on SQLite and PostgreSQL): the job is its own until its
lease runs out (``lease_until``), which it renews while it runs. A worker killed
with -9 stops renewing, and the job is claimable again once the lease expires.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL = ("done", "failed", "cancelled")

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner", String(256), nullable=False, index=True),
    Column("verb", String(32), nullable=False),
    Column("model", String(256), nullable=False),
    Column("options", JSON, nullable=False),
    Column("output_format", String(16), nullable=False),
    Column("input_format", String(16), nullable=False),
    Column("dedup", Boolean, nullable=False),
    Column("priority", Integer, nullable=False, default=0),
    Column("state", String(16), nullable=False, index=True),
    Column("n_done", Integer, nullable=False, default=0),
    Column("n_failed", Integer, nullable=False, default=0),
    Column("n_total", Integer, nullable=False, default=0),
    Column("n_cached", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("error", Text),
    Column("workdir", Text, nullable=False),
    Column("worker", String(128)),
    Column("lease_until", DateTime(timezone=True)),
    Column("last_run_at", DateTime(timezone=True)),  # when a worker last took it (fairness between owners)
    Column("attempts", Integer, nullable=False, default=0),
)

record_cache = Table(
    "record_cache",
    metadata,
    Column("key", String(64), primary_key=True),  # params_hash(model identity, options, verb)
    Column("seq_sha256", String(64), primary_key=True),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes: they were written as UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


@dataclass(frozen=True)
class JobRow:
    """One row of ``jobs``, as read."""

    id: str
    owner: str
    verb: str
    model: str
    options: dict[str, Any]
    output_format: str
    input_format: str
    dedup: bool
    priority: int
    state: str
    n_done: int
    n_failed: int
    n_total: int
    n_cached: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    workdir: str
    worker: str | None
    lease_until: datetime | None
    last_run_at: datetime | None
    attempts: int

    @classmethod
    def of(cls, row: Any) -> JobRow:
        data = dict(row._mapping)
        for name in ("created_at", "started_at", "finished_at", "lease_until", "last_run_at"):
            data[name] = _aware(data[name])
        if isinstance(data["options"], str):
            data["options"] = json.loads(data["options"])
        return cls(**data)


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy's own default driver is psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL and a busy timeout, so API threads and workers share it."""
    url = sqlalchemy_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class JobStore:
    """Jobs and the record cache in one database (see the module docstring)."""

    def __init__(self, url: str):
        from .migrations import migrate

        self.url = url
        self.engine = make_engine(url)
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ---- jobs

    def create(self, **values: Any) -> JobRow:
        job_id = values.pop("id", None) or uuid.uuid4().hex
        row = {"id": job_id, "state": "queued", "n_done": 0, "n_failed": 0, "n_cached": 0, "attempts": 0,
               "created_at": utcnow(), **values}
        with self.engine.begin() as conn:
            conn.execute(insert(jobs).values(**row))
        found = self.get(job_id)
        assert found is not None
        return found

    def get(self, job_id: str) -> JobRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        return None if row is None else JobRow.of(row)

    def list(self, owner: str, limit: int, offset: int) -> list[JobRow]:
        query = (select(jobs).where(jobs.c.owner == owner)
                 .order_by(jobs.c.created_at.desc(), jobs.c.id).limit(limit).offset(offset))
        with self.engine.connect() as conn:
            return [JobRow.of(r) for r in conn.execute(query)]

    def update(self, job_id: str, *, worker: str | None = None, **values: Any) -> bool:
        """Set `values` on a job (only while `worker` holds it, when given); whether a row changed."""
        where = jobs.c.id == job_id
        if worker is not None:
            where = and_(where, jobs.c.worker == worker)
        with self.engine.begin() as conn:
            return conn.execute(update(jobs).where(where).values(**values)).rowcount > 0

    def cancel(self, job_id: str) -> bool:
        """Mark a job cancelled unless it is final already; its worker stops at its next chunk."""
        with self.engine.begin() as conn:
            result = conn.execute(update(jobs).where(and_(jobs.c.id == job_id, jobs.c.state.notin_(FINAL)))
                                  .values(state="cancelled", finished_at=utcnow(), worker=None, lease_until=None))
            return result.rowcount > 0

    def delete(self, job_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(jobs).where(jobs.c.id == job_id))

    def claimable(self, now: datetime) -> list[JobRow]:
        """Jobs a worker may take: queued, or running with an expired lease (its worker died or yielded)."""
        query = select(jobs).where(and_(jobs.c.state.in_(("queued", "running")),
                                        or_(jobs.c.lease_until.is_(None), jobs.c.lease_until < now)))
        with self.engine.connect() as conn:
            return [JobRow.of(r) for r in conn.execute(query)]

    def claim(self, worker: str, lease_s: float, pick: Any) -> JobRow | None:
        """Take the job `pick(claimable rows)` chooses, atomically against other workers; None if none."""
        for _ in range(5):  # another worker may win a race for the same row: choose again
            now = utcnow()
            candidates = self.claimable(now)
            if not candidates:
                return None
            chosen = pick(candidates)
            if chosen is None:
                return None
            where = and_(jobs.c.id == chosen.id, jobs.c.state.in_(("queued", "running")),
                         or_(jobs.c.lease_until.is_(None), jobs.c.lease_until < now))
            values = {"state": "running", "worker": worker, "lease_until": now + timedelta(seconds=lease_s),
                      "last_run_at": now, "attempts": chosen.attempts + 1,
                      "started_at": chosen.started_at or now}
            with self.engine.begin() as conn:
                won = conn.execute(update(jobs).where(where).values(**values)).rowcount > 0
            if won:
                return self.get(chosen.id)  # read after the commit: another connection
        return None

    def renew(self, job_id: str, worker: str, lease_s: float) -> bool:
        """Extend `worker`'s lease; False when the job is no longer its own (cancelled, deleted, taken)."""
        with self.engine.begin() as conn:
            result = conn.execute(update(jobs).where(and_(jobs.c.id == job_id, jobs.c.worker == worker,
                                                          jobs.c.state == "running"))
                                  .values(lease_until=utcnow() + timedelta(seconds=lease_s)))
            return result.rowcount > 0

    def release(self, job_id: str, worker: str) -> None:
        """Give a running job back to the queue (a slice ended, or the worker stops)."""
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(and_(jobs.c.id == job_id, jobs.c.worker == worker))
                         .values(worker=None, lease_until=None))

    def release_worker(self, worker: str) -> int:
        """Every job `worker` held (it died): claimable at once instead of after its lease."""
        with self.engine.begin() as conn:
            return conn.execute(update(jobs).where(and_(jobs.c.worker == worker, jobs.c.state == "running"))
                                .values(worker=None, lease_until=None)).rowcount

    def running_workers(self) -> list[str]:
        """The workers holding a running job now."""
        query = select(jobs.c.worker).where(and_(jobs.c.state == "running", jobs.c.worker.is_not(None))).distinct()
        with self.engine.connect() as conn:
            return [w for (w,) in conn.execute(query)]

    def running_by_owner(self) -> dict[str, int]:
        now = utcnow()
        query = (select(jobs.c.owner, func.count()).where(and_(jobs.c.state == "running",
                                                               jobs.c.lease_until >= now))
                 .group_by(jobs.c.owner))
        with self.engine.connect() as conn:
            return {owner: int(n) for owner, n in conn.execute(query)}

    # ---- the record cache (dedup)

    def cached(self, key: str, seq_hashes: Sequence[str]) -> dict[str, bytes]:
        """Payloads of the `seq_hashes` computed before under `key`."""
        out: dict[str, bytes] = {}
        unique = sorted(set(seq_hashes))
        for start in range(0, len(unique), 500):  # bounded IN lists
            part = unique[start:start + 500]
            query = select(record_cache.c.seq_sha256, record_cache.c.payload).where(
                and_(record_cache.c.key == key, record_cache.c.seq_sha256.in_(part)))
            with self.engine.connect() as conn:
                out.update({sha: bytes(payload) for sha, payload in conn.execute(query)})
        return out

    def remember(self, key: str, items: Iterable[tuple[str, bytes]]) -> int:
        """Store finished payloads under `key` (the ones already there are kept); how many were new."""
        items = dict(items)
        if not items:
            return 0
        known = set(self.cached(key, list(items)))
        rows = [{"key": key, "seq_sha256": sha, "payload": payload, "created_at": utcnow()}
                for sha, payload in items.items() if sha not in known]
        if rows:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(record_cache), rows)
            except Exception:  # another job stored some of them meanwhile: keep theirs, add the rest one by one
                added = 0
                for row in rows:
                    try:
                        with self.engine.begin() as conn:
                            conn.execute(insert(record_cache).values(**row))
                        added += 1
                    except Exception:
                        pass
                return added
        return len(rows)


__all__ = ["FINAL", "JobRow", "JobStore", "STATES", "jobs", "make_engine", "metadata", "record_cache", "utcnow"]
