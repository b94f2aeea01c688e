"""Our ESM-2 network: a pre-LayerNorm transformer encoder with rotary position
embeddings, a masked-language-model head and a contact head.

Parameter names follow fair-esm's ``esm.model.esm2.ESM2`` (after its loader
strips the ``encoder.sentence_encoder.`` prefix), so an official state dict
loads as is. The numerics follow fair-esm too: the query is scaled before the
rotary embedding, masked tokens are zeroed and the rest rescaled ("token
dropout"), padded positions are zeroed and never attended to, and the last
layer's output passes through ``emb_layer_norm_after``.

Attention goes through `torch.nn.functional.scaled_dot_product_attention`
(fused kernels). That kernel cannot return attention weights, so the weights
are computed explicitly when contacts are asked for. The fused kernels also
sum in another order than fair-esm does, which moves fp32 results by a few
ulps per layer; ``numerics="reference"`` computes attention and GELU exactly
as fair-esm does instead (bit-identical outputs in fp32 on CPU, at roughly
half the attention speed there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from bionemo_lite.packing import Packing, varlen_attention

from .alphabet import ALPHABET

# Fraction of tokens replaced by <mask> during ESM-2 training (15% chosen x 80% masked).
MASK_RATIO_TRAIN = 0.15 * 0.8
ROTARY_BASE = 10000.0
Numerics = Literal["fast", "reference"]


@dataclass(frozen=True)
class Esm2Arch:
    """The shape of an ESM-2 network (read from a checkpoint or a spec's config)."""

    num_layers: int
    embed_dim: int
    attention_heads: int
    ffn_dim: int | None = None
    vocab_size: int = len(ALPHABET)
    token_dropout: bool = True
    layer_norm_eps: float = 1e-5
    max_positions: int = 1026
    rotary: bool = True  # False: a subclass adds its own position embedding (ESM-1b's learned one)

    def __post_init__(self) -> None:
        if self.ffn_dim is None:
            object.__setattr__(self, "ffn_dim", 4 * self.embed_dim)
        odd_heads = self.rotary and (self.embed_dim // self.attention_heads) % 2  # rotary pairs dimensions
        if self.embed_dim % self.attention_heads or odd_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim} must split into {self.attention_heads} heads"
                + (" of even size" if self.rotary else "")
            )

    def to_config(self) -> dict[str, Any]:
        """The spec-style config dict (the keys `ModelSpec.config` uses)."""
        return {
            "num_layers": self.num_layers,
            "embed_dim": self.embed_dim,
            "attention_heads": self.attention_heads,
            "ffn_dim": self.ffn_dim,
            "vocab_size": self.vocab_size,
            "max_positions": self.max_positions,
            "token_dropout": self.token_dropout,
        }


class ESM2Output(NamedTuple):
    """What `ESM2Network.forward` returns (a tuple, so ONNX export can trace it).

    Attributes:
        logits: ``[B, T, vocab]`` masked-language-model logits.
        last_hidden_state: ``[B, T, D]`` the last layer after ``emb_layer_norm_after``.
        hidden_states: one ``[B, T, D]`` tensor per requested layer, in the
            order asked (0 = embeddings; the last layer is layer-normed as above).
    """

    logits: torch.Tensor
    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...]


@dataclass
class Esm2Encoding:
    """The full result of `ESM2Network.encode`.

    Attributes:
        hidden: requested layers by absolute index.
        logits: present when asked for.
        attentions: ``[B, layers, heads, T, T]`` float32 attention probabilities,
            zero on padded rows/columns; present when asked for.
    """

    hidden: dict[int, torch.Tensor] = field(default_factory=dict)
    logits: torch.Tensor | None = None
    attentions: torch.Tensor | None = None


def gelu_reference(x: torch.Tensor) -> torch.Tensor:
    """GELU written as fair-esm and transformers write it (erf form, same rounding)."""
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotary_tables(positions: torch.Tensor, head_dim: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos, sin [N, 1, head_dim]`` at per-token `positions` (a packed batch: each sequence from 0),
    computed as `RotaryEmbedding` computes them (float32, then cast)."""
    exponent = torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim
    inv_freq = 1.0 / (ROTARY_BASE**exponent)
    freqs = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)[:, None, :]
    return emb.cos().to(dtype), emb.sin().to(dtype)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoFormer) over the last dimension of q and k.

    The frequencies are recomputed in float32 on every call instead of being
    kept in a buffer, so casting the model to half precision never rounds them.
    """

    def __init__(self, head_dim: int):
        super().__init__()
        self.head_dim = head_dim

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seq_len = q.shape[-2]
        exponent = torch.arange(0, self.head_dim, 2, device=q.device, dtype=torch.float32) / self.head_dim
        inv_freq = 1.0 / (ROTARY_BASE**exponent)
        positions = torch.arange(seq_len, device=q.device, dtype=torch.float32)
        freqs = positions[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(q.dtype), emb.sin().to(q.dtype)
        return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin



class SelfAttention(nn.Module):
    """Multi-head self-attention with rotary embeddings (unless `rotary` is False) and a key-padding mask."""

    def __init__(self, embed_dim: int, num_heads: int, rotary: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scaling = self.head_dim**-0.5
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.rot_emb = RotaryEmbedding(self.head_dim) if rotary else None

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        explicit: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend over ``x [B, T, D]``; `key_padding_mask` ``[B, T]`` is True on padding.

        Args:
            need_weights: also return the attention probabilities (implies `explicit`).
            explicit: compute softmax(q k^T) v step by step instead of with the
                fused kernel (fair-esm's exact arithmetic).

        Returns:
            The output ``[B, T, D]`` and, if `need_weights`, the float32
            attention probabilities ``[B, heads, T, T]``.
        """
        batch, length, dim = x.shape
        heads = (batch, length, self.num_heads, self.head_dim)
        # fair-esm scales q *before* the rotation; the rotation is linear so this is
        # the usual 1/sqrt(d) scaling, applied where fair-esm applies it (scale=1 below).
        q = (self.q_proj(x) * self.scaling).reshape(heads).transpose(1, 2)
        k = self.k_proj(x).reshape(heads).transpose(1, 2)
        v = self.v_proj(x).reshape(heads).transpose(1, 2)
        if self.rot_emb is not None:
            q, k = self.rot_emb(q, k)
        weights: torch.Tensor | None = None
        if need_weights or explicit:
            scores = torch.matmul(q, k.transpose(-1, -2))
            if key_padding_mask is not None:
                scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
            probs = torch.softmax(scores.float(), dim=-1)
            out = torch.matmul(probs.to(v.dtype), v)
            weights = probs if need_weights else None
        else:
            mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
        out = out.transpose(1, 2).reshape(batch, length, dim)
        return self.out_proj(out), weights

    def forward_packed(
        self, x: torch.Tensor, packing: Packing, rotary: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        """Attend within each sequence of the packed ``x [N, D]`` (`rotary`: `RotaryEmbedding.tables`)."""
        total, dim = x.shape
        heads = (total, self.num_heads, self.head_dim)
        q = (self.q_proj(x) * self.scaling).reshape(heads)
        k = self.k_proj(x).reshape(heads)
        v = self.v_proj(x).reshape(heads)
        if rotary is not None:
            cos, sin = rotary
            q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        out = varlen_attention(q, k, v, packing, scale=1.0)
        return self.out_proj(out.reshape(total, dim))


class TransformerLayer(nn.Module):
    """Pre-LayerNorm block: x + attn(LN(x)), then x + fc2(gelu(fc1(LN(x))))."""

    def __init__(self, embed_dim: int, ffn_dim: int, num_heads: int, eps: float, rotary: bool = True):
        super().__init__()
        self.reference = False  # fair-esm's arithmetic (explicit attention, erf GELU); see ESM2Network
        self.self_attn = SelfAttention(embed_dim, num_heads, rotary)
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim, eps=eps)
        self.fc1 = nn.Linear(embed_dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, embed_dim)
        self.final_layer_norm = nn.LayerNorm(embed_dim, eps=eps)

    def forward(
        self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn, weights = self.self_attn(self.self_attn_layer_norm(x), key_padding_mask, need_weights, self.reference)
        x = x + attn
        act = gelu_reference if self.reference else F.gelu
        x = x + self.fc2(act(self.fc1(self.final_layer_norm(x))))
        return x, weights

    def forward_packed(
        self, x: torch.Tensor, packing: Packing, rotary: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        """The block over packed tokens ``[N, D]`` (fast numerics: fused attention per sequence)."""
        x = x + self.self_attn.forward_packed(self.self_attn_layer_norm(x), packing, rotary)
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class LMHead(nn.Module):
    """Masked-LM head: dense, gelu, LayerNorm, then a projection on the (tied) token embeddings."""

    def __init__(self, embed_dim: int, vocab_size: int, weight: nn.Parameter, eps: float):
        super().__init__()
        self.dense = nn.Linear(embed_dim, embed_dim)
        self.layer_norm = nn.LayerNorm(embed_dim, eps=eps)
        self.weight = weight
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        self.activation: Any = F.gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(self.activation(self.dense(x)))
        return F.linear(x, self.weight) + self.bias


def _symmetrize(x: torch.Tensor) -> torch.Tensor:
    return x + x.transpose(-1, -2)


def _apc(x: torch.Tensor) -> torch.Tensor:
    """Average product correction (removes the background of each row and column)."""
    row = x.sum(-1, keepdim=True)
    col = x.sum(-2, keepdim=True)
    total = x.sum((-1, -2), keepdim=True)
    return x - row * col / total


class ContactHead(nn.Module):
    """Logistic regression on symmetrized, APC-corrected attention maps (fair-esm's contact head)."""

    def __init__(self, in_features: int):
        super().__init__()
        self.regression = nn.Linear(in_features, 1)

    def forward(self, tokens: torch.Tensor, attentions: torch.Tensor, eos_idx: int) -> torch.Tensor:
        """Contact probabilities ``[B, T-2, T-2]`` from attentions ``[B, layers, heads, T, T]``."""
        not_eos = tokens.ne(eos_idx).to(attentions.dtype)
        attentions = attentions * (not_eos[:, None, :] * not_eos[:, :, None])[:, None, None]
        attentions = attentions[..., 1:-1, 1:-1]  # drop BOS and the last column (EOS or padding)
        batch, layers, heads, length, _ = attentions.shape
        features = _apc(_symmetrize(attentions.reshape(batch, layers * heads, length, length)))
        weight = self.regression.weight.float()
        bias = self.regression.bias.float()
        logits = F.linear(features.permute(0, 2, 3, 1), weight, bias).squeeze(-1)
        return torch.sigmoid(logits)


class ESM2Network(nn.Module):
    """The ESM-2 network.

    Calling it on a ``[B, T]`` token tensor (BOS + residues + EOS, padded with
    the pad id) returns an `ESM2Output`; `encode` gives finer control
    (layers, early exit, attention maps) and `predict_contacts` the contact map.
    """

    def __init__(self, arch: Esm2Arch, numerics: Numerics = "fast"):
        super().__init__()
        self.arch = arch
        self.padding_idx = ALPHABET.pad_idx
        self.mask_idx = ALPHABET.mask_idx
        self.eos_idx = ALPHABET.eos_idx
        dim = arch.embed_dim
        self.embed_tokens = nn.Embedding(arch.vocab_size, dim, padding_idx=self.padding_idx)
        self.layers = nn.ModuleList(
            TransformerLayer(dim, int(arch.ffn_dim), arch.attention_heads, arch.layer_norm_eps, arch.rotary)
            for _ in range(arch.num_layers)
        )
        self.emb_layer_norm_after = nn.LayerNorm(dim, eps=arch.layer_norm_eps)
        self.lm_head = LMHead(dim, arch.vocab_size, self.embed_tokens.weight, arch.layer_norm_eps)
        self.contact_head = ContactHead(arch.num_layers * arch.attention_heads)
        self.has_contact_weights = False  # set by the loader when regression weights were found
        self.numerics: Numerics = "fast"
        self.set_numerics(numerics)

    def set_numerics(self, numerics: Numerics) -> None:
        """``"fast"``: fused attention kernels; ``"reference"``: fair-esm's exact arithmetic."""
        if numerics not in ("fast", "reference"):
            raise ValueError(f"numerics must be 'fast' or 'reference', got {numerics!r}")
        self.numerics = numerics
        for layer in self.layers:
            layer.reference = numerics == "reference"
        self.lm_head.activation = gelu_reference if numerics == "reference" else F.gelu

    @property
    def num_layers(self) -> int:
        return self.arch.num_layers

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings with fair-esm's token-dropout rescaling and padding zeroed (layer 0)."""
        x = self.embed_tokens(tokens)
        padding = tokens.eq(self.padding_idx)
        if self.arch.token_dropout:
            is_mask = tokens.eq(self.mask_idx)
            x = x.masked_fill(is_mask.unsqueeze(-1), 0.0)
            # Training zeroed ~12% of tokens; rescale so the expected input norm matches
            # whatever fraction is masked here (fair-esm does exactly this at inference).
            src_lengths = (~padding).sum(-1)
            observed = is_mask.sum(-1).to(x.dtype) / src_lengths
            x = x * (1 - MASK_RATIO_TRAIN) / (1 - observed)[:, None, None]
        return x * (1 - padding.unsqueeze(-1).type_as(x))

    def encode(
        self,
        tokens: torch.Tensor,
        repr_layers: Sequence[int] = (),
        *,
        need_logits: bool = True,
        need_attentions: bool = False,
        mask_padding: bool = True,
    ) -> Esm2Encoding:
        """Run the network, keeping only what is asked for.

        Args:
            tokens: ``[B, T]`` token ids.
            repr_layers: absolute layers to return (0..num_layers).
            need_logits: compute the LM head (else layers above the highest
                requested one are skipped).
            need_attentions: compute attention maps explicitly (slower, for contacts).
            mask_padding: False when the caller knows the batch has no padding
                (lets the fused attention kernels run without a mask).
        """
        wanted = set(int(i) for i in repr_layers)
        if any(not 0 <= i <= self.num_layers for i in wanted):
            raise ValueError(f"repr_layers must lie in 0..{self.num_layers}, got {sorted(wanted)}")
        result = Esm2Encoding()
        x = self.embed(tokens)
        if 0 in wanted:
            result.hidden[0] = x
        key_padding_mask = tokens.eq(self.padding_idx) if mask_padding else None
        last = self.num_layers if (need_logits or need_attentions) else max(wanted, default=0)
        attentions: list[torch.Tensor] = []
        for idx in range(last):
            x, weights = self.layers[idx](x, key_padding_mask, need_attentions)
            if weights is not None:
                attentions.append(weights)
            if idx + 1 in wanted and idx + 1 < self.num_layers:
                result.hidden[idx + 1] = x
        self._finish(x, last, wanted, need_logits, result)
        if need_attentions:
            maps = torch.stack(attentions, dim=1)  # [B, layers, heads, T, T]
            keep = (~tokens.eq(self.padding_idx)).to(maps.dtype)
            result.attentions = maps * (keep[:, None, :] * keep[:, :, None])[:, None, None]
        return result

    def _finish(self, x: torch.Tensor, last: int, wanted: set[int], need_logits: bool, result: Esm2Encoding) -> None:
        """After the last layer ran: the final LayerNorm, the last layer's hidden state and the logits."""
        if last == self.num_layers and last > 0:
            x = self.emb_layer_norm_after(x)
            if self.num_layers in wanted:
                result.hidden[self.num_layers] = x
            if need_logits:
                result.logits = self.lm_head(x)

    def embed_packed(self, tokens: torch.Tensor, packing: Packing) -> torch.Tensor:
        """`embed` for packed tokens ``[N]``: token dropout's rescaling counts masks per sequence."""
        x = self.embed_tokens(tokens)
        if self.arch.token_dropout:
            is_mask = tokens.eq(self.mask_idx)
            x = x.masked_fill(is_mask.unsqueeze(-1), 0.0)
            masks = torch.zeros(len(packing.lengths), device=x.device, dtype=x.dtype)
            masks = masks.index_add(0, packing.segment, is_mask.to(x.dtype))
            src_lengths = torch.tensor(packing.lengths, device=x.device)
            observed = masks / src_lengths
            x = x * (1 - MASK_RATIO_TRAIN) / (1 - observed)[packing.segment][:, None]
        return x

    def encode_packed(
        self, tokens: torch.Tensor, packing: Packing, repr_layers: Sequence[int] = (), *, need_logits: bool = True
    ) -> Esm2Encoding:
        """`encode` over a packed batch: tokens ``[N]`` (each sequence BOS + residues + EOS, no padding).

        Every matmul runs over the N concatenated tokens; attention stays within
        each sequence (`bionemo_lite.packing.varlen_attention`), rotary positions
        restart at every sequence. Hidden states and logits come back packed
        (``[N, D]``, ``[N, vocab]``; `Packing.split`/`pad` unpack them). Fast
        numerics only (the reference mode keeps fair-esm's padded arithmetic).
        """
        wanted = set(int(i) for i in repr_layers)
        if any(not 0 <= i <= self.num_layers for i in wanted):
            raise ValueError(f"repr_layers must lie in 0..{self.num_layers}, got {sorted(wanted)}")
        result = Esm2Encoding()
        x = self.embed_packed(tokens, packing)
        if 0 in wanted:
            result.hidden[0] = x
        rotary = None
        if self.arch.rotary and self.num_layers:
            head_dim = self.arch.embed_dim // self.arch.attention_heads
            rotary = rotary_tables(packing.positions, head_dim, x.dtype)  # once for all layers
        last = self.num_layers if need_logits else max(wanted, default=0)
        for idx in range(last):
            x = self.layers[idx].forward_packed(x, packing, rotary)
            if idx + 1 in wanted and idx + 1 < self.num_layers:
                result.hidden[idx + 1] = x
        self._finish(x, last, wanted, need_logits, result)
        return result

    def forward(self, tokens: torch.Tensor, repr_layers: Sequence[int] = (), mask_padding: bool = True) -> ESM2Output:
        """Logits, last hidden state and the requested layers (see `ESM2Output`)."""
        enc = self.encode(tokens, tuple(repr_layers) + (self.num_layers,), mask_padding=mask_padding)
        assert enc.logits is not None
        return ESM2Output(enc.logits, enc.hidden[self.num_layers], tuple(enc.hidden[int(i)] for i in repr_layers))

    def predict_contacts(self, tokens: torch.Tensor) -> torch.Tensor:
        """Contact probabilities ``[B, T-2, T-2]`` (rows/columns past a record's length are padding)."""
        enc = self.encode(tokens, need_logits=False, need_attentions=True)
        assert enc.attentions is not None
        return self.contact_head(tokens, enc.attentions, self.eos_idx)
