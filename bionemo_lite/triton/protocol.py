"""The wire contract between an exported Triton model and its clients.

One Triton model per verb, named `triton_model_name` (``<model>`` for embed,
``<model>__<verb>`` for the others):

- ``<model>`` embeds. Input ``sequences`` (``TYPE_STRING``, dims ``[1]``: one
  sequence or SMILES per batch row, so Triton's dynamic batcher merges requests
  of any length; padding happens inside the model). Request parameters
  ``layer`` (an int, or a JSON list of ints as a string), ``pooling``
  (``mean`` | ``bos`` | ``per_residue``, or the model's own, e.g. ``per_token``)
  and ``on_too_long`` (``error`` | ``truncate``). Outputs, per record:
  ``embeddings`` ``TYPE_FP32`` ``[layers, positions, D]`` (``positions`` is 1
  when pooled, else the longest record of the request, zero-padded),
  ``lengths`` ``TYPE_INT32`` ``[1]`` (residues or tokens embedded),
  ``layers`` ``TYPE_INT32`` ``[layers]`` (absolute indices), ``truncated``
  ``TYPE_BOOL`` ``[1]`` and ``errors`` ``TYPE_STRING`` ``[1]`` (empty, or why
  this record failed alone, e.g. out of memory).
- ``<model>__score`` and ``<model>__generate`` take ``sequences``
  (``TYPE_STRING``, dims ``[-1]``: one request is one call of the verb, as
  variant scoring needs the whole request) and a request parameter
  ``options`` (JSON object of the verb's keyword arguments). They answer
  ``result`` (``TYPE_STRING`` ``[1]``, the JSON of the result's ``to_dict()``);
  ``__score`` also answers ``scores`` (``TYPE_FP32`` ``[-1]``).
- ``<model>__predict`` (a fine-tuned model) is such a verb too: options ``on_too_long``; ``result``
  is the JSON of ``Predictions.to_dict()`` (values, or class probabilities, per record).
- ``<model>__fold`` takes ``sequence`` (``TYPE_STRING`` ``[1]``: one protein,
  chains joined by ``:``) and ``options`` (``num_recycles``, ``chunk_size``,
  ``id``...). It answers ``result`` (the JSON of ``Structure.to_dict()``: PDB
  and mmCIF text, per-residue pLDDT, pTM, PAE), and the confidences as tensors
  for other Triton clients: ``plddt`` ``TYPE_FP32`` ``[-1]`` and ``pae``
  ``TYPE_FP32`` ``[-1, -1]`` (``[0, 0]`` when the model predicts none).
- ``<model>__decode`` takes ``hiddens`` (``TYPE_FP32`` ``[-1, -1, -1]``:
  ``[N, T, D]``), ``mask`` (``TYPE_BOOL`` ``[-1, -1]``: ``[N, T]``, True on
  positions to use) and ``options`` (``method``, ``beam_size``...). It
  answers ``generated`` (``TYPE_STRING`` ``[-1]``: one decoded string per row).

Options are bound to the verb's keyword arguments exactly as the in-process
HTTP backend binds them (`bionemo_lite.binding.bind_options`: the same
aliases, the same error for an option the verb does not take).

Records are named by their 0-based index in the request; clients map the
indices back to their own ids. A request that fails (bad residue, unparsable
SMILES, too long, bad option) gets an error response whose message is a JSON
object (`encode_error`), so clients raise the same `bionemo_lite` exception the
in-process model would have raised; the other requests of the batch are
answered normally.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import BionemoLiteError, InvalidInputError, UnsupportedVerbError

VERB_SEPARATOR = "__"
EMBED_OUTPUTS = ("embeddings", "lengths", "layers", "truncated", "errors")
JSON_VERBS = ("score", "generate", "predict")  # predict: fine-tuned models (bionemo_lite.finetune)
SERVABLE_VERBS = ("embed", *JSON_VERBS, "decode", "fold")
ERROR_PREFIX = "bionemo-lite error: "


def triton_model_name(model: str, verb: str = "embed") -> str:
    """The Triton model answering `verb` for the registered `model`."""
    return model if verb == "embed" else f"{model}{VERB_SEPARATOR}{verb}"


def split_model_name(name: str) -> tuple[str, str]:
    """``"esm2_t6_8M_UR50D__score"`` -> ``("esm2_t6_8M_UR50D", "score")``."""
    base, sep, verb = name.rpartition(VERB_SEPARATOR)
    if sep and verb in SERVABLE_VERBS:
        return base, verb
    return name, "embed"


def encode_layer(layer: int | list[int] | tuple[int, ...]) -> int | str:
    """A ``layer`` request parameter (Triton parameters are scalars: lists travel as JSON text)."""
    if isinstance(layer, (list, tuple)):
        return json.dumps([int(v) for v in layer])
    return int(layer)


def decode_layer(value: Any) -> int | list[int]:
    """Inverse of `encode_layer`, refusing anything that is not an int or a list of ints."""
    if isinstance(value, bool):
        raise InvalidInputError(f"layer must be an integer or a list of integers, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, int) and not isinstance(parsed, bool):
            return parsed
        if isinstance(parsed, list) and parsed and all(isinstance(v, int) and not isinstance(v, bool) for v in parsed):
            return parsed
    raise InvalidInputError(f"layer must be an integer or a list of integers, got {value!r}")


def encode_error(exc: BaseException) -> str:
    """The message of an error response: a prefix and a JSON object clients can rebuild."""
    body: dict[str, Any] = {"type": type(exc).__name__, "detail": str(exc)}
    if isinstance(exc, InvalidInputError):
        body.update(exc.to_dict())
    elif isinstance(exc, UnsupportedVerbError):
        body.update({"model": exc.model, "verb": exc.verb, "verbs": list(exc.verbs)})
    return ERROR_PREFIX + json.dumps(body)


def decode_error(message: str, ids: list[str] | None = None) -> BionemoLiteError | None:
    """The `bionemo_lite` exception of an error response, or None if it is not one of ours.

    Args:
        message: the error text Triton returned.
        ids: the request's record ids, to turn record indices back into ids.
    """
    start = message.find(ERROR_PREFIX)
    if start < 0:
        return None
    try:
        body = json.loads(message[start + len(ERROR_PREFIX):])
    except json.JSONDecodeError:
        return None
    kind = body.get("type")
    if kind == "InvalidInputError":
        record = body.get("record")
        if ids is not None and record is not None:
            record = index_to_id(record, ids)
        return InvalidInputError(body.get("reason", body.get("detail", "")), record=record, position=body.get("position"))
    if kind == "UnsupportedVerbError":
        return UnsupportedVerbError(body.get("model", "?"), body.get("verb", "?"), body.get("verbs", []))
    return BionemoLiteError(f"Triton model failed: {body.get('detail', message)}")


def index_to_id(record: Any, ids: list[str]) -> Any:
    """A record named by its index in the request (``"3"`` or ``3``) -> the caller's id."""
    try:
        idx = int(record)
    except (TypeError, ValueError):
        return record
    return ids[idx] if 0 <= idx < len(ids) and str(idx) == str(record) else record
