"""The service's job workers: ``job_workers`` processes started, watched and restarted by the API process.

Each worker is ``python -m bionemo_lite.server.jobs.worker`` with the service's
settings (a JSON file in the job folder). A worker that dies (a crash, an OOM
kill, kill -9) has its jobs handed back to the queue at once and is started
again; the job resumes from its manifest. Workers die with the service (Linux
PDEATHSIG), so a service killed with -9 leaves no worker computing alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from .store import JobStore

logger = logging.getLogger(__name__)


class WorkerPool:
    """`count` worker processes over `store`."""

    def __init__(self, settings: Any, store: JobStore, folder: Path, count: int):
        self.settings = settings
        self.store = store
        self.folder = folder
        self.count = count
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts = 0
        self._task: asyncio.Task | None = None
        self._settings_file = folder / f"worker-settings-{os.getpid()}.json"
        self._prefix = f"w-{socket.gethostname()}-"  # w-HOST-SERVICEPID-RANDOM

    def _spawn(self) -> None:
        name = f"{self._prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        log = open(self.folder / f"{name}.log", "ab")
        # cwd: the job folder, so `python -m` does not put a source checkout's top folder on sys.path.
        proc = subprocess.Popen([sys.executable, "-m", "bionemo_lite.server.jobs.worker", "--settings",
                                 str(self._settings_file), "--name", name, "--parent", str(os.getpid())],
                                stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
        log.close()
        self.procs[name] = proc

    def release_orphans(self) -> int:
        """Jobs held by workers of a service of this host that is gone (killed): claimable now, not after
        their lease. Workers of other hosts (other replicas) are left to their leases."""
        import psutil

        freed = 0
        for worker in self.store.running_workers():
            if not worker.startswith(self._prefix):
                continue
            pid = worker[len(self._prefix):].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not psutil.pid_exists(int(pid)):
                freed += self.store.release_worker(worker)
        return freed

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.release_orphans()
        self._settings_file.write_text(self.settings.model_dump_json(exclude_unset=False))
        for _ in range(self.count):
            self._spawn()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            for name, proc in list(self.procs.items()):
                if proc.poll() is not None:
                    logger.warning("job worker %s exited with %s; starting another", name, proc.returncode)
                    del self.procs[name]
                    await asyncio.to_thread(self.store.release_worker, name)
                    self.restarts += 1
                    self._spawn()

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values() if p.poll() is None]

    async def stop(self, timeout: float = 10.0) -> None:
        if self._task is not None:
            self._task.cancel()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for name, proc in self.procs.items():
            try:
                await asyncio.to_thread(proc.wait, timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
            self.store.release_worker(name)
        self.procs.clear()
        self._settings_file.unlink(missing_ok=True)
