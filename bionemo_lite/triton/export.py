"""Export a registered model as a standard Triton model repository.

    >>> from bionemo_lite.triton import export_model
    >>> export_model("esm2_t6_8M_UR50D", "model_repository", weights="esm2_t6_8M_UR50D.pt")

Layout (``python`` format; one Triton model per verb, see `protocol`)::

    model_repository/
      esm2_t6_8M_UR50D/              embed, dynamic batching
        config.pbtxt
        export_report.json
        1/model.py                   bionemo_lite/triton/backend_model.py
        1/weights/esm2_t6_8M_UR50D.pt (+ -contact-regression.pt)
      esm2_t6_8M_UR50D__score/       score; reads ../esm2_t6_8M_UR50D/1/weights
      esm2_t6_8M_UR50D__generate/    generate; same weights

Every verb the model's spec declares and Triton can serve is exported (embed,
score, generate, decode, fold; choose with ``verbs``): e.g. ``megamolbart``
gives ``megamolbart`` (SMILES embed), ``megamolbart__decode``,
``megamolbart__generate`` and ``megamolbart__score``; ``esmfold_v1`` gives
``esmfold_v1__fold``. The weights live in the first verb's folder.

Weights are copied into the repository and referenced by relative paths, so
the folder can be moved or mounted into a container as it is.

The ``onnx`` format traces ``model.onnx_encoder()`` and serves it behind the
same ``<model>`` embed interface: a python-backend model tokenises (from
``tokenizer.json``, no torch), runs the graph and pools. ``onnx_runtime``
chooses where the graph runs: ``"triton"`` writes it as its own model
``<model>__onnx`` (``platform: "onnxruntime_onnx"``, input token ids
``INT64 [-1]``) that the front model calls, which needs Triton's onnxruntime
backend (NVIDIA's container); ``"embedded"`` keeps ``model.onnx`` next to the
front model and runs it with the ``onnxruntime`` package inside the python
backend (any tritonserver, the nvidia-pytriton one included).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import InvalidInputError, UnsupportedVerbError
from ..registry import get_spec, load
from ..spec import ModelSpec
from ..weights import resolve_weights
from .config import DynamicBatching, ModelConfig, TensorSpec, default_preferred_sizes, string_parameters
from .protocol import SERVABLE_VERBS, triton_model_name

Format = Literal["python", "onnx"]
Kind = Literal["cpu", "gpu"]
OnnxRuntime = Literal["triton", "embedded"]

BACKEND_MODEL = Path(__file__).with_name("backend_model.py")
REPORT_NAME = "export_report.json"

EMBED_INPUTS = (TensorSpec("sequences", "TYPE_STRING", (1,)),)
EMBED_OUTPUTS = (
    TensorSpec("embeddings", "TYPE_FP32", (-1, -1, -1)),
    TensorSpec("lengths", "TYPE_INT32", (1,)),
    TensorSpec("layers", "TYPE_INT32", (-1,)),
    TensorSpec("truncated", "TYPE_BOOL", (1,)),
    TensorSpec("errors", "TYPE_STRING", (1,)),
)
JSON_INPUTS = (TensorSpec("sequences", "TYPE_STRING", (-1,)),)
# Verbs answered one request per call (no batcher: their requests cannot be merged row by row).
UNBATCHED_INPUTS = {
    "score": JSON_INPUTS,
    "generate": JSON_INPUTS,
    "fold": (TensorSpec("sequence", "TYPE_STRING", (1,)),),
    "decode": (TensorSpec("hiddens", "TYPE_FP32", (-1, -1, -1)), TensorSpec("mask", "TYPE_BOOL", (-1, -1))),
}
UNBATCHED_INPUTS["predict"] = JSON_INPUTS  # a fine-tuned model (bionemo_lite.finetune)
UNBATCHED_OUTPUTS = {
    "score": (TensorSpec("result", "TYPE_STRING", (1,)), TensorSpec("scores", "TYPE_FP32", (-1,))),
    "generate": (TensorSpec("result", "TYPE_STRING", (1,)),),
    "fold": (TensorSpec("result", "TYPE_STRING", (1,)), TensorSpec("plddt", "TYPE_FP32", (-1,)),
             TensorSpec("pae", "TYPE_FP32", (-1, -1))),
    "decode": (TensorSpec("generated", "TYPE_STRING", (-1,)),),
}
UNBATCHED_OUTPUTS["predict"] = (TensorSpec("result", "TYPE_STRING", (1,)),)


@dataclass
class ExportReport:
    """What `export_model` wrote (also saved as ``<model>/export_report.json``).

    Attributes:
        model: registered name; repository: the folder; format: ``python`` or ``onnx``.
        triton_models: ``{verb: Triton model name}``.
        weights: the checkpoint as referenced from the repository.
        onnx: parity check of the ONNX graph against torch (onnx format only).
        seconds: time the export took.
    """

    model: str
    repository: str
    format: str
    triton_models: dict[str, str]
    weights: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    onnx: dict[str, Any] | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_settings(fmt: str, max_batch_size: int, instances: int, kind: str, delay: int, sizes: tuple[int, ...],
                    onnx_runtime: str) -> None:
    if fmt not in ("python", "onnx"):
        raise InvalidInputError(f"format must be 'python' or 'onnx', got {fmt!r}")
    if kind not in ("cpu", "gpu"):
        raise InvalidInputError(f"kind must be 'cpu' or 'gpu', got {kind!r}")
    if onnx_runtime not in ("triton", "embedded"):
        raise InvalidInputError(f"onnx_runtime must be 'triton' or 'embedded', got {onnx_runtime!r}")
    if max_batch_size < 1:
        raise InvalidInputError(f"max_batch_size must be at least 1, got {max_batch_size}")
    if instances < 1:
        raise InvalidInputError(f"instances must be at least 1, got {instances}")
    if delay < 0:
        raise InvalidInputError(f"max_queue_delay_us must be >= 0, got {delay}")
    bad = [s for s in sizes if not 1 <= s <= max_batch_size]
    if bad:
        raise InvalidInputError(f"preferred batch sizes must lie in 1..{max_batch_size} (max_batch_size), got {bad}")


def _companions(path: Path, spec: ModelSpec) -> list[Path]:
    """Files that travel with a checkpoint file: those named by the spec's weight
    sources (e.g. the contact regression) and ``<stem>-*`` siblings."""
    names = {f.filename for src in spec.weights for f in src.files if src.entry == path.name}
    found = [path.parent / n for n in sorted(names) if n != path.name and (path.parent / n).is_file()]
    found += [p for p in sorted(path.parent.glob(f"{path.stem}-*")) if p.is_file() and p not in found]
    return found


def copy_weights(path: Path, spec: ModelSpec, dest: Path) -> Path:
    """Copy a checkpoint (file and companions, or a whole folder) into `dest`; returns the new entry."""
    dest.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        target = dest / path.name
        shutil.copytree(path, target, dirs_exist_ok=True)
        return target
    for item in (path, *_companions(path, spec)):
        shutil.copy2(item, dest / item.name)
    return dest / path.name


def _replace_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    (path / "1").mkdir(parents=True)
    return path


def export_model(
    name: str,
    repository: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    format: Format = "python",
    max_batch_size: int = 64,
    instances: int = 1,
    kind: Kind = "cpu",
    max_queue_delay_us: int = 2000,
    preferred_batch_sizes: tuple[int, ...] | list[int] | None = None,
    *,
    verbs: tuple[str, ...] | list[str] | None = None,
    dtype: str | None = None,
    num_threads: int | None = None,
    tokens_per_batch: int | None = None,
    onnx_runtime: OnnxRuntime = "triton",
    onnx_tolerance: float = 1e-4,
    copy: bool = True,
    numerics: str | None = None,
) -> ExportReport:
    """Write `name` as a Triton model repository under `repository`.

    Args:
        name: a registered model, e.g. ``"esm2_t33_650M_UR50D"``.
        repository: the model repository folder (created if needed; other
            models in it are left alone, this model's folders are replaced).
        weights: checkpoint path; None uses the cache.
        format: ``"python"`` (the plugin in Triton's python backend; every
            verb) or ``"onnx"`` (the encoder as an ONNX graph; embed only).
        max_batch_size: largest batch the dynamic batcher forms (sequences).
        instances: model instances (per GPU with ``kind="gpu"``).
        kind: ``"gpu"`` (``KIND_GPU``) or ``"cpu"`` (``KIND_CPU``).
        max_queue_delay_us: how long a request may wait for others to batch with.
        preferred_batch_sizes: batch sizes the batcher aims for (default: a
            quarter, half and all of `max_batch_size`).
        verbs: verbs to export (default: every verb of the model's spec that
            Triton serves: embed, score, generate, decode, fold).
        dtype: compute dtype in the server (None: the family's default for the device).
        num_threads: torch / onnxruntime CPU threads per instance.
        tokens_per_batch: token budget of the model's inner batches.
        onnx_runtime: where the ONNX graph runs (see the module docs).
        onnx_tolerance: largest ONNX-vs-torch difference accepted.
        copy: copy the weights into the repository (False: reference them by
            absolute path; the repository then cannot move).
        numerics: ``"fast"`` or ``"reference"`` arithmetic in the server, for
            families that offer the choice (see `bionemo_lite.load`); None: the family's default.

    The checkpoint is loaded on the CPU, and so checked, before anything is
    written: a file the family cannot read leaves the repository untouched.

    Raises:
        UnknownModelError, WeightsNotFoundError, CheckpointError: as `bionemo_lite.load`.
        UnsupportedVerbError: a verb the model lacks, or ONNX for a model without an encoder export.
        InvalidInputError: a setting out of range.
        BionemoLiteError: the ONNX graph disagrees with torch beyond `onnx_tolerance`.
    """
    started = time.perf_counter()
    sizes = tuple(preferred_batch_sizes) if preferred_batch_sizes else default_preferred_sizes(max_batch_size)
    _check_settings(format, max_batch_size, instances, kind, max_queue_delay_us, sizes, onnx_runtime)
    spec = get_spec(name)
    wanted = tuple(verbs) if verbs else tuple(v for v in SERVABLE_VERBS if v in spec.verbs)
    for verb in wanted:
        if verb not in spec.verbs or verb not in SERVABLE_VERBS:
            raise UnsupportedVerbError(name, f"serve {verb!r} on Triton", [v for v in SERVABLE_VERBS if v in spec.verbs])
    if format == "onnx" and wanted != ("embed",):
        if verbs or "embed" not in spec.verbs:
            raise UnsupportedVerbError(
                name, f"export {', '.join(wanted)} to ONNX (only an embedding encoder can be; use the python format)",
                sorted(spec.verbs),
            )
        wanted = ("embed",)
    if not wanted:
        raise UnsupportedVerbError(name, "be served on Triton", sorted(spec.verbs))
    root = Path(repository).expanduser().resolve()
    source = resolve_weights(spec, weights)
    # Load before writing anything: a file that is no checkpoint of this family (or a wrong shape, a
    # truncated download) fails here with the loader's own error instead of in Triton at serve time.
    model = load(name, weights=source, device="cpu", dtype=None if format == "python" else "float32",
                 numerics=numerics)
    common = {
        "max_batch_size": max_batch_size,
        "instances": instances,
        "kind": kind,
        "max_queue_delay_us": max_queue_delay_us,
        "preferred_batch_sizes": list(sizes),
        "dtype": dtype,
        "num_threads": num_threads,
        "tokens_per_batch": tokens_per_batch,
        "numerics": numerics,
    }
    instance_kind = "KIND_GPU" if kind == "gpu" else "KIND_CPU"
    batching = DynamicBatching(sizes, max_queue_delay_us)
    base_params = {
        "bionemo_lite_model": name,
        "input_kind": spec.input_kind,
        "max_length": spec.max_length,
        "dtype": dtype,
        "num_threads": num_threads,
        "tokens_per_batch": tokens_per_batch,
        "numerics": numerics,
    }
    try:
        root.mkdir(parents=True, exist_ok=True)
        if format == "onnx":
            report = _export_onnx(model, root, spec, base_params, batching, max_batch_size, instance_kind,
                                  instances, onnx_runtime, onnx_tolerance)
            report.settings = {**common, "onnx_runtime": onnx_runtime}
        else:
            report = _export_python(name, root, source, spec, wanted, base_params, batching, max_batch_size,
                                    instance_kind, instances, copy)
            report.settings = common
    finally:
        model.close()
    report.seconds = round(time.perf_counter() - started, 3)
    (root / triton_model_name(name, wanted[0]) / REPORT_NAME).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _export_python(
    name: str, root: Path, source: Path, spec: ModelSpec, verbs: tuple[str, ...], base_params: dict[str, Any],
    batching: DynamicBatching, max_batch_size: int, instance_kind: str, instances: int, copy: bool,
) -> ExportReport:
    models: dict[str, str] = {}
    weights_entry: Path | None = None
    for verb in verbs:
        model_name = triton_model_name(name, verb)
        folder = _replace_dir(root / model_name)
        version = folder / "1"
        if weights_entry is None:
            weights_entry = copy_weights(source, spec, version / "weights") if copy else source.resolve()
        ref = os.path.relpath(weights_entry, version) if copy else str(weights_entry)
        params = string_parameters({**base_params, "verb": verb, "runtime": "plugin", "weights": ref})
        if verb == "embed":
            config = ModelConfig(model_name, EMBED_INPUTS, EMBED_OUTPUTS, backend="python",
                                 max_batch_size=max_batch_size, dynamic_batching=batching,
                                 instance_kind=instance_kind, instance_count=instances, parameters=params)
        else:
            # One request is one call of the verb (variant scoring needs its whole request, a fold is one
            # structure, decode inputs differ in shape from request to request): no batcher.
            config = ModelConfig(model_name, UNBATCHED_INPUTS[verb], UNBATCHED_OUTPUTS[verb], backend="python",
                                 max_batch_size=0, instance_kind=instance_kind, instance_count=instances,
                                 parameters=params)
        (folder / "config.pbtxt").write_text(config.render())
        shutil.copy2(BACKEND_MODEL, version / "model.py")
        models[verb] = model_name
    assert weights_entry is not None
    shown = os.path.relpath(weights_entry, root) if copy else str(weights_entry)
    return ExportReport(name, str(root), "python", models, weights=shown)


def _export_onnx(
    model: Any, root: Path, spec: ModelSpec, base_params: dict[str, Any], batching: DynamicBatching,
    max_batch_size: int, instance_kind: str, instances: int, runtime: str, tolerance: float,
) -> ExportReport:
    from ..verbs import OnnxExportable
    from .onnx_export import check_parity, check_sequences, check_tokenizer, encoder_width, export_onnx
    from .tokens import CharTokenizer

    name = model.name
    if not isinstance(model, OnnxExportable):
        raise UnsupportedVerbError(name, "export to ONNX", sorted(model.verbs))
    encoder = model.onnx_encoder()
    if "tokenizer" not in encoder.extra:
        raise UnsupportedVerbError(name, "be served from ONNX (its encoder declares no tokenizer)", ["embed"])
    tokenizer = CharTokenizer.from_dict(encoder.extra["tokenizer"])
    num_layers = int(encoder.extra.get("num_layers", model.config.get("num_layers", 0)))
    layers = [int(v) for v in encoder.extra.get("layers", [num_layers])]
    check_tokenizer(encoder, tokenizer, check_sequences())
    front = _replace_dir(root / name)
    onnx_name = triton_model_name(name, "embed") + "__onnx"
    if runtime == "triton":
        graph_dir = _replace_dir(root / onnx_name)
        graph_path = export_onnx(encoder, graph_dir / "1" / "model.onnx")
    else:
        if (root / onnx_name).exists():
            shutil.rmtree(root / onnx_name)  # a stale graph model from an earlier export
        graph_path = export_onnx(encoder, front / "1" / "model.onnx")
    parity = check_parity(encoder, graph_path, tolerance)
    dim = encoder_width(encoder)
    (front / "1" / "tokenizer.json").write_text(json.dumps(tokenizer.to_dict(), indent=1) + "\n")
    shutil.copy2(BACKEND_MODEL, front / "1" / "model.py")
    params = string_parameters({
        **base_params,
        "verb": "embed",
        "runtime": "onnxruntime" if runtime == "embedded" else "triton",
        "onnx_path": os.path.relpath(graph_path, front / "1"),
        "onnx_model": onnx_name if runtime == "triton" else None,
        "onnx_layers": layers,
        "onnx_outputs": list(encoder.output_names),
        "num_layers": num_layers,
        "bos_index": encoder.bos_index,
        "embed_dim": dim,
        "onnx_max_abs_diff": f"{parity.max_abs_diff:.3e}",
    })
    config = ModelConfig(name, EMBED_INPUTS, EMBED_OUTPUTS, backend="python", max_batch_size=max_batch_size,
                         dynamic_batching=batching, instance_kind=instance_kind, instance_count=instances,
                         parameters=params)
    (front / "config.pbtxt").write_text(config.render())
    models = {"embed": name}
    if runtime == "triton":
        # The graph as a standard Triton ONNX model (token ids in, hidden states out), usable on its own too.
        graph_config = ModelConfig(
            onnx_name,
            tuple(TensorSpec(n, "TYPE_INT64", (-1,)) for n in encoder.input_names),
            tuple(TensorSpec(n, "TYPE_FP32", (-1, dim)) for n in encoder.output_names),
            platform="onnxruntime_onnx", max_batch_size=max_batch_size, instance_kind=instance_kind,
            instance_count=instances,
        )
        (root / onnx_name / "config.pbtxt").write_text(graph_config.render())
        models["onnx"] = onnx_name
    return ExportReport(name, str(root), "onnx", models, weights=None, onnx=parity.to_dict())
