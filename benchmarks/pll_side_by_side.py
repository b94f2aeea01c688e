"""Pseudo-log-likelihood scoring side by side: bionemo-lite vs fair-esm's predict.py method.

fair-esm's ``examples/variant-prediction/predict.py`` (``masked-marginals``)
masks one position at a time and runs one forward per position; bionemo-lite's
``score(method="pll")`` batches the masked copies, packs them into real-token
batches and runs the LM head on the masked tokens only. Same random weights,
same sequences; the unit is masked positions scored per second. The PLLs of
both are compared too (max |difference| in the note).

    python benchmarks/pll_side_by_side.py
    python benchmarks/pll_side_by_side.py --device cuda --dtype bf16 --variant esm2_t33_650M_UR50D
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import Row, base_parser, dtype_name, random_sequences, setup, table, time_best, torch_dtype, wanted  # noqa: E402


def fair_esm_pll(model, alphabet, seq: str, device: str) -> float:
    """predict.py's loop: one forward per masked position, batch of one."""
    import torch

    _, _, toks = alphabet.get_batch_converter()([("s", seq)])
    toks = toks.to(device)
    total = 0.0
    for i in range(1, len(seq) + 1):
        masked = toks.clone()
        masked[0, i] = alphabet.mask_idx
        with torch.inference_mode():
            lp = torch.log_softmax(model(masked)["logits"].float(), dim=-1)
        total += float(lp[0, i, toks[0, i]])
    return total


def main(argv: list[str] | None = None) -> str:
    p = base_parser(__doc__, "esm2_t6_8M_UR50D", num_seqs=12, min_len=50, max_len=300)
    args = p.parse_args(argv)
    dtype = dtype_name(args.dtype)
    if args.dry_run:
        print(f"plan: PLL of {args.num_seqs} sequences of {args.min_len}-{args.max_len}, {args.variant}, {args.device} {dtype}")
        return ""
    import argparse as ap

    import numpy as np
    import torch

    import bionemo_lite as bl
    from bionemo_lite.zoo.esm2.testing import TinyEsm2, write_fair_esm_checkpoint

    setup(args)
    warnings.simplefilter("ignore")
    seqs = random_sequences(args.num_seqs, args.min_len, args.max_len, args.seed)
    positions = sum(len(s) for s in seqs)
    records = {f"s{i}": s for i, s in enumerate(seqs)}
    cfg = bl.get_spec(args.variant).config
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        pt = write_fair_esm_checkpoint(Path(tmp), args.variant, TinyEsm2(cfg["num_layers"], cfg["embed_dim"], cfg["attention_heads"]))
        import esm

        with torch.serialization.safe_globals([ap.Namespace]):
            ref, alphabet = esm.pretrained.load_model_and_alphabet_local(str(pt))
        ref = ref.eval().to(args.device, torch_dtype(dtype))
        ref_scores: list[float] = []

        def run_fair():
            ref_scores[:] = [fair_esm_pll(ref, alphabet, s, args.device) for s in seqs]

        fair_sec = time_best(run_fair, args.repeat, args.device) if wanted(args, "fair-esm") else 0.0
        variants = [("bionemo-lite packed", {}), ("bionemo-lite padded", {"packing": False})]
        if args.device == "cpu" and dtype == "float32":
            variants.append(("bionemo-lite packed int8", {"quantize": "int8"}))
            variants.append(("bionemo-lite packed bf16", {"dtype": "bfloat16"}))
        for name, options in variants:
            if not wanted(args, name):
                continue
            model = bl.load(args.variant, weights=pt, device=args.device, **{"dtype": dtype, **options})
            out: list = []

            def run_ours():
                out[:] = [model.score(records, method="pll", tokens_per_batch=args.tokens_per_batch)]

            sec = time_best(run_ours, args.repeat, args.device)
            note = ", ".join(f"{k}={v}" for k, v in options.items())
            if ref_scores:
                drift = np.abs(np.asarray(out[0].scores) - np.asarray(ref_scores)) / np.array([len(s) for s in seqs])
                note += f"{'; ' if note else ''}PLL vs fair-esm: max |diff| per residue {drift.max():.2e}"
            rows.append(Row(name, sec, positions, peer=False, note=note))
            model.close()
        if fair_sec:
            rows.append(Row("fair-esm 2.0.0 predict.py method", fair_sec, positions, peer=True, note="one forward per position"))
    title = (f"PLL scoring, {args.variant} architecture, random weights, {len(seqs)} sequences of "
             f"{args.min_len}-{args.max_len} ({positions:,} masked positions), {args.device} {dtype}")
    text = table(title, rows, "positions/s", args)
    print(text)
    return text


if __name__ == "__main__":
    main()
