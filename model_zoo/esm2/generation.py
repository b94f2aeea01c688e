"""Helpers for ESM-2 masked infilling: reading seeds written with ``<mask>`` and
drawing one residue per step.

Each sample owns a `torch.Generator` seeded from (seed, record id, sample
number), so a seeded run gives the same sequences however the samples are
batched, after an out-of-memory split, and in whichever chunk of a batch job
the record lands.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace

import numpy as np
import torch

from bionemo_lite.errors import InvalidInputError
from bionemo_lite.options import check_int, check_seed, check_temperature
from bionemo_lite.records import WHITESPACE, Inputs, Record, as_records, check_protein

ORDERS = ("random", "left_to_right")
_MASK = re.compile(r"<mask>", re.IGNORECASE)


@dataclass(frozen=True)
class MaskedSeed:
    """A seed record: the residues (masked positions hold ``X`` until filled) and where the masks are.

    Attributes:
        record: the cleaned record; ``sequence`` has ``X`` at every masked position.
        masks: 1-based positions of the ``<mask>`` tokens.
        text: the sequence as the user wrote it.
    """

    record: Record
    masks: tuple[int, ...]
    text: str


def parse_masked_inputs(inputs: Inputs, max_length: int) -> list[MaskedSeed]:
    """Validate seeds where each position to generate is written ``<mask>``.

    Every other character is checked as in any protein input (with its
    1-based position, counting a ``<mask>`` as one residue).

    Raises:
        InvalidInputError: bad residue, empty or too long sequence, or no ``<mask>``.
    """
    seeds: list[MaskedSeed] = []
    for rec in as_records(inputs):
        text = WHITESPACE.sub("", rec.sequence)
        pieces = _MASK.split(text)
        masks: list[int] = []
        residues = pieces[0]
        for piece in pieces[1:]:
            residues += "X"  # placeholder: one residue, so positions stay 1-based residue numbers
            masks.append(len(residues))
            residues += piece
        cleaned, _ = check_protein(replace(rec, sequence=residues), max_length, "error")
        if not masks:
            raise InvalidInputError(
                "nothing to generate: write each position to fill as <mask>, e.g. 'MKT<mask><mask>AYIAK'",
                record=rec.id,
            )
        seeds.append(MaskedSeed(cleaned, tuple(masks), rec.sequence))
    return seeds


MAX_SAMPLES = 1000  # per seed and call: each sample costs one network pass per masked position


@dataclass(frozen=True)
class SamplingOptions:
    """The checked options of one ``generate`` call."""

    num_samples: int
    temperature: float
    top_k: int | None
    seed: int | None
    order: str


def check_sampling(
    num_samples: object, temperature: object, top_k: object, seed: object, order: object, vocab: int
) -> SamplingOptions:
    """Every sampling option typed and in range, before any work.

    Raises:
        InvalidInputError: naming the option and the accepted range.
    """
    if order not in ORDERS:
        raise InvalidInputError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")
    return SamplingOptions(
        num_samples=check_int("num_samples", num_samples, low=1, high=MAX_SAMPLES),
        temperature=check_temperature(temperature),
        top_k=None if top_k is None else check_int("top_k", top_k, low=1, high=vocab),
        seed=check_seed(seed),
        order=str(order),
    )


def sample_generator(seed: int, record_id: str, sample: int) -> torch.Generator:
    """An independent, reproducible random stream for one sample of one record."""
    id_key = int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:8], "little")
    state = np.random.SeedSequence([seed, id_key, sample]).generate_state(2, dtype=np.uint32)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(state[0]) << 32 | int(state[1]))
    return gen


def fill_order(masks: tuple[int, ...], order: str, gen: torch.Generator) -> list[int]:
    """The order in which one sample fills its masked positions."""
    if order == "left_to_right":
        return list(masks)
    perm = torch.randperm(len(masks), generator=gen).tolist()
    return [masks[i] for i in perm]


def draw(
    logits: torch.Tensor, allowed: torch.Tensor, temperature: float, top_k: int | None, gens: list[torch.Generator]
) -> torch.Tensor:
    """Draw one token per row from ``logits [B, vocab]`` restricted to the `allowed` token ids.

    Returns:
        ``[B]`` chosen token ids (on the CPU).
    """
    sub = logits.float().cpu()[:, allowed] / temperature
    if top_k is not None and top_k < sub.shape[1]:
        kth = torch.topk(sub, top_k, dim=-1).values[:, -1:]
        sub = sub.masked_fill(sub < kth, float("-inf"))
    probs = torch.softmax(sub, dim=-1)
    picks = [int(torch.multinomial(probs[row], 1, generator=gens[row])) for row in range(probs.shape[0])]
    return allowed[torch.tensor(picks, dtype=torch.long)]
