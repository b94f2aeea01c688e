"""ONNX export of an encoder (`bionemo_lite.verbs.OnnxExportable`) and its check against torch.

The graph is traced with ``torch.onnx.export(dynamo=False, opset_version=17)``
with dynamic batch and length axes (the dynamo exporter needs ``onnxscript`` and
stops at data-dependent branches that encoders commonly have), then run in onnxruntime on several batch
shapes (one short sequence, equal lengths, mixed lengths with padding, a
bigger mixed batch) next to the torch module. The largest absolute difference
over real tokens (padding excluded) is reported and must stay within the
tolerance (float32: 1e-4), or the export is refused.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BionemoLiteError
from ..verbs import OnnxEncoder
from .tokens import CharTokenizer

OPSET = 17
DEFAULT_TOLERANCE = 1e-4
# (batch size, sequence lengths): single, equal lengths (no padding), mixed (padding), bigger mixed.
CHECK_SHAPES: tuple[tuple[int, ...], ...] = ((5,), (12, 12), (7, 30, 18), (3, 64, 9, 41, 27, 50, 1, 33))
RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


@dataclass(frozen=True)
class ParityReport:
    """How closely onnxruntime reproduces torch.

    Attributes:
        max_abs_diff: largest |onnx - torch| over every checked shape and output.
        per_shape: ``[{"lengths": [...], "max_abs_diff": float}]``.
        tolerance: the bound the export was held to.
        providers: onnxruntime execution providers used.
    """

    max_abs_diff: float
    per_shape: list[dict[str, Any]]
    tolerance: float
    providers: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_onnx(encoder: OnnxEncoder, path: Path) -> Path:
    """Trace `encoder.module` to an ONNX file with the encoder's dynamic axes."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    module = encoder.module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter is deprecated (dynamo=False is chosen on purpose, see the module docs) and the
        # tracer warns about Python-level checks in torch's own layers; `check_parity` is the real test.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            tuple(encoder.example_inputs),
            str(path),
            input_names=list(encoder.input_names),
            output_names=list(encoder.output_names),
            dynamic_axes=dict(encoder.dynamic_axes),
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def encoder_width(encoder: OnnxEncoder) -> int:
    """Width ``D`` of the encoder's hidden states (the last axis of its first output).

    Encoders may declare it (``extra["embed_dim"]``); families name it
    differently in their configs (ESM-2 ``embed_dim``, T5 ``d_model``,
    MegaMolBART ``hidden_size``), so without the declaration the width is read
    from a real output: one forward pass on the encoder's example inputs.

    Raises:
        BionemoLiteError: the declared width disagrees with the output.
    """
    import torch

    declared = encoder.extra.get("embed_dim")
    with torch.no_grad():
        out = encoder.module.eval()(*encoder.example_inputs)
    first = out if isinstance(out, torch.Tensor) else out[0]
    width = int(first.shape[-1])
    if declared is not None and int(declared) != width:
        raise BionemoLiteError(f"the encoder declares embed_dim {declared} but its output is {width} wide")
    return width


def check_sequences(seed: int = 0) -> list[list[str]]:
    """Random protein batches of the `CHECK_SHAPES` lengths."""
    rng = random.Random(seed)
    return [["".join(rng.choice(RESIDUES) for _ in range(n)) for n in lengths] for lengths in CHECK_SHAPES]


def check_tokenizer(encoder: OnnxEncoder, tokenizer: CharTokenizer, batches: list[list[str]]) -> None:
    """The data tokenizer written next to the graph must give the plugin's tokens and masks exactly.

    Raises:
        BionemoLiteError: naming the first batch where they differ.
    """
    for seqs in batches:
        ours, theirs = tokenizer(seqs), encoder.tokenize(seqs)
        for name, value in theirs.items():
            if name not in ours or not np.array_equal(np.asarray(value), ours[name]):
                raise BionemoLiteError(f"tokenizer.json does not reproduce the encoder's {name!r} for {seqs!r}")
        width = next(iter(ours.values())).shape[1]
        if not np.array_equal(np.asarray(encoder.residue_mask(theirs), dtype=bool), tokenizer.residue_mask(seqs, width)):
            raise BionemoLiteError(f"tokenizer.json residue mask differs from the encoder's for {seqs!r}")


def check_parity(
    encoder: OnnxEncoder, path: Path, tolerance: float = DEFAULT_TOLERANCE, batches: list[list[str]] | None = None
) -> ParityReport:
    """Run the ONNX file in onnxruntime and the torch module on the same batches.

    Raises:
        BionemoLiteError: the difference exceeds `tolerance`.
    """
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    per_shape: list[dict[str, Any]] = []
    worst = 0.0
    module = encoder.module.eval()
    for seqs in batches or check_sequences():
        feeds = {k: np.asarray(v) for k, v in encoder.tokenize(seqs).items()}
        onnx_out = session.run(list(encoder.output_names), feeds)
        with torch.no_grad():
            torch_out = module(*[torch.from_numpy(feeds[name]) for name in encoder.input_names])
        if isinstance(torch_out, torch.Tensor):
            torch_out = (torch_out,)
        # Padding positions carry no meaning (and models may leave anything there): compare real tokens.
        real = _real_tokens(encoder, feeds)
        diff = 0.0
        for ours, ref in zip(onnx_out, torch_out):
            ref_np = ref.float().numpy()
            delta = np.abs(ours.astype(np.float32) - ref_np)
            if delta.ndim >= 2 and delta.shape[:2] == real.shape:
                delta = delta[real]
            diff = max(diff, float(delta.max()) if delta.size else 0.0)
        per_shape.append({"lengths": [len(s) for s in seqs], "max_abs_diff": diff})
        worst = max(worst, diff)
    report = ParityReport(worst, per_shape, tolerance, list(session.get_providers()))
    if not worst <= tolerance:
        raise BionemoLiteError(f"ONNX export differs from torch by {worst:.3g} (> {tolerance:g}): {per_shape}")
    return report


def _real_tokens(encoder: OnnxEncoder, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """``[B, T]`` True on every non-padding token (residues and specials)."""
    tokenizer = encoder.extra.get("tokenizer")
    tokens = feeds[encoder.input_names[0]]
    if tokenizer is not None:
        return tokens != int(tokenizer["pad"])
    return np.asarray(encoder.residue_mask(feeds), dtype=bool)
