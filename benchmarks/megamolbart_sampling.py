"""MegaMolBART sampling: molecules/s and valid % per sampling method, one run.

No trained MegaMolBART can be downloaded here and no peer runs without one
(BioNeMo's own sampler needs NeMo and its checkpoint), so this measures ours
only: without ``--weights`` it trains the tests' tiny autoencoder first (~30 s,
`benchmarks/guided_generation.py` does the same) and samples around drug
seeds with one round per seed (``max_rounds=1``: valid % is the raw rate).
Molecules/s counts the samples decoded (valid or not) per second.

    python benchmarks/megamolbart_sampling.py
    python benchmarks/megamolbart_sampling.py --device cuda --weights megamolbart.nemo --num-molecules 500
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the drug SMILES the tests train on
from side_by_side import Row, base_parser, setup, table  # noqa: E402

METHODS = ("greedy-perturbate", "topkp-perturbate", "beam-search-perturbate")


def main(argv: list[str] | None = None) -> str:
    p = base_parser(__doc__, "megamolbart", num_seqs=4)
    p.add_argument("--weights", type=Path, help="a MegaMolBART .nemo (default: train the tests' tiny model)")
    p.add_argument("--num-molecules", type=int, default=100, help="samples per seed")
    p.add_argument("--methods", default=",".join(METHODS))
    args = p.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    if args.dry_run:
        print(f"plan: MegaMolBART sampling, {args.num_seqs} seeds x {args.num_molecules} samples, methods {methods}")
        return ""
    import bionemo_lite as bl
    from megamolbart_fixtures import DRUG_SMILES

    setup(args)
    warnings.simplefilter("ignore")
    if args.weights is not None:
        model = bl.load("megamolbart", weights=args.weights, device=args.device)
    else:
        from bionemo_lite.zoo.megamolbart.model import MegaMolBARTModel
        from bionemo_lite.zoo.megamolbart.testing import TINY_CONFIG
        from bionemo_lite.zoo.megamolbart.training import train_autoencoder

        model = MegaMolBARTModel.from_config(TINY_CONFIG, seed=0)
        report = train_autoencoder(model, list(DRUG_SMILES.values()), steps=400, batch_size=40, lr=5e-3,
                                   warmup_steps=30, target_accuracy=0.95, eval_every=25, seed=0)
        print(f"trained the tiny model: {report.steps} steps, greedy reconstruction {report.accuracy:.1%}")
    seeds = dict(list(DRUG_SMILES.items())[: args.num_seqs])
    rows: list[Row] = []
    for method in methods:
        model.generate(seeds, num_molecules=4, method=method, seed=0, max_rounds=1)  # warm-up
        t0 = time.perf_counter()
        out = model.generate(seeds, num_molecules=args.num_molecules, method=method, seed=args.seed, max_rounds=1,
                             tokens_per_batch=args.tokens_per_batch)
        sec = time.perf_counter() - t0
        samples = sum(r.stats["samples"] for r in out.records)
        valid = sum(r.stats["valid"] for r in out.records)
        unique = sum(r.stats["unique"] for r in out.records)
        rows.append(Row(f"bionemo-lite {method}", sec, samples, peer=False,
                        note=f"valid {100 * valid / max(samples, 1):.1f}%, unique {unique}/{samples}"))
    title = (f"MegaMolBART sampling ({'tiny model trained here' if args.weights is None else args.weights.name}), "
             f"{len(seeds)} seeds x {args.num_molecules} samples, one round, {args.device}")
    text = table(title, rows, "molecules/s", args)
    print(text)
    return text


if __name__ == "__main__":
    main()
