"""The T5 encoder as a small torch module (the architecture of transformers' `T5EncoderModel`).

Written out here rather than borrowed so that precision and export are ours to
decide; `tests/test_prott5.py` holds it to transformers' outputs (fp32, CPU).

- Residual stream in float32 whatever the compute dtype: T5 activations grow
  large enough to overflow fp16 (transformers issues #4287, #9295). Matmuls
  run in the compute dtype, except the feed-forward output projection ``wo``,
  which stays float32 under fp16 (what transformers' ``_keep_in_fp32_modules``
  does for T5).
- Hidden states follow transformers' ``output_hidden_states``: index 0 is the
  token embedding, index ``i`` (1..N-1) the raw output of block ``i``, and
  index N the last block's output *after* the final RMS norm (=
  ``last_hidden_state``); the un-normalised output of block N is not exposed.
- Attention uses `scaled_dot_product_attention` (the relative-position bias
  and the padding mask go in as one additive mask); ``eager=True`` spells the
  same arithmetic out with matmul/softmax for ONNX export.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import torch
import torch.nn.functional as F
from torch import nn

from bionemo_lite.packing import Packing, varlen_attention

from .checkpoint import T5EncoderArch

_ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


class RMSNorm(nn.Module):
    """T5's layer norm: scale only, no mean subtraction, statistics in float32."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight.float() * x


class T5EncoderLayer(nn.Module):
    """One block: self-attention then feed-forward, each pre-normed with a residual."""

    def __init__(self, arch: T5EncoderArch):
        super().__init__()
        inner = arch.num_heads * arch.d_kv
        self.num_heads, self.d_kv = arch.num_heads, arch.d_kv
        self.attn_norm = RMSNorm(arch.d_model, arch.layer_norm_epsilon)
        self.q = nn.Linear(arch.d_model, inner, bias=False)
        self.k = nn.Linear(arch.d_model, inner, bias=False)
        self.v = nn.Linear(arch.d_model, inner, bias=False)
        self.o = nn.Linear(inner, arch.d_model, bias=False)
        self.ff_norm = RMSNorm(arch.d_model, arch.layer_norm_epsilon)
        self.gated = arch.gated
        if arch.gated:
            self.wi_0 = nn.Linear(arch.d_model, arch.d_ff, bias=False)
            self.wi_1 = nn.Linear(arch.d_model, arch.d_ff, bias=False)
        else:
            self.wi = nn.Linear(arch.d_model, arch.d_ff, bias=False)
        self.wo = nn.Linear(arch.d_ff, arch.d_model, bias=False)
        self.act = _ACTIVATIONS[arch.activation]

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.d_kv).transpose(1, 2)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor, eager: bool = False) -> torch.Tensor:
        dtype = self.q.weight.dtype
        h = self.attn_norm(x).to(dtype)
        q, k, v = self._heads(self.q(h)), self._heads(self.k(h)), self._heads(self.v(h))
        if eager:
            # T5 does not scale q.k by 1/sqrt(d_kv): the bias absorbs it.
            scores = torch.matmul(q, k.transpose(-1, -2)).float() + attn_bias.float()
            attn = torch.matmul(torch.softmax(scores, dim=-1).to(dtype), v)
        else:
            attn = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, scale=1.0)
        attn = attn.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        x = x + self.o(attn).float()
        h = self.ff_norm(x).to(dtype)
        h = self.act(self.wi_0(h)) * self.wi_1(h) if self.gated else self.act(self.wi(h))
        return x + self.wo(h.to(self.wo.weight.dtype)).float()

    def forward_packed(self, x: torch.Tensor, packing: Packing, bias: torch.Tensor) -> torch.Tensor:
        """The block over packed tokens ``x [N, d_model]``; `bias` ``[heads, longest, longest]``
        is the relative-position bias, sliced to each sequence's own length."""
        dtype = self.q.weight.dtype
        h = self.attn_norm(x).to(dtype)
        shape = (x.shape[0], self.num_heads, self.d_kv)
        q, k, v = self.q(h).view(shape), self.k(h).view(shape), self.v(h).view(shape)
        attn = varlen_attention(q, k, v, packing, scale=1.0, bias=bias)
        x = x + self.o(attn.reshape(x.shape[0], -1)).float()
        h = self.ff_norm(x).to(dtype)
        h = self.act(self.wi_0(h)) * self.wi_1(h) if self.gated else self.act(self.wi(h))
        return x + self.wo(h.to(self.wo.weight.dtype)).float()


def relative_position_bucket(relative_position: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bidirectional T5 buckets: exact for small distances, logarithmic up to `max_distance`."""
    num_buckets //= 2
    buckets = (relative_position > 0).to(torch.long) * num_buckets
    distance = relative_position.abs()
    max_exact = num_buckets // 2
    # clamp(min=1) keeps log() finite at distance 0; those positions take the exact branch anyway.
    log_ratio = torch.log(distance.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).to(torch.long)
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(distance < max_exact, distance, large)


class T5Encoder(nn.Module):
    """Token embedding, `num_layers` blocks sharing one relative-position bias, final norm."""

    def __init__(self, arch: T5EncoderArch):
        super().__init__()
        self.arch = arch
        self.embed = nn.Embedding(arch.vocab_size, arch.d_model)
        self.relative_bias = nn.Embedding(arch.relative_attention_num_buckets, arch.num_heads)
        self.layers = nn.ModuleList(T5EncoderLayer(arch) for _ in range(arch.num_layers))
        self.final_norm = RMSNorm(arch.d_model, arch.layer_norm_epsilon)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def attention_bias(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """Relative-position bias plus padding mask, ``[batch, heads, length, length]`` in the compute dtype."""
        length = attention_mask.shape[1]
        positions = torch.arange(length, device=attention_mask.device)
        relative = positions[None, :] - positions[:, None]  # key position - query position
        buckets = relative_position_bucket(
            relative, self.arch.relative_attention_num_buckets, self.arch.relative_attention_max_distance
        )
        bias = self.relative_bias(buckets).float().permute(2, 0, 1).unsqueeze(0)
        # Padding keys get the most negative value the compute dtype can hold (fp16-safe).
        dtype = self.relative_bias.weight.dtype
        padding = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(dtype).min
        return (bias + padding).to(dtype)

    def relative_bias_table(self, length: int, device: torch.device) -> torch.Tensor:
        """``[heads, length, length]`` relative-position bias (key - query) in the compute dtype."""
        positions = torch.arange(length, device=device)
        buckets = relative_position_bucket(
            positions[None, :] - positions[:, None],
            self.arch.relative_attention_num_buckets,
            self.arch.relative_attention_max_distance,
        )
        return self.relative_bias(buckets).float().permute(2, 0, 1).to(self.relative_bias.weight.dtype)

    def forward_packed(
        self, input_ids: torch.Tensor, packing: Packing, layers: Collection[int] | None = None
    ) -> dict[int, torch.Tensor]:
        """`forward` over a packed batch: ``input_ids [N]`` (each sequence ending in ``</s>``, no padding).

        Matmuls run over the N concatenated tokens; attention stays within each
        sequence, whose relative-position bias is the top-left block of one
        table for the longest sequence (positions restart at every sequence).
        Returns packed hidden states ``[N, d_model]`` (float32).
        """
        wanted = {self.num_layers} if layers is None else set(layers)
        bias = self.relative_bias_table(packing.max_len, input_ids.device)
        x = self.embed(input_ids).float()
        out: dict[int, torch.Tensor] = {}
        if 0 in wanted:
            out[0] = x
        for i, layer in enumerate(self.layers, start=1):
            x = layer.forward_packed(x, packing, bias)
            if i in wanted and i < self.num_layers:
                out[i] = x
        if self.num_layers in wanted:
            out[self.num_layers] = self.final_norm(x)
        return out

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        layers: Collection[int] | None = None,
        eager: bool = False,
    ) -> dict[int, torch.Tensor]:
        """Hidden states ``[batch, length, d_model]`` (float32) of the requested layers.

        Args:
            layers: indices in ``0..num_layers`` (see the module docstring);
                None means only the last (``last_hidden_state``).
        """
        wanted = {self.num_layers} if layers is None else set(layers)
        attn_bias = self.attention_bias(attention_mask)
        x = self.embed(input_ids).float()
        out: dict[int, torch.Tensor] = {}
        if 0 in wanted:
            out[0] = x
        for i, layer in enumerate(self.layers, start=1):
            x = layer(x, attn_bias, eager=eager)
            if i in wanted and i < self.num_layers:
                out[i] = x
        if self.num_layers in wanted:
            out[self.num_layers] = self.final_norm(x)
        return out


class LastHiddenState(nn.Module):
    """ONNX-facing wrapper: ``(input_ids, attention_mask)`` -> ``last_hidden_state`` (float32)."""

    def __init__(self, encoder: T5Encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids, attention_mask, eager=True)[self.encoder.num_layers]


def hf_to_local_key(arch: T5EncoderArch) -> dict[str, str]:
    """Hugging Face encoder key -> this module's parameter name."""
    mapping = {
        "shared.weight": "embed.weight",
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": "relative_bias.weight",
        "encoder.final_layer_norm.weight": "final_norm.weight",
    }
    for i in range(arch.num_layers):
        attn, ff = f"encoder.block.{i}.layer.0.", f"encoder.block.{i}.layer.1."
        for name in ("q", "k", "v", "o"):
            mapping[f"{attn}SelfAttention.{name}.weight"] = f"layers.{i}.{name}.weight"
        mapping[f"{attn}layer_norm.weight"] = f"layers.{i}.attn_norm.weight"
        for name in ("wi_0", "wi_1", "wo") if arch.gated else ("wi", "wo"):
            mapping[f"{ff}DenseReluDense.{name}.weight"] = f"layers.{i}.{name}.weight"
        mapping[f"{ff}layer_norm.weight"] = f"layers.{i}.ff_norm.weight"
    return mapping


def build_encoder(
    arch: T5EncoderArch, hf_state: dict[str, torch.Tensor], device: str | torch.device, dtype: torch.dtype
) -> T5Encoder:
    """Instantiate without random init (meta device) and take the checkpoint's tensors.

    Under float16 the ``wo`` projections and the norms stay float32 (see module docstring).
    """
    with torch.device("meta"):
        encoder = T5Encoder(arch)
    mapping = hf_to_local_key(arch)
    local: dict[str, torch.Tensor] = {}
    for hf_key, tensor in hf_state.items():
        name = mapping[hf_key]
        keep_fp32 = name.endswith((".wo.weight", "norm.weight")) and dtype == torch.float16
        local[name] = tensor.to(device=device, dtype=torch.float32 if keep_fp32 else dtype)
    encoder.load_state_dict(local, strict=True, assign=True)
    return encoder.eval().requires_grad_(False)
