"""Helpers for the real-Triton tests: exported repositories and a restartable server.

Each test module starts its own ``tritonserver`` (the nvidia-pytriton wheel's,
on CPU) on a repository exported from the tiny ``esm2_fair_checkpoint``.
`TritonServeProcess` runs ``bionemo-lite triton serve`` as users do, with the
psutil helpers that find its tritonserver and python backend stubs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

from bionemo_lite.results import Embeddings
from bionemo_lite.triton.launch import TritonServer, free_port

NAME = "esm2_t6_8M_UR50D"
SEQUENCES = {
    "p1": "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ",
    "p2": "GSHMLE",
    "p3": "ACDEFGHIKLMNPQRSTVWYXBUZO",
    "p4": "MA",
    "p5": "MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTKTYFPHF",
}


def move_repository(source: Path, target: Path) -> Path:
    """Move an exported repository: it must keep working from its new place."""
    shutil.move(str(source), str(target))
    return target


def max_abs_diff(a: Embeddings, b: Embeddings) -> float:
    """Largest difference over every layer and record of two results with the same layout."""
    assert a.ids == b.ids and a.layers == b.layers and a.lengths == b.lengths and a.pooling == b.pooling
    worst = 0.0
    for layer in a.layers:
        for x, y in zip(a.by_layer[layer], b.by_layer[layer]):
            assert np.shape(x) == np.shape(y)
            worst = max(worst, float(np.abs(np.asarray(x) - np.asarray(y)).max()))
    return worst


def restart_on_same_ports(server: TritonServer) -> TritonServer:
    """A new server process on the ports (and repository) of one that was stopped or killed."""
    again = TritonServer(server.repository, server.http_port, server.grpc_port, server.metrics_port,
                         server.log_path, startup_timeout=server.startup_timeout)
    return again.start()


# ---------------------------------------------------------------- `bionemo-lite triton serve` as a process

STUB = "triton_python_backend_stub"


def _program(proc: psutil.Process) -> str:
    """The executable's file name (``comm`` is cut at 15 characters, the stub's name is longer)."""
    try:
        cmdline = proc.cmdline()
    except psutil.Error:
        return ""
    return Path(cmdline[0]).name if cmdline else ""


def triton_processes(root: psutil.Process) -> dict[int, psutil.Process]:
    """``{pid: process}`` of every tritonserver and python backend stub under `root`."""
    try:
        below = root.children(recursive=True)
    except psutil.Error:
        return {}
    return {p.pid: p for p in below if _program(p) in ("tritonserver", STUB)}


def running(proc: psutil.Process) -> bool:
    """Whether `proc` (that very process, not a later one with its pid) still runs."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def processes_serving(repository: Path) -> list[psutil.Process]:
    """Every live process whose command line names `repository`: tritonserver and its stubs."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and any(str(repository) in arg for arg in proc.cmdline()) and running(proc):
                found.append(proc)
        except psutil.Error:
            continue
    return found


class TritonServeProcess:
    """``python -m bionemo_lite.cli triton serve`` on free ports; stderr (its restart reports) in a file."""

    def __init__(self, repository: Path, workdir: Path, *options: str):
        workdir.mkdir(parents=True, exist_ok=True)
        self.repository = repository
        self.http_port, self.grpc_port, self.metrics_port = _distinct_free_ports(3)
        self.output_path = workdir / "triton-serve.out"
        self.command = [sys.executable, "-m", "bionemo_lite.cli", "triton", "serve", "--repository", str(repository),
                        "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                        "--metrics-port", str(self.metrics_port), "--log-file", str(workdir / "tritonserver.log"),
                        *options]
        with open(self.output_path, "wb") as out:
            # cwd is the work folder: `python -m` puts cwd first on sys.path, and the repo root must not be there.
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
        self.ps = psutil.Process(self.proc.pid)

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def wait_for(self, text: str, count: int = 1, timeout: float = 180.0) -> None:
        """Wait until `text` appears `count` times in the output (the process must keep running)."""
        deadline = time.monotonic() + timeout
        while self.output().count(text) < count:
            if self.proc.poll() is not None:
                raise AssertionError(f"triton serve exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} x{count} after {timeout} s:\n{self.output()}")
            time.sleep(0.1)

    def tritonserver(self) -> psutil.Process:
        """The tritonserver process running now."""
        servers = [p for p in triton_processes(self.ps).values() if _program(p) == "tritonserver" and running(p)]
        assert len(servers) == 1, (servers, self.output())
        return servers[0]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send `sig` and wait for the exit status (SIGKILL to the whole tree if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill_everything()
                raise
        return self.proc.returncode

    def kill_everything(self) -> None:
        """Last-resort cleanup so one failed test leaves nothing running."""
        for proc in [*triton_processes(self.ps).values(), self.ps]:
            try:
                proc.kill()
            except psutil.Error:
                pass
        self.proc.wait()
        for proc in processes_serving(self.repository):
            try:
                proc.kill()
            except psutil.Error:
                pass


def _distinct_free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports
