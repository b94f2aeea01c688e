"""ESM-2 embedding throughput: bionemo-lite vs fair-esm vs transformers, same weights.

Random weights with the named variant's published architecture are used unless
--weights is given (speed does not depend on the values). Sequences come from a
FASTA file (default: ../shared/data/some_proteins.fasta when present) or are
drawn at random. Every implementation sees the same length-sorted batches.

    python benchmarks/esm2_embed_throughput.py --variant esm2_t6_8M_UR50D --threads 2
"""

from __future__ import annotations

import argparse
import platform
import random
import tempfile
import time
from pathlib import Path

import torch

import bionemo_lite as bl
from bionemo_lite.batching import token_budget_batches

ROOT = Path(__file__).resolve().parents[1]


def create_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="esm2_t6_8M_UR50D")
    p.add_argument("--weights", type=Path, help="a real checkpoint (default: random weights)")
    p.add_argument("--fasta", type=Path, default=ROOT.parent / "shared" / "data" / "some_proteins.fasta")
    p.add_argument("--num-random", type=int, default=64, help="random sequences when no FASTA")
    p.add_argument("--max-length", type=int, default=1022)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--tokens-per-batch", type=int, default=4096)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--skip-references", action="store_true")
    return p


def load_sequences(args) -> list[str]:
    if args.fasta and args.fasta.is_file():
        from Bio import SeqIO

        seqs = [str(r.seq).upper() for r in SeqIO.parse(str(args.fasta), "fasta")]
    else:
        rng = random.Random(0)
        seqs = ["".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(50, 500))) for _ in range(args.num_random)]
    return [s[: args.max_length] for s in seqs]


def time_it(fn, repeat: int) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> None:
    args = create_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = bl.get_spec(args.variant)
    seqs = load_sequences(args)
    tokens = sum(len(s) for s in seqs)
    batches = token_budget_batches([len(s) for s in seqs], args.tokens_per_batch, extra_tokens=2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights
        if weights is None:
            from bionemo_lite.zoo.esm2.testing import TinyEsm2, write_fair_esm_checkpoint

            arch = TinyEsm2(spec.config["num_layers"], spec.config["embed_dim"], spec.config["attention_heads"])
            weights = write_fair_esm_checkpoint(Path(tmp), args.variant, arch)
        records = {f"s{i}": s for i, s in enumerate(seqs)}
        for numerics in ("reference", "fast"):  # explicit attention (bit-exact) vs fused SDPA
            model = bl.load(args.variant, weights=weights, device=args.device, dtype=args.dtype, numerics=numerics)
            sec = time_it(lambda: model.embed(records, pooling="mean", tokens_per_batch=args.tokens_per_batch), args.repeat)
            rows.append((f"bionemo-lite ({numerics})", sec))

        if not args.skip_references:
            import argparse as ap

            import esm

            torch.serialization.add_safe_globals([ap.Namespace])
            ref, alphabet = esm.pretrained.load_model_and_alphabet_local(str(weights))
            ref = ref.eval().to(args.device)
            if model.dtype != "float32":
                ref = ref.to(getattr(torch, model.dtype))
            convert = alphabet.get_batch_converter()
            last = ref.num_layers
            prepared = [convert([(str(i), seqs[i]) for i in b])[2].to(args.device) for b in batches]

            def run_fair():
                with torch.inference_mode():
                    for toks in prepared:
                        ref(toks, repr_layers=[last])["representations"][last].float().mean(1).cpu()

            rows.append(("fair-esm", time_it(run_fair, args.repeat)))

            from bionemo_lite.zoo.esm2.testing import write_hf_esm_dir
            from transformers import EsmModel

            if args.weights is None:
                hf_dir = write_hf_esm_dir(Path(tmp) / "hf", arch)
                hf = EsmModel.from_pretrained(hf_dir, add_pooling_layer=False).eval().to(args.device)
                if model.dtype != "float32":
                    hf = hf.to(getattr(torch, model.dtype))

                def run_hf():
                    with torch.inference_mode():
                        for toks in prepared:
                            mask = toks.ne(alphabet.padding_idx)
                            hf(input_ids=toks, attention_mask=mask).last_hidden_state.float().mean(1).cpu()

                rows.append(("transformers", time_it(run_hf, args.repeat)))

    print(f"# {args.variant} embed (mean pooling), {len(seqs)} sequences, {tokens} residues, "
          f"device={args.device}, dtype={model.dtype}, threads={torch.get_num_threads()}, "
          f"tokens_per_batch={args.tokens_per_batch}, {platform.processor() or platform.machine()}")
    print("| implementation | seconds | residues/s | sequences/s |")
    print("|---|---|---|---|")
    for name, sec in rows:
        print(f"| {name} | {sec:.3f} | {tokens / sec:,.0f} | {len(seqs) / sec:,.1f} |")


if __name__ == "__main__":
    main()
