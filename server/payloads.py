"""Compact answers for array-heavy results: a numpy ``.npz`` or HDF5 file, or base64 float16.

A JSON answer spends 10-20 bytes on each float (18 MB for the PAE of a
1,000-residue fold); these spend 4 (float32 files) or 2 (float16 text). A file
answer holds the answer's arrays under their JSON names, with one rule for
lists of per-record arrays of different lengths (``NAME/{i}``, i = the
record's index in ``ids``) and for layers (``by_layer/{L}``); both formats use
the same paths (``npz["embeddings/0"]``, ``h5["embeddings/0"]``). Everything
else in the answer is the JSON text ``metadata``:

    body = np.load(io.BytesIO(response.content))
    body["embeddings"], list(body["ids"]), json.loads(body["metadata"].item())

    with h5py.File(io.BytesIO(response.content)) as h5:
        h5["embeddings"][()], list(h5["ids"].asstr()), json.loads(h5.attrs["metadata"])

Text values (metadata, structure files) are UTF-8 bytes in ``.npz`` (numpy
would spend 4 bytes a character on a str) and strings in HDF5.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from .responses import render_json

MEDIA_TYPES = {"npz": "application/x-npz", "h5": "application/x-hdf5"}
SUFFIXES = {"npz": ".npz", "h5": ".h5"}
Value = np.ndarray | str  # arrays, and text (structures) stored as such


def per_record(name: str, arrays: Sequence[Any], dtype: Any = np.float32) -> dict[str, np.ndarray]:
    """``{"NAME/0": arrays[0], ...}``: per-record arrays of different lengths, one entry each."""
    return {f"{name}/{i}": np.asarray(a, dtype=dtype) for i, a in enumerate(arrays)}


def stacked(values: Sequence[Any], dim: int, dtype: Any = np.float32) -> np.ndarray:
    """``[N, D]`` from N vectors (``[0, dim]`` when there are none)."""
    if not len(values):
        return np.zeros((0, dim), dtype=dtype)
    return np.asarray(values, dtype=dtype)


def strings(values: Sequence[str]) -> np.ndarray:
    """A string array (``ids``); readable without pickle in both formats."""
    return np.asarray(list(values), dtype=np.str_) if len(values) else np.zeros(0, dtype="<U1")


def encode_file(arrays: Mapping[str, Value], metadata: Mapping[str, Any], fmt: str) -> bytes:
    """The bytes of an ``.npz`` or ``.h5`` file holding `arrays` (paths as keys) and `metadata` (JSON)."""
    meta = render_json(dict(metadata))
    if fmt == "npz":
        return _npz(arrays, meta)
    if fmt == "h5":
        return _h5(arrays, meta)
    raise ValueError(f"no file format {fmt!r}")  # the request schemas allow only the two


def _npz(arrays: Mapping[str, Value], meta: bytes) -> bytes:
    members = {k: (np.bytes_(v.encode("utf-8")) if isinstance(v, str) else v) for k, v in arrays.items()}
    buffer = io.BytesIO()
    np.savez(buffer, metadata=np.bytes_(meta), **members)
    return buffer.getvalue()


def _h5(arrays: Mapping[str, Value], meta: bytes) -> bytes:
    import h5py

    buffer = io.BytesIO()
    text = h5py.string_dtype("utf-8")
    with h5py.File(buffer, "w", track_order=True) as fh:  # datasets list in answer order
        fh.attrs["metadata"] = meta.decode("utf-8")
        for path, value in arrays.items():
            if isinstance(value, str):
                fh.create_dataset(path, data=value, dtype=text)
            elif value.dtype.kind == "U":
                fh.create_dataset(path, data=value.astype(object), dtype=text)
            else:
                fh.create_dataset(path, data=value)
    return buffer.getvalue()


async def file_response(arrays: Mapping[str, Value], metadata: Mapping[str, Any], fmt: str,
                        filename: str) -> Response:
    """The file as the answer (encoded in a worker thread), with a download name ``filename`` + suffix."""
    body = await run_in_threadpool(encode_file, arrays, metadata, fmt)
    name = filename + SUFFIXES[fmt]
    return Response(body, media_type=MEDIA_TYPES[fmt], headers={"Content-Disposition": f'attachment; filename="{name}"'})


def base64_float16(values: Any) -> dict[str, Any]:
    """``{"dtype": "float16", "shape": [...], "data": base64}`` of an array (little-endian, C order)."""
    array = np.ascontiguousarray(np.asarray(values, dtype="<f2"))
    return {"dtype": "float16", "shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode("ascii")}


def file_content_types(*formats: str) -> dict[str, Any]:
    """The OpenAPI ``content`` entries of file answers (every format when none is named)."""
    return {MEDIA_TYPES[f]: {"schema": {"type": "string", "format": "binary"}} for f in formats or MEDIA_TYPES}


def metadata_without(answer: Mapping[str, Any], *arrays: str) -> dict[str, Any]:
    """The answer's fields that are not stored as arrays."""
    return {k: v for k, v in answer.items() if k not in arrays}

