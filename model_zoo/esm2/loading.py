"""The ESM-2 loader named in every ESM-2 spec (``bionemo_lite.zoo.esm2.loading:load_esm2``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from bionemo_lite.spec import ModelSpec
from bionemo_lite.weights import resolve_dtype

from .checkpoint import build_network, read_checkpoint
from .model import ESM2Model
from .network import Esm2Arch, Numerics
from .quantize import check_quantize, quantize_linear_layers

SHAPE_KEYS = ("num_layers", "embed_dim", "attention_heads")


class ArchitectureWarning(UserWarning):
    """A checkpoint's shape differs from the published variant it is loaded under."""


def check_against_spec(spec: ModelSpec, arch: Esm2Arch, path: Path) -> None:
    """Warn when a checkpoint is not the published shape of `spec` (custom or fine-tuned models load anyway)."""
    loaded = arch.to_config()
    diffs = [f"{k} {loaded[k]} (published {spec.config[k]})" for k in SHAPE_KEYS if spec.config.get(k) != loaded[k]]
    if diffs:
        warnings.warn(
            f"{path} is not the published {spec.name} ({', '.join(diffs)}); loading it with the shape "
            "read from the checkpoint",
            ArchitectureWarning,
            stacklevel=4,  # point at the caller of bionemo_lite.load
        )


def load_esm2(
    spec: ModelSpec,
    path: Path,
    *,
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
    numerics: Numerics | None = None,
    packing: bool = True,
    quantize: str | None = None,
) -> ESM2Model:
    """Load an ESM-2 checkpoint (fair-esm ``.pt`` or Hugging Face folder) as an `ESM2Model`.

    Args:
        spec: the variant it is loaded as.
        path: a ``.pt`` file, a Hugging Face folder, or a folder holding one ESM-2 ``.pt``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``...
        dtype: float32 / float16 / bfloat16; None = float32 on CPU, float16 on GPU.
        numerics: ``"fast"`` (the default) uses PyTorch's fused attention kernels,
            which sum in another order than fair-esm (fp32, CPU, random weights of
            esm2_t6_8M's shape: hidden states within 1e-3 of values up to 200,
            i.e. 5e-6 relative; logits within 9e-5; contacts within 5e-6; the
            bounds are tests/test_esm2_parity.py's); ``"reference"`` computes
            attention and GELU exactly as fair-esm does (bit-identical in float32
            on CPU). `bionemo_lite.load` passes its ``numerics=`` or
            ``$BIONEMO_LITE_NUMERICS``; None is ``"fast"``.
        packing: run batches packed (no padding, attention per sequence; the default); False keeps
            the padded batches. The reference numerics and contacts always run padded.
        quantize: ``"int8"``: dynamic int8 Linear layers (CPU, float32 only; opt-in, accuracy in
            benchmarks/RESULTS.md); None keeps the checkpoint's precision.

    Raises:
        CheckpointError: unreadable file, wrong format, or tensors that do not fit.
    """
    torch_dtype = resolve_dtype(dtype, device, default_gpu="float16")
    quantize = check_quantize(quantize, device, torch_dtype)
    if numerics is None:
        numerics = "fast"
    ckpt = read_checkpoint(path)
    check_against_spec(spec, ckpt.arch, Path(path))
    network = build_network(ckpt, device, torch_dtype, numerics)
    if quantize:
        quantize_linear_layers(network, network.layers, [network.lm_head.dense])
    return ESM2Model(
        spec,
        network,
        device=device,
        config=ckpt.arch.to_config(),
        checkpoint_path=ckpt.path,
        checkpoint_format=ckpt.format,
        packing=packing,
    )
