"""ProtT5 encoder side by side: bionemo-lite vs transformers T5EncoderModel, same random weights.

``--shape xl`` is ProtT5-XL's published encoder (24 x 1024, d_ff 16384: a GPU
run); the CPU default ``small`` is a 6 x 512 T5 encoder (d_ff 2048, 8 heads)
with ProtT5's vocabulary and relative-position buckets. Mean pooling over the
residues; the peer gets the padded length-sorted token-budget batches.

    python benchmarks/prott5_side_by_side.py
    python benchmarks/prott5_side_by_side.py --device cuda --dtype bf16 --shape xl --num-seqs 300 --max-len 1022
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import Row, base_parser, dtype_name, random_sequences, setup, table, time_best, torch_dtype, wanted  # noqa: E402

SHAPES = {
    "small": dict(d_model=512, d_ff=2048, num_layers=6, num_heads=8, d_kv=64),
    "xl": dict(d_model=1024, d_ff=16384, num_layers=24, num_heads=32, d_kv=128),
}


def write_encoder(folder: Path, shape: str) -> Path:
    """A random T5 encoder (config.json + pytorch_model.bin, the half-encoder repository's layout, in fp32)."""
    import torch
    import transformers

    from bionemo_lite.zoo.prott5.testing import randomize

    config = transformers.T5Config(vocab_size=128, relative_attention_num_buckets=32, feed_forward_proj="relu",
                                   **SHAPES[shape])
    model = randomize(transformers.T5EncoderModel(config), seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    model.config.save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> str:
    p = base_parser(__doc__, "prot_t5_xl_half_uniref50-enc", num_seqs=100, min_len=30, max_len=500)
    p.add_argument("--shape", choices=sorted(SHAPES), default="small")
    args = p.parse_args(argv)
    dtype = dtype_name(args.dtype)
    if args.dry_run:
        print(f"plan: ProtT5 {args.shape} encoder, {args.num_seqs} sequences of {args.min_len}-{args.max_len}, "
              f"{args.device} {dtype}")
        return ""
    import torch
    import transformers

    import bionemo_lite as bl
    from bionemo_lite.batching import token_budget_batches
    from bionemo_lite.zoo.prott5.tokenizer import ProtT5Tokenizer

    setup(args)
    warnings.simplefilter("ignore")
    seqs = random_sequences(args.num_seqs, args.min_len, args.max_len, args.seed)
    residues = sum(len(s) for s in seqs)
    records = {f"s{i}": s for i, s in enumerate(seqs)}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        folder = write_encoder(Path(tmp) / args.variant, args.shape)
        for name, options in (("bionemo-lite packed", {}), ("bionemo-lite padded", {"packing": False})):
            if not wanted(args, name):
                continue
            model = bl.load(args.variant, weights=folder, device=args.device, dtype=dtype, **options)
            sec = time_best(lambda: model.embed(records, tokens_per_batch=args.tokens_per_batch), args.repeat, args.device)
            rows.append(Row(name, sec, residues, peer=False, note=", ".join(f"{k}={v}" for k, v in options.items())))
            model.close()
        if wanted(args, "transformers"):
            hf = transformers.T5EncoderModel.from_pretrained(folder).eval().to(args.device, torch_dtype(dtype))
            tok = ProtT5Tokenizer()
            batches = token_budget_batches([len(s) for s in seqs], args.tokens_per_batch, extra_tokens=1)
            prepared = []
            for b in batches:
                arrays = tok.batch([seqs[i] for i in b])
                ids = torch.from_numpy(arrays["input_ids"]).to(args.device)
                att = torch.from_numpy(arrays["attention_mask"]).to(args.device)
                res = torch.from_numpy(tok.residue_mask(arrays)).to(args.device)
                prepared.append((ids, att, res))

            def run_hf():
                with torch.inference_mode():
                    for ids, att, res in prepared:
                        h = hf(input_ids=ids, attention_mask=att).last_hidden_state.float()
                        m = res.unsqueeze(-1).float()
                        ((h * m).sum(1) / m.sum(1)).cpu()

            rows.append(Row(f"transformers {transformers.__version__} T5EncoderModel", time_best(run_hf, args.repeat, args.device),
                            residues, peer=True, note=f"attn={hf.config._attn_implementation}, padded batches"))
    title = (f"ProtT5 encoder embed (mean), {args.shape} shape, random weights, {len(seqs)} sequences of "
             f"{args.min_len}-{args.max_len} ({residues:,} residues), {args.tokens_per_batch}-token batches, "
             f"{args.device} {dtype}")
    text = table(title, rows, "residues/s", args)
    print(text)
    return text


if __name__ == "__main__":
    main()
