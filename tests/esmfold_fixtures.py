"""ESMFold in fair-esm's layout for the conversion tests: ``esmfold_3B_v1.pt`` with an OmegaConf cfg.

The Hugging Face layout (what the plugin loads) is `bionemo_lite.zoo.esmfold.testing`;
this module writes the same tiny model as fair-esm stores ESMFold, an oracle for
`bionemo_lite.zoo.esmfold.convert`. omegaconf is not a dependency, so the pickled
``DictConfig`` is made of look-alike classes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bionemo_lite.zoo.esm2.testing import TinyEsm2, random_fair_esm2, write_fair_esm_checkpoint
from bionemo_lite.zoo.esmfold.testing import TINY_SHAPE, random_tiny_esmfold

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
