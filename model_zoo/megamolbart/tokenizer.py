"""The MegaMolBART SMILES tokenizer: NeMo's regex tokenizer with its vocabulary layout.

Layout of ``megamolbart.vocab`` (one token per line): 0 ``<PAD>``, 1 ``?``
(unknown), 2 ``^`` (begin), 3 ``&`` (end), 4 ``<MASK>``, 5 ``<SEP>``, 6-271
property and unused tokens, chemistry tokens from 272. A checkpoint brings its
own vocabulary (and maybe its regex, in the ``.model`` file); the built-in
vocabulary below is only for new models trained with this package.

Encoder inputs are the bare tokens; decoder inputs are ``^`` + tokens and the
targets tokens + ``&`` (as in NeMo-chem's collate function).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from bionemo_lite.errors import CheckpointError, InvalidInputError
from bionemo_lite.smiles_text import SMILES_TOKEN_REGEX

# nemo_chem/tokenizer/tokenizer.py, character for character (the core keeps it, so the doors
# count tokens before any model is loaded). Its `\\\\` matches a doubled backslash; a single
# '\' bond falls through to the one-character fallback and is looked up as the vocabulary's
# '\' token, exactly as upstream.
SMILES_REGEX = SMILES_TOKEN_REGEX
PAD, UNK, BOS, EOS, MASK, SEP = "<PAD>", "?", "^", "&", "<MASK>", "<SEP>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, BOS, EOS, MASK, SEP)
CHEM_TOKEN_START = 272
_RESERVED = CHEM_TOKEN_START - len(SPECIAL_TOKENS)  # 266 property/unused slots

# The usual tokens of drug-like SMILES (ZINC/ChEMBL), most frequent first.
_ORGANIC = [
    "C", "c", "(", ")", "1", "O", "2", "=", "N", "n", "3", "F", "4", "S", "Cl", "#", "s", "o", "Br", "/",
    "\\", "5", "-", "6", "I", "P", "7", "8", "9", "B", "b", "p", ".", "+", ":", "~", "@", ">", "*", "$",
] + [f"%{i}" for i in range(10, 30)]
_BRACKET = [
    "[nH]", "[C@H]", "[C@@H]", "[C@]", "[C@@]", "[O-]", "[N+]", "[n+]", "[NH+]", "[NH2+]", "[NH3+]", "[N-]",
    "[n-]", "[NH-]", "[S+]", "[S-]", "[s+]", "[o+]", "[O+]", "[OH+]", "[P+]", "[B-]", "[C-]", "[c-]", "[CH-]",
    "[cH-]", "[CH2-]", "[N@]", "[N@@]", "[N@+]", "[N@@+]", "[S@]", "[S@@]", "[S@+]", "[S@@+]", "[P@]", "[P@@]",
    "[P@+]", "[P@@+]", "[Si]", "[SiH]", "[SiH2]", "[Se]", "[se]", "[SeH]", "[Te]", "[te]", "[As]", "[Ge]",
    "[Sn]", "[B]", "[BH-]", "[BH2-]", "[BH3-]", "[H]", "[2H]", "[3H]", "[11C]", "[13C]", "[13c]", "[14C]",
    "[15N]", "[18F]", "[123I]", "[125I]", "[C]", "[CH]", "[CH2]", "[N]", "[NH]", "[O]", "[S]", "[P]", "[c]",
    "[n]", "[Na+]", "[K+]", "[Li+]", "[Cs+]", "[Ca+2]", "[Mg+2]", "[Zn+2]", "[Fe+2]", "[Fe+3]", "[Cu+2]",
    "[Co+2]", "[Mn+2]", "[Ni+2]", "[Al+3]", "[Cl-]", "[Br-]", "[I-]", "[F-]", "[OH-]", "[H+]", "[Na]", "[K]",
    "[Li]", "[Mg]", "[Ca]", "[Zn]", "[Fe]", "[Cu]", "[Co]", "[Mn]", "[Ni]", "[Al]", "[Pt]", "[Pd]", "[Au]",
    "[Ag]", "[Hg]", "[Gd]", "[Ti]", "[Bi]", "[Sb]", "[Ga]", "[Tl]", "[Sr]", "[Ba]", "[Cr]", "[Ru]", "[Rh]",
    "[Ir]", "[Os]", "[Re]", "[W]", "[Mo]", "[V]", "[Zr]", "[Xe]", "[He]", "[Ne]", "[Ar]", "[Kr]", "[Rn]",
    "[I+]", "[Cl+]", "[Br+]", "[IH2]", "[ClH+]", "[PH]", "[PH+]", "[PH2]", "[SH]", "[SH+]", "[sH+]", "[NH4+]",
    "[N+2]", "[C+]", "[c+]", "[CH+]", "[O-2]", "[S-2]", "[Se-]", "[Si-]", "[Sn+]", "[Sn+2]", "[Sn+4]",
]
DEFAULT_CHEM_TOKENS: tuple[str, ...] = tuple(dict.fromkeys(_ORGANIC + _BRACKET))


def default_vocabulary() -> list[str]:
    """The built-in vocabulary: specials, 266 reserved slots, then the chemistry tokens from id 272."""
    reserved = [f"<UNUSED_{i}>" for i in range(_RESERVED)]
    return list(SPECIAL_TOKENS) + reserved + list(DEFAULT_CHEM_TOKENS)


class MegaMolBARTTokenizer:
    """SMILES <-> token ids with the MegaMolBART regex and vocabulary.

    Args:
        vocab: tokens in id order (the lines of a ``.vocab`` file).
        regex: the tokenization pattern (NeMo stores it in the ``.model`` file).

    Raises:
        CheckpointError: a vocabulary without the six special tokens at ids 0-5.
    """

    def __init__(self, vocab: Sequence[str] | None = None, regex: str = SMILES_REGEX):
        tokens = list(vocab) if vocab is not None else default_vocabulary()
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise CheckpointError(
                f"the vocabulary must start with {', '.join(SPECIAL_TOKENS)} (ids 0-5); it starts with "
                f"{', '.join(tokens[:6])}"
            )
        if len(set(tokens)) != len(tokens):
            dupes = sorted({t for t in tokens if tokens.count(t) > 1})
            raise CheckpointError(f"the vocabulary repeats tokens: {', '.join(dupes[:10])}")
        self.vocab: list[str] = tokens
        self.token_to_id: dict[str, int] = {t: i for i, t in enumerate(tokens)}
        self.regex = regex
        # NeMo appends "|." so that no character is silently skipped: it then
        # becomes an unknown token, which we refuse instead of encoding as '?'.
        self._pattern = re.compile(f"({regex}|.)")
        first_chem = min(CHEM_TOKEN_START, len(tokens))
        self.chem_ids: list[int] = list(range(first_chem, len(tokens)))

    pad_id, unk_id, bos_id, eos_id, mask_id, sep_id = range(6)

    def __len__(self) -> int:
        return len(self.vocab)

    @classmethod
    def from_files(cls, vocab_file: Path, regex_file: Path | None = None) -> MegaMolBARTTokenizer:
        """Read NeMo's ``<name>.vocab`` (one token per line) and optional ``<name>.model`` (the regex)."""
        return cls.from_text(
            Path(vocab_file).read_text(encoding="utf-8"),
            Path(regex_file).read_text(encoding="utf-8") if regex_file is not None else None,
        )

    @classmethod
    def from_text(cls, vocab_text: str, regex_text: str | None = None) -> MegaMolBARTTokenizer:
        # NeMo strips each line and skips empty ones when it reads a vocabulary.
        vocab = [line.strip() for line in vocab_text.splitlines() if line.strip()]
        regex = regex_text.strip() if regex_text and regex_text.strip() else SMILES_REGEX
        try:
            re.compile(regex)
        except re.error as exc:
            raise CheckpointError(f"the tokenizer regex does not compile: {exc}") from exc
        return cls(vocab, regex)

    def vocab_text(self) -> str:
        return "".join(f"{t}\n" for t in self.vocab)

    def save(self, folder: Path, stem: str = "megamolbart") -> tuple[Path, Path]:
        """Write ``<stem>.vocab`` and ``<stem>.model`` (NeMo's file pair)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        vocab_file, regex_file = folder / f"{stem}.vocab", folder / f"{stem}.model"
        vocab_file.write_text(self.vocab_text(), encoding="utf-8")
        regex_file.write_text(self.regex, encoding="utf-8")
        return vocab_file, regex_file

    def tokenize(self, smiles: str) -> list[str]:
        return self._pattern.findall(smiles)

    def count_tokens(self, smiles: str) -> int:
        """How many tokens `smiles` has (pure Python: safe to run on raw input before RDKit)."""
        return sum(1 for _ in self._pattern.finditer(smiles))

    def encode(self, smiles: str, record: str | int | None = None) -> list[int]:
        """Token ids of `smiles` (no begin/end tokens).

        Raises:
            InvalidInputError: a token the vocabulary does not have, naming the
                record and the 1-based character position.
        """
        ids: list[int] = []
        pos = 1
        for tok in self.tokenize(smiles):
            idx = self.token_to_id.get(tok)
            # Special tokens ('?', '^', '&'...) can only come from stray characters: refuse them too.
            if idx is None or idx < len(SPECIAL_TOKENS):
                raise InvalidInputError(
                    f"token {tok!r} of SMILES {smiles!r} is not in the model's vocabulary", record=record, position=pos
                )
            ids.append(idx)
            pos += len(tok)
        if not ids:
            raise InvalidInputError("empty SMILES", record=record)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """SMILES text of decoder output ids: stops at the end token, skips padding and begin tokens."""
        out: list[str] = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id) or not 0 <= i < len(self.vocab):
                continue
            out.append(self.vocab[i])
        return "".join(out)

    def allowed_output_ids(self) -> list[int]:
        """Ids a decoder may emit: the chemistry tokens and the end token (never padding,
        begin, mask, separator, unknown or the reserved property slots)."""
        return [self.eos_id, *self.chem_ids]
