"""Shared fixtures: random-weight checkpoints in the official formats (written once per run) and their references.

The checkpoints come from each family's `testing` module (`bionemo_lite.zoo.<family>.testing`);
the upstream references they are compared with (fair-esm, transformers) are loaded here.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

# Every test gets an empty weight cache: nothing from the user's machine leaks in.
os.environ.setdefault("BIONEMO_LITE_HOME", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"bionemo-lite-test-{os.getpid()}"))

from bionemo_lite.zoo.esm2.testing import TinyEsm2, write_fair_esm_checkpoint, write_hf_esm_dir  # noqa: E402
from esm2_fixtures import ESM2_NAME, load_quietly  # noqa: E402


@pytest.fixture(scope="session")
def tiny_esm2_arch() -> TinyEsm2:
    return TinyEsm2()


@pytest.fixture(scope="session")
def esm2_fair_checkpoint(tmp_path_factory, tiny_esm2_arch) -> Path:
    """``esm2_t6_8M_UR50D.pt`` + ``-contact-regression.pt`` with tiny random weights (fair-esm layout)."""
    return write_fair_esm_checkpoint(tmp_path_factory.mktemp("fair"), ESM2_NAME, tiny_esm2_arch)


@pytest.fixture(scope="session")
def esm2_hf_dir(tmp_path_factory, tiny_esm2_arch) -> Path:
    """The same weights as a Hugging Face ``EsmForMaskedLM`` directory."""
    return write_hf_esm_dir(tmp_path_factory.mktemp("hf") / ESM2_NAME, tiny_esm2_arch)


@pytest.fixture(scope="session")
def fair_model(esm2_fair_checkpoint):
    """The tiny fair-esm checkpoint loaded as users get it (``numerics="fast"``, the default)."""
    return load_quietly(esm2_fair_checkpoint)


@pytest.fixture(scope="session")
def reference_model(esm2_fair_checkpoint):
    """The same checkpoint with ``numerics="reference"``: fair-esm's arithmetic, for the bit-exact parity tests."""
    return load_quietly(esm2_fair_checkpoint, numerics="reference")


@pytest.fixture(scope="session")
def hf_model(esm2_hf_dir):
    return load_quietly(esm2_hf_dir)


@pytest.fixture(scope="session")
def fair_ref(esm2_fair_checkpoint):
    """fair-esm's own model and alphabet loaded from the same file."""
    import esm
    import torch

    with torch.serialization.safe_globals([argparse.Namespace]):
        model, alphabet = esm.pretrained.load_model_and_alphabet_local(str(esm2_fair_checkpoint))
    return model.eval(), alphabet


@pytest.fixture(scope="session")
def hf_ref(esm2_hf_dir):
    """transformers' EsmForMaskedLM (eager attention, so it can return attention maps)."""
    from transformers import EsmForMaskedLM

    return EsmForMaskedLM.from_pretrained(str(esm2_hf_dir), attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module: tiny models on two shared cores run fastest so, and
    both sides of a comparison then sum in the same order (as a server started with
    BIONEMO_LITE_TORCH_THREADS=1 does)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BIONEMO_LITE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def trained():
    """A tiny MegaMolBART trained here as a SMILES autoencoder on a few dozen drugs (~40 s, once per session).

    No trained weights can be downloaded, so decode/generate are tested on what this model learned. It is
    trained in float64 and cast to float32 (`megamolbart_fixtures.TINY_TRAINING`), so every CPU gets the
    same weights. Returns ``(model, TrainingReport)``.
    """
    import torch
    from megamolbart_fixtures import train_tiny_megamolbart

    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared 2-core machine: one thread is fastest
    try:
        model, report = train_tiny_megamolbart()
    finally:
        torch.set_num_threads(old)
    print(f"\ntrained {report.steps} steps in {report.seconds:.1f} s, final loss {report.losses[-1]:.4f}, "
          f"greedy reconstruction {report.accuracy:.1%} ({report.stopped})")
    return model, report


@pytest.fixture(scope="module")
def client(server):
    """An HTTP client of the module's own `server` fixture (a real uvicorn process)."""
    import httpx

    with httpx.Client(base_url=server.base_url, timeout=300) as c:
        yield c
