"""Variant notations such as ``"A42G"`` or ``"A42G:L50P"``: parsing and checking against a wild type.

One parser for every front door (Python, CLI batch jobs, HTTP), so a bad
mutation gets the same message everywhere. Positions are 1-based residue
numbers of the wild type; several substitutions joined by ``:`` form one
multi-mutant (scored as the sum of its substitutions' scores, the additive
model of fair-esm's variant-prediction example and Meier et al. 2021).
Letters are read case-insensitively: ``"a5g"`` and ``"A5G"`` are the same
mutation, written ``"A5G"`` in results (see `normalize_mutation`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InvalidInputError
from .records import PROTEIN_ALPHABET, WHITESPACE

_SUBSTITUTION = re.compile(r"^([A-Z])(\d+)([A-Z])$")
NOTATION_HINT = (
    "write the wild-type residue, its 1-based position and the new residue (e.g. 'A42G'); "
    "join several with ':' (e.g. 'A42G:L50P')"
)


@dataclass(frozen=True)
class Substitution:
    """One residue change: `wt` at 1-based `position` becomes `mt`."""

    wt: str
    position: int
    mt: str


@dataclass(frozen=True)
class Mutation:
    """A checked mutation.

    Attributes:
        text: the normalised notation (`normalize_mutation`), used as its id in results.
        substitutions: its residue changes, in the order written.
    """

    text: str
    substitutions: tuple[Substitution, ...]


def normalize_mutation(text: str) -> str:
    """The canonical spelling of a mutation: upper case, no whitespace (``" a5g : k2r"`` -> ``"A5G:K2R"``).

    Two spellings with the same canonical form are the same mutation (a
    duplicate when both are given). Malformed text is normalised too, so it
    can still be named; `parse_mutation` rejects it.

    Raises:
        InvalidInputError: `text` is not a string.
    """
    if not isinstance(text, str):
        raise InvalidInputError(
            f"a mutation must be a string like 'A42G', got {type(text).__name__}", record=str(text)
        )
    return WHITESPACE.sub("", text).upper()


def parse_mutation(text: str, sequence: str, *, truncated: bool = False) -> Mutation:
    """Parse one mutation (``"A42G"`` or ``"A42G:L50P"``) and check it against the wild type.

    Args:
        text: the mutation as the user wrote it (any case, spaces allowed).
        sequence: the cleaned wild type, as the model sees it (after any truncation).
        truncated: whether `sequence` was cut to the model's maximum length;
            a position past the cut then gets its own message.

    Returns:
        The `Mutation`, its `text` normalised.

    Raises:
        InvalidInputError: with `text` as `record` (and the position where
            known): malformed notation, a letter outside the protein alphabet,
            a position outside the wild type or past the truncation, a
            wild-type letter that does not match, or a position changed twice.
    """
    canonical = normalize_mutation(text)
    subs: list[Substitution] = []
    seen: set[int] = set()
    for part in canonical.split(":"):
        match = _SUBSTITUTION.match(part)
        if match is None:
            raise InvalidInputError(f"malformed mutation {part!r}: {NOTATION_HINT}", record=text)
        wt, pos, mt = match.group(1), int(match.group(2)), match.group(3)
        for letter in (wt, mt):
            if letter not in PROTEIN_ALPHABET:
                raise InvalidInputError(f"{letter!r} is not an amino-acid letter", record=text, position=pos)
        if truncated and pos > len(sequence):
            raise InvalidInputError(
                f"position {pos} is past the first {len(sequence)} residues, where the wild type was truncated "
                "to the model's maximum length; mutations there cannot be scored",
                record=text,
                position=pos,
            )
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
    return Mutation(canonical, tuple(subs))


def parse_mutations(
    mutations: str | Sequence[str] | None, sequence: str, *, truncated: bool = False
) -> list[Mutation]:
    """Parse and check a list of mutations against one wild type (see `parse_mutation`).

    Args:
        mutations: one string or a list of strings (``"A42G"``, ``"A42G:L50P"``).
        sequence: the cleaned wild type, as the model sees it.
        truncated: whether `sequence` was cut to the model's maximum length.

    Raises:
        InvalidInputError: no mutations, a bad one (its text as `record`), or
            the same mutation twice (also when spelled in another case).
    """
    if mutations is None:
        raise InvalidInputError("this scoring method needs mutations, e.g. mutations=['A42G', 'A42G:L50P']")
    items = [mutations] if isinstance(mutations, str) else list(mutations)
    if not items:
        raise InvalidInputError("no mutations were given")
    parsed: list[Mutation] = []
    first_spelling: dict[str, str] = {}
    for text in items:
        mutation = parse_mutation(text, sequence, truncated=truncated)
        if mutation.text in first_spelling:
            raise InvalidInputError(duplicate_reason(first_spelling[mutation.text]), record=text)
        first_spelling[mutation.text] = text
        parsed.append(mutation)
    return parsed


def duplicate_reason(first: str) -> str:
    """The message for a mutation given a second time (`first`: how it was written the first time)."""
    return f"duplicate mutation (same as {first!r}, listed before)"
