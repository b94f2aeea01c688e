"""Helpers for the real-Triton tests: exported repositories and a restartable server.

Each test module starts its own ``tritonserver`` (the nvidia-pytriton wheel's,
on CPU) on a repository exported from the tiny ``esm2_fair_checkpoint``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from bionemo_lite.results import Embeddings
from bionemo_lite.triton.launch import TritonServer

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
