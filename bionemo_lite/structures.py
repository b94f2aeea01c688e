"""Structure text (PDB and mmCIF) from predicted coordinates, shared by the folding plugins.

Folding models hand over either AlphaFold-style atom37 arrays or an explicit
list of `Atom`s (ligands, non-standard residues); this module turns them into
PDB and mmCIF text with Biopython's writers, confidence (pLDDT, 0-100) in the
B-factor column. The API is deliberately small:

- `atoms_from_atom37(positions, mask, sequence, chain_ids=..., residue_numbers=..., b_factors=...)`
  -> ``list[Atom]`` (per-residue or per-atom B-factors; ``X`` residues become ``UNK``).
- `to_pdb(atoms)` / `to_mmcif(atoms)` -> text. `to_pdb` raises
  `StructureFormatError` (a `BionemoLiteError`) when the structure does not fit
  PDB's fixed columns: coordinates outside -999.999..9999.999, more than
  99,999 atoms, chain ids other than one character of A-Z a-z 0-9, residue
  numbers outside -999..9999, names too long. mmCIF has none of these limits.
- `render(atoms)` -> `StructureText` with both texts, ``pdb=None`` and the
  reason in ``pdb_error`` when only mmCIF can hold the structure.
- `chain_id(i)`: the i-th chain id (``A``..``Z``, ``a``..``z``, ``0``..``9``,
  then two letters, which only mmCIF can carry).
- `parse_structure(text, fmt)`: read PDB or mmCIF text back into a Biopython
  structure (for checks and tests).
- `read_atoms(text, fmt)`: the atoms of the first model of PDB or mmCIF text, as `Atom`s
  (what `bionemo_lite.relax` starts from).

Non-finite coordinates (NaN/inf, e.g. from an fp16 overflow) are refused by
both writers: no format can carry them and a silently broken file is worse
than a clear error.
"""

from __future__ import annotations

import io
import math
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import BionemoLiteError

__all__ = [
    "ATOM37_NAMES",
    "Atom",
    "RESTYPES",
    "StructureFormatError",
    "StructureText",
    "ONE_TO_THREE",
    "atoms_from_atom37",
    "chain_id",
    "parse_structure",
    "read_atoms",
    "render",
    "to_mmcif",
    "to_pdb",
]

RESTYPES = "ARNDCQEGHILKMFPSTWYV"
"""The 20 standard residues in AlphaFold order (index 20 is ``X``/unknown)."""

ATOM37_NAMES: tuple[str, ...] = (
    "N", "CA", "C", "CB", "O", "CG", "CG1", "CG2", "OG", "OG1", "SG", "CD", "CD1", "CD2", "ND1", "ND2",
    "OD1", "OD2", "SD", "CE", "CE1", "CE2", "CE3", "NE", "NE1", "NE2", "OE1", "OE2", "CH2", "NH1", "NH2",
    "OH", "CZ", "CZ2", "CZ3", "NZ", "OXT",
)
"""AlphaFold's atom37 order; the element of each is its first letter."""

ONE_TO_THREE: dict[str, str] = {
    "A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS", "Q": "GLN", "E": "GLU", "G": "GLY",
    "H": "HIS", "I": "ILE", "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE", "P": "PRO", "S": "SER",
    "T": "THR", "W": "TRP", "Y": "TYR", "V": "VAL", "X": "UNK",
}

PDB_CHAIN_IDS = string.ascii_uppercase + string.ascii_lowercase + string.digits
PDB_MAX_SERIAL = 99999
# PDB's x/y/z fields are %8.3f: anything that rounds outside this range widens the column.
PDB_COORD_MIN, PDB_COORD_MAX = -999.9995, 9999.9995
PDB_RESSEQ_MIN, PDB_RESSEQ_MAX = -999, 9999
PDB_BFACTOR_MIN, PDB_BFACTOR_MAX = -99.995, 999.995

Format = Literal["pdb", "mmcif"]


class StructureFormatError(BionemoLiteError):
    """A structure cannot be written in the requested format (the message says why and what to use)."""

    def __init__(self, message: str, fmt: Format = "pdb"):
        self.fmt = fmt
        super().__init__(message)


@dataclass(frozen=True)
class Atom:
    """One atom to write.

    Attributes:
        chain: chain id (one character for PDB; longer ids need mmCIF).
        residue_number: author residue number.
        residue_name: three-letter residue name or CCD code (``"ALA"``, ``"ATP"``).
        name: atom name, unique within its residue (``"CA"``, ``"C1"``).
        element: element symbol (``"C"``, ``"Cl"``).
        coord: x, y, z in Angstrom.
        b_factor: the B-factor column; folding models put pLDDT (0-100) here.
        hetero: True for ligand atoms (written as HETATM).
        occupancy: occupancy column.
    """

    chain: str
    residue_number: int
    residue_name: str
    name: str
    element: str
    coord: tuple[float, float, float]
    b_factor: float = 0.0
    hetero: bool = False
    occupancy: float = 1.0


@dataclass(frozen=True)
class StructureText:
    """Both text forms of one structure; `pdb` is None when PDB cannot hold it (see `pdb_error`)."""

    pdb: str | None
    mmcif: str
    pdb_error: str | None = None


def chain_id(index: int) -> str:
    """The chain id of the ``index``-th chain (0-based): A..Z, a..z, 0..9, then AA, AB, ...

    The first 62 fit PDB's one-character column; later ones are mmCIF-only.
    """
    if index < 0:
        raise ValueError(f"chain index must be >= 0, got {index}")
    if index < len(PDB_CHAIN_IDS):
        return PDB_CHAIN_IDS[index]
    n = index - len(PDB_CHAIN_IDS)
    letters = string.ascii_uppercase
    width = 2
    while n >= len(letters) ** width:
        n -= len(letters) ** width
        width += 1
    out = ""
    for _ in range(width):
        n, rem = divmod(n, len(letters))
        out = letters[rem] + out
    return out


def atoms_from_atom37(
    positions: np.ndarray,
    mask: np.ndarray,
    sequence: str,
    *,
    chain_ids: Sequence[str] | None = None,
    residue_numbers: Sequence[int] | None = None,
    b_factors: np.ndarray | None = None,
) -> list[Atom]:
    """Atoms from AlphaFold-style atom37 arrays.

    Args:
        positions: ``[L, 37, 3]`` coordinates in Angstrom, atom order `ATOM37_NAMES`.
        mask: ``[L, 37]``; atoms with a value > 0.5 are written.
        sequence: ``L`` one-letter residues (anything outside the 20 is written as ``UNK``).
        chain_ids: ``L`` chain ids (default all ``"A"``).
        residue_numbers: ``L`` residue numbers (default 1..L).
        b_factors: ``[L]`` (one value per residue) or ``[L, 37]`` (per atom); default 0.
    """
    positions = np.asarray(positions, dtype=np.float64)
    mask = np.asarray(mask)
    n = len(sequence)
    if positions.shape != (n, 37, 3) or mask.shape != (n, 37):
        raise ValueError(
            f"expected positions [L, 37, 3] and mask [L, 37] for L={n}, got {positions.shape} and {mask.shape}"
        )
    chains = list(chain_ids) if chain_ids is not None else ["A"] * n
    numbers = list(residue_numbers) if residue_numbers is not None else list(range(1, n + 1))
    if len(chains) != n or len(numbers) != n:
        raise ValueError("chain_ids and residue_numbers need one entry per residue")
    if b_factors is None:
        bf = np.zeros((n, 37))
    else:
        bf = np.asarray(b_factors, dtype=np.float64)
        if bf.shape == (n,):
            bf = np.repeat(bf[:, None], 37, axis=1)
        elif bf.shape != (n, 37):
            raise ValueError(f"b_factors must be [L] or [L, 37], got {bf.shape}")
    atoms: list[Atom] = []
    for i, aa in enumerate(sequence):
        resname = ONE_TO_THREE.get(aa, "UNK")
        for j in np.flatnonzero(mask[i] > 0.5):
            name = ATOM37_NAMES[j]
            x, y, z = positions[i, j]
            atoms.append(Atom(chains[i], int(numbers[i]), resname, name, name[0], (float(x), float(y), float(z)),
                              float(bf[i, j])))
    return atoms


def _check_finite(atoms: Sequence[Atom], fmt: Format) -> None:
    for a in atoms:
        if not all(math.isfinite(c) for c in a.coord):
            raise StructureFormatError(
                f"atom {a.name} of residue {a.residue_name} {a.residue_number} (chain {a.chain}) has non-finite "
                f"coordinates {a.coord}; the model output is broken (in half precision this is usually an "
                "overflow: run in float32 or bfloat16)",
                fmt,
            )


def check_pdb_limits(atoms: Sequence[Atom]) -> None:
    """Raise `StructureFormatError` if any atom does not fit PDB's fixed-width columns."""
    hint = "; write mmCIF instead (format='mmcif' / --format cif), which has no such limit"
    _check_finite(atoms, "pdb")
    chains = list(dict.fromkeys(a.chain for a in atoms))
    # TER records take serial numbers too.
    if len(atoms) + len(chains) > PDB_MAX_SERIAL:
        raise StructureFormatError(
            f"{len(atoms)} atoms in {len(chains)} chains exceed the PDB format's {PDB_MAX_SERIAL} serial numbers{hint}"
        )
    for c in chains:
        if len(c) != 1 or c not in PDB_CHAIN_IDS:
            raise StructureFormatError(
                f"chain id {c!r} does not fit PDB's one-character chain column "
                f"({len(chains)} chains; PDB holds at most {len(PDB_CHAIN_IDS)}){hint}"
            )
    for a in atoms:
        x, y, z = a.coord
        if not all(PDB_COORD_MIN < v < PDB_COORD_MAX for v in (x, y, z)):
            raise StructureFormatError(
                f"atom {a.name} of residue {a.residue_name} {a.residue_number} (chain {a.chain}) is at "
                f"({x:.3f}, {y:.3f}, {z:.3f}): PDB coordinate columns hold -999.999 to 9999.999 Angstrom{hint}"
            )
        if not PDB_RESSEQ_MIN <= a.residue_number <= PDB_RESSEQ_MAX:
            raise StructureFormatError(
                f"residue number {a.residue_number} (chain {a.chain}) is outside PDB's -999..9999{hint}"
            )
        if len(a.residue_name) > 3 or len(a.name) > 4 or len(a.element) > 2:
            raise StructureFormatError(
                f"residue {a.residue_name!r} / atom {a.name!r} / element {a.element!r} is longer than PDB's "
                f"3 / 4 / 2 character columns{hint}"
            )
        if not PDB_BFACTOR_MIN < a.b_factor < PDB_BFACTOR_MAX:
            raise StructureFormatError(f"B-factor {a.b_factor} does not fit PDB's %6.2f column{hint}")


def build_structure(atoms: Iterable[Atom], name: str = "prediction"):
    """A Biopython ``Structure`` (one model) holding `atoms`, chains and residues in input order."""
    from Bio.PDB.Atom import Atom as BioAtom
    from Bio.PDB.Chain import Chain
    from Bio.PDB.Model import Model
    from Bio.PDB.Residue import Residue
    from Bio.PDB.Structure import Structure as BioStructure

    structure = BioStructure(name)
    model = Model(0)
    structure.add(model)
    serial = 0
    for a in atoms:
        if a.chain not in model:
            model.add(Chain(a.chain))
        chain = model[a.chain]
        het = f"H_{a.residue_name}" if a.hetero else " "
        rid = (het, int(a.residue_number), " ")
        if rid not in chain:
            chain.add(Residue(rid, a.residue_name, " "))
        residue = chain[rid]
        if a.name in residue:
            raise ValueError(
                f"duplicate atom {a.name!r} in residue {a.residue_name} {a.residue_number} chain {a.chain}"
            )
        serial += 1
        # PDBIO aligns the name column itself (one-letter elements get a leading space).
        residue.add(
            BioAtom(a.name, np.asarray(a.coord, dtype=np.float64), a.b_factor, a.occupancy, " ", a.name,
                    serial, element=a.element.upper())
        )
    return structure


def to_pdb(atoms: Sequence[Atom], name: str = "prediction") -> str:
    """PDB text of `atoms`.

    Raises:
        StructureFormatError: the structure does not fit PDB's fixed columns (the
            message names the atom or chain and points to mmCIF).
    """
    from Bio.PDB import PDBIO

    atoms = list(atoms)
    check_pdb_limits(atoms)
    io_ = PDBIO()
    io_.set_structure(build_structure(atoms, name))
    buf = io.StringIO()
    io_.save(buf)
    return buf.getvalue()


def to_mmcif(atoms: Sequence[Atom], name: str = "prediction") -> str:
    """mmCIF text of `atoms` (no column limits; refuses only non-finite coordinates)."""
    from Bio.PDB.mmcifio import MMCIFIO

    atoms = list(atoms)
    _check_finite(atoms, "mmcif")
    io_ = MMCIFIO()
    io_.set_structure(build_structure(atoms, _data_block_name(name)))
    buf = io.StringIO()
    io_.save(buf)
    return buf.getvalue()


def render(atoms: Sequence[Atom], name: str = "prediction") -> StructureText:
    """Both texts; PDB is None (with the reason) when only mmCIF can hold the structure.

    Raises:
        StructureFormatError: coordinates are not finite (no format can hold them).
    """
    atoms = list(atoms)
    mmcif = to_mmcif(atoms, name)
    try:
        return StructureText(to_pdb(atoms, name), mmcif)
    except StructureFormatError as exc:
        return StructureText(None, mmcif, str(exc))


def parse_structure(text: str, fmt: Format = "pdb", name: str = "structure"):
    """Read PDB or mmCIF text into a Biopython ``Structure`` (strict parsers: malformed text raises)."""
    from Bio.PDB import MMCIFParser, PDBParser

    handle = io.StringIO(text)
    if fmt == "pdb":
        return PDBParser(PERMISSIVE=False, QUIET=True).get_structure(name, handle)
    if fmt == "mmcif":
        return MMCIFParser(QUIET=True).get_structure(name, handle)
    raise ValueError(f"format must be 'pdb' or 'mmcif', got {fmt!r}")


def read_atoms(text: str, fmt: Format = "pdb") -> list[Atom]:
    """The atoms of the first model of PDB or mmCIF text, in file order (the inverse of `to_pdb` / `to_mmcif`)."""
    model = next(iter(parse_structure(text, fmt)), None)
    if model is None:
        return []
    atoms = []
    for chain in model:
        for residue in chain:
            het, number, _ = residue.id
            for atom in residue:
                x, y, z = (float(v) for v in atom.coord)
                atoms.append(Atom(chain.id, int(number), residue.get_resname(), atom.get_name(),
                                  atom.element.capitalize(), (x, y, z), float(atom.get_bfactor()),
                                  hetero=het.strip() != "", occupancy=float(atom.get_occupancy() or 1.0)))
    return atoms


def _data_block_name(name: str) -> str:
    # mmCIF data block names cannot hold whitespace.
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return cleaned or "prediction"
