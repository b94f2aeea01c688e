"""Guided generation (CMA-ES in the latent space) against unguided sampling and NVIDIA's reference optimizer.

On the same seeds and the same budget (``iterations x particles`` greedy decodes per
seed), each method's best QED among the molecules it decoded that are at least
``--min-similarity`` (Tanimoto, Morgan r=2) to the seed; the seed's own QED when it
found none (the seed is always an answer). The table prints the mean over seeds and
the mean improvement over unguided sampling:

* ``unguided``: ``generate`` with the default algorithm (greedy-perturbate sampling,
  noise ``--scaled-radius``), ``num_molecules = iterations x particles`` and one round;
* ``bionemo-lite cma-es``: ``generate(algorithm="cma-es", property="qed")``;
* ``bionemo-controlled-generation``: `MoleculeGenerationOptimizer` +
  `SingleMoleculeCMAOptimizer` of PyPI ``bionemo-controlled-generation`` 0.3.0 (full-covariance
  CMA-ES, ``sigma = --scaled-radius``) with its MolMIM objective
  (``molmim_qed_with_similarity``, negated as its own tests do), driving our
  encoder/decoder through a client of its ``InferenceClientBase`` protocol. Its latent
  is one fixed-size vector per molecule, ours per-token hiddens: the client runs one seed
  at a time with the seed's flattened ``[L, D]`` hiddens as the vector.

The package needs a BioNeMo service client at install time; install it beside, not
into, the project's environment (the script skips the row when it is missing):

    pip install --no-deps --target /tmp/guided_bench_ref bionemo-controlled-generation==0.3.0
    PYTHONPATH=/tmp/guided_bench_ref .venv/bin/python benchmarks/guided_generation.py --repeats 3

No trained MegaMolBART can be downloaded: without ``--weights`` the script trains the
tests' tiny autoencoder on their drug SMILES (``tests/megamolbart_fixtures.py``, ~55 s).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the drug SMILES the tests train on

import bionemo_lite as bl  # noqa: E402
from bionemo_lite import chem  # noqa: E402
from megamolbart_fixtures import DRUG_SMILES  # noqa: E402

DEFAULT_SEEDS = ("aspirin", "paracetamol", "ibuprofen", "lidocaine", "caffeine", "nicotine", "benzocaine", "procaine")


def create_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, help="a MegaMolBART .nemo (default: train the tests' tiny model)")
    p.add_argument("--seeds", nargs="+", default=list(DEFAULT_SEEDS), help="names in DRUG_SMILES, or SMILES")
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--particles", type=int, default=20)
    p.add_argument("--min-similarity", type=float, default=0.4)
    p.add_argument("--scaled-radius", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3, help="random seeds per method (0, 1, ...)")
    p.add_argument("--threads", type=int, default=1)
    return p


def load_model(weights: Path | None):
    if weights is not None:
        return bl.load("megamolbart", weights=weights)
    from megamolbart_fixtures import train_tiny_megamolbart

    model, report = train_tiny_megamolbart()  # the tests' recipe (float64: the same weights on every CPU)
    print(f"trained the tiny model: {report.steps} steps, greedy reconstruction {report.accuracy:.1%}")
    return model


def best_feasible_qed(seed: str, smiles: Sequence[str], min_similarity: float) -> float:
    """The highest QED among valid `smiles` at least `min_similarity` to `seed`; the seed's QED if none."""
    reference = chem.parse_smiles(seed)
    mols = [m for m in (chem.try_canonical(s) for s in smiles if s) if m is not None]
    parsed = [chem.parse_smiles(m) for m in mols]
    sims = chem.tanimoto_to(reference, parsed)
    return max([chem.qed(m) for m, s in zip(parsed, sims) if s >= min_similarity], default=chem.qed(reference))


def unguided(model, seeds: list[str], args, seed: int) -> list[float]:
    result = model.generate(seeds, num_molecules=args.iterations * args.particles, max_rounds=1,
                            scaled_radius=args.scaled_radius, seed=seed)
    return [best_feasible_qed(s, r.generated, args.min_similarity) for s, r in zip(seeds, result.records)]


def ours(model, seeds: list[str], args, seed: int) -> list[float]:
    result = model.generate(seeds, algorithm="cma-es", property="qed", iterations=args.iterations,
                            particles=args.particles, min_similarity=args.min_similarity,
                            scaled_radius=args.scaled_radius, num_molecules=1, seed=seed)
    return [best_feasible_qed(s, r.generated, args.min_similarity) for s, r in zip(seeds, result.records)]


class OneSeedClient:
    """`guided_molecule_gen`'s ``InferenceClientBase`` over our model, for one seed (its latent size)."""

    def __init__(self, model, seed: str):
        hiddens, _ = model.encode([seed])
        self.model, self.shape = model, hiddens[0].shape

    def num_latent_dims(self) -> int:
        return int(np.prod(self.shape))

    def encode(self, smis: list[str]) -> np.ndarray:
        hiddens, _ = self.model.encode(smis)
        return hiddens.reshape(1, len(smis), -1)

    def decode(self, latent: np.ndarray) -> list[str]:
        return list(self.model.decode([row.reshape(self.shape) for row in latent[0]]))


def reference(model, seeds: list[str], args, seed: int) -> list[float] | None:
    try:
        from guided_molecule_gen.optimizer import MoleculeGenerationOptimizer
        from guided_molecule_gen.oracles import molmim_qed_with_similarity
    except ImportError:
        return None
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")  # its oracles parse every decode without silencing RDKit
    out = []
    for smi in seeds:
        canon = chem.canonical_smiles(smi)
        seen: list[str] = []

        def oracle(smis: list[str], reference: str, **_: object) -> np.ndarray:
            seen.extend(smis)
            return -molmim_qed_with_similarity(smis, reference)

        np.random.seed(seed)  # the reference's CMA-ES draws from numpy's global generator
        optimizer = MoleculeGenerationOptimizer(OneSeedClient(model, canon), oracle, [canon], popsize=args.particles,
                                                optimizer_args={"sigma": args.scaled_radius, "seed": seed + 1,
                                                                "verbose": -9, "verb_log": 0})
        with warnings.catch_warnings():  # cma's numerical-precision notes on a 1,000+-dimensional full covariance
            warnings.simplefilter("ignore")
            optimizer.optimize(args.iterations)
        out.append(best_feasible_qed(canon, seen, args.min_similarity))
    return out


def main() -> None:
    args = create_parser().parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.weights)
    seeds = [chem.canonical_smiles(DRUG_SMILES.get(s, s)) for s in args.seeds]
    methods: dict[str, Callable] = {"unguided (greedy-perturbate)": unguided, "bionemo-lite cma-es": ours,
                                    "bionemo-controlled-generation 0.3.0": reference}
    seed_qed = float(np.mean([chem.qed(chem.parse_smiles(s)) for s in seeds]))
    print(f"\n{len(seeds)} seeds, mean seed QED {seed_qed:.3f}; {args.iterations} iterations x {args.particles} "
          f"particles = {args.iterations * args.particles} decodes per seed; min similarity {args.min_similarity}, "
          f"scaled radius {args.scaled_radius}; repeats {args.repeats}; torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {args.threads} thread(s)\n")
    rows, baseline = [], None
    for name, method in methods.items():
        start, runs = time.perf_counter(), []
        for r in range(args.repeats):
            values = method(model, seeds, args, r)
            if values is None:
                break
            runs.append(values)
        if not runs:
            rows.append((name, None, None, None, None))
            continue
        per_run = np.asarray(runs)  # [repeats, seeds]
        if baseline is None:
            baseline = per_run
        gain = (per_run - baseline).mean(axis=1)  # per repeat: mean over seeds
        seconds = (time.perf_counter() - start) / len(runs)
        rows.append((name, per_run.mean(), gain.mean(), gain.std(), seconds))
    print("| method | mean best QED (sim >= %.2f) | improvement over unguided (mean ± sd over repeats) | s/run |"
          % args.min_similarity)
    print("|---|---|---|---|")
    for name, qed, gain, sd, seconds in rows:
        if qed is None:
            print(f"| {name} | not installed | | |")
        else:
            print(f"| {name} | {qed:.3f} | {gain:+.3f} ± {sd:.3f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
