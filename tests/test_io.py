"""Input readers (FASTA, CSV/TSV, .smi) and output writers (.parquet, .h5, .npz, tables)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bionemo_lite.errors import InvalidInputError
from bionemo_lite.io import (
    EmbeddingRow,
    InputFile,
    UnsupportedFormatError,
    atomic_path,
    read_embeddings,
    read_mutations,
    read_records,
    write_embeddings,
    write_errors,
    write_table,
    write_text_atomic,
)
from bionemo_lite.records import Record
from bionemo_lite.results import RecordError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _split(src: InputFile) -> tuple[list[Record], list[RecordError]]:
    items = list(src.items())
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, RecordError)]


# -- readers ---------------------------------------------------------------------------------------


def test_fasta_keeps_case_and_joins_wrapped_lines(tmp_path):
    path = _write(tmp_path / "in.fasta", ">p1 some description\nmkta yia\nKQR\n>p2\nMKV\n")
    records, errors = _split(InputFile(path))
    assert errors == []
    assert [(r.id, r.sequence, r.index) for r in records] == [("p1", "mktayiaKQR", 0), ("p2", "MKV", 1)]


def test_fasta_reports_missing_id_empty_sequence_and_duplicates(tmp_path):
    path = _write(tmp_path / "in.fa", ">a\nMKV\n>\nMKL\n>b\n\n>a\nMKW\n>c\nMK\n")
    records, errors = _split(InputFile(path))
    assert [r.id for r in records] == ["a", "c"]
    assert [(e.id, e.index) for e in errors] == [("", 1), ("b", 2), ("a", 3)]
    assert "no id" in errors[0].reason and "FASTA entry 2" in errors[0].reason
    assert errors[1].reason == "empty sequence"
    assert "duplicate id" in errors[2].reason and "#1" in errors[2].reason


def test_iterating_an_input_file_collects_its_errors(tmp_path):
    src = InputFile(_write(tmp_path / "in.fasta", ">a\nMKV\n>a\nMKL\n"))
    assert [r.id for r in src] == ["a"]
    assert [e.id for e in src.errors] == ["a"]


def test_fasta_is_read_lazily(tmp_path):
    path = _write(tmp_path / "in.fasta", "".join(f">s{i}\nMKV\n" for i in range(1000)))
    items = InputFile(path).items()
    assert next(items).id == "s0"  # a generator: nothing else was parsed yet
    assert sum(1 for _ in items) == 999


def test_gzipped_fasta_and_count(tmp_path):
    path = tmp_path / "in.fasta.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(">a\nMKV\n>b\nMKL\n>c\nMKW\n")
    src = InputFile(path)
    assert src.format == "fasta" and src.count() == 3
    assert [r.sequence for r in src] == ["MKV", "MKL", "MKW"]


def test_text_before_the_first_header_is_a_clear_error(tmp_path):
    path = _write(tmp_path / "in.fasta", "MKV\n>a\nMKL\n")
    with pytest.raises(InvalidInputError, match="not a readable FASTA"):
        list(InputFile(path).items())


def test_format_is_sniffed_when_the_extension_says_nothing(tmp_path):
    assert InputFile(_write(tmp_path / "in.txt", "\n>a\nMKV\n")).format == "fasta"
    with pytest.raises(InvalidInputError, match="cannot tell the input format"):
        InputFile(_write(tmp_path / "x.dat", "hello\n"))
    with pytest.raises(InvalidInputError, match="does not exist"):
        InputFile(tmp_path / "missing.fasta")
    fifo = tmp_path / "pipe.fasta"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInputError, match="must be a regular file"):
        InputFile(fifo)


def test_csv_with_id_and_sequence_columns(tmp_path):
    path = _write(tmp_path / "in.csv", "ID,Sequence,label\np1, MKV ,1\np2,mkl,0\n\n,MKW,1\np4,,0\np1,MKA,1\n")
    src = InputFile(path)
    records, errors = _split(src)
    assert [(r.id, r.sequence) for r in records] == [("p1", "MKV"), ("p2", "mkl")]
    assert [(e.id, e.index) for e in errors] == [("", 2), ("p4", 3), ("p1", 4)]
    assert "line 5" in errors[0].reason
    assert src.count() == 5


def test_csv_smiles_columns_and_row_number_ids(tmp_path):
    with_ids = _write(tmp_path / "mols.csv", "id,smiles\naspirin,CC(=O)Oc1ccccc1C(=O)O\nethanol,CCO\n")
    assert [(r.id, r.sequence) for r in InputFile(with_ids, kind="smiles")] == [
        ("aspirin", "CC(=O)Oc1ccccc1C(=O)O"), ("ethanol", "CCO")]
    no_ids = _write(tmp_path / "smiles_only.csv", "smiles,logS\nCCO,1.1\nc1ccccc1,-1.6\n")
    assert [(r.id, r.sequence) for r in InputFile(no_ids, kind="smiles")] == [("1", "CCO"), ("2", "c1ccccc1")]
    # A file with both columns: the model's kind picks the text column.
    both = _write(tmp_path / "both.csv", "id,sequence,smiles\na,MKV,CCO\n")
    assert next(iter(InputFile(both, kind="smiles"))).sequence == "CCO"
    assert next(iter(InputFile(both, kind="protein"))).sequence == "MKV"


def test_tsv_and_explicit_columns(tmp_path):
    path = _write(tmp_path / "in.tsv", "name\tprotein\nx\tMKV\n")
    assert [(r.id, r.sequence) for r in InputFile(path, sequence_column="protein")] == [("x", "MKV")]
    with pytest.raises(InvalidInputError, match="no 'sequence' or 'smiles' column"):
        list(InputFile(path).items())


def test_smi_file_ids_default_to_line_numbers(tmp_path):
    path = _write(tmp_path / "in.smi", "# a comment\nCCO ethanol\n\nc1ccccc1\nCC(=O)O acetic acid\nCCN ethanol\n")
    src = InputFile(path)
    records, errors = _split(src)
    assert [(r.id, r.sequence) for r in records] == [
        ("ethanol", "CCO"), ("4", "c1ccccc1"), ("acetic acid", "CC(=O)O")]
    assert [e.id for e in errors] == ["ethanol"] and "line 6" in errors[0].reason
    assert src.count() == 4


def test_read_records_raises_on_the_first_bad_record(tmp_path):
    assert [r.id for r in read_records(_write(tmp_path / "ok.fasta", ">a\nMKV\n"))] == ["a"]
    with pytest.raises(InvalidInputError, match="record 'a'.*duplicate"):
        read_records(_write(tmp_path / "dup.fasta", ">a\nMKV\n>a\nMKL\n"))


def test_read_mutations_lines_and_csv(tmp_path):
    assert read_mutations(_write(tmp_path / "m.txt", "# header\nA2G\n\nK3R:V4L\n")) == ["A2G", "K3R:V4L"]
    assert read_mutations(_write(tmp_path / "m.csv", "mutant,DMS_score\nA2G,0.5\nK3R,1.0\n")) == ["A2G", "K3R"]
    with pytest.raises(InvalidInputError, match="no 'mutation' column"):
        read_mutations(_write(tmp_path / "bad.csv", "x,y\n1,2\n"))
    with pytest.raises(InvalidInputError, match="no mutations"):
        read_mutations(_write(tmp_path / "empty.txt", "\n# nothing\n"))


# -- writers ---------------------------------------------------------------------------------------


def _rows(per_residue: bool, layers=(3,), ids=("p1", "we/ird%id", ".dot")) -> list[EmbeddingRow]:
    rng = np.random.default_rng(0)
    rows = []
    for n, rid in enumerate(ids):
        length = 3 + n
        shape = (length, 8) if per_residue else (8,)
        rows.append(EmbeddingRow(rid, "MKVLA"[:length] + "A" * n, length,
                                 {lay: rng.standard_normal(shape).astype(np.float32) for lay in layers},
                                 truncated=(n == 1)))
    return rows


@pytest.mark.parametrize("suffix", [".parquet", ".h5", ".npz"])
@pytest.mark.parametrize("pooling", ["mean", "per_residue"])
def test_embedding_round_trip_is_exact(tmp_path, suffix, pooling):
    rows = _rows(pooling == "per_residue")
    path = tmp_path / f"out{suffix}"
    assert write_embeddings(path, iter(rows), model="m", layers=(3,), pooling=pooling) == 3
    back = read_embeddings(path)
    assert back.ids == [r.id for r in rows]
    for r in rows:
        assert back.arrays[r.id].dtype == np.float32
        np.testing.assert_array_equal(back.arrays[r.id], r.by_layer[3])
    if suffix != ".npz":
        assert (back.model, back.layers, back.pooling) == ("m", (3,), pooling)
        assert back.lengths == {r.id: r.length for r in rows}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


@pytest.mark.parametrize("suffix", [".parquet", ".h5", ".npz"])
def test_several_layers(tmp_path, suffix):
    rows = _rows(False, layers=(0, 2))
    path = tmp_path / f"out{suffix}"
    write_embeddings(path, rows, model="m", layers=(0, 2), pooling="mean")
    back = read_embeddings(path)
    for r in rows:
        np.testing.assert_array_equal(back.arrays[r.id], np.stack([r.by_layer[0], r.by_layer[2]]))
    if suffix == ".parquet":
        assert pq.read_schema(path).names == ["id", "sequence", "length", "truncated", "embedding_0", "embedding_2"]


def test_parquet_layout(tmp_path):
    pooled, per_res = tmp_path / "pooled.parquet", tmp_path / "per.parquet"
    write_embeddings(pooled, _rows(False), model="m", layers=(3,), pooling="mean")
    write_embeddings(per_res, _rows(True), model="m", layers=(3,), pooling="per_residue")
    schema = pq.read_schema(pooled)
    assert schema.field("embedding").type == pa.list_(pa.float32())
    assert schema.field("length").type == pa.int32()
    assert json.loads(schema.metadata[b"bionemo_lite"]) == {"model": "m", "layers": [3], "pooling": "mean"}
    assert pq.read_schema(per_res).field("embedding").type == pa.list_(pa.list_(pa.float32()))
    table = pq.read_table(per_res).to_pylist()
    assert [row["id"] for row in table] == ["p1", "we/ird%id", ".dot"]
    assert [row["truncated"] for row in table] == [False, True, False]
    assert len(table[2]["embedding"]) == 5 and len(table[2]["embedding"][0]) == 8


def test_h5_layout_keeps_exact_ids(tmp_path):
    path = tmp_path / "out.h5"
    write_embeddings(path, _rows(True), model="m", layers=(3,), pooling="per_residue")
    with h5py.File(path) as fh:
        assert fh.attrs["model"] == "m" and fh.attrs["pooling"] == "per_residue" and fh.attrs["layer"] == 3
        assert sorted(fh) == sorted(["p1", "we%2Fird%25id", "%2Edot"])
        assert fh["we%2Fird%25id"].attrs["id"] == "we/ird%id"
        assert fh["p1"].shape == (3, 8) and fh["p1"].attrs["length"] == 3


def test_npz_has_one_array_per_id(tmp_path):
    path = tmp_path / "out.npz"
    rows = _rows(True)
    write_embeddings(path, rows, model="m", layers=(3,), pooling="per_residue")
    with np.load(path) as npz:  # numpy's own reader, ragged shapes each under their id
        assert sorted(npz.files) == sorted(r.id for r in rows)
        assert npz[".dot"].shape == (5, 8)


def test_empty_outputs_are_valid_files(tmp_path):
    for suffix in (".parquet", ".h5", ".npz"):
        path = tmp_path / f"empty{suffix}"
        assert write_embeddings(path, [], model="m", layers=(1,), pooling="mean") == 0
        assert read_embeddings(path).ids == []


def test_unknown_output_extension(tmp_path):
    with pytest.raises(UnsupportedFormatError, match=r"\.parquet, \.h5"):
        write_embeddings(tmp_path / "out.json", [], model="m", layers=(1,), pooling="mean")
    with pytest.raises(UnsupportedFormatError):
        write_table(tmp_path / "out.h5", [], ["id"])


def test_a_failed_write_leaves_the_old_file_untouched(tmp_path):
    path = tmp_path / "out.parquet"
    write_embeddings(path, _rows(False), model="m", layers=(3,), pooling="mean")
    before = path.read_bytes()

    def broken():
        yield from _rows(False)
        raise KeyboardInterrupt  # killed half-way through the write

    with pytest.raises(KeyboardInterrupt):
        write_embeddings(path, broken(), model="other", layers=(3,), pooling="mean")
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.parquet"]


def test_atomic_path_only_publishes_on_success(tmp_path):
    dest = tmp_path / "sub" / "x.txt"
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert not dest.exists() and os.listdir(dest.parent) == []
    with atomic_path(dest) as tmp:
        tmp.write_text("whole")
    assert dest.read_text() == "whole"


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_tables_round_trip(tmp_path, suffix):
    path = tmp_path / f"scores{suffix}"
    rows = [{"id": "a", "score": -1.25, "mutation": None}, {"id": "b,c", "score": 0.1 + 0.2, "mutation": "A2G"}]
    types = {"id": "string", "mutation": "string"}
    assert write_table(path, rows, ["id", "mutation", "score"], types) == 2
    if suffix == ".parquet":
        back = pq.read_table(path).to_pylist()
        assert back == [{"id": "a", "mutation": None, "score": -1.25},
                        {"id": "b,c", "mutation": "A2G", "score": 0.1 + 0.2}]
    else:
        import csv

        with open(path, newline="") as fh:
            back = list(csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ","))
        assert [(r["id"], r["mutation"], float(r["score"])) for r in back] == [
            ("a", "", -1.25), ("b,c", "A2G", 0.1 + 0.2)]  # floats read back exactly


def test_errors_file(tmp_path):
    path = tmp_path / "out.parquet.errors.csv"
    write_errors(path, [("p1", "position 3: invalid residue 'J'"), ("", "record #2 has no id")])
    assert path.read_text().splitlines() == ["id,reason", "p1,position 3: invalid residue 'J'", ",record #2 has no id"]


@pytest.mark.parametrize("pooling", ["per_residue", "per_token"])
@pytest.mark.parametrize("layers", [(3,), (1, 3)])
def test_every_per_position_pooling_keeps_its_rows_in_parquet(tmp_path, pooling, layers):
    # MegaMolBART's per-position pooling is called per_token: the parquet writer flattened it to (L*D,).
    rows = _rows(True, layers=layers)
    path = tmp_path / "out.parquet"
    write_embeddings(path, rows, model="m", layers=layers, pooling=pooling)
    back = read_embeddings(path)
    for r in rows:
        want = r.stacked(layers)
        assert back.arrays[r.id].shape == want.shape and want.shape[-2:] == (r.length, 8)
        np.testing.assert_array_equal(back.arrays[r.id], want)
    column = "embedding" if len(layers) == 1 else f"embedding_{layers[0]}"
    assert pq.read_schema(path).field(column).type == pa.list_(pa.list_(pa.float32()))


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("suffix", [".parquet", ".h5", ".npz", ".csv"])
def test_outputs_honour_the_umask(tmp_path, umask_022, suffix):
    path = tmp_path / f"out{suffix}"
    if suffix == ".csv":
        write_table(path, [{"id": "a"}], ["id"])
    else:
        write_embeddings(path, _rows(False), model="m", layers=(3,), pooling="mean")
    assert path.stat().st_mode & 0o777 == 0o644  # like any file the user creates, not mkstemp's 0600
    os.umask(0o027)
    write_text_atomic(tmp_path / "s.pdb", "END\n")
    assert (tmp_path / "s.pdb").stat().st_mode & 0o777 == 0o640
