"""A finished table result in another format on request (``GET /v1/jobs/{id}/results?format=csv``)."""

from __future__ import annotations

from pathlib import Path

from bionemo_lite.io.atomic import atomic_path

TABLES = (".parquet", ".csv")


def converted(path: Path, fmt: str) -> Path:
    """`path` (a Parquet or CSV table) as `fmt`, written once beside it and kept.

    Raises:
        ValueError: not a table, or a format other than parquet / csv.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    target = path.with_suffix(f".{fmt}")
    if path.suffix not in TABLES or target.suffix not in TABLES:
        raise ValueError(f"this job's results are {path.suffix[1:]}; only tables convert (parquet <-> csv), "
                         f"not to {fmt!r}")
    if not target.exists():
        table = pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(path)
        with atomic_path(target) as tmp:
            if fmt == "parquet":
                pq.write_table(table, tmp)
            else:
                pacsv.write_csv(table, tmp)
    return target
