"""Input files in, result files out: the file side of batch jobs and the CLI.

`readers` streams FASTA, CSV/TSV and ``.smi`` files into `Record`s;
`writers` writes embeddings (``.parquet``, ``.h5``, ``.npz``) and tables
(``.parquet``, ``.csv``, ``.tsv``), always atomically. pyarrow and h5py are
imported only when a file of their format is written or read.
"""

from .atomic import atomic_path, write_text_atomic
from .readers import InputFile, ReadItem, detect_format, read_mutations, read_records
from .writers import (
    EMBEDDING_FORMATS,
    TABLE_FORMATS,
    EmbeddingFile,
    EmbeddingRow,
    UnsupportedFormatError,
    output_suffix,
    read_embeddings,
    write_embeddings,
    write_errors,
    write_table,
)

__all__ = [
    "EMBEDDING_FORMATS", "TABLE_FORMATS", "EmbeddingFile", "EmbeddingRow", "InputFile", "ReadItem",
    "UnsupportedFormatError", "atomic_path", "detect_format", "output_suffix", "read_embeddings",
    "read_mutations", "read_records", "write_embeddings", "write_errors", "write_table", "write_text_atomic",
]
