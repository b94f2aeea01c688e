"""The OpenFold-3 model config: where it comes from and what inference changes in it.

Order, as in openfold3's own inference runner: a base config (the one carried by
a training checkpoint, else openfold3's default with its ``predict`` preset),
then the user's ``model_update`` (openfold3's runner-yaml section:
``{"presets": [...], "custom": {...}}``), then the settings this device needs
(kernels that exist here, chunk tuning, offloading).
"""

from __future__ import annotations

import copy
import importlib.resources
import importlib.util
from collections.abc import Mapping
from typing import Any

import ml_collections as mlc
import yaml

from bionemo_lite.errors import CheckpointError

PRESET_RESOURCE = ("openfold3.projects.of3_all_atom.config", "model_setting_presets.yml")
INFERENCE_PRESET = "predict"
_MODEL_UPDATE_KEYS = frozenset({"presets", "custom"})


def presets() -> dict[str, Any]:
    """openfold3's named config presets (``predict``, ``low_mem``, ``train``, ``mps``)."""
    text = importlib.resources.files(PRESET_RESOURCE[0]).joinpath(PRESET_RESOURCE[1]).read_text()
    return yaml.safe_load(text)


def default_config() -> mlc.ConfigDict:
    """openfold3's default model config with the ``predict`` preset applied (a fresh copy)."""
    from openfold3.projects.of3_all_atom.config.model_config import model_config

    config = copy.deepcopy(model_config)
    config.lock()  # as openfold3 does: a typo in an update fails instead of adding a key
    config.update(presets()[INFERENCE_PRESET])
    return config


def apply_model_update(config: mlc.ConfigDict, model_update: Mapping[str, Any] | None) -> mlc.ConfigDict:
    """Apply ``{"presets": [...], "custom": {...}}`` like openfold3's ``ModelUpdate``.

    Raises:
        CheckpointError: unknown preset, unknown config key, or a malformed update.
    """
    if not model_update:
        return config
    unknown = set(model_update) - _MODEL_UPDATE_KEYS
    if unknown:
        raise CheckpointError(f"model_update accepts only 'presets' and 'custom', got {sorted(unknown)}")
    available = presets()
    for name in model_update.get("presets", []) or []:
        if name not in available:
            raise CheckpointError(f"unknown openfold3 preset {name!r}; available: {', '.join(available)}")
        config.update(available[name])
    custom = model_update.get("custom") or {}
    try:
        config.update(custom)
    except (KeyError, AttributeError, TypeError) as exc:
        raise CheckpointError(f"model_update.custom does not fit openfold3's config: {exc}") from exc
    return config


def prepare_for_inference(config: mlc.ConfigDict, device: str) -> mlc.ConfigDict:
    """Settings for in-process inference on `device`; the architecture is untouched.

    Kernels are switched on only where they can run: the Triton triangle kernels
    need CUDA and the ``triton`` package, DeepSpeed and cuEquivariance their
    packages. On CPU nothing is chunk-tuned (there is no OOM to tune against) and
    nothing is offloaded.
    """
    cuda = str(device).startswith("cuda")
    mem = config.settings.memory.eval
    mem.use_triton_triangle_kernels = bool(
        mem.use_triton_triangle_kernels and cuda and importlib.util.find_spec("triton") is not None
    )
    mem.use_deepspeed_evo_attention = bool(
        mem.use_deepspeed_evo_attention and cuda and importlib.util.find_spec("deepspeed") is not None
    )
    mem.use_cueq_triangle_kernels = bool(
        mem.use_cueq_triangle_kernels and cuda and importlib.util.find_spec("cuequivariance_torch") is not None
    )
    if not cuda:
        mem.chunk_size = None
        mem.tune_chunk_size = False  # a FieldReference: also reaches the stacks built from it
        for key in ("template_module", "msa_module", "confidence_heads"):
            mem.offload_inference[key] = False
    # Activation checkpointing is a training feature; the trunk runs without grad here.
    config.settings.blocks_per_ckpt = None
    config.settings.clear_cache_between_steps = bool(config.settings.clear_cache_between_steps and cuda)
    return config


def summary(config: mlc.ConfigDict) -> dict[str, Any]:
    """The architecture numbers a user cares about (same keys as the spec's config)."""
    a = config.architecture
    return {
        "c_s": int(a.shared.c_s),
        "c_z": int(a.shared.c_z),
        "c_m": int(a.msa.msa_module.c_m),
        "c_t": int(a.template.c_t),
        "c_atom": int(a.input_embedder.atom_attn_enc.c_atom),
        "c_atom_pair": int(a.input_embedder.atom_attn_enc.c_atom_pair),
        "c_token_embedder": int(a.input_embedder.atom_attn_enc.c_token),
        "c_token_diffusion": int(a.diffusion_module.diffusion_module.c_token),
        "pairformer_blocks": int(a.pairformer.no_blocks),
        "msa_module_blocks": int(a.msa.msa_module.no_blocks),
        "template_pair_blocks": int(a.template.template_pair_stack.no_blocks),
        "diffusion_transformer_blocks": int(a.diffusion_module.diffusion_transformer.no_blocks),
        "confidence_pairformer_blocks": int(a.heads.pairformer_embedding.pairformer.no_blocks),
        "num_recycles": int(a.shared.num_recycles),
        "diffusion_samples": int(a.shared.diffusion.no_full_rollout_samples),
        "diffusion_steps": int(a.shared.diffusion.no_full_rollout_steps),
    }
