"""Reading ESM-2 checkpoints in their two published formats into our parameter names.

- fair-esm ``.pt`` (``{"model": state_dict, "cfg": {"model": Namespace}}``, keys
  under ``encoder.sentence_encoder.`` / ``encoder.``), with the contact
  regression in a sibling ``<stem>-contact-regression.pt`` when present.
- Hugging Face ``EsmForMaskedLM`` folders: ``config.json`` plus
  ``model.safetensors`` or ``pytorch_model.bin`` (sharded ones too, through
  their ``*.index.json``).

The architecture is read from the checkpoint itself (its config, else the
tensor shapes), so fine-tuned or custom-size ESM-2 checkpoints load as well.
Only tensors are ever unpickled (`safe_torch_load`, weights_only).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bionemo_lite.errors import CheckpointError
from bionemo_lite.weights import read_safetensors, safe_torch_load

from .alphabet import ALPHABET
from .network import ROTARY_BASE, ESM2Network, Esm2Arch, Numerics

FAIR_PREFIXES = ("encoder.sentence_encoder.", "encoder.")
REGRESSION_SUFFIX = "-contact-regression.pt"
CONTACT_KEYS = ("contact_head.regression.weight", "contact_head.regression.bias")
TIED_KEY = "lm_head.weight"
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

# Hugging Face name -> ours, for the parts outside the layer stack.
_HF_TOP = (
    ("esm.embeddings.word_embeddings.", "embed_tokens."),
    ("esm.encoder.emb_layer_norm_after.", "emb_layer_norm_after."),
    ("esm.contact_head.", "contact_head."),
    # ESM-1b's learned positions and embedding LayerNorm (`bionemo_lite.zoo.esm1`); ESM-2 has neither.
    ("esm.embeddings.position_embeddings.", "embed_positions."),
    ("esm.embeddings.layer_norm.", "emb_layer_norm_before."),
    ("lm_head.decoder.weight", "lm_head.weight"),
    ("lm_head.", "lm_head."),
)
# Inside ``esm.encoder.layer.{i}.``: Hugging Face part -> ours.
_HF_LAYER = (
    ("attention.self.query.", "self_attn.q_proj."),
    ("attention.self.key.", "self_attn.k_proj."),
    ("attention.self.value.", "self_attn.v_proj."),
    ("attention.output.dense.", "self_attn.out_proj."),
    ("attention.LayerNorm.", "self_attn_layer_norm."),
    ("intermediate.dense.", "fc1."),
    ("output.dense.", "fc2."),
    ("LayerNorm.", "final_layer_norm."),
)
_HF_LAYER_KEY = re.compile(r"^esm\.encoder\.layer\.(\d+)\.(.+)$")
_LAYER_INDEX = re.compile(r"^layers\.(\d+)\.")


@dataclass
class Esm2Checkpoint:
    """A checkpoint read into our names.

    Attributes:
        state: tensors by our parameter names (see `ESM2Network`).
        arch: the architecture the tensors describe.
        format: ``"fair-esm"`` or ``"huggingface"``.
        path: the file or folder it was read from.
        rotary_inv_freq: a stored rotary frequency buffer, if the file had one.
    """

    state: dict[str, torch.Tensor]
    arch: Esm2Arch
    format: str
    path: Path
    rotary_inv_freq: torch.Tensor | None = None

    @property
    def has_contact_weights(self) -> bool:
        return all(k in self.state for k in CONTACT_KEYS)


def read_checkpoint(path: str | Path) -> Esm2Checkpoint:
    """Read a fair-esm ``.pt`` file, a Hugging Face folder, or a folder holding one ESM-2 ``.pt``.

    Raises:
        CheckpointError: the path is not an ESM-2 checkpoint we can read.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "config.json").is_file():
            return read_huggingface(path)
        candidates = sorted(p for p in path.glob("*.pt") if not p.name.endswith(REGRESSION_SUFFIX))
        if len(candidates) > 1:
            candidates = [p for p in candidates if p.name.startswith("esm2")]
        if len(candidates) == 1:
            return read_fair_esm(candidates[0])
        raise CheckpointError(
            f"{path}: expected a Hugging Face folder (config.json + model.safetensors) or exactly one "
            f"ESM-2 .pt file, found {len(candidates)} candidate .pt files"
        )
    if path.name == "config.json" or path.name in HF_WEIGHT_FILES:
        return read_huggingface(path.parent)
    if path.suffix in (".pt", ".pth"):
        return read_fair_esm(path)
    raise CheckpointError(f"{path}: not an ESM-2 checkpoint (expected a fair-esm .pt or a Hugging Face folder)")


# ---------------------------------------------------------------- fair-esm


def _strip_fair_prefix(key: str) -> str:
    for prefix in FAIR_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _tensor_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a mapping of parameter names to tensors")
    return dict(obj)


def _cfg_value(cfg: Any, name: str) -> Any:
    if cfg is None:
        return None
    if isinstance(cfg, Mapping):
        return cfg.get(name)
    return getattr(cfg, name, None)


def read_fair_esm_state(path: Path) -> tuple[Mapping[str, Any], dict[str, torch.Tensor]]:
    """The top level of a fair-esm ``.pt`` and its tensors without the encoder prefixes.

    The ``-contact-regression.pt`` sibling is merged in when present. Shared by
    every fair-esm family (ESM-2 here, ESM-1b/1v in `bionemo_lite.zoo.esm1`).
    """
    data = safe_torch_load(path, [argparse.Namespace])
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path}: not a fair-esm checkpoint (top level is {type(data).__name__})")
    raw = _tensor_dict(data["model"] if "model" in data else data, path)
    state = {_strip_fair_prefix(k): v for k, v in raw.items()}
    regression = path.with_name(path.stem + REGRESSION_SUFFIX)
    if regression.is_file() and not any(k.startswith("contact_head.") for k in state):
        reg = safe_torch_load(regression, [argparse.Namespace])
        reg_state = reg.get("model", reg) if isinstance(reg, Mapping) else reg
        state.update({_strip_fair_prefix(k): v for k, v in _tensor_dict(reg_state, regression).items()})
    return data, state


def read_fair_esm(path: Path) -> Esm2Checkpoint:
    """Read an official-layout ESM-2 ``.pt`` (and its ``-contact-regression.pt`` sibling if present)."""
    data, state = read_fair_esm_state(path)
    cfg = data.get("cfg")
    cfg = cfg.get("model") if isinstance(cfg, Mapping) else None
    inv_freq = _pop_rotary(state)
    arch = _infer_arch(
        state,
        path,
        num_layers=_cfg_value(cfg, "encoder_layers"),
        embed_dim=_cfg_value(cfg, "encoder_embed_dim"),
        attention_heads=_cfg_value(cfg, "encoder_attention_heads"),
        token_dropout=_cfg_value(cfg, "token_dropout"),
        inv_freq=inv_freq,
    )
    return Esm2Checkpoint(state, arch, "fair-esm", path, inv_freq)


# ---------------------------------------------------------------- Hugging Face


def _hf_key(key: str) -> str | None:
    """Our name for a Hugging Face key; None for buffers we recompute; unchanged if unknown."""
    if key.endswith(("inv_freq", "position_ids")):
        return None
    if key.startswith(("embeddings.", "encoder.", "contact_head.")):
        key = "esm." + key  # saved from a bare EsmModel
    # Some writers (transformers 5 among them) store LayerNorm weights as gamma/beta.
    if key.endswith(".gamma"):
        key = key[: -len("gamma")] + "weight"
    elif key.endswith(".beta"):
        key = key[: -len("beta")] + "bias"
    match = _HF_LAYER_KEY.match(key)
    if match:
        idx, rest = match.groups()
        for old, new in _HF_LAYER:
            if rest.startswith(old):
                return f"layers.{idx}.{new}{rest[len(old):]}"
        return key
    for old, new in _HF_TOP:
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def hf_key_for(key: str) -> str | None:
    """The ``EsmForMaskedLM`` name of one of our (fair-esm) keys: the inverse of the table above.

    None for buffers both sides recompute (rotary frequencies) and unknown keys.
    """
    if key.endswith("inv_freq"):
        return None
    match = _LAYER_INDEX.match(key)
    if match:
        rest = key[match.end() :]
        for hf, ours in _HF_LAYER:
            if rest.startswith(ours):
                return f"esm.encoder.layer.{match.group(1)}.{hf}{rest[len(ours):]}"
        return None
    for hf, ours in _HF_TOP:
        if key.startswith(ours):
            return hf + key[len(ours) :]
    return None


def _load_hf_tensors(folder: Path) -> dict[str, torch.Tensor]:
    for name in HF_WEIGHT_FILES:
        single = folder / name
        index = folder / f"{name}.index.json"
        if single.is_file():
            files = [single]
        elif index.is_file():
            shards = json.loads(index.read_text()).get("weight_map", {})
            files = [folder / f for f in sorted(set(shards.values()))]
        else:
            continue
        tensors: dict[str, torch.Tensor] = {}
        for f in files:
            if f.suffix == ".safetensors":
                tensors.update(read_safetensors(f))
            else:
                tensors.update(_tensor_dict(safe_torch_load(f), f))
        return tensors
    raise CheckpointError(f"{folder}: has config.json but no {' or '.join(HF_WEIGHT_FILES)}")


def read_hf_config(folder: Path) -> dict[str, Any]:
    """The config.json of a Hugging Face ``EsmForMaskedLM`` folder (checked to be an ESM language model)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{folder / 'config.json'}: unreadable: {exc}") from exc
    if not isinstance(config, dict) or config.get("model_type") != "esm":
        model_type = config.get("model_type") if isinstance(config, dict) else None
        raise CheckpointError(f"{folder}: model_type is {model_type!r}, not 'esm'")
    if config.get("is_folding_model"):
        raise CheckpointError(f"{folder}: an ESMFold checkpoint, not an ESM language model")
    return config


def read_hf_state(folder: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """A Hugging Face ESM folder's tensors under our names, and a stored rotary frequency buffer if any."""
    state: dict[str, torch.Tensor] = {}
    inv_freq = None
    for key, value in _load_hf_tensors(folder).items():
        ours = _hf_key(key)
        if ours is None:
            if key.endswith("inv_freq") and inv_freq is None:
                inv_freq = value
            continue
        state[ours] = value
    return state, inv_freq


def read_huggingface(folder: Path) -> Esm2Checkpoint:
    """Read a Hugging Face ``EsmForMaskedLM`` folder (config.json + weights)."""
    config = read_hf_config(folder)
    problems = []
    if config.get("position_embedding_type", "absolute") != "rotary":
        problems.append("position_embedding_type is not 'rotary' (ESM-1 models are not ESM-2)")
    if config.get("emb_layer_norm_before"):
        problems.append("emb_layer_norm_before is set (an ESM-1b-style model)")
    if config.get("hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act is {config.get('hidden_act')!r}, not 'gelu'")
    if config.get("mask_token_id", ALPHABET.mask_idx) != ALPHABET.mask_idx or config.get(
        "pad_token_id", ALPHABET.pad_idx
    ) != ALPHABET.pad_idx:
        problems.append("mask/pad token ids differ from the ESM-2 alphabet (32/1)")
    if problems:
        raise CheckpointError(f"{folder}: not an ESM-2 checkpoint: " + "; ".join(problems))
    state, inv_freq = read_hf_state(folder)
    arch = _infer_arch(
        state,
        folder,
        num_layers=config.get("num_hidden_layers"),
        embed_dim=config.get("hidden_size"),
        attention_heads=config.get("num_attention_heads"),
        token_dropout=config.get("token_dropout"),
        inv_freq=inv_freq,
        layer_norm_eps=config.get("layer_norm_eps"),
        max_positions=config.get("max_position_embeddings"),
    )
    return Esm2Checkpoint(state, arch, "huggingface", folder, inv_freq)


# ---------------------------------------------------------------- shared


def _pop_rotary(state: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """Remove the per-layer rotary buffers (we recompute them); return one to check against."""
    found = None
    for key in [k for k in state if k.endswith("rot_emb.inv_freq")]:
        value = state.pop(key)
        found = value if found is None else found
    return found


def _infer_arch(
    state: Mapping[str, torch.Tensor],
    path: Path,
    *,
    num_layers: int | None,
    embed_dim: int | None,
    attention_heads: int | None,
    token_dropout: bool | None,
    inv_freq: torch.Tensor | None,
    layer_norm_eps: float | None = None,
    max_positions: int | None = None,
) -> Esm2Arch:
    """The architecture, from the checkpoint's config where given, else from tensor shapes."""
    embed = state.get("embed_tokens.weight")
    if embed is None or embed.dim() != 2:
        raise CheckpointError(f"{path}: no token embedding (embed_tokens.weight) found: not an ESM-2 checkpoint")
    if embed.shape[0] != len(ALPHABET):
        raise CheckpointError(f"{path}: vocabulary of {embed.shape[0]} tokens; ESM-2 uses {len(ALPHABET)}")
    indices = {int(m.group(1)) for k in state if (m := _LAYER_INDEX.match(k))}
    layers_in_file = max(indices) + 1 if indices else 0
    num_layers = int(num_layers) if num_layers is not None else layers_in_file
    embed_dim = int(embed_dim) if embed_dim is not None else int(embed.shape[1])
    if attention_heads is None:
        if inv_freq is not None and inv_freq.numel() > 0:
            attention_heads = embed_dim // (2 * inv_freq.numel())
        elif "contact_head.regression.weight" in state and num_layers:
            attention_heads = state["contact_head.regression.weight"].shape[-1] // num_layers
        else:
            raise CheckpointError(f"{path}: cannot tell the number of attention heads (no config in the file)")
    fc1 = state.get("layers.0.fc1.weight")
    try:
        arch = Esm2Arch(
            num_layers=num_layers,
            embed_dim=embed_dim,
            attention_heads=int(attention_heads),
            ffn_dim=int(fc1.shape[0]) if fc1 is not None else None,
            token_dropout=True if token_dropout is None else bool(token_dropout),
            layer_norm_eps=float(layer_norm_eps) if layer_norm_eps is not None else 1e-5,
            max_positions=int(max_positions) if max_positions is not None else 1026,
        )
    except ValueError as exc:
        raise CheckpointError(f"{path}: inconsistent architecture: {exc}") from exc
    if inv_freq is not None:
        _check_rotary(inv_freq, arch, path)
    return arch


def _check_rotary(inv_freq: torch.Tensor, arch: Esm2Arch, path: Path) -> None:
    head_dim = arch.embed_dim // arch.attention_heads
    expected = 1.0 / (ROTARY_BASE ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    if inv_freq.shape != expected.shape or not torch.allclose(inv_freq.float(), expected, rtol=1e-3, atol=0):
        raise CheckpointError(
            f"{path}: rotary frequencies do not match {arch.attention_heads} heads of size {head_dim} "
            f"with base {ROTARY_BASE:g}"
        )


def _key_summary(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def build_network(
    ckpt: Esm2Checkpoint,
    device: str | torch.device,
    dtype: torch.dtype,
    numerics: Numerics = "fast",
    network_type: type[ESM2Network] = ESM2Network,
) -> ESM2Network:
    """Instantiate `network_type` (`ESM2Network` or a subclass) for `ckpt.arch` and load its tensors strictly.

    The network is built on the meta device and the checkpoint's tensors are
    assigned, so a large model is never held twice in memory. Only the
    contact regression (optional) and the tied LM-head weight may be absent.

    Raises:
        CheckpointError: listing missing, unexpected or mis-shaped tensors.
    """
    with torch.device("meta"):
        network = network_type(ckpt.arch, numerics)
    expected = {k: tuple(v.shape) for k, v in network.state_dict(keep_vars=True).items()}
    state = dict(ckpt.state)
    optional = {TIED_KEY, *CONTACT_KEYS}
    missing = sorted(k for k in expected if k not in state and k not in optional)
    unexpected = sorted(k for k in state if k not in expected)
    wrong_shape = sorted(
        f"{k} {tuple(v.shape)} != {expected[k]}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != expected[k]
    )
    present_contact = [k for k in CONTACT_KEYS if k in state]
    if 0 < len(present_contact) < len(CONTACT_KEYS):
        missing += [k for k in CONTACT_KEYS if k not in state]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing: {_key_summary(missing)}")
        if unexpected:
            parts.append(f"unexpected: {_key_summary(unexpected)}")
        if wrong_shape:
            parts.append(f"wrong shape: {_key_summary(wrong_shape)}")
        raise CheckpointError(
            f"{ckpt.path}: tensors do not fit a {network_type.__name__} of {ckpt.arch}: " + "; ".join(parts)
        )
    # fair-esm ties the LM-head projection to the token embeddings; keep it tied
    # unless the checkpoint carries a different (fine-tuned) projection.
    head = state.pop(TIED_KEY, None)
    tied = head is None or torch.equal(head, state["embed_tokens.weight"])
    if not tied:
        state[TIED_KEY] = head
    has_contacts = len(present_contact) == len(CONTACT_KEYS)
    if not has_contacts:
        n = ckpt.arch.num_layers * ckpt.arch.attention_heads
        state[CONTACT_KEYS[0]] = torch.zeros(1, n)
        state[CONTACT_KEYS[1]] = torch.zeros(1)
    network.load_state_dict(state, strict=False, assign=True)
    if tied:  # `assign` replaced the embedding parameter; point the head at the new one
        network.lm_head.weight = network.embed_tokens.weight
    network.to(device=device, dtype=dtype)
    leftover = [n for n, p in network.named_parameters() if p.is_meta]
    if leftover:  # cannot happen after the checks above; never run on uninitialised memory
        raise CheckpointError(f"{ckpt.path}: tensors not loaded: {_key_summary(leftover)}")
    network.has_contact_weights = has_contacts
    return network.eval()
