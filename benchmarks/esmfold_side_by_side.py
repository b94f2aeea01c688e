"""ESMFold side by side: bionemo-lite's fold vs transformers EsmForProteinFolding, same random weights.

ESMFold folds one sequence (or one linker-joined complex) per forward, so its
ESM-2 stem sees no padding and packing has nothing to remove there; this
measures what our wrapper (validation, chunking, outputs) costs or saves
around the same network. Shapes: ``tiny`` (the tests' random model: CPU),
``medium`` (ESM-2 650M stem + the published 48-block trunk) and ``full``
(esmfold_v1's 3B stem; GPU). The unit is residues folded per second.

    python benchmarks/esmfold_side_by_side.py --lengths 100,300
    python benchmarks/esmfold_side_by_side.py --device cuda --dtype bf16 --shape full --lengths 300,1000
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import Row, base_parser, dtype_name, random_sequences, setup, table, time_best, wanted  # noqa: E402

SHAPES = {
    "medium": {"esm_layers": 33, "esm_dim": 1280, "esm_heads": 20},
    "full": {},
}


def write_checkpoint(folder: Path, shape: str) -> Path:
    from bionemo_lite.zoo.esmfold.testing import write_tiny_esmfold_dir

    if shape == "tiny":
        return write_tiny_esmfold_dir(folder)
    import torch
    from transformers import EsmConfig, EsmForProteinFolding

    from bionemo_lite.zoo.esmfold.config import hf_config_dict

    config = EsmConfig(**hf_config_dict(SHAPES[shape]))
    torch.manual_seed(0)
    model = EsmForProteinFolding(config).float().eval()  # transformers' own random init
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> str:
    p = base_parser(__doc__, "esmfold_v1", num_seqs=1)
    p.add_argument("--shape", choices=["tiny", *SHAPES], default="tiny")
    p.add_argument("--lengths", default="100,300", help="comma-separated sequence lengths, one fold each")
    args = p.parse_args(argv)
    dtype = dtype_name(args.dtype)
    lengths = [int(x) for x in args.lengths.split(",")]
    if args.dry_run:
        print(f"plan: ESMFold {args.shape}, lengths {lengths}, {args.device} {dtype}, upstream's default recycles")
        return ""
    import torch
    from transformers import EsmForProteinFolding

    import bionemo_lite as bl

    setup(args)
    warnings.simplefilter("ignore")
    out = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        folder = write_checkpoint(Path(tmp) / "esmfold_v1", args.shape)
        ours = bl.load("esmfold_v1", weights=folder, device=args.device, dtype=dtype) if wanted(args, "bionemo-lite") else None
        hf = None
        if wanted(args, "transformers"):
            hf = EsmForProteinFolding.from_pretrained(folder).eval().to(args.device)
            if dtype != "float32":
                hf.esm.to(getattr(torch, dtype))  # the stem in reduced precision, the trunk fp32 (as ours)
        for n in lengths:
            seq = random_sequences(1, n, n, args.seed + n)[0]
            rows: list[Row] = []
            if ours is not None:
                sec = time_best(lambda: ours.predict(seq), args.repeat, args.device)
                rows.append(Row("bionemo-lite fold", sec, n, peer=False, note="default recycles"))
            if hf is not None:
                def run_hf():
                    with torch.inference_mode():
                        hf.infer([seq])  # upstream's default recycles, as ours

                rows.append(Row("transformers EsmForProteinFolding.infer", time_best(run_hf, args.repeat, args.device),
                                n, peer=True, note="default recycles"))
            out.append(table(f"ESMFold ({args.shape} shape, random weights), one sequence of {n} residues, "
                             f"{args.device} {dtype}", rows, "residues/s", args))
    text = "\n".join(out)
    print(text)
    return text


if __name__ == "__main__":
    main()
