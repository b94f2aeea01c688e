"""PDB / mmCIF writing in `bionemo_lite.structures`, read back with Biopython's parsers."""

from __future__ import annotations

import numpy as np
import pytest

from bionemo_lite.errors import BionemoLiteError
from bionemo_lite.structures import (
    ATOM37_NAMES,
    ONE_TO_THREE,
    RESTYPES,
    Atom,
    StructureFormatError,
    atoms_from_atom37,
    chain_id,
    parse_structure,
    render,
    to_mmcif,
    to_pdb,
)


def _atom37_example(seed: int = 0, scale: float = 15.0):
    rng = np.random.default_rng(seed)
    sequence = "MKXGW"
    positions = rng.normal(size=(len(sequence), 37, 3)) * scale
    mask = np.zeros((len(sequence), 37), dtype=bool)
    mask[:, :5] = True  # N CA C CB O
    mask[2, :] = False
    mask[2, 1] = True  # the unknown residue: CA only
    mask[3, 3] = False  # glycine has no CB
    mask[4, [5, 12, 13, 20, 21, 22, 24, 28, 33, 34]] = True  # some tryptophan side chain
    b_atoms = rng.uniform(0, 100, size=(len(sequence), 37))
    return sequence, positions, mask, b_atoms


def _atoms_by_key(structure):
    out = {}
    for atom in structure.get_atoms():
        residue = atom.get_parent()
        out[(residue.get_parent().id, residue.id[1], atom.get_id())] = (residue.resname, atom)
    return out


@pytest.mark.parametrize("fmt", ["pdb", "mmcif"])
def test_atom37_round_trip(fmt):
    sequence, positions, mask, b_atoms = _atom37_example()
    chains = ["A", "A", "A", "B", "B"]
    numbers = [1, 2, 3, 1, 2]
    atoms = atoms_from_atom37(positions, mask, sequence, chain_ids=chains, residue_numbers=numbers, b_factors=b_atoms)
    assert len(atoms) == int(mask.sum())
    text = to_pdb(atoms) if fmt == "pdb" else to_mmcif(atoms)
    parsed = _atoms_by_key(parse_structure(text, fmt))
    assert len(parsed) == len(atoms)
    for i, aa in enumerate(sequence):
        for j in np.flatnonzero(mask[i]):
            resname, atom = parsed[(chains[i], numbers[i], ATOM37_NAMES[j])]
            assert resname == ONE_TO_THREE[aa]
            np.testing.assert_allclose(atom.coord, positions[i, j], atol=5.01e-4)
            assert atom.bfactor == pytest.approx(b_atoms[i, j], abs=5.01e-3)
            assert atom.element == ATOM37_NAMES[j][0]
    # Masked-out atoms are absent (e.g. the glycine CB, all but CA of the unknown residue).
    assert ("B", 1, "CB") not in parsed
    assert {k[2] for k in parsed if k[:2] == ("A", 3)} == {"CA"}


def test_per_residue_b_factors_fill_every_atom():
    sequence, positions, mask, _ = _atom37_example()
    plddt = np.array([10.0, 20.5, 30.25, 99.99, 0.0])
    text = to_pdb(atoms_from_atom37(positions, mask, sequence, b_factors=plddt))
    for atom in parse_structure(text).get_atoms():
        assert atom.bfactor == pytest.approx(plddt[atom.get_parent().id[1] - 1], abs=5e-3)


def test_pdb_columns_are_fixed_width():
    sequence, positions, mask, b_atoms = _atom37_example()
    text = to_pdb(atoms_from_atom37(positions, mask, sequence, b_factors=b_atoms))
    atom_lines = [line for line in text.splitlines() if line.startswith("ATOM")]
    assert atom_lines and all(len(line) == 80 for line in atom_lines)
    assert atom_lines[0][12:16] == " N  "  # one-letter elements are indented one column


@pytest.mark.parametrize("bad", [10000.0, -1000.0, 123456.789])
def test_coordinates_outside_pdb_columns_need_mmcif(bad):
    atoms = [Atom("A", 1, "ALA", "N", "N", (1.0, 2.0, 3.0), 50.0),
             Atom("A", 1, "ALA", "CA", "C", (bad, 0.0, 1.5), 60.0)]
    with pytest.raises(StructureFormatError) as err:
        to_pdb(atoms)
    assert isinstance(err.value, BionemoLiteError)
    message = str(err.value)
    assert "mmCIF" in message and "CA" in message and "-999.999 to 9999.999" in message
    cif = to_mmcif(atoms)
    ca = _atoms_by_key(parse_structure(cif, "mmcif"))[("A", 1, "CA")][1]
    assert ca.coord[0] == pytest.approx(bad, abs=1e-3)
    text = render(atoms)
    assert text.pdb is None and text.pdb_error == message and text.mmcif == cif


def test_coordinates_at_the_pdb_limits_still_fit():
    atoms = [Atom("A", 1, "ALA", "CA", "C", (9999.999, -999.999, 0.0), 50.0)]
    parsed = _atoms_by_key(parse_structure(to_pdb(atoms)))
    np.testing.assert_allclose(parsed[("A", 1, "CA")][1].coord, [9999.999, -999.999, 0.0], atol=1e-3)


def test_too_many_atoms_for_pdb():
    atoms = [Atom("A", i // 5 % 9000 + 1, "ALA", f"C{i % 5}", "C", (0.0, 0.0, 0.0)) for i in range(100_000)]
    with pytest.raises(StructureFormatError, match=r"100000 atoms .* 99999 .*mmCIF"):
        to_pdb(atoms)


def test_too_many_chains_for_pdb_but_fine_in_mmcif():
    ids = [chain_id(i) for i in range(64)]
    assert ids[:3] == ["A", "B", "C"] and ids[61] == "9" and ids[62:] == ["AA", "AB"]
    atoms = [Atom(c, 1, "GLY", "CA", "C", (float(i), 0.0, 0.0), 70.0) for i, c in enumerate(ids)]
    with pytest.raises(StructureFormatError, match=r"chain id 'AA' .*64 chains.*mmCIF"):
        to_pdb(atoms)
    parsed = parse_structure(to_mmcif(atoms), "mmcif")
    assert [c.id for c in parsed[0]] == ids


def test_chain_ids_are_unique():
    ids = [chain_id(i) for i in range(62 + 26 * 26 + 30)]
    assert len(set(ids)) == len(ids)
    assert all(len(c) == 1 for c in ids[:62]) and all(len(c) == 2 for c in ids[62:62 + 676])
    assert all(len(c) == 3 for c in ids[62 + 676:])


def test_residue_numbers_outside_pdb_range():
    atoms = [Atom("A", 10000, "ALA", "CA", "C", (0.0, 0.0, 0.0))]
    with pytest.raises(StructureFormatError, match="residue number 10000"):
        to_pdb(atoms)
    assert _atoms_by_key(parse_structure(to_mmcif(atoms), "mmcif"))[("A", 10000, "CA")]


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_coordinates_are_refused_by_both_writers(value):
    atoms = [Atom("A", 1, "ALA", "CA", "C", (0.0, value, 0.0))]
    for writer in (to_pdb, to_mmcif, render):
        with pytest.raises(StructureFormatError, match="non-finite"):
            writer(atoms)


def test_ligand_atoms_are_hetatm():
    atoms = [
        Atom("A", 1, "GLY", "CA", "C", (0.0, 0.0, 0.0), 80.0),
        Atom("B", 1, "LIG", "C1", "C", (1.5, 0.0, 0.0), 70.0, hetero=True),
        Atom("B", 1, "LIG", "CL1", "Cl", (3.0, 0.0, 0.0), 70.0, hetero=True),
    ]
    text = to_pdb(atoms)
    assert sum(line.startswith("HETATM") for line in text.splitlines()) == 2
    for fmt, body in (("pdb", text), ("mmcif", to_mmcif(atoms))):
        ligand = [r for r in parse_structure(body, fmt).get_residues() if r.resname == "LIG"]
        assert len(ligand) == 1 and ligand[0].id[0].startswith("H_")
        assert sorted(a.element for a in ligand[0]) == ["C", "CL"]


def test_mmcif_data_block_name_has_no_whitespace():
    cif = to_mmcif([Atom("A", 1, "ALA", "CA", "C", (0.0, 0.0, 0.0))], name="my protein 1")
    assert cif.splitlines()[0] == "data_my_protein_1"


def test_bad_shapes_are_rejected():
    sequence, positions, mask, _ = _atom37_example()
    with pytest.raises(ValueError, match="37"):
        atoms_from_atom37(positions[:, :14], mask, sequence)
    with pytest.raises(ValueError, match="b_factors"):
        atoms_from_atom37(positions, mask, sequence, b_factors=np.zeros(3))


def test_constants_match_alphafold_tables():
    rc = pytest.importorskip("transformers.models.esm.openfold_utils.residue_constants")
    assert tuple(rc.atom_types) == ATOM37_NAMES
    assert "".join(rc.restypes) == RESTYPES
    assert {aa: rc.restype_1to3[aa] for aa in RESTYPES} == {aa: ONE_TO_THREE[aa] for aa in RESTYPES}
