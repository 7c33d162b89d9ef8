"""DuckDB dataset profiler used by the built-in agent (framework-free).

Tables (CSV, TSV, ``.csv.gz``, Parquet, JSON, JSONL) are profiled with DuckDB:

* Large files are *streamed*: one aggregate query reads the file once and computes every
  column statistic at the same time (row count, nulls, min, max, mean, sample standard
  deviation, approximate quartiles, approximate distinct counts and approximate most
  frequent values). Every aggregate state has a bounded size, so a file larger than memory
  works; DuckDB runs with a memory limit and a temporary directory outside the volume.
* Small files (see :data:`EXACT_MAX_BYTES`) are loaded into a temporary DuckDB table and
  profiled *exactly*: exact quartiles (linear interpolation, as ``quantile_cont`` and
  ``statistics.quantiles(method="inclusive")``), exact distinct counts and the most frequent
  values with their counts.

``std`` is always the *sample* standard deviation (``stddev_samp``, divisor n - 1), as
``statistics.stdev``; it is ``None`` for fewer than two values. Empty CSV cells are nulls.

A second, cheap step adds the pictures' numbers (:func:`profile_details`): an exact
equal-width histogram of every numeric and date/time column (bin edges from the first pass's
min and max, at most :data:`HISTOGRAM_BINS` bins) and the exact counts of the most frequent
values of every text column (for a streamed file, of the candidates ``approx_top_k`` found:
the set may miss a value, the counts are exact). On a temp table it is a scan of columns in
memory; on a streamed file it is a second read of the file. The exact profile also counts
the duplicate rows (``duplicate_rows``); a streamed one does not (``None``).

Other files get their size, a detected type (magic bytes, then the file name) and sha256.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import mimetypes
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

MEMORY_LIMIT = "512MB"
"""DuckDB's memory limit: streamed aggregates are bounded; the rest spills to disk."""
EXACT_MAX_BYTES = 64 * 1024 * 1024
"""Files up to this size (a quarter of it when compressed) are profiled exactly."""
TOP_K = 10
"""How many most frequent values are reported per text or boolean column (``top``)."""
GROUP_TOP_K = 5
"""How many most frequent values are reported per group of a group table."""
HISTOGRAM_BINS = 20
"""At most this many bins per histogram (numeric and date/time columns)."""
MAX_GROUPS = 100
"""At most this many groups (the largest) are reported per group table."""
MAX_TEXT = 200
"""Reported text values are cut to this many characters."""
HASH_CHUNK = 1024 * 1024

NUMERIC_TYPES = frozenset(
    {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
        "FLOAT",
        "DOUBLE",
        "REAL",
    }
)
TEXT_TYPES = frozenset({"VARCHAR", "UUID"})
TEMPORAL_PREFIXES = ("DATE", "TIME", "TIMESTAMP", "INTERVAL")

_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png", "PNG image"),
    (b"\xff\xd8\xff", "image/jpeg", "JPEG image"),
    (b"GIF87a", "image/gif", "GIF image"),
    (b"GIF89a", "image/gif", "GIF image"),
    (b"%PDF-", "application/pdf", "PDF document"),
    (b"PK\x03\x04", "application/zip", "ZIP archive"),
    (b"PK\x05\x06", "application/zip", "ZIP archive (empty)"),
    (b"\x1f\x8b", "application/gzip", "gzip compressed data"),
    (b"BZh", "application/x-bzip2", "bzip2 compressed data"),
    (b"\xfd7zXZ\x00", "application/x-xz", "xz compressed data"),
    (b"(\xb5/\xfd", "application/zstd", "Zstandard compressed data"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed", "7-Zip archive"),
    (b"PAR1", "application/vnd.apache.parquet", "Parquet file"),
    (b"\x89HDF\r\n\x1a\n", "application/x-hdf5", "HDF5 file"),
    (b"\x93NUMPY", "application/x-npy", "NumPy array"),
    (b"SQLite format 3\x00", "application/vnd.sqlite3", "SQLite database"),
    (b"ARROW1", "application/vnd.apache.arrow.file", "Arrow IPC file"),
    (b"II*\x00", "image/tiff", "TIFF image"),
    (b"MM\x00*", "image/tiff", "TIFF image"),
    (b"\x7fELF", "application/x-executable", "ELF executable"),
    (b"RIFF", "application/octet-stream", "RIFF container"),
)


# -- formats -----------------------------------------------------------------------------
def table_format(path: Path) -> str | None:
    """``csv``, ``tsv``, ``parquet`` or ``json`` for a tabular file, else ``None``.

    The name decides (``.csv``, ``.csv.gz``, ``.tsv``, ``.tab``, ``.parquet``, ``.json``,
    ``.jsonl``, ``.ndjson``, optionally gzip-compressed); a file of another name whose
    first bytes are Parquet's magic number is read as Parquet too.
    """
    name = path.name.lower()
    for suffix in (".gz", ".gzip"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    ext = name.rsplit(".", 1)[-1] if "." in name else ""
    if ext == "csv":
        return "csv"
    if ext in ("tsv", "tab"):
        return "tsv"
    if ext in ("parquet", "pq") and name == path.name.lower():
        return "parquet"
    if ext in ("json", "jsonl", "ndjson"):
        return "json"
    if ext in ("", "bin", "dat", "data") and _head(path, 4) == b"PAR1":
        return "parquet"
    return None


def _head(path: Path, n: int) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def detect_type(path: Path) -> tuple[str, str]:
    """(MIME type, description) from magic bytes, else the file name, else the content."""
    head = _head(path, 64)
    if not head:
        return "application/x-empty", "empty file"
    for magic, mime, description in _MAGIC:
        if head.startswith(magic):
            return mime, description
    guessed, _encoding = mimetypes.guess_type(path.name, strict=False)
    if guessed and guessed != "application/octet-stream":
        return guessed, f"{guessed} (by file name)"
    sample = _head(path, 8192)
    if b"\x00" not in sample:
        try:
            sample.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(sample) - 4:  # not just a character cut at the boundary
                return "application/octet-stream", "binary data"
        return "text/plain", "text"
    return "application/octet-stream", "binary data"


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """Stream the file through sha256; ``on_bytes`` gets the running byte count."""
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if on_bytes is not None:
                on_bytes(done)
    return digest.hexdigest()


# -- values ------------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
    """A JSON-serialisable form of a DuckDB value (non-finite floats become ``None``)."""
    if value is None or isinstance(value, bool | int | str):
        return value[:MAX_TEXT] if isinstance(value, str) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return jsonable(float(value))
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)[:MAX_TEXT].hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)[:MAX_TEXT]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def column_kind(duck_type: str) -> str:
    """``numeric``, ``text``, ``temporal``, ``boolean`` or ``other`` for a DuckDB type."""
    base = duck_type.upper()
    if base in NUMERIC_TYPES or base.startswith("DECIMAL"):
        return "numeric"
    if base in TEXT_TYPES or base.startswith("ENUM"):
        return "text"
    if base == "BOOLEAN":
        return "boolean"
    if base.startswith(TEMPORAL_PREFIXES):
        return "temporal"
    return "other"


def clean_error(exc: BaseException, path: Path, rel: str) -> str:
    """A short, one-line reason from a DuckDB error (no SQL echo, no hints)."""
    skip = (
        "original line",
        "line 1:",
        "possible",
        "*",
        "^",
        "the search space",
        "delimiter",
        "quote/escape",
        "comment candidates",
        "encoding:",
        "disable",
        "set the correct",
    )
    kept: list[str] = []
    for raw_line in str(exc).splitlines():
        line = raw_line.strip()
        if not line or line.lower().startswith(skip):
            continue
        kept.append(line.replace(str(path), rel))
        if len(kept) == 3:
            break
    text = " ".join(kept) or type(exc).__name__
    for prefix in ("Invalid Input Error: ", "Conversion Error: ", "IO Error: "):
        text = text.removeprefix(prefix)
    if "possible to automatically detect the CSV parsing dialect" in text:
        text = (
            f"not a well-formed {'TSV' if rel.lower().endswith(('.tsv', '.tab')) else 'CSV'} "
            "file: no delimiter and quoting fit every row (rows with differing field counts, "
            "an unterminated quote, or binary data)"
        )
    return text[:300]


# -- connection --------------------------------------------------------------------------
@contextmanager
def connect(
    temp_dir: str, *, memory_limit: str = MEMORY_LIMIT, threads: int | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection that spills to ``temp_dir`` and reports progress."""
    config: dict[str, Any] = {
        "memory_limit": memory_limit,
        "temp_directory": temp_dir,
        "preserve_insertion_order": False,
    }
    if threads is not None:
        config["threads"] = threads
    con = duckdb.connect(":memory:", config=config)
    try:
        con.execute("SET enable_progress_bar = true")
        con.execute("SET enable_progress_bar_print = false")
        yield con
    finally:
        con.close()


def query_progress(con: duckdb.DuckDBPyConnection) -> float | None:
    """Percentage of the running query, or ``None`` when DuckDB cannot tell."""
    try:
        value = float(con.query_progress())
    except (duckdb.Error, RuntimeError):
        return None
    return value if 0 <= value <= 100 else None


# -- tables ------------------------------------------------------------------------------
@dataclass
class Column:
    name: str
    type: str
    kind: str


@dataclass
class TableSource:
    """Where a table's rows come from: a read function call, or a loaded temp table."""

    con: duckdb.DuckDBPyConnection
    path: Path
    format: str
    reader: str
    exact: bool
    relation: str = ""
    columns: list[Column] = field(default_factory=list)
    hints: dict[int, dict[str, Any]] = field(default_factory=dict)
    """What the first pass found for the second: date/time ranges, top candidates."""
    _temp: str | None = None

    def drop(self) -> None:
        if self._temp is not None:
            self.con.execute(f"DROP TABLE IF EXISTS {self._temp}")
            self._temp = None


def _is_compressed(path: Path, fmt: str) -> bool:
    return fmt == "parquet" or path.name.lower().endswith((".gz", ".gzip"))


def wants_exact(path: Path, fmt: str, size: int) -> bool:
    limit = EXACT_MAX_BYTES // 4 if _is_compressed(path, fmt) else EXACT_MAX_BYTES
    return size <= limit


def _csv_reader(con: duckdb.DuckDBPyConnection, path: Path, fmt: str, full_sample: bool) -> str:
    """A strict ``read_csv`` call: a row with the wrong number of fields is an error.

    The delimiter is ``\\t`` for TSV; for CSV it is ``,`` unless DuckDB's sniffer finds
    several columns separated by ``;`` or ``|`` (or tabs).
    """
    lit = quote_literal(str(path))
    delim = "\t" if fmt == "tsv" else ","
    if fmt == "csv":
        try:
            row = con.execute(f"SELECT Delimiter, len(Columns) FROM sniff_csv({lit})").fetchone()
        except duckdb.Error:
            row = None
        if row is not None and row[0] in (";", "|", "\t") and int(row[1] or 0) > 1:
            delim = str(row[0])
    options = [
        lit,
        f"delim = {quote_literal(delim)}",
        "quote = '\"'",
        "escape = '\"'",
        "skip = 0",
        "strict_mode = true",
    ]
    if full_sample:
        options.append("sample_size = -1")
    return f"read_csv({', '.join(options)})"


def _reader_sql(con: duckdb.DuckDBPyConnection, path: Path, fmt: str, full_sample: bool) -> str:
    if fmt in ("csv", "tsv"):
        return _csv_reader(con, path, fmt, full_sample)
    if fmt == "parquet":
        return f"read_parquet({quote_literal(str(path))})"
    if fmt == "json":
        extra = ", sample_size = -1" if full_sample else ""
        return f"read_json_auto({quote_literal(str(path))}{extra})"
    raise ValueError(f"not a table format: {fmt}")


def is_conversion_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "could not convert" in text or "conversion error" in text


def open_table(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: str, *, exact: bool, full_sample: bool = False
) -> TableSource:
    """Sniff the schema and, for an exact profile, load the rows into a temp table."""
    reader = _reader_sql(con, path, fmt, full_sample)
    source = TableSource(con=con, path=path, format=fmt, reader=reader, exact=exact)
    described = con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
    source.columns = [Column(str(r[0]), str(r[1]), column_kind(str(r[1]))) for r in described]
    if exact:
        name = "profile_" + uuid.uuid4().hex
        con.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM {reader}")
        source._temp = name
        source.relation = name
    else:
        source.relation = reader
    return source


@dataclass
class _Slot:
    column: int
    key: str


def _stats_query(source: TableSource, *, minimal: bool = False) -> tuple[str, list[_Slot]]:
    exprs = ["count(*)"]
    slots = [_Slot(-1, "rows")]

    def add(column: int, key: str, expr: str) -> None:
        exprs.append(expr)
        slots.append(_Slot(column, key))

    for i, col in enumerate(source.columns):
        q = quote_ident(col.name)
        add(i, "non_null", f"count({q})")
        if minimal:
            continue
        distinct = f"count(DISTINCT {q})" if source.exact else f"approx_count_distinct({q})"
        if col.kind == "numeric":
            add(i, "min", f"min({q})")
            add(i, "max", f"max({q})")
            add(i, "mean", f"avg({q})")
            add(i, "std", f"stddev_samp({q})")
            quantile = "quantile_cont" if source.exact else "approx_quantile"
            add(i, "quartiles", f"{quantile}({q}, [0.25, 0.5, 0.75])")
            add(i, "distinct", distinct)
        elif col.kind in ("text", "temporal"):
            # temporal values as text: a TIMESTAMPTZ would need pytz on the Python side
            cast = "::VARCHAR" if col.kind == "temporal" else ""
            add(i, "min", f"min({q}){cast}")
            add(i, "max", f"max({q}){cast}")
            add(i, "distinct", distinct)
            if col.kind == "text" and not source.exact:
                add(i, "top", f"approx_top_k({q}, {TOP_K})")
            units = temporal_units(col.type) if col.kind == "temporal" else None
            if units is not None:
                quantile = "quantile_disc" if source.exact else "approx_quantile"
                add(i, "quartiles", f"{quantile}({q}, [0.25, 0.5, 0.75])::VARCHAR[]")
                add(i, "lo", f"min({units.sql(q)})")
                add(i, "hi", f"max({units.sql(q)})")
        elif col.kind == "boolean":
            add(i, "true", f"count_if({q})")
    return f"SELECT {', '.join(exprs)} FROM {source.relation}", slots


def _empty_column(col: Column) -> dict[str, Any]:
    return {
        "name": col.name,
        "type": col.type,
        "kind": col.kind,
        "nulls": 0,
        "non_null": 0,
        "min": None,
        "max": None,
        "mean": None,
        "std": None,
        "q25": None,
        "q50": None,
        "q75": None,
        "quantiles": None,
        "distinct": None,
        "distinct_exact": None,
        "distinct_approx": None,
        "top_values": [],
        "top": None,
        "top_approx": None,
        "histogram": None,
    }


def profile_columns(
    source: TableSource, *, minimal: bool = False
) -> tuple[int, list[dict[str, Any]]]:
    """Row count and per-column statistics, in one aggregate query over the source.

    ``minimal`` computes only the row count and the nulls (a fallback for column types
    some aggregate does not support).
    """
    sql, slots = _stats_query(source, minimal=minimal)
    row = source.con.execute(sql).fetchone()
    if row is None:
        raise RuntimeError("the aggregate query returned no row")
    rows = int(row[0])
    columns = [_empty_column(col) for col in source.columns]
    source.hints = {}

    def hints(column: int) -> dict[str, Any]:
        return source.hints.setdefault(column, {})
    for slot, value in zip(slots, row, strict=True):
        if slot.column < 0:
            continue
        entry = columns[slot.column]
        if slot.key == "non_null":
            entry["non_null"] = int(value)
            entry["nulls"] = rows - int(value)
        elif slot.key == "quartiles":
            quartiles = list(value) if value is not None else [None, None, None]
            entry["q25"], entry["q50"], entry["q75"] = (jsonable(v) for v in quartiles)
            if value is not None:
                entry["quantiles"] = {k: entry[k] for k in ("q25", "q50", "q75")}
        elif slot.key == "distinct":
            entry["distinct"] = int(value)
            entry["distinct_exact"] = source.exact
            entry["distinct_approx"] = not source.exact
        elif slot.key == "top":
            entry["top_values"] = [{"value": jsonable(v), "count": None} for v in value or []]
            hints(slot.column)["candidates"] = [v for v in value or [] if v is not None]
        elif slot.key == "true":
            true = int(value)
            false = entry["non_null"] - true
            tops = [{"value": True, "count": true}, {"value": False, "count": false}]
            tops.sort(key=lambda t: -int(t["count"]))
            entry["top_values"] = [t for t in tops if t["count"]]
            entry["top"] = entry["top_values"]
            entry["top_approx"] = False
            entry["distinct"] = len(entry["top_values"])
            entry["distinct_exact"] = True
            entry["distinct_approx"] = False
        elif slot.key in ("lo", "hi"):
            hints(slot.column)[slot.key] = value
        else:
            entry[slot.key] = jsonable(value)
    if source.exact:
        for i, col in enumerate(source.columns):
            if col.kind == "text" and columns[i]["non_null"]:
                columns[i]["top_values"] = top_values(source, col.name)
                columns[i]["top"] = columns[i]["top_values"]
                columns[i]["top_approx"] = False
    return rows, columns


# -- the pictures' numbers: histograms and top counts ----------------------------------------
@dataclass(frozen=True)
class TemporalUnits:
    """How a date/time column is binned: as whole days or microseconds since the epoch."""

    edges_type: str  # "date", "timestamp" or "time"
    expr: str  # SQL of the integer value, "{q}" for the column
    aware: bool = False

    def sql(self, q: str) -> str:
        return self.expr.format(q=q)

    def edge(self, value: int) -> str:
        """An edge as an ISO 8601 string."""
        if self.edges_type == "date":
            return (dt.date(1970, 1, 1) + dt.timedelta(days=value)).isoformat()
        moment = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=value)
        if self.edges_type == "time":
            # the last edge of a bin holding 23:59:59.999999 is midnight of the next day
            return "24:00:00" if value >= 86_400_000_000 else moment.time().isoformat()
        if self.aware:
            return moment.replace(tzinfo=dt.UTC).isoformat()
        return moment.isoformat()


def temporal_units(duck_type: str) -> TemporalUnits | None:
    """The binning of a DATE, TIME or TIMESTAMP type; ``None`` for others (INTERVAL...)."""
    base = duck_type.upper()
    if base == "DATE":
        return TemporalUnits("date", "({q} - DATE '1970-01-01')")
    if base.startswith("TIMESTAMP"):
        aware = "TIME ZONE" in base or base == "TIMESTAMPTZ"
        return TemporalUnits("timestamp", "epoch_us({q})", aware)
    if base == "TIME":
        return TemporalUnits("time", "epoch_us({q})")
    return None


_INTEGER_TYPES = frozenset(t for t in NUMERIC_TYPES if t not in ("FLOAT", "DOUBLE", "REAL"))


@dataclass
class _Bins:
    """Equal-width bins over [lo, hi]: integer steps for integers, else float steps."""

    lo: float | int
    width: float | int
    count: int
    integer: bool

    @classmethod
    def over(cls, lo: Any, hi: Any, integer: bool) -> _Bins | None:
        if lo is None or hi is None:
            return None
        if integer:
            lo, hi = int(lo), int(hi)
            span = hi - lo + 1
            width = -(-span // min(HISTOGRAM_BINS, span))
            return cls(lo, width, -(-span // width), True)
        lo, hi = float(lo), float(hi)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return None
        if hi <= lo:
            return cls(lo, 0.0, 1, False)
        return cls(lo, (hi - lo) / HISTOGRAM_BINS, HISTOGRAM_BINS, False)

    def sql(self, value: str) -> str:
        """The bin index of ``value`` (0 .. count - 1)."""
        if self.integer:
            return f"(({value})::HUGEINT - ({int(self.lo)})) // {int(self.width)}"
        if self.width == 0:
            return "0"
        return (
            f"least(floor((({value})::DOUBLE - ({self.lo!r})) / {self.width!r})::BIGINT, "
            f"{self.count - 1})"
        )

    def edges(self, hi: Any) -> list[Any]:
        if self.integer:
            return [int(self.lo) + i * int(self.width) for i in range(self.count + 1)]
        if self.width == 0:
            return [self.lo, self.lo]
        edges = [self.lo + i * self.width for i in range(self.count)]
        return [*edges, float(hi)]


def profile_details(source: TableSource, columns: list[dict[str, Any]]) -> None:
    """Add ``histogram`` (numeric, date/time) and ``top`` (text) to the columns that
    :func:`profile_columns` returned, in one more aggregate query over the source.

    Histogram bins are ``[edges[i], edges[i + 1])``; a float histogram's last bin also holds
    its upper edge (the maximum). Integer, date and time bins are whole steps (an integer
    column of 5 values gets 5 bins of width 1).
    """
    exprs: list[str] = []
    jobs: list[tuple[int, str, Any]] = []
    for i, (col, entry) in enumerate(zip(source.columns, columns, strict=True)):
        q = quote_ident(col.name)
        hint = source.hints.get(i, {})
        lo, hi, candidates = hint.get("lo"), hint.get("hi"), hint.get("candidates")
        if not entry["non_null"]:
            continue
        if col.kind == "numeric":
            integer = col.type.upper() in _INTEGER_TYPES and col.type.upper() != "UHUGEINT"
            bins = _Bins.over(entry["min"], entry["max"], integer)
            if bins is not None:
                exprs.append(f"histogram({bins.sql(q)}) FILTER (WHERE {q} IS NOT NULL)")
                jobs.append((i, "histogram", (bins, entry["max"], None)))
        elif col.kind == "temporal":
            units = temporal_units(col.type)
            bins = _Bins.over(lo, hi, True) if units is not None else None
            if bins is not None and units is not None:
                exprs.append(
                    f"histogram({bins.sql(units.sql(q))}) FILTER (WHERE {q} IS NOT NULL)"
                )
                jobs.append((i, "histogram", (bins, hi, units)))
        elif col.kind == "text" and candidates:
            values = ", ".join(quote_literal(str(v)) for v in candidates)
            exprs.append(f"histogram({q}::VARCHAR) FILTER (WHERE {q}::VARCHAR IN ({values}))")
            jobs.append((i, "top", None))
    if not exprs:
        return
    row = source.con.execute(f"SELECT {', '.join(exprs)} FROM {source.relation}").fetchone()
    if row is None:
        return
    for (i, key, extra), value in zip(jobs, row, strict=True):
        found: dict[Any, int] = dict(value or {})
        entry = columns[i]
        if key == "histogram":
            bins, hi, units = extra
            edges = bins.edges(hi)
            counts = [int(found.get(b, 0)) for b in range(bins.count)]
            try:
                shown = [units.edge(e) for e in edges] if units is not None else edges
            except (OverflowError, ValueError):  # a date beyond Python's years 1..9999
                continue
            entry["histogram"] = {
                "edges": shown,
                "counts": counts,
                "edges_type": units.edges_type if units is not None else "number",
            }
        else:
            ordered = sorted(found.items(), key=lambda kv: (-int(kv[1]), kv[0]))
            entry["top"] = [{"value": jsonable(v), "count": int(n)} for v, n in ordered[:TOP_K]]
            entry["top_values"] = entry["top"]
            entry["top_approx"] = True


def duplicate_rows(source: TableSource) -> int | None:
    """Rows equal to an earlier row, for an exact (loaded) table; ``None`` when streamed or
    when a column type cannot be compared."""
    if not source.exact:
        return None
    try:
        row = source.con.execute(
            f"SELECT (SELECT count(*) FROM {source.relation}) - "
            f"(SELECT count(*) FROM (SELECT DISTINCT * FROM {source.relation}))"
        ).fetchone()
    except duckdb.Error:
        return None
    return int(row[0]) if row is not None else None


def top_values(source: TableSource, column: str, k: int = TOP_K) -> list[dict[str, Any]]:
    """Exact most frequent non-null values with their counts (ties by value)."""
    q = quote_ident(column)
    found = source.con.execute(
        f"SELECT {q}, count(*) AS n FROM {source.relation} WHERE {q} IS NOT NULL "
        f"GROUP BY ALL ORDER BY n DESC, {q} LIMIT {int(k)}"
    ).fetchall()
    return [{"value": jsonable(v), "count": int(n)} for v, n in found]


# -- groups ------------------------------------------------------------------------------
def group_stats(source: TableSource, target: Column | None, groups: list[Column]) -> dict[str, Any]:
    """The target's distribution per group (the combination of the group columns).

    Numeric target: count, nulls, mean, sample std, min, max and median per group. Other
    target: the most frequent values per group (:data:`GROUP_TOP_K`). No target: group
    sizes. The largest :data:`MAX_GROUPS` groups are kept.
    """
    con = source.con
    plain = ("numeric", "text", "boolean")
    # temporal and nested keys as text: a TIMESTAMPTZ would need pytz on the Python side
    gexprs = [
        quote_ident(g.name) if g.kind in plain else f"{quote_ident(g.name)}::VARCHAR"
        for g in groups
    ]
    k = len(groups)
    gq = [f"g{i}" for i in range(k)]
    gselect = ", ".join(f"{e} AS {a}" for e, a in zip(gexprs, gq, strict=True))
    names = [g.name for g in groups]
    out: dict[str, Any] = {
        "target": target.name if target else None,
        "groups": names,
        "kind": target.kind if target else None,
    }
    order_groups = ", ".join(f"{g} NULLS LAST" for g in gq)
    by_position = ", ".join(f"{i + 1} NULLS LAST" for i in range(k))
    if target is None or target.kind == "numeric":
        if target is not None:
            t = quote_ident(target.name)
            median = "median" if source.exact else "approx_quantile"
            median_expr = f"{median}({t})" if source.exact else f"{median}({t}, 0.5)"
            aggs = f"count({t}), avg({t}), stddev_samp({t}), min({t}), max({t}), {median_expr}"
        else:
            aggs = "NULL, NULL, NULL, NULL, NULL, NULL"
        sql = (
            f"SELECT {gselect}, count(*), {aggs}, count(*) OVER () "
            f"FROM {source.relation} GROUP BY ALL "
            f"ORDER BY {k + 1} DESC, {by_position} LIMIT {MAX_GROUPS}"
        )
        rows = con.execute(sql).fetchall()
        table = []
        for r in rows:
            entry: dict[str, Any] = {
                "group": {n: jsonable(v) for n, v in zip(names, r[:k], strict=True)},
                "count": int(r[k]),
            }
            if target is not None:
                nn = int(r[k + 1])
                entry.update(
                    nulls=int(r[k]) - nn,
                    mean=jsonable(r[k + 2]),
                    std=jsonable(r[k + 3]),
                    min=jsonable(r[k + 4]),
                    max=jsonable(r[k + 5]),
                    median=jsonable(r[k + 6]),
                )
            table.append(entry)
        out["rows"] = table
        out["groups_total"] = int(rows[0][-1]) if rows else 0
        return out
    t = quote_ident(target.name)
    if target.kind not in plain:
        t += "::VARCHAR"
    keys = ", ".join(gq)
    sql = (
        f"WITH c AS (SELECT {gselect}, {t} AS v, count(*) AS n FROM {source.relation} "
        f"GROUP BY ALL), "
        f"r AS (SELECT *, sum(n) OVER (PARTITION BY {keys}) AS total, "
        f"row_number() OVER (PARTITION BY {keys} ORDER BY n DESC, v NULLS LAST) AS rk FROM c) "
        f"SELECT {keys}, v, n, total FROM r WHERE rk <= {GROUP_TOP_K} "
        f"ORDER BY total DESC, {order_groups}, n DESC, v NULLS LAST"
    )
    cursor = con.execute(sql)
    table_by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    truncated = False
    while batch := cursor.fetchmany(1000):
        for r in batch:
            key = tuple(r[:k])
            found = table_by_key.get(key)
            if found is None:
                if len(table_by_key) >= MAX_GROUPS:
                    truncated = True
                    break
                found = {
                    "group": {n: jsonable(v) for n, v in zip(names, key, strict=True)},
                    "count": int(r[k + 2]),
                    "top_values": [],
                }
                table_by_key[key] = found
            found["top_values"].append({"value": jsonable(r[k]), "count": int(r[k + 1])})
        if truncated:
            break
    out["rows"] = list(table_by_key.values())
    out["groups_truncated"] = truncated
    return out


def describe_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
