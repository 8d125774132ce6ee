"""Cells: the attributed cases aggregated to the sufficient statistics each test needs.

The heavy work (join, window, group-by) happens in polars; only these small tables reach
statsmodels. A grouped binomial model on cells gives exactly the coefficients and standard errors
of the row-level model (see ``tests/stats/test_regression.py``), provided every covariate of the
model is constant within a cell and, for SEs clustered by account, the account is part of the key.
That is why every table below is keyed by ``account_id``.

Four tables feed the battery (:data:`CELL_TABLES`): ``account`` cells (the stratified, trend and
difference-in-differences tests), ``spend`` cells (the spend dose-response model), ``appeal``
cells and ``event`` cells (the event study). :func:`cell_plans` writes the four aggregations as
lazy queries over the lazy attributed cases; :func:`build_cells` runs them together in one
streaming pass (``pl.collect_all``: the cases are produced once and fed to all four
aggregations), so the cases frame is never held in memory. :func:`write_cells` and
:func:`read_cells` store them as a folder of Parquet files, one per table, which is what
``levelfield cells`` writes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import polars as pl

#: Key of the account cells: everything the stratified and DiD tests condition on.
ACCOUNT_KEY = ["account_id", "advertiser_account", "policy", "severity_band", "listed",
               "ever_listed", "post", "is_advertiser", "spend_tier", "enforced"]
#: Key of the spend cells: trailing spend is constant for one advertiser on one day.
SPEND_KEY = ["account_id", "flag_date", "policy", "severity_band", "listed", "enforced"]
#: Key of the appeal cells: enforced cases that were appealed, by whether the appeal reversed them.
APPEAL_KEY = ["account_id", "policy", "listed", "reversed"]
#: Key of the event-time cells: months relative to the directive date.
EVENT_KEY = ["account_id", "ever_listed", "event_month", "policy", "severity_band", "enforced"]
#: Cases per part of the accounts in ``levelfield cells`` (:func:`sink_cells`): bounds memory.
CASES_PER_PART = 10_000_000
#: The cell tables, in the order :func:`cell_plans` returns them.
CELL_TABLES = ("account", "spend", "appeal", "event")
#: Columns of the cases that the cell tables read (projection pushdown reads only these).
CELL_INPUT_COLUMNS = ["account_id", "advertiser_account", "policy", "severity_band", "listed",
                      "ever_listed", "is_advertiser", "spend_tier", "enforced", "appealed",
                      "reversed", "flag_date", "directive_date", "trailing_spend"]


def with_post(cases: pl.LazyFrame) -> pl.LazyFrame:
    """``post``: the case was flagged on or after the directive date (false without a watchlist)."""
    return cases.with_columns(
        post=(pl.col("flag_date") >= pl.col("directive_date")).fill_null(False))


def _account_plan(cases: pl.LazyFrame) -> pl.LazyFrame:
    return _count(with_post(cases), ACCOUNT_KEY)


def _spend_plan(cases: pl.LazyFrame) -> pl.LazyFrame:
    return (_count(cases.filter(pl.col("is_advertiser")), SPEND_KEY,
                   pl.col("trailing_spend").first())
            .with_columns(log10_spend=pl.col("trailing_spend").log10()))


def _appeal_plan(cases: pl.LazyFrame) -> pl.LazyFrame:
    return _count(cases.filter(pl.col("enforced") & pl.col("appealed")), APPEAL_KEY)


def _event_plan(cases: pl.LazyFrame) -> pl.LazyFrame:
    month = pl.col("flag_date").dt.year() * 12 + pl.col("flag_date").dt.month()
    directive = pl.col("directive_date").dt.year() * 12 + pl.col("directive_date").dt.month()
    return _count(cases.filter(pl.col("directive_date").is_not_null())
                  .with_columns(event_month=(month - directive).cast(pl.Int32)), EVENT_KEY)


# --------------------------------------------------------------------------------------------
# Counting cases per key, fast: the key packed into 64-bit integers
#
# Grouping and sorting on ten columns, some of them text, costs far more than on one integer.
# Every key column whose values can be numbered in sort order (booleans, small integers, dates,
# and Enum text, whose categories are sorted) is turned into a code 1..K (0 for null, which sorts
# first, as polars does) and neighbouring codes are packed, most significant first, into UInt64
# words. Comparing the words compares the key column by column, so sorting the words gives the
# rows in exactly the order of sorting the key itself. Other columns (plain text) stay as they
# are, between the words. The codes are unpacked again after counting.

_WORD_BITS = 64


def _field(name: str, dtype: pl.DataType) -> tuple[int, pl.Expr] | None:
    """(bits, code expression) of a key column that packs, or None if it does not."""
    column = pl.col(name)
    if dtype == pl.Boolean:
        return 2, column.cast(pl.UInt64) + 1
    if isinstance(dtype, pl.Enum):
        return len(dtype.categories).bit_length(), column.to_physical().cast(pl.UInt64) + 1
    if dtype in (pl.Int8, pl.Int16, pl.Int32, pl.Date):
        width = {pl.Int8: 8, pl.Int16: 16, pl.Int32: 32, pl.Date: 32}[dtype]
        offset = (1 << (width - 1)) + 1  # signed values to 1..2^width, order kept
        return width + 1, column.to_physical().cast(pl.Int64).add(offset).cast(pl.UInt64)
    return None


def _decode(code: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Undo :func:`_field` (Enum text comes back as String, as the cells are stored)."""
    value = pl.when(code > 0).then(code.cast(pl.Int64))
    if dtype == pl.Boolean:
        return (value - 1).cast(pl.Boolean)
    if isinstance(dtype, pl.Enum):
        return pl.lit(pl.Series(dtype.categories, dtype=pl.String)).gather(value - 1)
    width = {pl.Int8: 8, pl.Int16: 16, pl.Int32: 32, pl.Date: 32}[dtype]
    value = value - ((1 << (width - 1)) + 1)
    return value.cast(pl.Int32).cast(pl.Date) if dtype == pl.Date else value.cast(dtype)


def _layout(schema: pl.Schema, key: list[str]) -> list[tuple[str, list[tuple[str, int, int]]]]:
    """Key columns grouped into segments: ("_w0", [(column, shift, bits), …]) or (column, [])."""
    segments: list[tuple[str, list[tuple[str, int, int]]]] = []
    current: list[tuple[str, int]] = []

    def close() -> None:
        if current:
            used, fields = 0, []
            total = sum(bits for _, bits in current)
            for name, bits in current:
                used += bits
                fields.append((name, total - used, bits))
            segments.append((f"_w{len(segments)}", fields))
            current.clear()

    for name in key:
        found = _field(name, schema[name])
        if found is None:
            close()
            segments.append((name, []))
            continue
        bits = found[0]
        if sum(b for _, b in current) + bits > _WORD_BITS:
            close()
        current.append((name, bits))
    close()
    return segments


def _count(cases: pl.LazyFrame, key: list[str], *extra: pl.Expr) -> pl.LazyFrame:
    """Cases counted per ``key`` (column ``n``) plus ``extra`` aggregations, sorted by ``key``.

    The key columns come back as they went in, except Enum text, which comes back as String.
    """
    schema = cases.collect_schema()
    segments = _layout(schema, key)
    words = []
    for name, fields in segments:
        if not fields:
            continue
        word = pl.lit(0, pl.UInt64)
        for column, shift, _ in fields:
            code = _field(column, schema[column])[1].fill_null(0)
            word = word + code * pl.lit(1 << shift, pl.UInt64)
        words.append(word.alias(name))
    names = [name for name, _ in segments]
    counted = (cases.with_columns(words).group_by(names)
               .agg(pl.len().alias("n"), *extra).sort(names))
    unpacked = []
    for name, fields in segments:
        for column, shift, bits in fields:
            code = (pl.col(name) // pl.lit(1 << shift, pl.UInt64)) % pl.lit(1 << bits, pl.UInt64)
            unpacked.append(_decode(code, schema[column]).alias(column))
    plain = [pl.col(name).cast(pl.String) if isinstance(schema[name], pl.Enum) else pl.col(name)
             for name, fields in segments if not fields]
    rest = [c for c in counted.collect_schema().names() if c not in names]
    return counted.select(*unpacked, *plain, *rest).select(*key, *rest)


def cell_plans(cases: pl.DataFrame | pl.LazyFrame) -> dict[str, pl.LazyFrame]:
    """The four cell tables as lazy queries over the attributed cases, by :data:`CELL_TABLES`.

    Parameters
    ----------
    cases : polars DataFrame or LazyFrame
        The attributed cases (:func:`analysis.attribute.attribute`); only
        :data:`CELL_INPUT_COLUMNS` are read.

    Returns
    -------
    dict of str to polars.LazyFrame
        ``account``, ``spend``, ``appeal`` and ``event``: each sorted by its key, with ``n``
        the number of cases in the cell (see :func:`account_cells` etc. for the columns).

    Examples
    --------
    >>> import polars as pl
    >>> plans = cell_plans(pl.LazyFrame(schema={c: pl.Null for c in CELL_INPUT_COLUMNS}))
    >>> list(plans)
    ['account', 'spend', 'appeal', 'event']
    """
    lazy = cases.lazy().select(CELL_INPUT_COLUMNS)
    return {"account": _account_plan(lazy), "spend": _spend_plan(lazy),
            "appeal": _appeal_plan(lazy), "event": _event_plan(lazy)}


@dataclass(frozen=True)
class CellTables:
    """The four cell tables of one dataset (see :func:`cell_plans`)."""

    account: pl.DataFrame
    spend: pl.DataFrame
    appeal: pl.DataFrame
    event: pl.DataFrame

    def tables(self) -> dict[str, pl.DataFrame]:
        return {name: getattr(self, name) for name in CELL_TABLES}


def build_cells(cases: pl.DataFrame | pl.LazyFrame, *, engine: str = "streaming") -> CellTables:
    """Aggregate the attributed cases to all four cell tables in one pass.

    The four aggregations are run together (``pl.collect_all``), so the query producing the
    cases (reading, joins, attribution) runs once and feeds all of them; with the default
    streaming engine it runs in batches and only the cells are ever held whole.

    Parameters
    ----------
    cases : polars DataFrame or LazyFrame
        The attributed cases, ideally the lazy query of :func:`analysis.attribute.attribute`
        with ``sort_by_case=False``.
    engine : str, default "streaming"
        The polars engine: ``"streaming"`` (bounded memory) or ``"in-memory"``. Both give the
        same tables, row for row.

    Returns
    -------
    CellTables
        The account, spend, appeal and event cells, each sorted by its key.

    Examples
    --------
    >>> from analysis.attribute import attribute
    >>> from analysis.config import SAMPLE_DATA_DIR
    >>> from analysis.load import load
    >>> cases, ledger = attribute(load(SAMPLE_DATA_DIR), sort_by_case=False)
    >>> cells = build_cells(cases)
    >>> int(cells.account["n"].sum()) == ledger.analysed
    True
    """
    frames = pl.collect_all(list(cell_plans(cases).values()), engine=engine)
    return CellTables(*frames)


def write_cells(cells: CellTables, folder: str | Path) -> list[Path]:
    """Write each cell table to ``folder/<table>_cells.parquet``; returns the files written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in cells.tables().items():
        path = out / f"{name}_cells.parquet"
        table.write_parquet(path, compression="zstd", statistics=True)
        written.append(path)
    return written


def sink_cells(cases: pl.LazyFrame, folder: str | Path, *, parts: int = 1,
               engine: str = "streaming") -> list[Path]:
    """Build the cell tables and write them to ``folder/<table>_cells.parquet``, in parts.

    Every cell table is keyed by account first, so the cases of one range of accounts give a
    contiguous, already sorted slice of every table. With ``parts`` > 1 the accounts are split
    into that many ranges and each range is aggregated and appended to the files in turn: only
    one part's cells are ever in memory. Each part reads the enforcement table again, but only
    its own accounts' cases go further than the scan. The files hold the same rows as
    :func:`write_cells` of :func:`build_cells`.

    Parameters
    ----------
    cases : polars.LazyFrame
        The lazy attributed cases with ``account_id`` as an Enum
        (:func:`analysis.attribute.attribute` with ``categorical=True``); with a plain text
        ``account_id`` the tables are built in one part.
    folder : str or Path
        Where to write (created if missing).
    parts : int, default 1
        How many ranges of accounts (``levelfield cells`` takes one per
        :data:`CASES_PER_PART` cases).
    engine : str, default "streaming"
        The polars engine.

    Returns
    -------
    list of Path
        The files written, in the order of :data:`CELL_TABLES`.
    """
    import pyarrow.parquet as pq

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    account = cases.collect_schema()["account_id"]
    if not isinstance(account, pl.Enum):
        return write_cells(build_cells(cases, engine=engine), out)
    accounts = len(account.categories)
    bounds = [accounts * i // parts for i in range(parts + 1)]
    paths = [out / f"{name}_cells.parquet" for name in CELL_TABLES]
    writers: list[pq.ParquetWriter | None] = [None] * len(CELL_TABLES)
    try:
        for low, high in itertools.pairwise(bounds):
            code = pl.col("account_id").to_physical()
            part = cases.filter((code >= low) & (code < high))
            frames = pl.collect_all(list(cell_plans(part).values()), engine=engine)
            for i, frame in enumerate(frames):
                table = frame.to_arrow()
                if writers[i] is None:
                    writers[i] = pq.ParquetWriter(paths[i], table.schema, compression="zstd")
                writers[i].write_table(table)
            del frames
    finally:
        for writer in writers:
            if writer is not None:
                writer.close()
    return paths


def read_cells(folder: str | Path) -> CellTables:
    """Read the cell tables written by :func:`write_cells` (or ``levelfield cells``)."""
    root = Path(folder)
    return CellTables(*(pl.read_parquet(root / f"{name}_cells.parquet") for name in CELL_TABLES))


def account_cells(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Cases counted per account × policy × severity band × listing × spend tier × outcome.

    Returns a frame with the columns of :data:`ACCOUNT_KEY` and ``n`` (number of cases), sorted.
    """
    return _account_plan(cases.lazy()).collect()


def spend_cells(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Advertiser cases counted per account × flag date × policy × severity band × listing × outcome.

    Carries ``trailing_spend`` (constant within a cell) and ``log10_spend``. Only cases with
    trailing spend above zero: the log of zero spend is undefined, and the question is about
    how much advertisers spend, not whether they advertise (that is ``advertiser_adjusted``).
    """
    return _spend_plan(cases.lazy()).collect()


def appeal_cells(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Enforced, appealed cases counted per account × policy × listing × reversal."""
    return _appeal_plan(cases.lazy()).collect()


def event_cells(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Cases counted per account × calendar month relative to the directive (month 0 holds it)."""
    return _event_plan(cases.lazy()).collect()
