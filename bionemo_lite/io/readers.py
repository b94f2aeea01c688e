"""Reading input files (FASTA, CSV/TSV, ``.smi``) into `Record`s, lazily.

Files with millions of sequences are streamed: nothing is held in memory but
the set of ids seen (to catch duplicates). Records that cannot be used (no id,
empty sequence, an id already used in the file) are not dropped silently: they
come out of `InputFile.items` as `RecordError`s in file order, so a batch job
writes them to its errors file and goes on. The sequences themselves are not
validated here (that depends on the model: protein or SMILES).

A file that cannot be read as text at all (not UTF-8, a damaged ``.gz``, a line
or FASTA entry longer than `MAX_LINE_BYTES`, an unclosed CSV quote) is an
`InvalidInputError` naming the file and the line; memory stays bounded by that
limit whatever the file holds.

The other columns of a CSV/TSV row (BBBP's ``p_np``, a measured label, a
note) travel with its record as `TableRecord.fields`, and batch jobs write
them next to their results.

    >>> src = InputFile("proteins.fasta")
    >>> for item in src.items():
    ...     print(item)  # Record(...) or RecordError(...)
"""

from __future__ import annotations

import csv
import gzip
import re
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from ..errors import InvalidInputError
from ..records import Record
from ..results import RecordError

InputFormat = Literal["fasta", "csv", "tsv", "smi"]
Fields = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TableRecord(Record):
    """A record read from a CSV/TSV row, with the row's other columns.

    Attributes:
        fields: ``(column, text)`` pairs of the columns that are neither the id
            nor the sequence/SMILES, in header order (the cells as written).
    """

    fields: Fields = ()


def record_fields(record: Record) -> dict[str, str]:
    """The extra input columns a record carries (none for FASTA and ``.smi`` records)."""
    return dict(getattr(record, "fields", ()))


ReadItem = Union[Record, RecordError]

FASTA_SUFFIXES = frozenset({".fasta", ".fa", ".faa", ".fas", ".fna", ".ffn", ".mfa", ".seq"})
SUFFIX_FORMATS: dict[str, InputFormat] = {
    **{s: "fasta" for s in FASTA_SUFFIXES},
    ".csv": "csv",
    ".tsv": "tsv",
    ".smi": "smi",
    ".smiles": "smi",
}
# The longest line (and FASTA entry) read: titin, the longest protein, has ~35,000 residues; this bound only
# keeps a damaged or binary file (one endless line) from filling memory.
MAX_LINE_BYTES = 1 << 24
# A lone CR ends a line too (old Mac files), as in Python's universal newlines.
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")

# Accepted column names, most specific first; matched case-insensitively.
ID_COLUMNS = ("id", "name", "record_id")
SEQUENCE_COLUMNS = ("sequence", "seq")
SMILES_COLUMNS = ("smiles", "smi")


def detect_format(path: Path) -> InputFormat:
    """The input format from the file name (``.gz`` allowed), else from its first character.

    Raises:
        InvalidInputError: the format cannot be told.
    """
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[suffixes[-1]]
    for line in TextLines(path):
        if line.strip():
            if line.lstrip().startswith(">"):
                return "fasta"
            break
    raise InvalidInputError(
        f"{path}: cannot tell the input format; use a FASTA (.fasta/.fa), CSV (.csv with an "
        "'id,sequence' or 'id,smiles' header), TSV or SMILES (.smi) file"
    )


class TextLines:
    """The lines of a text file (``.gz`` too) as UTF-8 text, line ends kept, streamed and counted.

    Each iteration reads the file anew; `number` is the 1-based number of the last line given.
    Whatever goes wrong is an `InvalidInputError` naming the file and the line: the file cannot
    be read or decompressed, a line is not UTF-8, or a line is longer than `max_line_bytes`.
    """

    def __init__(self, path: Path, max_line_bytes: int = MAX_LINE_BYTES):
        self.path = path
        self.max_line_bytes = max_line_bytes
        self.number = 0

    def error(self, reason: str, line: int | None = None) -> InvalidInputError:
        """An `InvalidInputError` naming the file and `line` (default: the current one)."""
        return InvalidInputError(f"{self.path}, line {self.number if line is None else line}: {reason}")

    def __iter__(self) -> Iterator[str]:
        self.number = 0
        opener = gzip.open if self.path.suffix.lower() == ".gz" else open
        try:
            with opener(self.path, "rb") as fh:
                while raw := fh.readline(self.max_line_bytes + 2):  # + room for the line end
                    text = self._decode(raw)
                    for line in _LONE_CR.split(text) if "\r" in text else (text,):
                        if line:
                            self.number += 1
                            yield line
        except (OSError, EOFError, zlib.error) as exc:  # unreadable, not gzip, truncated or corrupt gzip
            raise self.error(f"cannot be read ({type(exc).__name__}: {exc})", self.number + 1) from exc

    def _decode(self, raw: bytes) -> str:
        line = self.number + 1
        if len(raw.rstrip(b"\r\n")) > self.max_line_bytes:
            raise self.error(f"line longer than {self.max_line_bytes} bytes (not a text file of records?)", line)
        try:
            return raw.decode("utf-8-sig" if line == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(f"not UTF-8 text (byte {exc.start + 1} of the line is {raw[exc.start]:#04x})",
                             line) from None


@dataclass
class InputFile:
    """A lazily read input file of sequences or SMILES.

    Args:
        path: the file; ``.gz`` compressed files are read too.
        format: ``"fasta"``, ``"csv"``, ``"tsv"`` or ``"smi"``; None detects it.
        kind: ``"protein"`` or ``"smiles"``: picks the text column of a CSV
            that has both a ``sequence`` and a ``smiles`` column.
        sequence_column: the CSV column holding the text, if not a standard name.
        id_column: the CSV column holding the id, if not a standard name.
        max_line_bytes: the longest line (and FASTA entry) read; a longer one is an
            `InvalidInputError` naming the file and line.

    Attributes:
        errors: the `RecordError`s of the last full iteration over `__iter__`.
    """

    path: Path
    format: InputFormat | None = None
    kind: str = "protein"
    sequence_column: str | None = None
    id_column: str | None = None
    max_line_bytes: int = MAX_LINE_BYTES
    errors: list[RecordError] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.exists():
            raise InvalidInputError(f"input file {str(self.path)!r} does not exist")
        if not self.path.is_file():
            # A pipe could be read only once; `items()` starts over on every call.
            raise InvalidInputError(f"input {str(self.path)!r} must be a regular file (not a folder or a pipe)")
        if self.format is None:
            self.format = detect_format(self.path)
        elif self.format not in ("fasta", "csv", "tsv", "smi"):
            raise InvalidInputError(f"unknown input format {self.format!r}")

    def items(self) -> Iterator[ReadItem]:
        """Records and unusable records (`RecordError`), in file order; each call reads the file anew.

        A record's `index` is its 0-based position among all records of the file.
        An id seen before in the file makes that later record a `RecordError`.
        """
        parse: Callable[[TextLines], Iterator[tuple[str | None, str, str, Fields]]] = {
            "fasta": self._parse_fasta,
            "csv": lambda fh: self._parse_table(fh, ","),
            "tsv": lambda fh: self._parse_table(fh, "\t"),
            "smi": self._parse_smi,
        }[self.format]  # type: ignore[index]
        seen: dict[str, int] = {}
        for index, (rid, sequence, where, fields) in enumerate(parse(TextLines(self.path, self.max_line_bytes))):
            if not rid:
                yield RecordError("", index, f"record #{index + 1} ({where}) has no id")
            elif rid in seen:
                first = seen[rid] + 1
                yield RecordError(rid, index, f"duplicate id (first used by record #{first}); {where} skipped")
            elif not sequence.strip():
                seen[rid] = index
                yield RecordError(rid, index, "empty sequence")
            else:
                seen[rid] = index
                yield TableRecord(rid, sequence, index, fields) if fields else Record(rid, sequence, index)

    def __iter__(self) -> Iterator[Record]:
        """The usable records only; the others are collected in `errors`."""
        self.errors = []
        for item in self.items():
            if isinstance(item, Record):
                yield item
            else:
                self.errors.append(item)

    def count(self) -> int:
        """Number of records in the file (usable or not), by a fast line scan (for progress bars)."""
        lines = TextLines(self.path, self.max_line_bytes)
        if self.format == "fasta":
            return sum(1 for line in lines if line.startswith(">"))
        if self.format == "smi":
            return sum(1 for line in lines if line.strip() and not line.lstrip().startswith("#"))
        return max(0, sum(1 for line in lines if line.strip()) - 1)  # minus the header

    # -- parsers: yield (id or None, text, where-in-the-file, other columns) ----------------------

    def _parse_fasta(self, lines: TextLines) -> Iterator[tuple[str | None, str, str, Fields]]:
        from Bio.SeqIO.FastaIO import SimpleFastaParser

        headers: deque[int] = deque()  # line numbers of the entries read but not yet given out
        for n, (title, sequence) in enumerate(SimpleFastaParser(_fasta_lines(lines, headers)), start=1):
            # Biopython joins the lines and drops spaces (tabs too, as its SeqIO "fasta" did); case is kept.
            words = title.split(None, 1)
            yield words[0] if words else "", sequence.replace("\t", ""), f"FASTA entry {n}, line {headers.popleft()}", ()

    def _parse_table(self, lines: TextLines, delimiter: str) -> Iterator[tuple[str | None, str, str, Fields]]:
        reader = csv.reader(lines, delimiter=delimiter)
        try:
            yield from self._table_rows(reader)
        except csv.Error as exc:  # e.g. an unclosed quote running into the field size limit
            kind = "TSV" if delimiter == "\t" else "CSV"
            raise lines.error(f"not a readable {kind} file: {exc}") from None

    def _table_rows(self, reader: Any) -> Iterator[tuple[str | None, str, str, Fields]]:
        header = next(reader, None)
        if header is None:
            return
        columns = {name.strip().lower(): i for i, name in enumerate(header)}
        text_col = self._pick_text_column(columns, header)
        id_col = self._pick_column(columns, (self.id_column,) if self.id_column else ID_COLUMNS)
        if self.id_column and id_col is None:
            raise InvalidInputError(f"{self.path}: no column {self.id_column!r} in the header {header}")
        extras = [(i, name) for i, name in enumerate(column_names(header)) if i not in (text_col, id_col)]
        row_number = 0
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # blank line
            row_number += 1
            text = row[text_col].strip() if text_col < len(row) else ""
            if id_col is None:
                rid: str | None = str(row_number)  # no id column: the 1-based data row is the id
            else:
                rid = row[id_col].strip() if id_col < len(row) else ""
            fields = tuple((name, row[i] if i < len(row) else "") for i, name in extras)
            yield rid, text, f"line {reader.line_num}", fields

    def _pick_text_column(self, columns: dict[str, int], header: list[str]) -> int:
        if self.sequence_column:
            col = self._pick_column(columns, (self.sequence_column,))
        elif self.kind == "smiles":
            col = self._pick_column(columns, SMILES_COLUMNS + SEQUENCE_COLUMNS)
        else:
            col = self._pick_column(columns, SEQUENCE_COLUMNS + SMILES_COLUMNS)
        if col is None:
            wanted = self.sequence_column or "sequence' or 'smiles"
            raise InvalidInputError(
                f"{self.path}: the header {header} has no '{wanted}' column "
                "(expected a header such as 'id,sequence' or 'id,smiles')"
            )
        return col

    @staticmethod
    def _pick_column(columns: dict[str, int], names: tuple[str, ...]) -> int | None:
        for name in names:
            if name.lower() in columns:
                return columns[name.lower()]
        return None

    def _parse_smi(self, lines: TextLines) -> Iterator[tuple[str | None, str, str, Fields]]:
        for line_number, line in enumerate(lines, start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            parts = stripped.split(None, 1)
            # "SMILES [whitespace name]"; without a name the line number is the id.
            rid = parts[1].strip() if len(parts) > 1 else str(line_number)
            yield rid, parts[0], f"line {line_number}", ()


def _fasta_lines(lines: TextLines, headers: deque[int]) -> Iterator[str]:
    """`lines` for Biopython's FASTA parser, noting each header's line number in `headers`.

    Refuses what the parser would drop or hold without bound: text before the first ``>`` header
    and an entry longer than the line limit.
    """
    entry, header = 0, None
    for line in lines:
        if line.startswith(">"):
            header = lines.number
            headers.append(header)
            entry = 0
        elif header is None and line.strip():
            raise lines.error(f"not a readable FASTA file: text before the first '>' header: {line.strip()[:40]!r}")
        else:
            entry += len(line)
            if entry > lines.max_line_bytes:
                raise lines.error(f"FASTA entry of line {header} longer than {lines.max_line_bytes} characters")
        yield line


def column_names(header: list[str]) -> list[str]:
    """A header's names as output column names: stripped, unnamed ones ``column_<n>``, repeats ``<name>_<k>``."""
    names: list[str] = []
    for n, raw in enumerate(header, start=1):
        name = raw.strip() or f"column_{n}"
        base, k = name, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def read_records(path: str | Path, format: InputFormat | None = None, kind: str = "protein") -> list[Record]:
    """All usable records of a file (convenience for small files; see `InputFile` for streaming).

    Raises:
        InvalidInputError: the first unusable record, naming it and the reason.
    """
    out: list[Record] = []
    for item in InputFile(Path(path), format=format, kind=kind).items():
        if isinstance(item, RecordError):
            raise InvalidInputError(item.reason, record=item.id or item.index)
        out.append(item)
    return out


MUTATION_COLUMNS = ("mutation", "mutant", "mutations")


def read_mutations(path: str | Path) -> list[str]:
    """Mutations to score against one wild type, in file order.

    The file is either one mutation per line (``A42G``, several joined by
    ``:``; blank lines and ``#`` comments skipped) or a CSV/TSV whose header
    has a ``mutation`` (or ``mutant``) column.

    Raises:
        InvalidInputError: an empty file or a CSV without a mutation column.
    """
    return [mutation for mutation, _ in read_mutation_rows(path)]


def read_mutation_rows(path: str | Path) -> list[tuple[str, Fields]]:
    """Like `read_mutations`, each mutation with the other columns of its CSV/TSV row (none for plain lists)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"mutations file {str(path)!r} does not exist")
    source = TextLines(path)
    numbered = [(source.number, line.strip()) for line in source]
    numbered = [(n, line) for n, line in numbered if line and not line.startswith("#")]
    lines = [line for _, line in numbered]
    if not lines:
        raise InvalidInputError(f"{path}: no mutations in the file")
    delimiter = "\t" if "\t" in lines[0] else ","
    first = [c.strip().lower() for c in lines[0].split(delimiter)]
    rows: list[tuple[str, Fields]]
    if path.suffix.lower() in (".csv", ".tsv") or len(first) > 1 or first[0] in MUTATION_COLUMNS:
        col = next((first.index(name) for name in MUTATION_COLUMNS if name in first), None)
        if col is None:
            raise InvalidInputError(f"{path}: the header {lines[0]!r} has no 'mutation' column")
        reader = csv.reader(lines, delimiter=delimiter)
        try:
            extras = [(i, name) for i, name in enumerate(column_names(next(reader))) if i != col]
            rows = [(row[col].strip(), tuple((name, row[i] if i < len(row) else "") for i, name in extras))
                    for row in reader if col < len(row) and row[col].strip()]
        except csv.Error as exc:  # e.g. an unclosed quote running into the field size limit
            line = numbered[min(reader.line_num, len(numbered)) - 1][0]
            raise source.error(f"not a readable mutations table: {exc}", line) from None
    else:
        rows = [(line, ()) for line in lines]
    if not rows:
        raise InvalidInputError(f"{path}: no mutations in the file")
    return rows
