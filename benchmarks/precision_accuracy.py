"""Accuracy of the opt-in reduced precisions against float32, with their speed, one run.

For each mode (``dtype="bfloat16"``, ``quantize="int8"``, and the padded fp32
path as a control) against the packed float32 default on the same random
weights and sequences: mean-embedding cosine (min and mean), logits max
|difference|, PLL drift (max |difference| per residue, in nats), and residues/s
of embed. Random weights are not trained ones: treat the bounds as this
architecture's, re-measure on a real checkpoint with ``--weights``.

    python benchmarks/precision_accuracy.py                 # ESM-2 8M architecture
    python benchmarks/precision_accuracy.py --variant esm2_t30_150M_UR50D --num-seqs 40
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import base_parser, hardware, random_sequences, setup, time_best  # noqa: E402


def main(argv: list[str] | None = None) -> str:
    p = base_parser(__doc__, "esm2_t6_8M_UR50D", num_seqs=100)
    p.add_argument("--weights", type=Path, help="a real checkpoint (default: random weights of --variant)")
    p.add_argument("--pll-seqs", type=int, default=4, help="sequences (the shortest) scored for the PLL drift")
    args = p.parse_args(argv)
    if args.dry_run:
        print(f"plan: accuracy of bf16/int8 vs fp32, {args.variant}, {args.num_seqs} sequences")
        return ""
    import datetime as dt

    import numpy as np
    import torch

    import bionemo_lite as bl
    from bionemo_lite.zoo.esm2.testing import TinyEsm2, write_fair_esm_checkpoint

    setup(args)
    warnings.simplefilter("ignore")
    seqs = random_sequences(args.num_seqs, args.min_len, args.max_len, args.seed)
    records = {f"s{i}": s for i, s in enumerate(seqs)}
    short = dict(sorted(records.items(), key=lambda kv: len(kv[1]))[: args.pll_seqs])
    residues = sum(len(s) for s in seqs)
    modes = [("float32 packed (default)", {}), ("float32 padded", {"packing": False}),
             ("bfloat16", {"dtype": "bfloat16"}), ("int8 dynamic", {"quantize": "int8"})]
    results = {}
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        weights = args.weights
        if weights is None:
            cfg = bl.get_spec(args.variant).config
            weights = write_fair_esm_checkpoint(Path(tmp), args.variant,
                                                TinyEsm2(cfg["num_layers"], cfg["embed_dim"], cfg["attention_heads"]))
        for name, options in modes:
            model = bl.load(args.variant, weights=weights, **options)
            emb = model.embed(records).embeddings
            logits = model.logits(short)
            pll = model.score(short, method="pll").scores
            sec = time_best(lambda: model.embed(records, tokens_per_batch=args.tokens_per_batch), args.repeat)
            results[name] = (emb, logits, pll, sec)
            model.close()
    base_emb, base_logits, base_pll, _ = results[modes[0][0]]
    lengths = np.array([len(s) for s in short.values()])
    lines = [
        f"#### Reduced precision vs float32: {args.variant} architecture, "
        f"{'random weights' if args.weights is None else args.weights.name}, {len(seqs)} sequences of "
        f"{args.min_len}-{args.max_len} ({residues:,} residues); PLL on the {len(short)} shortest",
        "",
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC · {hardware()} · torch {torch.__version__} · "
        f"threads {torch.get_num_threads()} · `{' '.join([Path(sys.argv[0]).name] + sys.argv[1:])}`",
        "",
        "| mode | embed residues/s | x fp32 | cosine min | cosine mean | logits max abs diff | PLL drift max (nats/residue) |",
        "|---|---|---|---|---|---|---|",
    ]
    base_rate = residues / results[modes[0][0]][3]
    for name, _ in modes:
        emb, logits, pll, sec = results[name]
        cos = (emb * base_emb).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(base_emb, axis=1))
        ldiff = max(float(np.abs(a - b).max()) for a, b in zip(logits, base_logits))
        drift = float((np.abs(np.asarray(pll) - np.asarray(base_pll)) / lengths).max())
        rate = residues / sec
        lines.append(f"| {name} | {rate:,.0f} | {rate / base_rate:.2f} | {cos.min():.5f} | {cos.mean():.5f} | "
                     f"{ldiff:.2e} | {drift:.2e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(text + "\n")
    return text


if __name__ == "__main__":
    main()
