"""Tiny random-weight OpenFold-3 checkpoints in openfold3's own formats, for tests and demos.

The architecture is openfold3's, only narrower and shallower (one block per
stack, a few diffusion steps), so a CPU fold of a short chain takes seconds.
It is expressed as openfold3's ``model_update`` section, the same thing a user
passes to load a checkpoint of a non-default size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

TINY_MODEL_UPDATE: dict[str, Any] = {
    "custom": {
        "architecture": {
            "shared": {
                "c_s": 32,
                "c_z": 16,
                "num_recycles": 1,
                "diffusion": {"no_full_rollout_samples": 2, "no_full_rollout_steps": 4},
            },
            "input_embedder": {
                "atom_attn_enc": {"c_atom": 16, "c_atom_pair": 8, "c_token": 32, "no_blocks": 1},
            },
            "template": {"c_t": 8, "template_pair_stack": {"no_blocks": 1}},
            "msa": {"msa_module": {"c_m": 8, "no_blocks": 1}},
            "pairformer": {"no_blocks": 1},
            "diffusion_module": {
                "diffusion_module": {"c_token": 64},
                "atom_attn_enc": {"no_blocks": 1},
                "diffusion_transformer": {"no_blocks": 1},
                "atom_attn_dec": {"no_blocks": 1},
            },
            "heads": {"pairformer_embedding": {"pairformer": {"no_blocks": 1}}},
        }
    }
}
"""openfold3 ``model_update`` for a ~0.75M-parameter model with every module of the real one."""


def tiny_config(device: str = "cpu") -> Any:
    """openfold3's config with `TINY_MODEL_UPDATE` applied, ready for inference on `device`."""
    from .config import apply_model_update, default_config, prepare_for_inference

    return prepare_for_inference(apply_model_update(default_config(), TINY_MODEL_UPDATE), device)


DECODER_OUTPUT = "diffusion_module.atom_attn_dec.linear_q_out.weight"
"""The diffusion decoder's last projection: per-atom position updates come out of it."""


def write_tiny_checkpoint(
    path: str | Path,
    layout: Literal["ema-only", "training"] = "ema-only",
    seed: int = 0,
    coordinate_scale: float = 1.0,
) -> Path:
    """Write a random-weight tiny OpenFold-3 checkpoint.

    Args:
        path: the file to write (``.pt`` for the released layout, ``.ckpt`` for training).
        layout: ``"ema-only"`` is the released parameter layout (a flat state dict,
            no config: load it with ``model_update=TINY_MODEL_UPDATE``);
            ``"training"`` is a Lightning training checkpoint carrying the config.
        seed: seed of the random initialisation (torch and numpy: openfold3's
            truncated-normal init draws from numpy).
        coordinate_scale: multiplies the diffusion decoder's output projection; a large
            value puts atoms thousands of Angstrom apart, beyond what PDB columns hold.
    """
    import numpy as np
    import torch
    from openfold3.projects.of3_all_atom.model import OpenFold3

    from .checkpoint import write_ema_checkpoint, write_training_checkpoint

    config = tiny_config()
    np_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed)
            model = OpenFold3(config)
            # openfold3 zero-initialises its output projections ("final" init), so a fresh
            # model ignores its input; perturb every weight so the test model does not.
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p) * 0.02)
                model.get_parameter(DECODER_OUTPUT).mul_(coordinate_scale)
    finally:
        np.random.set_state(np_state)
    if layout == "ema-only":
        return write_ema_checkpoint(model, Path(path))
    if layout == "training":
        return write_training_checkpoint(model, config, Path(path))
    raise ValueError(f"layout must be 'ema-only' or 'training', got {layout!r}")


def tiny_checkpoint(folder: str | Path, seed: int = 0) -> Path:
    """Write ``<folder>/of3-tiny.ckpt``: a random tiny model as an openfold3 training checkpoint.

    The training layout carries its config, so it loads by name with no ``model_update``.
    """
    return write_tiny_checkpoint(Path(folder) / "of3-tiny.ckpt", "training", seed=seed)
