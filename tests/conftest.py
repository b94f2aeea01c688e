"""Shared fixtures: random-weight checkpoints in the official formats, written once per run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Every test gets an empty weight cache: nothing from the user's machine leaks in.
os.environ.setdefault("BIONEMO_LITE_HOME", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"bionemo-lite-test-{os.getpid()}"))

from checkpoints import TinyEsm2, write_fair_esm_checkpoint, write_hf_esm_dir  # noqa: E402

ESM2_TEST_NAME = "esm2_t6_8M_UR50D"  # tiny random weights stored under a real variant's name


@pytest.fixture(scope="session")
def tiny_esm2_arch() -> TinyEsm2:
    return TinyEsm2()


@pytest.fixture(scope="session")
def esm2_fair_checkpoint(tmp_path_factory, tiny_esm2_arch) -> Path:
    """``esm2_t6_8M_UR50D.pt`` + ``-contact-regression.pt`` with tiny random weights (fair-esm layout)."""
    return write_fair_esm_checkpoint(tmp_path_factory.mktemp("fair"), ESM2_TEST_NAME, tiny_esm2_arch)


@pytest.fixture(scope="session")
def esm2_hf_dir(tmp_path_factory, tiny_esm2_arch) -> Path:
    """The same weights as a Hugging Face ``EsmForMaskedLM`` directory."""
    return write_hf_esm_dir(tmp_path_factory.mktemp("hf") / ESM2_TEST_NAME, tiny_esm2_arch)


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
    """A tiny MegaMolBART trained here as a SMILES autoencoder on a few dozen drugs (~30 s, once per session).

    No trained weights can be downloaded, so decode/generate are tested on what this model learned.
    Returns ``(model, TrainingReport)``.
    """
    import torch
    from megamolbart_fixtures import DRUG_SMILES, TINY_TRAINING_CONFIG

    from bionemo_lite.zoo.megamolbart.model import MegaMolBARTModel
    from bionemo_lite.zoo.megamolbart.training import train_autoencoder

    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared 2-core machine: one thread is fastest
    try:
        model = MegaMolBARTModel.from_config(TINY_TRAINING_CONFIG, seed=0)
        report = train_autoencoder(
            model, list(DRUG_SMILES.values()), steps=400, batch_size=40, lr=5e-3, warmup_steps=30,
            target_accuracy=0.95, eval_every=25, seed=0,
        )
    finally:
        torch.set_num_threads(old)
    print(f"\ntrained {report.steps} steps in {report.seconds:.1f} s, final loss {report.losses[-1]:.4f}, "
          f"greedy reconstruction {report.accuracy:.1%} ({report.stopped})")
    return model, report
