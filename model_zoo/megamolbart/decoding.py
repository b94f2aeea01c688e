"""Autoregressive decoding of encoder hiddens: greedy, top-k/top-p sampling, beam search.

All three run the decoder incrementally (key/value caches, `DecoderState`) and
only let it emit the ids in `allowed` (chemistry tokens and the end token), so
padding, mask and reserved tokens never appear in a SMILES. Scores are the
sequence log-likelihood under the model (natural log, end token included).
Sampling draws its randomness from one CPU ``torch.Generator`` per row
(Gumbel-max), so a seed gives the same molecules on CPU and GPU, whatever the
batch a row is decoded in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from bionemo_lite.cancellation import raise_if_cancelled

from .network import MegaMolBARTNetwork


@dataclass
class Decoded:
    """Decoded token ids (begin token dropped, cut before the end token) and their log-likelihoods."""

    ids: list[list[int]]
    scores: list[float]
    finished: list[bool]


def allowed_mask(vocab_size: int, allowed: Sequence[int], device: torch.device) -> torch.Tensor:
    mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    mask[torch.as_tensor([i for i in allowed if i < vocab_size], dtype=torch.long, device=device)] = True
    return mask


def _log_probs(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float().masked_fill(~allowed, float("-inf")), dim=-1)


def _trim(row: list[int], eos: int) -> tuple[list[int], bool]:
    if eos in row:
        return row[: row.index(eos)], True
    return row, False


# (log-probs [B, V] of the active rows, their indices in the batch [B]) -> next ids [B]
Chooser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def _autoregress(
    network: MegaMolBARTNetwork,
    memory: torch.Tensor,
    memory_mask: torch.Tensor,
    choose: Chooser,
    *,
    bos: int,
    eos: int,
    allowed: Sequence[int],
    max_steps: int,
) -> Decoded:
    """One token per step for every row; finished rows leave the batch (and its caches)."""
    batch = memory.shape[0]
    device = memory.device
    ok = allowed_mask(network.config.vocab_size, allowed, device)
    max_steps = min(max_steps, network.config.max_position_embeddings)
    out = torch.full((batch, max_steps), eos, dtype=torch.long, device=device)
    scores = torch.zeros(batch, dtype=torch.float64, device=device)
    rows = torch.arange(batch, device=device)
    state = network.start_decoding(memory, memory_mask)
    tokens = torch.full((batch,), bos, dtype=torch.long, device=device)
    for t in range(max_steps):
        raise_if_cancelled()  # a decoding step: a batch boundary
        logp = _log_probs(network.step(tokens, state), ok)
        nxt = choose(logp, rows)
        out[rows, t] = nxt
        scores[rows] += logp.gather(1, nxt[:, None])[:, 0].double()
        alive = nxt != eos
        if not alive.all():
            keep = alive.nonzero()[:, 0]
            if keep.numel() == 0:
                break
            state.reorder(keep)
            rows, nxt = rows[keep], nxt[keep]
        tokens = nxt
    ids, done = zip(*(_trim(r, eos) for r in out.tolist())) if batch else ((), ())
    return Decoded(list(ids), scores.tolist(), list(done))


def greedy(network: MegaMolBARTNetwork, memory: torch.Tensor, memory_mask: torch.Tensor, **kw) -> Decoded:
    """The most likely token at every step."""
    return _autoregress(network, memory, memory_mask, lambda logp, rows: logp.argmax(-1), **kw)


def filter_logits(logp: torch.Tensor, top_k: int | None, top_p: float | None, temperature: float) -> torch.Tensor:
    """Temperature, then keep the `top_k` most likely tokens, then the smallest set whose
    probability reaches `top_p` (always at least one token)."""
    x = logp / max(temperature, 1e-6)
    if top_k is not None and 0 < top_k < x.shape[-1]:
        kth = x.topk(top_k, dim=-1).values[:, -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_x, order = x.sort(dim=-1, descending=True)
        probs = torch.softmax(sorted_x, dim=-1)
        drop = probs.cumsum(-1) - probs > top_p  # mass before this token already reaches top_p
        x = x.scatter(-1, order, sorted_x.masked_fill(drop, float("-inf")))
    return x


def sample(
    network: MegaMolBARTNetwork,
    memory: torch.Tensor,
    memory_mask: torch.Tensor,
    *,
    generators: Sequence[torch.Generator],
    top_k: int | None = None,
    top_p: float | None = None,
    temperature: float = 1.0,
    **kw,
) -> Decoded:
    """Ancestral sampling with top-k / nucleus filtering (Gumbel-max on CPU-drawn noise,
    `generators` holding one generator per row of `memory`)."""
    if len(generators) != memory.shape[0]:
        raise ValueError(f"{len(generators)} generators for {memory.shape[0]} rows")

    def choose(logp: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        x = filter_logits(logp, top_k, top_p, temperature)
        u = torch.stack(
            [torch.rand(x.shape[-1], generator=generators[r], dtype=torch.float64) for r in rows.tolist()]
        ).clamp_(1e-12, 1 - 1e-12)
        gumbel = (-torch.log(-torch.log(u))).to(device=x.device, dtype=x.dtype)
        return (x + gumbel).argmax(-1)

    return _autoregress(network, memory, memory_mask, choose, **kw)


@torch.no_grad()
def beam_search(
    network: MegaMolBARTNetwork,
    memory: torch.Tensor,
    memory_mask: torch.Tensor,
    *,
    beam_size: int,
    bos: int,
    eos: int,
    allowed: Sequence[int],
    max_steps: int,
    length_penalty: float = 0.0,
) -> list[Decoded]:
    """Beam search; per input row, its `beam_size` beams best first.

    Beams are ranked by log-likelihood divided by ``length ** length_penalty``
    (0 = plain log-likelihood, as in Chemformer).
    """
    batch, k = memory.shape[0], beam_size
    device = memory.device
    ok = allowed_mask(network.config.vocab_size, allowed, device)
    max_steps = min(max_steps, network.config.max_position_embeddings)
    state = network.start_decoding(memory.repeat_interleave(k, 0), memory_mask.repeat_interleave(k, 0))
    beam_scores = torch.zeros(batch, k, dtype=torch.float64, device=device)
    beam_scores[:, 1:] = float("-inf")  # all beams start identical: keep one
    tokens = torch.full((batch * k,), bos, dtype=torch.long, device=device)
    finished = torch.zeros(batch * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch * k, dtype=torch.long, device=device)
    history = torch.empty(batch * k, 0, dtype=torch.long, device=device)
    offsets = (torch.arange(batch, device=device) * k)[:, None]
    for _ in range(max_steps):
        raise_if_cancelled()  # a decoding step: a batch boundary
        logp = _log_probs(network.step(tokens, state), ok).double()
        # A finished beam may only continue with end tokens, at no cost.
        logp[finished] = float("-inf")
        logp[finished, eos] = 0.0
        vocab = logp.shape[-1]
        cand = (beam_scores.view(-1, 1) + logp).view(batch, k * vocab)
        beam_scores, top = cand.topk(k, dim=1)
        origin = (offsets + top // vocab).view(-1)
        tokens = (top % vocab).view(-1)
        state.reorder(origin)
        lengths = lengths[origin] + (~finished[origin]).long()
        finished = finished[origin] | (tokens == eos)
        history = torch.cat([history[origin], tokens[:, None]], dim=1)
        if finished.all():
            break
    results: list[Decoded] = []
    norm = lengths.clamp(min=1).double().view(batch, k) ** length_penalty
    ranked = (beam_scores / norm).argsort(dim=1, descending=True)
    rows = history.view(batch, k, -1).tolist()
    raw = beam_scores.tolist()
    for b in range(batch):
        ids, scores, done = [], [], []
        for j in ranked[b].tolist():
            seq, fin = _trim(rows[b][j], eos)
            ids.append(seq)
            scores.append(raw[b][j])
            done.append(fin)
        results.append(Decoded(ids, scores, done))
    return results
