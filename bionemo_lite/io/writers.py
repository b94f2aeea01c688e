"""Writing results to disk; the format follows the output file's extension.

Embeddings (one row per record):
- ``.parquet``: columns ``id``, ``sequence``, ``length``, ``truncated`` and
  ``embedding`` as ``list<float32>`` (pooled) or ``list<list<float32>>``
  (a per-position pooling: ``per_residue``, MegaMolBART's ``per_token``).
  With several layers, one column ``embedding_<L>`` per absolute layer index
  instead of ``embedding``. The schema metadata key
  ``bionemo_lite`` holds ``{"model", "layers", "pooling"}`` as JSON. Extra
  columns of a CSV/TSV input follow as string columns.
- ``.h5``: one dataset per id (``[D]`` or ``[L, D]``; with several layers a
  leading layer axis). File attributes ``model``, ``layers``, ``pooling``;
  dataset attributes ``id`` (the exact id: ``/`` and ``%`` are escaped in
  dataset names), ``length``, ``truncated`` and the input's extra columns.
- ``.npz``: one array per id, same shapes as ``.h5`` (ragged per-residue
  arrays need one key each).

Contact maps (one ``[L, L]`` float32 array per record, `write_contacts`): the
same three formats, the array under the id in ``.h5`` / ``.npz`` (file
attribute ``content = "contacts"``) and in a ``contacts`` column
(``list<list<float32>>``) in ``.parquet``.

Tables (scores, generated samples, summaries): ``.parquet``, ``.csv``, ``.tsv``.

Every writer streams its rows and writes atomically (a temporary file in the
same directory, then `os.replace`).
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BionemoLiteError
from ..pooling import is_per_position
from .atomic import atomic_path

EMBEDDING_FORMATS = (".parquet", ".h5", ".hdf5", ".npz")
TABLE_FORMATS = (".parquet", ".csv", ".tsv")
META_KEY = b"bionemo_lite"
_ROWS_PER_GROUP = 512  # parquet row group / write batch


class UnsupportedFormatError(BionemoLiteError, ValueError):
    """The output file's extension names no format this kind of result can be written in."""


def output_suffix(path: str | Path, allowed: Sequence[str]) -> str:
    """The lower-case extension of `path` if it is one of `allowed`.

    Raises:
        UnsupportedFormatError: listing the allowed extensions.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise UnsupportedFormatError(
            f"cannot write {str(path)!r}: the output extension must be one of {', '.join(allowed)}"
        )
    return suffix


@dataclass
class EmbeddingRow:
    """One record's embeddings, by absolute layer index."""

    id: str
    sequence: str
    length: int
    by_layer: dict[int, np.ndarray]
    truncated: bool = False
    extras: dict[str, str] = field(default_factory=dict)

    def stacked(self, layers: Sequence[int]) -> np.ndarray:
        """The array stored per id in ``.h5``/``.npz``: one layer as is, several stacked on axis 0."""
        if len(layers) == 1:
            return np.asarray(self.by_layer[layers[0]], dtype=np.float32)
        return np.stack([np.asarray(self.by_layer[lay], dtype=np.float32) for lay in layers])


@dataclass
class EmbeddingFile:
    """What `read_embeddings` returns: arrays by id, in file order, and the run's metadata."""

    ids: list[str]
    arrays: dict[str, np.ndarray]
    model: str | None = None
    layers: tuple[int, ...] | None = None
    pooling: str | None = None
    lengths: dict[str, int] = field(default_factory=dict)


CONTACTS_COLUMN = "contacts"


@dataclass
class ContactRow:
    """One record's contact map: ``contacts[i, j]`` is the probability that residues i and j touch."""

    id: str
    sequence: str
    length: int
    contacts: np.ndarray
    truncated: bool = False
    extras: dict[str, str] = field(default_factory=dict)

    def as_embedding_row(self) -> EmbeddingRow:
        # The map travels through the per-record array writers as the one "layer" of the file.
        return EmbeddingRow(self.id, self.sequence, self.length, {0: self.contacts}, self.truncated, self.extras)


def embedding_column(layer: int, layers: Sequence[int]) -> str:
    """The parquet column holding `layer`."""
    return "embedding" if len(layers) == 1 else f"embedding_{layer}"


def write_embeddings(
    path: str | Path, rows: Iterable[EmbeddingRow], *, model: str, layers: Sequence[int], pooling: str,
    extra_columns: Sequence[str] = (),
) -> int:
    """Stream `rows` into `path` (format by extension), atomically; returns the rows written.

    Args:
        extra_columns: names of the `EmbeddingRow.extras` to store (parquet
            columns, h5 dataset attributes; not in ``.npz``).
    """
    path = Path(path)
    suffix = output_suffix(path, EMBEDDING_FORMATS)
    layers = tuple(int(x) for x in layers)
    meta = {"model": model, "layers": list(layers), "pooling": pooling}
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            return _write_embeddings_parquet(tmp, rows, layers, pooling, meta, tuple(extra_columns))
        if suffix in (".h5", ".hdf5"):
            attrs = {"model": model, "layers": np.asarray(layers, dtype=np.int64), "layer": layers[0],
                     "pooling": pooling}
            return _write_arrays_h5(tmp, rows, layers, attrs)
        return _write_embeddings_npz(tmp, rows, layers)


def write_contacts(
    path: str | Path, rows: Iterable[ContactRow], *, model: str, extra_columns: Sequence[str] = ()
) -> int:
    """Stream contact maps into `path` (``.h5``, ``.npz`` or ``.parquet``), atomically; returns the rows written."""
    path = Path(path)
    suffix = output_suffix(path, EMBEDDING_FORMATS)
    meta = {"model": model, "content": CONTACTS_COLUMN}
    arrays = (row.as_embedding_row() for row in rows)
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            return _write_embeddings_parquet(tmp, arrays, (0,), "contacts", meta, tuple(extra_columns),
                                             array_columns=(CONTACTS_COLUMN,))
        if suffix in (".h5", ".hdf5"):
            return _write_arrays_h5(tmp, arrays, (0,), meta)
        return _write_embeddings_npz(tmp, arrays, (0,))


def read_contacts(path: str | Path) -> EmbeddingFile:
    """Read a file written by `write_contacts`: ``arrays[id]`` is that record's ``[L, L]`` map."""
    path = Path(path)
    suffix = output_suffix(path, EMBEDDING_FORMATS)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
        ids = table.column("id").to_pylist()
        maps = _list_column_to_numpy(table.column(CONTACTS_COLUMN).combine_chunks())
        return EmbeddingFile(ids, dict(zip(ids, maps)), meta.get("model"), None, CONTACTS_COLUMN,
                             dict(zip(ids, table.column("length").to_pylist())))
    return read_embeddings(path)


def _list_array(arrays: list[np.ndarray], per_residue: bool) -> Any:
    """Build ``list<float32>`` / ``list<list<float32>>`` from numpy without Python-level loops over values."""
    import pyarrow as pa

    values = pa.array(
        np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0, np.float32), pa.float32()
    )
    if not per_residue:
        offsets = np.concatenate([[0], np.cumsum([a.shape[0] for a in arrays])]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), values)
    dims = [a.shape[1] for a in arrays for _ in range(a.shape[0])]
    inner_offsets = np.concatenate([[0], np.cumsum(dims)]).astype(np.int32)
    inner = pa.ListArray.from_arrays(pa.array(inner_offsets), values)
    outer_offsets = np.concatenate([[0], np.cumsum([a.shape[0] for a in arrays])]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(outer_offsets), inner)


def _write_embeddings_parquet(
    tmp: Path, rows: Iterable[EmbeddingRow], layers: tuple[int, ...], pooling: str, meta: dict,
    extra_columns: tuple[str, ...] = (), array_columns: tuple[str, ...] | None = None,
) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    first, rows = peek_first(rows)
    # The arrays say whether they hold one row per position (a family may name its pooling its own way).
    per_residue = (np.ndim(first.by_layer[layers[0]]) == 2) if first is not None else is_per_position(pooling)
    emb_type = pa.list_(pa.list_(pa.float32())) if per_residue else pa.list_(pa.float32())
    fields = [
        pa.field("id", pa.string()),
        pa.field("sequence", pa.string()),
        pa.field("length", pa.int32()),
        pa.field("truncated", pa.bool_()),
    ] + [pa.field(name, emb_type) for name in (array_columns or [embedding_column(lay, layers) for lay in layers])]
    fields += [pa.field(name, pa.string()) for name in extra_columns]
    schema = pa.schema(fields, metadata={META_KEY: json.dumps(meta).encode()})
    n = 0
    with pq.ParquetWriter(tmp, schema) as writer:
        for batch in _batched(rows, _ROWS_PER_GROUP):
            columns = [
                pa.array([r.id for r in batch], pa.string()),
                pa.array([r.sequence for r in batch], pa.string()),
                pa.array([r.length for r in batch], pa.int32()),
                pa.array([r.truncated for r in batch], pa.bool_()),
            ] + [
                _list_array([np.asarray(r.by_layer[lay], np.float32) for r in batch], per_residue)
                for lay in layers
            ] + [pa.array([r.extras.get(name) for r in batch], pa.string()) for name in extra_columns]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
            n += len(batch)
    return n


def h5_key(record_id: str) -> str:
    """An HDF5 dataset name for an id: ``%`` and ``/`` percent-escaped, no leading dot."""
    key = record_id.replace("%", "%25").replace("/", "%2F")
    return "%2E" + key[1:] if key.startswith(".") else key


def _write_arrays_h5(tmp: Path, rows: Iterable[EmbeddingRow], layers: tuple[int, ...], attrs: dict) -> int:
    import h5py

    n = 0
    target = GuardedFile(tmp)
    try:
        with h5py.File(target, "w", track_order=True) as fh:  # datasets iterate in input order
            for key, value in attrs.items():
                fh.attrs[key] = value
            for row in rows:
                if target.error is not None:
                    break  # the disk is full: let HDF5 close (into memory), then report it
                ds = fh.create_dataset(h5_key(row.id), data=row.stacked(layers))
                ds.attrs["id"] = row.id
                ds.attrs["length"] = row.length
                ds.attrs["truncated"] = row.truncated
                for name, value in row.extras.items():
                    ds.attrs[name] = value
                n += 1
    finally:
        target.close()
    if target.error is not None:
        raise target.error
    return n


H5_BYTES_PER_RECORD = 1024  # a dataset's object header, attributes and link: about 500 bytes with HDF5 1.14
H5_BYTES_PER_FILE = 1 << 20


def space_needed(path: str | Path, n_records: int, array_bytes: int) -> int:
    """Free bytes to make sure of before writing `n_records` whose arrays hold `array_bytes` to `path`.

    For HDF5, the file's estimated size: a full disk is then found out
    before the first byte is written (`GuardedFile` covers a disk that fills
    meanwhile). 0 for the other formats: they compress, so no estimate is
    safe, and their writers fail cleanly with ENOSPC where it happens.
    """
    if Path(path).suffix.lower() not in (".h5", ".hdf5"):
        return 0
    return array_bytes + n_records * H5_BYTES_PER_RECORD + H5_BYTES_PER_FILE


class GuardedFile:
    """The file HDF5 writes an output through (h5py's file-object driver), so that no write of it ever fails.

    HDF5 does not survive a failed write: on a full disk (h5py 3.16, HDF5
    1.14, tmpfs) it goes on "writing" far past the end, reports the errors
    only from object destructors, and the interpreter dies of a SIGSEGV at
    exit. Here a write the system refuses is kept in memory instead (HDF5 may
    read it back) and remembered in `error`: the writer stops adding
    datasets, lets HDF5 close (the few metadata writes left go to memory too)
    and raises `error` itself.
    """

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_RDWR)
        self._pos = 0
        self._kept: list[tuple[int, bytes]] = []  # writes refused by the system, in order, by offset
        self.error: OSError | None = None

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size()}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _size(self) -> int:
        kept_end = max((offset + len(data) for offset, data in self._kept), default=0)
        return max(os.fstat(self._fd).st_size, kept_end)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        if self.error is None:
            try:
                while done < len(view):
                    done += os.pwrite(self._fd, view[done:], self._pos + done)
            except OSError as exc:
                self.error = exc
        if done < len(view):
            self._kept.append((self._pos + done, bytes(view[done:])))
        self._pos += len(view)
        return len(view)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        got = os.preadv(self._fd, [view], self._pos)
        view[got:] = bytes(len(view) - got)
        start, stop = self._pos, self._pos + len(view)
        for offset, data in self._kept:  # later writes win, as on disk
            lo, hi = max(start, offset), min(stop, offset + len(data))
            if lo < hi:
                view[lo - start:hi - start] = data[lo - offset:hi - offset]
        self._pos = stop
        return len(view)

    def read(self, size: int = -1) -> bytes:
        buffer = bytearray(max(self._size() - self._pos, 0) if size < 0 else size)
        self.readinto(buffer)
        return bytes(buffer)

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
            except OSError as exc:
                self.error = exc
        return size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _write_embeddings_npz(tmp: Path, rows: Iterable[EmbeddingRow], layers: tuple[int, ...]) -> int:
    # np.savez needs every array in memory at once; writing the members one by
    # one into the zip (the layout np.load reads) keeps memory flat.
    n = 0
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for row in rows:
            with zf.open(f"{row.id}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, row.stacked(layers), allow_pickle=False)
            n += 1
    return n


def read_embeddings(path: str | Path) -> EmbeddingFile:
    """Read a file written by `write_embeddings` back into numpy arrays (by id, file order).

    Arrays have the shapes documented above (several layers: stacked on axis 0,
    also for parquet). ``.npz`` files carry no metadata.
    """
    path = Path(path)
    suffix = output_suffix(path, EMBEDDING_FORMATS)
    if suffix == ".parquet":
        return _read_embeddings_parquet(path)
    if suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as fh:
            layers = tuple(int(x) for x in fh.attrs["layers"]) if "layers" in fh.attrs else None
            kind = fh.attrs.get("pooling", fh.attrs.get("content"))
            out = EmbeddingFile([], {}, str(fh.attrs["model"]), layers, None if kind is None else str(kind))
            for key in fh:
                rid = str(fh[key].attrs["id"])
                out.ids.append(rid)
                out.arrays[rid] = fh[key][()]
                out.lengths[rid] = int(fh[key].attrs["length"])
        return out
    with np.load(path, allow_pickle=False) as npz:
        ids = list(npz.files)
        return EmbeddingFile(ids, {rid: npz[rid] for rid in ids})


def _read_embeddings_parquet(path: Path) -> EmbeddingFile:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    layers = tuple(meta.get("layers", [])) or None
    pooling = meta.get("pooling")
    ids = table.column("id").to_pylist()
    lengths = table.column("length").to_pylist()
    names = [embedding_column(lay, layers) for lay in layers] if layers else ["embedding"]
    per_layer = [_list_column_to_numpy(table.column(name).combine_chunks()) for name in names]
    arrays = {
        rid: (per_layer[0][i] if len(per_layer) == 1 else np.stack([col[i] for col in per_layer]))
        for i, rid in enumerate(ids)
    }
    return EmbeddingFile(ids, arrays, meta.get("model"), layers, pooling, dict(zip(ids, lengths)))


def _list_column_to_numpy(column: Any) -> list[np.ndarray]:
    import pyarrow as pa

    offsets = column.offsets.to_numpy()
    if pa.types.is_list(column.type.value_type):  # per residue: list<list<float32>>
        inner = column.values
        inner_offsets = inner.offsets.to_numpy()
        values = inner.values.to_numpy(zero_copy_only=False)
        out = []
        for i in range(len(column)):
            start, stop = inner_offsets[offsets[i]], inner_offsets[offsets[i + 1]]
            n_rows = offsets[i + 1] - offsets[i]
            out.append(values[start:stop].reshape(n_rows, -1))
        return out
    values = column.values.to_numpy(zero_copy_only=False)
    return [values[offsets[i]:offsets[i + 1]] for i in range(len(column))]


def write_table(
    path: str | Path, rows: Iterable[dict[str, Any]], columns: Sequence[str], types: dict[str, str] | None = None
) -> int:
    """Stream dict rows into a ``.csv``, ``.tsv`` or ``.parquet`` table, atomically.

    Args:
        columns: column order; keys of the rows outside it are ignored, missing
            ones are empty (None).
        types: parquet types per column (``"string"``, ``"int64"``,
            ``"float64"``, ``"bool"``); a column not named is ``float64``.

    Returns:
        The number of rows written.
    """
    path = Path(path)
    suffix = output_suffix(path, TABLE_FORMATS)
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            return _write_table_parquet(tmp, rows, columns, types or {})
        n = 0
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, delimiter="\t" if suffix == ".tsv" else ",")
            writer.writerow(columns)
            for row in rows:
                writer.writerow(["" if row.get(c) is None else _csv_cell(row.get(c)) for c in columns])
                n += 1
        return n


def _csv_cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back to the same float
    return value


def _write_table_parquet(
    tmp: Path, rows: Iterable[dict[str, Any]], columns: Sequence[str], types: dict[str, str]
) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
    schema = pa.schema([pa.field(c, arrow[types.get(c, "float64")]) for c in columns])
    n = 0
    with pq.ParquetWriter(tmp, schema) as writer:
        for batch in _batched(rows, 4096):
            data = {c: [r.get(c) for r in batch] for c in columns}
            writer.write_table(pa.Table.from_pydict(data, schema=schema))
            n += len(batch)
    return n


def write_errors(path: str | Path, errors: Iterable[tuple[str, str]]) -> int:
    """Write the per-record failures as a CSV with columns ``id``, ``reason`` (atomically)."""
    return write_table(path, ({"id": rid, "reason": reason} for rid, reason in errors), ["id", "reason"])


def peek_first(items: Iterable[Any]) -> tuple[Any, Iterator[Any]]:
    """The first item (None if there is none) and an iterator over all of them."""
    it = iter(items)
    first = next(it, None)
    return first, (it if first is None else chain([first], it))


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch
