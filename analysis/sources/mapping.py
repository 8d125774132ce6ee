"""Any CSV or Parquet export, mapped to the canonical contract by a small TOML file.

A platform's export rarely uses the contract's names: its case file may say ``Fall-ID`` for
``case_id``, write dates as ``31.01.2024 14:05`` in Berlin time and call a removal "gelöscht".
A mapping file (TOML, read with :mod:`tomllib`) says, per canonical table, which files hold it,
which source column becomes which canonical column, how source values translate into the
contract's vocabulary, how timestamps and dates are written and in which time zone, and which
columns are constant. :func:`read` applies it lazily (polars scans; nothing is read eagerly that
does not need to be), converts local times to UTC, and then checks the result with the very same
contract checks as :func:`analysis.load.load`: the mapped tables are streamed to Parquet files in
a private temporary folder and loaded from there. Every problem is reported in the terms of the
user's own files: source file, line, source column and value.

The format is documented in ``docs/mapping.md``; ``docs/mapping-example.toml`` is a worked example.

This module also holds :func:`load_frames`, the step every adapter shares: canonical tables built
as polars frames, checked against the contract, returned as a :class:`~analysis.load.Dataset`.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import tomllib
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from analysis.load import Dataset, FileInfo, load, sha256
from analysis.schema import CONTRACT, DataError, Problem

#: Columns every frame handed to :func:`load_frames` carries, to locate problems in the source.
SOURCE_FILE = "_source_file"
SOURCE_ROW = "_source_row"

#: Keys a mapping file may use, at the top and inside each ``[tables.<name>]`` section.
TOP_KEYS = ("version", "time_zone", "tables")
TABLE_KEYS = ("files", "format", "separator", "null_values", "distinct", "time_zone",
              "timestamp_format", "date_format", "columns", "values", "defaults", "formats")
VERSION = 1
#: How many rows of one kind of mapping problem are listed one by one (the rest are counted).
MAX_LISTED = 20


# --------------------------------------------------------------------------------------------
# Shared by every adapter: canonical frames -> checked Dataset


def load_frames(
    frames: Mapping[str, pl.LazyFrame | pl.DataFrame],
    *,
    path: Path,
    source: str,
    files: list[FileInfo],
    describe: Callable[[str, str], str] | None = None,
    keep_extra: bool = True,
    excluded: Mapping[str, int] | None = None,
) -> Dataset:
    """Check canonical tables built by an adapter against the contract and return a Dataset.

    The frames are written (streamed) as Parquet to a private temporary folder, which
    :func:`analysis.load.load` then reads, parses and checks exactly as it would a user's folder.
    Problems it finds are translated back to the source: ``_source_file`` and ``_source_row`` of
    the offending row give file and row, ``describe(table, column)`` the column's name in the
    source's words.

    Parameters
    ----------
    frames : mapping of table name to polars frame
        Canonical columns (as text or already typed) plus ``_source_file`` (str) and
        ``_source_row`` (1-based data row in that file). Further columns are extra information
        the contract does not define.
    path : Path
        What the user gave (recorded as the Dataset's path).
    source : str
        Name of the source (``Dataset.source``), e.g. ``"meta-ad-library"``.
    files : list of FileInfo
        The input files with their checksums and row counts (the manifest's record).
    describe : callable, optional
        ``describe(table, column) -> str``: how to name a canonical column in messages.
    keep_extra : bool, default True
        Keep the extra columns, after the contract's, in the returned tables.
    excluded : mapping of str to int, optional
        Enforcement rows removed before the canonical tables, by reason (the coverage ledger).

    Returns
    -------
    Dataset
        Typed LazyFrames reading the temporary Parquet files (removed when Python exits).
    """
    folder = _private_folder()
    origins: dict[str, list[str]] = {}
    for name, frame in frames.items():
        lazy = frame.lazy()
        names = lazy.collect_schema().names()
        origins[name] = [c for c in names if c not in CONTRACT[name].schema]
        try:
            lazy.sink_parquet(folder / f"{name}.parquet")
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataError([Problem(f"{name} table", f"cannot be read: {exc}",
                                     check="unreadable")], source=str(path)) from None
    try:
        loaded = load(folder)
    except DataError as error:
        raise DataError(_relocate(error.problems, folder, describe), source=str(path)) from None
    tables = dict(loaded.tables)
    for name, extra in origins.items():
        kept = [c for c in extra if keep_extra and c not in (SOURCE_FILE, SOURCE_ROW)]
        if kept:
            tables[name] = pl.concat(
                [tables[name], pl.scan_parquet(folder / f"{name}.parquet").select(kept)],
                how="horizontal")
    return Dataset(path, tables, files, synthetic=False, source=source,
                   excluded=dict(excluded or {}))


def _private_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="levelfield-"))
    # The returned LazyFrames read these files, so they live as long as the process.
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _relocate(problems: list[Problem], folder: Path,
              describe: Callable[[str, str], str] | None) -> list[Problem]:
    """Problems found in the temporary Parquet files, restated in the source's terms."""
    rows_wanted: dict[str, set[int]] = {}
    for p in problems:
        if p.row is not None and p.file.endswith(".parquet"):
            rows_wanted.setdefault(p.file, set()).add(p.row)
    origin: dict[tuple[str, int], tuple[str, int]] = {}
    for file, rows in rows_wanted.items():
        found = (pl.scan_parquet(folder / file).with_row_index("_r", offset=1)
                 .filter(pl.col("_r").is_in(sorted(rows)))
                 .select("_r", SOURCE_FILE, SOURCE_ROW).collect())
        for r, name, row in found.iter_rows():
            origin[(file, r)] = (name, row)
    relocated = []
    for p in problems:
        table = p.file.removesuffix(".parquet")
        column = p.column
        if column is not None and describe is not None and table in CONTRACT:
            column = describe(table, column)
        file, row = p.file, p.row
        if (p.file, p.row) in origin:
            file, row = origin[(p.file, p.row)]
        elif table in CONTRACT:
            file = f"{table} table"
        message = p.message.replace(str(folder), "the mapped tables")
        relocated.append(replace(p, file=file, row=row, column=column, message=message))
    return relocated


# --------------------------------------------------------------------------------------------
# The mapping file


@dataclass(frozen=True)
class TableMapping:
    """How one canonical table is read from the source files (one ``[tables.<name>]`` section)."""

    table: str
    files: str
    format: str | None = None
    separator: str = ","
    null_values: tuple[str, ...] = ()
    distinct: bool = False
    time_zone: str = "UTC"
    timestamp_format: tuple[str, ...] = ()
    date_format: tuple[str, ...] = ()
    columns: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    formats: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def source_column(self, column: str) -> str | None:
        return self.columns.get(column)


@dataclass(frozen=True)
class MappingSpec:
    """A parsed mapping file."""

    file: Path
    tables: dict[str, TableMapping]


def read_mapping(file: str | Path) -> MappingSpec:
    """Parse and check a mapping file; every mistake in it is reported at once.

    Parameters
    ----------
    file : str or Path
        The TOML mapping file (format: ``docs/mapping.md``).

    Returns
    -------
    MappingSpec
        One :class:`TableMapping` per canonical table the file maps.

    Raises
    ------
    DataError
        Unknown keys, unknown tables or columns, a missing required table, an unknown time zone,
        or a value of the wrong kind, each named by its place in the file (``[tables.x.y]``).

    Examples
    --------
    >>> from analysis.config import PROJECT_ROOT
    >>> spec = read_mapping(PROJECT_ROOT / "docs" / "mapping-example.toml")
    >>> spec.tables["enforcement"].columns["case_id"]
    'Fall-ID'
    """
    path = Path(file)
    name = path.name
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError([Problem(name, "mapping file not found", check="mapping")],
                        source=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise DataError([Problem(name, f"not valid TOML: {exc}", check="mapping")],
                        source=str(path)) from None
    problems: list[Problem] = []

    def bad(where: str, message: str, value: Any = None) -> None:
        problems.append(Problem(name, f"{where}: {message}", value=None if value is None
                                else str(value), check="mapping"))

    for key in document:
        if key not in TOP_KEYS:
            bad(key, f"unknown key; expected one of {', '.join(TOP_KEYS)}")
    version = document.get("version", VERSION)
    if version != VERSION:
        bad("version", f"unsupported version; this levelfield reads version {VERSION}", version)
    default_zone = document.get("time_zone", "UTC")
    if not _valid_zone(default_zone):
        bad("time_zone", "unknown time zone (use an IANA name such as Europe/Berlin)",
            default_zone)
        default_zone = "UTC"
    sections = document.get("tables", {})
    if not isinstance(sections, dict):
        bad("tables", "must be a table of [tables.<name>] sections")
        sections = {}
    tables: dict[str, TableMapping] = {}
    for table, section in sections.items():
        where = f"[tables.{table}]"
        if table not in CONTRACT:
            bad(where, f"unknown table; the contract's tables are {', '.join(CONTRACT)}")
            continue
        if not isinstance(section, dict):
            bad(where, "must be a section with keys such as files and columns")
            continue
        mapped = _table_mapping(table, section, default_zone,
                                lambda w, m, v=None, at=where: bad(
                                    f"{at[:-1]}{'.' + w if w else ''}]", m, v))
        if mapped is not None:
            tables[table] = mapped
    for table, spec in CONTRACT.items():
        if spec.required and table not in sections:
            bad(f"[tables.{table}]", "required table is not mapped")
    if problems:
        raise DataError(problems, source=str(path))
    return MappingSpec(path, tables)


def _valid_zone(zone: Any) -> bool:
    if not isinstance(zone, str):
        return False
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _strings(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _as_text(value: Any) -> str | None:
    """A TOML value as the contract's text (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _table_mapping(table: str, section: dict, default_zone: str,
                   bad: Callable[..., None]) -> TableMapping | None:
    known = CONTRACT[table].schema
    ok = True
    for key in section:
        if key not in TABLE_KEYS:
            bad(key, f"unknown key; expected one of {', '.join(TABLE_KEYS)}")
            ok = False
    files = section.get("files")
    if not isinstance(files, str) or not files:
        bad("files", "required: the file name or glob pattern (e.g. \"cases-*.csv\") holding "
            "this table, relative to the data folder")
        ok = False
    fmt = section.get("format")
    if fmt is not None and fmt not in ("csv", "parquet"):
        bad("format", "must be \"csv\" or \"parquet\"", fmt)
        ok = False
    separator = section.get("separator", ",")
    if not isinstance(separator, str) or len(separator) != 1:
        bad("separator", "must be a single character", separator)
        ok = False
    null_values = _strings(section.get("null_values", []))
    if null_values is None:
        bad("null_values", "must be a list of strings meaning \"empty\"")
        ok = False
    distinct = section.get("distinct", False)
    if not isinstance(distinct, bool):
        bad("distinct", "must be true or false", distinct)
        ok = False
    zone = section.get("time_zone", default_zone)
    if not _valid_zone(zone):
        bad("time_zone", "unknown time zone (use an IANA name such as Europe/Berlin)", zone)
        ok = False
    formats: dict[str, tuple[str, ...]] = {}
    for key in ("timestamp_format", "date_format"):
        if key in section and _strings(section[key]) is None:
            bad(key, "must be a strftime format or a list of them")
            ok = False

    def column_table(key: str) -> dict:
        value = section.get(key, {})
        if not isinstance(value, dict):
            bad(key, "must be a section of canonical column = ... entries")
            return {}
        for column in value:
            if column not in known:
                bad(f"{key}.{column}", f"{table} has no column {column}; its columns are "
                    f"{', '.join(known)}")
        return {k: v for k, v in value.items() if k in known}

    columns = column_table("columns")
    for column, source in columns.items():
        if not isinstance(source, str) or not source:
            bad(f"columns.{column}", "must be the name of a source column", source)
            ok = False
    defaults_raw = column_table("defaults")
    defaults: dict[str, str] = {}
    for column, value in defaults_raw.items():
        text = _as_text(value)
        if text is None:
            bad(f"defaults.{column}", "must be a string, number or true/false", value)
            ok = False
        elif column in columns:
            bad(f"defaults.{column}", "is also mapped under columns; give one or the other")
            ok = False
        else:
            defaults[column] = text
    values: dict[str, dict[str, str]] = {}
    for column, value_map in column_table("values").items():
        if not isinstance(value_map, dict) or not value_map:
            bad(f"values.{column}", "must be a section of \"source value\" = canonical value")
            ok = False
            continue
        translated = {}
        vocabulary = CONTRACT[table].column(column).values
        for old, new in value_map.items():
            text = _as_text(new)
            if text is None:
                bad(f"values.{column}", "each canonical value must be a string, number or "
                    "true/false", old)
                ok = False
            elif vocabulary is not None and text not in vocabulary:
                bad(f"values.{column}", f"{old!r} maps to {text!r}, which is not one of "
                    f"{', '.join(vocabulary)}", text)
                ok = False
            else:
                translated[old] = text
        values[column] = translated
    for column, value in column_table("formats").items():
        parsed = _strings(value)
        if parsed is None or CONTRACT[table].column(column).type not in ("timestamp", "date"):
            bad(f"formats.{column}", "must be a strftime format (or a list) for a timestamp or "
                "date column")
            ok = False
        else:
            formats[column] = parsed
    if not ok:
        return None
    return TableMapping(
        table=table, files=files, format=fmt, separator=separator,
        null_values=null_values or (), distinct=distinct, time_zone=zone,
        timestamp_format=_strings(section.get("timestamp_format", [])) or (),
        date_format=_strings(section.get("date_format", [])) or (),
        columns=dict(columns), values=values, defaults=defaults, formats=formats)


# --------------------------------------------------------------------------------------------
# Reading a source with a mapping


def read(path: str | Path, *, mapping: str | Path) -> Dataset:
    """Read any CSV or Parquet export, mapped to the canonical tables by a TOML mapping file.

    Parameters
    ----------
    path : str or Path
        The folder the mapping's ``files`` patterns are relative to; a zip file (its members are
        extracted to a private temporary folder); or one file (patterns are then relative to the
        file's folder).
    mapping : str or Path
        The mapping file (see ``docs/mapping.md``).

    Returns
    -------
    Dataset
        The canonical tables, checked against the contract, ``source="mapping"``; ``files``
        lists the source files with their checksums and row counts.

    Raises
    ------
    DataError
        A mistake in the mapping file (unknown key, table or column), a mapped column missing
        from a source file, a source value the value map does not cover, a timestamp or date not
        in the stated format, or any breach of the contract, each with file, line, column and
        value, all at once.

    Examples
    --------
    >>> from analysis.config import PROJECT_ROOT
    >>> dataset = read(PROJECT_ROOT / "tests" / "fixtures" / "mapped_export",
    ...                mapping=PROJECT_ROOT / "docs" / "mapping-example.toml")
    >>> dataset.rows("enforcement")
    20
    """
    spec = read_mapping(mapping)
    base = _base_folder(Path(path))
    problems: list[Problem] = []
    frames: dict[str, pl.LazyFrame] = {}
    files: list[FileInfo] = []
    checks: list[tuple[pl.LazyFrame, Callable[[pl.DataFrame], list[Problem]]]] = []
    for table, table_map in spec.tables.items():
        sources = sorted(p for p in base.glob(table_map.files) if p.is_file())
        if not sources:
            problems.append(Problem(
                spec.file.name, f"[tables.{table}] files = {table_map.files!r} matches no file "
                f"in {path}", check="mapping"))
            continue
        scanned = []
        for file in sources:
            relative = file.relative_to(base).as_posix()
            frame, file_problems = _scan_source(file, relative, table_map, spec.file.name)
            problems += file_problems
            if frame is None:
                continue
            scanned.append(frame)
            files.append(FileInfo(table=table, name=relative, sha256=sha256(file),
                                  rows=frame.select(pl.len()).collect().item()))
        if len(scanned) != len(sources):
            continue
        mapped, table_checks, table_problems = _map_table(
            pl.concat(scanned, how="diagonal_relaxed"), table_map, spec.file.name)
        frames[table] = mapped
        checks += table_checks
        problems += table_problems
    if problems:  # the structure is wrong (files, columns): nothing further can be checked
        raise DataError(problems, source=str(path))
    found = pl.collect_all([query for query, _ in checks]) if checks else []
    for (_, explain), result in zip(checks, found, strict=True):
        problems += explain(result)

    def describe(table: str, column: str) -> str:
        source_column = spec.tables[table].source_column(column) if table in spec.tables else None
        return f"{source_column} (-> {column})" if source_column else column

    files.sort(key=lambda f: (f.table, f.name))
    try:
        dataset = load_frames(frames, path=Path(path), source="mapping", files=files,
                              describe=describe, keep_extra=False)
    except DataError as error:
        # A value the mapping could not translate is empty to the contract's checks; it is
        # reported once, as a mapping problem, not again as "must not be empty".
        reported = {p.column for p in problems}
        problems += [p for p in error.problems if p.column not in reported or p.row is None]
    if problems:
        raise DataError(problems, source=str(path))
    return dataset


def _base_folder(path: Path) -> Path:
    if path.is_dir():
        return path
    if path.is_file() and zipfile.is_zipfile(path):
        folder = _private_folder()
        with zipfile.ZipFile(path) as archive:
            archive.extractall(folder)
        return folder
    if path.is_file():
        return path.parent
    raise DataError([Problem(str(path), "no such file or folder", check="folder")],
                    source=str(path))


def _scan_source(file: Path, relative: str, table_map: TableMapping,
                 mapping_name: str) -> tuple[pl.LazyFrame | None, list[Problem]]:
    """One source file as a LazyFrame of its columns, with its name and row numbers."""
    kind = table_map.format or ("parquet" if file.suffix == ".parquet" else "csv")
    try:
        if kind == "parquet":
            frame = pl.scan_parquet(file)
        else:
            # Text first: a bad value must be reported, not silently turned into a null.
            frame = pl.scan_csv(file, infer_schema=False, separator=table_map.separator,
                                encoding="utf8")
        present = frame.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        return None, [Problem(relative, f"cannot be read: {exc}", check="unreadable")]
    problems = []
    for column, source in table_map.columns.items():
        if source not in present:
            problems.append(Problem(
                relative, f"column {source!r} (mapped to {table_map.table}.{column} in "
                f"{mapping_name}) is missing; the file's columns are {', '.join(present)}",
                column=source, check="mapped column missing"))
    if problems:
        return None, problems
    frame = frame.with_row_index(SOURCE_ROW, offset=1).with_columns(
        pl.col(SOURCE_ROW).cast(pl.Int64), pl.lit(relative).alias(SOURCE_FILE))
    return frame, []


def _map_table(frame: pl.LazyFrame, table_map: TableMapping, mapping_name: str
               ) -> tuple[pl.LazyFrame, list[tuple[pl.LazyFrame, Callable]], list[Problem]]:
    """Canonical columns from the source's; queries that find unmapped values and bad formats."""
    table = CONTRACT[table_map.table]
    present = frame.collect_schema()
    exprs: list[pl.Expr] = []
    checks: list[tuple[pl.LazyFrame, Callable]] = []
    problems: list[Problem] = []
    section = f"[tables.{table.name}]"
    for column in table.columns:
        if (column.required and column.name not in table_map.defaults
                and column.name not in table_map.columns and column.name not in present):
            problems.append(Problem(
                mapping_name, f"{section}: required column {column.name} is not mapped; add "
                f"{column.name} = \"<source column>\" under {section[:-1]}.columns], or a "
                f"constant under {section[:-1]}.defaults]", column=column.name,
                check="mapping"))
        if column.name in table_map.defaults:
            exprs.append(pl.lit(table_map.defaults[column.name]).alias(column.name))
            continue
        source = table_map.columns.get(column.name)
        if source is None and column.name in present:
            source = column.name  # a column already named as in the contract passes through
        if source is None:
            continue
        raw = pl.col(source)
        dtype = present[source]
        typed_time = isinstance(dtype, (pl.Datetime, pl.Date))
        if typed_time and column.type in ("timestamp", "date"):
            exprs.append(_typed_time(raw, dtype, column.type, table_map.time_zone)
                         .alias(column.name))
            continue
        text = raw.cast(pl.String).str.strip_chars()
        empty = text.is_in(["", *table_map.null_values])  # for Parquet text as well as CSV
        text = pl.when(empty).then(None).otherwise(text)
        value_map = table_map.values.get(column.name)
        if value_map is not None:
            mapped = text.replace_strict(value_map, default=None, return_dtype=pl.String)
            unmapped = (frame.filter(text.is_not_null() & ~text.is_in(list(value_map)))
                        .sort(SOURCE_FILE, SOURCE_ROW))
            checks.append((
                unmapped.group_by(text.alias("value")).agg(
                    pl.len().alias("n"), pl.col(SOURCE_FILE).first(),
                    pl.col(SOURCE_ROW).first()).sort("value"),
                _unmapped_explainer(mapping_name, section, column.name, source)))
            text = mapped
        if column.type in ("timestamp", "date"):
            formats = table_map.formats.get(column.name) or (
                table_map.timestamp_format if column.type == "timestamp"
                else table_map.date_format)
            if formats or (column.type == "timestamp" and table_map.time_zone != "UTC"):
                parsed = _parse_time(text, column.type, formats, table_map.time_zone)
                failed = frame.filter(text.is_not_null() & parsed.is_null()).select(
                    SOURCE_FILE, SOURCE_ROW, text.alias("value")).head(MAX_LISTED + 1)
                checks.append((failed, _format_explainer(
                    section, column.name, source, formats, table_map.time_zone,
                    frame.filter(text.is_not_null() & parsed.is_null()))))
                text = parsed
        exprs.append(text.alias(column.name))
    mapped_frame = frame.select(*exprs, SOURCE_FILE, SOURCE_ROW)
    if table_map.distinct:
        names = [e.meta.output_name() for e in exprs]
        mapped_frame = mapped_frame.unique(subset=names, keep="first", maintain_order=True)
    return mapped_frame, checks, problems


#: Formats tried when a time zone is given for timestamps but no format: ISO 8601, with an
#: offset (which then wins) or without one (local time in the table's time zone).
ISO_OFFSET = ("%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M%:z")
ISO_LOCAL = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M")


def _parse_time(text: pl.Expr, kind: str, formats: tuple[str, ...], zone: str) -> pl.Expr:
    """Text in the given strftime formats to UTC timestamps or dates (null where none fits)."""
    if kind == "date":
        return pl.coalesce(*[text.str.strptime(pl.Date, f, strict=False) for f in formats])
    attempts = []
    if not formats:
        text = text.str.replace(r"Z$", "+00:00")
    for fmt in formats or (*ISO_OFFSET, *ISO_LOCAL):
        if "%z" in fmt or "%:z" in fmt or "%#z" in fmt:
            # The text carries its own offset; the time zone setting does not apply.
            attempts.append(text.str.strptime(pl.Datetime("us", "UTC"), fmt, strict=False))
        else:
            # A clock time repeated when clocks go back is read as the first (summer-time) one;
            # a time skipped when they go forward does not exist and is reported.
            local = text.str.strptime(pl.Datetime("us"), fmt, strict=False)
            attempts.append(local.dt.replace_time_zone(zone, ambiguous="earliest",
                                                       non_existent="null")
                            .dt.convert_time_zone("UTC"))
    return pl.coalesce(*attempts)


def _typed_time(source: pl.Expr, dtype: pl.DataType, kind: str, zone: str) -> pl.Expr:
    """A Parquet column that is already a date or timestamp, to the contract's type."""
    if kind == "date":
        return source.dt.date() if isinstance(dtype, pl.Datetime) else source
    if isinstance(dtype, pl.Date):
        source = source.cast(pl.Datetime("us"))
        dtype = pl.Datetime("us")
    if dtype.time_zone is None:  # type: ignore[union-attr]
        source = source.dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
    return source.dt.convert_time_zone("UTC").cast(pl.Datetime("us", "UTC"))


def _unmapped_explainer(mapping_name: str, section: str, column: str,
                        source: str) -> Callable[[pl.DataFrame], list[Problem]]:
    def explain(found: pl.DataFrame) -> list[Problem]:
        return [Problem(file, f"value has no mapping under {section[:-1]}.values.{column}] in "
                        f"{mapping_name} ({n} row{'s' if n != 1 else ''}, first shown); add it",
                        row=row, column=f"{source} (-> {column})", value=value, check="value map")
                for value, n, file, row in found.iter_rows()]
    return explain


def _format_explainer(section: str, column: str, source: str, formats: tuple[str, ...],
                      zone: str, failed: pl.LazyFrame) -> Callable[[pl.DataFrame], list[Problem]]:
    shown = " or ".join(repr(f) for f in formats) if formats else "ISO 8601"
    where = f" in time zone {zone}" if zone != "UTC" else ""

    def explain(found: pl.DataFrame) -> list[Problem]:
        problems = [Problem(file, f"does not match the format {shown}{where} given for "
                            f"{section[:-1]}] (a time skipped by a clock change also lands here)",
                            row=row, column=f"{source} (-> {column})", value=value,
                            check="format")
                    for file, row, value in found.head(MAX_LISTED).iter_rows()]
        if found.height > MAX_LISTED:
            total = failed.select(pl.len()).collect().item()
            problems.append(Problem(found[SOURCE_FILE][0], f"{total - MAX_LISTED} more rows do "
                                    f"not match the format {shown}", column=source,
                                    check="format"))
        return problems
    return explain
