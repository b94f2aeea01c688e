"""The loaded ProtT5 encoder: `load_prott5` (the spec's loader) and `ProtT5Model.embed`."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bionemo_lite.pooling import Pooling
from bionemo_lite.errors import InvalidInputError
from bionemo_lite.model import BioModel
from bionemo_lite.packing import PACK_MULTIPLE, pack_rows
from bionemo_lite.verbs import OnnxEncoder
from bionemo_lite.records import Inputs, LengthPolicy, Record, apply_length_policy, clean_protein
from bionemo_lite.results import Embeddings
from bionemo_lite.spec import ModelSpec
from bionemo_lite.weights import resolve_dtype
from bionemo_lite.windows import embed_records_windowed

from . import POOLINGS
from .checkpoint import T5EncoderArch, encoder_state_dict, find_weights, read_config, read_encoder_tensors
from .network import LastHiddenState, T5Encoder, build_encoder
from .tokenizer import EOS_ID, PAD_ID, ProtT5Tokenizer

logger = logging.getLogger(__name__)

EXTRA_TOKENS = 1  # </s>
_ARCH_KEYS = (
    "num_layers", "d_model", "d_ff", "num_heads", "d_kv", "feed_forward_proj",
    "relative_attention_num_buckets", "relative_attention_max_distance", "vocab_size",
)


def architecture_differences(published: dict, arch: T5EncoderArch) -> list[str]:
    """``"name: checkpoint (published)"`` for each shape field that differs."""
    loaded = arch.to_dict()
    return [
        f"{key} {loaded[key]} (published {published[key]})"
        for key in _ARCH_KEYS
        if key in published and published[key] != loaded[key]
    ]


def _compute_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """fp16 by default on accelerators; always fp32 on CPU (half matmuls there are slow or missing)."""
    wanted = resolve_dtype(dtype, device, default_gpu="float16")
    if str(device).startswith("cpu") and wanted != torch.float32:
        warnings.warn(f"ProtT5 computes in float32 on CPU; ignoring dtype={dtype!r}", stacklevel=3)
        return torch.float32
    return wanted


def _check_max_length(max_length: int | None) -> None:
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise InvalidInputError(f"max_length must be a positive integer, got {max_length!r}")


def load_prott5(
    spec: ModelSpec,
    path: Path,
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
    max_length: int | None = None,
    packing: bool = True,
) -> ProtT5Model:
    """Load a Hugging Face T5 directory as `spec` (the loader named by the ProtT5 specs).

    Args:
        path: the checkpoint directory (or a file inside it).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        dtype: compute dtype; None is float16 on GPU, float32 on CPU (always
            float32 on CPU, whatever the stored precision).
        max_length: longest input accepted, in residues (default: the spec's).
        packing: run batches packed (no padding, attention and relative positions per
            sequence; the default); False keeps padded batches.

    Raises:
        CheckpointError: no config/weights, unknown or missing tensors, a
            ``spiece.model`` that disagrees with the ProtT5 vocabulary.
    """
    path = Path(path)
    _check_max_length(max_length)
    compute = _compute_dtype(dtype, device)  # bad settings fail before gigabytes are read
    folder = path if path.is_dir() else path.parent
    arch = read_config(folder)
    diffs = architecture_differences(dict(spec.config), arch)
    if diffs:
        warnings.warn(
            f"{folder} is not the published {spec.name} architecture ({'; '.join(diffs)}); "
            "loading it with the checkpoint's own shape",
            UserWarning,
            stacklevel=2,
        )
    tokenizer = ProtT5Tokenizer.from_checkpoint_dir(folder)
    weights = path if path.is_file() else find_weights(folder)
    tensors = read_encoder_tensors(weights)
    stored = "/".join(sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values()}))
    state = encoder_state_dict(tensors, arch, weights)
    encoder = build_encoder(arch, state, device, compute)
    logger.info("loaded %s from %s (%s weights, computing in %s on %s)", spec.name, weights, stored, compute, device)
    return ProtT5Model(
        spec, encoder, tokenizer, device=device, dtype=compute, max_length=max_length,
        weights_dtype=stored, packing=packing,
    )


class ProtT5Model(BioModel):
    """A ProtT5 encoder ready to embed proteins.

    Layers: 0 is the token embedding, 1..N-1 the raw block outputs and N (= -1)
    the last block after T5's final norm, i.e. ``last_hidden_state`` (the same
    indexing as transformers' ``hidden_states``). Poolings: ``"mean"`` over the
    residues (never ``</s>`` or padding) and ``"per_residue"``
    (``last_hidden_state[:L]``).
    """

    def __init__(
        self,
        spec: ModelSpec,
        encoder: T5Encoder,
        tokenizer: ProtT5Tokenizer,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        max_length: int | None = None,
        weights_dtype: str = "float32",
        packing: bool = True,
    ):
        super().__init__(spec, device=device, dtype=str(dtype).removeprefix("torch."), config=encoder.arch.to_dict())
        _check_max_length(max_length)
        self.encoder: T5Encoder | None = encoder
        self.tokenizer = tokenizer
        self.weights_dtype = weights_dtype
        self._max_length = max_length
        self.packing = packing

    @property
    def max_length(self) -> int:
        return self._max_length or self.spec.max_length

    @property
    def num_layers(self) -> int:
        return self._net.num_layers

    @property
    def _net(self) -> T5Encoder:
        if self.encoder is None:
            raise RuntimeError(f"{self.name} was closed")
        return self.encoder

    def _tensors(self, arrays: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.from_numpy(arrays["input_ids"]).to(self.device),
            torch.from_numpy(arrays["attention_mask"]).to(self.device),
        )

    def _encode_batch(
        self, records: list[Record], layers: tuple[int, ...], pooling: Pooling
    ) -> list[dict[int, np.ndarray]]:
        arrays = self.tokenizer.batch([r.sequence for r in records])
        input_ids, attention_mask = self._tensors(arrays)
        residues = torch.from_numpy(self.tokenizer.residue_mask(arrays)).to(self.device)
        with torch.inference_mode():
            if self.packing:
                counts = arrays["attention_mask"].sum(1)
                # reduced precision on a CPU: oneDNN builds a GEMM kernel per shape, so round N (`pack_rows`)
                on_cpu = torch.device(self.device).type == "cpu"
                multiple = PACK_MULTIPLE if on_cpu and self.dtype != "float32" else None
                tokens, packing = pack_rows(
                    [torch.from_numpy(arrays["input_ids"][i, :n]) for i, n in enumerate(counts)], self.device,
                    multiple_of=multiple, filler_token=PAD_ID,
                )
                packed = self._net.forward_packed(tokens, packing, layers=layers)
                hidden = {lay: packing.pad(h) for lay, h in packed.items()}  # [B, longest, D] for pooling
            else:
                hidden = self._net(input_ids, attention_mask, layers=layers)
            pooled = {lay: pooling.torch(hidden[lay], residues, bos_index=None) for lay in layers}
        return [{lay: pooled[lay][row] for lay in layers} for row in range(len(records))]

    def embed(
        self,
        inputs: Inputs,
        layer: int | Sequence[int] = -1,
        pooling: str = "mean",
        *,
        on_too_long: LengthPolicy = "error",
        tokens_per_batch: int | None = None,
    ) -> Embeddings:
        """Embed protein sequences.

        Args:
            inputs: a sequence, a list, ``{id: sequence}``, ``(id, sequence)``
                pairs or `Record`s. U, Z, O and B are read as X (as upstream does).
            layer: one layer or several (0 = embeddings, -1 = last); see the class docstring.
            pooling: ``"mean"`` (``[N, 1024]``) or ``"per_residue"`` (``[L_i, 1024]`` each).
            on_too_long: ``"error"``, ``"truncate"`` or ``"window"`` / ``"window:STRIDE"`` beyond
                `max_length` residues (overlapping windows, each residue from the window it is most
                central in: `bionemo_lite.windows`; windowed records are named in ``windowed``).
            tokens_per_batch: tokens per forward pass (default 4096; real tokens when packed, the default).

        Raises:
            InvalidInputError: naming the record (and position) of a bad input.
        """
        return embed_records_windowed(
            self.name,
            inputs,
            self._encode_batch,
            num_layers=self.num_layers,
            max_length=self.max_length,
            layer=layer,
            pooling=pooling,
            on_too_long=on_too_long,
            tokens_per_batch=tokens_per_batch,
            extra_tokens=EXTRA_TOKENS,
            poolings=POOLINGS,
            packed=self.packing,
        )

    def tokenize(self, sequences: list[str]) -> dict[str, np.ndarray]:
        """Validate sequences and return the padded int64 ``input_ids``/``attention_mask``.

        Raises:
            InvalidInputError: a bad residue (with its position), an empty or too long sequence.
        """
        if not sequences:
            raise InvalidInputError("no input records were given")
        records = [clean_protein(Record(str(i), s, i)) for i, s in enumerate(sequences)]
        records, _ = apply_length_policy(records, self.max_length, "error")
        return self.tokenizer.batch([r.sequence for r in records])

    def onnx_encoder(self) -> OnnxEncoder:
        """The encoder for `torch.onnx.export` (``dynamo=False``, opset 17).

        Graph: ``input_ids``, ``attention_mask`` (int64 ``[batch, length]``) ->
        ``last_hidden_state`` (float32 ``[batch, length, d_model]``), batch and
        length dynamic. Export from a CPU (float32) model for a float32 graph.
        """
        arrays = self.tokenize(["MKTAYIAKQR", "MLSD"])  # two lengths, so padding is traced too
        return OnnxEncoder(
            module=LastHiddenState(self._net).eval(),
            example_inputs=self._tensors(arrays),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "length"},
                "attention_mask": {0: "batch", 1: "length"},
                "last_hidden_state": {0: "batch", 1: "length"},
            },
            tokenize=self.tokenize,
            residue_mask=ProtT5Tokenizer.residue_mask,
            bos_index=None,
            extra={
                # The tokenizer as data (bionemo_lite.triton.tokens.CharTokenizer layout), so a
                # server can feed the graph without torch or this plugin.
                "tokenizer": {
                    "kind": "chars",
                    "vocab": dict(self.tokenizer.residue_ids),
                    "prepend": [],
                    "append": [EOS_ID],
                    "pad": PAD_ID,
                    "unk": None,
                    "input_name": "input_ids",
                    "attention_mask_name": "attention_mask",
                },
                "num_layers": self.num_layers,
                "layers": [self.num_layers],  # the graph returns last_hidden_state only
                "embed_dim": self.config["d_model"],
            },
        )

    def close(self) -> None:
        """Drop the weights (and cached accelerator memory)."""
        self.encoder = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
