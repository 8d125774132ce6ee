"""Load a data folder in the canonical contract, parse it, and check every rule of the contract.

``load(path)`` returns a :class:`Dataset`: typed polars LazyFrames (nothing is read eagerly that
does not need to be) plus the files' checksums and row counts for the manifest. Unless told
otherwise it first runs :func:`check`, which reports *every* problem at once, each located by
file, row, column and value, as a :class:`~analysis.schema.DataError`.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from analysis.schema import CONTRACT, DataError, Problem, Table, find_table_file

ROW = "_row"  # 1-based data row number carried through parsing for error messages
MAX_EXAMPLES = 1000  # problems of one kind listed one by one; the rest are counted


@dataclass(frozen=True)
class FileInfo:
    """One input file, as recorded in the manifest."""

    table: str
    name: str
    sha256: str
    rows: int


@dataclass
class Dataset:
    """The canonical tables of one data folder, typed and lazily read."""

    path: Path
    tables: dict[str, pl.LazyFrame]
    files: list[FileInfo] = field(default_factory=list)
    synthetic: bool = False
    source: str = "canonical"
    #: Enforcement rows an adapter removed before the canonical tables (reason -> rows), e.g.
    #: exact duplicates in a transparency dump; they enter the coverage ledger as exclusions.
    excluded: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, table: str) -> pl.LazyFrame:
        return self.tables[table]

    def __contains__(self, table: str) -> bool:
        return table in self.tables

    def rows(self, table: str) -> int:
        return next(f.rows for f in self.files if f.table == table)


def load(path: str | Path, *, check_contract: bool = True) -> Dataset:
    """Load the canonical tables in ``path`` (a folder).

    Parameters
    ----------
    path : str or Path
        Folder holding ``<table>.csv``, ``<table>.csv.gz`` or ``<table>.parquet`` per table.
    check_contract : bool, default True
        Check every rule of the contract first and raise :class:`DataError` listing all problems.

    Returns
    -------
    Dataset
        Typed LazyFrames (columns as in the contract, ``_row`` dropped), file checksums and row
        counts. ``synthetic`` is true when the folder holds a ``truth.json`` written by
        ``levelfield simulate``.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError([Problem(str(folder), "no such folder", check="folder")], source=str(folder))
    raw, problems = _scan_folder(folder)
    # The files' checksums (for the manifest) are computed beside the check: hashlib works
    # outside the GIL, and a 2 GB file takes seconds.
    with ThreadPoolExecutor(max_workers=1) as other:
        checksums = other.submit(lambda: {name: sha256(file) for name, (_, file) in raw.items()})
        if check_contract:
            with few_row_groups_ahead():
                problems += _check(raw, folder)
        if problems:
            checksums.cancel()
            raise DataError(problems, source=str(folder))
        checksums = checksums.result()
    tables = {name: frame.select(list(CONTRACT[name].schema)) for name, (frame, _) in raw.items()}
    files = [
        FileInfo(table=name, name=file.name, sha256=checksums[name], rows=_count(frame))
        for name, (frame, file) in sorted(raw.items())
    ]
    return Dataset(folder, tables, files, synthetic=(folder / "truth.json").exists())


def sha256(file: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def few_row_groups_ahead(row_groups: int = 1) -> Iterator[None]:
    """While the block runs, polars' streaming Parquet reader reads ``row_groups`` row groups
    ahead of the work (unless ``POLARS_ROW_GROUP_PREFETCH_SIZE`` is set already).

    By default it reads as many ahead as it may, all 20 row groups of a 10M-case enforcement
    file, and holds them in memory: about 0.3 GB of the peak of ``levelfield cells`` at 10M
    cases. One is enough: with two, the pass over 10M cases took as long and its peak was
    about 0.03 GB higher. Polars reads the variable when a query starts; it is removed again
    afterwards.
    """
    name = "POLARS_ROW_GROUP_PREFETCH_SIZE"
    if name in os.environ:
        yield
        return
    os.environ[name] = str(row_groups)
    try:
        yield
    finally:
        os.environ.pop(name, None)


def _count(frame: pl.LazyFrame) -> int:
    return frame.select(pl.len()).collect().item()


# --------------------------------------------------------------------------------------------
# Reading and parsing


def _scan_folder(folder: Path) -> tuple[dict[str, tuple[pl.LazyFrame, Path]], list[Problem]]:
    """Scan each table file present; parse columns; report missing tables and columns."""
    raw: dict[str, tuple[pl.LazyFrame, Path]] = {}
    problems: list[Problem] = []
    for name, table in CONTRACT.items():
        file = find_table_file(folder, name)
        if file is None:
            if table.required:
                problems.append(Problem(
                    str(folder), f"required table {name} is missing: expected {name}.csv, "
                    f"{name}.csv.gz or {name}.parquet", check="missing table"))
            continue
        try:
            frame = _scan(file)
            present = frame.collect_schema()
        except (pl.exceptions.PolarsError, OSError) as exc:
            problems.append(Problem(file.name, f"cannot be read: {exc}", check="unreadable"))
            continue
        missing = [c.name for c in table.columns if c.required and c.name not in present]
        for column in missing:
            problems.append(Problem(
                file.name, f"required column {column} is missing (columns found: "
                f"{', '.join(n for n in present if n != ROW)})", column=column,
                check="missing column"))
        if missing:
            continue
        parsed = _parse(frame, table, present)
        if file.suffix != ".parquet":
            try:  # a CSV file is read through once here, so that a broken line is found now
                if file.stat().st_size >= CSV_PARSED_ONCE_BYTES:
                    parsed = _parsed_once(parsed, file)
                else:
                    frame.select(pl.all().exclude(ROW).null_count()).collect()
            except (pl.exceptions.PolarsError, OSError) as exc:
                problems.append(_unreadable_csv(file, exc))
                continue
        raw[name] = (parsed, file)
    return raw, problems


def _unreadable_csv(file: Path, error: Exception) -> Problem:
    """The problem to report for a CSV file polars could not read: the first line that is not
    UTF-8 text or has more fields than the header, if that is why (polars does not say where),
    else polars' words."""
    opener = gzip.open if file.suffix == ".gz" else open
    try:
        with opener(file, "rb") as binary:
            for line, text in enumerate(binary, start=1):
                try:
                    text.decode("utf-8")
                except UnicodeDecodeError:
                    return Problem(file.name, "not UTF-8 text (save the file as UTF-8)",
                                   row=line - 1 if line > 1 else None, check="unreadable")
        with opener(file, "rt", encoding="utf-8", newline="") as handle:
            lines = csv.reader(handle)
            header = len(next(lines, []))
            for row, fields in enumerate(lines, start=1):
                if len(fields) > header:
                    return Problem(file.name, f"{len(fields)} fields, but the header has "
                                   f"{header} columns", row=row, check="unreadable")
    except (OSError, UnicodeDecodeError, csv.Error):
        pass
    first_line = str(error).strip().splitlines()[0]
    return Problem(file.name, f"cannot be read: {first_line}", check="unreadable")


#: A CSV file at least this large is parsed once, into a scratch Parquet file that every later
#: pass reads (:func:`_parsed_once`).
CSV_PARSED_ONCE_BYTES = 32 * 2**20
#: The scratch folders of this process, removed when it exits.
_SCRATCH: list[tempfile.TemporaryDirectory] = []


def _parsed_once(parsed: pl.LazyFrame, file: Path) -> pl.LazyFrame:
    """``parsed`` (a CSV file's typed and raw columns, :func:`_parse`) written once to a scratch
    Parquet file, and scanned from there.

    Every later step reads the tables again (the contract check twice, the attribution, the
    cells), and from CSV each read would parse the text again: timestamps alone cost about
    1.4 s per million rows and column, five formats tried. Parsed once, a 10M-row CSV file is
    read afterwards as fast as Parquet. The scratch folder is in the system's temporary folder
    (``TMPDIR``) and is removed when the process exits.
    """
    scratch = tempfile.TemporaryDirectory(prefix="levelfield-")
    _SCRATCH.append(scratch)
    path = Path(scratch.name) / f"{file.name}.parquet"
    parsed.sink_parquet(path, compression="lz4", row_group_size=1 << 19)
    return pl.scan_parquet(path)


def _scan(file: Path) -> pl.LazyFrame:
    if file.suffix == ".parquet":
        frame = pl.scan_parquet(file)
    else:
        # Everything is read as text first so that a bad value is reported, not silently nulled.
        frame = pl.scan_csv(file, infer_schema=False, encoding="utf8")
    return frame.with_row_index(ROW, offset=1)


def _raw(column: str) -> str:
    return f"_raw_{column}"


def _parse(frame: pl.LazyFrame, table: Table, present: pl.Schema) -> pl.LazyFrame:
    """Typed columns of ``table`` plus, for checks, each column as read as ``_raw_<name>``: its
    text (stripped, empty as null) from CSV, the value itself from a typed Parquet column."""
    exprs: list[pl.Expr] = [pl.col(ROW)]
    for column in table.columns:
        if column.name not in present:
            exprs += [pl.lit(None, column.dtype).alias(column.name),
                      pl.lit(None, pl.String).alias(_raw(column.name))]
            continue
        source = pl.col(column.name)
        if present[column.name] == pl.String:
            text = source.str.strip_chars()
            text = pl.when(text != "").then(text)  # empty is missing
            typed = _from_text(text, column.type)
        else:
            text = source  # typed already: made text only for the rows a problem lists
            typed = _from_typed(source, present[column.name], column.type)
        exprs += [typed.alias(column.name), text.alias(_raw(column.name))]
    return frame.select(exprs)


_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


def _from_text(text: pl.Expr, kind: str) -> pl.Expr:
    if kind == "str":
        return text
    if kind == "int":
        return text.cast(pl.Int64, strict=False)
    if kind == "float":
        return text.cast(pl.Float64, strict=False)
    if kind == "bool":
        lower = text.str.to_lowercase()
        return (pl.when(lower.is_in(_TRUE)).then(True)
                .when(lower.is_in(_FALSE)).then(False).otherwise(None))
    if kind == "date":
        return text.str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    if kind == "timestamp":
        return parse_timestamp(text)
    raise ValueError(f"unknown column type {kind}")


def parse_timestamp(text: pl.Expr) -> pl.Expr:
    """ISO 8601 text to UTC timestamps; text without an offset is taken as UTC (the contract)."""
    iso = text.str.replace(r"Z$", "+00:00").str.replace(r"^(\d{4}-\d{2}-\d{2}) ", "${1}T")
    utc = pl.Datetime("us", "UTC")
    with_offset = [iso.str.strptime(utc, f, strict=False)
                   for f in ("%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M%:z")]
    naive = [iso.str.strptime(pl.Datetime("us"), f, strict=False).dt.replace_time_zone("UTC")
             for f in ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M")]
    day = iso.str.strptime(pl.Date, "%Y-%m-%d", strict=False).cast(pl.Datetime("us"))
    return pl.coalesce(*with_offset, *naive, day.dt.replace_time_zone("UTC"))


def _from_typed(source: pl.Expr, dtype: pl.DataType, kind: str) -> pl.Expr:
    """Columns that arrive typed (Parquet): cast to the contract's type."""
    if kind == "timestamp" and isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            return source.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        return source.dt.convert_time_zone("UTC").cast(pl.Datetime("us", "UTC"))
    if kind == "timestamp" and dtype == pl.Date:
        return source.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if kind == "date" and isinstance(dtype, pl.Datetime):
        return source.dt.date()
    if kind == "bool" and dtype.is_integer():
        return pl.when(source == 1).then(True).when(source == 0).then(False).otherwise(None)
    if kind == "int" and dtype.is_float():
        return pl.when(source == source.round()).then(source).cast(pl.Int64, strict=False)
    return source.cast({"str": pl.String, "int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean,
                        "date": pl.Date, "timestamp": pl.Datetime("us", "UTC")}[kind], strict=False)


# --------------------------------------------------------------------------------------------
# Checking the contract

_TYPE_WORDS = {
    "int": "not a whole number",
    "float": "not a number",
    "bool": "not true/false",
    "date": "not a date (YYYY-MM-DD)",
    "timestamp": "not an ISO 8601 timestamp (e.g. 2023-06-01T14:03:00Z)",
}


@dataclass(frozen=True, eq=False)
class _Rule:
    """One rule of the contract about rows of ``table``; ``value`` is the text shown for a row
    breaking it."""

    table: str
    check: str
    column: str | None
    message: str
    value: pl.Expr


#: Seeds of the two independent 64-bit hashes keys are compared by (the contract check here,
#: the account lookup of :mod:`analysis.attribute`).
KEY_HASH_SEEDS = (0, 7)


def _key_hashes(column: str) -> list[pl.Expr]:
    """Two independent 64-bit hashes of a key column, ``_hash_first`` and ``_hash_second``."""
    return [pl.col(column).hash(seed).alias(name)
            for seed, name in zip(KEY_HASH_SEEDS, ("_hash_first", "_hash_second"), strict=True)]


def _check(raw: dict[str, tuple[pl.LazyFrame, Path]], folder: Path) -> list[Problem]:
    """Every rule of the contract, all problems collected.

    Built to stay fast and small at tens of millions of rows. The tables are read in two
    streaming passes, side by side, which keep only:

    * the row numbers, and one flag per rule, of rows breaking a rule that looks at one row at
      a time (types, nulls, vocabularies, ranges, orders);
    * a 64-bit hash of each table's key, for duplicates: only rows whose hash is shared are
      read again and their keys compared, so the duplicates found are exact;
    * the rows whose foreign key is missing from its parent table, found on two independent
      64-bit hashes of the key (a missing key would go unnoticed only if it collided with a
      known key in both, a chance of the order of 2^-128 per row).

    Only for the rows listed in the problems (:data:`MAX_EXAMPLES` per rule) is the offending
    value read, in a second pass, only if there are problems.
    """
    per_row: dict[_Rule, pl.Expr] = {}  # rule -> where it is broken
    own_query: dict[_Rule, pl.LazyFrame] = {}  # rule -> ROW (and value) of the rows breaking it

    def rule(table: str, check: str, column: str | None, message: str,
             value: pl.Expr | None = None) -> _Rule:
        shown = value if value is not None else (
            pl.col(_raw(column)) if column else pl.lit(None, pl.String))
        return _Rule(table, check, column, message, shown.cast(pl.String))

    def rows(table: str, check: str, column: str | None, message: str, where: pl.Expr,
             value: pl.Expr | None = None) -> None:
        per_row[rule(table, check, column, message, value)] = where

    for name, (frame, _) in raw.items():
        table = CONTRACT[name]
        for c in table.columns:
            typed, text = pl.col(c.name), pl.col(_raw(c.name))
            if not c.nullable:
                rows(name, "null", c.name, f"{c.name} must not be empty", text.is_null())
            if c.type != "str":
                rows(name, "type", c.name, _TYPE_WORDS[c.type], text.is_not_null() & typed.is_null())
            if c.values:
                rows(name, "vocabulary", c.name, f"must be one of {', '.join(c.values)}",
                     typed.is_not_null() & ~typed.is_in(c.values))
            if c.minimum is not None:
                rows(name, "range", c.name, f"must be >= {c.minimum:g}", typed < c.minimum)
            if c.maximum is not None:
                rows(name, "range", c.name, f"must be <= {c.maximum:g}", typed > c.maximum)

    def foreign(child: str, column: str, parent: str, parent_column: str) -> None:
        if child not in raw or parent not in raw:
            return
        first, second = "_hash_first", "_hash_second"
        children = (raw[child][0].filter(pl.col(column).is_not_null())
                    .select(ROW, *_key_hashes(column)))
        found = rule(child, "foreign key", column, f"{column} does not exist in {parent}")
        if raw[parent][1].stat().st_size > raw[child][1].stat().st_size:
            # A parent larger than its child (the audit sample's cases in the enforcement
            # table): the child's keys are held, and the parent streams past them, keeping
            # only the keys it has of theirs.
            children = children.collect(engine="streaming")
            known = (raw[parent][0].select(_key_hashes(parent_column))
                     .filter(pl.col(first).is_in(children[first].implode())).unique()
                     .collect(engine="streaming"))
            own_query[found] = (children.join(known, on=[first, second], how="anti")
                                .select(ROW).lazy())
            return
        # The parent's keys first (the smaller table), so that the child's rows stream past.
        # Made unique only if their first hashes are not (a duplicate key, or a collision):
        # sorting the hashes to see that took 0.2 s at 5M accounts, `unique` and `is_unique`
        # 1.2 s.
        known = (raw[parent][0].filter(pl.col(parent_column).is_not_null())
                 .select(_key_hashes(parent_column)).collect(engine="streaming"))
        if len(_shared(known[first])):
            known = known.unique()
        if not len(_shared(known[first])):
            # A join on one hash, then the second compared: twice as fast as joining on both.
            found_rows = (children.join(known.lazy().rename({second: "_known"}), on=first,
                                        how="left")
                          .filter(pl.col("_known").ne_missing(pl.col(second))))
        else:
            found_rows = children.join(known.lazy(), on=[first, second], how="anti")
        own_query[found] = found_rows.select(ROW)

    foreign("accounts", "advertiser_id", "advertisers", "advertiser_id")
    foreign("ad_spend", "advertiser_id", "advertisers", "advertiser_id")
    foreign("enforcement", "account_id", "accounts", "account_id")
    foreign("watchlist", "account_id", "accounts", "account_id")
    foreign("audit_sample", "case_id", "enforcement", "case_id")

    if "ad_spend" in raw:
        rows("ad_spend", "period order", "period_end", "period_end is before period_start",
             pl.col("period_end") < pl.col("period_start"))
        previous_end = pl.col("period_end").shift(1).over("advertiser_id", order_by="period_start")
        overlap = rule(
            "ad_spend", "overlap", "period_start",
            "spend periods of one advertiser overlap (this period starts before the previous one "
            "of the same advertiser ends)",
            value=pl.format("{} starts {}, its previous period ends {}", pl.col("advertiser_id"),
                            pl.col("period_start"), pl.col("_previous_end")))
        # Run now, apart: a window does not stream, and among the streaming passes below it
        # would make polars run every query of its pass in memory.
        own_query[overlap] = (raw["ad_spend"][0].with_columns(_previous_end=previous_end)
                              .filter(pl.col("period_start") <= pl.col("_previous_end"))
                              .select(ROW, overlap.value.alias("value")).collect().lazy())
        rows("ad_spend", "currency code", "currency", "not an ISO 4217 code (three capital letters)",
             pl.col("currency").is_not_null() & ~pl.col("currency").str.contains(r"^[A-Z]{3}$"))
    if "enforcement" in raw:
        rows("enforcement", "decision order", "decided_at", "decided_at is before flagged_at",
             pl.col("decided_at") < pl.col("flagged_at"),
             value=pl.format("decided {} < flagged {}", pl.col(_raw("decided_at")),
                             pl.col(_raw("flagged_at"))))
        rows("enforcement", "appeal", "appeal_outcome",
             "appeal_outcome is given but appealed is not true",
             pl.col("appeal_outcome").is_not_null() & ~pl.col("appealed").fill_null(False))
    if "watchlist" in raw:
        rows("watchlist", "listing order", "delisted_at", "delisted_at is before listed_at",
             pl.col("delisted_at") < pl.col("listed_at"))

    # Two streaming passes over all tables, run side by side: the rule flags of the rows
    # breaking a rule, and the hashes of each table's key with the own queries (the foreign
    # keys). Polars alone kept 1.6 of 2 cores busy: side by side, 3.4 s against 4.1 s at 10M
    # cases, 0.64-0.70 GB (below what the cells need afterwards). As one pass sharing a scan,
    # its consumers went at different speeds and the peak varied (0.7-1.0 GB).
    flags = {name: {r: f"_rule_{i}" for i, r in enumerate(per_row) if r.table == name}
             for name in raw}
    flagged = {name: frame.select(ROW, *[per_row[r].fill_null(False).alias(f)
                                         for r, f in flags[name].items()])
               .filter(pl.any_horizontal(list(flags[name].values())))
               for name, (frame, _) in raw.items()}
    keys = {name: CONTRACT[name].key for name in raw if CONTRACT[name].key}
    hashed = {name: raw[name][0].filter(pl.col(key).is_not_null())
              .select(ROW, _key_hashes(key)[0]) for name, key in keys.items()}
    with ThreadPoolExecutor(max_workers=1) as other:
        second = other.submit(_collect, {**{("key", name): q for name, q in hashed.items()},
                                         **{("rule", r): q for r, q in own_query.items()}})
        flagged = _collect(flagged)
        second = second.result()

    # Each rule's first offending rows, in row order (ROW[, value]), and how many there are.
    broken: dict[_Rule, tuple[pl.DataFrame, int]] = {}

    def keep(found: _Rule, rows: pl.DataFrame) -> None:
        broken[found] = (rows.head(MAX_EXAMPLES), rows.height)

    for name in raw:
        hits = flagged.pop(name).sort(ROW)
        for r, f in flags[name].items():
            keep(r, hits.filter(pl.col(f)).select(ROW))
        del hits
        if name in keys:
            duplicate = rule(name, "duplicate", keys[name],
                             f"duplicate {keys[name]}: the same value is on an earlier row")
            keep(duplicate, _duplicate_rows(raw[name][0], keys[name], second.pop(("key", name))))
    for r in own_query:
        keep(r, second.pop(("rule", r)).sort(ROW))

    problems: list[Problem] = []
    for found, listed in _with_values(raw, {r: rows for r, (rows, _) in broken.items()}).items():
        file = raw[found.table][1].name
        for row, value in listed.iter_rows():
            problems.append(Problem(file, found.message, row=row, column=found.column,
                                    value=value, check=found.check))
        if (total := broken[found][1]) > MAX_EXAMPLES:
            problems.append(Problem(file, f"{total - MAX_EXAMPLES} more rows: {found.message}",
                                    column=found.column, check=found.check))
    problems += _check_currencies(raw)
    return problems


def _collect(queries: dict) -> dict:
    """The lazy ``queries`` collected together, streaming, by the same keys."""
    return dict(zip(queries, pl.collect_all(list(queries.values()), engine="streaming"),
                    strict=True))


def _shared(hashes: pl.Series) -> np.ndarray:
    """The values that occur more than once in ``hashes`` (sorted by polars, on all cores)."""
    ordered = hashes.sort().to_numpy()
    return np.unique(ordered[1:][ordered[1:] == ordered[:-1]])


def _duplicate_rows(frame: pl.LazyFrame, key: str, hashed: pl.DataFrame) -> pl.DataFrame:
    """The rows (``ROW``) whose ``key`` is on an earlier row, in row order, given ``hashed``:
    the ``ROW`` and a 64-bit hash of the key of every row whose key is given.

    Holding ten million keys to compare them takes gigabytes; their hashes take 80 MB, sorted
    in a quarter of a second. Only rows whose hash is shared (every duplicate, and in a clean
    table almost never anything else) are read again, with their keys, to compare the keys
    themselves.
    """
    shared = _shared(hashed.to_series(1))
    if not len(shared):
        return pl.DataFrame(schema={ROW: hashed.schema[ROW]})
    rows = hashed.filter(pl.col(hashed.columns[1]).is_in(pl.Series(shared).implode()))[ROW]
    suspects = (frame.filter(pl.col(ROW).is_in(rows.implode())).select(ROW, key)
                .collect(engine="streaming").sort(ROW))
    return suspects.filter(~pl.col(key).is_first_distinct()).select(ROW)


def _with_values(raw: dict[str, tuple[pl.LazyFrame, Path]], listed: dict[_Rule, pl.DataFrame]
                 ) -> dict[_Rule, pl.DataFrame]:
    """The rows listed for each rule that has any, with their ``value``. Values not found yet
    are read in one more streaming pass per table, only for those rows."""
    listed = {r: rows for r, rows in listed.items() if rows.height}
    missing = {r for r, rows in listed.items() if "value" not in rows.columns}
    for name, (frame, _) in raw.items():
        rules = [r for r in listed if r in missing and r.table == name]
        if not rules:
            continue
        wanted = pl.concat([listed[r][ROW] for r in rules]).unique()
        values = (frame.filter(pl.col(ROW).is_in(wanted.implode()))
                  .select(ROW, *[r.value.alias(f"_value_{i}") for i, r in enumerate(rules)])
                  .collect(engine="streaming"))
        for i, r in enumerate(rules):
            listed[r] = listed[r].join(values.select(ROW, value=pl.col(f"_value_{i}")), on=ROW,
                                       how="left", maintain_order="left")
    return listed


def _check_currencies(raw: dict[str, tuple[pl.LazyFrame, Path]]) -> list[Problem]:
    if "ad_spend" not in raw:
        return []
    file = raw["ad_spend"][1].name
    currencies = (raw["ad_spend"][0].select(pl.col("currency").drop_nulls().unique().sort())
                  .collect().to_series().to_list())
    if len(currencies) <= 1:
        return []
    if "fx_rates" not in raw:
        return [Problem(file, f"ad_spend mixes currencies ({', '.join(currencies)}); add an "
                        "fx_rates table (columns currency, rate_to_usd) to convert them",
                        column="currency", check="currencies")]
    known = set(raw["fx_rates"][0].select("currency").collect().to_series().to_list())
    return [Problem(file, f"currency {c} has no rate in {raw['fx_rates'][1].name}",
                    column="currency", value=c, check="currencies")
            for c in currencies if c not in known]
