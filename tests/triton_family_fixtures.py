"""Checkpoints of the non-ESM-2 families for the real-Triton tests (tiny, written here).

- ProtT5: a random tiny T5 in the two published layouts, the full
  encoder-decoder (safetensors, as ``Rostlab/prot_t5_xl_uniref50``) and the
  encoder alone in float16 (``pytorch_model.bin``, as
  ``prot_t5_xl_half_uniref50-enc``); no ``spiece.model`` (the plugin's
  built-in vocabulary).
- MegaMolBART: the tiny architecture of the MegaMolBART tests, trained as an
  autoencoder on a dozen drug SMILES until greedy decoding rebuilds every one
  (about 10 s on one thread), saved in the project's safetensors layout.
- ESMFold: `esmfold_fixtures.write_tiny_esmfold_dir` (random weights).
"""

from __future__ import annotations

from pathlib import Path

import torch

from megamolbart_fixtures import DRUG_SMILES, TINY_TRAINING_CONFIG

TINY_T5 = dict(
    d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8, vocab_size=128,
    relative_attention_num_buckets=32, feed_forward_proj="relu",
)
# The first dozen drugs: enough for decode/generate to mean something, quick to learn.
TRAINING_SMILES = dict(list(DRUG_SMILES.items())[:12])


def _randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random (norm weights around 1), so no weight hides behind its init value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            p.copy_(1 + 0.3 * noise if "layer_norm" in name else 0.2 * noise)
    return model.eval()


def write_prott5_full(folder: Path, seed: int = 1) -> Path:
    """A tiny ``T5ForConditionalGeneration`` saved with ``save_pretrained`` (config.json + model.safetensors)."""
    import transformers

    _randomize(transformers.T5ForConditionalGeneration(transformers.T5Config(**TINY_T5)), seed).save_pretrained(folder)
    return folder


def write_prott5_half_encoder(folder: Path, seed: int = 2) -> Path:
    """A tiny ``T5EncoderModel`` stored in float16 as ``pytorch_model.bin`` + config.json."""
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    model = _randomize(transformers.T5EncoderModel(transformers.T5Config(**TINY_T5)), seed).half()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    model.config.save_pretrained(folder)
    return folder


def write_trained_megamolbart(folder: Path) -> Path:
    """Train the tiny MegaMolBART on `TRAINING_SMILES` (fixed seed) and save it; returns the folder."""
    from bionemo_lite.zoo.megamolbart.model import MegaMolBARTModel
    from bionemo_lite.zoo.megamolbart.training import train_autoencoder

    smiles = list(TRAINING_SMILES.values())
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model, shared cores: one thread is fastest
    try:
        model = MegaMolBARTModel.from_config(TINY_TRAINING_CONFIG, seed=0)
        report = train_autoencoder(model, smiles, steps=400, batch_size=len(smiles), lr=5e-3, warmup_steps=30,
                                   target_accuracy=1.0, eval_every=25, seed=0)
    finally:
        torch.set_num_threads(old)
    print(f"\ntiny MegaMolBART: {report.steps} steps in {report.seconds:.1f} s, greedy reconstruction "
          f"{report.accuracy:.0%} ({report.stopped})")
    model.save_pretrained(folder)
    return folder
