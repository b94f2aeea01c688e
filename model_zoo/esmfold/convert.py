"""Convert fair-esm's ``esmfold_3B_v1.pt`` to the Hugging Face ``EsmForProteinFolding`` layout.

    python -m bionemo_lite.zoo.esmfold.convert esmfold_3B_v1.pt OUT_DIR [--esm2 esm2_t36_3B_UR50D.pt]

What is confirmed, and from where:

- The folding part (``trunk.*``, ``esm_s_mlp.*``, ``esm_s_combine``,
  ``embedding.*``, ``distogram_head.*``, ``ptm_head.*``, ``lm_head.*``,
  ``lddt_head.*``, ``af2_to_esm``) has the same names on both sides:
  transformers' own conversion script (``convert_esm.py``) copies these
  modules with strict ``load_state_dict``.
- The ESM-2 stem uses the fair-esm -> transformers ESM-2 key map (checked on
  this project's ESM-2 checkpoints: ``embed_tokens`` -> ``embeddings.word_embeddings``,
  ``layers.N.self_attn.q_proj`` -> ``encoder.layer.N.attention.self.query``, ...).
- fair-esm's ``ESMFold`` builds its stem from ``esm2_t36_3B_UR50D`` (downloaded
  separately) and its loader tolerates a checkpoint without ``esm.*`` keys, so
  the stem is taken from ``esm.*`` keys when the file has them and otherwise
  from the ESM-2 3B checkpoint (``--esm2``; by default looked for beside the
  ESMFold file), whose ``<name>-contact-regression.pt`` is used for the
  (unused by folding) contact head when present.
- ``cfg["model"]`` of the ESMFold file is, judging from fair-esm's code
  (``cfg.trunk.structure_module.items()``, ``from omegaconf import MISSING``),
  an OmegaConf ``DictConfig``. It is read without omegaconf and without
  running any pickled code: every ``omegaconf.*`` (and ``typing``) global is
  replaced by an inert stand-in whose fields are read back as plain values.
  The architecture itself is taken from the tensor shapes; the config only
  supplies what shapes cannot tell (structure-module blocks, max recycles).
  The real file was not available offline to confirm this layout.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bionemo_lite.errors import BionemoLiteError, CheckpointError
from bionemo_lite.weights import safe_torch_load

from bionemo_lite.zoo.esm2.checkpoint import hf_key_for  # ESMFold's stem is an ESM-2: one key table for both

from .config import ESM2_VOCAB, hf_config_dict

logger = logging.getLogger(__name__)

ESM2_3B_NAME = "esm2_t36_3B_UR50D"
# Attention heads of the published ESM-2 sizes (fair-esm esm/pretrained.py), by embedding dim.
ESM2_HEADS_BY_DIM = {320: 20, 480: 20, 640: 20, 1280: 20, 2560: 40, 5120: 40}
FOLDING_PREFIXES = ("trunk.", "esm_s_mlp.", "esm_s_combine", "embedding.", "distogram_head.", "ptm_head.",
                    "lm_head.", "lddt_head.", "af2_to_esm")
# Pickled globals replaced by inert stand-ins: configuration containers, never code.
_STANDIN_PREFIXES = ("omegaconf.", "typing.", "esm.esmfold.", "collections.defaultdict", "builtins.dict",
                     "builtins.list", "builtins.int", "builtins.float", "builtins.str", "builtins.bool")


class _StandIn:
    """Inert replacement for a pickled configuration class: it only stores what it is given."""

    def __init__(self, *args: Any, **kwargs: Any):
        self._args = args

    def __setstate__(self, state: Any) -> None:
        self.__dict__.update(state if isinstance(state, dict) else {"_state": state})


def _standin(name: str) -> type:
    return type(name.rsplit(".", 1)[-1], (_StandIn,), {"__qualname__": name})


def load_fair_checkpoint(path: Path) -> dict[str, Any]:
    """Read a fair-esm ``.pt`` safely: tensors, ``argparse.Namespace`` and inert config stand-ins only.

    Raises:
        CheckpointError: unreadable, or it pickles anything beyond configuration objects.
    """
    import torch

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:  # torch raises several kinds for a file that is not a checkpoint
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {exc}") from exc
    allowed: list[Any] = [argparse.Namespace]
    for name in names:
        if name == "argparse.Namespace":
            continue
        if not name.startswith(_STANDIN_PREFIXES):
            raise CheckpointError(f"{path}: pickles {name}, which is never loaded (only tensors and configuration)")
        allowed.append((_standin(name), name))
    data = safe_torch_load(path, allowed)
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path}: expected a dict with 'model' (and 'cfg'), found {type(data).__name__}")
    return dict(data)


def plain(value: Any) -> Any:
    """Config objects (OmegaConf stand-ins, Namespaces) as plain dicts, lists and scalars."""
    if isinstance(value, _StandIn):
        fields = value.__dict__
        if "_content" in fields:  # DictConfig / ListConfig
            return plain(fields["_content"])
        if "_val" in fields:  # a value node
            return plain(fields["_val"])
        return None
    if isinstance(value, argparse.Namespace):
        return {k: plain(v) for k, v in vars(value).items()}
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _state_dict(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    import torch

    state = data.get("model", data)
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: no state dict of tensors under 'model'")
    return dict(state)


def _model_cfg(data: Mapping[str, Any]) -> dict[str, Any]:
    cfg = plain(data.get("cfg"))
    if isinstance(cfg, Mapping) and isinstance(cfg.get("model"), Mapping):
        return dict(cfg["model"])
    args = plain(data.get("args"))
    return dict(args) if isinstance(args, Mapping) else {}


def esm2_to_hf_key(key: str) -> str | None:
    """A fair-esm ESM2 state-dict key (prefixes stripped) as an ``EsmModel`` key; None if unused by ESMFold."""
    if key.startswith("lm_head."):
        return None  # ESM-2's masked-LM head, which ESMFold does not use
    if key.endswith("self_attn.rot_emb.inv_freq"):  # ESMFold checkpoints keep the rotary buffer
        return key.replace("layers.", "encoder.layer.", 1).replace("self_attn.rot_emb.", "attention.self.rotary_embeddings.")
    name = hf_key_for(key)
    return name[len("esm."):] if name is not None and name.startswith("esm.") else name


def _strip_esm2_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    # As fair-esm's upgrade_state_dict: official files keep the encoder under these prefixes.
    pattern = re.compile(r"^(encoder\.sentence_encoder\.|encoder\.)")
    return {pattern.sub("", k): v for k, v in state.items()}


def _esm2_stem(fold_state: Mapping[str, Any], pt_path: Path, esm2_path: Path | None) -> tuple[dict, int | None]:
    """fair-esm ESM2 keys of the stem (no prefix) and the attention heads if a config tells them."""
    inside = {k[len("esm."):]: v for k, v in fold_state.items() if k.startswith("esm.")}
    if inside:
        return inside, None
    if esm2_path is None:
        beside = pt_path.parent / f"{ESM2_3B_NAME}.pt"
        if not beside.is_file():
            raise CheckpointError(
                f"{pt_path} holds no ESM-2 stem weights (esm.*); as upstream, the stem comes from "
                f"{ESM2_3B_NAME}.pt: download it from https://dl.fbaipublicfiles.com/fair-esm/models/{ESM2_3B_NAME}.pt "
                "and pass it with --esm2 (or put it beside the ESMFold file)"
            )
        esm2_path = beside
    data = load_fair_checkpoint(esm2_path)
    stem = _strip_esm2_prefixes(_state_dict(data, esm2_path))
    regression = esm2_path.with_name(f"{esm2_path.stem}-contact-regression.pt")
    if regression.is_file():
        stem.update(_state_dict(load_fair_checkpoint(regression), regression))
    heads = _model_cfg(data).get("encoder_attention_heads")
    return stem, int(heads) if heads is not None else None


def _count(state: Mapping[str, Any], prefix: str) -> int:
    found = {int(k[len(prefix):].split(".", 1)[0]) for k in state if k.startswith(prefix)}
    return max(found) + 1 if found else 0


def infer_shape(fold_state: Mapping[str, Any], stem: Mapping[str, Any], heads: int | None,
                cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The architecture, from tensor shapes first and the pickled config for what shapes cannot tell.

    Returns:
        (shape keys as in `config.PUBLISHED`, transformers structure-module fields).
    """
    try:
        s = fold_state
        sm = "trunk.structure_module."
        esm_dim = int(stem["embed_tokens.weight"].shape[1])
        c_s = int(s["trunk.trunk2sm_s.weight"].shape[1])
        c_z = int(s["trunk.trunk2sm_z.weight"].shape[1])
        seq_heads = int(s["trunk.blocks.0.pair_to_sequence.linear.weight"].shape[0])
        pair_heads = int(s["trunk.blocks.0.tri_att_start.linear.weight"].shape[0])
        ipa_heads = int(s[sm + "ipa.head_weights"].shape[0])
        qk_points = int(s[sm + "ipa.linear_q_points.weight"].shape[0]) // (ipa_heads * 3)
        structure_module = {
            "sequence_dim": int(s["trunk.trunk2sm_s.weight"].shape[0]),
            "pairwise_dim": int(s["trunk.trunk2sm_z.weight"].shape[0]),
            "ipa_dim": int(s[sm + "ipa.linear_q.weight"].shape[0]) // ipa_heads,
            "resnet_dim": int(s[sm + "angle_resnet.linear_in.weight"].shape[0]),
            "num_heads_ipa": ipa_heads,
            "num_qk_points": qk_points,
            "num_v_points": int(s[sm + "ipa.linear_kv_points.weight"].shape[0]) // (ipa_heads * 3) - qk_points,
            "num_transition_layers": _count(s, sm + "transition.layers."),
            "num_resnet_blocks": _count(s, sm + "angle_resnet.layers."),
            "num_angles": int(s[sm + "angle_resnet.linear_out.weight"].shape[0]) // 2,
        }
        bins_rows = int(s["trunk.pairwise_positional_embedding.embedding.weight"].shape[0])
        lddt_hid = int(s["lddt_head.1.weight"].shape[0])
    except KeyError as exc:
        raise CheckpointError(f"not an ESMFold state dict: {exc.args[0]!r} is missing") from exc
    if heads is None:
        heads = ESM2_HEADS_BY_DIM.get(esm_dim)
        if heads is None:
            raise CheckpointError(
                f"cannot tell the attention heads of an ESM-2 stem of dim {esm_dim} (not a published size): "
                "pass esm_heads= / --esm-heads"
            )
    trunk_cfg = cfg.get("trunk") if isinstance(cfg.get("trunk"), Mapping) else {}
    sm_cfg = trunk_cfg.get("structure_module") if isinstance(trunk_cfg.get("structure_module"), Mapping) else {}
    # fair-esm's StructureModuleConfig names (c_s, no_blocks, ...) differ from transformers'.
    for fair_key, hf_key in (("no_blocks", "num_blocks"), ("trans_scale_factor", "trans_scale_factor"),
                             ("epsilon", "epsilon"), ("inf", "inf"), ("dropout_rate", "dropout_rate")):
        if sm_cfg.get(fair_key) is not None:
            structure_module[hf_key] = sm_cfg[fair_key]
    shape = {
        "esm_layers": _count(stem, "layers."),
        "esm_dim": esm_dim,
        "esm_heads": int(heads),
        "trunk_blocks": _count(s, "trunk.blocks."),
        "sequence_state_dim": c_s,
        "pairwise_state_dim": c_z,
        "sequence_head_width": c_s // seq_heads,
        "pairwise_head_width": c_z // pair_heads,
        "position_bins": (bins_rows - 2) // 2,
        "structure_module_dim": structure_module["sequence_dim"],
        "structure_module_blocks": int(structure_module.get("num_blocks", 8)),
        "ipa_heads": ipa_heads,
        "lddt_head_hid_dim": lddt_hid,
        "max_recycles": int(trunk_cfg.get("max_recycles") or 4),
    }
    return shape, structure_module


def convert_fair_esmfold(
    pt_path: str | Path, out_dir: str | Path, esm2_path: str | Path | None = None, esm_heads: int | None = None
) -> Path:
    """Write fair-esm ESMFold weights as a Hugging Face directory that `esmfold_v1` loads.

    Args:
        pt_path: fair-esm ``esmfold_3B_v1.pt`` (or a fine-tuned file of that layout).
        out_dir: folder to create: ``config.json`` + ``model.safetensors``.
        esm2_path: the ESM-2 checkpoint of the stem (``esm2_t36_3B_UR50D.pt``),
            needed when `pt_path` has no ``esm.*`` keys; default: beside `pt_path`.
        esm_heads: attention heads of the stem, for a stem of unpublished size
            whose heads no config states (published sizes are known).

    Returns:
        `out_dir`.

    Raises:
        CheckpointError: unreadable files, missing or unexpected weights, or
            shapes transformers' ``EsmForProteinFolding`` does not accept.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import EsmConfig, EsmForProteinFolding

    pt_path, out = Path(pt_path), Path(out_dir)
    data = load_fair_checkpoint(pt_path)
    fold_state = _state_dict(data, pt_path)
    stem, heads = _esm2_stem(fold_state, pt_path, Path(esm2_path) if esm2_path is not None else None)
    heads = esm_heads if esm_heads is not None else heads
    shape, structure_module = infer_shape(fold_state, stem, heads, _model_cfg(data))
    config = hf_config_dict(shape, structure_module=structure_module)

    mapped: dict[str, torch.Tensor] = {}
    for key, value in fold_state.items():
        if key.startswith(FOLDING_PREFIXES):
            mapped[key] = value
        elif not key.startswith("esm."):
            raise CheckpointError(f"{pt_path}: unexpected weight {key!r} (not an ESMFold module)")
    for key, value in stem.items():
        new = esm2_to_hf_key(key)
        if new is not None:
            mapped["esm." + new] = value
    if "af2_to_esm" not in mapped:
        mapped["af2_to_esm"] = EsmForProteinFolding._af2_to_esm_from_vocab_list(list(ESM2_VOCAB))

    with torch.device("meta"):
        reference = EsmForProteinFolding(EsmConfig(**config))
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    _check_against(mapped, expected, shape)

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(_unshared(mapped), str(out / "model.safetensors"), metadata={"format": "pt"})
    logger.info("wrote %s (%d tensors)", out, len(mapped))
    return out


def _check_against(mapped: dict[str, Any], expected: dict[str, tuple[int, ...]], shape: Mapping[str, Any]) -> None:
    import torch

    # transformers >= 5 keeps one model-level rotary buffer; files keep one per layer (the
    # published layout, which every transformers version reads).
    shared_rotary = "esm.rotary_embeddings.inv_freq"
    if shared_rotary in expected:
        freq_shape = expected.pop(shared_rotary)
        for i in range(shape["esm_layers"]):
            expected[f"esm.encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq"] = freq_shape
    for key, wanted in list(expected.items()):
        if key.endswith("inv_freq") and key not in mapped:
            # fair-esm computes it the same way; only a stored (fp16-rounded) copy is worth keeping.
            dim = shape["esm_dim"] // shape["esm_heads"]
            mapped[key] = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        if key.endswith("contact_head.regression.weight") and key not in mapped:
            logger.warning("no contact regression weights; writing zeros (ESMFold does not use the contact head)")
            mapped[key] = torch.zeros(wanted)
            mapped[key.replace(".weight", ".bias")] = torch.zeros(expected[key.replace(".weight", ".bias")])
    missing = sorted(set(expected) - set(mapped) - {"esm.embeddings.position_ids"})
    unexpected = sorted(set(mapped) - set(expected))
    wrong = sorted(k for k in set(mapped) & set(expected) if tuple(mapped[k].shape) != expected[k])
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {k}: {tuple(mapped[k].shape)} vs {expected[k]})")
        raise CheckpointError("the converted weights do not fit EsmForProteinFolding: " + "; ".join(parts))
    mapped.pop("esm.embeddings.position_ids", None)


def _unshared(tensors: Mapping[str, Any]) -> dict[str, Any]:
    """Contiguous tensors, copying only those that share memory (safetensors refuses aliases)."""
    seen: set[int] = set()
    out = {}
    for key, value in tensors.items():
        value = value.contiguous()
        ptr = value.untyped_storage().data_ptr()
        if ptr in seen:
            value = value.clone()
        seen.add(value.untyped_storage().data_ptr())
        out[key] = value
    return out


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bionemo_lite.zoo.esmfold.convert",
        description="Convert fair-esm esmfold_3B_v1.pt to a Hugging Face directory for bionemo-lite's esmfold_v1.",
    )
    parser.add_argument("esmfold_pt", type=Path, help="fair-esm ESMFold checkpoint (esmfold_3B_v1.pt)")
    parser.add_argument("out_dir", type=Path, help="folder to write config.json + model.safetensors into")
    parser.add_argument("--esm2", type=Path, default=None,
                        help=f"ESM-2 stem checkpoint ({ESM2_3B_NAME}.pt) when the ESMFold file has none")
    parser.add_argument("--esm-heads", type=int, default=None,
                        help="attention heads of a stem of unpublished size (published sizes are known)")
    return parser


def run(args: argparse.Namespace) -> Path:
    return convert_fair_esmfold(args.esmfold_pt, args.out_dir, esm2_path=args.esm2, esm_heads=args.esm_heads)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = create_parser().parse_args(argv)
    try:
        out = run(args)
    except BionemoLiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}; load it with bionemo_lite.load('esmfold_v1', weights='{out}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
