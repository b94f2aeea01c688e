"""ESM-2 embeddings side by side: bionemo-lite vs fair-esm, transformers EsmModel and esm.cpp.

One run, the same random weights (the variant's published architecture, written
in the official formats and read by every implementation) and the same random
sequences; prints residues/s and the ratio to the best peer.

    python benchmarks/esm2_side_by_side.py                       # CPU: 8M, 300 seqs of 30-1022, 4k batches, 2 threads
    python benchmarks/esm2_side_by_side.py --device cuda --dtype bf16 --variant esm2_t33_650M_UR50D --tokens-per-batch 65536

esm.cpp (PyPI ``esm-cpp``, CPU only) is installed into its own virtual
environment under ``--work-dir`` if it is not there yet (it needs numpy<2) and
runs in a subprocess on the same safetensors, with packed batches
(`forward_scheduled`, its recommended path), fp32 and its int8 weights.
Peers run on the padded length-sorted token-budget batches they are built for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import Row, base_parser, dtype_name, random_sequences, setup, table, time_best, torch_dtype, wanted  # noqa: E402

ESM_CPP_VERSION = "0.2.1"
ESM_CPP_WORKER = r"""
import json, os, sys, time
import numpy as np
import esm_cpp
args = json.loads(sys.argv[1])
data = np.load(args["tokens"], allow_pickle=True)
seqs = [np.asarray(a, dtype=np.int32) for a in data["tokens"]]
out = {}
model = esm_cpp.Model.load_from_safetensors(args["weights"])
for mode in args["modes"]:
    if mode == "int8":
        model.quantize_weights()
    model.forward_scheduled(seqs[:8])
    best = float("inf")
    for _ in range(args["repeat"]):
        t0 = time.perf_counter()
        model.forward_scheduled(seqs, max_batch_size=args["max_batch_size"])
        best = min(best, time.perf_counter() - t0)
    out[mode] = best
print("RESULT " + json.dumps(out))
"""


def create_parser():
    p = base_parser(__doc__, "esm2_t6_8M_UR50D")
    p.add_argument("--esm-cpp-python", type=Path, help="a python that has esm_cpp (default: install one in --work-dir)")
    return p


def write_weights(variant: str, folder: Path):
    """The variant's architecture with random weights: fair-esm .pt, HF folder, official-layout safetensors."""
    import torch

    import bionemo_lite as bl
    from bionemo_lite.zoo.esm2.checkpoint import hf_key_for
    from bionemo_lite.zoo.esm2.testing import TinyEsm2, random_fair_esm2, write_fair_esm_checkpoint, write_hf_esm_dir

    cfg = bl.get_spec(variant).config
    arch = TinyEsm2(cfg["num_layers"], cfg["embed_dim"], cfg["attention_heads"])
    pt = write_fair_esm_checkpoint(folder / "fair", variant, arch)
    hf = write_hf_esm_dir(folder / "hf", arch)
    # esm.cpp reads the hub's EsmForMaskedLM layout with per-layer rotary inv_freq tensors.
    from safetensors.torch import save_file

    state = {hf_key_for(k): v.clone() for k, v in random_fair_esm2(arch)[0].state_dict().items() if hf_key_for(k)}
    head_dim = arch.embed_dim // arch.attention_heads
    inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    for i in range(arch.num_layers):
        state[f"esm.encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq"] = inv_freq.clone()
    safetensors = folder / "esm_cpp" / "model.safetensors"
    safetensors.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(safetensors))
    (safetensors.parent / "config.json").write_text((hf / "config.json").read_text())
    return pt, hf, safetensors


def esm_cpp_python(args) -> Path | None:
    """A python with esm_cpp: the given one, or a venv under the work dir (created and filled once)."""
    if args.esm_cpp_python:
        return args.esm_cpp_python
    venv = args.work_dir / "esmcpp-venv"
    py = venv / "bin" / "python"
    check = [str(py), "-c", "import esm_cpp"]
    if py.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return py
    print(f"installing esm-cpp=={ESM_CPP_VERSION} into {venv} ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", f"esm-cpp=={ESM_CPP_VERSION}", "numpy<2", "safetensors"],
                       check=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"esm.cpp unavailable: {exc}", file=sys.stderr)
        return None
    return py


def run_esm_cpp(args, safetensors: Path, token_rows, modes) -> dict[str, float]:
    import numpy as np

    py = esm_cpp_python(args)
    if py is None:
        return {}
    tokens = args.work_dir / "esm_cpp_tokens.npz"
    arr = np.empty(len(token_rows), dtype=object)
    arr[:] = [np.asarray(r, dtype=np.int32) for r in token_rows]
    np.savez(tokens, tokens=arr)
    # forward_scheduled packs up to max_batch_size sequences: keep its batches near our token budget.
    mean_len = sum(len(r) for r in token_rows) / len(token_rows)
    spec = {"tokens": str(tokens), "weights": str(safetensors), "modes": modes, "repeat": args.repeat,
            "max_batch_size": max(1, int(args.tokens_per_batch // mean_len))}
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run([str(py), "-c", ESM_CPP_WORKER, json.dumps(spec)], capture_output=True, text=True, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        print(f"esm.cpp failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return {}
    return json.loads(line.removeprefix("RESULT "))


def run_onnxruntime(args, pt: Path, workload, warm_workload, residues: int) -> Row:
    """Our exported encoder (the graph Triton serves: padded ``[batch, length]``) under ONNX Runtime's CPU
    provider, on the same padded batches as the peers; pooling in numpy."""
    import onnxruntime as ort

    import bionemo_lite as bl
    from bionemo_lite.triton.onnx_export import export_onnx
    from bionemo_lite.zoo.esm2.alphabet import ALPHABET

    model = bl.load(args.variant, weights=pt, device="cpu")
    path = export_onnx(model.onnx_encoder(), args.work_dir / "esm2_encoder.onnx")
    model.close()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    def tokens(seqs, batches):
        return [ALPHABET.batch_tokens([seqs[i] for i in b]).numpy() for b in batches]

    prepared, warm = tokens(*workload), tokens(*warm_workload)

    def run(prepared=prepared):
        for toks in prepared:
            (rep,) = session.run(None, {"tokens": toks})
            mask = ((toks != ALPHABET.cls_idx) & (toks != ALPHABET.eos_idx) & (toks != ALPHABET.pad_idx))[..., None]
            (rep * mask).sum(1) / mask.sum(1)

    note = f"onnxruntime {ort.__version__} CPUExecutionProvider, exported padded graph, padded batches"
    return Row("bionemo-lite ONNX Runtime", time_best(run, args.repeat, warmup=lambda: run(warm)), residues,
               peer=False, note=note)


def main(argv: list[str] | None = None) -> str:
    args = create_parser().parse_args(argv)
    dtype = dtype_name(args.dtype)
    if args.dry_run:
        print(f"plan: {args.variant} on {args.device} in {dtype}, {args.num_seqs} random sequences of "
              f"{args.min_len}-{args.max_len}, {args.tokens_per_batch}-token batches, {args.threads} threads")
        return ""
    import argparse as ap

    import torch

    import bionemo_lite as bl
    from bionemo_lite.batching import token_budget_batches
    from bionemo_lite.zoo.esm2.alphabet import ALPHABET

    setup(args)
    seqs = random_sequences(args.num_seqs, args.min_len, args.max_len, args.seed)
    residues = sum(len(s) for s in seqs)
    records = {f"s{i}": s for i, s in enumerate(seqs)}
    batches = token_budget_batches([len(s) for s in seqs], args.tokens_per_batch, extra_tokens=2)
    # every implementation warms up on other sequences of the same lengths' distribution (see `time_best`)
    others = random_sequences(args.num_seqs, args.min_len, args.max_len, args.seed + 1)
    other_records = {f"w{i}": s for i, s in enumerate(others)}
    other_batches = token_budget_batches([len(s) for s in others], args.tokens_per_batch, extra_tokens=2)
    rows: list[Row] = []
    dev = args.device
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        pt, hf_dir, safetensors = write_weights(args.variant, Path(tmp))

        def ours(name: str, compiled: bool = False, autocast: bool = False, **options):
            if not wanted(args, name):
                return
            options = {"dtype": dtype, **options}
            model = bl.load(args.variant, weights=pt, device=dev, **options)
            note = ", ".join(f"{k}={v}" for k, v in options.items())
            if compiled:  # inductor over each layer's packed forward (attention's per-bucket loop breaks the graph)
                for layer in model.network.layers:
                    layer.forward_packed = torch.compile(layer.forward_packed, dynamic=True)
                note += ", torch.compile(dynamic=True) per layer, warm-up compiles"
            def embed(what):
                if not autocast:
                    return model.embed(what, pooling="mean", tokens_per_batch=args.tokens_per_batch)
                with torch.autocast(torch.device(dev).type, dtype=torch.bfloat16):
                    return model.embed(what, pooling="mean", tokens_per_batch=args.tokens_per_batch)

            if autocast:
                note += ", torch.autocast(bfloat16) over fp32 weights"
            sec = time_best(lambda: embed(records), args.repeat, dev, warmup=lambda: embed(other_records))
            rows.append(Row(name, sec, residues, peer=False, note=note))
            model.close()

        import warnings

        warnings.simplefilter("ignore")  # random weights are not the published checkpoint
        ours("bionemo-lite packed")
        ours("bionemo-lite padded", packing=False)
        if dev == "cpu" and dtype == "float32":  # the opt-in reduced precisions, beside fp32 peers
            ours("bionemo-lite packed bf16", dtype="bfloat16")
            ours("bionemo-lite packed int8", quantize="int8")
            ours("bionemo-lite packed bf16 autocast", autocast=True)
        if dev == "cpu":  # the other CPU paths issue 11 weighs: inductor and ONNX Runtime
            ours("bionemo-lite packed torch.compile", compiled=True)
            if wanted(args, "bionemo-lite ONNX Runtime"):
                rows.append(run_onnxruntime(args, pt, (seqs, batches), (others, other_batches), residues))

        prepared = [ALPHABET.batch_tokens([seqs[i] for i in b]).to(dev) for b in batches]
        prepared_others = [ALPHABET.batch_tokens([others[i] for i in b]).to(dev) for b in other_batches]
        if wanted(args, "fair-esm"):
            import esm

            with torch.serialization.safe_globals([ap.Namespace]):
                ref, _ = esm.pretrained.load_model_and_alphabet_local(str(pt))
            ref = ref.eval().to(dev, torch_dtype(dtype))
            last = ref.num_layers

            def run_fair(prepared=prepared):
                with torch.inference_mode():
                    for toks in prepared:
                        rep = ref(toks, repr_layers=[last])["representations"][last]
                        mask = ((toks != 0) & (toks != 1) & (toks != 2)).unsqueeze(-1).to(rep.dtype)
                        ((rep * mask).sum(1) / mask.sum(1)).float().cpu()

            sec = time_best(run_fair, args.repeat, dev, warmup=lambda: run_fair(prepared_others))
            rows.append(Row("fair-esm 2.0.0", sec, residues, peer=True, note="padded batches"))
            del ref
        if wanted(args, "transformers"):
            import transformers
            from transformers import EsmModel

            hf = EsmModel.from_pretrained(hf_dir, add_pooling_layer=False, attn_implementation="sdpa")
            hf = hf.eval().to(dev, torch_dtype(dtype))

            def run_hf(prepared=prepared):
                with torch.inference_mode():
                    for toks in prepared:
                        att = toks.ne(ALPHABET.pad_idx)
                        rep = hf(input_ids=toks, attention_mask=att).last_hidden_state
                        mask = (att & toks.ne(ALPHABET.cls_idx) & toks.ne(ALPHABET.eos_idx)).unsqueeze(-1).to(rep.dtype)
                        ((rep * mask).sum(1) / mask.sum(1)).float().cpu()

            sec = time_best(run_hf, args.repeat, dev, warmup=lambda: run_hf(prepared_others))
            rows.append(Row(f"transformers {transformers.__version__} EsmModel", sec, residues, peer=True,
                            note="SDPA, padded batches"))
            del hf
        if dev == "cpu" and wanted(args, "esm.cpp"):
            token_rows = [[ALPHABET.cls_idx, *ALPHABET.encode(s), ALPHABET.eos_idx] for s in seqs]
            modes = ["fp32"] + (["int8"] if wanted(args, "esm.cpp int8") else [])
            for mode, sec in run_esm_cpp(args, safetensors, token_rows, modes).items():
                rows.append(Row(f"esm.cpp {ESM_CPP_VERSION} {mode}", sec, residues, peer=True,
                                note="forward_scheduled (packed), logits"))
    title = (f"ESM-2 embed (mean pooling), {args.variant} architecture, random weights, {len(seqs)} sequences "
             f"of {args.min_len}-{args.max_len} ({residues:,} residues), {args.tokens_per_batch}-token batches, "
             f"{dev} {dtype}")
    text = table(title, rows, "residues/s", args)
    print(text)
    return text


if __name__ == "__main__":
    main()
