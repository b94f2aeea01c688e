"""Cheap checks of raw SMILES text, run before RDKit, a tokenizer or a model sees it.

RDKit is native code: a long enough chain overflows its stack while it
canonicalises (``"C" * 15000`` is a segfault that takes the process with it)
and its cost grows faster than the length (5,000 atoms: ~0.4 s of CPU). So
every door first holds a SMILES to bounds that cost microseconds and need no
native library: an absolute cap on characters, a cap derived from the model's
length in tokens, the characters a SMILES may contain, well-formed bracket
atoms, and the number of tokens (the SMILES regex, pure Python).

`check_smiles_text` is the one entry point; `bionemo_lite.chem.parse_smiles`
calls it too, so no path reaches RDKit unchecked.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import replace

from .errors import InvalidInputError
from .records import LengthPolicy, Record

# RDKit canonicalises a 4,096-atom chain in ~0.2 s and crashes near 13,000 atoms (8 MiB
# stack): this cap keeps every SMILES far from the crash and cheap, whatever the model.
MAX_SMILES_CHARACTERS = 4096

# The longest bracket atom: isotope (3) + element (2) + chirality (@TB20: 5) + H count (2)
# + charge (+15: 3) + atom class (:9999: 5) + the brackets (2) = 22, rounded up.
MAX_BRACKET_ATOM_CHARACTERS = 24

# OpenSMILES' characters (atoms, bonds, branches, ring closures, charges, chirality, '.' and
# '*'). Whitespace and CXSMILES extensions (after a space) are not SMILES.
SMILES_CHARACTERS = frozenset(string.ascii_letters + string.digits + "()[]=#$:/\\.+-@%*")

# NeMo's SMILES regex (nemo_chem/tokenizer/tokenizer.py), character for character: the
# tokenization of MegaMolBART and of most SMILES language models (Schwaller et al. 2019).
SMILES_TOKEN_REGEX = (
    r"\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\\\|\/|:|~|@|\?|>|\*|\$|\%[0-9]{2}|[0-9]"
)
# As NeMo does, "|." makes every character a token: none is silently skipped.
_TOKEN_PATTERN = re.compile(f"(?:{SMILES_TOKEN_REGEX}|.)")


# The canonical form the model embeds can have fewer tokens than the input (ring-closure digits,
# explicit hydrogens, redundant brackets): before parsing, the input may have this many times
# the model's tokens; the model then holds the canonical form to its exact limit.
RAW_TOKEN_SLACK = 2


def count_smiles_tokens(smiles: str) -> int:
    """Tokens of `smiles` under `SMILES_TOKEN_REGEX` (each stray character counts as one)."""
    return sum(1 for _ in _TOKEN_PATTERN.finditer(smiles))


def max_smiles_characters(max_tokens: int) -> int:
    """The most characters a SMILES of `max_tokens` tokens can have (never above the absolute cap).

    A token is at most one bracket atom (`MAX_BRACKET_ATOM_CHARACTERS`); ``%99`` is 3.
    """
    return min(MAX_SMILES_CHARACTERS, max(1, int(max_tokens)) * MAX_BRACKET_ATOM_CHARACTERS)


def _check_characters(text: str, record: str | int | None) -> None:
    for pos, ch in enumerate(text, start=1):
        if ch not in SMILES_CHARACTERS:
            what = "whitespace" if ch.isspace() else f"character {ch!r}"
            raise InvalidInputError(
                f"SMILES contains {what}, which no SMILES has (allowed: letters, digits and ()[]=#$:/\\.+-@%*)",
                record=record,
                position=pos,
            )


def _check_brackets(text: str, record: str | int | None) -> None:
    """Every ``[`` closes with ``]`` within `MAX_BRACKET_ATOM_CHARACTERS`, never nested, never stray."""
    opened = -1
    for i, ch in enumerate(text):
        if ch == "[":
            if opened >= 0:
                raise InvalidInputError("bracket atom opened inside another one", record=record, position=i + 1)
            opened = i
        elif ch == "]":
            if opened < 0:
                raise InvalidInputError("']' closes no bracket atom", record=record, position=i + 1)
            opened = -1
        if opened >= 0 and i - opened + 1 > MAX_BRACKET_ATOM_CHARACTERS:
            raise InvalidInputError(
                f"bracket atom longer than {MAX_BRACKET_ATOM_CHARACTERS} characters (or never closed)",
                record=record,
                position=opened + 1,
            )
    if opened >= 0:
        raise InvalidInputError("bracket atom never closed", record=record, position=opened + 1)


def check_smiles_text(
    smiles: object,
    record: str | int | None = None,
    *,
    max_tokens: int | None = None,
    on_too_long: LengthPolicy = "error",
    count_tokens: Callable[[str], int] = count_smiles_tokens,
    max_characters: int = MAX_SMILES_CHARACTERS,
) -> str:
    """The stripped SMILES, after the checks that need no parser.

    Args:
        max_tokens: the model's limit in tokens; under ``on_too_long="error"`` the
            SMILES may have at most this many (counted by `count_tokens`, e.g. the
            model's own tokenizer) and `max_smiles_characters` of it. None, or
            ``"truncate"`` (the model cuts the tokens later): only the absolute cap.
        max_characters: the absolute cap (raise it only where RDKit runs in a worker process).

    Raises:
        InvalidInputError: not a string, empty, too long, a character no SMILES
            has, a malformed bracket atom or too many tokens, naming `record`
            (and the 1-based position where there is one).
    """
    if not isinstance(smiles, str):
        raise InvalidInputError(f"a SMILES must be a string, got {type(smiles).__name__}", record=record)
    text = smiles.strip()
    if not text:
        raise InvalidInputError("empty SMILES", record=record)
    bounded = max_tokens is not None and on_too_long == "error"
    cap = min(max_smiles_characters(RAW_TOKEN_SLACK * max_tokens), max_characters) if bounded else max_characters
    if len(text) > cap:
        limit = f"at most {cap}" + (f" for a model of {max_tokens} tokens" if cap < max_characters else "")
        raise InvalidInputError(
            f"SMILES has {len(text)} characters; {limit} are accepted (checked before parsing: "
            "RDKit cannot safely parse longer ones)",
            record=record,
        )
    _check_characters(text, record)
    _check_brackets(text, record)
    if bounded:
        tokens, most = count_tokens(text), RAW_TOKEN_SLACK * max_tokens  # type: ignore[operator]
        if tokens > most:
            raise InvalidInputError(
                f"SMILES has {tokens} tokens, far more than the model's maximum of {max_tokens} (at most "
                f"{most} are accepted before canonicalisation, which may shorten it); shorten it or ask for "
                "truncation (Python: on_too_long='truncate'; CLI: --truncate; HTTP: \"truncate\": true)",
                record=record,
            )
    return text


def check_smiles_record(record: Record, max_tokens: int | None = None, on_too_long: LengthPolicy = "error") -> Record:
    """`check_smiles_text` of a record's SMILES: the record, stripped (for the doors' input checks)."""
    return replace(record, sequence=check_smiles_text(record.sequence, record.id, max_tokens=max_tokens,
                                                      on_too_long=on_too_long))
