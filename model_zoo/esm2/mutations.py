"""Parsing and checking variant notations such as ``"A42G"`` or ``"A42G:L50P"``.

Positions are 1-based residue numbers of the wild-type sequence; several
substitutions joined by ``:`` form one multi-mutant whose score is the sum of
its substitutions' scores (the additive model of fair-esm's variant-prediction
example and Meier et al. 2021).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bionemo_lite.errors import InvalidInputError
from bionemo_lite.records import PROTEIN_ALPHABET

_SUBSTITUTION = re.compile(r"^([A-Za-z])(\d+)([A-Za-z])$")


@dataclass(frozen=True)
class Substitution:
    """One residue change: `wt` at 1-based `position` becomes `mt`."""

    wt: str
    position: int
    mt: str


@dataclass(frozen=True)
class Mutation:
    """A mutation as written by the user and the substitutions it stands for."""

    text: str
    substitutions: tuple[Substitution, ...]


def _parse_one(text: str, sequence: str) -> Mutation:
    if not isinstance(text, str):
        raise InvalidInputError(f"a mutation must be a string like 'A42G', got {type(text).__name__}", record=str(text))
    subs: list[Substitution] = []
    seen: set[int] = set()
    for part in text.strip().split(":"):
        match = _SUBSTITUTION.match(part.strip())
        if match is None:
            raise InvalidInputError(
                f"malformed mutation {part.strip()!r}: write the wild-type residue, its 1-based position and the "
                "new residue (e.g. 'A42G'); join several with ':' (e.g. 'A42G:L50P')",
                record=text,
            )
        wt, pos, mt = match.group(1).upper(), int(match.group(2)), match.group(3).upper()
        for letter in (wt, mt):
            if letter not in PROTEIN_ALPHABET:
                raise InvalidInputError(f"{letter!r} is not an amino-acid letter", record=text, position=pos)
        if not 1 <= pos <= len(sequence):
            raise InvalidInputError(
                f"position {pos} is outside the wild-type sequence (1..{len(sequence)})", record=text, position=pos
            )
        if sequence[pos - 1] != wt:
            raise InvalidInputError(
                f"the wild-type residue at position {pos} is {sequence[pos - 1]!r}, not {wt!r}",
                record=text,
                position=pos,
            )
        if pos in seen:
            raise InvalidInputError(f"position {pos} is mutated twice", record=text, position=pos)
        seen.add(pos)
        subs.append(Substitution(wt, pos, mt))
    return Mutation(text, tuple(subs))


def parse_mutations(mutations: str | Sequence[str] | None, sequence: str) -> list[Mutation]:
    """Parse and check mutations against the wild-type `sequence`.

    Args:
        mutations: one string or a list of strings (``"A42G"``, ``"A42G:L50P"``).
        sequence: the cleaned wild-type sequence.

    Raises:
        InvalidInputError: naming the offending mutation (as `record`): no
            mutations, malformed text, unknown letters, a position outside the
            sequence, a wild-type letter that does not match, or a duplicate.
    """
    if mutations is None:
        raise InvalidInputError("this scoring method needs mutations, e.g. mutations=['A42G', 'A42G:L50P']")
    items = [mutations] if isinstance(mutations, str) else list(mutations)
    if not items:
        raise InvalidInputError("no mutations were given")
    parsed: list[Mutation] = []
    seen: set[str] = set()
    for text in items:
        mutation = _parse_one(text, sequence)
        if mutation.text in seen:
            raise InvalidInputError("duplicate mutation", record=mutation.text)
        seen.add(mutation.text)
        parsed.append(mutation)
    return parsed
