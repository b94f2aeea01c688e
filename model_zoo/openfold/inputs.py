"""What a fold request may contain, checked before any model work.

A request is protein chains (one sequence, chains joined with ``:``, or a list),
optional ligands (SMILES, or CCD codes: ``"ATP"``, ``"ccd:ATP"``, ``{"ccd": "ATP"}``)
and optional a3m MSAs, one per protein chain. Everything that would make
openfold3 fail half-way (or silently drop something) is refused here with an
`InvalidInputError` naming the record, the chain or ligand and the reason.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from bionemo_lite.chains import chain_ids, clean_chains
from bionemo_lite.chem import parse_smiles
from bionemo_lite.errors import InvalidInputError
from bionemo_lite.records import Record

# openfold3 knows the 20 standard amino acids and X (UNK); it would turn any other
# letter into UNK with only a log line. We accept the shared 25-letter alphabet and do
# that mapping ourselves, visibly (documented on `fold`).
OPENFOLD_UNKNOWN = {"B": "X", "Z": "X", "U": "X", "O": "X"}
_CCD_CODE = re.compile(r"^[A-Z0-9]{1,5}$")

_MsaItem = Union[None, str, os.PathLike]
MsaInput = Union[_MsaItem, Sequence[_MsaItem], Mapping[Any, _MsaItem]]
LigandInput = Union[str, Mapping[str, str]]


@dataclass(frozen=True)
class ProteinChain:
    """One protein chain: its id, the residues as given (cleaned) and as sent to openfold3."""

    chain_id: str
    sequence: str
    model_sequence: str
    msa: str | None = None  # a3m text whose first row is `model_sequence`


@dataclass(frozen=True)
class Ligand:
    """One small molecule, from a SMILES string or a CCD code; one chain of its own."""

    chain_id: str
    smiles: str | None
    ccd: str | None
    heavy_atoms: int

    @property
    def label(self) -> str:
        return f"ccd:{self.ccd}" if self.ccd else str(self.smiles)


@dataclass(frozen=True)
class FoldRequest:
    """A validated request: protein chains first, then ligands, with their chain ids."""

    id: str
    proteins: tuple[ProteinChain, ...]
    ligands: tuple[Ligand, ...]

    @property
    def num_tokens(self) -> int:
        """AlphaFold-3 tokens: one per residue, one per ligand heavy atom."""
        return sum(len(c.sequence) for c in self.proteins) + sum(lig.heavy_atoms for lig in self.ligands)

    @property
    def sequence(self) -> str:
        return ":".join(c.sequence for c in self.proteins)

    @property
    def chain_ids(self) -> list[str]:
        return [c.chain_id for c in self.proteins] + [lig.chain_id for lig in self.ligands]


def _read_msa_item(item: None | str | os.PathLike, record_id: str, chain_id: str) -> str | None:
    if item is None:
        return None
    if isinstance(item, os.PathLike):
        path = Path(item)
        if not path.is_file():
            raise InvalidInputError(f"chain {chain_id}: MSA file {str(path)!r} does not exist", record=record_id)
        return path.read_text()
    if isinstance(item, str):
        return item
    raise InvalidInputError(
        f"chain {chain_id}: an MSA must be a3m text or a path, got {type(item).__name__}", record=record_id
    )


def msas_per_chain(msa: MsaInput, chain_ids: list[str], record_id: str) -> list[str | None]:
    """Spread the ``msa`` argument over the protein chains (same order as `chain_ids`).

    Accepted: None; one a3m text or path (single-chain requests only); a list with one
    entry (or None) per chain; a mapping from chain id (``"A"``) or 0-based chain
    index to a3m text or path.
    """
    n = len(chain_ids)
    if msa is None:
        return [None] * n
    if isinstance(msa, (str, os.PathLike)):
        if n != 1:
            raise InvalidInputError(
                f"one MSA was given for {n} protein chains; pass a list or a mapping with one MSA per chain",
                record=record_id,
            )
        return [_read_msa_item(msa, record_id, chain_ids[0])]
    if isinstance(msa, Mapping):
        out: list[str | None] = [None] * n
        for key, item in msa.items():
            if isinstance(key, int) and 0 <= key < n:
                idx = key
            elif isinstance(key, str) and key in chain_ids:
                idx = chain_ids.index(key)
            else:
                raise InvalidInputError(
                    f"MSA given for unknown chain {key!r}; protein chains are {', '.join(chain_ids)} "
                    f"(or indices 0..{n - 1})",
                    record=record_id,
                )
            out[idx] = _read_msa_item(item, record_id, chain_ids[idx])
        return out
    if isinstance(msa, Sequence):
        if len(msa) != n:
            raise InvalidInputError(
                f"{len(msa)} MSAs were given for {n} protein chains; give one entry (or None) per chain",
                record=record_id,
            )
        return [_read_msa_item(item, record_id, cid) for item, cid in zip(msa, chain_ids)]
    raise InvalidInputError(f"cannot read MSAs from a {type(msa).__name__}", record=record_id)


def parse_a3m(text: str) -> list[tuple[str, str]]:
    """(header, aligned row) pairs of an a3m text; ``#`` comment lines are skipped."""
    entries: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(">"):
            entries.append((line[1:].strip(), []))
        elif entries:
            entries[-1][1].append(line)
        else:
            raise ValueError("a3m text must start with a '>' header line")
    return [(h, "".join(rows)) for h, rows in entries]


def check_a3m(text: str, chain: str, model_sequence: str, record_id: str, chain_id: str) -> str:
    """Validate an a3m for one chain and return it with the query row as openfold3 sees it.

    The query (first) row must be the chain itself (no gaps, no insertions); every
    other row must have one match column (upper case or ``-``) per query residue.
    """
    where = f"chain {chain_id}: MSA"
    try:
        rows = parse_a3m(text)
    except ValueError as exc:
        raise InvalidInputError(f"{where}: {exc}", record=record_id) from None
    if not rows:
        raise InvalidInputError(f"{where} is empty (no '>' records)", record=record_id)
    query = re.sub(r"\s+", "", rows[0][1])
    if query != chain:
        first_diff = next((i for i, (a, b) in enumerate(zip(query, chain)) if a != b), min(len(query), len(chain)))
        raise InvalidInputError(
            f"{where}: the first (query) row does not match the chain sequence "
            f"({len(query)} vs {len(chain)} residues, first difference at position {first_diff + 1}); "
            "the MSA's first sequence must be the chain itself",
            record=record_id,
        )
    for i, (header, row) in enumerate(rows[1:], start=2):
        matches = sum(1 for ch in row if ch.isupper() or ch == "-")
        if matches != len(chain):
            raise InvalidInputError(
                f"{where}: row {i} ({header[:40]!r}) has {matches} match columns, the query has {len(chain)} "
                "residues (a3m: upper case and '-' are match columns, lower case are insertions)",
                record=record_id,
            )
    body = [f">{rows[0][0] or 'query'}", model_sequence]
    for header, row in rows[1:]:
        body += [f">{header}", row]
    return "\n".join(body) + "\n"


@functools.lru_cache(maxsize=1)
def ccd_codes_available() -> frozenset[str]:
    """Codes in the local Chemical Component Dictionary (the one biotite ships).

    Raises:
        InvalidInputError: the dictionary is not on this machine (nothing is downloaded).
    """
    try:
        from biotite.structure.info import all_residues

        return frozenset(all_residues())
    except (ImportError, RuntimeError, OSError) as exc:
        raise InvalidInputError(
            "ligands given as CCD codes need the Chemical Component Dictionary, which is not "
            f"available locally ({exc}); pass the ligand as SMILES instead"
        ) from None


def ccd_heavy_atoms(code: str) -> int:
    from biotite.structure.info import residue

    atoms = residue(code)
    return int((atoms.element != "H").sum())


def _ccd_ligand(code: str, label: str, chain_id: str, record_id: str) -> Ligand:
    code = code.upper()
    if not _CCD_CODE.match(code):
        raise InvalidInputError(f"{label}: {code!r} is not a CCD code (1-5 letters or digits)", record=record_id)
    if code not in ccd_codes_available():
        raise InvalidInputError(
            f"{label}: CCD code {code!r} is not in the local Chemical Component Dictionary", record=record_id
        )
    return Ligand(chain_id, None, code, ccd_heavy_atoms(code))


def _smiles_ligand(smiles: str, label: str, chain_id: str, record_id: str) -> Ligand:
    if "." in smiles:
        raise InvalidInputError(
            f"{label}: SMILES {smiles!r} has several disconnected parts; give each molecule as its own ligand",
            record=record_id,
        )
    try:
        mol = parse_smiles(smiles, record=record_id)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{label}: {exc.reason}", record=record_id) from None
    heavy = mol.GetNumHeavyAtoms()
    if heavy == 0:
        raise InvalidInputError(f"{label}: SMILES {smiles!r} has no heavy atom", record=record_id)
    return Ligand(chain_id, smiles, None, heavy)


def parse_ligand(item: LigandInput, index: int, chain_id: str, record_id: str) -> Ligand:
    """One ligand from ``"SMILES"``, ``"ccd:CODE"``, ``{"smiles": ...}`` or ``{"ccd": ...}``.

    A bare string is a SMILES when RDKit reads it; otherwise, if it looks like a CCD
    code (``ATP``, ``HEM``, ``SO4``) and the local dictionary has it, that component.
    Strings that are both (``CO`` is methanol and cobalt) are SMILES: write
    ``"ccd:CO"`` for the other.
    """
    label = f"ligand {index + 1}"
    if isinstance(item, str):
        text = item.strip()
        if text.lower().startswith("ccd:"):
            return _ccd_ligand(text[4:].strip(), label, chain_id, record_id)
        try:
            return _smiles_ligand(text, label, chain_id, record_id)
        except InvalidInputError as smiles_error:
            if not _CCD_CODE.match(text):
                raise
            try:
                return _ccd_ligand(text, label, chain_id, record_id)
            except InvalidInputError:
                raise InvalidInputError(
                    f"{smiles_error.reason}; nor is {text!r} a code in the local Chemical Component Dictionary",
                    record=record_id,
                ) from None
    if isinstance(item, Mapping):
        keys = set(item) & {"smiles", "ccd", "ccd_code"}
        if len(keys) != 1 or len(item) != 1:
            raise InvalidInputError(
                f"{label}: give exactly one of 'smiles' or 'ccd', got keys {sorted(item)}", record=record_id
            )
        key = keys.pop()
        value = item[key]
        if not isinstance(value, str):
            raise InvalidInputError(f"{label}: {key} must be a string", record=record_id)
        if key == "smiles":
            return _smiles_ligand(value.strip(), label, chain_id, record_id)
        return _ccd_ligand(value.strip(), label, chain_id, record_id)
    raise InvalidInputError(
        f"{label}: a ligand is a SMILES string, 'ccd:CODE' or a mapping, got {type(item).__name__}",
        record=record_id,
    )


def build_request(
    sequence_or_chains: str | Record | Sequence[str],
    *,
    msa: MsaInput = None,
    ligands: LigandInput | Sequence[LigandInput] | None = None,
    max_tokens: int,
    record_id: str | None = None,
) -> FoldRequest:
    """Validate everything about a fold request; nothing here touches the model.

    Raises:
        InvalidInputError: bad residue, empty chain, unparsable SMILES, unknown CCD
            code, an MSA that does not belong to its chain, too many chains or tokens.
    """
    rid = record_id if record_id is not None else (
        sequence_or_chains.id if isinstance(sequence_or_chains, Record) else "0"
    )
    if isinstance(ligands, (str, Mapping)):
        ligands = [ligands]
    ligand_items = list(ligands or [])
    proteins = clean_chains(sequence_or_chains, rid)
    ids = chain_ids(len(proteins) + len(ligand_items), rid)  # ligands are chains of their own, after the proteins
    cleaned = [seq for _, seq in proteins]
    ligs = tuple(parse_ligand(item, j, ids[len(cleaned) + j], rid) for j, item in enumerate(ligand_items))
    tokens = sum(map(len, cleaned)) + sum(lig.heavy_atoms for lig in ligs)
    if tokens > max_tokens:
        raise InvalidInputError(
            f"the complex has {tokens} tokens (residues + ligand heavy atoms), more than the model's "
            f"maximum of {max_tokens}",
            record=rid,
        )

    protein_ids = [cid for cid, _ in proteins]
    msas = msas_per_chain(msa, protein_ids, rid)
    chains = []
    for cid, seq, msa_text in zip(protein_ids, cleaned, msas):
        model_seq = "".join(OPENFOLD_UNKNOWN.get(ch, ch) for ch in seq)
        checked = check_a3m(msa_text, seq, model_seq, rid, cid) if msa_text is not None else None
        chains.append(ProteinChain(cid, seq, model_seq, checked))
    return FoldRequest(rid, tuple(chains), ligs)
