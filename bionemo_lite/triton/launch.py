"""Start a real ``tritonserver`` on a model repository and wait until it is ready.

Where the binary comes from, in order:

1. ``$BIONEMO_LITE_TRITONSERVER`` (a path to the binary), if set;
2. ``tritonserver`` on ``PATH``, as in NVIDIA's Triton container (its backends
   live in ``/opt/tritonserver/backends`` and are used as they are);
3. the binary shipped in the ``nvidia-pytriton`` wheel (``pip install
   bionemo-lite[triton]``). That build has no backend directory of its own, so
   one is assembled in a temporary folder (``backends/python/`` with the python
   backend library, its utils module and the stub built for this Python), and
   ``LD_LIBRARY_PATH`` gets this interpreter's lib dir first (else the system's
   libpython is loaded and the stub dies) and then the wheel's bundled libs
   (the copied stub no longer finds them through its relative RPATH).

The virtual environment's ``bin`` goes first on ``PATH`` so the python backend
stub runs this environment's Python, with numpy, torch and bionemo-lite.
Addresses are bound to 127.0.0.1 unless a host is given.

    >>> with TritonServer("model_repository") as server:
    ...     print(server.http_url)
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType

from ..errors import BackendUnavailableError, BionemoLiteError
from .processes import kill_group, signal_group, signal_when_parent_dies, stop_group

logger = logging.getLogger(__name__)

ENV_BINARY = "BIONEMO_LITE_TRITONSERVER"
CONTAINER_BACKENDS = Path("/opt/tritonserver/backends")
SHM_DIR = Path("/dev/shm")
# Backend folder each model config names; ONNX models name a platform instead.
_PLATFORM_BACKENDS = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt", "pytorch_libtorch": "pytorch"}
_BUILTIN_PLATFORMS = {"ensemble"}
_ERROR_LINE = re.compile(r"^E\d{4} ")
# Errors every CPU-only start logs (no driver, no pinned memory): not the reason anything failed.
_CPU_NOISE = re.compile(r"cuda|nvml|dcgm|gpu", re.IGNORECASE)


class TritonStartError(BionemoLiteError):
    """tritonserver exited before it was ready, or was not ready in time.

    Attributes:
        reason: what happened, in one line; the message adds the end of Triton's log.
    """

    def __init__(self, reason: str, log_path: Path, log_tail: str):
        super().__init__(f"{reason}; last lines of {log_path}:\n{log_tail}")
        self.reason = reason


@dataclass(frozen=True)
class TritonInstallation:
    """A ``tritonserver`` binary and what it needs to run.

    Attributes:
        binary: the executable.
        origin: ``"env"``, ``"path"`` or ``"nvidia-pytriton"``.
        wheel_dir: the wheel's ``tritonserver`` folder (backends and python
            stubs) when the binary comes from ``nvidia-pytriton``.
        lib_dirs: folders to put on ``LD_LIBRARY_PATH`` after the interpreter's.
    """

    binary: Path
    origin: str
    wheel_dir: Path | None = None
    lib_dirs: tuple[Path, ...] = field(default_factory=tuple)

    def available_backends(self) -> set[str] | None:
        """Backends this installation can load; None when unknown."""
        if self.wheel_dir is not None:
            return {p.name for p in (self.wheel_dir / "backends").iterdir() if p.is_dir()}
        if CONTAINER_BACKENDS.is_dir():
            return {p.name for p in CONTAINER_BACKENDS.iterdir() if p.is_dir()}
        return None


def _pytriton_dir() -> Path | None:
    # find_spec locates the package without importing it (pytriton's import is slow).
    spec = find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_tritonserver(search_path: str | None = None, use_wheel: bool = True) -> TritonInstallation:
    """Locate a ``tritonserver`` binary (env var, then ``PATH``, then the nvidia-pytriton wheel).

    Args:
        search_path: the ``PATH`` to search (default: the environment's).
        use_wheel: also look in the ``nvidia-pytriton`` wheel.

    Raises:
        BackendUnavailableError: no binary anywhere, with how to get one.
    """
    explicit = os.environ.get(ENV_BINARY)
    if explicit:
        path = Path(explicit).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BackendUnavailableError(f"${ENV_BINARY} is set to {explicit!r}, which is not an executable file")
        return _installation_for(path, "env")
    on_path = shutil.which("tritonserver", path=search_path)
    if on_path:
        return _installation_for(Path(on_path), "path")
    if use_wheel:
        pkg = _pytriton_dir()
        if pkg is not None and (pkg / "tritonserver" / "bin" / "tritonserver").is_file():
            return _installation_for(pkg / "tritonserver" / "bin" / "tritonserver", "nvidia-pytriton")
    raise BackendUnavailableError(
        "no tritonserver binary found: not in $"
        + ENV_BINARY
        + ", not on PATH"
        + (", and the nvidia-pytriton wheel is not installed" if use_wheel else "")
        + ". Install it with `pip install 'bionemo-lite[triton]'` (ships tritonserver with the python "
        "backend), run inside NVIDIA's container (nvcr.io/nvidia/tritonserver:<yy.mm>-py3), or set $"
        + ENV_BINARY
        + " to the binary."
    )


def _installation_for(binary: Path, origin: str) -> TritonInstallation:
    # A binary inside the wheel's layout (…/tritonserver/bin/tritonserver) gets the wheel treatment
    # whatever its origin, since it has no backend directory of its own.
    root = binary.resolve().parent.parent
    if (root / "python_backend_stubs").is_dir() and (root / "backends" / "python").is_dir():
        libs = root.parent.parent / "nvidia_pytriton.libs"
        return TritonInstallation(binary, origin, root, (libs,) if libs.is_dir() else ())
    return TritonInstallation(binary, origin)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def required_backends(repository: Path) -> dict[str, str]:
    """``{model: backend}`` for every model config in a repository."""
    needed: dict[str, str] = {}
    for config in sorted(Path(repository).glob("*/config.pbtxt")):
        text = config.read_text()
        backend = re.search(r'^\s*backend\s*:\s*"([^"]+)"', text, re.M)
        platform = re.search(r'^\s*platform\s*:\s*"([^"]+)"', text, re.M)
        if backend:
            needed[config.parent.name] = backend.group(1)
        elif platform and platform.group(1) not in _BUILTIN_PLATFORMS:
            needed[config.parent.name] = _PLATFORM_BACKENDS.get(platform.group(1), platform.group(1))
    return needed


def _assemble_backends(wheel_dir: Path, target: Path) -> Path:
    """Build ``target/backends/python`` from the wheel's pieces; returns ``target/backends``."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = wheel_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        have = sorted(p.name for p in (wheel_dir / "python_backend_stubs").iterdir())
        raise BackendUnavailableError(
            f"the nvidia-pytriton wheel has no python backend stub for Python {version} (it has {', '.join(have)})"
        )
    python_dir = target / "backends" / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for item in (wheel_dir / "backends" / "python").iterdir():
        if item.is_file():
            shutil.copy2(item, python_dir / item.name)
    shutil.copy2(stub, python_dir / "triton_python_backend_stub")
    return target / "backends"


class TritonServer:
    """A ``tritonserver`` process serving one model repository (a context manager).

    Args:
        repository: the model repository folder.
        http_port / grpc_port / metrics_port: ports to listen on; None picks free ones.
        log_path: where the server log goes (default: a file in the temp dir named after the HTTP port).
        host: address to bind (default 127.0.0.1; ``0.0.0.0`` to serve other machines).
        installation: the binary to run (default: `find_tritonserver`).
        startup_timeout: seconds to wait for every model to be ready.
        exit_timeout: seconds Triton gets to finish in-flight requests on stop (then SIGKILL).
        stub_grace: seconds a process tritonserver leaves behind gets between SIGTERM and SIGKILL.
        die_with_parent: tritonserver gets SIGTERM if this process dies, even by SIGKILL (Linux; for a
            single-threaded supervisor such as ``triton serve``).
        extra_args: more ``tritonserver`` flags.

    Raises:
        BackendUnavailableError: no binary, or the repository needs a backend this binary lacks.
        BionemoLiteError: the server exited or was not ready in time (the message ends with the log tail).
    """

    def __init__(
        self,
        repository: str | os.PathLike,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        log_path: str | os.PathLike | None = None,
        *,
        host: str = "127.0.0.1",
        installation: TritonInstallation | None = None,
        startup_timeout: float = 120.0,
        exit_timeout: int = 10,
        stub_grace: float = 1.0,
        die_with_parent: bool = False,
        extra_args: tuple[str, ...] = (),
    ):
        self.repository = Path(repository).resolve()
        if not self.repository.is_dir():
            raise BionemoLiteError(f"model repository {str(self.repository)!r} does not exist")
        self.host = host
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or self._another_port(self.http_port)
        self.metrics_port = metrics_port or self._another_port(self.http_port, self.grpc_port)
        self.log_path = Path(log_path) if log_path else Path(tempfile.gettempdir()) / f"bionemo-lite-tritonserver-{self.http_port}.log"
        self.installation = installation
        self.startup_timeout = startup_timeout
        self.exit_timeout = exit_timeout
        self.stub_grace = stub_grace
        self.die_with_parent = die_with_parent
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen | None = None
        self._workdir: Path | None = None
        # The python backend's shared-memory regions get this server's own prefix, so the ones a
        # killed server leaves in /dev/shm can be removed (and never collide with another server's).
        self._shm_prefix = f"bionemo_lite_triton_{uuid.uuid4().hex[:12]}_"

    @staticmethod
    def _another_port(*taken: int) -> int:
        while True:
            port = free_port()
            if port not in taken:
                return port

    # -- addresses -----------------------------------------------------------------
    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def http_url(self) -> str:
        """``http://host:port`` of the HTTP/REST endpoint (KServe v2)."""
        return f"http://{self._client_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint."""
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """Prometheus metrics URL."""
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    # -- lifecycle -------------------------------------------------------------------
    def command(self, backend_dir: Path | None) -> list[str]:
        """The ``tritonserver`` command line."""
        assert self.installation is not None
        cmd = [
            str(self.installation.binary),
            f"--model-repository={self.repository}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            f"--exit-timeout-secs={self.exit_timeout}",
            "--allow-gpu-metrics=false" if self.installation.wheel_dir is not None else "--allow-gpu-metrics=true",
            # Triton's gRPC server already accepts messages up to 2 GB (it has no flag for it);
            # the 4 MB default that users hit is the client's, raised in `client.py`.
        ]
        if backend_dir is not None:
            cmd.append(f"--backend-directory={backend_dir}")
        cmd.append(f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}")
        return cmd + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        """The server's environment: library path and ``PATH`` as described in the module docs."""
        assert self.installation is not None
        env = dict(os.environ)
        libs = [str(d) for d in self.installation.lib_dirs]
        if self.installation.wheel_dir is not None:
            libs.insert(0, str(sysconfig.get_config_var("LIBDIR")))
        if libs:
            env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def _check_backends(self) -> None:
        assert self.installation is not None
        available = self.installation.available_backends()
        if available is None:
            return
        missing = {m: b for m, b in required_backends(self.repository).items() if b not in available}
        if missing:
            what = ", ".join(f"{m!r} needs the {b!r} backend" for m, b in missing.items())
            raise BackendUnavailableError(
                f"this tritonserver ({self.installation.binary}, from {self.installation.origin}) cannot serve "
                f"{self.repository}: {what}, and it only has {', '.join(sorted(available)) or 'no backends'}. "
                "Serve it with NVIDIA's Triton container, or re-export for the python backend "
                "(for ONNX: `--onnx-runtime embedded` runs the graph with onnxruntime inside the python backend)."
            )

    def start(self) -> TritonServer:
        """Start the server and block until it is ready (or raise with the log tail)."""
        if self.process is not None and self.process.poll() is None:
            return self
        if self.process is not None:
            self.stop()  # a previous run's leftovers (stubs, shared memory, work folder) go first
        if self.installation is None:
            self.installation = find_tritonserver()
        self._check_backends()
        self._workdir = Path(tempfile.mkdtemp(prefix="bionemo-lite-triton-"))
        backend_dir = None
        if self.installation.wheel_dir is not None:
            backend_dir = _assemble_backends(self.installation.wheel_dir, self._workdir)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.command(backend_dir)
        logger.info("starting %s (log: %s)", " ".join(cmd), self.log_path)
        with open(self.log_path, "ab") as log:
            # Own session: Ctrl-C in a terminal reaches us, and we stop Triton (and its stubs) in order.
            self.process = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=self.environment(), cwd=self._workdir,
                start_new_session=True, preexec_fn=signal_when_parent_dies() if self.die_with_parent else None,
            )
        try:
            self.wait_ready(self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def is_ready(self) -> bool:
        """Whether the server answers ``/v2/health/ready`` (all models loaded)."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float) -> None:
        """Poll readiness until `timeout` seconds.

        Raises:
            TritonStartError: the process exited, or it was not ready in time.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise TritonStartError(f"tritonserver exited with code {self.process.returncode} before it was ready",
                                       self.log_path, self.log_tail())
            if self.is_ready():
                return
            time.sleep(0.25)
        raise TritonStartError(f"tritonserver was not ready after {timeout:.0f} s", self.log_path, self.log_tail())

    def log_tail(self, lines: int = 15) -> str:
        """The errors Triton logged (CUDA noise of CPU machines left out), then the last lines of its log."""
        try:
            with open(self.log_path, errors="replace") as fh:
                errors: list[str] = []
                tail: deque[str] = deque(maxlen=lines)
                for line in fh:
                    tail.append(line)
                    if _ERROR_LINE.match(line) and not _CPU_NOISE.search(line):
                        errors.append(line[:2000])
        except OSError:
            return "(no log)"
        found = "errors logged:\n" + "".join(errors[-10:]) + "...\n" if errors else ""
        return found + "".join(tail)

    def wait(self) -> int:
        """Block until the server exits; returns its exit code."""
        assert self.process is not None
        return self.process.wait()

    @property
    def pgid(self) -> int | None:
        """The process group of tritonserver and its python backend stubs (the server's pid); None before start."""
        return self.process.pid if self.process is not None else None

    def stop(self) -> int:
        """SIGTERM (Triton finishes in-flight requests), then SIGKILL after the exit timeout.

        Whatever of its process group outlives tritonserver (python backend stubs
        orphaned by a crash ignore SIGTERM) is stopped too, SIGKILL after a short
        grace, so nothing is left running. Returns how many such leftovers there were.
        """
        left = 0
        if self.process is not None:
            if self.process.poll() is None:
                signal_group(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=self.exit_timeout + 10)
                except subprocess.TimeoutExpired:
                    logger.warning("tritonserver did not stop in time; killing it")
                    signal_group(self.process.pid, signal.SIGKILL)
                    self.process.wait()
            # The server is reaped (by Popen, which keeps its exit status); now its leftovers.
            left = stop_group(self.process.pid, grace=self.stub_grace)
            if left:
                logger.info("stopped %d process(es) tritonserver left behind (python backend stubs)", left)
        self._cleanup()
        return left

    def kill(self) -> None:
        """SIGKILL the server and its python backend stubs at once (as a crash would)."""
        if self.process is not None:
            signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait()
            kill_group(self.process.pid)
        self._cleanup()

    def _cleanup(self) -> None:
        for region in SHM_DIR.glob(f"{self._shm_prefix}*") if SHM_DIR.is_dir() else ():
            region.unlink(missing_ok=True)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.process is not None and self.process.poll() is None else "stopped"
        return f"TritonServer({str(self.repository)!r}, http={self.http_port}, grpc={self.grpc_port}, {state})"
