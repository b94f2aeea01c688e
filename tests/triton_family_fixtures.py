"""The trained MegaMolBART of the real-Triton tests (the other families' checkpoints are random:
``bionemo_lite.zoo.<family>.testing``).

MegaMolBART's tiny architecture (`bionemo_lite.zoo.megamolbart.testing.TINY_CONFIG`), trained as an
autoencoder on a dozen drug SMILES until greedy decoding rebuilds every one (about 10 s on one
thread), saved in the project's safetensors layout.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bionemo_lite.zoo.megamolbart.testing import TINY_CONFIG
from megamolbart_fixtures import DRUG_SMILES

# The first dozen drugs: enough for decode/generate to mean something, quick to learn.
TRAINING_SMILES = dict(list(DRUG_SMILES.items())[:12])


def write_trained_megamolbart(folder: Path) -> Path:
    """Train the tiny MegaMolBART on `TRAINING_SMILES` (fixed seed) and save it; returns the folder."""
    from bionemo_lite.zoo.megamolbart.model import MegaMolBARTModel
    from bionemo_lite.zoo.megamolbart.training import train_autoencoder

    smiles = list(TRAINING_SMILES.values())
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model, shared cores: one thread is fastest
    try:
        model = MegaMolBARTModel.from_config(TINY_CONFIG, seed=0)
        report = train_autoencoder(model, smiles, steps=400, batch_size=len(smiles), lr=5e-3, warmup_steps=30,
                                   target_accuracy=1.0, eval_every=25, seed=0)
    finally:
        torch.set_num_threads(old)
    print(f"\ntiny MegaMolBART: {report.steps} steps in {report.seconds:.1f} s, greedy reconstruction "
          f"{report.accuracy:.0%} ({report.stopped})")
    model.save_pretrained(folder)
    return folder
