"""Reading ProtT5 checkpoints: Hugging Face T5 directories.

A directory holds ``config.json`` and the weights as ``model.safetensors``,
``pytorch_model.bin`` (read with ``weights_only=True``) or a sharded index of
either. Full encoder-decoder checkpoints (``T5ForConditionalGeneration``,
``T5Model``) and encoder-only ones (``T5EncoderModel``) are both accepted;
only the encoder tensors are read (from safetensors) or kept (from ``.bin``).
The architecture comes from ``config.json``, never from the variant's name.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bionemo_lite.errors import CheckpointError
from bionemo_lite.weights import read_safetensors, safe_torch_load

from .tokenizer import MIN_VOCAB_SIZE

if TYPE_CHECKING:
    import torch

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Tensors of a full checkpoint that the encoder does not use.
IGNORED_PREFIXES = ("decoder.", "lm_head.")
ACTIVATIONS = ("relu", "gelu", "gelu_new", "silu")


@dataclass(frozen=True)
class T5EncoderArch:
    """The shape of a T5 encoder, as Hugging Face's ``T5Config`` reads it."""

    num_layers: int
    d_model: int
    d_ff: int
    num_heads: int
    d_kv: int
    vocab_size: int
    feed_forward_proj: str = "relu"
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6

    @property
    def activation(self) -> str:
        """Feed-forward activation, as transformers derives it from `feed_forward_proj`."""
        act = self.feed_forward_proj.split("-")[-1]
        return "gelu_new" if self.feed_forward_proj == "gated-gelu" else act

    @property
    def gated(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_config(folder: Path) -> T5EncoderArch:
    """The encoder architecture from ``config.json``.

    Raises:
        CheckpointError: no config, not a T5 config, or an unsupported shape.
    """
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder}: no config.json; a ProtT5 checkpoint is a Hugging Face T5 directory")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not readable JSON: {exc}") from exc
    if raw.get("model_type", "t5") != "t5":
        raise CheckpointError(f"{path}: model_type is {raw.get('model_type')!r}, expected 't5'")
    required = ("num_layers", "d_model", "d_ff", "num_heads", "d_kv", "vocab_size")
    missing = [k for k in required if k not in raw]
    if missing:
        raise CheckpointError(f"{path}: missing T5 fields {', '.join(missing)}")
    try:
        arch = T5EncoderArch(
            **{k: int(raw[k]) for k in required},
            feed_forward_proj=str(raw.get("feed_forward_proj", "relu")),
            relative_attention_num_buckets=int(raw.get("relative_attention_num_buckets", 32)),
            relative_attention_max_distance=int(raw.get("relative_attention_max_distance", 128)),
            layer_norm_epsilon=float(raw.get("layer_norm_epsilon", 1e-6)),
        )
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed T5 field: {exc}") from exc
    parts = arch.feed_forward_proj.split("-")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated") or arch.activation not in ACTIVATIONS:
        raise CheckpointError(
            f"{path}: feed_forward_proj {arch.feed_forward_proj!r} is not supported "
            f"(use one of {', '.join(ACTIVATIONS)}, optionally 'gated-')"
        )
    if arch.vocab_size < MIN_VOCAB_SIZE:
        raise CheckpointError(
            f"{path}: vocab_size {arch.vocab_size} cannot hold the ProtT5 vocabulary ({MIN_VOCAB_SIZE} ids)"
        )
    return arch


def find_weights(folder: Path) -> Path:
    """The weight file (or shard index) of a checkpoint directory, safetensors first."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"{folder}: no weights found; expected one of {', '.join(WEIGHT_FILES)}")


def expected_keys(arch: T5EncoderArch) -> dict[str, tuple[int, ...]]:
    """Hugging Face key -> shape of every encoder tensor (embeddings under ``shared.weight``)."""
    inner = arch.num_heads * arch.d_kv
    keys: dict[str, tuple[int, ...]] = {"shared.weight": (arch.vocab_size, arch.d_model)}
    for i in range(arch.num_layers):
        attn = f"encoder.block.{i}.layer.0."
        ff = f"encoder.block.{i}.layer.1."
        for name in ("q", "k", "v"):
            keys[f"{attn}SelfAttention.{name}.weight"] = (inner, arch.d_model)
        keys[f"{attn}SelfAttention.o.weight"] = (arch.d_model, inner)
        keys[f"{attn}layer_norm.weight"] = (arch.d_model,)
        for name in ("wi_0", "wi_1") if arch.gated else ("wi",):
            keys[f"{ff}DenseReluDense.{name}.weight"] = (arch.d_ff, arch.d_model)
        keys[f"{ff}DenseReluDense.wo.weight"] = (arch.d_model, arch.d_ff)
        keys[f"{ff}layer_norm.weight"] = (arch.d_model,)
    keys["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (
        arch.relative_attention_num_buckets,
        arch.num_heads,
    )
    keys["encoder.final_layer_norm.weight"] = (arch.d_model,)
    return keys


def _wanted(key: str) -> bool:
    return not key.startswith(IGNORED_PREFIXES)


def _read_bin(path: Path) -> dict[str, torch.Tensor]:
    import torch

    state = safe_torch_load(path, mmap=True)  # the full model's decoder is never read into memory
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    return {k: v for k, v in state.items() if _wanted(k)}


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    return read_safetensors(path, keep=_wanted) if path.suffix == ".safetensors" else _read_bin(path)


def read_encoder_tensors(weights: Path) -> dict[str, torch.Tensor]:
    """Every non-decoder tensor of a weight file or shard index, under its Hugging Face name."""
    if weights.name.endswith(".index.json"):
        try:
            shards = sorted(set(json.loads(weights.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"{weights}: not a readable shard index: {exc}") from exc
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            tensors.update(_read_file(weights.parent / shard))
        return tensors
    return _read_file(weights)


def encoder_state_dict(tensors: dict[str, torch.Tensor], arch: T5EncoderArch, source: Path) -> dict[str, torch.Tensor]:
    """Check the tensors against `arch` and return exactly the expected keys.

    The token embedding may be stored as ``shared.weight``,
    ``encoder.embed_tokens.weight`` or both (tied); the encoder's own copy wins.

    Raises:
        CheckpointError: listing unknown keys, missing keys and shape mismatches.
    """
    tensors = dict(tensors)
    embed = tensors.pop("encoder.embed_tokens.weight", None)
    shared = tensors.pop("shared.weight", None)
    if embed is not None or shared is not None:
        tensors["shared.weight"] = embed if embed is not None else shared
    expected = expected_keys(arch)
    unknown = sorted(set(tensors) - set(expected))
    missing = sorted(set(expected) - set(tensors))
    wrong_shape = [
        f"{k} {tuple(tensors[k].shape)} (config says {expected[k]})"
        for k in expected
        if k in tensors and tuple(tensors[k].shape) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown keys: {', '.join(unknown)}")
    if wrong_shape:
        problems.append(f"wrong shapes: {'; '.join(wrong_shape)}")
    if problems:
        raise CheckpointError(f"{source}: not a T5 encoder matching its config.json: " + " | ".join(problems))
    return tensors
