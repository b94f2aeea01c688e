"""The job store on SQLite and on a real PostgreSQL (pgserver): the same tests, both databases.

Migrations, owners and paging, claims raced by several workers (each job taken once), leases that
expire when a worker dies, cancel, the fair pick between owners, and the dedup record cache.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import inspect, text

from bionemo_lite.server.jobs.migrations import MIGRATIONS, migrate
from bionemo_lite.server.jobs.store import JobStore, utcnow
from bionemo_lite.server.jobs.worker import pick_fair
from pg_fixtures import create_database, postgres_server  # noqa: F401  (the session's server)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    return create_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def store(store_url):
    s = JobStore(store_url)
    yield s
    s.close()


def _job(store: JobStore, owner: str = "alice", **extra):
    values = {"owner": owner, "verb": "embed", "model": "m", "options": {"pooling": "mean"},
              "output_format": "parquet", "input_format": "csv", "dedup": True, "priority": 0, "n_total": 3,
              "workdir": "/nowhere", **extra}
    return store.create(**values)


def test_migrations_create_the_schema_once(store_url):
    first = JobStore(store_url)
    try:
        assert migrate(first.engine) == len(MIGRATIONS)  # opened again: nothing left to do
        with first.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            versions = conn.execute(text("SELECT version FROM schema_version ORDER BY version")).scalars().all()
        assert {"jobs", "record_cache", "schema_version"} <= tables
        assert versions == list(range(1, len(MIGRATIONS) + 1))
    finally:
        first.close()
    # several processes opening a new store at once: one upgrades, the others find it done
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            JobStore(store_url).close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_jobs_round_trip_and_page_per_owner(store):
    made = [_job(store, "alice") for _ in range(5)] + [_job(store, "bob")]
    got = store.get(made[0].id)
    assert got is not None and got.options == {"pooling": "mean"} and got.state == "queued"
    assert got.created_at.tzinfo is not None
    pages = [store.list("alice", 2, offset) for offset in (0, 2, 4)]
    assert [len(p) for p in pages] == [2, 2, 1]
    listed = [j.id for page in pages for j in page]
    assert sorted(listed) == sorted(j.id for j in made[:5])
    assert [j.id for j in store.list("bob", 50, 0)] == [made[5].id]
    assert store.get("no-such-id") is None


def test_each_job_is_claimed_by_one_worker_only(store_url):
    seed = JobStore(store_url)
    ids = {_job(seed, f"owner{i % 3}").id for i in range(12)}
    claimed: dict[str, list[str]] = {}
    lock = threading.Lock()

    def worker(name: str) -> None:
        mine = JobStore(store_url)  # a store (engine, connections) per worker, as per process
        try:
            while (job := mine.claim(name, 60, pick_fair)) is not None:
                with lock:
                    claimed.setdefault(job.id, []).append(name)
        finally:
            mine.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seed.close()
    assert set(claimed) == ids
    assert all(len(names) == 1 for names in claimed.values()), claimed


def test_an_expired_lease_frees_the_job_and_the_old_worker_loses_it(store):
    job = _job(store)
    first = store.claim("w1", 0.3, pick_fair)
    assert first is not None and first.id == job.id and first.worker == "w1" and first.started_at is not None
    assert store.claim("w2", 10, pick_fair) is None  # w1's lease holds
    time.sleep(0.4)
    second = store.claim("w2", 10, pick_fair)
    assert second is not None and second.id == job.id and second.attempts == 2
    assert second.started_at == first.started_at  # when it first started
    assert not store.renew(job.id, "w1", 10)  # w1 finds out at its next heartbeat
    assert not store.update(job.id, worker="w1", state="done")  # and cannot finish it
    assert store.renew(job.id, "w2", 10)
    assert store.release_worker("w2") == 1  # w2 died: claimable at once
    assert store.claim("w3", 10, pick_fair).id == job.id


def test_cancel_stops_a_job_but_never_a_finished_one(store):
    running, done = _job(store), _job(store)
    store.claim("w1", 10, lambda rows: next(r for r in rows if r.id == running.id))
    store.update(done.id, state="done")
    assert store.cancel(running.id) and not store.cancel(done.id)
    assert store.get(running.id).state == "cancelled" and store.get(done.id).state == "done"
    assert not store.renew(running.id, "w1", 10)  # its worker stops at the next heartbeat
    assert store.claim("w2", 10, pick_fair) is None  # nothing left to run


def test_the_fair_pick_serves_the_owner_waiting_longest_and_priority_first(store):
    now = utcnow()
    big = _job(store, "alice")
    store.update(big.id, last_run_at=now)  # alice's big job ran a slice just now
    small = _job(store, "bob")
    later = _job(store, "alice")
    assert pick_fair(store.claimable(now + timedelta(seconds=1))).id == small.id
    store.update(small.id, last_run_at=now + timedelta(seconds=1), state="done")
    assert pick_fair(store.claimable(now)).id == big.id  # alice's oldest job first
    urgent = _job(store, "carol", priority=5)
    assert pick_fair(store.claimable(now)).id == urgent.id
    assert later.id != urgent.id


def test_the_record_cache_keeps_the_first_payload_of_a_key(store):
    assert store.remember("k1", [("s1", b"one"), ("s2", b"two")]) == 2
    assert store.remember("k1", [("s1", b"other"), ("s3", b"three")]) == 1
    assert store.cached("k1", ["s1", "s2", "s3", "s4"]) == {"s1": b"one", "s2": b"two", "s3": b"three"}
    assert store.cached("k2", ["s1"]) == {}
    many = [(f"h{i}", bytes([i % 256])) for i in range(1200)]  # more than one IN list
    assert store.remember("k3", many) == 1200
    assert len(store.cached("k3", [h for h, _ in many])) == 1200
