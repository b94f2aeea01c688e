"""``POST /protein-embedding/{model}/embeddings`` and ``/molecule/{model}/embeddings``: npz (or h5) files.

The client reads every array of the file as one row per input
(``_decode_embedding_response``). ESM-2's file is the service's: ``tokens``
[B, T] (BOS 0, padding 1, EOS 2: the client strips exactly these), ``logits``
[B, T, vocab], ``representations`` [B, T, D] (the last layer per token; zeros on
BOS, EOS and padding) and ``embeddings`` [B, D] (mean over the residues). ESM-1nv
and MegaMolBART give ``embeddings`` only, as the service did.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from bionemo_lite.errors import BionemoLiteError
from bionemo_lite.records import Record

from .. import native
from ...budget import check_budget, embed_cost
from ...schemas import EmbedRequest
from ...validation import check_proteins
from .catalog import variant

MEDIA_TYPE = "application/octet-stream"  # the client's ResponseHandler reads this as binary content
SERVED_BY = "X-Served-By"
BOS, PAD, EOS = 0, 1, 2  # the ESM alphabet's <cls>, <pad>, <eos>: what esm2_sync strips


class LogitsUnavailableError(BionemoLiteError):
    """The model serving ESM-2 here cannot give masked-LM logits (e.g. a remote Triton model)."""


@runtime_checkable
class MaskedLanguageModel(Protocol):
    """What esm2's file needs beyond the embed verb: the token ids and the LM head's logits."""

    def tokenize(self, sequences: Sequence[str]) -> Any: ...

    def logits(self, inputs: Any, *, on_too_long: Any = ..., tokens_per_batch: Any = ...) -> list[np.ndarray]: ...


def encode(arrays: dict[str, np.ndarray], fmt: str) -> bytes:
    """The arrays as the file the client decodes: ``np.savez`` members, or HDF5 datasets."""
    buffer = io.BytesIO()
    if fmt == "npz":
        np.savez(buffer, **arrays)
    else:
        import h5py

        with h5py.File(buffer, "w") as fh:
            for key, value in arrays.items():
                fh[key] = value
    return buffer.getvalue()


async def file_answer(arrays: dict[str, np.ndarray], fmt: str, served_by: str) -> Response:
    content = await run_in_threadpool(encode, arrays, fmt)
    return Response(content, media_type=MEDIA_TYPE, headers={SERVED_BY: served_by})


async def pooled(request: Request, name: str, sequences: list[str]) -> np.ndarray:
    """[B, D] mean embeddings through the native embed."""
    body = native.parse(EmbedRequest, {"sequences": sequences, "pooling": "mean"})
    result = await native.embed(request, name, body)
    return np.asarray(result["embeddings"], dtype=np.float32).reshape(len(sequences), int(result["dim"]))


async def esm2_file(request: Request, name: str, sequences: list[str]) -> dict[str, np.ndarray]:
    """The service's ESM-2 arrays, padded to the longest input (+ BOS and EOS)."""
    embeddings = await pooled(request, name, sequences)
    body = native.parse(EmbedRequest, {"sequences": sequences, "pooling": "per_residue"})
    per_token = await native.embed(request, name, body)
    spec = native.spec_with(name, "embed")
    records, _ = check_proteins(spec, body.records())  # what the model reads: cleaned, as embed saw them
    check_budget(embed_cost(spec, body), native.settings_of(request))  # the logits are one more pass
    tokens, logits = await native.provider_of(request).run(name, "embed", lambda model: _tokens_and_logits(
        model, records))
    width = tokens.shape[1]
    dim = int(per_token["dim"])
    representations = np.zeros((len(records), width, dim), np.float32)
    padded_logits = np.zeros((len(records), width, logits[0].shape[-1]), np.float32)
    for i, (rows, lm) in enumerate(zip(per_token["embeddings"], logits)):
        rows = np.asarray(rows, dtype=np.float32)
        representations[i, 1 : 1 + len(rows)] = rows
        padded_logits[i, : len(lm)] = lm
    return {"tokens": tokens, "logits": padded_logits, "representations": representations, "embeddings": embeddings}


def _tokens_and_logits(model: Any, records: list[Record]) -> tuple[np.ndarray, list[np.ndarray]]:
    if not isinstance(model, MaskedLanguageModel):
        raise LogitsUnavailableError(
            f"{model.name} cannot give the masked-LM logits esm2_sync returns on this backend; "
            "POST /v1/models/{name}/embed gives its embeddings")
    tokens = np.asarray(model.tokenize([r.sequence for r in records]), dtype=np.int64)
    return tokens, [np.asarray(a, dtype=np.float32) for a in model.logits(records)]


async def protein_embeddings(request: Request, model: str, sequences: list[str], fmt: str) -> Response:
    name = variant(model)
    if model.startswith("esm2-"):
        return await file_answer(await esm2_file(request, name, sequences), fmt, name)
    return await file_answer({"embeddings": await pooled(request, name, sequences)}, fmt, name)


async def molecule_embeddings(request: Request, model: str, smis: list[str], fmt: str) -> Response:
    name = variant(model)
    return await file_answer({"embeddings": await pooled(request, name, smis)}, fmt, name)
