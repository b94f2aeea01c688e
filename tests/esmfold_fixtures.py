"""Tiny random-weight ESMFold checkpoints for the tests (Hugging Face layout).

The shape is ESMFold's with every dimension shrunk (2-layer ESM-2 stem of dim
32, one folding block, a 2-block structure module); parameters are drawn at
random (no zero-initialised heads, so pLDDT, PAE and coordinates all vary) and
the model is written with ``save_pretrained``, exactly as
``facebook/esmfold_v1`` is stored.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bionemo_lite.zoo.esmfold.config import hf_config_dict

TINY_SHAPE = {
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
TINY_STRUCTURE_MODULE = {"pairwise_dim": 16, "ipa_dim": 8, "resnet_dim": 16, "num_qk_points": 2, "num_v_points": 2,
                         "dropout_rate": 0.0}


def tiny_config():
    from transformers import EsmConfig

    return EsmConfig(**hf_config_dict(TINY_SHAPE, structure_module=TINY_STRUCTURE_MODULE))


def random_tiny_esmfold(seed: int = 0):
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


def write_tiny_esmfold_dir(folder: Path, seed: int = 0) -> Path:
    """Save `random_tiny_esmfold` as a Hugging Face directory (config.json + model.safetensors)."""
    model = random_tiny_esmfold(seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    return folder


# ------------------------------------------------------------ fair-esm layout

FAIR_CFG = {
    "trunk": {
        "_name": "FoldingTrunkConfig",
        "num_blocks": TINY_SHAPE["trunk_blocks"],
        "sequence_state_dim": TINY_SHAPE["sequence_state_dim"],
        "pairwise_state_dim": TINY_SHAPE["pairwise_state_dim"],
        "sequence_head_width": TINY_SHAPE["sequence_head_width"],
        "pairwise_head_width": TINY_SHAPE["pairwise_head_width"],
        "position_bins": TINY_SHAPE["position_bins"],
        "dropout": 0,
        "layer_drop": 0,
        "cpu_grad_checkpoint": False,
        "max_recycles": TINY_SHAPE["max_recycles"],
        "chunk_size": None,
        # fair-esm's StructureModuleConfig field names
        "structure_module": {"c_s": 32, "c_z": 16, "c_ipa": 8, "c_resnet": 16, "no_heads_ipa": 2, "no_qk_points": 2,
                             "no_v_points": 2, "dropout_rate": 0.0, "no_blocks": TINY_SHAPE["structure_module_blocks"],
                             "no_transition_layers": 1, "no_resnet_blocks": 2, "no_angles": 7,
                             "trans_scale_factor": 10, "epsilon": 1e-8, "inf": 1e5},
    },
    "lddt_head_hid_dim": TINY_SHAPE["lddt_head_hid_dim"],
}


def _fake_omegaconf():
    """Classes named like OmegaConf's, so a pickle references the same globals as a real DictConfig.

    omegaconf is not a dependency; these mirror the pickled state of omegaconf 2.x
    (``DictConfig.__getstate__``: ``_metadata`` / ``_parent`` / ``_content``; value
    nodes with ``_val``), which is all a reader sees.
    """
    import types

    mods = {}
    classes = {"omegaconf.dictconfig": ["DictConfig"], "omegaconf.base": ["ContainerMetadata", "Metadata"],
               "omegaconf.nodes": ["AnyNode"]}
    for mod_name, cls_names in classes.items():
        mod = types.ModuleType(mod_name)
        for cls_name in cls_names:
            cls = type(cls_name, (), {"__module__": mod_name, "__qualname__": cls_name})
            setattr(mod, cls_name, cls)
        mods[mod_name] = mod
    mods["omegaconf"] = types.ModuleType("omegaconf")
    return mods


def _to_dictconfig(value, mods, parent=None, key=None):
    import collections
    import typing

    if isinstance(value, dict):
        node = mods["omegaconf.dictconfig"].DictConfig()
        meta = mods["omegaconf.base"].ContainerMetadata()
        meta.__dict__.update(ref_type=typing.Any, object_type=dict, optional=True, key=key, flags={},
                             flags_root=False, resolver_cache=collections.defaultdict(dict),
                             key_type=typing.Any, element_type=typing.Any)
        node.__dict__.update(_metadata=meta, _parent=parent, _content={})
        for k, v in value.items():
            node._content[k] = _to_dictconfig(v, mods, node, k)
        return node
    leaf = mods["omegaconf.nodes"].AnyNode()
    meta = mods["omegaconf.base"].Metadata()
    meta.__dict__.update(ref_type=typing.Any, object_type=None, optional=True, key=key, flags={})
    leaf.__dict__.update(_metadata=meta, _parent=parent, _val=value)
    return leaf


def save_with_fake_dictconfig(obj_builder, path: Path) -> None:
    """``torch.save(obj_builder(to_cfg))`` with OmegaConf-named classes importable while pickling."""
    import sys

    mods = _fake_omegaconf()
    saved = {name: sys.modules.get(name) for name in mods}
    sys.modules.update(mods)
    try:
        torch.save(obj_builder(lambda value: _to_dictconfig(value, mods)), path)
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def fair_esm2_stem(seed: int = 1):
    """A real fair-esm ``ESM2`` of the tiny stem's shape, random weights (the stem's source of truth)."""
    from checkpoints import TinyEsm2, random_fair_esm2

    model, alphabet = random_fair_esm2(TinyEsm2(num_layers=TINY_SHAPE["esm_layers"], embed_dim=TINY_SHAPE["esm_dim"],
                                                attention_heads=TINY_SHAPE["esm_heads"], seed=seed))
    return model, alphabet


def write_fair_esmfold(folder: Path, seed: int = 0, stem_inside: bool = False) -> tuple[Path, dict]:
    """fair-esm layout: ``esmfold_3B_v1.pt`` (folding weights, DictConfig cfg) + the ESM-2 stem.

    The stem is a fair-esm ESM2; with ``stem_inside`` its keys sit in the ESMFold
    file as ``esm.*`` (as ``ESMFold.state_dict()`` names them), else it is written
    as ``esm2_t36_3B_UR50D.pt`` + contact regression beside it (the official
    ESM-2 layout), which is how upstream gets it.

    Returns:
        (path of the ESMFold file, the source tensors: ``{"folding": ..., "stem": ...}``).
    """
    from checkpoints import write_fair_esm_checkpoint, TinyEsm2

    folder.mkdir(parents=True, exist_ok=True)
    hf = random_tiny_esmfold(seed)
    folding = {k: v.clone() for k, v in hf.state_dict().items() if not k.startswith("esm.")}
    stem_model, _ = fair_esm2_stem(seed + 1)
    stem = {k: v.clone() for k, v in stem_model.state_dict().items()}
    body = dict(folding)
    if stem_inside:
        body.update({f"esm.{k}": v for k, v in stem.items()})
    else:
        write_fair_esm_checkpoint(folder, "esm2_t36_3B_UR50D",
                                  TinyEsm2(num_layers=TINY_SHAPE["esm_layers"], embed_dim=TINY_SHAPE["esm_dim"],
                                           attention_heads=TINY_SHAPE["esm_heads"], seed=seed + 1))
    path = folder / "esmfold_3B_v1.pt"
    save_with_fake_dictconfig(lambda to_cfg: {"model": body, "cfg": {"model": to_cfg(FAIR_CFG)}}, path)
    return path, {"folding": folding, "stem": stem}
