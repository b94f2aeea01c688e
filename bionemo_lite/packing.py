"""Packed batches: the real tokens of several sequences concatenated, no padding.

Sequence encoders run every matmul over the ``[N, D]`` concatenation of a
batch's tokens (N = the sum of the lengths, not ``batch * longest``) and attend
per sequence, so attention never crosses from one sequence into another:

- CUDA: `torch.nn.attention.varlen.varlen_attn` (FlashAttention varlen over
  ``cu_seqlens``) when the build and the dtype allow it, else per-sequence SDPA.
- CPU (and CUDA without flash): consecutive sequences of about one length
  (`BUCKET_SLACK`) are gathered into one batched SDPA call, padded keys masked;
  a sequence alone gets a plain call on its slice. One call per sequence was
  measured too: exact, but its many small calls lost on 2 shared cores
  (benchmarks/RESULTS.md).

`Packing` carries the layout; the lengths are kept as host ints too, so slicing
never reads a device tensor back (no host sync inside the batch loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

# A bucket of consecutive sequences goes through one batched attention call when its longest is at most
# this much longer than its shortest (the padding that costs is in attention only; the matmuls stay packed).
BUCKET_SLACK = 1.125
# Reduced-precision packed batches on CPU round their token count up to a multiple of this (`pack_rows`).
PACK_MULTIPLE = 64


@dataclass(frozen=True)
class Bucket:
    """Consecutive sequences of a packed batch that attend in one call.

    Attributes:
        members: their indices in the batch.
        lengths: their lengths.
        span: the packed token range they cover.
    """

    members: tuple[int, ...]
    lengths: tuple[int, ...]
    span: tuple[int, int]

    @property
    def width(self) -> int:
        return max(self.lengths)

    @property
    def equal(self) -> bool:
        return min(self.lengths) == self.width

    def gather(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Host tensors: ``index [G, W]`` of packed token positions (padding points at the bucket's first
        token) and ``rows [sum of lengths]``, where the real tokens sit in the flattened ``[G * W]``."""
        lengths = torch.tensor(self.lengths)
        starts = torch.cumsum(lengths, 0) - lengths + self.span[0]
        cols = torch.arange(self.width)
        keep = cols[None, :] < lengths[:, None]
        index = torch.where(keep, starts[:, None] + cols[None, :], self.span[0])
        return index, keep.flatten().nonzero().flatten()


@dataclass(frozen=True, eq=False)
class Packing:
    """The layout of a packed batch.

    Attributes:
        lengths: tokens per sequence (host ints, special tokens included), the filler's last if there is one.
        device: where the packed tensors live.
        real: how many of `lengths` are the batch's sequences; the rest is filler (`pack_rows`'s
            ``multiple_of``): it attends only to itself and `split`, `pad` and `mask` leave it out.
    """

    lengths: tuple[int, ...]
    device: torch.device
    real: int

    @classmethod
    def of(cls, lengths: Sequence[int], device: str | torch.device = "cpu", filler: int = 0) -> Packing:
        """The layout of sequences of `lengths` tokens (each at least one), then `filler` tokens if any."""
        if not lengths or any(int(n) < 1 for n in lengths):
            raise ValueError(f"a packed batch needs sequences of at least one token, got {list(lengths)}")
        real = tuple(int(n) for n in lengths)
        return cls(real + ((int(filler),) if filler > 0 else ()), torch.device(device), len(real))

    @property
    def total(self) -> int:
        """N: the number of real tokens in the batch."""
        return self.offsets[-1]

    @property
    def max_len(self) -> int:
        return max(self.lengths)

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """Host copy of `cu_seqlens`: sequence i spans ``offsets[i]:offsets[i+1]``."""
        out = [0]
        for n in self.lengths:
            out.append(out[-1] + n)
        return tuple(out)

    @cached_property
    def cu_seqlens(self) -> torch.Tensor:
        """``[B + 1]`` int32 cumulative lengths (FlashAttention's layout) on `device`."""
        return torch.tensor(self.offsets, dtype=torch.int32).to(self.device, non_blocking=True)

    @cached_property
    def segment(self) -> torch.Tensor:
        """``[N]`` int64: the sequence each token belongs to."""
        counts = torch.tensor(self.lengths, dtype=torch.long)
        return torch.repeat_interleave(torch.arange(len(self.lengths)), counts).to(self.device, non_blocking=True)

    @cached_property
    def positions(self) -> torch.Tensor:
        """``[N]`` int64: each token's position within its own sequence (0 = first)."""
        starts = torch.tensor(self.offsets[:-1], dtype=torch.long)
        counts = torch.tensor(self.lengths, dtype=torch.long)
        flat = torch.arange(self.total, dtype=torch.long) - torch.repeat_interleave(starts, counts)
        return flat.to(self.device, non_blocking=True)

    @cached_property
    def buckets(self) -> tuple[Bucket, ...]:
        """Runs of consecutive sequences whose lengths stay within `BUCKET_SLACK` of each other
        (a length-sorted batch falls into few; attention runs once per bucket)."""
        out: list[Bucket] = []
        first = 0
        for i in range(1, len(self.lengths) + 1):
            run = self.lengths[first:i + 1]
            if i == len(self.lengths) or max(run) > BUCKET_SLACK * min(run):
                out.append(Bucket(tuple(range(first, i)), self.lengths[first:i], (self.offsets[first], self.offsets[i])))
                first = i
        return tuple(out)

    @cached_property
    def _gathers(self) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        # Built once per batch on the host and copied once (no host sync in the layers): index, rows, keep mask.
        out = {}
        for i, b in enumerate(self.buckets):
            if len(b.members) > 1:
                index, rows = b.gather()
                keep = torch.zeros(index.numel(), dtype=torch.bool)
                keep[rows] = True
                out[i] = tuple(t.to(self.device, non_blocking=True) for t in (index, rows, keep.view(index.shape)))
        return out

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Views of the packed ``[N, ...]`` tensor, one per sequence (the filler left out)."""
        return torch.split(x, list(self.lengths), dim=0)[: self.real]

    def pad(self, x: torch.Tensor, value: float = 0.0) -> torch.Tensor:
        """``[B, longest, ...]`` padded copy of the packed ``[N, ...]`` tensor (for poolings)."""
        return torch.nn.utils.rnn.pad_sequence(list(self.split(x)), batch_first=True, padding_value=value)

    def mask(self) -> torch.Tensor:
        """``[B, longest]`` True on real tokens (the layout of `pad`)."""
        lengths = torch.tensor(self.lengths[: self.real], device=self.device)
        return torch.arange(max(self.lengths[: self.real]), device=self.device)[None, :] < lengths[:, None]


def pack_rows(
    rows: Sequence[torch.Tensor],
    device: str | torch.device = "cpu",
    *,
    multiple_of: int | None = None,
    filler_token: int = 0,
) -> tuple[torch.Tensor, Packing]:
    """Concatenate 1-D token rows into ``[N]`` and return them with their `Packing`.

    The concatenation is built in pinned memory when copying to CUDA, so the
    host-to-device copy is asynchronous and overlaps the previous batch.

    `multiple_of`: round N up with a filler sequence of `filler_token`s. oneDNN builds a GEMM
    kernel per new shape (bfloat16 on CPU: ~30 ms per Linear, benchmarks/RESULTS.md) and every
    packed batch has a new N; rounded, the shapes repeat and the kernels come from its cache.
    """
    lengths = [int(r.shape[0]) for r in rows]
    total = sum(lengths)
    filler = (-total) % multiple_of if multiple_of else 0
    packing = Packing.of(lengths, device, filler)
    flat = torch.cat([*rows, torch.full((filler,), filler_token, dtype=rows[0].dtype)] if filler else list(rows))
    if packing.device.type == "cuda":
        flat = flat.pin_memory()
    return flat.to(packing.device, non_blocking=True), packing


def _flash_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, packing: Packing, scale: float | None):
    """FlashAttention varlen on CUDA, or None where this build/dtype cannot run it."""
    if q.device.type != "cuda" or q.dtype not in (torch.float16, torch.bfloat16):
        return None
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:  # older torch
        return None
    cu = packing.cu_seqlens
    try:
        return varlen_attn(q, k, v, cu, cu, packing.max_len, packing.max_len, scale=scale)
    except (RuntimeError, NotImplementedError):  # no flash kernel for this GPU/head size
        return None


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    packing: Packing,
    *,
    scale: float | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Self-attention within each sequence of a packed batch.

    Args:
        q, k, v: ``[N, heads, head_dim]`` projections of the concatenated tokens.
        packing: the batch layout.
        scale: the softmax scale (None: ``1/sqrt(head_dim)``).
        bias: an additive ``[heads, longest, longest]`` bias that depends on
            positions only (ProtT5's relative positions): each sequence gets its
            top-left block. It rules out the flash kernel (which takes none).

    Returns:
        ``[N, heads, head_dim]``; token t only attended to tokens of its own sequence.
    """
    if bias is None:
        out = _flash_varlen(q, k, v, packing, scale)
        if out is not None:
            return out
    outs = []
    for i, bucket in enumerate(packing.buckets):
        if len(bucket.members) == 1:  # one sequence: a plain dense attention on its slice
            start, end = bucket.span
            # 4-D on purpose: torch's CPU flash kernel takes [B, heads, L, d] only; a 3-D call falls back
            # to the math path (6-9x slower at 900 tokens, benchmarks/RESULTS.md).
            qs, ks, vs = (t[start:end].transpose(0, 1)[None] for t in (q, k, v))
            mask = None if bias is None else bias[None, :, : end - start, : end - start]
            out = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=scale)
            outs.append(out[0].transpose(0, 1))
            continue
        # Several sequences of about one length: one batched call over their rows gathered to the
        # bucket's width; padded keys are masked, padded query rows are dropped afterwards.
        index, rows, keep = packing._gathers[i]
        qb, kb, vb = (t[index].transpose(1, 2) for t in (q, k, v))  # [G, heads, W, d]
        mask = None
        if bias is not None:
            mask = bias[None, :, : bucket.width, : bucket.width]
        if not bucket.equal:
            pad = ~keep[:, None, None, :]
            mask = ~pad if mask is None else mask.masked_fill(pad, float("-inf"))
        out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, scale=scale).transpose(1, 2)
        out = out.reshape(-1, *out.shape[2:])  # [G * W, heads, d]
        outs.append(out if bucket.equal else out.index_select(0, rows))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)
