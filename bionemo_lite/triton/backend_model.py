"""Triton python-backend model serving one verb of a bionemo-lite model.

`bionemo_lite.triton.export` copies this file to ``<repository>/<model>/1/model.py``;
it runs inside Triton's python backend stub (it imports
``triton_python_backend_utils``, so do not import it elsewhere). Everything it
needs is in the model's ``config.pbtxt`` parameters:

- ``bionemo_lite_model``: the registered model name; ``verb``: embed, score,
  generate, decode or fold;
- ``runtime``: ``plugin`` (load the plugin through `bionemo_lite.load` with the
  ``weights`` path, relative to this version folder), ``onnxruntime`` (run
  ``onnx_path`` with onnxruntime in this process) or ``triton`` (send token ids
  to the ONNX model ``onnx_model`` of the same server, e.g. on Triton's
  onnxruntime or TensorRT backend);
- ``dtype``, ``num_threads``, ``tokens_per_batch``: optional tuning.

The wire contract (tensor and parameter names, error messages) is documented in
`bionemo_lite.triton.protocol`. All requests of one ``execute`` call that ask
for the same layers and pooling are embedded in one model call
(`bionemo_lite.merging`, as the HTTP service merges its requests); a request with
a bad record gets its own error response and the others are answered. The
other verbs answer each request with one call of the plugin's verb, its options
bound as the in-process HTTP backend binds them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from bionemo_lite.errors import BionemoLiteError, InvalidInputError
from bionemo_lite.merging import run_merged
from bionemo_lite.pooling import get_pooling, is_per_position
from bionemo_lite.records import Record, prepare_inputs, window_stride
from bionemo_lite.smiles_text import check_smiles_record
from bionemo_lite.results import Embeddings
from bionemo_lite.triton.protocol import decode_layer, encode_error
from bionemo_lite.verbs import EmbedOptions, options_from_keywords


@dataclass
class _Job:
    """One request's records, ready for the model."""

    index: int
    records: list[Record]
    truncated: set[str]
    options: EmbedOptions


def _parameters(config: dict[str, Any]) -> dict[str, str]:
    return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}


def _request_parameters(request: Any) -> dict[str, Any]:
    text = request.parameters()
    return json.loads(text) if text else {}


def _record_ids(request: Any, count: int) -> list[str]:
    """The ``ids`` request parameter (the caller's record ids), else the records' indices."""
    raw = _request_parameters(request).get("ids")
    if not raw:
        return [str(i) for i in range(count)]
    ids = json.loads(raw)
    if not isinstance(ids, list) or len(ids) != count:
        raise InvalidInputError(f"the 'ids' parameter must be a JSON list of {count} record ids")
    return [str(i) for i in ids]


def _ids_to_indices(body: dict[str, Any], index: dict[str, str]) -> dict[str, Any]:
    """A result's ``to_dict()`` with each record id replaced by the record's index (the wire's names)."""
    def name(rid: Any) -> Any:
        return index.get(str(rid), rid)

    out = dict(body)
    for key in ("ids", "truncated"):
        if isinstance(out.get(key), list):
            out[key] = [name(r) for r in out[key]]
    for key in ("errors", "generated"):
        if isinstance(out.get(key), list):
            out[key] = [{**item, "id": name(item.get("id"))} if isinstance(item, dict) else item for item in out[key]]
    return out


def _refuse_windows(records: list[Record], max_length: int | None) -> None:
    """Embeddings served here come whole from one graph call: a record a window policy let through is refused."""
    for r in records:
        if max_length and len(r.sequence) > max_length:
            raise InvalidInputError(
                f"the sequence has {len(r.sequence)} residues, more than the model's maximum of {max_length}, and "
                "Triton's embed does not read sequences through windows: embed it in-process (on_too_long='window') "
                "or truncate it",
                record=r.id,
            )


def _options(request: Any) -> dict[str, Any]:
    """The ``options`` request parameter: a JSON object of the verb's keyword arguments."""
    try:
        options = json.loads(_request_parameters(request).get("options", "{}") or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"the 'options' parameter is not valid JSON: {exc}") from None
    if not isinstance(options, dict):
        raise InvalidInputError("the 'options' parameter must be a JSON object")
    return options


def _input(request: Any, name: str) -> np.ndarray:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise InvalidInputError(f"the request has no {name!r} input")
    return tensor.as_numpy()


def _sequences(request: Any, name: str = "sequences") -> list[str]:
    values = _input(request, name).reshape(-1)
    out = []
    for i, value in enumerate(values):
        try:
            out.append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
        except UnicodeDecodeError:
            raise InvalidInputError("sequence is not valid UTF-8 text", record=str(i)) from None
    return out


def _plain(value: Any) -> Any:
    """numpy scalars and arrays that a plugin left in a result, as JSON values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_tensor(name: str, body: Any) -> Any:
    return pb_utils.Tensor(name, np.array([json.dumps(body, default=_plain).encode("utf-8")], dtype=np.object_))


def _error_response(exc: BaseException) -> Any:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(encode_error(exc)))


class TritonPythonModel:
    """Triton's python-backend entry points: `initialize`, `execute`, `finalize`."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = _parameters(config)
        self.name = params["bionemo_lite_model"]
        self.verb = params.get("verb", "embed")
        self.runtime = params.get("runtime", "plugin")
        self.version_dir = Path(args["model_repository"]) / args["model_version"]
        self.max_length = int(params.get("max_length", "0")) or None
        self.input_kind = params.get("input_kind", "protein")
        tokens_per_batch = params.get("tokens_per_batch")
        self.tokens_per_batch = int(tokens_per_batch) if tokens_per_batch else None
        gpu = args.get("model_instance_kind") == "GPU"
        self.device = f"cuda:{args.get('model_instance_device_id', '0')}" if gpu else "cpu"
        threads = params.get("num_threads")
        self.num_threads = int(threads) if threads else None
        if self.runtime == "plugin":
            self._load_plugin(params)
        else:
            self._load_onnx(params)
        pb_utils.Logger.log_info(f"bionemo-lite {self.name} ({self.verb}, {self.runtime}) ready on {self.device}")

    def _path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else (self.version_dir / path).resolve()

    def _load_plugin(self, params: dict[str, str]) -> None:
        import torch

        import bionemo_lite

        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        weights = params.get("weights")
        from bionemo_lite.finetune.card import is_finetune_folder

        if weights and is_finetune_folder(self._path(weights)):
            # A fine-tune loads from its folder (its card names the base), registered in this process or not.
            self.model = bionemo_lite.finetune.load_path(self._path(weights), device=self.device,
                                                         dtype=params.get("dtype") or None, name=self.name)
            self.max_length = self.model.max_length
            return
        self.model = bionemo_lite.load(
            self.name,
            weights=self._path(weights) if weights else None,
            device=self.device,
            dtype=params.get("dtype") or None,
            numerics=params.get("numerics") or None,
        )
        self.max_length = self.model.max_length

    def _load_onnx(self, params: dict[str, str]) -> None:
        from bionemo_lite.triton.tokens import CharTokenizer

        self.tokenizer = CharTokenizer.from_dict(json.loads((self.version_dir / "tokenizer.json").read_text()))
        self.onnx_layers = tuple(json.loads(params["onnx_layers"]))
        self.onnx_outputs = list(json.loads(params["onnx_outputs"]))
        self.num_layers = int(params["num_layers"])
        bos = params.get("bos_index", "")
        self.bos_index = int(bos) if bos != "" else None
        if self.runtime == "onnxruntime":
            import onnxruntime as ort

            options = ort.SessionOptions()
            if self.num_threads:
                options.intra_op_num_threads = self.num_threads
            providers = ["CPUExecutionProvider"]
            if self.device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(self.device.split(":")[1])}))
            self.session = ort.InferenceSession(str(self._path(params["onnx_path"])), options, providers=providers)
        elif self.runtime == "triton":
            self.onnx_model = params["onnx_model"]
        else:
            raise BionemoLiteError(f"unknown runtime {self.runtime!r}")

    # -- requests -----------------------------------------------------------------------
    def execute(self, requests: list[Any]) -> list[Any]:
        if self.verb == "embed":
            return self._embed(requests)
        answer = {"fold": self._fold, "decode": self._decode}.get(self.verb, self._json_verb)
        return [self._answer(answer, request) for request in requests]

    def _answer(self, fn: Any, request: Any) -> Any:
        """``fn(request)``, or the error response of whatever it raised (the server keeps serving)."""
        try:
            return fn(request)
        except BionemoLiteError as exc:
            return _error_response(exc)
        except Exception as exc:
            pb_utils.Logger.log_error(f"{self.verb} failed: {exc!r}")
            return _error_response(exc)

    def _prepare(self, sequences: list[str], policy: str) -> tuple[list[Record], list[str]]:
        if not sequences:
            raise InvalidInputError("no input records were given")
        # SMILES: length and characters here, before RDKit; validity and tokens by the model itself.
        self._check_smiles([Record(str(i), s, i) for i, s in enumerate(sequences)], policy)
        return prepare_inputs(sequences, self.input_kind, self.max_length or 10**9, policy)  # type: ignore[arg-type]

    def _check_smiles(self, records: list[Record], policy: str = "error") -> None:
        if self.input_kind == "smiles":
            for record in records:
                check_smiles_record(record, self.max_length or None, policy)  # type: ignore[arg-type]

    def _embed(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        groups: dict[EmbedOptions, list[_Job]] = defaultdict(list)
        for i, request in enumerate(requests):
            try:
                params = _request_parameters(request)
                layer = decode_layer(params.get("layer", -1))
                pooling = str(params.get("pooling", "mean"))
                policy = str(params.get("on_too_long", "error"))
                records, truncated = self._prepare(_sequences(request), policy)
                if self.input_kind == "protein" and window_stride(policy, self.max_length or 1) is not None:
                    _refuse_windows(records, self.max_length)  # SMILES lengths are tokens: the model checks them
                # Proteins arrive cut already; other inputs carry their policy to the model.
                options = EmbedOptions(tuple(layer) if isinstance(layer, list) else (layer,), pooling,
                                       "error" if self.input_kind == "protein" else policy,  # type: ignore[arg-type]
                                       self.tokens_per_batch)
                groups[options].append(_Job(i, records, set(truncated), options))
            except BionemoLiteError as exc:
                responses[i] = _error_response(exc)
            except Exception as exc:  # a malformed request must not fail the others of the batch
                pb_utils.Logger.log_error(f"reading request {i} failed: {exc!r}")
                responses[i] = _error_response(exc)
        for options, jobs in groups.items():
            try:
                # One request's records breaking the shared call: each runs alone, so only it fails.
                outcomes, _ = run_merged(self._embedder(options), [job.records for job in jobs],
                                         refusals=(BionemoLiteError,))
            except Exception as exc:  # a bug or a crash: answer every request of the group, keep serving
                pb_utils.Logger.log_error(f"embedding failed: {exc!r}")
                outcomes = [exc] * len(jobs)
            for job, outcome in zip(jobs, outcomes):
                if isinstance(outcome, BaseException):
                    if not isinstance(outcome, BionemoLiteError):
                        pb_utils.Logger.log_error(f"embedding failed: {outcome!r}")
                    responses[job.index] = _error_response(outcome)
                    continue
                try:
                    responses[job.index] = self._embed_response(job, outcome)
                except Exception as exc:
                    pb_utils.Logger.log_error(f"building the response failed: {exc!r}")
                    responses[job.index] = _error_response(exc)
        return responses

    def _embedder(self, options: EmbedOptions) -> Callable[[list[Record]], Embeddings]:
        """The model call for requests asking for `options`: the plugin's embed, or the ONNX graph."""
        if self.runtime == "plugin":
            return lambda records: options.run(self.model, records)
        return lambda records: self._onnx_embed(records, options.layer, options.pooling)

    def _embed_response(self, job: _Job, result: Embeddings) -> Any:
        n = len(job.records)
        row = {rid: k for k, rid in enumerate(result.ids)}
        failures = {e.id: e.reason for e in result.errors}
        truncated = job.truncated | set(result.truncated)
        layers = tuple(result.layers)
        per_record = {k: [np.asarray(result.by_layer[lay][row[r.id]]) for lay in layers]
                      for k, r in enumerate(job.records) if r.id in row}
        dim = next((a.shape[-1] for arrays in per_record.values() for a in arrays), 0)
        per_residue = is_per_position(result.pooling)
        # Residues (or tokens, for SMILES) the model embedded; a failed record reports its input length.
        lengths = [int(result.lengths[row[r.id]]) if r.id in row else len(r.sequence) for r in job.records]
        width = max((lengths[k] for k in per_record), default=0) if per_residue else 1
        out = np.zeros((n, len(layers), width, dim), dtype=np.float32)
        for k, arrays in per_record.items():
            for li, value in enumerate(arrays):
                if per_residue:
                    out[k, li, : value.shape[0]] = value
                else:
                    out[k, li, 0] = value
        errors = [failures.get(r.id, "record was not embedded") if k not in per_record else ""
                  for k, r in enumerate(job.records)]
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("embeddings", out),
                pb_utils.Tensor("lengths", np.array([[v] for v in lengths], dtype=np.int32)),
                pb_utils.Tensor("layers", np.tile(np.array(layers, dtype=np.int32), (n, 1))),
                pb_utils.Tensor("truncated", np.array([[r.id in truncated] for r in job.records], dtype=bool)),
                pb_utils.Tensor("errors", np.array([[e.encode()] for e in errors], dtype=np.object_)),
            ]
        )

    # -- ONNX encoders ----------------------------------------------------------------------
    def _onnx_embed(self, records: list[Record], layer: Any, pooling: str) -> Embeddings:
        from bionemo_lite.batching import token_budget_batches
        from bionemo_lite.encoding import resolve_layers

        pool = get_pooling(pooling)
        layers = resolve_layers(layer, self.num_layers)
        missing = [lay for lay in layers if lay not in self.onnx_layers]
        if missing:
            raise InvalidInputError(
                f"this ONNX export holds layer(s) {list(self.onnx_layers)} only, not {missing}; "
                "export in the python format to serve every layer"
            )
        extra = len(self.tokenizer.prepend) + len(self.tokenizer.append)
        batches = token_budget_batches([len(r.sequence) for r in records], self.tokens_per_batch or 4096, extra)
        by_layer: dict[int, list[Any]] = {lay: [None] * len(records) for lay in layers}
        for batch in batches:
            seqs = [records[i].sequence for i in batch]
            feeds = self.tokenizer(seqs)
            outputs = self._run_graph(feeds, [self.onnx_outputs[self.onnx_layers.index(lay)] for lay in layers])
            width = next(iter(feeds.values())).shape[1]
            mask = self.tokenizer.residue_mask(seqs, width)
            for lay, hidden in zip(layers, outputs):
                for i, pooled in zip(batch, pool.numpy(hidden, mask, self.bos_index)):
                    by_layer[lay][i] = pooled
        return Embeddings(self.name, [r.id for r in records], [len(r.sequence) for r in records], layers, pooling,
                          by_layer)

    def _run_graph(self, feeds: dict[str, np.ndarray], names: list[str]) -> list[np.ndarray]:
        if self.runtime == "onnxruntime":
            return list(self.session.run(names, feeds))
        request = pb_utils.InferenceRequest(
            model_name=self.onnx_model,
            requested_output_names=names,
            inputs=[pb_utils.Tensor(k, v) for k, v in feeds.items()],
        )
        response = request.exec()
        if response.has_error():
            raise BionemoLiteError(f"ONNX model {self.onnx_model!r} failed: {response.error().message()}")
        return [pb_utils.get_output_tensor_by_name(response, n).as_numpy() for n in names]

    # -- score / generate / fold / decode: the verb's typed options, as at every other door --------------
    def _json_verb(self, request: Any) -> Any:
        """score / generate: the request's sequences as records, named in the answer by their index.

        A client may send the records' own ids (the ``ids`` parameter, a JSON
        list): the verb then sees them (ESM-2's seeded sampling draws each
        record's stream from its id, so a seeded job gives what it gives
        in-process), and the answer still names records by index.
        """
        options = _options(request)
        sequences = _sequences(request)
        if not sequences:
            raise InvalidInputError("no input records were given")
        ids = _record_ids(request, len(sequences))
        records = [Record(ids[i], s, i) for i, s in enumerate(sequences)]
        index = {rid: str(i) for i, rid in reversed(list(enumerate(ids)))}
        try:
            self._check_smiles(records)
            result = options_from_keywords(self.verb, options).run(self.model, records)
        except InvalidInputError as exc:
            if exc.record is None or str(exc.record) not in index:
                raise
            raise InvalidInputError(exc.reason, record=index[str(exc.record)], position=exc.position) from None
        tensors = [_json_tensor("result", _ids_to_indices(result.to_dict(), index))]
        if self.verb == "score":
            scores = np.asarray(getattr(result, "scores", []), dtype=np.float32).reshape(-1)
            tensors.append(pb_utils.Tensor("scores", scores))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def _fold(self, request: Any) -> Any:
        """One structure: the ``Structure.to_dict()`` JSON, and pLDDT / PAE as tensors."""
        options = _options(request)
        sequences = _sequences(request, "sequence")
        if len(sequences) != 1:
            raise InvalidInputError(f"a fold request holds exactly one sequence, got {len(sequences)}")
        result = options_from_keywords("fold", options).run(self.model, sequences[0])
        plddt = np.asarray(result.plddt, dtype=np.float32).reshape(-1)
        pae = np.zeros((0, 0), np.float32) if result.pae is None else np.asarray(result.pae, dtype=np.float32)
        return pb_utils.InferenceResponse(output_tensors=[
            _json_tensor("result", result.to_dict()),
            pb_utils.Tensor("plddt", plddt),
            pb_utils.Tensor("pae", pae),
        ])

    def _decode(self, request: Any) -> Any:
        """Hidden states ``[N, T, D]`` and their mask ``[N, T]`` back to one string per row."""
        options = _options(request)
        hiddens = np.asarray(_input(request, "hiddens"), dtype=np.float32)
        mask = np.asarray(_input(request, "mask"), dtype=bool)
        result = options_from_keywords("decode", options).run(self.model, hiddens, mask)
        if not isinstance(result, (list, tuple)) or not all(isinstance(t, str) for t in result):
            raise BionemoLiteError(f"{self.name} decode returned {type(result).__name__}, not a list of strings")
        generated = np.array([t.encode("utf-8") for t in result], dtype=np.object_)
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("generated", generated)])

    def finalize(self) -> None:
        model = getattr(self, "model", None)
        if model is not None:
            model.close()
