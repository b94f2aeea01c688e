"""Input files in, result files out: the file side of batch jobs and the CLI.

`readers` streams FASTA, CSV/TSV and ``.smi`` files into `Record`s (a CSV
row's other columns ride along as `TableRecord.fields`);
`writers` writes embeddings and contact maps (``.parquet``, ``.h5``, ``.npz``) and tables
(``.parquet``, ``.csv``, ``.tsv``), always atomically. pyarrow and h5py are
imported only when a file of their format is written or read.
"""

from .atomic import atomic_path, write_text_atomic
from .readers import (
    InputFile,
    ReadItem,
    TableRecord,
    detect_format,
    read_mutation_rows,
    read_mutations,
    read_records,
    record_fields,
)
from .writers import (
    EMBEDDING_FORMATS,
    TABLE_FORMATS,
    ContactRow,
    EmbeddingFile,
    EmbeddingRow,
    UnsupportedFormatError,
    output_suffix,
    read_contacts,
    read_embeddings,
    write_contacts,
    write_embeddings,
    write_errors,
    write_table,
)

__all__ = [
    "EMBEDDING_FORMATS", "TABLE_FORMATS", "ContactRow", "EmbeddingFile", "EmbeddingRow", "InputFile", "ReadItem",
    "TableRecord", "UnsupportedFormatError", "atomic_path", "detect_format", "output_suffix", "read_contacts",
    "read_embeddings", "read_mutation_rows", "read_mutations", "read_records", "record_fields", "write_contacts",
    "write_embeddings", "write_errors", "write_table", "write_text_atomic",
]
