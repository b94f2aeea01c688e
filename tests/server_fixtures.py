"""Helpers for the HTTP tests: a real uvicorn subprocess, and a small "toy" plugin.

The toy family is a third-party plugin in miniature (registered the way any
plugin is, through `register` and a ``module:function`` loader): it gives the
server a model for every verb (fold and decode included) with exact,
easily checked numbers, and a load that can be slowed down to make
concurrent first requests overlap. Its loader appends to ``$TOY_LOAD_LOG`` so
tests count loads independently of the server's own bookkeeping.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bionemo_lite.batching import run_batches
from bionemo_lite.encoding import embed_records
from bionemo_lite.errors import CheckpointError, InvalidInputError
from bionemo_lite.model import BioModel
from bionemo_lite.records import as_records, prepare_proteins
from bionemo_lite.registry import register
from bionemo_lite.results import Generated, GeneratedRecord, Scores, Structure
from bionemo_lite.spec import ModelSpec, WeightFile, WeightSource

TESTS_DIR = Path(__file__).resolve().parent
RESIDUES = "ACDEFGHIKLMNPQRSTVWYXBUZO"


# ---------------------------------------------------------------- server process

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


Command = Callable[[int], list[str]]


def uvicorn_factory(factory: str) -> Command:
    """``python -m uvicorn --factory FACTORY`` (settings from ``BIONEMO_LITE_*`` variables)."""
    return lambda port: [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
                         "--port", str(port), "--log-level", "warning"]


def toy_serve() -> Command:
    """`bionemo_lite.server.app.serve` of the toy app (settings from ``BIONEMO_LITE_*``), as
    ``bionemo-lite serve`` runs it: its SIGTERM handling and drain bound included."""
    return lambda port: [sys.executable, "-c", f"import server_fixtures; server_fixtures.serve_toys({port})"]


def cli_serve(*args: str) -> Command:
    """``bionemo-lite serve ARGS`` (through ``python -m`` so no PATH lookup is involved)."""
    return lambda port: [sys.executable, "-m", "bionemo_lite.cli", "serve", "--host", "127.0.0.1",
                         "--port", str(port), *args]


class ServerProcess:
    """A service process on 127.0.0.1 with a free port; `command` gets the port."""

    def __init__(self, command: Command, env: Mapping[str, str], log_path: Path):
        self.port = free_port()
        self.command = command(self.port)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        # Nothing of the caller's BIONEMO_LITE_* settings leaks into the server (the checkout under test does).
        base = {k: v for k, v in os.environ.items() if not k.startswith("BIONEMO_LITE_") or k == "BIONEMO_LITE_DEV_ROOT"}
        path = os.pathsep.join(p for p in (str(TESTS_DIR), base.get("PYTHONPATH", "")) if p)
        self.env = {**base, "PYTHONPATH": path, **env}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> None:
        log = open(self.log_path, "wb")
        # cwd is the log folder: `python -m` puts cwd first on sys.path, and the repo root must not be there.
        self.proc = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.log_path.parent)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/v1/health/live", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not live after {timeout} s:\n{self.log()}")

    def wait_ready(self, timeout: float = 60.0) -> httpx.Response:
        """Poll ``/v1/health/ready`` until it answers 200 (models preloaded in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            r = httpx.get(f"{self.base_url}/v1/health/ready", timeout=5.0)
            if r.status_code == 200 or time.monotonic() > deadline:
                return r
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float) -> int | None:
        """Send SIGTERM and wait up to `timeout` s: the exit status, or None (then it is killed)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


@contextmanager
def running_server(command: Command, env: Mapping[str, str], workdir: Path) -> Iterator[ServerProcess]:
    """A started server, stopped afterwards; its log tail goes to stdout (shown by pytest on failure)."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(command, env, workdir / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        sys.stdout.write(server.log()[-4000:])


@contextmanager
def serve_cli(workdir: Path, *args: str) -> Iterator[ServerProcess]:
    """``bionemo-lite serve ARGS`` as users start it, with an empty weight cache, one torch thread
    (the same summation order as the tests' in-process reference) and quiet logs."""
    env = {"BIONEMO_LITE_HOME": str(workdir / "empty-cache"), "BIONEMO_LITE_TORCH_THREADS": "1",
           "BIONEMO_LITE_LOG_LEVEL": "warning"}
    with running_server(cli_serve(*args), env, workdir) as server:
        yield server


def parallel_posts(base_url: str, path: str, bodies: Sequence[dict], timeout: float = 120.0) -> list[httpx.Response]:
    """POST every body at once (one thread each) and return the responses in order."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    barrier = Barrier(len(bodies))

    def post(body: dict) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=timeout) as client:
            barrier.wait()  # release all requests together
            return client.post(path, json=body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


# ---------------------------------------------------------------- toy plugin

TOY_DIM = 8
TOY_LAYERS = 2


def write_toy_weights(path: Path, seed: int = 0) -> Path:
    """The toy checkpoint: a residue table, in an .npz file."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, table=rng.normal(size=(len(RESIDUES) + 1, TOY_DIM)).astype(np.float32))
    return path


def slow_toy_env(folder: Path, **extra: str) -> dict[str, str]:
    """Settings of a toy-only server with ``toy_encoder`` preloaded, whose ``"method": "slow"`` score
    takes `$TOY_STEP_S` per residue and logs each step to ``folder/steps.log``; `extra` variables win."""
    weights = write_toy_weights(folder / "toy.npz")
    return {"BIONEMO_LITE_HOME": str(folder / "empty-cache"), "BIONEMO_LITE_NO_PLUGINS": "1",
            "BIONEMO_LITE_WEIGHTS": json.dumps({"toy_encoder": str(weights)}), "BIONEMO_LITE_PRELOAD": "toy_encoder",
            "TOY_STEP_LOG": str(folder / "steps.log"), "TOY_STEP_S": "0.05", **extra}


def _source() -> WeightSource:
    return WeightSource(format="npz", files=(WeightFile("toy.npz", "https://example.invalid/toy.npz"),),
                        entry="toy.npz", homepage="https://example.invalid/toy")


def toy_specs() -> list[ModelSpec]:
    loader = "server_fixtures:load_toy"
    common = {"family": "toy", "loader": loader, "license": "test only", "weights": (_source(),)}
    return [
        ModelSpec(name="toy_encoder", verbs=frozenset({"embed", "score", "generate"}), max_length=40,
                  config={"kind": "encoder", "layers": TOY_LAYERS, "dim": TOY_DIM}, **common),
        ModelSpec(name="toy_encoder_b", verbs=frozenset({"embed"}), max_length=40,
                  config={"kind": "encoder", "layers": TOY_LAYERS, "dim": TOY_DIM}, **common),
        ModelSpec(name="toy_encoder_c", verbs=frozenset({"embed"}), max_length=40,
                  config={"kind": "encoder", "layers": TOY_LAYERS, "dim": TOY_DIM}, **common),
        ModelSpec(name="toy_broken", verbs=frozenset({"embed"}), max_length=40,
                  config={"kind": "encoder", "layers": TOY_LAYERS, "dim": TOY_DIM}, **common),
        ModelSpec(name="toy_folder", verbs=frozenset({"fold"}), max_length=30, config={"kind": "folder"}, **common),
        ModelSpec(name="toy_smiles", verbs=frozenset({"decode", "generate"}), input_kind="smiles", max_length=64,
                  config={"kind": "smiles"}, **common),
    ]


def register_toys() -> None:
    for spec in toy_specs():
        register(spec)


def load_toy(spec: ModelSpec, path: Path, device: str = "cpu", dtype: str | None = None,
             numerics: str | None = None, **_: Any) -> BioModel:
    try:
        with np.load(path, allow_pickle=False) as data:
            table = np.array(data["table"], dtype=np.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: not a toy checkpoint ({exc})") from exc
    time.sleep(float(os.environ.get("TOY_LOAD_DELAY", "0")))
    if log := os.environ.get("TOY_LOAD_LOG"):
        with open(log, "a") as fh:
            fh.write(spec.name + "\n")
    kinds = {"encoder": ToyEncoder, "folder": ToyFolder, "smiles": ToySmiles}
    kinds["counter"] = globals().get("ToyCountingEncoder", ToyEncoder)  # defined with the job helpers below
    kinds["job_folder"] = globals().get("ToyRecordFolder", ToyFolder)
    model = kinds[spec.config["kind"]](spec, table)
    model.numerics = numerics
    return model


class ToyModel(BioModel):
    def __init__(self, spec: ModelSpec, table: np.ndarray):
        super().__init__(spec, "cpu", "float32")
        self.table = table

    def residue_vectors(self, seq: str) -> np.ndarray:
        return self.table[[RESIDUES.index(c) for c in seq]]


class ToyEncoder(ToyModel):
    """Layer l of residue i is ``table[residue] * (l + 1) + i / 10``; BOS is the table's last row."""

    def hidden(self, seq: str, layer: int) -> np.ndarray:
        rows = np.vstack([self.table[-1:], self.residue_vectors(seq)])
        return rows * (layer + 1) + (np.arange(len(rows))[:, None] / 10.0)

    def embed(self, inputs, layer=-1, pooling="mean", *, on_too_long="error", tokens_per_batch=None):
        def encode(records, layers, pool):
            out = []
            for r in records:
                per = {}
                for lay in layers:
                    h = self.hidden(r.sequence, lay).astype(np.float32)
                    per[lay] = h[1:] if pool.per_position else (h[0] if pool.needs_bos else h[1:].mean(0))
                out.append(per)
            return out

        return embed_records(self.name, inputs, encode, num_layers=TOY_LAYERS, max_length=self.max_length,
                             layer=layer, pooling=pooling, on_too_long=on_too_long,
                             tokens_per_batch=tokens_per_batch, extra_tokens=1)

    def score(self, inputs, method="pll", mutations=None, *, on_too_long="error"):
        if method == "crash":  # a plugin bug, not a user error; its message names a server path
            raise RuntimeError(f"toy plugin bug reading {Path(__file__).resolve()}")
        if method not in ("pll", "slow"):
            raise InvalidInputError(f"the toy model scores with 'pll' only, not {method!r}")
        records, truncated = prepare_proteins(inputs, self.max_length, on_too_long)
        if method == "slow":  # one `$TOY_STEP_S` step per residue, through the core's (cancellable) batch loop
            run_batches([[i] for i in range(sum(len(r.sequence) for r in records))], _slow_step)
        scores = np.array([float(self.residue_vectors(r.sequence)[:, 0].sum()) for r in records])
        return Scores(self.name, method, [r.id for r in records], scores, None, truncated)

    def generate(self, inputs, *, num_samples=1, temperature=1.0, top_k=None, seed=None):
        rng = np.random.default_rng(seed)
        out = []
        for r in as_records(inputs):
            samples = []
            for _ in range(num_samples):
                seq = r.sequence
                while "<mask>" in seq:
                    seq = seq.replace("<mask>", RESIDUES[int(rng.integers(20))], 1)
                samples.append(seq)
            out.append(GeneratedRecord(r.id, r.sequence, samples, [float(temperature)] * num_samples))
        return Generated(self.name, out)


def _slow_step(batch: list[int]) -> dict[int, None]:
    time.sleep(float(os.environ.get("TOY_STEP_S", "0.05")))
    if log := os.environ.get("TOY_STEP_LOG"):
        with open(log, "a") as fh:
            fh.write(".")
    return dict.fromkeys(batch)


class ToyFolder(ToyModel):
    """A straight CA trace, 3.8 Angstrom apart; pLDDT rises along the chain."""

    def fold(self, sequence, *, num_recycles=None, chunk_size=None, ligands=None):
        seq = sequence.replace(":", "")
        n = len(seq)
        plddt = np.linspace(50.0, 90.0, n)
        pdb = "".join(
            f"ATOM  {i + 1:5d}  CA  ALA A{i + 1:4d}    {3.8 * i:8.3f}{0.0:8.3f}{0.0:8.3f}  1.00{plddt[i]:6.2f}           C\n"
            for i in range(n)
        ) + "END\n"
        mmcif = f"data_toy\n_entry.id toy\n# {n} residues, recycles={num_recycles}\n"
        pae = np.abs(np.subtract.outer(np.arange(n), np.arange(n))).astype(np.float32) / 2
        return Structure(self.name, "sequence", seq, pdb, mmcif, plddt, ptm=0.5, pae=pae, chains=["A"],
                         extra={"num_recycles": num_recycles, "ligands": ligands or []})


class ToySmiles(ToyModel):
    def decode(self, hiddens: np.ndarray, mask: np.ndarray, *, method: str = "greedy") -> list[str]:
        return ["C" * int(m.sum()) + ("" if method == "greedy" else "O") for m in mask]

    def generate(self, inputs, *, num_molecules=1, scaled_radius=1.0, seed=None):
        out = [GeneratedRecord(r.id, r.sequence, [r.sequence + "C" * (k + 1) for k in range(num_molecules)],
                               [0.0] * num_molecules, properties={"scaled_radius": [scaled_radius] * num_molecules})
               for r in as_records(inputs)]
        return Generated(self.name, out)


def toy_app():
    """uvicorn factory: the real app, with the toy family registered (settings from the environment)."""
    from bionemo_lite.server.app import create_app

    register_toys()
    return create_app()


def serve_toys(port: int) -> None:
    """Run the toy app with `serve` on `port` (see `toy_serve`)."""
    from bionemo_lite.server.app import serve
    from bionemo_lite.server.settings import Settings

    register_toys()
    serve(Settings(port=port))


def downloadable_toy_spec(url: str, sha256: str | None = None) -> ModelSpec:
    """``toy_download``: a toy encoder whose official weights are at `url` (a test's own HTTP server)."""
    source = WeightSource(format="npz", files=(WeightFile("toy.npz", url, sha256=sha256),), entry="toy.npz",
                          homepage=url)
    return ModelSpec(name="toy_download", family="toy", verbs=frozenset({"embed"}), loader="server_fixtures:load_toy",
                     max_length=40, config={"kind": "encoder", "layers": TOY_LAYERS, "dim": TOY_DIM},
                     license="test only", weights=(source,))


def numerics_toy_spec() -> ModelSpec:
    """``toy_numerics``: a toy encoder whose family offers two arithmetic modes, like ESM-2."""
    return ModelSpec(name="toy_numerics", family="toy", verbs=frozenset({"embed"}), loader="server_fixtures:load_toy",
                     max_length=40, config={"kind": "encoder", "layers": TOY_LAYERS, "dim": TOY_DIM},
                     license="test only", weights=(_source(),), numerics=("fast", "reference"))


def startup_toy_app():
    """uvicorn factory: `toy_app` plus ``toy_download``, whose weights URL is ``$TOY_DOWNLOAD_URL``
    (sha256 ``$TOY_DOWNLOAD_SHA256`` when set), for the start-up tests."""
    from bionemo_lite.server.app import create_app

    register_toys()
    register(downloadable_toy_spec(os.environ["TOY_DOWNLOAD_URL"], os.environ.get("TOY_DOWNLOAD_SHA256") or None))
    return create_app()


# ---------------------------------------------------------------- job workers (tests/test_http_jobs*.py)

class ToyCountingEncoder(ToyEncoder):
    """`ToyEncoder` whose every computed record id is appended to ``$TOY_RECORD_LOG`` (one line each,
    flushed at once), so tests count what a job computed, even across killed workers; each batch sleeps
    ``$TOY_RECORD_DELAY_S`` per record."""

    def embed(self, inputs, layer=-1, pooling="mean", *, on_too_long="error", tokens_per_batch=None):
        records = list(as_records(inputs))
        time.sleep(float(os.environ.get("TOY_RECORD_DELAY_S", "0")) * len(records))
        result = super().embed(records, layer, pooling, on_too_long=on_too_long, tokens_per_batch=tokens_per_batch)
        if log := os.environ.get("TOY_RECORD_LOG"):
            with open(log, "a") as fh:
                fh.write("".join(f"{rid}\n" for rid in result.ids))
                fh.flush()
        return result


class ToyRecordFolder(ToyFolder):
    """`ToyFolder` taking a `Record` too, as the `Folder` Protocol allows (batch jobs pass records)."""

    def fold(self, sequence, **options):
        return super().fold(getattr(sequence, "sequence", sequence), **options)


def register_job_toys() -> None:
    """The toys plus ``toy_counter`` (a `ToyCountingEncoder`), in the API process and in each job worker."""
    register_toys()
    common = {"family": "toy", "loader": "server_fixtures:load_toy", "license": "test only", "weights": (_source(),)}
    register(ModelSpec(name="toy_counter", verbs=frozenset({"embed", "score"}), max_length=40,
                       config={"kind": "counter", "layers": TOY_LAYERS, "dim": TOY_DIM}, **common))
    register(ModelSpec(name="toy_job_folder", verbs=frozenset({"fold"}), max_length=30, config={"kind": "job_folder"},
                       **common))


def job_toy_app():
    """uvicorn factory: the real app with `register_job_toys` (settings from the environment)."""
    from bionemo_lite.server.app import create_app

    register_job_toys()
    return create_app()
