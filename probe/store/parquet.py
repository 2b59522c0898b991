"""Stored measurements as Apache Parquet, for large pulls into pandas, DuckDB, Spark or R.

The columns are export.EXPORT_COLUMNS, typed so a reader needs no casts:

    measurement_id                    int64
    run_id, input, vantage_name, reason   string
    service, category, verdict, layer, detail, rule, network_type, country
                                      dictionary<int32, string> (few distinct values; pandas
                                      reads them as categoricals)
    measured_at                       timestamp[ms, tz=UTC]
    duration_ms, throughput_kbps, baseline_kbps   float64
    asn                               int64, nullable (pandas reads Int64 with <NA>, not a
                                      float column with NaN: the schema carries the pandas
                                      metadata that says so)

Rows stream from the store into row groups of ROW_GROUP rows each, so memory stays flat
however many rows a database holds. pyarrow is an optional dependency (the ``parquet``
extra: ``pip install 'blocking-probe[parquet]'``): a probe on a Raspberry Pi does not need
50 MB of columnar engine to measure; only this module imports it, and only when called.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterable
from typing import Any

from probe.store.export import EXPORT_COLUMNS
from probe.store.rows import ExportRow

ROW_GROUP = 10_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)
_DICTIONARY = ("service", "category", "verdict", "layer", "detail", "rule", "network_type",
               "country")  # fmt: skip
_STRING = ("run_id", "input", "vantage_name", "reason")
_FLOAT = ("duration_ms", "throughput_kbps", "baseline_kbps")
_INT = ("measurement_id", "asn")
# The part of pandas' own schema metadata that pyarrow reads back in to_pandas: with it, a
# nullable int64 column comes back as pandas' Int64 (NA for null) rather than as float64 with
# NaN, which is what pandas makes of an int64 column with nulls by default (and what made an
# ASN read as 9198.0). Only asn needs it: the other integer column is never null.
_PANDAS = {
    "index_columns": [],
    "column_indexes": [],
    "columns": [
        {"name": "asn", "field_name": "asn", "pandas_type": "int64", "numpy_type": "Int64",
         "metadata": None},
    ],
    "creator": {"library": "blocking-probe"},
    "pandas_version": "2.0.0",
}  # fmt: skip


class ParquetUnavailable(Exception):
    """pyarrow is not installed: Parquet cannot be written."""


def _pyarrow() -> Any:
    # Optional: imported only when Parquet is asked for, so the probe runs without it.
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ParquetUnavailable(
            "--format parquet needs pyarrow: pip install 'blocking-probe[parquet]' "
            "(or pip install pyarrow)"
        ) from exc
    return pa, pq


def schema() -> Any:
    """The Arrow schema of an export, in EXPORT_COLUMNS order."""
    pa, _ = _pyarrow()
    types = {
        **{c: pa.dictionary(pa.int32(), pa.string()) for c in _DICTIONARY},
        **{c: pa.string() for c in _STRING},
        **{c: pa.float64() for c in _FLOAT},
        **{c: pa.int64() for c in _INT},
        "measured_at": pa.timestamp("ms", tz="UTC"),
    }
    nullable = {"layer", "throughput_kbps", "baseline_kbps", "vantage_name", "network_type",
                "asn", "country"}  # fmt: skip
    fields = [pa.field(c, types[c], nullable=c in nullable) for c in EXPORT_COLUMNS]
    return pa.schema(fields).with_metadata({b"pandas": json.dumps(_PANDAS).encode("ascii")})


def _epoch_ms(moment: dt.datetime) -> int:
    """Whole milliseconds since the epoch (integer arithmetic: no float rounding)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: cannot export it as UTC")
    return (moment - _EPOCH) // _MS


def _batch(rows: list[ExportRow], arrow_schema: Any) -> Any:
    pa, _ = _pyarrow()
    columns = []
    for f in arrow_schema:
        if f.name == "measured_at":
            values: list[Any] = [_epoch_ms(r.measured_at) for r in rows]
        else:
            values = [getattr(r, f.name) for r in rows]
        columns.append(pa.array(values, type=f.type))
    return pa.RecordBatch.from_arrays(columns, schema=arrow_schema)


def write_parquet(rows: Iterable[ExportRow], path: str) -> int:
    """Write rows to a Parquet file at ``path``, a row group per ROW_GROUP rows; how many."""
    _, pq = _pyarrow()
    arrow_schema = schema()
    count = 0
    with pq.ParquetWriter(path, arrow_schema, compression="zstd") as writer:
        iterator = iter(rows)
        while chunk := list(itertools.islice(iterator, ROW_GROUP)):
            writer.write_batch(_batch(chunk, arrow_schema))
            count += len(chunk)
        if count == 0:
            writer.write_table(arrow_schema.empty_table())
    return count
