"""The input readers against arbitrary files (hypothesis, derandomized so every run reads the same files).

Whatever a file holds (random bytes, text in each format, truncated or damaged gzip, unicode, lone CRs,
unclosed quotes, endless lines), reading it gives records, per-record `RecordError`s, or an
`InvalidInputError` that names the file (and the line, when a line is to blame); never another
exception, a hang or unbounded memory.
"""

from __future__ import annotations

import gzip
import re
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bionemo_lite.errors import InvalidInputError
from bionemo_lite.io import InputFile, read_mutation_rows
from bionemo_lite.io.readers import MAX_LINE_BYTES
from bionemo_lite.records import Record
from bionemo_lite.results import RecordError

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SMALL_LIMIT = 64  # bytes per line in the fuzzed files, so that endless lines are cheap to make
LINE_ENDS = st.sampled_from(["\n", "\r\n", "\r"])
TEXT = st.text(st.characters(codec="utf-8"), max_size=30)  # any unicode, NUL and surrogate-free controls too
RESIDUES = st.text("ACDEFGHIKLMNPQRSTVWYXacdefgk -*\t", max_size=80)
LINE_ERROR = re.compile(r", line \d+: ")


def _joined(lines: list[str], end: str) -> bytes:
    return end.join(lines).encode("utf-8")


fasta_text = st.builds(_joined, st.lists(st.one_of(st.builds(">{}".format, TEXT), RESIDUES, TEXT, st.just("")),
                                         max_size=12), LINE_ENDS)
table_cells = st.one_of(TEXT, RESIDUES, st.sampled_from(['"', '""', '"a,b"', '"open', "\t", ",", "id", "seq"]))
table_text = st.builds(
    _joined,
    st.tuples(st.sampled_from(["id,sequence", "name,seq,label", "id\tsequence", "smiles,id", '"id","sequence"',
                               "id,id,sequence", "", "sequence"]),
              st.lists(st.builds(",".join, st.lists(table_cells, max_size=5)), max_size=8)
              ).map(lambda t: [t[0], *t[1]]),
    LINE_ENDS,
)
smi_text = st.builds(_joined, st.lists(st.one_of(st.builds("{} {}".format, TEXT, TEXT), TEXT, st.just("# note")),
                                       max_size=10), LINE_ENDS)
mutation_text = st.builds(_joined, st.lists(st.one_of(st.sampled_from(["A42G", "K2A:T3G", "mutation,score", "#c", ""]),
                                                      TEXT, st.builds(",".join, st.lists(table_cells, max_size=3))),
                                            max_size=10), LINE_ENDS)
endless_line = st.integers(SMALL_LIMIT + 1, 4 * SMALL_LIMIT).map(lambda n: b">a\n" + b"M" * n + b"\n")


@st.composite
def damaged(draw, content: st.SearchStrategy[bytes]) -> bytes:
    """`content` as written, cut short, with random bytes spliced in, or binary noise."""
    data = draw(content)
    how = draw(st.sampled_from(["as is", "truncated", "spliced", "noise"]))
    if how == "truncated" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "spliced":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    if how == "noise":
        return draw(st.binary(max_size=300))
    return data


@st.composite
def maybe_gzipped(draw, content: st.SearchStrategy[bytes]) -> tuple[bytes, bool]:
    """(file bytes, gzipped?): gzipped files may be cut short or have a byte flipped."""
    data = draw(damaged(content))
    if not draw(st.booleans()):
        return data, False
    packed = bytearray(gzip.compress(data, mtime=0))
    change = draw(st.sampled_from(["none", "truncate", "flip"]))
    if change == "truncate":
        packed = packed[: draw(st.integers(0, len(packed) - 1))]
    elif change == "flip":
        packed[draw(st.integers(0, len(packed) - 1))] ^= draw(st.integers(1, 255))
    return bytes(packed), True


def _read_all(path: Path, **options) -> list[Record | RecordError]:
    """Every item of the file, and its count, or the error, which must name the file."""
    try:
        source = InputFile(path, max_line_bytes=SMALL_LIMIT, **options)
        items = list(source.items())
        source.count()
    except InvalidInputError as exc:
        assert str(path) in str(exc), exc
        if re.search(r"UTF-8|longer than|cannot be read|not a readable", str(exc)):
            assert LINE_ERROR.search(str(exc)), f"the line is not named: {exc}"
        return []
    for i, item in enumerate(items):
        assert isinstance(item, (Record, RecordError)), item
        assert item.index == i
        if isinstance(item, Record):
            assert item.id and item.sequence.strip()
        else:
            assert item.reason
    return items


def _write(tmp_path: Path, name: str, payload: tuple[bytes, bool]) -> Path:
    data, gzipped = payload
    path = tmp_path / (name + (".gz" if gzipped else ""))
    path.write_bytes(data)
    return path


@pytest.mark.timeout(300)
@FUZZ
@given(payload=maybe_gzipped(st.one_of(fasta_text, endless_line)))
def test_fasta_files(tmp_path, payload):
    _read_all(_write(tmp_path, "in.fasta", payload))


@pytest.mark.timeout(300)
@FUZZ
@given(payload=maybe_gzipped(table_text), suffix=st.sampled_from([".csv", ".tsv"]),
       kind=st.sampled_from(["protein", "smiles"]))
def test_csv_and_tsv_files(tmp_path, payload, suffix, kind):
    _read_all(_write(tmp_path, "in" + suffix, payload), kind=kind)


@pytest.mark.timeout(300)
@FUZZ
@given(payload=maybe_gzipped(smi_text))
def test_smi_files(tmp_path, payload):
    _read_all(_write(tmp_path, "in.smi", payload), kind="smiles")


@pytest.mark.timeout(300)
@FUZZ
@given(payload=maybe_gzipped(st.one_of(fasta_text, table_text, smi_text)))
def test_files_whose_format_is_detected(tmp_path, payload):
    _read_all(_write(tmp_path, "input.txt", payload))


@pytest.mark.timeout(300)
@FUZZ
@given(payload=maybe_gzipped(mutation_text), suffix=st.sampled_from([".txt", ".csv", ".tsv"]))
def test_mutation_files(tmp_path, payload, suffix):
    path = _write(tmp_path, "mutations" + suffix, payload)
    try:
        rows = read_mutation_rows(path)
    except InvalidInputError as exc:
        assert str(path) in str(exc), exc
        return
    assert rows and all(isinstance(m, str) and m and m == m.strip() for m, _ in rows)


def test_the_line_to_blame_is_named(tmp_path):
    bad_utf8 = tmp_path / "in.fasta"
    bad_utf8.write_bytes(b">a\nMKV\n>b\nMK\xffV\n")
    with pytest.raises(InvalidInputError, match=r"in\.fasta, line 4: not UTF-8 text \(byte 3 of the line is 0xff\)"):
        list(InputFile(bad_utf8).items())
    unclosed = tmp_path / "in.csv"
    unclosed.write_text('id,sequence\na,MKV\nb,"MKV\n' + "c,MKL\n" * 30000)
    with pytest.raises(InvalidInputError, match=r"in\.csv, line \d+: not a readable CSV file: field larger"):
        list(InputFile(unclosed).items())
    truncated = tmp_path / "in.smi.gz"
    truncated.write_bytes(gzip.compress(b"CCO ethanol\n" * 1000)[:-30])
    with pytest.raises(InvalidInputError, match=r"in\.smi\.gz, line \d+: cannot be read \(EOFError"):
        list(InputFile(truncated).items())


def test_non_ascii_residues_are_the_records_problem_not_the_files(tmp_path):
    """Biopython's SeqIO refused the whole file for one non-ASCII letter; now the record reaches validation."""
    path = tmp_path / "in.fasta"
    path.write_text(">a\nMKV\n>b\nMKÄV\n>c\nMKL\n", encoding="utf-8")
    assert [(r.id, r.sequence) for r in InputFile(path).items()] == [("a", "MKV"), ("b", "MKÄV"), ("c", "MKL")]


def test_lone_cr_line_ends_and_a_bom_read_like_unix_ones(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes("\ufeffid,sequence\ra,MKV\rb,MKL\r".encode())
    assert [(r.id, r.sequence) for r in InputFile(path).items()] == [("a", "MKV"), ("b", "MKL")]


@pytest.mark.parametrize("name, content", [
    ("endless.fasta", b">a\n" + b"M" * (3 * MAX_LINE_BYTES)),
    ("endless.csv.gz", gzip.compress(b"id,sequence\na," + b"\0" * (3 * MAX_LINE_BYTES), compresslevel=1)),
    ("wrapped.fasta", b">a\n" + b"M" * 60 * 1024 + b"\n" + (b"M" * 1023 + b"\n") * (MAX_LINE_BYTES // 1024 + 1)),
])
def test_an_endless_line_or_entry_is_refused_in_bounded_memory(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    del content
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInputError, match=rf"{re.escape(name)}, line \d+: .*longer than {MAX_LINE_BYTES}"):
            list(InputFile(path).items())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_LINE_BYTES, f"peak {peak / 2**20:.0f} MiB reading a {path.stat().st_size / 2**20:.0f} MiB file"
