"""SMILES helpers shared by chemistry models: validation, canonical form, properties.

These parse in the calling process. Untrusted SMILES go through
`bionemo_lite.smiles_guard` (a worker process) instead; both check the raw
text with `bionemo_lite.smiles_text` first.

Every function that reads user input raises `InvalidInputError` naming the
record, so an unparsable SMILES is a per-record error and never a crash.
RDKit's own console warnings are silenced while parsing: the reason goes into
the exception instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from .errors import InvalidInputError
from .records import Inputs, Record, as_records
from .smiles_text import MAX_SMILES_CHARACTERS, check_smiles_text

if TYPE_CHECKING:
    from rdkit.Chem import Mol

MORGAN_RADIUS = 2
MORGAN_BITS = 2048


def parse_smiles(smiles: str, record: str | int | None = None, max_characters: int = MAX_SMILES_CHARACTERS) -> Mol:
    """An RDKit molecule from a SMILES string.

    The text is first held to `bionemo_lite.smiles_text.check_smiles_text` (length cap,
    characters, bracket atoms), so no string reaches RDKit unchecked. This parses in the
    calling process: for untrusted input prefer `bionemo_lite.smiles_guard.parse_many`,
    which survives a crash of RDKit.

    Raises:
        InvalidInputError: empty input, too long, a character no SMILES has, a syntax error (e.g. an unclosed ring
            as in ``C1CC``) or a chemistry problem (valence, kekulization),
            with RDKit's reason, naming `record`.
    """
    from rdkit import Chem, rdBase

    text = check_smiles_text(smiles, record, max_characters=max_characters)  # bounded and well-formed before RDKit sees it
    with rdBase.BlockLogs():
        raw = Chem.MolFromSmiles(text, sanitize=False)
        if raw is None:
            raise InvalidInputError(
                f"SMILES {text!r} cannot be parsed (syntax error: unclosed ring, unbalanced "
                "parentheses or an unknown atom)",
                record=record,
            )
        problems = Chem.DetectChemistryProblems(raw)
        if problems:
            reasons = "; ".join(p.Message().strip() for p in problems)
            raise InvalidInputError(f"SMILES {text!r} is not a valid molecule: {reasons}", record=record)
        mol = Chem.MolFromSmiles(text)
    if mol is None:  # sanitization failed for a reason DetectChemistryProblems did not report
        raise InvalidInputError(f"SMILES {text!r} is not a valid molecule (RDKit sanitization failed)", record=record)
    if mol.GetNumAtoms() == 0:
        raise InvalidInputError(f"SMILES {text!r} has no atoms", record=record)
    return mol


def canonical_smiles(smiles: str, record: str | int | None = None) -> str:
    """RDKit's canonical SMILES (isomeric) of `smiles`; raises like `parse_smiles`."""
    from rdkit import Chem

    return Chem.MolToSmiles(parse_smiles(smiles, record))


def try_canonical(smiles: str) -> str | None:
    """The canonical SMILES, or None when `smiles` is not a valid molecule (no exception)."""
    try:
        return canonical_smiles(smiles)
    except InvalidInputError:
        return None


def is_valid_smiles(smiles: str) -> bool:
    return try_canonical(smiles) is not None


def prepare_smiles(inputs: Inputs, canonicalize: bool = True) -> list[Record]:
    """`as_records` + validation (+ canonicalisation) of every record.

    Raises:
        InvalidInputError: for the first record that is not a valid molecule.
    """
    records = as_records(inputs)
    out: list[Record] = []
    for r in records:
        canon = canonical_smiles(r.sequence, record=r.id)
        out.append(replace(r, sequence=canon if canonicalize else r.sequence.strip()))
    return out


def split_valid(inputs: Inputs, canonicalize: bool = True) -> tuple[list[Record], list[tuple[Record, str]]]:
    """Like `prepare_smiles` but never raises for a bad molecule.

    Returns:
        The valid records (canonical when asked) and ``(record, reason)`` for the others.
    """
    good: list[Record] = []
    bad: list[tuple[Record, str]] = []
    for r in as_records(inputs):
        try:
            canon = canonical_smiles(r.sequence, record=r.id)
        except InvalidInputError as exc:
            bad.append((r, exc.reason))
            continue
        good.append(replace(r, sequence=canon if canonicalize else r.sequence.strip()))
    return good, bad


def qed(mol: Mol) -> float:
    """Quantitative estimate of drug-likeness (Bickerton et al. 2012), 0-1."""
    from rdkit.Chem import QED

    return float(QED.qed(mol))


def logp(mol: Mol) -> float:
    """Wildman-Crippen logP."""
    from rdkit.Chem import Crippen

    return float(Crippen.MolLogP(mol))


def morgan_fingerprint(mol: Mol, radius: int = MORGAN_RADIUS, n_bits: int = MORGAN_BITS):
    """Morgan (ECFP4-like for radius 2) bit-vector fingerprint."""
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits).GetFingerprint(mol)


def tanimoto(a: Mol, b: Mol, radius: int = MORGAN_RADIUS, n_bits: int = MORGAN_BITS) -> float:
    """Tanimoto similarity of the Morgan fingerprints of two molecules, 0-1."""
    from rdkit import DataStructs

    return float(
        DataStructs.TanimotoSimilarity(morgan_fingerprint(a, radius, n_bits), morgan_fingerprint(b, radius, n_bits))
    )


def tanimoto_to(
    reference: Mol, others: Sequence[Mol], radius: int = MORGAN_RADIUS, n_bits: int = MORGAN_BITS
) -> list[float]:
    """Tanimoto similarity of each of `others` to `reference` (one fingerprint of the reference)."""
    from rdkit import DataStructs

    ref = morgan_fingerprint(reference, radius, n_bits)
    fps = [morgan_fingerprint(m, radius, n_bits) for m in others]
    return [float(x) for x in DataStructs.BulkTanimotoSimilarity(ref, fps)] if fps else []


def properties(mols: Sequence[Mol], reference: Mol | None = None) -> dict[str, list[float]]:
    """QED, logP and (with a reference) Tanimoto similarity for each molecule."""
    out: dict[str, list[float]] = {"qed": [qed(m) for m in mols], "logp": [logp(m) for m in mols]}
    if reference is not None:
        out["tanimoto"] = tanimoto_to(reference, mols)
    return out


def depict_svg(mol: Mol, width: int = 240, height: int = 180) -> str:
    """A 2-D drawing of `mol` as SVG text (RDKit's coordinates and drawer), for grids of molecules."""
    from rdkit.Chem.Draw import rdMolDraw2D

    drawer = rdMolDraw2D.MolDraw2DSVG(width, height)
    drawer.drawOptions().clearBackground = False  # the page's background shows through
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
    drawer.FinishDrawing()
    return drawer.GetDrawingText()
