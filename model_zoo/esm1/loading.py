"""The ESM-1b / ESM-1v loader named in their specs (``bionemo_lite.zoo.esm1.loading:load_esm1``)."""

from __future__ import annotations

from pathlib import Path

import torch

from bionemo_lite.spec import ModelSpec
from bionemo_lite.weights import resolve_dtype
from bionemo_lite.zoo.esm2.checkpoint import build_network
from bionemo_lite.zoo.esm2.loading import check_against_spec
from bionemo_lite.zoo.esm2.network import Numerics
from bionemo_lite.zoo.esm2.quantize import check_quantize, quantize_linear_layers

from .checkpoint import read_checkpoint
from .model import ESM1Model
from .network import ESM1bNetwork


def load_esm1(
    spec: ModelSpec,
    path: Path,
    *,
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
    numerics: Numerics | None = None,
    packing: bool = True,
    quantize: str | None = None,
) -> ESM1Model:
    """Load an ESM-1b or ESM-1v checkpoint (fair-esm ``.pt`` or Hugging Face folder) as an `ESM1Model`.

    Args:
        spec: the variant it is loaded as.
        path: a ``.pt`` file, a Hugging Face folder, or a folder holding ``<spec.name>.pt``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``...
        dtype: float32 / float16 / bfloat16; None = float32 on CPU, float16 on GPU.
        numerics: ``"fast"`` (the default, fused attention kernels) or ``"reference"``
            (fair-esm's arithmetic), as for ESM-2 (`bionemo_lite.zoo.esm2.loading.load_esm2`).
        packing: run batches packed (no padding, attention per sequence; the default); False keeps
            the padded batches. The reference numerics and contacts always run padded.
        quantize: ``"int8"``: dynamic int8 Linear layers (CPU, float32 only; opt-in, accuracy in
            benchmarks/RESULTS.md); None keeps the checkpoint's precision.

    Raises:
        CheckpointError: unreadable file, wrong format, or tensors that do not fit.
    """
    torch_dtype = resolve_dtype(dtype, device, default_gpu="float16")
    quantize = check_quantize(quantize, device, torch_dtype)
    ckpt = read_checkpoint(path, spec.name)
    check_against_spec(spec, ckpt.arch, Path(path))
    network = build_network(ckpt, device, torch_dtype, numerics or "fast", network_type=ESM1bNetwork)
    if quantize:
        quantize_linear_layers(network, network.layers, [network.lm_head.dense])
    return ESM1Model(
        spec,
        network,
        device=device,
        config=ckpt.arch.to_config(),
        checkpoint_path=ckpt.path,
        checkpoint_format=ckpt.format,
        packing=packing,
    )
