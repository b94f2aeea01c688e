"""AMBER relaxation of predicted protein structures, as openfold's ``amber_relax`` does it.

`relax_structure(structure)` returns the `Structure` with `Structure.relaxed` set: the raw
prediction's missing heavy atoms and its hydrogens are added by PDBFixer, then OpenMM
minimises the AMBER ff14SB energy (``amber14-all.xml``, no solvent, no cutoff, bonds to
hydrogen constrained) with harmonic restraints that hold every heavy atom to where the model
put it (10 kcal/mol/A^2), L-BFGS to convergence (openfold's tolerance, no iteration cap).
openfold's outer loop follows: while heavy atoms still clash, the clashing residues lose their
restraints, the others are restrained to where the last round left them, and it minimises
again (at most `MAX_OUTER_ITERATIONS` rounds). openfold decides with its full violation check
(bonds, angles, clashes); here only clashes decide, the part a minimisation is there to fix.

A clash (`count_clashes`) is two heavy atoms of different residues closer than the sum of
their van der Waals radii minus 1.5 A (openfold's ``clash_overlap_tolerance``), bonded pairs
(the peptide bond, disulfides) excluded.

OpenMM and PDBFixer come with the ``[relax]`` extra and are imported only here, only when
asked; without them `relax_structure` raises `RelaxUnavailableError`. OpenMM's ``CPU``
platform runs it unless ``platform`` (or ``BIONEMO_LITE_RELAX_PLATFORM``) names another,
``"auto"`` taking OpenMM's fastest (``CUDA`` on a GPU machine). Relaxing is reproducible: the
same prediction gives the same relaxed structure (deterministic force sums, one CPU thread
unless ``OPENMM_CPU_THREADS`` says otherwise, PDBFixer's random placements seeded).
"""

from __future__ import annotations

import functools
import io
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .errors import RelaxError, RelaxUnavailableError
from .results import Relaxation, Structure
from .structures import ONE_TO_THREE, Atom, StructureFormatError, read_atoms, render, to_mmcif, to_pdb

__all__ = ["CLASH_OVERLAP", "MAX_OUTER_ITERATIONS", "STIFFNESS", "TOLERANCE", "check_available", "count_clashes",
           "fold_and_relax", "relax_structure"]

STIFFNESS = 10.0
"""Heavy-atom restraint spring constant, kcal/mol/A^2 (openfold's ``stiffness``)."""
TOLERANCE = 2.39
"""openfold's ``tolerance``, 2.39 kcal/mol: OpenMM reads its number in kJ/mol, 10, and OpenMM 8 takes that as
the root-mean-square force (kJ/mol/nm) at which L-BFGS stops, its default. We pass the same 10 kJ/mol/nm."""
MAX_ITERATIONS = 0
"""L-BFGS steps per minimisation; 0 runs to convergence (openfold's ``max_iterations``)."""
MAX_OUTER_ITERATIONS = 20
"""Restrained minimisations at most (openfold's ``max_outer_iterations``)."""
CLASH_OVERLAP = 1.5
"""Heavy atoms clash when closer than their van der Waals radii's sum minus this, A."""
VDW_RADII = {"C": 1.7, "N": 1.55, "O": 1.52, "S": 1.8}
"""Bondi radii (A) of the heavy elements of the 20 amino acids, as openfold uses."""
PLATFORM_ENV = "BIONEMO_LITE_RELAX_PLATFORM"
INSTALL_HINT = "relax needs OpenMM and PDBFixer: pip install 'bionemo-lite[relax]'"

_STANDARD_RESIDUES = frozenset(ONE_TO_THREE.values()) - {"UNK"}
_KCAL = 4.184  # kJ per kcal
_HYDROGEN = {"H", "D"}


def _openmm() -> tuple[Any, Any, Any]:
    """``(openmm, openmm.app, pdbfixer.PDBFixer)``, or the install hint."""
    try:
        import openmm
        import openmm.unit
        from openmm import app
        from pdbfixer import PDBFixer
    except ImportError as exc:
        raise RelaxUnavailableError(f"{INSTALL_HINT} ({exc})") from exc
    return openmm, app, PDBFixer


def check_available() -> None:
    """Raise `RelaxUnavailableError` (with the install hint) unless OpenMM and PDBFixer import."""
    _openmm()


def fold_and_relax(fold: Callable[[], Structure], relax: bool) -> Structure:
    """``fold()``, relaxed when `relax`: what every ``fold(..., relax=...)`` does. A missing extra fails
    before the (slow) fold."""
    if not relax:
        return fold()
    check_available()
    return relax_structure(fold())


def count_clashes(atoms: Sequence[Atom], overlap: float = CLASH_OVERLAP) -> tuple[int, set[tuple[str, int]]]:
    """Clashing heavy-atom pairs, and the ``(chain, residue number)`` of the residues in them.

    A pair clashes when its atoms are in different residues and closer than the sum of their van
    der Waals radii (`VDW_RADII`, 1.8 A for other elements) minus `overlap`; the peptide bond
    (C of residue n to N of n + 1 in the same chain) and disulfides (SG to SG) are bonds, not clashes.
    """
    from Bio.PDB.kdtrees import KDTree

    heavy = [a for a in atoms if a.element.upper() not in _HYDROGEN]
    if len(heavy) < 2:
        return 0, set()
    radii = np.array([VDW_RADII.get(a.element.upper(), 1.8) for a in heavy])
    tree = KDTree(np.array([a.coord for a in heavy], dtype=np.float64), 10)
    count, residues = 0, set()
    for pair in tree.neighbor_search(float(2 * radii.max() - overlap)):
        a, b = heavy[pair.index1], heavy[pair.index2]
        if (a.chain, a.residue_number) == (b.chain, b.residue_number) or _bonded(a, b):
            continue
        if pair.radius < radii[pair.index1] + radii[pair.index2] - overlap:
            count += 1
            residues.update({(a.chain, a.residue_number), (b.chain, b.residue_number)})
    return count, residues


def _bonded(a: Atom, b: Atom) -> bool:
    if a.name == b.name == "SG":
        return True
    first, second = (a, b) if a.residue_number < b.residue_number else (b, a)
    return (first.chain == second.chain and second.residue_number == first.residue_number + 1
            and (first.name, second.name) == ("C", "N"))


def _check_protein(atoms: Sequence[Atom], record: str) -> None:
    for a in atoms:
        if a.hetero or a.residue_name not in _STANDARD_RESIDUES:
            raise RelaxError(
                f"cannot relax residue {a.residue_name} {a.residue_number} of chain {a.chain}: AMBER relaxation "
                "handles protein chains of the 20 standard amino acids only (no ligands, no unknown residues)",
                record=record,
            )


@functools.cache
def _force_field() -> Any:
    """AMBER ff14SB, parsed once per process (a second of XML)."""
    from openmm import app

    return app.ForceField("amber14-all.xml")


def _platform(openmm: Any, name: str | None) -> Any:
    """The OpenMM platform to run on, its force sums made deterministic."""
    name = name or os.environ.get(PLATFORM_ENV) or "CPU"
    if name.lower() == "auto":
        best = max(range(openmm.Platform.getNumPlatforms()),
                   key=lambda i: openmm.Platform.getPlatform(i).getSpeed())
        platform = openmm.Platform.getPlatform(best)
    else:
        try:
            platform = openmm.Platform.getPlatformByName(name)
        except Exception as exc:  # OpenMMException: the platform is not there
            names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
            raise RelaxUnavailableError(f"OpenMM platform {name!r} is not available here; available: "
                                        f"{', '.join(names)} (or 'auto')") from exc
    # The same prediction must relax to the same structure: from overlapping atoms the minimisers (ours and
    # PDBFixer's) are chaotic, and thread-order rounding alone moved atoms by Angstroms. Platform defaults,
    # so PDBFixer's own contexts get them too; OPENMM_CPU_THREADS=N buys speed with that reproducibility.
    names = platform.getPropertyNames()
    if "DeterministicForces" in names:
        platform.setPropertyDefaultValue("DeterministicForces", "true")
    if "Threads" in names and not os.environ.get("OPENMM_CPU_THREADS"):
        platform.setPropertyDefaultValue("Threads", "1")
    return platform


def _with_terminal_oxygens(atoms: Sequence[Atom]) -> list[Atom]:
    """`atoms` with the OXT of each chain's last residue where the prediction has none, placed as the
    carboxylate's second oxygen: 1.25 A from C, in the CA-C-O plane, 120 degrees from both.

    PDBFixer would add it too, but by a short random dynamics run that gives a different start, and
    (from overlapping atoms) a different relaxed structure, on every call.
    """
    out = list(atoms)
    last: dict[str, int] = {}
    for a in atoms:
        last[a.chain] = a.residue_number
    for chain, number in last.items():
        names = {a.name: np.array(a.coord) for a in atoms if (a.chain, a.residue_number) == (chain, number)}
        if "OXT" in names or not {"CA", "C", "O"} <= names.keys():
            continue
        away = -sum((names[n] - names["C"]) / np.linalg.norm(names[n] - names["C"]) for n in ("CA", "O"))
        norm = np.linalg.norm(away)
        if not norm > 1e-6:  # CA, C and O in a line: no plane to put it in; PDBFixer will place it
            continue
        x, y, z = (float(v) for v in names["C"] + 1.25 * away / norm)
        template = next(a for a in atoms if (a.chain, a.residue_number, a.name) == (chain, number, "C"))
        out.insert(out.index(template) + 1, replace(template, name="OXT", element="O", coord=(x, y, z)))
    return out


def _fixed_topology(fixer: Any) -> tuple[Any, np.ndarray]:
    """PDBFixer's topology and positions (A) with missing heavy atoms (e.g. OXT) and hydrogens (pH 7) added;
    no missing residues are modelled, so chains and numbering stay the prediction's."""
    fixer.missingResidues = {}
    fixer.findMissingAtoms()
    # OpenMM's Modeller places some hydrogens with Python's `random`: seed it here, and only here.
    outside = random.getstate()
    random.seed(0)
    try:
        fixer.addMissingAtoms(seed=0)
        fixer.addMissingHydrogens(7.0)
    finally:
        random.setstate(outside)
    positions = np.array([[v.x, v.y, v.z] for v in fixer.positions], dtype=np.float64) * 10.0  # nm -> A
    return fixer.topology, positions


def _atoms(topology: Any, positions: np.ndarray, b_factors: dict[tuple[str, int], float]) -> list[Atom]:
    out = []
    for atom in topology.atoms():
        residue = atom.residue
        key = (residue.chain.id, int(residue.id))
        x, y, z = (float(v) for v in positions[atom.index])
        out.append(Atom(key[0], key[1], residue.name, atom.name, atom.element.symbol, (x, y, z),
                        b_factors.get(key, 0.0)))
    return out


def relax_structure(structure: Structure, *, platform: str | None = None,
                    max_outer_iterations: int = MAX_OUTER_ITERATIONS) -> Structure:
    """`structure` with `Structure.relaxed` set: restrained AMBER minimisation of its protein chains.

    Args:
        structure: a fold result with PDB or mmCIF text (chains of standard amino acids).
        platform: OpenMM platform (``"CPU"``, ``"CUDA"``, ``"auto"``); default
            ``BIONEMO_LITE_RELAX_PLATFORM``, else ``"CPU"``.
        max_outer_iterations: restrained minimisations at most (openfold's outer loop).

    Raises:
        RelaxUnavailableError: OpenMM / PDBFixer are not installed (``pip install 'bionemo-lite[relax]'``),
            or the platform is not there.
        RelaxError: a ligand or non-standard residue, no structure text, or a minimisation that failed
            (an `InvalidInputError`: the record's failure, named).
    """
    openmm, app, PDBFixer = _openmm()
    started = time.perf_counter()
    fmt, text = ("pdb", structure.pdb) if structure.pdb is not None else ("mmcif", structure.mmcif)
    if text is None:
        raise RelaxError("the fold returned no structure text to relax", record=structure.id)
    raw = read_atoms(text, fmt)
    _check_protein(raw, structure.id)
    chosen = _platform(openmm, platform)
    complete = _with_terminal_oxygens(raw)
    try:
        source = {"pdbfile": io.StringIO(to_pdb(complete, structure.id))}
    except StructureFormatError:
        source = {"pdbxfile": io.StringIO(to_mmcif(complete, structure.id))}
    b_factors = {(a.chain, a.residue_number): a.b_factor for a in raw}
    try:
        topology, start = _fixed_topology(PDBFixer(**source, platform=chosen))
        system = _force_field().createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
        restraints = _heavy_atom_restraints(openmm, topology, start)
        system.addForce(restraints)
        # Minimisation only: the integrator never steps.
        simulation = app.Simulation(topology, system, openmm.VerletIntegrator(0.001), chosen)
        simulation.context.setPositions(start / 10.0)
        energy_before = _amber_energy(simulation)
        positions, excluded, iterations = start, set(), 0
        while iterations < max(1, max_outer_iterations):
            iterations += 1
            _restrain(restraints, topology, positions, excluded, simulation.context)
            simulation.minimizeEnergy(tolerance=TOLERANCE * _KCAL, maxIterations=MAX_ITERATIONS)  # see TOLERANCE
            state = simulation.context.getState(getPositions=True)
            positions = np.asarray(state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)) * 10.0
            _, clashing = count_clashes(_atoms(topology, positions, b_factors))
            if not clashing or clashing <= excluded:
                break
            excluded |= clashing
    except Exception as exc:  # PDBFixer / OpenMM (no template, NaN coordinates...): this record's failure
        raise RelaxError(f"AMBER relaxation failed: {exc}", record=structure.id) from exc
    energy_after = _amber_energy(simulation)
    if not (math.isfinite(energy_after) and np.isfinite(positions).all()):
        raise RelaxError("energy minimisation did not converge to finite coordinates", record=structure.id)
    relaxed = _atoms(topology, positions, b_factors)
    try:
        texts = render(relaxed, structure.id)
    except StructureFormatError as exc:
        raise RelaxError(f"the relaxed structure cannot be written: {exc}", record=structure.id) from exc
    return replace(structure, relaxed=Relaxation(
        pdb=texts.pdb,
        mmcif=texts.mmcif if structure.mmcif is not None else None,
        energy_before=energy_before,
        energy_after=energy_after,
        rmsd=_heavy_rmsd(raw, relaxed),
        clashes_before=count_clashes(raw)[0],
        clashes_after=count_clashes(relaxed)[0],
        iterations=iterations,
        seconds=time.perf_counter() - started,
        platform=chosen.getName(),
    ))


def _heavy_atom_restraints(openmm: Any, topology: Any, positions: np.ndarray) -> Any:
    """openfold's harmonic position restraint, with a per-atom spring so that rounds can release residues."""
    force = openmm.CustomExternalForce("0.5 * k * ((x - x0)^2 + (y - y0)^2 + (z - z0)^2)")
    for name in ("k", "x0", "y0", "z0"):
        force.addPerParticleParameter(name)
    for atom in topology.atoms():
        if atom.element.symbol not in _HYDROGEN:
            force.addParticle(atom.index, [0.0, *(positions[atom.index] / 10.0)])
    force.setForceGroup(1)  # left out of the reported energy
    return force


def _restrain(force: Any, topology: Any, positions: np.ndarray, excluded: set[tuple[str, int]], context: Any) -> None:
    """Restrain heavy atoms to `positions` (A), except those of the `excluded` residues."""
    stiffness = STIFFNESS * _KCAL * 100.0  # kcal/mol/A^2 -> kJ/mol/nm^2
    atoms = list(topology.atoms())
    for i in range(force.getNumParticles()):
        index, _ = force.getParticleParameters(i)
        residue = atoms[index].residue
        k = 0.0 if (residue.chain.id, int(residue.id)) in excluded else stiffness
        force.setParticleParameters(i, index, [k, *(positions[index] / 10.0)])
    force.updateParametersInContext(context)


def _amber_energy(simulation: Any) -> float:
    """Potential energy in kJ/mol without the restraints (force group 0 only)."""
    from openmm import unit

    state = simulation.context.getState(getEnergy=True, groups={0})
    return float(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))


def _heavy_rmsd(raw: Sequence[Atom], relaxed: Sequence[Atom]) -> float:
    """RMSD (A) between the raw heavy atoms and the same atoms (chain, residue, name) after relaxing."""
    where = {(a.chain, a.residue_number, a.name): a.coord for a in relaxed}
    pairs = [(a.coord, where[key]) for a in raw
             if a.element.upper() not in _HYDROGEN and (key := (a.chain, a.residue_number, a.name)) in where]
    if not pairs:
        return float("nan")
    before, after = (np.array(side, dtype=np.float64) for side in zip(*pairs))
    return float(np.sqrt(np.mean(np.sum((before - after) ** 2, axis=1))))
