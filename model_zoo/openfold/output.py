"""From openfold3's raw outputs to a `Structure`: texts, per-token confidences, labels.

- mmCIF: openfold3's own writer (atom sites, entities, chem_comp and the ligand
  bonds), pLDDT (0-100) per atom in the B-factor column, as ``run_openfold`` writes it;
- PDB: the shared Biopython writer (`bionemo_lite.structures.to_pdb`); ligand
  residue names longer than PDB's 3 columns are cut as openfold3's PDB writer
  does (``LIG0`` -> ``LIG``; the chain tells ligands apart). When the coordinates
  do not fit PDB columns (random weights can put atoms kilometres away) PDB is
  None and the reason is in ``extra["pdb_error"]``;
- confidences per AlphaFold-3 token (one per residue, one per ligand heavy atom):
  pLDDT of the token's centre atom (CA for amino acids, the atom itself for
  ligands) on 0-100, the PAE matrix in Angstrom, pTM, ipTM.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bionemo_lite.results import Structure
from bionemo_lite.structures import Atom, StructureFormatError, to_pdb

from .inputs import FoldRequest


@dataclass
class Prediction:
    """One diffusion sample, as plain arrays (atoms in the featurised atom array's order)."""

    coords: np.ndarray  # [N_atom, 3]
    atom_plddt: np.ndarray  # [N_atom], 0-100
    pae: np.ndarray  # [N_token, N_token]
    ptm: float
    iptm: float
    ranking_score: float
    chain_ptm: dict[str, float]
    chain_pair_iptm: dict[str, float]
    has_clash: bool


def _scalar(x: Any) -> float:
    return float(np.asarray(x.detach().float().cpu() if hasattr(x, "detach") else x).reshape(-1)[0])


def _chain_names(atom_array: Any) -> dict[int, str]:
    """openfold3 numbers chains 1..n in sorted chain-id order (its writer does the same)."""
    return {i + 1: str(c) for i, c in enumerate(np.unique(atom_array.chain_id))}


def split_samples(confidence: dict[str, Any], positions: Any, atom_array: Any) -> list[Prediction]:
    """Per diffusion sample, from ``get_confidence_scores`` output (batch of one)."""
    names = _chain_names(atom_array)
    pos = positions[0].detach().float().cpu().numpy()  # [S, N_atom, 3]
    plddt = confidence["plddt"][0].detach().float().cpu().numpy()
    pae = confidence["pae"][0].detach().float().cpu().numpy()
    out = []
    for s in range(pos.shape[0]):
        def pick(t: Any) -> float:
            t = t[0] if t.ndim > 1 else t  # [B, S] -> [S]
            return _scalar(t[s] if t.shape[0] > 1 else t[0])

        chain_ptm = {names[int(k)]: pick(v) for k, v in confidence.get("chain_ptm", {}).items()}
        pair_iptm = {}
        for k, v in confidence.get("chain_pair_iptm", {}).items():
            a, b = (names[int(i)] for i in k.strip("()").split(","))
            pair_iptm[f"({a}, {b})"] = pick(v)
        out.append(
            Prediction(
                coords=pos[s],
                atom_plddt=plddt[s] if plddt.shape[0] > 1 else plddt[0],
                pae=pae[s] if pae.shape[0] > 1 else pae[0],
                ptm=pick(confidence["ptm"]),
                iptm=pick(confidence["iptm"]),
                ranking_score=pick(confidence["sample_ranking_score"]),
                chain_ptm=chain_ptm,
                chain_pair_iptm=pair_iptm,
                has_clash=bool(pick(confidence["has_clash"])),
            )
        )
    return out


def token_plddt(atom_array: Any, atom_plddt: np.ndarray) -> np.ndarray:
    """pLDDT of each token's centre atom, in token order."""
    centre = np.asarray(atom_array.token_center_atom, dtype=bool)
    order = np.argsort(np.asarray(atom_array.token_id)[centre], kind="stable")
    return np.asarray(atom_plddt, dtype=np.float32)[centre][order]


def token_labels(atom_array: Any) -> dict[str, list]:
    """Chain id, residue number and residue (or ligand atom) name of each token."""
    centre = np.asarray(atom_array.token_center_atom, dtype=bool)
    order = np.argsort(np.asarray(atom_array.token_id)[centre], kind="stable")
    sub = atom_array[centre][order]
    atomized = np.asarray(sub.is_atomized, dtype=bool) if "is_atomized" in sub.get_annotation_categories() else None
    names = [
        f"{r}:{a}" if atomized is not None and atomized[i] else str(r)
        for i, (r, a) in enumerate(zip(sub.res_name, sub.atom_name))
    ]
    return {
        "token_chain_ids": [str(c) for c in sub.chain_id],
        "token_residue_numbers": [int(r) for r in sub.res_id],
        "token_names": names,
    }


def mmcif_text(atom_array: Any, coords: np.ndarray, atom_plddt: np.ndarray, name: str) -> str:
    """openfold3's mmCIF for one sample (its ``write_structure``, bonds included)."""
    from openfold3.core.data.io.structure.cif import write_structure

    arr = atom_array.copy()
    arr.coord = np.asarray(coords, dtype=np.float32)
    arr.set_annotation("b_factor", np.asarray(atom_plddt, dtype=np.float32))
    # biotite writes _atom_site.occupancy only from this annotation; readers such as
    # Biopython's MMCIFParser require the column.
    arr.set_annotation("occupancy", np.ones(len(arr), dtype=np.float32))
    with tempfile.TemporaryDirectory(prefix="of3-cif-") as tmp, warnings.catch_warnings():
        # openfold3 passes biotite's deprecated include_bonds flag; bonds are written either way.
        warnings.filterwarnings("ignore", message="`include_bonds` parameter is deprecated")
        path = Path(tmp) / "model.cif"
        write_structure(arr, path, data_block=_block_name(name), include_bonds=True)
        return path.read_text()


def pdb_atoms(atom_array: Any, coords: np.ndarray, atom_plddt: np.ndarray) -> list[Atom]:
    """The shared writer's atoms for one sample (ligand names cut to PDB's 3 columns)."""
    from openfold3.core.data.resources.residues import MoleculeType

    ligand = np.asarray(atom_array.molecule_type_id) == MoleculeType.LIGAND
    return [
        Atom(
            chain=str(atom_array.chain_id[i]),
            residue_number=int(atom_array.res_id[i]),
            residue_name=str(atom_array.res_name[i])[:3],
            name=str(atom_array.atom_name[i]),
            element=str(atom_array.element[i]).capitalize(),
            coord=(float(coords[i, 0]), float(coords[i, 1]), float(coords[i, 2])),
            b_factor=float(atom_plddt[i]),
            hetero=bool(ligand[i]),
        )
        for i in range(len(atom_array))
    ]


def to_structure(
    model_name: str, request: FoldRequest, atom_array: Any, best: Prediction, extra: dict[str, Any]
) -> Structure:
    """The `Structure` of the chosen sample."""
    mmcif = mmcif_text(atom_array, best.coords, best.atom_plddt, request.id)
    extra = dict(extra)
    try:
        pdb: str | None = to_pdb(pdb_atoms(atom_array, best.coords, best.atom_plddt), name=request.id)
    except StructureFormatError as exc:
        pdb = None
        extra["pdb_error"] = str(exc)
    n_chains = len(request.chain_ids)
    extra.update(token_labels(atom_array))
    extra.update(
        {
            "num_tokens": int(best.pae.shape[0]),
            "ranking_score": best.ranking_score,
            "has_clash": best.has_clash,
            "chain_ptm": best.chain_ptm,
            "chain_pair_iptm": best.chain_pair_iptm if n_chains > 1 else {},
            "ligands": [
                {"chain": lig.chain_id, "smiles": lig.smiles, "ccd": lig.ccd, "heavy_atoms": lig.heavy_atoms}
                for lig in request.ligands
            ],
        }
    )
    return Structure(
        model=model_name,
        id=request.id,
        sequence=request.sequence,
        pdb=pdb,
        mmcif=mmcif,
        plddt=token_plddt(atom_array, best.atom_plddt),
        ptm=best.ptm,
        iptm=best.iptm if n_chains > 1 else None,
        pae=np.asarray(best.pae, dtype=np.float32),
        chains=request.chain_ids,
        extra=extra,
    )


def _block_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "prediction"
