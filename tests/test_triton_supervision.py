"""``bionemo-lite triton serve`` supervises tritonserver: restarts it, and never leaves a stub behind.

The fast tests drive the restart policy and the process-group helpers on real
processes. The slow ones run ``bionemo-lite triton serve`` as a subprocess on
the tiny ESM-2 checkpoint (the nvidia-pytriton wheel's tritonserver, on CPU),
with the real API (uvicorn, backend=triton) in front of it and several clients
posting while tritonserver is SIGKILLed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from bionemo_lite.triton.export import export_model
from bionemo_lite.triton.processes import describe_exit, group_members, stop_group
from bionemo_lite.triton.supervisor import RestartPolicy
from server_fixtures import running_server, uvicorn_factory
from triton_fixtures import NAME, SEQUENCES, TritonServeProcess, processes_serving, running, triton_processes

CLIENTS = 4
REQUEST_BOUND_S = 30.0  # no request may take longer, Triton up, down or starting


# ---------------------------------------------------------------- the restart policy

def test_backoff_doubles_up_to_the_cap_then_gives_up():
    policy = RestartPolicy(first_delay=1.0, max_delay=5.0, max_failures=6, window=60.0)
    assert [policy.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 5.0, 5.0, None]


def test_one_failure_allowed_means_never_restart():
    assert RestartPolicy(max_failures=1).delay(1) is None


@pytest.mark.parametrize("kwargs", [{"first_delay": -1.0}, {"first_delay": 10.0, "max_delay": 5.0},
                                    {"max_failures": 0}, {"window": 0.0}])
def test_policy_refuses_nonsense(kwargs):
    with pytest.raises(ValueError):
        RestartPolicy(**kwargs)


def test_exit_descriptions_name_the_signal():
    assert describe_exit(-9) == "signal 9 (SIGKILL)"
    assert describe_exit(-15) == "signal 15 (SIGTERM)"
    assert describe_exit(3) == "exit code 3"


# ---------------------------------------------------------------- process groups, on real processes

# A leader that starts a child; both ignore SIGTERM, as the python backend stubs do.
_STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"])
time.sleep(600)
"""


def test_stop_group_kills_an_orphan_that_ignores_sigterm():
    leader = subprocess.Popen([sys.executable, "-c", _STUBBORN], start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while len(group_members(leader.pid)) < 2:
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        child = next(p for p in group_members(leader.pid) if p.pid != leader.pid)
        leader.kill()  # as tritonserver dies: its child lives on, orphaned
        leader.wait()
        assert running(child)
        started = time.monotonic()
        assert stop_group(leader.pid, grace=0.5) == 1
        assert time.monotonic() - started >= 0.5  # SIGTERM was tried first, for the grace period
        assert not running(child) and group_members(leader.pid) == []
    finally:
        try:
            os.killpg(leader.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


_PARENT = """
import subprocess, sys, time
from bionemo_lite.triton.processes import signal_when_parent_dies
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], preexec_fn=signal_when_parent_dies())
print(child.pid, flush=True)
time.sleep(600)
"""


def test_a_child_armed_with_the_parent_death_signal_dies_with_its_parent():
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    try:
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while running(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(child)
    finally:
        if running(child):
            child.kill()


def test_stop_group_of_an_empty_group_is_a_no_op():
    done = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    done.wait()
    assert stop_group(done.pid, grace=0.1) == 0


# ---------------------------------------------------------------- `triton serve` under a real tritonserver

@pytest.fixture(scope="module")
def repository(tmp_path_factory, esm2_fair_checkpoint):
    repo = tmp_path_factory.mktemp("supervised") / "repo"
    export_model(NAME, repo, weights=esm2_fair_checkpoint, verbs=["embed"], num_threads=1)
    return repo


@dataclass
class Outcome:
    started: float
    seconds: float
    status: int
    error: str | None  # the JSON error code of a non-200 answer
    body: str


class RequestLoop:
    """`clients` threads posting one embed request after another to the API until stopped."""

    def __init__(self, base_url: str, clients: int = CLIENTS):
        self.base_url = base_url
        self.outcomes: list[Outcome] = []
        self.failures: list[str] = []  # transport errors and timeouts: a hang or a dropped connection
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def _client(self, i: int) -> None:
        sequence = list(SEQUENCES.values())[i % len(SEQUENCES)]
        body = {"sequences": [{"id": f"c{i}", "sequence": sequence}], "pooling": "mean"}
        with httpx.Client(base_url=self.base_url, timeout=REQUEST_BOUND_S) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    r = http.post(f"/v1/models/{NAME}/embed", json=body)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                error = r.json().get("error") if r.status_code != 200 else None
                with self._lock:
                    self.outcomes.append(Outcome(started, time.monotonic() - started, r.status_code, error,
                                                 r.text[:500] if error else ""))
                if r.status_code != 200:
                    time.sleep(0.05)  # a client retrying a 503 backs off a little

    def __enter__(self) -> RequestLoop:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=REQUEST_BOUND_S + 5)

    def wait_for_200(self, after: float, timeout: float) -> float:
        """The time the first request started after `after` came back 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                ok = [o.started + o.seconds for o in self.outcomes if o.status == 200 and o.started >= after]
            if ok:
                return min(ok)
            time.sleep(0.05)
        raise AssertionError(f"no 200 within {timeout} s after {after}; statuses: {self.statuses()}")

    def statuses(self) -> dict[int, int]:
        with self._lock:
            counts: dict[int, int] = {}
            for o in self.outcomes:
                counts[o.status] = counts.get(o.status, 0) + 1
        return counts


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sigkilled_tritonserver_is_restarted_and_nothing_is_left_behind(repository, tmp_path, protocol):
    serve = TritonServeProcess(repository, tmp_path / "serve", "--restart-delay", "0.5")
    try:
        serve.wait_for("ready: HTTP")
        first_generation = triton_processes(serve.ps)
        old_server = serve.tritonserver()
        old_stubs = [p for p in first_generation.values() if p.pid != old_server.pid]
        assert old_stubs, f"expected python backend stubs under tritonserver: {first_generation}"

        env = {"BIONEMO_LITE_BACKEND": "triton", "BIONEMO_LITE_TRITON_PROTOCOL": protocol,
               "BIONEMO_LITE_TRITON_URL": serve.http_url if protocol == "http" else serve.grpc_url,
               "BIONEMO_LITE_LOG_LEVEL": "warning"}
        with running_server(uvicorn_factory("bionemo_lite.server.app:create_app"), env, tmp_path / "api") as api:
            with RequestLoop(api.base_url) as loop:
                loop.wait_for_200(after=0.0, timeout=60)
                time.sleep(1.0)  # steady traffic before the crash
                killed_at = time.monotonic()
                old_server.send_signal(signal.SIGKILL)  # tritonserver alone: its stubs are orphaned
                back_at = loop.wait_for_200(after=killed_at + 0.5, timeout=180)
                time.sleep(1.0)  # steady traffic after the restart
            recovery = back_at - killed_at

        outcomes = loop.outcomes
        down = [o for o in outcomes if o.status == 503]
        print(f"\n{protocol}: recovery after SIGKILL: {recovery:.1f} s; {len(outcomes)} requests from {CLIENTS} clients: "
              f"{loop.statuses()}; slowest {max(o.seconds for o in outcomes):.2f} s")
        assert loop.failures == [], loop.failures[:5]
        assert set(loop.statuses()) <= {200, 503}, {o.body for o in outcomes if o.status not in (200, 503)}
        assert down, "no request saw Triton down"
        assert {o.error for o in down} == {"backend_unavailable"}
        assert max(o.seconds for o in outcomes) < REQUEST_BOUND_S
        assert any(o.status == 200 and o.started > back_at for o in outcomes)  # and it stays up

        report = serve.output()
        assert "exited with signal 9 (SIGKILL)" in report and "restarting in 0.5 s" in report, report
        assert f"stopped {len(old_stubs)} process(es) it left behind" in report, report  # the orphaned stubs
        assert "ready again (restart 1" in report, report
        assert not any(running(p) for p in old_stubs), "the dead server's stubs were not stopped on restart"
        second_generation = triton_processes(serve.ps)
        assert serve.tritonserver().pid != old_server.pid

        assert serve.stop(signal.SIGTERM) == 0, serve.output()
        left = [p for p in [*first_generation.values(), *second_generation.values()] if running(p)]
        assert left == [] and processes_serving(repository) == [], (left, processes_serving(repository))
    finally:
        serve.kill_everything()


@pytest.mark.slow
def test_gives_up_with_a_clear_message_and_leaves_nothing(repository, tmp_path):
    serve = TritonServeProcess(repository, tmp_path / "serve", "--max-failures", "1")
    try:
        serve.wait_for("ready: HTTP")
        everything = triton_processes(serve.ps)
        serve.tritonserver().send_signal(signal.SIGKILL)
        code = serve.proc.wait(timeout=60)
        report = serve.output()
        assert code == 1, report
        assert "Error: tritonserver" in report and "exited with signal 9 (SIGKILL)" in report, report
        assert "giving up" in report and "restarting" not in report, report
        left = [p for p in everything.values() if running(p)]
        assert left == [] and processes_serving(repository) == [], (left, processes_serving(repository))
    finally:
        serve.kill_everything()


@pytest.mark.slow
def test_failed_restarts_count_towards_giving_up(repository, tmp_path):
    """Killed, then the model no longer loads: each failed restart is a failure, and the last one gives up."""
    repo = Path(shutil.copytree(repository, tmp_path / "repo"))
    serve = TritonServeProcess(repo, tmp_path / "serve", "--max-failures", "2", "--restart-delay", "0.2")
    try:
        serve.wait_for("ready: HTTP")
        model_py = repo / NAME / "1" / "model.py"
        model_py.write_text("raise RuntimeError('broken on purpose')\n")
        everything = triton_processes(serve.ps)
        serve.tritonserver().send_signal(signal.SIGKILL)
        code = serve.proc.wait(timeout=180)
        report = serve.output()
        assert code == 1, report
        assert "exited with signal 9 (SIGKILL)" in report and "restarting in 0.2 s (failure 1 within" in report, report
        assert "restarting tritonserver failed: tritonserver exited with code 1 before it was ready; " \
            "it failed 2 time(s)" in report, report
        assert "it failed 2 time(s) within 300 s, giving up (after 0 restart(s))" in report, report
        assert "broken on purpose" in report, report  # Triton's own reason, from its log
        left = [p for p in everything.values() if running(p)]
        assert left == [] and processes_serving(repo) == [], (left, processes_serving(repo))
    finally:
        serve.kill_everything()


@pytest.mark.slow
def test_sigint_stops_the_server_and_its_stubs(repository, tmp_path):
    serve = TritonServeProcess(repository, tmp_path / "serve")
    try:
        serve.wait_for("ready: HTTP")
        everything = triton_processes(serve.ps)
        assert len(everything) >= 2, everything
        assert serve.stop(signal.SIGINT) == 0, serve.output()
        assert "stopped tritonserver (SIGINT)" in serve.output()
        assert not any(running(p) for p in everything.values()) and processes_serving(repository) == []
    finally:
        serve.kill_everything()



@pytest.mark.slow
def test_a_sigkilled_supervisor_takes_tritonserver_down_with_it(repository, tmp_path):
    """Nothing can clean up after SIGKILL: tritonserver is told by the kernel (parent-death signal) and stops its stubs."""
    serve = TritonServeProcess(repository, tmp_path / "serve")
    try:
        serve.wait_for("ready: HTTP")
        everything = triton_processes(serve.ps)
        assert len(everything) >= 2, everything
        assert serve.stop(signal.SIGKILL) == -signal.SIGKILL
        deadline = time.monotonic() + 60
        while any(running(p) for p in everything.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(running(p) for p in everything.values()) and processes_serving(repository) == []
    finally:
        serve.kill_everything()
