"""Command-line front of the Triton integration.

    bionemo-lite export esm2_t33_650M_UR50D --repository model_repository --weights esm2_t33_650M_UR50D.pt --kind gpu
    bionemo-lite export megamolbart --repository model_repository --weights megamolbart_0_2_0.nemo --verb embed --verb decode
    bionemo-lite triton serve --repository model_repository      # HTTP 8010, gRPC 8011, metrics 8012
    bionemo-lite triton status --url 127.0.0.1:8010

`triton_app` is mounted as ``bionemo-lite triton`` and `export_command` as
``bionemo-lite export`` (and ``bionemo-lite triton export``) by
``bionemo_lite.cli``. Errors are one line on stderr and exit status 1; Ctrl-C
or SIGTERM stops Triton cleanly. ``triton serve`` listens on 8010-8012, not
Triton's usual 8000-8002, so it never clashes with the API's 8000; a port that
is taken is reported (with the process holding it) before Triton starts. It
supervises tritonserver (`supervisor.TritonSupervisor`): restarts it when it
dies, gives up (exit 1) after ``--max-failures`` deaths within
``--restart-window`` seconds, and leaves no tritonserver or stub behind.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer

from ..errors import BionemoLiteError
from ..cli_style import MARKUP_MODE, Command
from .ports import TRITON_GRPC_PORT, TRITON_HTTP_PORT, TRITON_METRICS_PORT
from .supervisor import RestartPolicy, TritonSupervisor

F = TypeVar("F", bound=Callable[..., Any])

triton_app = typer.Typer(
    help="Serve exported models on a real Triton Inference Server and check on it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=MARKUP_MODE,
)


def _errors_to_exit(fn: F) -> F:
    """`BionemoLiteError` -> ``Error: ...`` on stderr and exit status 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BionemoLiteError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@_errors_to_exit
def export_command(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Registered model name, e.g. esm2_t33_650M_UR50D.")],
    repository: Annotated[Path, typer.Option("--repository", "-r", help="Triton model repository folder (created if needed).")],
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Checkpoint file or folder (default: the cache).")] = None,
    format: Annotated[str, typer.Option("--format",
                                        help="python (the plugin in Triton's python backend, every verb) or "
                                             "onnx (the encoder as an ONNX graph, embed).")] = "python",
    max_batch_size: Annotated[int, typer.Option("--max-batch-size", min=1, help="Largest dynamic batch (sequences).")] = 64,
    instances: Annotated[int, typer.Option("--instances", min=1, help="Model instances (per GPU with --kind gpu).")] = 1,
    kind: Annotated[str, typer.Option("--kind",
                                      help="gpu (KIND_GPU) or cpu (KIND_CPU) instances.")] = "cpu",
    max_queue_delay_us: Annotated[int, typer.Option("--max-queue-delay-us", min=0,
                                                    help="How long a request may wait to be batched.")] = 2000,
    preferred_batch_size: Annotated[Optional[list[int]], typer.Option(
        "--preferred-batch-size", help="Batch size the batcher aims for (repeatable) (default: 1/4, 1/2, 1 x max).")] = None,
    verb: Annotated[Optional[list[str]], typer.Option(
        "--verb", help="Verb to export (repeatable): embed, score, generate, decode, fold "
                       "(default: every one the model has).")] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="float32, float16 or bfloat16 (default: the family's).")] = None,
    num_threads: Annotated[Optional[int], typer.Option("--num-threads", min=1, help="CPU threads per instance.")] = None,
    onnx_runtime: Annotated[str, typer.Option("--onnx-runtime",
                                              help="triton (the graph as a Triton onnxruntime model: NVIDIA's container) or "
                                                   "embedded (onnxruntime inside the python backend: any tritonserver).")] = "triton",
    numerics: Annotated[Optional[str], typer.Option(
        "--numerics", help="fast or reference arithmetic in the server, for models that offer both "
                           "(default: $BIONEMO_LITE_NUMERICS, else fast).", show_default=False)] = None,
) -> None:
    """Write MODEL as a Triton model repository (config.pbtxt with dynamic batching + 1/...).

    The checkpoint is loaded first: one the model cannot read is an error and nothing is written.
    """
    from .export import export_model

    report = export_model(
        model, repository, weights=weights, format=format,
        max_batch_size=max_batch_size, instances=instances, kind=kind,
        max_queue_delay_us=max_queue_delay_us, preferred_batch_sizes=preferred_batch_size or None,
        verbs=verb or None, dtype=dtype, num_threads=num_threads, onnx_runtime=onnx_runtime, numerics=numerics,
    )
    for verb_name, triton_name in report.triton_models.items():
        typer.echo(f"{triton_name}\t{verb_name}")
    if report.onnx is not None:
        typer.echo(f"ONNX vs torch max abs difference: {report.onnx['max_abs_diff']:.3g}")
    typer.echo(f"wrote {report.repository} ({report.seconds:.1f} s); serve it with "
               f"`bionemo-lite triton serve --repository {report.repository}`")


@triton_app.command("serve", cls=Command)
@_errors_to_exit
def serve_command(
    repository: Annotated[Path, typer.Option("--repository", "-r", help="Model repository written by `bionemo-lite export`.")],
    http_port: Annotated[int, typer.Option("--http-port", min=1, max=65535,
                                           help="HTTP/REST port (not Triton's usual 8000: the API's).")] = TRITON_HTTP_PORT,
    grpc_port: Annotated[int, typer.Option("--grpc-port", min=1, max=65535, help="gRPC port.")] = TRITON_GRPC_PORT,
    metrics_port: Annotated[int, typer.Option("--metrics-port", min=1, max=65535,
                                              help="Prometheus metrics port.")] = TRITON_METRICS_PORT,
    host: Annotated[str, typer.Option("--host", help="Address to bind (0.0.0.0 for other machines).")] = "127.0.0.1",
    log_file: Annotated[Optional[Path], typer.Option("--log-file", help="Server log (default: <repository>/../tritonserver.log).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait for every model to load.")] = 600.0,
    max_failures: Annotated[int, typer.Option("--max-failures", min=1,
                                              help="Give up (exit 1) when tritonserver dies this many times within "
                                                   "--restart-window (1: never restart).")] = RestartPolicy.max_failures,
    restart_window: Annotated[float, typer.Option("--restart-window", min=1,
                                                  help="Seconds over which --max-failures are counted.")] = RestartPolicy.window,
    restart_delay: Annotated[float, typer.Option("--restart-delay", min=0,
                                                 help="Seconds before the first restart; doubled for each further "
                                                      "failure in the window, up to --max-restart-delay.")] = RestartPolicy.first_delay,
    max_restart_delay: Annotated[float, typer.Option("--max-restart-delay", min=0,
                                                     help="Longest wait between restarts.")] = RestartPolicy.max_delay,
) -> None:
    """Start tritonserver on REPOSITORY and keep it running until Ctrl-C or SIGTERM.

    Taken ports are reported, with the process holding them, before anything starts. When
    tritonserver dies it is restarted on the same ports (exponential back-off), its python
    backend stubs stopped first; every stop leaves no Triton process behind.
    """
    from .launch import TritonServer, find_tritonserver
    from .ports import check_ports_free

    # A first delay above the cap raises the cap: the user asked for that wait.
    policy = RestartPolicy(restart_delay, max(restart_delay, max_restart_delay), max_failures, restart_window)
    log_path = log_file or Path(repository).resolve().parent / "tritonserver.log"
    server = TritonServer(repository, http_port, grpc_port, metrics_port, log_path, host=host, startup_timeout=timeout,
                          die_with_parent=True)
    server.installation = find_tritonserver()
    check_ports_free(host, {"HTTP (--http-port)": http_port, "gRPC (--grpc-port)": grpc_port,
                            "metrics (--metrics-port)": metrics_port})

    def say(message: str) -> None:
        typer.echo(message, err=True)

    def ready(running: TritonServer) -> None:
        assert running.installation is not None
        say(f"ready: HTTP {running.http_url}  gRPC {running.grpc_url}  metrics {running.metrics_url}  "
            f"(tritonserver from {running.installation.origin}, pid {running.pgid}); Ctrl-C to stop")

    say(f"starting tritonserver on {server.repository} (log: {server.log_path})")
    stopped_by = TritonSupervisor(server, policy, report=say).run(on_ready=ready)
    say(f"stopped tritonserver ({stopped_by.name})")


@triton_app.command("status", cls=Command)
@_errors_to_exit
def status_command(
    url: Annotated[str, typer.Option("--url", help="host:port of Triton's HTTP (or gRPC) endpoint.")] = f"127.0.0.1:{TRITON_HTTP_PORT}",
    protocol: Annotated[str, typer.Option("--protocol", help="http or grpc.")] = "http",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show whether Triton is ready, its models and their batching so far (exit 1 when unreachable)."""
    from .client import TritonClient

    with TritonClient(url, protocol) as client:
        if not client.live():
            raise BionemoLiteError(f"no Triton server answers at {url} ({protocol})")
        ready = client.ready()
        models = client.models()
        stats = {s["name"]: s for s in client.statistics()} if ready or models else {}
    for entry in models:
        s = stats.get(entry["name"], {})
        entry["inference_count"] = int(s.get("inference_count", 0))
        entry["execution_count"] = int(s.get("execution_count", 0))
    if as_json:
        typer.echo(json.dumps({"url": url, "ready": ready, "models": models}, indent=2))
        return
    typer.echo(f"Triton at {url}: {'ready' if ready else 'NOT ready'}")
    header = ["model", "version", "state", "inferences", "executions", "reason"]
    rows = [[m["name"], m["version"] or "-", m["state"] or "-", str(m["inference_count"]), str(m["execution_count"]),
             m["reason"] or ""] for m in models]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for line in [header, *rows]:
        typer.echo("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())


triton_app.command("export", cls=Command)(export_command)
