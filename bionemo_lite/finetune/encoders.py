"""Pooled features of records from a base model, for the head to read.

* `embed_features` (method ``head``): the frozen encoder's mean-pooled embeddings through the
  ``embed`` verb (the seam), computed once and kept, so no epoch runs the encoder again.
* `LoraEncoder` (method ``lora``): `peft` LoRA adapters on the encoder's own torch module.
  The module (from token arrays to hidden states, with its tokenizer and its residue mask)
  comes from `bionemo_lite.verbs.LoraAdaptable.lora_encoder()`, or, for encoders that Triton
  serves as ONNX, from the same description `bionemo_lite.verbs.OnnxExportable.onnx_encoder()`
  already gives; so no family is imported here. ESM-2 and ProtT5 offer ``onnx_encoder``;
  MegaMolBART offers ``lora_encoder`` (it is not ONNX-exportable: Triton serves it through
  its python backend).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import BionemoLiteError, InvalidInputError
from ..records import Record
from ..verbs import Embedder, EmbedOptions, LoraAdaptable, OnnxEncoder, OnnxExportable

POOLING = "mean"


def embed_features(model: Embedder, records: Sequence[Record], *, on_too_long: str = "error",
                   tokens_per_batch: int | None = None) -> tuple[np.ndarray, list[str], list[Any]]:
    """``[N, D]`` float32 mean-pooled last-layer embeddings, the ids embedded, and the records that failed."""
    result = EmbedOptions(layers=(-1,), pooling=POOLING, on_too_long=on_too_long,  # type: ignore[arg-type]
                          tokens_per_batch=tokens_per_batch).run(model, list(records))
    return np.asarray(result.embeddings, dtype=np.float32), list(result.ids), list(result.errors)


def lora_capable(model: Any) -> bool:
    """Whether `model` exposes its encoder module (`LoraAdaptable` or `OnnxExportable`), which LoRA adapts."""
    return isinstance(model, (LoraAdaptable, OnnxExportable))


def encoder_description(model: Any) -> OnnxEncoder:
    """The encoder module, tokenizer and residue mask LoRA adapts: ``lora_encoder()``, else ``onnx_encoder()``."""
    return model.lora_encoder() if isinstance(model, LoraAdaptable) else model.onnx_encoder()


def used_linear_names(module: nn.Module, example_inputs: Sequence[Any]) -> list[str]:
    """The ``nn.Linear`` layers (full names) the module's forward runs on `example_inputs`: the encoder's
    attention and feed-forward projections, not the heads a network carries beside it (LM, contacts)."""
    used: list[str] = []
    hooks = [sub.register_forward_hook(lambda *_, name=name: used.append(name))
             for name, sub in module.named_modules() if isinstance(sub, nn.Linear)]
    try:
        with torch.no_grad():
            module(*example_inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return sorted(set(used))


class LoraEncoder(nn.Module):
    """The base encoder with LoRA adapters: sequences -> mean-pooled last hidden state ``[B, D]``.

    The base model's own network is copied first, so the loaded base model stays as it was.
    """

    def __init__(self, model: Any, rank: int = 8, alpha: int = 16, dropout: float = 0.0,
                 target_modules: Sequence[str] | None = None):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        if not lora_capable(model):
            raise InvalidInputError(f"{model.name} does not expose its encoder module (lora_encoder or onnx_encoder), "
                                    "so LoRA cannot adapt it; use method='head'")
        description = encoder_description(model)
        module = copy.deepcopy(description.module).float()
        targets = list(target_modules) if target_modules else used_linear_names(module, description.example_inputs)
        if not targets:
            raise InvalidInputError(f"{model.name}'s encoder module runs no linear layer for LoRA to adapt")
        self.target_modules = targets
        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
        self.peft = get_peft_model(module, config)
        self._tokenize = description.tokenize
        self._residue_mask = description.residue_mask
        self._input_names = list(description.input_names)
        self.device = next(module.parameters()).device

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """Only the LoRA weights (what is saved)."""
        from peft import get_peft_model_state_dict

        return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(self.peft).items()}

    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(self.peft, state)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise BionemoLiteError(f"adapter weights that fit no LoRA layer: {unexpected[:3]}")

    def tokenize(self, sequences: Sequence[str], ids: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The encoder's named token arrays; a bad record's error names it by `ids` (its id), not its batch row."""
        try:
            return self._tokenize(list(sequences))
        except InvalidInputError as exc:
            if ids is None or exc.record is None:
                raise
            raise InvalidInputError(exc.reason, record=ids[int(exc.record)], position=exc.position) from None

    def forward(self, sequences: Sequence[str], ids: Sequence[str] | None = None) -> torch.Tensor:
        arrays = self.tokenize(sequences, ids)
        inputs = [torch.as_tensor(arrays[name], device=self.device) for name in self._input_names]
        out = self.peft(*inputs)
        hidden = (out[0] if isinstance(out, (tuple, list)) else out).float()
        mask = torch.as_tensor(self._residue_mask(arrays), device=hidden.device).to(hidden.dtype)
        return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1.0)
