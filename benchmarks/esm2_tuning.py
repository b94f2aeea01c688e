"""Where the CPU defaults come from: ESM-2 embed throughput over token budgets and thread counts.

One run, one model (the variant's architecture with random weights), the same random
sequences for every cell; prints residues/s per (threads, tokens per batch) and the
ratio to the default cell (``DEFAULT_TOKENS_PER_BATCH``, all cores).

    python benchmarks/esm2_tuning.py                                  # 8M, packed fp32, 1-2 threads, 2k-32k budgets
    python benchmarks/esm2_tuning.py --dtype bf16 --budgets 4096,16384 --thread-counts 2
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import base_parser, dtype_name, random_sequences, setup, time_best  # noqa: E402


def create_parser():
    p = base_parser(__doc__, "esm2_t6_8M_UR50D")
    p.add_argument("--budgets", default="2048,4096,8192,16384,32768", help="tokens per batch to try")
    p.add_argument("--thread-counts", default="1,2", help="torch intra-op thread counts to try")
    p.add_argument("--padded", action="store_true", help="tune the padded path (packing=False) instead")
    return p


def main(argv: list[str] | None = None) -> str:
    args = create_parser().parse_args(argv)
    budgets = [int(b) for b in args.budgets.split(",")]
    threads = [int(t) for t in args.thread_counts.split(",")]
    if args.dry_run:
        print(f"plan: {args.variant} {dtype_name(args.dtype)}, budgets {budgets} x threads {threads}")
        return ""
    import datetime as dt
    import tempfile
    import warnings

    import torch

    import bionemo_lite as bl
    from bionemo_lite.batching import DEFAULT_TOKENS_PER_BATCH
    from bionemo_lite.zoo.esm2.testing import TinyEsm2, write_fair_esm_checkpoint
    from side_by_side import hardware

    setup(args)
    warnings.simplefilter("ignore")  # random weights are not the published checkpoint
    seqs = random_sequences(args.num_seqs, args.min_len, args.max_len, args.seed)
    records = {f"s{i}": s for i, s in enumerate(seqs)}
    residues = sum(len(s) for s in seqs)
    cfg = bl.get_spec(args.variant).config
    rates: dict[tuple[int, int], float] = {}
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        arch = TinyEsm2(cfg["num_layers"], cfg["embed_dim"], cfg["attention_heads"])
        pt = write_fair_esm_checkpoint(Path(tmp), args.variant, arch)
        model = bl.load(args.variant, weights=pt, device=args.device, dtype=dtype_name(args.dtype),
                        packing=not args.padded)
        model.embed(dict(list(records.items())[:8]), pooling="mean")  # first-call costs out of every cell
        for n in threads:
            torch.set_num_threads(n)
            for budget in budgets:
                sec = time_best(lambda: model.embed(records, pooling="mean", tokens_per_batch=budget),
                                args.repeat, args.device)
                rates[n, budget] = residues / sec
                print(f"threads {n} budget {budget}: {rates[n, budget]:,.0f} residues/s", flush=True)
    default = rates.get((max(threads), DEFAULT_TOKENS_PER_BATCH))
    mode = "padded" if args.padded else "packed"
    lines = [
        f"#### ESM-2 embed tuning, {args.variant} architecture, {mode} {dtype_name(args.dtype)}, {len(seqs)} random "
        f"sequences of {args.min_len}-{args.max_len} ({residues:,} residues), residues/s",
        "",
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC · {hardware()} · torch {torch.__version__} · "
        f"`{' '.join([Path(sys.argv[0]).name] + sys.argv[1:])}`",
        "",
        "| threads | " + " | ".join(f"{b} tokens" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for n in threads:
        cells = []
        for b in budgets:
            ratio = f" ({rates[n, b] / default:.2f}x)" if default else ""
            cells.append(f"{rates[n, b]:,.0f}{ratio}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        with open(args.out, "a") as fh:
            fh.write(text + "\n")
    return text


if __name__ == "__main__":
    main()
