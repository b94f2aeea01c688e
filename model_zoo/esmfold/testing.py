"""Tiny random-weight ESMFold checkpoints in the Hugging Face layout, for tests and demos.

The shape is ESMFold's with every dimension shrunk (2-layer ESM-2 stem of dim
32, one folding block, a 2-block structure module); parameters are drawn at
random (no zero-initialised heads, so pLDDT, PAE and coordinates all vary) and
the model is written with ``save_pretrained``, exactly as
``facebook/esmfold_v1`` is stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .config import hf_config_dict

TINY_SHAPE: dict[str, int] = {
    "esm_layers": 2,
    "esm_dim": 32,
    "esm_heads": 4,
    "trunk_blocks": 1,
    "sequence_state_dim": 32,
    "pairwise_state_dim": 16,
    "sequence_head_width": 8,
    "pairwise_head_width": 8,
    "position_bins": 8,
    "structure_module_dim": 32,
    "structure_module_blocks": 2,
    "ipa_heads": 2,
    "lddt_head_hid_dim": 16,
    "max_recycles": 2,
}
TINY_STRUCTURE_MODULE: dict[str, Any] = {"pairwise_dim": 16, "ipa_dim": 8, "resnet_dim": 16, "num_qk_points": 2,
                                         "num_v_points": 2, "dropout_rate": 0.0}


def tiny_config() -> Any:
    """The ``transformers.EsmConfig`` of `TINY_SHAPE`."""
    from transformers import EsmConfig

    return EsmConfig(**hf_config_dict(TINY_SHAPE, structure_module=TINY_STRUCTURE_MODULE))


def random_tiny_esmfold(seed: int = 0) -> Any:
    """An ``EsmForProteinFolding`` of `TINY_SHAPE` with all parameters random (float32, eval mode)."""
    from transformers import EsmForProteinFolding

    torch.manual_seed(seed)
    model = EsmForProteinFolding(tiny_config()).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name.lower() or name.endswith(("weight", "gamma"))):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif p.dim() > 1:
                p.copy_(torch.randn_like(p) / p.shape[-1] ** 0.5)
            else:
                p.copy_(0.1 * torch.randn_like(p))
    return model


def write_tiny_esmfold_dir(folder: str | Path, seed: int = 0) -> Path:
    """Save `random_tiny_esmfold` as a Hugging Face directory (config.json + model.safetensors)."""
    folder = Path(folder)
    model = random_tiny_esmfold(seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    return folder


def tiny_checkpoint(folder: str | Path) -> Path:
    """A tiny random ESMFold as a Hugging Face directory (``<folder>/esmfold_v1``)."""
    return write_tiny_esmfold_dir(Path(folder) / "esmfold_v1")
