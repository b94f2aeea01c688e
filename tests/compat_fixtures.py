"""One real uvicorn server for the compatibility tests (BioNeMo client and NIM shapes), shared
by their modules: tiny random checkpoints stored under the names the compatibility routes map
to (ESM-2 650M, ESM-1b, ESMFold, OpenFold-3), the MegaMolBART trained in conftest (`trained`),
and API keys for two owners."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from keys_fixtures import add_key
from server_fixtures import ServerProcess, cli_serve

ESM2 = "esm2_t33_650M_UR50D"  # answers esm2-650m
ESM1 = "esm1b_t33_650M_UR50S"  # answers esm1nv
ESMFOLD = "esmfold_v1"
OPENFOLD = "openbind-2025-06-30-174k"
MEGAMOLBART = "megamolbart"


@dataclass
class CompatServer:
    server: ServerProcess
    weights: dict[str, Path]
    keys: dict[str, str]  # owner -> key

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def bionemo_host(self) -> str:
        return f"{self.server.base_url}/bionemo/v1"


_shared: CompatServer | None = None


def write_weights(folder: Path, trained_model) -> dict[str, Path]:
    from bionemo_lite.zoo.esm1.testing import tiny_checkpoint as tiny_esm1
    from bionemo_lite.zoo.esm2.testing import tiny_checkpoint as tiny_esm2
    from bionemo_lite.zoo.esmfold.testing import tiny_checkpoint as tiny_esmfold
    from bionemo_lite.zoo.openfold.testing import tiny_checkpoint as tiny_openfold

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {ESM2: tiny_esm2(folder / "esm2", ESM2), ESM1: tiny_esm1(folder / "esm1"),
                ESMFOLD: tiny_esmfold(folder / "esmfold"), OPENFOLD: tiny_openfold(folder / "openfold"),
                MEGAMOLBART: trained_model.save_nemo(folder / "megamolbart.nemo")}


def compat_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, trained) -> CompatServer:
    """The shared server, started by the first module that asks, stopped at the end of the session."""
    global _shared
    if _shared is None:
        folder = tmp_path_factory.mktemp("compat")
        weights = write_weights(folder / "weights", trained[0])
        keys = {name: add_key(folder / "keys.json", name) for name in ("alice", "bob")}
        args = ["--max-sequences", "32", "--api-keys", str(folder / "keys.json")]
        env = {"BIONEMO_LITE_HOME": str(folder / "empty-cache"), "BIONEMO_LITE_TORCH_THREADS": "1",
               "BIONEMO_LITE_LOG_LEVEL": "warning", "BIONEMO_LITE_MAX_TOKEN_PASSES": str(10**9),
               "BIONEMO_LITE_WEIGHTS": json.dumps({k: str(v) for k, v in weights.items()})}
        server = ServerProcess(cli_serve(*args), env, folder / "server.log")
        server.start()
        request.config.add_cleanup(server.stop)
        _shared = CompatServer(server, weights, keys)
    return _shared
