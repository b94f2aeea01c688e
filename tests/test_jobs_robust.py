"""Batch jobs against real trouble: a full file system, a kill during the final write, two jobs on one output,
and a finished job run again.

The full disk is a real tmpfs of a few MiB (mounted by the tests: they run as root here and in CI), the file
size limit a real ``ulimit -f`` (RLIMIT_FSIZE) of a child process; the jobs that fail, are killed, stopped or
refused run the real command line in processes of their own, with the numpy model of jobs_fixtures.py
registered (it starts in about a second: no torch), and once with a tiny ESM-2 checkpoint.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import bionemo_lite
from bionemo_lite.cli import app
from bionemo_lite.errors import DiskFullError, JobLockedError
from bionemo_lite.io import InputFile, read_embeddings
from bionemo_lite.io.atomic import remove_stale_parts, remove_stale_parts_in
from bionemo_lite.jobs import EmbedTask, ScoreTask, run_job
from bionemo_lite.jobs.lock import JobLock
from bionemo_lite.registry import unregister
from jobs_fixtures import (
    SPEC,
    CompositionModel,
    can_mount,
    expected_vectors,
    fill,
    free_bytes,
    small_filesystem,
    toy_cli,
    toy_env,
)

MiB = 1 << 20
LETTERS = "ACDEFGHIKLMNPQRSTVWY"

needs_mount = pytest.mark.skipif(not can_mount(), reason="mounting a small tmpfs needs root (the test machines are)")


def _records(n: int, seed: int = 0, max_len: int = 40) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    letters = np.array(list(LETTERS))
    return {f"r{i}": "".join(rng.choice(letters, size=int(rng.integers(max_len // 2, max_len + 1))))
            for i in range(n)}


def _fasta(path: Path, records: dict[str, str]) -> Path:
    path.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in records.items()))
    return path


def _rows(manifest: Path) -> int:
    with sqlite3.connect(manifest) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]


def _parts(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


@pytest.fixture
def small_fs(tmp_path):
    """A 16 MiB tmpfs; tests fill it with ballast files to leave the room they want."""
    with small_filesystem(tmp_path / "small", 16 * MiB) as where:
        yield where


def _leave_free(directory: Path, nbytes: int) -> list[Path]:
    """Ballast files (1 MiB each, the last one smaller) leaving `nbytes` free on `directory`'s file system."""
    ballast, i = [], 0
    while (excess := free_bytes(directory) - nbytes) > 0:
        ballast.append(fill(directory / f"ballast{i}", min(excess, MiB)))
        i += 1
    return ballast


# --- A full disk ---


@needs_mount
def test_hdf5_meets_a_full_disk_without_crashing(small_fs):
    """HDF5 handed a failing write goes on, then segfaults at exit; the writer never hands it one."""
    script = (
        "import sys, numpy as np\n"
        "from bionemo_lite.io import EmbeddingRow, write_embeddings\n"
        "rows = (EmbeddingRow(f'r{i}', 'A' * 100, 100, {1: np.ones((100, 64), np.float32)}) for i in range(300))\n"
        "try:\n"
        "    write_embeddings(sys.argv[1], rows, model='m', layers=[1], pooling='per_residue')\n"
        "except OSError as exc:\n"
        "    print('errno', exc.errno, exc.filename)\n"
    )
    _leave_free(small_fs, MiB)  # 300 rows of 25 KiB need 7.5 MiB
    out = small_fs / "emb.h5"
    proc = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]  # not -11 (SIGSEGV)
    assert proc.stdout.split() == ["errno", "28", str(out)]
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and _parts(small_fs) == []


@needs_mount
def test_a_manifest_that_fills_the_disk_stops_the_job_and_the_rerun_computes_only_what_is_missing(
        tmp_path, small_fs):
    records = _records(1000)
    src = InputFile(_fasta(tmp_path / "in.fasta", records))
    out = small_fs / "emb.h5"
    manifest = Path(f"{out}.job.sqlite")
    ballast = _leave_free(small_fs, 3 * MiB // 2)  # the finished records need about 4 MiB
    first = CompositionModel()
    with pytest.raises(DiskFullError) as err:
        run_job(src, EmbedTask(first, pooling="per_residue"), out, chunk_size=50, progress=False)
    assert err.value.path == str(manifest)
    assert err.value.reason == "No space left on device"
    assert f"kept in '{manifest}'" in str(err.value) and "run the same command again" in str(err.value)
    kept = _rows(manifest)  # consistent: whole chunks only
    assert 0 < kept < 1000 and kept % 50 == 0
    assert first.records_computed > kept  # the chunk it could not store was computed, then lost
    assert not out.exists() and _parts(small_fs) == []

    for path in ballast:
        path.unlink()
    second = CompositionModel()
    summary = run_job(src, EmbedTask(second, pooling="per_residue"), out, chunk_size=50, progress=False)
    assert second.records_computed == 1000 - kept  # only what was missing
    assert (summary.n_ok, summary.n_skipped_resumed, summary.n_computed) == (1000, kept, 1000 - kept)
    back = read_embeddings(out)
    assert back.ids == list(records)
    for rid in ("r0", f"r{kept}", "r999"):
        np.testing.assert_array_equal(back.arrays[rid], expected_vectors(records[rid], 2))


@needs_mount
@pytest.mark.parametrize("suffix", [".h5", ".npz"])  # uncompressed: as large as the manifest
def test_an_output_that_does_not_fit_is_a_one_line_error_and_the_same_command_then_finishes(
        tmp_path, small_fs, suffix):
    records = _records(1000)
    fasta = _fasta(tmp_path / "in.fasta", records)
    out = small_fs / f"emb{suffix}"
    cmd = toy_cli("embed", SPEC.name, str(fasta), "-o", str(out), "--weights", str(fasta), "--pooling",
                  "per_residue", "--chunk-size", "100", "--quiet")
    ballast = _leave_free(small_fs, 6 * MiB)  # room for the manifest (about 4 MiB), not for the output too
    failed = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=toy_env())
    assert failed.returncode == 1, failed.stderr
    [line] = failed.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"Error: cannot write '{out}': No space left on device. Free some space there and run "
                           "the same command again")
    assert _rows(Path(f"{out}.job.sqlite")) == 1000
    assert not out.exists() and _parts(small_fs) == []

    for path in ballast:
        path.unlink()
    finished = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=toy_env())
    assert finished.returncode == 0, finished.stderr
    assert f"wrote 1000 records to {out} (1000 resumed)" in finished.stderr  # nothing computed again
    back = read_embeddings(out)
    assert back.ids == list(records)
    np.testing.assert_array_equal(back.arrays["r7"], expected_vectors(records["r7"], 2))
    assert sorted(p.name for p in small_fs.iterdir()) == [out.name]


@needs_mount
@pytest.mark.slow
def test_an_esm2_job_that_fills_the_disk_says_so_and_resumes(esm2_fair_checkpoint, tmp_path, small_fs):
    """The real command and family (a tiny random ESM-2): the manifest fills the disk mid-way."""
    from esm2_fixtures import ESM2_NAME, load_quietly

    records = _records(300, max_len=60)
    fasta = _fasta(tmp_path / "in.fasta", records)
    out = small_fs / "emb.h5"
    manifest = Path(f"{out}.job.sqlite")
    cmd = [str(Path(sys.executable).parent / "bionemo-lite"), "embed", ESM2_NAME, str(fasta), "-o", str(out),
           "--weights", str(esm2_fair_checkpoint), "--pooling", "per_residue", "--chunk-size", "20", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ballast = _leave_free(small_fs, MiB)  # 300 records of 45 x 48 float32 need about 2.6 MiB
    failed = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr  # (the tiny checkpoint's shape is warned about, as it should be)
    line = failed.stderr.strip().splitlines()[-1]
    assert line == (f"Error: cannot write '{manifest}': No space left on device. Free some space there and run the "
                    f"same command again: the records finished so far are kept in '{manifest}' and will not be "
                    "computed again.")
    kept = _rows(manifest)
    assert 0 < kept < 300

    for path in ballast:
        path.unlink()
    finished = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert finished.returncode == 0, finished.stderr
    assert f"wrote 300 records to {out} ({kept} resumed)" in finished.stderr
    back = read_embeddings(out)
    assert back.ids == list(records)
    expected = load_quietly(esm2_fair_checkpoint).embed([records["r0"], records["r299"]], pooling="per_residue")
    for rid, want in zip(("r0", "r299"), expected.embeddings):
        assert np.max(np.abs(back.arrays[rid] - want)) <= 1e-5
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and again.stderr.strip().endswith(f"nothing to do: 300 records already done in {out}")


def test_a_file_size_limit_is_reported_like_a_full_disk(tmp_path):
    """``ulimit -f``: SQLite calls it a "disk I/O error"; the job names the limit, and resumes once it is raised."""
    import resource

    records = _records(1000)
    fasta = _fasta(tmp_path / "in.fasta", records)
    out = tmp_path / "emb.h5"
    manifest = Path(f"{out}.job.sqlite")
    cmd = toy_cli("embed", SPEC.name, str(fasta), "-o", str(out), "--weights", str(fasta), "--pooling",
                  "per_residue", "--chunk-size", "50", "--quiet")

    def limit_file_size() -> None:  # in the child only: about 4 MiB of results, files of 1 MiB at most
        resource.setrlimit(resource.RLIMIT_FSIZE, (MiB, MiB))

    failed = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=toy_env(),
                            preexec_fn=limit_file_size)
    assert failed.returncode == 1, failed.stderr
    [line] = failed.stderr.strip().splitlines()
    assert line.startswith(f"Error: cannot write '{manifest}': File too large. Raise the file size limit (ulimit -f)")
    kept = _rows(manifest)
    assert 0 < kept < 1000

    finished = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=toy_env())
    assert finished.returncode == 0, finished.stderr
    assert f"wrote 1000 records to {out} ({kept} resumed)" in finished.stderr


@needs_mount
def test_the_guarded_file_keeps_in_memory_what_the_disk_refused(small_fs):
    """What HDF5 writes past a full disk it can still read back, so it closes without crashing."""
    from bionemo_lite.io.writers import GuardedFile

    _leave_free(small_fs, 64 << 10)
    path = small_fs / "scratch"
    path.touch()
    data = np.random.default_rng(0).bytes(256 << 10)
    target = GuardedFile(path)
    try:
        assert target.write(data) == len(data)  # HDF5 is told it went well...
        assert target.error is not None and target.error.errno == 28  # ...the writer knows better
        assert target.seek(0, os.SEEK_END) == len(data)
        target.seek(100_000)
        target.write(b"xyz")
        target.seek(0)
        assert target.read(len(data)) == data[:100_000] + b"xyz" + data[100_003:]
    finally:
        target.close()


@needs_mount
def test_parquet_and_csv_writers_fail_cleanly_on_a_full_disk(small_fs):
    from bionemo_lite.io import write_table
    from bionemo_lite.io.atomic import disk_full_errno

    _leave_free(small_fs, MiB // 2)
    rng = np.random.default_rng(0)
    for name in ("s.parquet", "s.csv"):
        rows = ({"id": f"r{i}", "score": float(rng.random())} for i in range(200_000))  # about 4 MiB
        with pytest.raises(OSError) as err:
            write_table(small_fs / name, rows, ["id", "score"], {"id": "string"})
        assert disk_full_errno(err.value) == 28 and err.value.filename == str(small_fs / name)
    assert [p for p in small_fs.iterdir() if not p.name.startswith("ballast")] == []


# --- A kill during the final write ---


def test_a_kill_during_the_final_write_leaves_a_part_file_that_the_next_run_removes(tmp_path):
    records = _records(4000)
    fasta = _fasta(tmp_path / "in.fasta", records)
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "emb.npz"
    cmd = toy_cli("embed", SPEC.name, str(fasta), "-o", str(out), "--weights", str(fasta), "--pooling",
                  "per_residue", "--chunk-size", "1000")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=toy_env())
    deadline = time.monotonic() + 120
    while not _parts(outdir) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    assert proc.poll() is None, f"the job ended before its final write could be killed: {proc.communicate()}"
    os.kill(proc.pid, signal.SIGKILL)  # while the 16 MB output is being written into its temporary file
    proc.wait()
    [part] = _parts(outdir)
    assert part.startswith(".emb.npz.") and not out.exists()
    assert Path(f"{out}.job.lock").exists()  # the killed job's, no longer locked

    finished = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=toy_env())
    assert finished.returncode == 0, finished.stderr
    assert f"removed 1 temporary files left by a killed run: {part}" in finished.stderr
    assert f"taking over the lock left by PID {proc.pid} on host {socket.gethostname()}" in finished.stderr
    assert f"wrote 4000 records to {out} (4000 resumed)" in finished.stderr
    assert sorted(p.name for p in outdir.iterdir()) == ["emb.npz"]  # no .part, no lock, no manifest
    assert read_embeddings(out).ids == list(records)


def test_only_this_job_s_temporary_files_are_removed(tmp_path):
    out = tmp_path / "emb.parquet"
    mine = [tmp_path / ".emb.parquet.0123456789ab.part", tmp_path / ".emb.parquet.errors.csv.ba9876543210.part"]
    others = [tmp_path / ".other.parquet.0123456789ab.part", tmp_path / "emb.parquet.part",
              tmp_path / ".emb.parquet.notours.part"]
    for path in mine + others:
        path.write_text("half written")
    run_job(InputFile(_fasta(tmp_path / "in.fasta", {"a": "MKV"})), EmbedTask(CompositionModel()), out,
            progress=False)
    assert not any(p.exists() for p in mine) and all(p.exists() for p in others)
    assert remove_stale_parts(tmp_path / "other.parquet") == [others[0]]
    folder = tmp_path / "structures"  # a fold job's own folder: every temporary file in it is the job's
    folder.mkdir()
    (folder / ".a.pdb.00000000000f.part").write_text("")
    (folder / "a.pdb").write_text("")
    assert remove_stale_parts_in(folder) == [folder / ".a.pdb.00000000000f.part"]
    assert [p.name for p in folder.iterdir()] == ["a.pdb"]


# --- Two jobs on one output ---


def _lock_holder(lock: Path, proc: subprocess.Popen, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            details = json.loads(lock.read_text())
            if details.get("pid") == proc.pid:
                return details
        except (OSError, ValueError):
            pass
        time.sleep(0.002)
    raise AssertionError(f"the job never took its lock: {proc.communicate()}")


def test_a_second_job_on_the_same_output_refuses_or_waits(tmp_path):
    records = _records(600)
    fasta = _fasta(tmp_path / "in.fasta", records)
    out = tmp_path / "scores.csv"
    # Small chunks: a commit each, so the first job runs long enough to be caught holding the lock.
    cmd = toy_cli("score", SPEC.name, str(fasta), "-o", str(out), "--weights", str(fasta), "--chunk-size", "3",
                  "--quiet")
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=toy_env())
    try:
        holder = _lock_holder(Path(f"{out}.job.lock"), first)
        os.kill(first.pid, signal.SIGSTOP)  # holds the lock for as long as the test needs

        second = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=toy_env())
        assert second.returncode == 1
        [line] = second.stderr.strip().splitlines()
        assert line.startswith(f"Error: another job is writing '{out}': PID {first.pid} on host "
                               f"{socket.gethostname()}, started {holder['started']}: bionemo-lite score "
                               f"{SPEC.name} {fasta}")
        assert "--wait" in line
        assert not out.exists()

        waiting = subprocess.Popen([*cmd, "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=toy_env())
        time.sleep(1.5)
        assert waiting.poll() is None  # still waiting for the first job
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=60) == 0
    _, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    # The first job finished this very job: the waiting one has nothing left to do.
    assert f"nothing to do: 600 records already done in {out}" in err
    with open(out, newline="") as fh:
        assert [row["id"] for row in csv.DictReader(fh)] == list(records)
    assert not Path(f"{out}.job.lock").exists()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    out = tmp_path / "emb.h5"
    lock = Path(f"{out}.job.lock")
    script = ("import sys, time; from pathlib import Path; from bionemo_lite.jobs.lock import JobLock\n"
              "JobLock(Path(sys.argv[1]), Path(sys.argv[2])).acquire(); print('locked', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", script, str(lock), str(out)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(JobLockedError, match=f"PID {holder.pid} on host"):
        JobLock(lock, out).acquire()
    holder.kill()
    holder.wait()
    assert json.loads(lock.read_text())["pid"] == holder.pid  # its details stay, its lock went with it
    summary = run_job(InputFile(_fasta(tmp_path / "in.fasta", {"a": "MKV"})), EmbedTask(CompositionModel()), out,
                      progress=False)
    assert summary.n_ok == 1 and not lock.exists()


# --- A finished job run again ---


def test_a_finished_job_run_again_computes_nothing_and_writes_nothing(tmp_path):
    fasta = _fasta(tmp_path / "in.fasta", _records(20))
    out = tmp_path / "emb.parquet"
    model = CompositionModel()
    first = run_job(InputFile(fasta), EmbedTask(model), out, chunk_size=8, progress=False)
    assert first.n_computed == 20 and first.manifest is None and not first.up_to_date
    written = out.stat().st_mtime_ns
    calls = model.calls

    again = run_job(InputFile(fasta), EmbedTask(model), out, chunk_size=8, progress=False)
    assert again.up_to_date and (again.n_ok, again.n_computed, again.n_skipped_resumed) == (20, 0, 20)
    assert model.records_computed == 20 and model.calls == calls  # the model was not asked for anything
    assert out.stat().st_mtime_ns == written  # nor the output rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.parquet", "in.fasta"]

    # Other parameters, another input, or an output changed since: the job is done again.
    run_job(InputFile(fasta), EmbedTask(model, pooling="bos"), out, progress=False)
    assert model.records_computed == 40
    run_job(InputFile(fasta), EmbedTask(model), out, progress=False)
    assert model.records_computed == 60
    _fasta(fasta, {**_records(20), "new": "MKV"})
    assert not run_job(InputFile(fasta), EmbedTask(model), out, progress=False).up_to_date
    assert model.records_computed == 81
    os.utime(out, ns=(written, written))
    assert not run_job(InputFile(fasta), EmbedTask(model), out, progress=False).up_to_date
    assert model.records_computed == 102
    assert run_job(InputFile(fasta), EmbedTask(model), out, progress=False).up_to_date


def test_a_job_with_failures_is_not_finished(tmp_path):
    """A re-run retries the records that failed (e.g. out of memory), so it is never 'nothing to do'."""
    fasta = _fasta(tmp_path / "in.fasta", {"a": "MKV", "bad": "MKJ"})
    model = CompositionModel()
    run_job(InputFile(fasta), ScoreTask(model, "pll"), tmp_path / "s.csv", progress=False)
    again = run_job(InputFile(fasta), ScoreTask(model, "pll"), tmp_path / "s.csv", progress=False)
    assert not again.up_to_date and (again.n_skipped_resumed, again.n_failed) == (1, 1)


def test_the_command_says_there_is_nothing_to_do(tmp_path):
    bionemo_lite.register(SPEC)
    try:
        fasta = _fasta(tmp_path / "in.fasta", {"a": "MKV", "b": "MKTL"})
        args = ["embed", SPEC.name, str(fasta), "-o", str(tmp_path / "e.h5"), "--weights", str(fasta), "--quiet"]
        first = CliRunner().invoke(app, args)
        assert first.exit_code == 0 and "wrote 2 records" in first.stderr
        again = CliRunner().invoke(app, args)
        assert again.exit_code == 0
        assert again.stderr.strip() == f"nothing to do: 2 records already done in {tmp_path / 'e.h5'}"
    finally:
        unregister(SPEC.name)
