"""Opt-in int8: dynamic quantization of the transformer's Linear layers (``quantize="int8"``).

Weights are stored int8 per output channel, activations quantized per batch on
the fly (`torch.ao.quantization.quantize_dynamic`: FBGEMM's VNNI kernels on x86
CPUs). The token embedding, the tied LM-head projection and the contact
regression stay float32. Accuracy against float32 is measured in
benchmarks/RESULTS.md (embedding cosine, logits, PLL drift); CPU only.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from bionemo_lite.errors import InvalidInputError

QUANTIZE_MODES = ("int8",)


def check_quantize(quantize: str | None, device: str | torch.device, dtype: torch.dtype) -> str | None:
    """The quantization mode to apply (None: none).

    Raises:
        InvalidInputError: an unknown mode, a non-CPU device, or a dtype other than float32.
    """
    if quantize is None or quantize in ("", "none"):
        return None
    if quantize not in QUANTIZE_MODES:
        raise InvalidInputError(f"quantize must be one of {', '.join(QUANTIZE_MODES)} or None, got {quantize!r}")
    if torch.device(device).type != "cpu":
        raise InvalidInputError(f"quantize={quantize!r} runs on CPU only (dynamic int8 kernels); got device {device!r}")
    if dtype != torch.float32:
        raise InvalidInputError(f"quantize={quantize!r} quantizes float32 weights; drop dtype={dtype} or quantize")
    return quantize


def quantize_linear_layers(network: nn.Module, blocks: nn.ModuleList, extra: list[nn.Module] = ()) -> nn.Module:
    """Replace every `nn.Linear` inside `blocks` (and the modules in `extra`) by its dynamic-int8 twin, in place."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice: the API still ships and works
        for module in [*blocks, *extra]:
            torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return network
