"""A typed client for bionemo-lite models served by Triton (HTTP or gRPC).

    >>> from bionemo_lite.triton import TritonClient
    >>> with TritonClient("127.0.0.1:8011", protocol="grpc") as client:
    ...     emb = client.embed("esm2_t6_8M_UR50D", ["MKTAYIAKQR", "GSHMLE"], pooling="per_residue")
    >>> emb.embeddings[0].shape
    (10, 320)

It speaks the contract of `bionemo_lite.triton.protocol` and returns the same
result types as the in-process models (`Embeddings`, `Scores`, `Generated`,
`Structure`, `Decoded`), so
code written against ``bionemo_lite.load(...)`` works against Triton unchanged.
Errors come back as the same exceptions: a bad record is `InvalidInputError`
naming the caller's record id; an unreachable server or a model the server does
not serve is `BackendUnavailableError`.

gRPC message limits are raised on this side (default 512 MiB): per-residue
embeddings of large models pass gRPC's usual 4 MB limit quickly (a 1,000-residue
protein from ESM-2 650M is ~5 MB). Triton's server side already accepts up to 2 GB.

`TritonClient` is synchronous and meant for one thread (notebooks, scripts, and
the HTTP service, whose worker threads take one client each); `AsyncTritonClient`
has the same methods as coroutines and serves many concurrent callers from one
event loop (the Triton benchmark drives the dynamic batcher with it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any, Literal

import numpy as np

from ..errors import BackendUnavailableError, BionemoLiteError, InvalidInputError
from ..records import Inputs, Record, as_records
from ..pooling import is_per_position
from ..results import (Decoded, Embeddings, Generated, GeneratedRecord, Predictions, RecordError, Relaxation, Scores,
                       Structure)
from ..windows import Windows
from .protocol import EMBED_OUTPUTS, decode_error, encode_layer, index_to_id, triton_model_name

Protocol = Literal["http", "grpc"]
MIB = 1 << 20
DEFAULT_MAX_MESSAGE_BYTES = 512 * MIB


def split_url(url: str, protocol: str) -> tuple[str, bool]:
    """``"http://host:8000"`` -> ``("host:8000", ssl)``; tritonclient wants no scheme."""
    ssl = url.startswith("https://") or url.startswith("grpcs://")
    for scheme in ("http://", "https://", "grpc://", "grpcs://"):
        if url.startswith(scheme):
            url = url[len(scheme):]
    return url.rstrip("/"), ssl


def _modules(protocol: str, aio: bool) -> ModuleType:
    if protocol == "http":
        if aio:
            import tritonclient.http.aio as module
        else:
            import tritonclient.http as module
    elif protocol == "grpc":
        if aio:
            import tritonclient.grpc.aio as module
        else:
            import tritonclient.grpc as module
    else:
        raise BionemoLiteError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
    return module


def grpc_channel_args(max_message_bytes: int) -> list[tuple[str, Any]]:
    """gRPC channel options: raised message limits, quick reconnection, tritonclient's keepalive defaults.

    gRPC shares connections between channels to the same address and backs off
    up to two minutes after a failure, so a restarted Triton would be refused
    long after it is back: each channel keeps its own connections, and retries
    within two seconds.
    """
    from tritonclient.grpc import KeepAliveOptions

    keep = KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.min_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 2000),
        ("grpc.keepalive_time_ms", keep.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keep.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keep.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keep.http2_max_pings_without_data),
    ]


@dataclass(frozen=True)
class BatchingStats:
    """Dynamic batching at work: requests (inferences) per model execution.

    Attributes:
        inference_count: sequences inferred (each batch row counts once).
        execution_count: model executions (``execute`` calls).
        mean_batch_size: ``inference_count / execution_count``.
    """

    model: str
    inference_count: int
    execution_count: int

    @property
    def mean_batch_size(self) -> float:
        return self.inference_count / self.execution_count if self.execution_count else 0.0


class _Codec:
    """Request building and response parsing, shared by the sync and async clients."""

    def __init__(self, module: ModuleType, protocol: str, url: str):
        self.module = module
        self.protocol = protocol
        self.url = url

    def sequences_input(self, sequences: Sequence[str], per_row: bool) -> Any:
        data = np.array([s.encode("utf-8") for s in sequences], dtype=np.object_)
        if per_row:
            data = data.reshape(-1, 1)
        tensor = self.module.InferInput("sequences", list(data.shape), "BYTES")
        tensor.set_data_from_numpy(data)
        return tensor

    def outputs(self, names: Sequence[str]) -> list[Any]:
        if self.protocol == "http":
            return [self.module.InferRequestedOutput(n, binary_data=True) for n in names]
        return [self.module.InferRequestedOutput(n) for n in names]

    def error(self, exc: Exception, model: str, ids: list[str] | None = None) -> BionemoLiteError:
        """A `bionemo_lite` exception for whatever tritonclient or the network raised."""
        message = str(exc)
        ours = decode_error(message, ids)
        if ours is not None:
            return ours
        lowered = message.lower()
        if "unknown model" in lowered or "not found" in lowered or "is not ready" in lowered or "unavailable model" in lowered:
            return BackendUnavailableError(
                f"the Triton server at {self.url} does not serve {model!r} (is it exported into the server's "
                f"repository? `bionemo-lite export`): {message}"
            )
        if "larger than max" in lowered or "resource_exhausted" in lowered or "received message larger" in lowered:
            return BionemoLiteError(f"the response from {self.url} is larger than the client's message limit: {message}")
        return BackendUnavailableError(f"the Triton server at {self.url} cannot be reached or failed: {message}")

    @staticmethod
    def embed_parameters(layer: int | Sequence[int], pooling: str, on_too_long: str) -> dict[str, Any]:
        return {"layer": encode_layer(list(layer) if not isinstance(layer, int) else layer), "pooling": pooling,
                "on_too_long": on_too_long}

    @staticmethod
    def json_parameters(options: dict[str, Any], records: list[Record]) -> dict[str, Any]:
        """score / generate parameters: the verb's options, and the records' ids (seeded sampling uses them)."""
        return {"options": json.dumps(options), "ids": json.dumps([r.id for r in records])}

    @staticmethod
    def embed_rows(result: Any) -> dict[str, np.ndarray]:
        return {name: result.as_numpy(name) for name in EMBED_OUTPUTS}

    @staticmethod
    def assemble_embeddings(model: str, records: list[Record], rows: dict[str, np.ndarray], pooling: str) -> Embeddings:
        """`Embeddings` from the concatenated per-sequence outputs of every chunk."""
        emb, lengths = rows["embeddings"], rows["lengths"].reshape(-1)
        layers = tuple(int(v) for v in rows["layers"][0]) if len(rows["layers"]) else ()
        truncated_flags = rows["truncated"].reshape(-1)
        errors = [e.decode() if isinstance(e, bytes) else str(e) for e in rows["errors"].reshape(-1)]
        ok = [k for k in range(len(records)) if not errors[k]]
        by_layer: dict[int, Any] = {}
        for li, lay in enumerate(layers):
            if is_per_position(pooling):
                by_layer[lay] = [np.ascontiguousarray(emb[k, li, : int(lengths[k])]) for k in ok]
            else:
                dim = emb.shape[-1] if emb.ndim == 4 else 0
                by_layer[lay] = np.stack([emb[k, li, 0] for k in ok]) if ok else np.zeros((0, dim), np.float32)
        return Embeddings(
            model=model,
            ids=[records[k].id for k in ok],
            lengths=[int(lengths[k]) for k in ok],
            layers=layers,
            pooling=pooling,
            by_layer=by_layer,
            truncated=[records[k].id for k in range(len(records)) if bool(truncated_flags[k])],
            errors=[RecordError(records[k].id, records[k].index, errors[k]) for k in range(len(records)) if errors[k]],
        )

    @staticmethod
    def concat_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Join chunk outputs; per-residue chunks are padded to the widest one."""
        if len(parts) == 1:
            return parts[0]
        width = max(p["embeddings"].shape[2] for p in parts)
        out: dict[str, np.ndarray] = {}
        for name in EMBED_OUTPUTS:
            arrays = [p[name] for p in parts]
            if name == "embeddings":
                arrays = [np.pad(a, ((0, 0), (0, 0), (0, width - a.shape[2]), (0, 0))) for a in arrays]
            out[name] = np.concatenate(arrays)
        return out

    @staticmethod
    def json_result(result: Any) -> dict[str, Any]:
        raw = result.as_numpy("result").reshape(-1)[0]
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)

    @staticmethod
    def scores(model: str, records: list[Record], body: dict[str, Any], scores: np.ndarray | None) -> Scores:
        ids = [r.id for r in records]
        # The JSON carries the model's own float64 values; the FP32 tensor is for other Triton clients.
        values = body["scores"] if "scores" in body else scores
        return Scores(
            model=model,
            method=body.get("method", ""),
            ids=[index_to_id(i, ids) for i in body.get("ids", [])],
            scores=np.asarray(values if values is not None else [], dtype=np.float64),
            mutations=body.get("mutations"),
            truncated=[index_to_id(i, ids) for i in body.get("truncated", [])],
            errors=_record_errors(body.get("errors", []), ids),
            windowed={index_to_id(i, ids): Windows(w["size"], w["stride"], tuple(tuple(s) for s in w["spans"]))
                      for i, w in body.get("windowed", {}).items()},
        )

    @staticmethod
    def generated(model: str, records: list[Record], body: dict[str, Any]) -> Generated:
        ids = [r.id for r in records]
        out = []
        for item in body.get("generated", []):
            item = dict(item)
            item["id"] = index_to_id(item.get("id"), ids)
            out.append(GeneratedRecord(**item))
        return Generated(model=model, records=out, errors=_record_errors(body.get("errors", []), ids))

    @staticmethod
    def predictions(model: str, records: list[Record], body: dict[str, Any]) -> Predictions:
        """`Predictions` from ``<model>__predict``'s JSON (records named by index back to their ids)."""
        ids = [r.id for r in records]
        probabilities = body.get("probabilities")
        return Predictions(
            model=model, task=body.get("task", ""), ids=[index_to_id(i, ids) for i in body.get("ids", [])],
            values=list(body.get("values", [])),
            probabilities=np.asarray(probabilities, dtype=np.float64) if probabilities is not None else None,
            classes=body.get("classes"), target=body.get("target", ""),
            truncated=[index_to_id(i, ids) for i in body.get("truncated", [])],
            errors=_record_errors(body.get("errors", []), ids),
        )

    @staticmethod
    def structure(body: dict[str, Any]) -> Structure:
        """The `Structure` whose ``to_dict()`` is `body` (arrays back to float32, as the models give them)."""
        known = {"model", "id", "sequence", "chains", "pdb", "mmcif", "plddt", "mean_plddt", "ptm", "iptm", "pae",
                 "relaxed"}
        pae, relaxed = body.get("pae"), body.get("relaxed")
        return Structure(
            model=body["model"],
            id=body["id"],
            sequence=body["sequence"],
            pdb=body.get("pdb"),
            mmcif=body.get("mmcif"),
            plddt=np.asarray(body.get("plddt", []), dtype=np.float32),
            ptm=body.get("ptm"),
            iptm=body.get("iptm"),
            pae=None if pae is None else np.asarray(pae, dtype=np.float32),
            chains=list(body.get("chains", [])),
            extra={k: v for k, v in body.items() if k not in known},
            relaxed=None if relaxed is None else Relaxation(**relaxed),
        )

    def fold_inputs(self, sequence: str) -> list[Any]:
        data = np.array([sequence.encode("utf-8")], dtype=np.object_)
        tensor = self.module.InferInput("sequence", [1], "BYTES")
        tensor.set_data_from_numpy(data)
        return [tensor]

    def decode_inputs(self, hiddens: Any, mask: Any) -> list[Any]:
        h, m = hiddens_and_mask(hiddens, mask)
        tensors = [self.module.InferInput("hiddens", list(h.shape), "FP32"),
                   self.module.InferInput("mask", list(m.shape), "BOOL")]
        tensors[0].set_data_from_numpy(h)
        tensors[1].set_data_from_numpy(m)
        return tensors

    @staticmethod
    def generated_strings(result: Any) -> list[str]:
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in result.as_numpy("generated").reshape(-1)]

    @staticmethod
    def statistics(raw: dict[str, Any]) -> list[dict[str, Any]]:
        """``model_stats`` with counts as ints (gRPC's JSON writes 64-bit counts as strings)."""

        def ints(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: ints(v) for k, v in value.items()}
            if isinstance(value, list):
                return [ints(v) for v in value]
            if isinstance(value, str) and value.isdigit():
                return int(value)
            return value

        return ints(raw.get("model_stats", []))


def transport_errors() -> tuple[type[BaseException], ...]:
    """What tritonclient and its transports raise when a call fails (not bugs in the caller)."""
    from tritonclient.utils import InferenceServerException

    errors: list[type[BaseException]] = [InferenceServerException, OSError, TimeoutError, asyncio.TimeoutError]
    try:
        import aiohttp

        errors.append(aiohttp.ClientError)
    except ImportError:
        pass
    try:
        import grpc

        errors.append(grpc.RpcError)
    except ImportError:
        pass
    try:
        # The HTTP client's transport: a server that dies mid-response is HTTPConnectionClosed, no OSError.
        from geventhttpclient.response import HTTPParseError

        errors.append(HTTPParseError)
    except ImportError:
        pass
    return tuple(errors)


def hiddens_and_mask(hiddens: Any, mask: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``[N, T, D]`` float32 hiddens and ``[N, T]`` bool mask, as `decode` takes them.

    Accepts what the models' ``decode`` accepts: an ``[N, T, D]`` (or one
    ``[T, D]``) array with an optional mask, or a list of ``[L_i, D]`` arrays
    (zero-padded here, the mask marking each row's length). Shapes are checked
    by the model.
    """
    if isinstance(hiddens, (list, tuple)) and mask is None and hiddens and np.ndim(hiddens[0]) == 2:
        rows = [np.asarray(h, dtype=np.float32) for h in hiddens]
        width, dim = max(r.shape[0] for r in rows), rows[0].shape[-1]
        h = np.zeros((len(rows), width, dim), dtype=np.float32)
        m = np.zeros((len(rows), width), dtype=bool)
        for i, r in enumerate(rows):
            if r.ndim != 2 or r.shape[-1] != dim:
                raise InvalidInputError(f"hiddens must all be [L_i, {dim}], got shape {r.shape}", record=i)
            h[i, : r.shape[0]] = r
            m[i, : r.shape[0]] = True
        return h, m
    h = np.asarray(hiddens, dtype=np.float32)
    if h.ndim == 2:
        h = h[None]
    m = np.ones(h.shape[:2], dtype=bool) if mask is None else np.asarray(mask).astype(bool)
    if m.ndim == 1:
        m = m[None]
    return np.ascontiguousarray(h), np.ascontiguousarray(m)


def _record_errors(items: list[dict[str, Any]], ids: list[str]) -> list[RecordError]:
    return [
        RecordError(str(index_to_id(e.get("id"), ids)), int(e.get("index", 0)), e.get("reason", ""), e.get("position"))
        for e in items
    ]


def _chunks(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


class _Base:
    def __init__(self, url: str, protocol: Protocol, aio: bool, timeout: float, max_message_bytes: int):
        if protocol not in ("http", "grpc"):
            raise BionemoLiteError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
        self.url, ssl = split_url(url, protocol)
        self.protocol = protocol
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        module = _modules(protocol, aio)
        self._codec = _Codec(module, protocol, self.url)
        self._max_batch: dict[str, int] = {}
        self._errors = transport_errors()
        if protocol == "grpc":
            self._client = module.InferenceServerClient(self.url, ssl=ssl, channel_args=grpc_channel_args(max_message_bytes))
        elif aio:
            self._client = module.InferenceServerClient(self.url, ssl=ssl, conn_timeout=timeout)
        else:
            self._client = module.InferenceServerClient(
                self.url, ssl=ssl, connection_timeout=min(timeout, 10.0), network_timeout=timeout
            )

    def _timeouts(self) -> dict[str, Any]:
        # gRPC takes a per-call deadline; the HTTP clients were given theirs at construction.
        return {"client_timeout": self.timeout} if self.protocol == "grpc" else {}

    def _json_kwargs(self) -> dict[str, Any]:
        return {"as_json": True} if self.protocol == "grpc" else {}

    @staticmethod
    def _config_max_batch(raw: dict[str, Any]) -> int:
        config = raw.get("config", raw)
        return int(config.get("max_batch_size", 0) or 0)


class TritonClient(_Base):
    """Synchronous client (one thread at a time).

    Args:
        url: ``host:port`` of the HTTP (default 8010, as `triton serve` binds) or gRPC (8011) endpoint; a scheme is allowed.
        protocol: ``"http"`` or ``"grpc"``.
        timeout: seconds a call may take.
        max_message_bytes: gRPC send/receive limit.
    """

    def __init__(self, url: str = "127.0.0.1:8010", protocol: Protocol = "http", *, timeout: float = 300.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES):
        super().__init__(url, protocol, False, timeout, max_message_bytes)

    # -- server --------------------------------------------------------------------------
    def ready(self) -> bool:
        """True when the server answers and every model is loaded."""
        try:
            return bool(self._client.is_server_ready(**self._timeouts()))
        except Exception:
            return False

    def live(self) -> bool:
        """True when the server process answers at all."""
        try:
            return bool(self._client.is_server_live(**self._timeouts()))
        except Exception:
            return False

    def models(self) -> list[dict[str, Any]]:
        """The repository index: ``[{"name", "version", "state", "reason"}]``."""
        try:
            raw = self._client.get_model_repository_index(**self._json_kwargs())
        except self._errors as exc:
            raise self._codec.error(exc, "(repository index)") from exc
        items = raw.get("models", []) if isinstance(raw, dict) else raw
        return [{"name": m.get("name"), "version": m.get("version", ""), "state": m.get("state", ""),
                 "reason": m.get("reason", "")} for m in items]

    def statistics(self, model: str = "") -> list[dict[str, Any]]:
        """Triton's per-model statistics (``/v2/models/<m>/stats``); all models when `model` is empty."""
        try:
            raw = self._client.get_inference_statistics(model, **self._json_kwargs())
        except self._errors as exc:
            raise self._codec.error(exc, model) from exc
        return self._codec.statistics(raw)

    def batching(self, model: str) -> BatchingStats:
        """Inferences vs executions of a Triton model (dynamic batching at work when the mean is > 1)."""
        stats = self.statistics(model)[0]
        return BatchingStats(model, int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0)))

    def max_batch_size(self, triton_model: str) -> int:
        if triton_model not in self._max_batch:
            try:
                raw = self._client.get_model_config(triton_model, **self._json_kwargs())
            except self._errors as exc:
                raise self._codec.error(exc, triton_model) from exc
            self._max_batch[triton_model] = self._config_max_batch(raw)
        return self._max_batch[triton_model]

    # -- verbs ---------------------------------------------------------------------------
    def _infer(self, triton_model: str, inputs: list[Any], outputs: list[str], parameters: dict[str, Any],
               ids: list[str] | None) -> Any:
        try:
            return self._client.infer(triton_model, inputs, outputs=self._codec.outputs(outputs),
                                      parameters=parameters, **self._timeouts())
        except self._errors as exc:
            raise self._codec.error(exc, triton_model, ids) from exc

    def embed(self, model: str, sequences: Inputs, layer: int | Sequence[int] = -1, pooling: str = "mean",
              *, on_too_long: str = "error") -> Embeddings:
        """Embed through the Triton model ``<model>``; same arguments and result as `Embedder.embed`.

        Inputs larger than the model's ``max_batch_size`` are sent in several requests.
        """
        records = as_records(sequences)
        name = triton_model_name(model, "embed")
        params = self._codec.embed_parameters(layer, pooling, on_too_long)
        size = self.max_batch_size(name) or len(records)
        parts = []
        for chunk in _chunks(len(records), size):
            subset = [records[i] for i in chunk]
            result = self._infer(name, [self._codec.sequences_input([r.sequence for r in subset], True)],
                                 list(EMBED_OUTPUTS), params, [r.id for r in subset])
            parts.append(self._codec.embed_rows(result))
        return self._codec.assemble_embeddings(model, records, self._codec.concat_rows(parts), pooling)

    def score(self, model: str, sequences: Inputs, method: str | None = None, **options: Any) -> Scores:
        """Score through ``<model>__score``; same arguments and result as `Scorer.score`."""
        records = as_records(sequences)
        if method is not None:
            options["method"] = method
        result = self._infer(triton_model_name(model, "score"),
                             [self._codec.sequences_input([r.sequence for r in records], False)],
                             ["result", "scores"], self._codec.json_parameters(options, records),
                             [r.id for r in records])
        return self._codec.scores(model, records, self._codec.json_result(result), result.as_numpy("scores"))

    def generate(self, model: str, sequences: Inputs, **options: Any) -> Generated:
        """Generate through ``<model>__generate``; same arguments and result as `Generator.generate`."""
        records = as_records(sequences)
        result = self._infer(triton_model_name(model, "generate"),
                             [self._codec.sequences_input([r.sequence for r in records], False)],
                             ["result"], self._codec.json_parameters(options, records), [r.id for r in records])
        return self._codec.generated(model, records, self._codec.json_result(result))

    def predict(self, model: str, sequences: Inputs, **options: Any) -> Predictions:
        """Predict through ``<model>__predict`` (a fine-tuned model); same arguments and result as `Predictor.predict`."""
        records = as_records(sequences)
        result = self._infer(triton_model_name(model, "predict"),
                             [self._codec.sequences_input([r.sequence for r in records], False)],
                             ["result"], self._codec.json_parameters(options, records), [r.id for r in records])
        return self._codec.predictions(model, records, self._codec.json_result(result))

    def fold(self, model: str, sequence: str, **options: Any) -> Structure:
        """Fold through ``<model>__fold``; same arguments and result as `Folder.fold`."""
        result = self._infer(triton_model_name(model, "fold"), self._codec.fold_inputs(sequence), ["result"],
                             {"options": json.dumps(options)}, None)
        return self._codec.structure(self._codec.json_result(result))

    def decode(self, model: str, hiddens: Any, mask: Any = None, **options: Any) -> Decoded:
        """Decode hidden states through ``<model>__decode`` (e.g. MegaMolBART ``hidden_to_smis``).

        Args:
            hiddens: ``[N, T, D]`` with `mask` ``[N, T]`` (True on positions to use), or a list of ``[L_i, D]``.
            options: the model's decode options (``method``, ``beam_size``...).
        """
        result = self._infer(triton_model_name(model, "decode"), self._codec.decode_inputs(hiddens, mask),
                             ["generated"], {"options": json.dumps(options)}, None)
        return Decoded(model, self._codec.generated_strings(result))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncTritonClient(_Base):
    """The asyncio twin of `TritonClient`: same methods, as coroutines; safe for many concurrent calls.

    Create it inside the running event loop that uses it.
    """

    def __init__(self, url: str = "127.0.0.1:8010", protocol: Protocol = "http", *, timeout: float = 300.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES):
        super().__init__(url, protocol, True, timeout, max_message_bytes)

    async def ready(self) -> bool:
        try:
            return bool(await self._client.is_server_ready(**self._timeouts()))
        except Exception:
            return False

    async def live(self) -> bool:
        try:
            return bool(await self._client.is_server_live(**self._timeouts()))
        except Exception:
            return False

    async def models(self) -> list[dict[str, Any]]:
        try:
            raw = await self._client.get_model_repository_index(**self._json_kwargs())
        except self._errors as exc:
            raise self._codec.error(exc, "(repository index)") from exc
        items = raw.get("models", []) if isinstance(raw, dict) else raw
        return [{"name": m.get("name"), "version": m.get("version", ""), "state": m.get("state", ""),
                 "reason": m.get("reason", "")} for m in items]

    async def statistics(self, model: str = "") -> list[dict[str, Any]]:
        try:
            raw = await self._client.get_inference_statistics(model, **self._json_kwargs())
        except self._errors as exc:
            raise self._codec.error(exc, model) from exc
        return self._codec.statistics(raw)

    async def batching(self, model: str) -> BatchingStats:
        stats = (await self.statistics(model))[0]
        return BatchingStats(model, int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0)))

    async def max_batch_size(self, triton_model: str) -> int:
        if triton_model not in self._max_batch:
            try:
                raw = await self._client.get_model_config(triton_model, **self._json_kwargs())
            except self._errors as exc:
                raise self._codec.error(exc, triton_model) from exc
            self._max_batch[triton_model] = self._config_max_batch(raw)
        return self._max_batch[triton_model]

    async def _infer(self, triton_model: str, inputs: list[Any], outputs: list[str], parameters: dict[str, Any],
                     ids: list[str] | None) -> Any:
        try:
            return await self._client.infer(triton_model, inputs, outputs=self._codec.outputs(outputs),
                                            parameters=parameters, **self._timeouts())
        except self._errors as exc:
            raise self._codec.error(exc, triton_model, ids) from exc

    async def embed(self, model: str, sequences: Inputs, layer: int | Sequence[int] = -1, pooling: str = "mean",
                    *, on_too_long: str = "error") -> Embeddings:
        records = as_records(sequences)
        name = triton_model_name(model, "embed")
        params = self._codec.embed_parameters(layer, pooling, on_too_long)
        size = await self.max_batch_size(name) or len(records)

        async def one(chunk: range) -> dict[str, np.ndarray]:
            subset = [records[i] for i in chunk]
            result = await self._infer(name, [self._codec.sequences_input([r.sequence for r in subset], True)],
                                       list(EMBED_OUTPUTS), params, [r.id for r in subset])
            return self._codec.embed_rows(result)

        parts = await asyncio.gather(*(one(c) for c in _chunks(len(records), size)))
        return self._codec.assemble_embeddings(model, records, self._codec.concat_rows(list(parts)), pooling)

    async def score(self, model: str, sequences: Inputs, method: str | None = None, **options: Any) -> Scores:
        records = as_records(sequences)
        if method is not None:
            options["method"] = method
        result = await self._infer(triton_model_name(model, "score"),
                                   [self._codec.sequences_input([r.sequence for r in records], False)],
                                   ["result", "scores"], self._codec.json_parameters(options, records),
                                   [r.id for r in records])
        return self._codec.scores(model, records, self._codec.json_result(result), result.as_numpy("scores"))

    async def generate(self, model: str, sequences: Inputs, **options: Any) -> Generated:
        records = as_records(sequences)
        result = await self._infer(triton_model_name(model, "generate"),
                                   [self._codec.sequences_input([r.sequence for r in records], False)],
                                   ["result"], self._codec.json_parameters(options, records),
                                   [r.id for r in records])
        return self._codec.generated(model, records, self._codec.json_result(result))

    async def predict(self, model: str, sequences: Inputs, **options: Any) -> Predictions:
        records = as_records(sequences)
        result = await self._infer(triton_model_name(model, "predict"),
                                   [self._codec.sequences_input([r.sequence for r in records], False)],
                                   ["result"], self._codec.json_parameters(options, records),
                                   [r.id for r in records])
        return self._codec.predictions(model, records, self._codec.json_result(result))

    async def fold(self, model: str, sequence: str, **options: Any) -> Structure:
        result = await self._infer(triton_model_name(model, "fold"), self._codec.fold_inputs(sequence), ["result"],
                                   {"options": json.dumps(options)}, None)
        return self._codec.structure(self._codec.json_result(result))

    async def decode(self, model: str, hiddens: Any, mask: Any = None, **options: Any) -> Decoded:
        result = await self._infer(triton_model_name(model, "decode"), self._codec.decode_inputs(hiddens, mask),
                                   ["generated"], {"options": json.dumps(options)}, None)
        return Decoded(model, self._codec.generated_strings(result))

    async def close(self) -> None:
        await self._client.close()
