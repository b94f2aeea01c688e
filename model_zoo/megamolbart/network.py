"""The MegaMolBART network: NeMo's Megatron token-level encoder-decoder, in plain PyTorch.

Same computation and the same parameter names as NeMo's
``MegatronTokenLevelEncoderDecoderModule`` (minus its prefixes) so that
``.nemo`` weights load without reshaping:

* embeddings: word + learned absolute positions (``encoder_embedding``,
  ``decoder_embedding``; one shared module when ``share_token_embeddings``);
* pre-LayerNorm blocks: ``input_layernorm`` -> self-attention (fused
  ``query_key_value``, laid out per head as ``[heads, 3, head_dim]``) -> residual
  -> ``post_attention_layernorm`` -> [decoder: cross-attention with ``query`` and
  fused ``key_value`` (``[heads, 2, head_dim]``) -> residual ->
  ``post_inter_attention_layernorm``] -> GELU MLP (``dense_h_to_4h``,
  ``dense_4h_to_h``) -> residual; a ``final_layernorm`` after each stack;
* ``tokens_head``: logits from the decoder embedding matrix plus a bias (tied)
  or a separate linear layer, as the checkpoint says.

Attention runs through ``scaled_dot_product_attention``. Megatron's
``apply_query_key_layer_scaling`` only rescales inside fp16 kernels and does
not change the result. Megatron's fused bias-GELU is the tanh approximation,
so ``gelu_approximate`` follows the checkpoint's ``bias_activation_fusion``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bionemo_lite.errors import CheckpointError


@dataclass(frozen=True)
class MegaMolBARTConfig:
    """Architecture of one MegaMolBART network (what a checkpoint's config fixes).

    Attributes:
        vocab_size: rows of the token embedding; NeMo pads the tokenizer's
            vocabulary up to a multiple of ``make_vocab_size_divisible_by``.
        num_layers / decoder_num_layers: blocks in the encoder / decoder.
        kv_channels: width of one attention head (None: hidden / heads).
        gelu_approximate: ``"tanh"`` (Megatron's fused bias-GELU) or ``"none"`` (erf).
        share_token_embeddings: encoder and decoder use one embedding module.
        share_decoder_tokens_head_embeddings: output logits use the decoder's
            embedding matrix (plus ``tokens_head.bias``) instead of a separate layer.
        *_dropout: used only in training mode.
    """

    vocab_size: int
    hidden_size: int = 512
    num_layers: int = 6
    decoder_num_layers: int = 6
    ffn_hidden_size: int = 2048
    num_attention_heads: int = 8
    kv_channels: int | None = None
    max_position_embeddings: int = 512
    layernorm_epsilon: float = 1e-5
    bias: bool = True
    gelu_approximate: str = "tanh"
    share_token_embeddings: bool = True
    share_decoder_tokens_head_embeddings: bool = True
    tokens_head_bias: bool = True
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    embedding_dropout: float = 0.1
    init_method_std: float = 0.02

    def __post_init__(self) -> None:
        if self.kv_channels is None and self.hidden_size % self.num_attention_heads:
            raise CheckpointError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.gelu_approximate not in ("tanh", "none"):
            raise CheckpointError(f"gelu_approximate must be 'tanh' or 'none', got {self.gelu_approximate!r}")
        if min(self.vocab_size, self.hidden_size, self.num_layers, self.decoder_num_layers, self.ffn_hidden_size,
               self.num_attention_heads, self.max_position_embeddings) < 1:
            raise CheckpointError(f"every size in the MegaMolBART config must be positive: {self}")

    @property
    def head_dim(self) -> int:
        return self.kv_channels or self.hidden_size // self.num_attention_heads

    @property
    def projection_size(self) -> int:
        return self.head_dim * self.num_attention_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MegaMolBARTConfig:
        """Build from `to_dict` output (the safetensors export's config.json).

        Raises:
            CheckpointError: unknown or missing fields.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"unknown MegaMolBART config fields: {', '.join(unknown)}")
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise CheckpointError(f"incomplete MegaMolBART config: {exc}") from exc


class Embedding(nn.Module):
    """Token + learned absolute position embeddings (no LayerNorm, as in Megatron)."""

    def __init__(self, config: MegaMolBARTConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.dropout = nn.Dropout(config.embedding_dropout)

    def forward(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        positions = torch.arange(start, start + ids.shape[1], device=ids.device)
        return self.dropout(self.word_embeddings(ids) + self.position_embeddings(positions)[None])


def _heads(x: torch.Tensor, parts: int, head_dim: int, heads: int) -> list[torch.Tensor]:
    """Split Megatron's fused projection ``[B, T, heads * parts * head_dim]`` into
    `parts` tensors ``[B, heads, T, head_dim]`` (the per-head interleaved layout)."""
    b, t, _ = x.shape
    x = x.view(b, t, heads, parts * head_dim)
    return [p.transpose(1, 2) for p in x.split(head_dim, dim=-1)]


class SelfAttention(nn.Module):
    def __init__(self, config: MegaMolBARTConfig):
        super().__init__()
        self.heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.query_key_value = nn.Linear(config.hidden_size, 3 * config.projection_size, bias=config.bias)
        self.dense = nn.Linear(config.projection_size, config.hidden_size, bias=config.bias)
        self.dropout_p = config.attention_dropout

    def forward(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        q, k, v = _heads(self.query_key_value(x), 3, self.head_dim, self.heads)
        if cache is not None:  # incremental decoding: keys/values of the earlier positions
            if "k" in cache:
                if q.shape[2] != 1:
                    raise ValueError("incremental decoding feeds one token per step")
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
                causal = False  # the one new query may see every cached position
            cache["k"], cache["v"] = k, v
        mask = key_mask[:, None, None, :] if key_mask is not None else None
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0, is_causal=causal
        )
        b, _, t, _ = out.shape
        return self.dense(out.transpose(1, 2).reshape(b, t, -1))


class CrossAttention(nn.Module):
    """Decoder-to-encoder attention (NeMo's ``inter_attention``)."""

    def __init__(self, config: MegaMolBARTConfig):
        super().__init__()
        self.heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.query = nn.Linear(config.hidden_size, config.projection_size, bias=config.bias)
        self.key_value = nn.Linear(config.hidden_size, 2 * config.projection_size, bias=config.bias)
        self.dense = nn.Linear(config.projection_size, config.hidden_size, bias=config.bias)
        self.dropout_p = config.attention_dropout

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        cache: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        (q,) = _heads(self.query(x), 1, self.head_dim, self.heads)
        if cache is not None and "ck" in cache:
            k, v = cache["ck"], cache["cv"]
        else:
            k, v = _heads(self.key_value(memory), 2, self.head_dim, self.heads)
            if cache is not None:
                cache["ck"], cache["cv"] = k, v
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=memory_mask[:, None, None, :], dropout_p=self.dropout_p if self.training else 0.0
        )
        b, _, t, _ = out.shape
        return self.dense(out.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, config: MegaMolBARTConfig):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(config.hidden_size, config.ffn_hidden_size, bias=config.bias)
        self.dense_4h_to_h = nn.Linear(config.ffn_hidden_size, config.hidden_size, bias=config.bias)
        self.approximate = config.gelu_approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(x), approximate=self.approximate))


def _layer_norm(config: MegaMolBARTConfig) -> nn.LayerNorm:
    return nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)


class EncoderLayer(nn.Module):
    def __init__(self, config: MegaMolBARTConfig):
        super().__init__()
        self.input_layernorm = _layer_norm(config)
        self.self_attention = SelfAttention(config)
        # In pre-LN blocks Megatron's "post_attention_layernorm" is the norm *before* the MLP.
        self.post_attention_layernorm = _layer_norm(config)
        self.mlp = MLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.self_attention(self.input_layernorm(x), key_mask=mask))
        return x + self.dropout(self.mlp(self.post_attention_layernorm(x)))


class DecoderLayer(nn.Module):
    def __init__(self, config: MegaMolBARTConfig):
        super().__init__()
        self.input_layernorm = _layer_norm(config)
        self.self_attention = SelfAttention(config)
        self.post_attention_layernorm = _layer_norm(config)
        self.inter_attention = CrossAttention(config)
        self.post_inter_attention_layernorm = _layer_norm(config)
        self.mlp = MLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        cache: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        x = x + self.dropout(self.self_attention(self.input_layernorm(x), causal=True, cache=cache))
        x = x + self.dropout(self.inter_attention(self.post_attention_layernorm(x), memory, memory_mask, cache))
        return x + self.dropout(self.mlp(self.post_inter_attention_layernorm(x)))


class Stack(nn.Module):
    """``layers`` + ``final_layernorm`` (NeMo's ``ParallelTransformer``)."""

    def __init__(self, layers: list[nn.Module], config: MegaMolBARTConfig):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.final_layernorm = _layer_norm(config)


class TiedHead(nn.Module):
    """The bias of the tied output layer (its weight is the decoder embedding matrix)."""

    def __init__(self, vocab_size: int, bias: bool):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(vocab_size)) if bias else None


class DecoderState:
    """Per-layer key/value caches of an incremental decode, plus the encoder memory."""

    def __init__(self, memory: torch.Tensor, memory_mask: torch.Tensor, num_layers: int):
        self.memory = memory
        self.memory_mask = memory_mask
        self.caches: list[dict[str, torch.Tensor]] = [{} for _ in range(num_layers)]
        self.position = 0

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows `index` of every cache (beam search reordering / dropping rows)."""
        self.memory = self.memory.index_select(0, index)
        self.memory_mask = self.memory_mask.index_select(0, index)
        for cache in self.caches:
            for key in list(cache):
                cache[key] = cache[key].index_select(0, index)


class MegaMolBARTNetwork(nn.Module):
    """Encoder-decoder over SMILES tokens.

    Encoder inputs are bare SMILES tokens with a padding mask (True on tokens);
    decoder inputs start with the begin token.
    """

    def __init__(self, config: MegaMolBARTConfig):
        super().__init__()
        self.config = config
        self.encoder_embedding = Embedding(config)
        self.decoder_embedding = self.encoder_embedding if config.share_token_embeddings else Embedding(config)
        self.encoder = Stack([EncoderLayer(config) for _ in range(config.num_layers)], config)
        self.decoder = Stack([DecoderLayer(config) for _ in range(config.decoder_num_layers)], config)
        if config.share_decoder_tokens_head_embeddings:
            self.tokens_head: nn.Module = TiedHead(config.vocab_size, config.tokens_head_bias)
        else:
            self.tokens_head = nn.Linear(config.hidden_size, config.vocab_size, bias=config.tokens_head_bias)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, seed: int | None = None) -> None:
        """Megatron's initialisation: N(0, std) weights, output projections scaled by
        1/sqrt(2 * layers), zero biases, unit LayerNorms."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        std = self.config.init_method_std
        for stack, n_layers in ((self.encoder, self.config.num_layers), (self.decoder, self.config.decoder_num_layers)):
            scaled = std / math.sqrt(2.0 * n_layers)
            for name, module in stack.named_modules():
                if isinstance(module, nn.Linear):
                    s = scaled if name.endswith(("dense", "dense_4h_to_h")) else std
                    module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * s)
                    if module.bias is not None:
                        module.bias.zero_()
                elif isinstance(module, nn.LayerNorm):
                    module.weight.fill_(1.0)
                    module.bias.zero_()
        for emb in {id(m): m for m in (self.encoder_embedding, self.decoder_embedding)}.values():
            for table in (emb.word_embeddings, emb.position_embeddings):
                table.weight.copy_(torch.randn(table.weight.shape, generator=gen) * std)
        if isinstance(self.tokens_head, nn.Linear):
            self.tokens_head.weight.copy_(torch.randn(self.tokens_head.weight.shape, generator=gen) * std)
        if getattr(self.tokens_head, "bias", None) is not None:
            self.tokens_head.bias.zero_()

    # ----- encoder -------------------------------------------------------------------------
    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encoder hidden states ``[B, S, H]`` (after the final LayerNorm)."""
        return self.encode_layers(ids, mask, (self.config.num_layers,))[self.config.num_layers]

    def encode_layers(self, ids: torch.Tensor, mask: torch.Tensor, layers: tuple[int, ...]) -> dict[int, torch.Tensor]:
        """Hidden states of the requested encoder layers: 0 is the embedding output,
        ``i`` the output of block ``i``; the last layer includes the final LayerNorm."""
        mask = mask.bool()
        x = self.encoder_embedding(ids)
        out: dict[int, torch.Tensor] = {}
        last = self.config.num_layers
        if 0 in layers:
            out[0] = x
        for i, layer in enumerate(self.encoder.layers, start=1):
            if i > max(layers):
                break
            x = layer(x, mask)
            if i in layers and i != last:
                out[i] = x
        if last in layers:
            out[last] = self.encoder.final_layernorm(x)
        return out

    # ----- decoder -------------------------------------------------------------------------
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if isinstance(self.tokens_head, TiedHead):
            return F.linear(hidden, self.decoder_embedding.word_embeddings.weight, self.tokens_head.bias)
        return self.tokens_head(hidden)

    def decode(self, dec_ids: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``[B, T, V]`` for decoder inputs ``[B, T]`` (begin token first)."""
        memory_mask = memory_mask.bool()
        x = self.decoder_embedding(dec_ids)
        for layer in self.decoder.layers:
            x = layer(x, memory, memory_mask)
        return self.logits(self.decoder.final_layernorm(x))

    def forward(self, enc_ids: torch.Tensor, enc_mask: torch.Tensor, dec_ids: torch.Tensor) -> torch.Tensor:
        return self.decode(dec_ids, self.encode(enc_ids, enc_mask), enc_mask)

    def start_decoding(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> DecoderState:
        return DecoderState(memory, memory_mask.bool(), len(self.decoder.layers))

    def step(self, ids: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """Logits ``[B, V]`` of the next token after feeding `ids` ``[B]`` at ``state.position``."""
        if state.position >= self.config.max_position_embeddings:
            raise ValueError(f"decoder ran past {self.config.max_position_embeddings} positions")
        x = self.decoder_embedding(ids[:, None], start=state.position)
        for layer, cache in zip(self.decoder.layers, state.caches):
            x = layer(x, state.memory, state.memory_mask, cache)
        state.position += 1
        return self.logits(self.decoder.final_layernorm(x))[:, 0]

    def canonical_state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters under their names, each stored once (a shared decoder embedding is left out)."""
        sd = self.state_dict()
        if self.config.share_token_embeddings:
            sd = {k: v for k, v in sd.items() if not k.startswith("decoder_embedding.")}
        return sd

    def load_canonical_state_dict(
        self,
        tensors: dict[str, torch.Tensor],
        source: str = "checkpoint",
        display: Callable[[str], str] = str,
    ) -> None:
        """Load `canonical_state_dict`-style tensors, refusing missing, unknown or misshaped ones.

        Args:
            display: maps our names to the checkpoint's own names in error messages.

        Raises:
            CheckpointError: listing every missing and unknown key, or the first shape mismatch.
        """
        expected = self.canonical_state_dict()
        missing = sorted(display(k) for k in set(expected) - set(tensors))
        unknown = sorted(display(k) for k in set(tensors) - set(expected))
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown keys ({len(unknown)}): {', '.join(unknown)}")
            raise CheckpointError(f"{source} does not match the MegaMolBART architecture: " + "; ".join(parts))
        for key, ref in expected.items():
            if tuple(tensors[key].shape) != tuple(ref.shape):
                raise CheckpointError(
                    f"{source}: {display(key)} has shape {tuple(tensors[key].shape)}, "
                    f"the config implies {tuple(ref.shape)}"
                )
        full = dict(tensors)
        if self.config.share_token_embeddings:
            full.update({k.replace("encoder_embedding.", "decoder_embedding.", 1): v
                         for k, v in tensors.items() if k.startswith("encoder_embedding.")})
        self.load_state_dict(full, strict=True)
