"""The ``bionemo-lite`` command line: list models, run batch jobs, manage weights, serve.

    bionemo-lite --version
    bionemo-lite models --verb embed
    bionemo-lite embed esm2_t33_650M_UR50D proteins.fasta -o embeddings.parquet
    bionemo-lite contacts esm2_t33_650M_UR50D proteins.fasta -o contacts.h5
    bionemo-lite score esm2_t33_650M_UR50D wt.fasta -o effects.csv --method masked_marginals --mutations muts.txt
    bionemo-lite fold esmfold_v1 proteins.fasta -o structures/ --attention-chunk-size 64
    bionemo-lite weights pull esm2_t33_650M_UR50D
    bionemo-lite serve --weights esm2_t6_8M_UR50D=esm2_t6_8M_UR50D.pt --numerics reference

Batch jobs resume: re-running a killed command computes only the records
missing from ``OUTPUT.job.sqlite``; ``--chunk-size`` is how many records are
computed between two checkpoints of that file. Exit status: 0 on success (also
when some records failed: see ``OUTPUT.errors.csv``, written only then), 1
when a `BionemoLiteError` stops the command or every record failed, 2 for
usage errors. The other columns of a CSV/TSV input are copied into the output
next to each record's results. ``-q`` silences log lines and progress bars,
the libraries' (transformers, openfold3, ...) too. torch, pyarrow and the
model code are imported only by the commands that need them, so listing and
``--help`` start fast.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, TypeVar

import typer

from .cli_keys import KEYS_COMMANDS, keys_app
from .cli_output import command_scope, setup_logging
from .cli_style import MARKUP_MODE, Command
from .errors import BionemoLiteError, InvalidInputError, UnsupportedVerbError
from .triton.cli import export_command, triton_app

if TYPE_CHECKING:
    from .spec import ModelSpec

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="bionemo-lite",
    help="Biomolecular models (ESM-2, ProtT5, ESMFold, OpenFold-3, MegaMolBART) behind four verbs: "
    "embed, score, generate, fold.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=MARKUP_MODE,
)
weights_app = typer.Typer(help="List cached weights and download official ones.", no_args_is_help=True,
                          rich_markup_mode=MARKUP_MODE)
app.add_typer(weights_app, name="weights")
app.add_typer(triton_app, name="triton")
app.command("export", cls=Command)(export_command)

MUTATION_METHODS = ("masked_marginals", "wt_marginals")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bionemo-lite")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from . import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"bionemo-lite {_version()}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    # Options of `bionemo-lite` itself; its help text is the app's.
    pass


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code)


def handles_errors(fn: F) -> F:
    """Turn the project's errors into a one-line message and exit status 1 (no traceback).

    An output extension no writer knows is a usage error (status 2). Ctrl-C in
    a batch job says how to resume.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .io.writers import UnsupportedFormatError

        try:
            with command_scope():  # quiet mode and the like end with the command
                return fn(*args, **kwargs)
        except UnsupportedFormatError as exc:
            raise _fail(str(exc), 2) from None
        except BionemoLiteError as exc:
            raise _fail(str(exc), 1) from None
        except OSError as exc:  # a full disk outside a job's own files (those are a DiskFullError already)
            from .errors import DiskFullError
            from .io.atomic import disk_full_errno

            number = disk_full_errno(exc)
            if number is None:
                raise
            raise _fail(str(DiskFullError(exc.filename or "a file", os.strerror(number))), 1) from None
        except KeyboardInterrupt:
            typer.echo("\nInterrupted; finished chunks are kept: run the same command again to resume.", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _human_count(n: int | None) -> str:
    if not n:
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.0f}{unit}" if value >= 10 or value == int(value) else f"{value:.1f}{unit}"
    return str(n)


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for line in [header, *rows]:
        typer.echo("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)).rstrip())


@app.command("models", cls=Command)
@handles_errors
def models_command(
    verb: Optional[str] = typer.Option(
        None, "--verb", help="Only models with this verb (embed, score, generate, fold, ...)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the registered models and whether their weights are available locally."""
    from .registry import list_models, plugin_errors
    from .spec import CORE_VERBS
    from .weights import weights_available

    if verb is not None:
        known = sorted(set(CORE_VERBS).union(*(s.verbs for s in list_models())))
        if verb not in known:
            raise typer.BadParameter(f"unknown verb {verb!r}; the verbs are: {', '.join(known)}", param_hint="--verb")
    specs = list_models(verb=verb)
    for name, error in plugin_errors.items():
        typer.echo(f"Warning: model plugin {name!r} failed to load: {error}", err=True)
    if as_json:
        typer.echo(json.dumps([{**s.to_dict(), "weights_available": weights_available(s)} for s in specs], indent=2))
        return
    rows = [
        [s.name, s.family, ",".join(sorted(s.verbs)), _human_count(s.params), str(s.max_length),
         "yes" if weights_available(s) else "no"]
        for s in specs
    ]
    _print_table(["name", "family", "verbs", "params", "max_length", "weights"], rows)


def check_device(device: str) -> None:
    """The core's device check, reported as a usage error of ``--device`` (exit 2)."""
    from .devices import DeviceUnavailableError, check_device as core_check_device

    try:
        core_check_device(device)
    except DeviceUnavailableError as exc:
        raise typer.BadParameter(str(exc), param_hint="--device") from None


def check_dtype(dtype: str | None) -> None:
    """An unknown ``--dtype`` is a usage error (exit 2), found before any weights are read."""
    if dtype is None:
        return
    from .weights import resolve_dtype

    try:
        resolve_dtype(dtype, "cpu")
    except InvalidInputError as exc:
        raise typer.BadParameter(exc.reason, param_hint="--dtype") from None


def _model_spec(name: str, verb: str) -> ModelSpec:
    """The registered `ModelSpec` of `name`, which must have `verb` (errors exit 1)."""
    from .registry import get_spec, require_verb

    spec = get_spec(name)
    require_verb(spec, verb)
    return spec


def check_embed_options(spec: ModelSpec, layers: list[int] | None, pooling: str) -> None:
    """``--layer`` and ``--pooling`` as usage errors (exit 2), checked from the spec before any weights are read.

    Layers are checked against ``spec.config["num_layers"]`` when the spec has
    it; poolings against ``spec.config["poolings"]`` when it has them, else
    against every pooling a family knows (the model refines both once loaded).
    """
    from .encoding import resolve_layers
    from .pooling import get_pooling

    try:
        get_pooling(pooling, spec.poolings)
    except InvalidInputError as exc:
        raise typer.BadParameter(exc.reason, param_hint="--pooling") from None
    if layers and "num_layers" in spec.config:
        try:
            resolve_layers(layers, int(spec.config["num_layers"]))
        except InvalidInputError as exc:
            raise typer.BadParameter(exc.reason, param_hint="--layer") from None


def check_numerics(spec: ModelSpec, numerics: str | None) -> str | None:
    """The numerics mode `spec`'s model will run with (None: it has no choice); an unknown one is a usage error."""
    from .registry import resolve_numerics

    try:
        return resolve_numerics(spec, numerics)
    except InvalidInputError as exc:
        raise typer.BadParameter(exc.reason, param_hint="--numerics") from None


def _load_model(
    spec: ModelSpec, weights: Path | None, device: str, dtype: str | None, numerics: str | None = None,
    backend: str = "inprocess", triton_url: str | None = None,
) -> Any:
    """The model a batch job runs: loaded here, or the one a Triton server serves (``--backend triton``).

    In-process, the device, dtype and numerics are checked first (usage errors);
    `load` then finds the weights (``model.weights_path``). The job's identity is
    computed from the model by the core (`bionemo_lite.jobs.job_identity`).
    """
    if backend == "triton":
        from .triton.remote import RemoteModel

        if triton_url is None:
            raise typer.BadParameter("--backend triton needs --triton-url HOST:PORT", param_hint="--triton-url")
        for option, value in (("--weights", weights), ("--dtype", dtype), ("--numerics", numerics)):
            if value is not None:
                raise typer.BadParameter(f"{option} is the Triton export's to choose; drop it with --backend triton",
                                         param_hint=option)
        return RemoteModel.connect(spec.name, triton_url)
    if backend != "inprocess":
        raise typer.BadParameter(f"must be inprocess or triton, got {backend!r}", param_hint="--backend")
    from .registry import load

    check_device(device)
    check_dtype(dtype)
    mode = check_numerics(spec, numerics)
    logging.getLogger("bionemo_lite.cli").info("loading %s on %s", spec.name, device)
    try:
        model = load(spec.name, weights=weights, device=device, dtype=dtype, numerics=mode)
    except ValueError as exc:
        if isinstance(exc, BionemoLiteError):
            raise
        raise typer.BadParameter(str(exc)) from None  # e.g. an unknown --dtype
    logging.getLogger("bionemo_lite.cli").info("loaded %s from %s", spec.name, model.weights_path)
    return model


def _input_file(path: Path, kind: str) -> Any:
    """INPUT as an `InputFile`, its format and header checked now (usage errors, exit 2), before any model loads.

    Reading the first record is enough: the header (a CSV without a sequence
    column) and the format (text before a FASTA's first '>') fail there. Bad
    records further on are per-record failures of the job.
    """
    from .io.readers import InputFile

    try:
        source = InputFile(path, kind=kind)
        next(iter(source.items()), None)
    except InvalidInputError as exc:
        raise typer.BadParameter(exc.reason, param_hint="INPUT") from None
    return source


def _finish(summary: Any) -> None:
    """Report a job and exit non-zero when nothing succeeded."""
    if summary.up_to_date:
        typer.echo(f"nothing to do: {summary.n_ok} records already done in {summary.output}", err=True)
        return
    resumed = f" ({summary.n_skipped_resumed} resumed)" if summary.n_skipped_resumed else ""
    failed = f"; {summary.n_failed} failed, see {summary.errors_path}" if summary.n_failed else ""
    typer.echo(
        f"wrote {summary.n_ok} records to {summary.output}{resumed}{failed} in {summary.seconds:.1f} s", err=True
    )
    if summary.n_ok == 0 and summary.n_failed == 0:
        raise _fail("the input holds no records", 1)
    if summary.all_failed:
        raise _fail(f"every record failed; reasons in {summary.errors_path}", 1)


# Options shared by the batch commands.
WeightsOpt = typer.Option(None, "--weights", help="Checkpoint file or directory (default: the weight cache).")
DeviceOpt = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N.")
DtypeOpt = typer.Option(
    None, "--dtype", help="float32, float16 or bfloat16 (default: the family's choice for the device)."
)
NumericsOpt = typer.Option(
    None, "--numerics",
    help="fast (fused attention kernels) or reference (the reference implementation's exact arithmetic), for "
         "models that offer both (ESM-2); others ignore it (default: $BIONEMO_LITE_NUMERICS, else fast).",
)
ChunkOpt = typer.Option(
    512, "--chunk-size", min=1,
    help="Records per model call and per checkpoint of the job (a killed run loses at most one chunk).",
)
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bar or log lines.")
KeepOpt = typer.Option(False, "--keep-manifest", help="Keep OUTPUT.job.sqlite after a fully successful run.")
WaitOpt = typer.Option(False, "--wait", help="If another job is writing OUTPUT, wait for it to end instead of failing.")
TokensOpt = typer.Option(None, "--tokens-per-batch", min=1, help="Padded tokens per batch (default: the model's).")
TruncateOpt = typer.Option(
    False, "--truncate", help="Cut sequences longer than the model's maximum instead of failing them."
)
WindowOpt = typer.Option(
    False, "--window",
    help="Read sequences longer than the model's maximum through overlapping windows of that length (ESM-2, "
         "ESM-1, ProtT5; each residue from the window it is most central in) instead of failing them.",
)
WindowStrideOpt = typer.Option(
    None, "--window-stride", min=1, help="Residues between window starts (--window; default: half the window)."
)
BackendOpt = typer.Option(
    "inprocess", "--backend", help="inprocess (load the model here) or triton (the model a Triton server serves)."
)
TritonUrlOpt = typer.Option(None, "--triton-url", help="host:port of the Triton server's HTTP endpoint (--backend triton).")
ExecutorOpt = typer.Option(
    "local", "--executor",
    help="local (this process) or ray (Ray Data shards the records, a pool of actors runs the model; see README).",
)
RayAddressOpt = typer.Option(None, "--ray-address", help="Ray cluster: auto, or ray://HOST:10001 (default: a local one).")
RayActorsOpt = typer.Option(2, "--ray-actors", min=1, help="Actors in the pool, each with its own model (--executor ray).")
RayGpusOpt = typer.Option(0.0, "--ray-gpus-per-actor", min=0.0, help="GPUs per actor: 1 = one actor per GPU.")


def _run_batch(source: Any, task: Any, output: Path, loaded: Any, executor: str, ray_address: str | None,
               ray_actors: int, ray_gpus: float, backend: str, **kwargs: Any) -> Any:
    """`run_job` (``--executor local``) or `run_ray_job` (``--executor ray``): the same output either way."""
    from .jobs import job_identity, run_job

    if executor == "local":
        if ray_address is not None:
            raise typer.BadParameter("--ray-address needs --executor ray", param_hint="--ray-address")
        return run_job(source, task, output, params=job_identity(loaded), **kwargs)
    if executor != "ray":
        raise typer.BadParameter(f"must be local or ray, got {executor!r}", param_hint="--executor")
    if backend != "inprocess":
        raise typer.BadParameter("--executor ray loads the model in each actor; drop --backend triton",
                                 param_hint="--executor")
    from .jobs.ray_executor import factory_of, run_ray_job

    return run_ray_job(source, task, output, factory=factory_of(task, loaded), params=job_identity(loaded),
                       num_actors=ray_actors, num_gpus=ray_gpus, address=ray_address, **kwargs)


def _input_argument(help_text: str) -> Any:
    return typer.Argument(..., metavar="INPUT", exists=True, dir_okay=False, readable=True, help=help_text)


def _model_argument(verb: str) -> Any:
    return typer.Argument(..., metavar="MODEL", help=f"Model name (see `bionemo-lite models --verb {verb}`).")


@app.command("embed", cls=Command)
@handles_errors
def embed_command(
    model: str = _model_argument("embed"),
    input: Path = _input_argument("FASTA, CSV/TSV (id,sequence or id,smiles) or .smi file."),
    output: Path = typer.Option(..., "--output", "-o", help="Output file: .parquet, .h5 or .npz."),
    weights: Optional[Path] = WeightsOpt,
    layer: Optional[list[int]] = typer.Option(
        None, "--layer", help="Layer to return (0 = embeddings, -1 = last; repeat for several)."
    ),
    pooling: str = typer.Option(
        "mean", "--pooling",
        help="One of the model's poolings (`bionemo-lite models --json`), e.g. mean, max, bos, per_residue.",
    ),
    device: str = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    numerics: Optional[str] = NumericsOpt,
    tokens_per_batch: Optional[int] = TokensOpt,
    truncate: bool = TruncateOpt,
    window: bool = WindowOpt,
    window_stride: Optional[int] = WindowStrideOpt,
    chunk_size: int = ChunkOpt,
    quiet: bool = QuietOpt,
    keep_manifest: bool = KeepOpt,
    wait: bool = WaitOpt,
    backend: str = BackendOpt,
    triton_url: Optional[str] = TritonUrlOpt,
    executor: str = ExecutorOpt,
    ray_address: Optional[str] = RayAddressOpt,
    ray_actors: int = RayActorsOpt,
    ray_gpus: float = RayGpusOpt,
) -> None:
    """Embed every record of INPUT into OUTPUT (resumable; bad records go to OUTPUT.errors.csv)."""
    from .io.writers import EMBEDDING_FORMATS, output_suffix
    from .jobs import EmbedTask, job_identity, run_job
    from .verbs import length_policy

    setup_logging(quiet)
    output_suffix(output, EMBEDDING_FORMATS)
    spec = _model_spec(model, "embed")
    check_embed_options(spec, layer, pooling)
    source = _input_file(input, spec.input_kind)
    loaded = _load_model(spec, weights, device, dtype, numerics, backend, triton_url)
    task = EmbedTask(loaded, layers=tuple(layer or (-1,)), pooling=pooling,
                     on_too_long=length_policy(truncate, window, window_stride), tokens_per_batch=tokens_per_batch)
    summary = _run_batch(source, task, output, loaded, executor, ray_address, ray_actors, ray_gpus, backend,
                         chunk_size=chunk_size, progress=not quiet, keep_manifest=keep_manifest, wait=wait)
    _finish(summary)


@app.command("contacts", cls=Command)
@handles_errors
def contacts_command(
    model: str = typer.Argument(..., metavar="MODEL", help="A model that predicts contacts (ESM-2)."),
    input: Path = _input_argument("FASTA or CSV/TSV (id,sequence) of proteins."),
    output: Path = typer.Option(..., "--output", "-o", help="Output file: .h5, .npz or .parquet."),
    weights: Optional[Path] = typer.Option(
        None, "--weights", help="Checkpoint (with its -contact-regression.pt beside it; default: the weight cache)."
    ),
    device: str = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    numerics: Optional[str] = NumericsOpt,
    tokens_per_batch: Optional[int] = TokensOpt,
    truncate: bool = TruncateOpt,
    chunk_size: int = ChunkOpt,
    quiet: bool = QuietOpt,
    keep_manifest: bool = KeepOpt,
    wait: bool = WaitOpt,
) -> None:
    """Predict each record's residue contact map: an L x L float32 array of probabilities per record, as fair-esm's
    ``return_contacts=True`` (resumable; bad records go to OUTPUT.errors.csv)."""
    from .capabilities import has_method
    from .io.writers import EMBEDDING_FORMATS, output_suffix
    from .jobs import ContactsTask, job_identity, run_job
    from .verbs import ContactPredictor, length_policy
    from .registry import get_spec

    setup_logging(quiet)
    output_suffix(output, EMBEDDING_FORMATS)
    spec = get_spec(model)
    if has_method(spec, "contacts") is False:
        raise UnsupportedVerbError(spec.name, "predict contacts", sorted(spec.verbs))
    source = _input_file(input, spec.input_kind)
    loaded = _load_model(spec, weights, device, dtype, numerics)
    if not isinstance(loaded, ContactPredictor):
        raise UnsupportedVerbError(spec.name, "predict contacts", sorted(spec.verbs))
    task = ContactsTask(loaded, on_too_long=length_policy(truncate), tokens_per_batch=tokens_per_batch)
    summary = run_job(source, task, output, params=job_identity(loaded), chunk_size=chunk_size, progress=not quiet,
                      keep_manifest=keep_manifest, wait=wait)
    _finish(summary)


def _wild_type(path: Path, kind: str) -> Any:
    """The one record of a variant-effect INPUT."""
    from .records import Record

    records = []
    for item in _input_file(path, kind).items():
        if not isinstance(item, Record):
            raise InvalidInputError(item.reason, record=item.id or item.index)
        records.append(item)
        if len(records) > 1:
            break
    if len(records) != 1:
        raise InvalidInputError(
            f"with --mutations, INPUT must hold exactly one (wild-type) sequence; {path} holds "
            + ("none" if not records else "more than one")
        )
    return records[0]


@app.command("score", cls=Command)
@handles_errors
def score_command(
    model: str = _model_argument("score"),
    input: Path = _input_argument("Sequences (or SMILES) to score; with --mutations, the one wild type."),
    output: Path = typer.Option(..., "--output", "-o", help="Output table: .csv, .tsv or .parquet."),
    method: Optional[str] = typer.Option(
        None, "--method", help="pll, masked_marginals or wt_marginals (default: the model's own, e.g. pll)."
    ),
    mutations: Optional[Path] = typer.Option(
        None, "--mutations", exists=True, dir_okay=False,
        help="One mutation per line (A42G; several joined by ':') or a CSV with a 'mutation' column "
             "(its other columns are copied to the output).",
    ),
    weights: Optional[Path] = WeightsOpt,
    device: str = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    numerics: Optional[str] = NumericsOpt,
    tokens_per_batch: Optional[int] = TokensOpt,
    truncate: bool = TruncateOpt,
    window: bool = WindowOpt,
    window_stride: Optional[int] = WindowStrideOpt,
    chunk_size: int = ChunkOpt,
    quiet: bool = QuietOpt,
    keep_manifest: bool = KeepOpt,
    wait: bool = WaitOpt,
    backend: str = BackendOpt,
    triton_url: Optional[str] = TritonUrlOpt,
    executor: str = ExecutorOpt,
    ray_address: Optional[str] = RayAddressOpt,
    ray_actors: int = RayActorsOpt,
    ray_gpus: float = RayGpusOpt,
) -> None:
    """Score records (one row each) or the mutations of one wild type (one row per mutation)."""
    from .io.readers import read_mutation_rows
    from .io.writers import TABLE_FORMATS, output_suffix
    from .jobs import MutationScoreTask, MutationSource, ScoreTask, job_identity, run_job
    from .verbs import length_policy

    setup_logging(quiet)
    output_suffix(output, TABLE_FORMATS)
    if mutations is not None and method is None:
        method = "masked_marginals"
    if mutations is not None and method not in MUTATION_METHODS:
        raise typer.BadParameter(f"--mutations needs --method {' or '.join(MUTATION_METHODS)}", param_hint="--method")
    if mutations is None and method in MUTATION_METHODS:
        raise typer.BadParameter(f"--method {method} needs --mutations FILE", param_hint="--mutations")
    spec = _model_spec(model, "score")
    if method is not None and spec.score_methods:  # before any weights are read, like --pooling
        try:
            spec.score_method(method)
        except InvalidInputError as exc:
            raise typer.BadParameter(exc.reason, param_hint="--method") from None
    kind = spec.input_kind
    if mutations is not None:
        wild_type = _wild_type(input, kind)
        try:
            mutation_rows = read_mutation_rows(mutations)
        except InvalidInputError as exc:
            raise typer.BadParameter(exc.reason, param_hint="--mutations") from None
        loaded = _load_model(spec, weights, device, dtype, numerics, backend, triton_url)
        task: Any = MutationScoreTask(loaded, wild_type, method,
                                      on_too_long=length_policy(truncate, window, window_stride),
                                      tokens_per_batch=tokens_per_batch)
        source: Any = MutationSource(task.wild_type, [m for m, _ in mutation_rows], [f for _, f in mutation_rows])
    else:
        source = _input_file(input, kind)
        loaded = _load_model(spec, weights, device, dtype, numerics, backend, triton_url)
        task = ScoreTask(loaded, method, on_too_long=length_policy(truncate, window, window_stride),
                         tokens_per_batch=tokens_per_batch)
    summary = _run_batch(source, task, output, loaded, executor, ray_address, ray_actors, ray_gpus, backend,
                         chunk_size=chunk_size, progress=not quiet, keep_manifest=keep_manifest, wait=wait)
    _finish(summary)


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` items into a dict; values are read as JSON when they parse (numbers, true, lists)."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--option")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


@app.command("generate", cls=Command)
@handles_errors
def generate_command(
    model: str = _model_argument("generate"),
    input: Path = _input_argument("Seed sequences (with <mask> to fill) or seed SMILES."),
    output: Path = typer.Option(..., "--output", "-o", help="Output table: .csv, .tsv or .parquet."),
    num_samples: Optional[int] = typer.Option(None, "--num-samples", min=1, help="Samples per seed."),
    temperature: Optional[float] = typer.Option(None, "--temperature", min=0.0, help="Sampling temperature."),
    top_k: Optional[int] = typer.Option(None, "--top-k", min=1, help="Sample among the k most likely tokens."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (reproducible samples)."),
    option: Optional[list[str]] = typer.Option(None, "--option", help="Family option KEY=VALUE (repeatable)."),
    weights: Optional[Path] = WeightsOpt,
    device: str = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    numerics: Optional[str] = NumericsOpt,
    chunk_size: int = ChunkOpt,
    quiet: bool = QuietOpt,
    keep_manifest: bool = KeepOpt,
    wait: bool = WaitOpt,
    backend: str = BackendOpt,
    triton_url: Optional[str] = TritonUrlOpt,
) -> None:
    """Generate new sequences or molecules from each seed record (one row per sample)."""
    from .io.writers import TABLE_FORMATS, output_suffix
    from .jobs import GenerateTask, job_identity, run_job

    setup_logging(quiet)
    output_suffix(output, TABLE_FORMATS)
    options = parse_options(option)
    for key, value in (("num_samples", num_samples), ("temperature", temperature), ("top_k", top_k), ("seed", seed)):
        if value is not None:
            options[key] = value
    spec = _model_spec(model, "generate")
    source = _input_file(input, spec.input_kind)
    loaded = _load_model(spec, weights, device, dtype, numerics, backend, triton_url)
    summary = run_job(source, GenerateTask(loaded, options), output,
                      params=job_identity(loaded), chunk_size=chunk_size, progress=not quiet,
                      keep_manifest=keep_manifest, wait=wait)
    _finish(summary)


def _check_takes_msa(name: str, fold: Callable[..., Any] | None) -> None:
    from .capabilities import takes_option

    if fold is not None and not takes_option(fold, "msa"):
        raise typer.BadParameter(f"model {name!r} folds from the sequence alone and takes no MSA; drop --msa",
                                 param_hint="--msa")


@app.command("fold", cls=Command)
@handles_errors
def fold_command(
    model: str = _model_argument("fold"),
    input: Path = _input_argument("FASTA or CSV of proteins (chains of a complex joined with ':')."),
    output: Path = typer.Option(..., "--output", "-o", file_okay=False, help="Output folder."),
    format: str = typer.Option("pdb", "--format", help="pdb or cif."),
    num_recycles: Optional[int] = typer.Option(None, "--num-recycles", min=0, help="Recycling iterations."),
    attention_chunk_size: Optional[int] = typer.Option(
        None, "--attention-chunk-size", min=0,
        help="Chunk of the trunk's attention: less memory, slower (0: no chunking; default: the model's).",
    ),
    msa: Optional[Path] = typer.Option(
        None, "--msa", exists=True, file_okay=False,
        help="Folder of <id>.a3m alignments, used where present (models that take MSAs: OpenFold-3).",
    ),
    relax: bool = typer.Option(
        False, "--relax",
        help="Also AMBER-relax each structure (OpenMM; pip install 'bionemo-lite[relax]'): "
             "OUTDIR/<id>.relaxed.pdb|.cif, energies, RMSD and clashes in summary.csv.",
    ),
    weights: Optional[Path] = WeightsOpt,
    device: str = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    numerics: Optional[str] = NumericsOpt,
    quiet: bool = QuietOpt,
    keep_manifest: bool = KeepOpt,
    wait: bool = WaitOpt,
    backend: str = BackendOpt,
    triton_url: Optional[str] = TritonUrlOpt,
    executor: str = ExecutorOpt,
    ray_address: Optional[str] = RayAddressOpt,
    ray_actors: int = RayActorsOpt,
    ray_gpus: float = RayGpusOpt,
) -> None:
    """Predict a structure per record: OUTDIR/<id>.pdb|.cif, OUTDIR/summary.csv and OUTDIR/errors.csv.

    Each structure is committed as soon as it is predicted (a re-run resumes after the last one).
    """
    from .jobs import FoldTask, job_identity, run_job

    if format not in ("pdb", "cif"):
        raise typer.BadParameter("must be pdb or cif", param_hint="--format")
    setup_logging(quiet)
    spec = _model_spec(model, "fold")
    if msa is not None:
        from .capabilities import model_class

        _check_takes_msa(spec.name, getattr(model_class(spec), "fold", None))
    source = _input_file(input, "protein")
    if relax:
        from .relax import check_available

        check_available()  # before loading the model
    loaded = _load_model(spec, weights, device, dtype, numerics, backend, triton_url)
    if msa is not None and backend == "inprocess":
        _check_takes_msa(spec.name, loaded.fold)  # a plugin whose loader declares no model class
    output.mkdir(parents=True, exist_ok=True)
    task = FoldTask(loaded, output, format=format, num_recycles=num_recycles, chunk_size=attention_chunk_size,
                    msa_dir=msa, relax=relax)
    # One record per chunk: each structure is committed as soon as it is predicted.
    summary = _run_batch(source, task, output / "summary.csv", loaded, executor, ray_address, ray_actors, ray_gpus,
                         backend, chunk_size=1, progress=not quiet, manifest_path=output / "job.sqlite",
                         errors_path=output / "errors.csv", keep_manifest=keep_manifest, wait=wait)
    _finish(summary)


@weights_app.command("list", cls=Command)
@handles_errors
def weights_list_command(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Each model: are its official weights in the cache, and where."""
    from .registry import list_models
    from .weights import cached_path, cache_home, model_cache_dir

    entries = []
    for spec in list_models():
        found = next((p for p in (cached_path(spec, src) for src in spec.weights) if p is not None), None)
        entries.append({"name": spec.name, "cached": found is not None,
                        "path": str(found if found is not None else model_cache_dir(spec))})
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    typer.echo(f"cache: {cache_home()}", err=True)
    _print_table(["name", "cached", "path"], [[e["name"], "yes" if e["cached"] else "no", e["path"]] for e in entries])


@weights_app.command("pull", cls=Command)
@handles_errors
def weights_pull_command(
    name: str = typer.Argument(..., metavar="MODEL", help="Model name."),
    quiet: bool = QuietOpt,
) -> None:
    """Download a model's official weights into the cache (sha256-checked, atomic)."""
    from .registry import get_spec
    from .weights import pull

    path = pull(get_spec(name), progress=not quiet)
    typer.echo(str(path))


# The service's own defaults (bionemo_lite.server.settings.Settings), shown in --help; an option left at its default is
# not passed on, so BIONEMO_LITE_* variables still apply (tests pin the two lists together).
SERVE_DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1", "port": 8000, "device": "cpu", "backend": "inprocess", "triton_protocol": "http",
    "max_sequences": 32,
}
SERVE_DEFAULTS.update({"requests_per_minute": 600, "max_in_flight": 16})  # per API key (server/ratelimit.py)


@app.command("serve", cls=Command)
@handles_errors
def serve_command(
    ctx: typer.Context,
    host: str = typer.Option(SERVE_DEFAULTS["host"], "--host", help="Address to bind (0.0.0.0 for other machines)."),
    port: int = typer.Option(SERVE_DEFAULTS["port"], "--port", min=0, max=65535, help="Port."),
    weights: Optional[list[str]] = typer.Option(
        None, "--weights", help="NAME=PATH checkpoint of a model (repeatable)."
    ),
    device: str = typer.Option(SERVE_DEFAULTS["device"], "--device", help="cpu, cuda or cuda:N."),
    dtype: Optional[str] = DtypeOpt,
    numerics: Optional[str] = typer.Option(
        None, "--numerics",
        help="fast or reference arithmetic for models that offer both (ESM-2) (default: $BIONEMO_LITE_NUMERICS, "
             "else fast).",
    ),
    backend: str = typer.Option(SERVE_DEFAULTS["backend"], "--backend", help="inprocess or triton."),
    triton_url: Optional[str] = typer.Option(
        None, "--triton-url", help="host:port of the Triton server (comma-separated for replicas)."
    ),
    triton_protocol: str = typer.Option(SERVE_DEFAULTS["triton_protocol"], "--triton-protocol", help="http or grpc."),
    max_sequences: int = typer.Option(
        SERVE_DEFAULTS["max_sequences"], "--max-sequences", min=1, help="Records per request."
    ),
    preload: Optional[list[str]] = typer.Option(None, "--preload", help="Model to load at start-up (repeatable)."),
    log_format: Optional[str] = typer.Option(
        None, "--log-format", help="text or json: one JSON object per line, with the request id "
                                   "(default: $BIONEMO_LITE_LOG_FORMAT, else text)."
    ),
    api_keys: Optional[Path] = typer.Option(
        None, "--api-keys", metavar="KEYS",
        help="API-key file (`bionemo-lite keys add`): clients then send 'Authorization: Bearer KEY'.",
    ),
    insecure: bool = typer.Option(False, "--insecure", help="Serve a non-loopback address without API keys."),
    requests_per_minute: int = typer.Option(
        SERVE_DEFAULTS["requests_per_minute"], "--requests-per-minute", min=0,
        help="Requests per minute of each API key unless the key file sets its own (0: no limit).",
    ),
    max_in_flight: int = typer.Option(
        SERVE_DEFAULTS["max_in_flight"], "--max-in-flight", min=0,
        help="Concurrent requests of each API key unless the key file sets its own (0: no limit).",
    ),
    limit_by_address: bool = typer.Option(False, "--limit-by-address",
                                          help="Without API keys, apply those limits per client address."),
) -> None:
    """Start the HTTP service. Options not given come from BIONEMO_LITE_* variables, then the defaults."""
    from pydantic import ValidationError

    def given_here(name: str) -> bool:
        source = ctx.get_parameter_source(name)
        return source is not None and source.name != "DEFAULT"

    if given_here("device"):
        check_device(device)
    if numerics is not None:
        check_serve_numerics(numerics)
    from bionemo_lite.server.app import serve
    from bionemo_lite.server.settings import Settings

    values: dict[str, Any] = {
        "host": host, "port": port, "device": device, "dtype": dtype, "numerics": numerics, "backend": backend,
        "triton_url": triton_url, "triton_protocol": triton_protocol, "max_sequences": max_sequences,
        "weights": list(weights) if weights else None, "preload": list(preload) if preload else None,
        "api_keys": api_keys, "insecure": insecure or None, "requests_per_minute": requests_per_minute,
        "max_in_flight": max_in_flight, "limit_by_address": limit_by_address or None,
    }
    values["log_format"] = log_format
    given = {k: v for k, v in values.items() if v is not None and (k not in SERVE_DEFAULTS or given_here(k))}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(problems) from None
    from bionemo_lite.server.auth import InsecureBindError
    from bionemo_lite.server.keyfile import KeyFileError

    try:
        serve(settings)
    except (InsecureBindError, KeyFileError) as exc:  # the service refuses to start: a usage error
        raise _fail(str(exc), 2) from None


def check_serve_numerics(numerics: str) -> None:
    """A service-wide ``--numerics`` must be a mode some registered family offers (usage error otherwise)."""
    from .registry import list_models

    modes = sorted({mode for spec in list_models() for mode in spec.numerics})
    if numerics not in modes:
        raise typer.BadParameter(f"must be one of {', '.join(modes) or '(no model offers a choice)'}; "
                                 f"got {numerics!r}", param_hint="--numerics")


# `bionemo-lite keys ...` (bionemo_lite/cli_keys.py), with the same error handling as every command here.
app.add_typer(keys_app, name="keys")
for _name, _command in KEYS_COMMANDS.items():
    keys_app.command(_name, cls=Command)(handles_errors(_command))


# ---- fine-tuning: `bionemo-lite finetune` makes a variant, `bionemo-lite predict` runs it (bionemo_lite.finetune).
def _metrics_line(metrics: dict[str, float | None]) -> str:
    return ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} undefined" for k, v in metrics.items())


@app.command("finetune", cls=Command)
@handles_errors
def finetune_command(
    base_model: str = typer.Argument(..., metavar="BASE_MODEL", help="A model with the embed verb, e.g. esm2_t6_8M_UR50D."),
    data: Path = typer.Argument(..., metavar="DATA", exists=True, dir_okay=False, readable=True,
                                help="CSV/TSV: an id column, a sequence (or smiles) column and the --target column."),
    target: str = typer.Option(..., "--target", help="The column to predict."),
    out_dir: Path = typer.Option(..., "--output", "-o", file_okay=False, help="Folder to write the fine-tune to."),
    task: str = typer.Option("regression", "--task", help="regression or classification."),
    method: str = typer.Option("head", "--method", help="head (MLP on frozen embeddings) or lora (ESM-2, ProtT5, MegaMolBART)."),
    split: str = typer.Option("random", "--split", help="random, identity (proteins) or scaffold (SMILES)."),
    name: Optional[str] = typer.Option(None, "--name", help="Also register it under this name (bionemo-lite models)."),
    weights: Optional[Path] = WeightsOpt,
    device: str = DeviceOpt,
    seed: int = typer.Option(0, "--seed", help="Same seed, same data: identical weights."),
    max_epochs: int = typer.Option(100, "--max-epochs", min=1, help="Most epochs (early stopping on validation)."),
    patience: int = typer.Option(15, "--patience", min=1, help="Epochs without a better validation metric to stop."),
    hidden: int = typer.Option(64, "--hidden", min=0, help="Head hidden width (0: linear head)."),
    learning_rate: float = typer.Option(1e-3, "--learning-rate", help="AdamW learning rate."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Records per optimiser step."),
    lora_rank: int = typer.Option(8, "--lora-rank", min=1, help="LoRA rank (--method lora)."),
    quiet: bool = QuietOpt,
) -> None:
    """Fine-tune BASE_MODEL on DATA; report held-out metrics and write OUT_DIR (a variant: `predict` serves it)."""
    from .finetune import FinetuneOptions
    from .finetune.api import finetune

    setup_logging(quiet)
    check_device(device)
    options = FinetuneOptions(task=task, method=method, split=split, seed=seed, max_epochs=max_epochs,  # type: ignore[arg-type]
                              patience=patience, hidden=hidden, learning_rate=learning_rate, batch_size=batch_size,
                              lora_rank=lora_rank, progress=not quiet)
    options.check()
    result = finetune(base_model, data, target, out_dir, options, weights=weights, device=device, name=name)
    card = result.card
    typer.echo(f"{card.method} fine-tune of {card.base_model} ({card.task} of {card.target!r}) on "
               f"{card.split['train']}/{card.split['validation']}/{card.split['test']} train/validation/test records "
               f"({card.split['method']} split) in {card.seconds:.1f} s")
    typer.echo(f"test: {_metrics_line(card.metrics['test'])}")
    typer.echo(f"validation: {_metrics_line(card.metrics['validation'])} (best epoch {card.split['best_epoch']})")
    typer.echo(f"untrained baseline, test: {_metrics_line(card.metrics['baseline_test'])}")
    typer.echo(f"wrote {out_dir}" + (f"; registered as {name}" if name else ""))


@app.command("predict", cls=Command)
@handles_errors
def predict_command(
    model: str = typer.Argument(..., metavar="MODEL",
                                help="A fine-tune: its registered name (bionemo-lite models --verb predict) or folder."),
    input: Path = _input_argument("FASTA, CSV/TSV or .smi file of the records to predict."),
    output: Path = typer.Option(..., "--output", "-o", help="Output table: .csv, .tsv or .parquet."),
    weights: Optional[Path] = typer.Option(
        None, "--weights", help="The fine-tune's folder, for a MODEL name (default: the weight cache)."),
    base_weights: Optional[Path] = typer.Option(
        None, "--base-weights", help="The base model's checkpoint (default: the card's, else the weight cache)."),
    device: str = DeviceOpt,
    tokens_per_batch: Optional[int] = TokensOpt,
    truncate: bool = TruncateOpt,
    chunk_size: int = ChunkOpt,
    quiet: bool = QuietOpt,
    keep_manifest: bool = KeepOpt,
    wait: bool = WaitOpt,
    backend: str = BackendOpt,
    triton_url: Optional[str] = TritonUrlOpt,
) -> None:
    """Predict each record of INPUT with a fine-tuned model (resumable; bad records go to OUTPUT.errors.csv)."""
    from .finetune.card import FinetuneCard, is_finetune_folder
    from .io.writers import TABLE_FORMATS, output_suffix
    from .jobs import PredictTask, job_identity, run_job
    from .registry import load
    from .verbs import length_policy

    setup_logging(quiet)
    output_suffix(output, TABLE_FORMATS)
    spec = FinetuneCard.read(model).spec() if is_finetune_folder(model) else _model_spec(model, "predict")
    source = _input_file(input, spec.input_kind)
    if backend == "triton":
        loaded = _load_model(spec, weights, device, None, None, backend, triton_url)
    else:
        check_device(device)
        extra = {"base_weights": base_weights} if base_weights is not None else {}
        folder = is_finetune_folder(model)
        loaded = load(model if folder else spec.name, weights=None if folder else weights, device=device, **extra)
    task = PredictTask(loaded, on_too_long=length_policy(truncate), tokens_per_batch=tokens_per_batch)
    summary = run_job(source, task, output, params=job_identity(loaded), chunk_size=chunk_size, progress=not quiet,
                      keep_manifest=keep_manifest, wait=wait)
    _finish(summary)


def main() -> None:  # pragma: no cover - `python -m bionemo_lite.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
