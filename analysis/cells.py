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
:func:`read_cells` store them as a folder of Parquet files, one per table.

``levelfield cells`` runs :func:`sink_cells`, which gives the same files faster and in less
memory: it keeps a few bytes of integer codes per case, counts each table by sorting packed
64-bit keys in numpy, and writes the text columns as Parquet dictionary indices.
"""

from __future__ import annotations

import itertools
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
#: Cases counted at a time by :func:`sink_cells` (a range of accounts): bounds the memory of
#: the sorts.
_CASES_PER_RANGE = 1_000_000
#: The cell tables, in the order :func:`cell_plans` returns them.
CELL_TABLES = ("account", "spend", "appeal", "event")
#: Columns of the cases that the cell tables read (projection pushdown reads only these).
CELL_INPUT_COLUMNS = ["account_id", "advertiser_account", "policy", "severity_band", "listed",
                      "ever_listed", "is_advertiser", "spend_tier", "enforced", "appealed",
                      "reversed", "flag_date", "directive_date", "trailing_spend"]


#: ``post``: the case was flagged on or after the directive date (false without a watchlist).
_POST = (pl.col("flag_date") >= pl.col("directive_date")).fill_null(False)
#: ``event_month``: calendar months from the directive's month to the flag date's.
_EVENT_MONTH = ((pl.col("flag_date").dt.year() * 12 + pl.col("flag_date").dt.month())
                - (pl.col("directive_date").dt.year() * 12 + pl.col("directive_date").dt.month())
                ).cast(pl.Int32)
#: The cases each table counts (None: all of them).
_TABLE_CASES = {"account": None, "spend": pl.col("is_advertiser"),
                "appeal": pl.col("enforced") & pl.col("appealed"),
                "event": pl.col("directive_date").is_not_null()}
#: The key of each table.
_TABLE_KEYS = {"account": ACCOUNT_KEY, "spend": SPEND_KEY, "appeal": APPEAL_KEY,
               "event": EVENT_KEY}


def table_cases(cases: pl.LazyFrame, table: str) -> pl.LazyFrame:
    """The cases that cell table ``table`` counts, with the key columns it derives (``post``
    for the account table, ``event_month`` for the event table)."""
    rows = _TABLE_CASES[table]
    derived = {"account": {"post": _POST}, "event": {"event_month": _EVENT_MONTH}}
    return (cases if rows is None else cases.filter(rows)).with_columns(**derived.get(table, {}))


def _account_plan(cases: pl.LazyFrame) -> pl.LazyFrame:
    return _count(table_cases(cases, "account"), ACCOUNT_KEY)


def _spend_plan(cases: pl.LazyFrame) -> pl.LazyFrame:
    return (_count(table_cases(cases, "spend"), SPEND_KEY, pl.col("trailing_spend").first())
            .with_columns(log10_spend=pl.col("trailing_spend").log10()))


def _appeal_plan(cases: pl.LazyFrame) -> pl.LazyFrame:
    return _count(table_cases(cases, "appeal"), APPEAL_KEY)


def _event_plan(cases: pl.LazyFrame) -> pl.LazyFrame:
    return _count(table_cases(cases, "event"), EVENT_KEY)


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
    >>> from analysis.attribute import attribute
    >>> from analysis.config import SAMPLE_DATA_DIR
    >>> from analysis.load import load
    >>> plans = cell_plans(attribute(load(SAMPLE_DATA_DIR), sort_by_case=False)[0])
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
               engine: str = "streaming", rows: int | None = None,
               accounts: pl.Series | None = None) -> list[Path]:
    """Build the cell tables and write them to ``folder/<table>_cells.parquet``.

    This is what ``levelfield cells`` runs, so it is built for speed and memory rather than
    brevity. One streaming pass over the lazy cases keeps, per case, only small integer codes of
    the key columns (:func:`_case_codes`: about 20 bytes a case). Each table is then counted
    by sorting: the key of every case is packed into one 64-bit word (:func:`_count_words`),
    and ``numpy.sort`` and run lengths give the cells, already in key order, several times
    faster than a hash group-by followed by a sort. The cells are written in row groups,
    their text columns as Parquet dictionary indices (:func:`_write_cells_in_row_groups`), so
    the text of the cells is never built in memory.

    Every cell table is keyed by account first, so the cases of one range of accounts give a
    contiguous, already sorted slice of every table. With ``parts`` > 1 the accounts are split
    into that many ranges, whose codes are copied out one after the other; within a part, the
    codes of smaller ranges of accounts (about :data:`_CASES_PER_RANGE` cases each) are copied
    out, counted and written in turn: only one small range's codes, keys and cells are in
    memory at once, besides the codes of all cases.

    The files hold the same rows as :func:`write_cells` of :func:`build_cells`. Cases whose key
    columns are not all Enum, Boolean, small integer or Date columns (or whose keys do not fit
    in 64 bits) are counted by :func:`build_cells` instead.

    Parameters
    ----------
    cases : polars.LazyFrame
        The lazy attributed cases with ``account_id``, ``policy`` and ``severity_band`` as
        sorted Enums (:func:`analysis.attribute.attribute` with ``categorical=True``).
    folder : str or Path
        Where to write (created if missing).
    parts : int, default 1
        How many ranges of accounts (``levelfield cells`` takes one per
        :data:`CASES_PER_PART` cases).
    engine : str, default "streaming"
        The polars engine of the pass over the cases.
    rows : int, optional
        How many cases there are, if known (``levelfield cells`` knows it from the coverage
        ledger); otherwise they are counted first, which costs a second pass.
    accounts : polars.Series, optional
        The sorted account ids, when the cases' ``account_id`` is the position of the account
        among them (:func:`analysis.attribute.attribute_with_account_codes`) rather than an
        Enum.

    Returns
    -------
    list of Path
        The files written, in the order of :data:`CELL_TABLES`.
    """
    import pyarrow.parquet as pq

    from analysis.load import few_row_groups_ahead

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    plan = _code_plan(cases, accounts)
    if plan is None:
        return write_cells(build_cells(_with_account_ids(cases, accounts), engine=engine), out)
    with few_row_groups_ahead():
        codes = _case_codes(plan, engine=engine, rows=rows)
    layouts = {name: _word_layout(codes, key) for name, key in _TABLE_KEYS.items()}
    if any(layout is None for layout in layouts.values()):
        return write_cells(build_cells(_with_account_ids(cases, accounts), engine=engine), out)
    account_codes = len(codes.fields["account_id"][1]) + 1  # 0 (null) .. categories
    # The Enum columns' text as Arrow arrays, once: the dictionaries of the written row groups.
    categories = {column: field[1].to_arrow() for column, field in codes.fields.items()
                  if field[0] == "enum"}
    bounds = [account_codes * i // parts for i in range(parts + 1)]
    paths = [out / f"{name}_cells.parquet" for name in CELL_TABLES]
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        # Two threads write while the main thread counts (all mostly outside the GIL): one
        # writes the account and event tables, the other the spend and appeal tables, so that,
        # as a range's tables are counted in that order, consecutive tables go to different
        # threads. Each table stays with one thread, so its row groups stay in order. A table's
        # next range waits for its previous write: at most one range per table is held for
        # writing, which bounds the memory. (One writer thread was 4-7% slower at 10M cases,
        # with the same peak memory.)
        with ExitStack() as threads:
            pair = [threads.enter_context(ThreadPoolExecutor(max_workers=1)) for _ in range(2)]
            writing = dict(zip(CELL_TABLES, [pair[0], pair[1], pair[1], pair[0]], strict=True))
            written: dict[str, Future] = {}
            for low, high in itertools.pairwise(bounds):
                part = codes.accounts(low, high) if parts > 1 else codes
                ranges = max(1, -(-len(part.flags) // _CASES_PER_RANGE))
                edges = [low + (high - low) * i // ranges for i in range(ranges + 1)]
                in_spend = part.flag("_in_spend") == 2 if ranges > 1 else None
                for start, stop in itertools.pairwise(edges):
                    cut = part.accounts(start, stop, in_spend) if ranges > 1 else part
                    for name, path in zip(CELL_TABLES, paths, strict=True):
                        counted = _count_words(cut, name, layouts[name])
                        if name in written:
                            written[name].result()
                        written[name] = writing[name].submit(
                            _write_cells_in_row_groups, writers, name, path, codes, categories,
                            layouts[name], *counted)
                        del counted
                    del cut
                del part, in_spend
            for future in written.values():
                future.result()
    finally:
        for writer in writers.values():
            writer.close()
    return paths


# --------------------------------------------------------------------------------------------
# Counting by sorting: per case, integer codes of the key columns; per table, one 64-bit word
#
# Every key column is numbered in its sort order, 0 for null (which sorts first, as in polars):
# Booleans as 1 false / 2 true, Enum text by category (the categories are sorted), integers and
# dates by their offset from the smallest value present. The codes of a table's key, most
# significant first, packed into one unsigned 64-bit word, sort like the key itself; equal words
# are one cell.

#: Key column types coded by their offset from the smallest value present.
_INTEGER_TYPES = (pl.Int8, pl.Int16, pl.Int32, pl.Date)


@dataclass
class _Codes:
    """Per-case codes (numpy arrays, one element per case) and what each field is.

    ``fields`` maps a key column to (kind, categories or dtype, bits, offset): kind ``flag``
    (its code is 2 bits of ``flags`` at ``offset``), ``enum`` (``arrays[column]`` holds the
    code; categories the text) or ``integer`` (``arrays[column]`` holds the code; the value is
    code + offset - 1). ``spend`` is the trailing spend of the spend table's cases, in order.
    """

    fields: dict[str, tuple]
    arrays: dict[str, np.ndarray]
    flags: np.ndarray
    spend: np.ndarray

    def accounts(self, low: int, high: int, in_spend: np.ndarray | None = None) -> _Codes:
        """The cases whose account code is in ``[low, high)`` (a copy); ``in_spend``, if given,
        is ``self.flag("_in_spend") == 2``, for callers that take many ranges."""
        code = self.arrays["account_id"]
        keep = (code >= low) & (code < high)
        if in_spend is None:
            in_spend = self.flag("_in_spend") == 2
        # Positions, found once: a mask would be searched again for every array.
        rows, spend_rows = np.flatnonzero(keep), np.flatnonzero(keep[in_spend])
        del keep
        return _Codes(self.fields, {c: a[rows] for c, a in self.arrays.items()},
                      self.flags[rows], self.spend[spend_rows])

    def flag(self, column: str) -> np.ndarray:
        """The 2-bit code of a flag column (0 null, 1 false, 2 true)."""
        return _flag(self.flags, self.fields[column][3])

    def code(self, column: str, rows: np.ndarray | None) -> np.ndarray:
        """The codes of a key column, of the cases ``rows`` (None: all)."""
        codes = self.flag(column) if self.fields[column][0] == "flag" else self.arrays[column]
        return codes if rows is None else codes[rows]


def _with_account_ids(cases: pl.LazyFrame, accounts: pl.Series | None) -> pl.LazyFrame:
    """The cases with ``account_id`` as a sorted Enum, if it is the position in ``accounts``."""
    if accounts is None:
        return cases
    ids = pl.Series(accounts, dtype=pl.Enum(accounts))
    return cases.with_columns(account_id=pl.lit(ids).gather(pl.col("account_id")))


def _code_plan(cases: pl.LazyFrame, accounts: pl.Series | None = None
               ) -> tuple[pl.LazyFrame, dict[str, tuple]] | None:
    """The lazy per-case codes and the fields, or None if a key column cannot be coded;
    ``account_id`` is coded like an Enum of ``accounts`` if they are given (it is then the
    position of the account in them)."""
    lazy = cases.with_columns(post=_POST, event_month=_EVENT_MONTH)
    schema = lazy.collect_schema()
    if accounts is not None and not schema["account_id"].is_integer():
        raise TypeError(f"account_id must be positions in the accounts, not {schema['account_id']}")
    columns = sorted({c for key in _TABLE_KEYS.values() for c in key})
    fields: dict[str, tuple] = {}
    selected: dict[str, pl.Expr] = {}
    flags: list[tuple[str, pl.Expr]] = [(f"_in_{name}", rows.fill_null(False))
                                        for name, rows in _TABLE_CASES.items() if rows is not None]
    for column in columns:
        dtype = schema[column]
        value = pl.col(column)
        if dtype == pl.Boolean:
            flags.append((column, value))
        elif isinstance(dtype, pl.Enum) or (column == "account_id" and accounts is not None):
            categories = dtype.categories if isinstance(dtype, pl.Enum) else accounts
            bits = len(categories).bit_length()
            small = pl.UInt8 if bits <= 8 else pl.UInt16 if bits <= 16 else pl.UInt32
            fields[column] = ("enum", categories, bits, 0)
            selected[column] = (value.to_physical().cast(pl.UInt32) + 1).fill_null(0).cast(small)
        elif dtype in _INTEGER_TYPES:
            fields[column] = ("integer", dtype, 0, 0)  # bits and offset from the data
            selected[column] = value.to_physical().fill_null(0)
            flags.append((f"_given_{column}", value.is_not_null()))
        else:
            return None
    if 2 * len(flags) > 64:
        return None
    word = pl.lit(0, pl.UInt64)
    for i, (name, flag) in enumerate(flags):
        word = word + (flag.cast(pl.UInt64) + 1).fill_null(0) * pl.lit(1 << (2 * i), pl.UInt64)
        fields[name] = ("flag", None, 2, 2 * i)
    selected["_flags"] = word.cast(pl.UInt32 if 2 * len(flags) <= 32 else pl.UInt64)
    selected["_spend"] = pl.col("trailing_spend")
    return lazy.select(**selected), fields


def _case_codes(plan: tuple[pl.LazyFrame, dict[str, tuple]], *, engine: str,
                rows: int | None = None) -> _Codes:
    """Run the pass over the cases and keep their codes; integer columns become codes from 1.

    The codes go straight into arrays of one element per case, allocated before the pass
    (``rows`` cases; counted first if not given), each batch copied in as it arrives and then
    freed. Nothing the size of all cases exists twice: neither a frame of all cases nor the
    batches of the whole pass waiting to be concatenated.
    """
    lazy, fields = plan
    in_spend = fields["_in_spend"][3]
    schema = lazy.collect_schema()
    if rows is None:
        rows = lazy.select(pl.len()).collect(engine=engine).item()
    arrays = {name: np.empty(rows, dtype=pl.Series(dtype=schema[name]).to_numpy().dtype)
              for name in schema.names() if name != "_spend"}
    # The spend table's cases only, at the front; the pages of the rest are never touched, so
    # they take no memory.
    spend = np.empty(rows, dtype=np.float64)
    filled = spent = 0
    for batch in lazy.collect_batches(engine=engine):
        stop = filled + batch.height
        if stop > rows:
            raise ValueError(f"the pass gave more than the {rows:,} cases expected")
        for name, values in arrays.items():
            values[filled:stop] = batch[name].to_numpy()
        in_spend_table = _flag(arrays["_flags"][filled:stop], in_spend) == 2
        batch_spend = batch["_spend"].to_numpy()[in_spend_table]
        spend[spent:spent + len(batch_spend)] = batch_spend
        filled, spent = stop, spent + len(batch_spend)
        del batch, batch_spend
    if filled != rows:
        raise ValueError(f"the pass gave {filled:,} cases, {rows:,} expected")
    codes = _Codes(fields, {}, arrays.pop("_flags"), spend[:spent])
    for column, values in arrays.items():
        kind, dtype, _, _ = fields[column]
        if kind == "integer":
            given = codes.flag(f"_given_{column}") == 2
            low = int(values[given].min()) if given.any() else 0
            high = int(values[given].max()) if given.any() else 0
            bits = (high - low + 1).bit_length()
            wide = np.int32 if bits < 31 else np.int64
            values = values.astype(wide, copy=False)
            np.subtract(values, wide(low - 1), out=values)  # 1 .. high - low + 1
            values[~given] = 0
            values = values.astype(_unsigned(bits))
            fields[column] = ("integer", dtype, bits, low)
        codes.arrays[column] = values
    return codes


def _flag(flags: np.ndarray, offset: int) -> np.ndarray:
    """The 2-bit code at ``offset`` of the packed flags (0 null, 1 false, 2 true)."""
    kind = flags.dtype.type
    return ((flags >> kind(offset)) & kind(3)).astype(np.uint8)


def _unsigned(bits: int) -> type:
    """The smallest numpy unsigned integer type of ``bits`` bits."""
    return np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.uint32


def _word_layout(codes: _Codes, key: list[str]) -> list[tuple[str, int, int]] | None:
    """(column, shift, bits) of each key column in the packed word; None beyond 64 bits."""
    total = sum(codes.fields[c][2] for c in key)
    if total > 64:
        return None
    layout, shift = [], total
    for column in key:
        bits = codes.fields[column][2]
        shift -= bits
        layout.append((column, shift, bits))
    return layout


def _count_words(codes: _Codes, table: str, layout: list[tuple[str, int, int]]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The distinct packed keys of one table's cases, sorted, with their counts (and, for the
    spend table, each cell's trailing spend: the same for all its cases)."""
    rows = None if table == "account" else np.flatnonzero(codes.flag(f"_in_{table}") == 2)
    words = np.zeros(len(codes.flags) if rows is None else len(rows), dtype=np.uint64)
    for column, _, bits in layout:  # most significant first: shift in each code below the rest
        np.left_shift(words, np.uint64(bits), out=words)
        np.bitwise_or(words, codes.code(column, rows), out=words)
    spend = None
    if table == "spend":
        order = np.argsort(words, kind="stable")
        words = words[order]
        spend = codes.spend[order]
        del order
    else:
        words.sort()
    boundary = np.empty(len(words), dtype=bool)
    boundary[:1] = True
    np.not_equal(words[1:], words[:-1], out=boundary[1:])
    starts = np.flatnonzero(boundary)
    del boundary
    cells, size = words[starts], len(words)
    del words  # before the counts, to keep the peak low
    n = np.empty(len(starts), dtype=np.uint32)
    np.subtract(starts[1:], starts[:-1], out=n[:-1], casting="unsafe")
    n[-1:] = size - starts[-1:]
    return cells, n, (None if spend is None else spend[starts])


def _arrow_integer(dtype: pl.DataType):
    """The Arrow type of a polars integer or Date column."""
    import pyarrow as pa

    return {pl.Int8: pa.int8(), pl.Int16: pa.int16(), pl.Int32: pa.int32(),
            pl.Date: pa.date32()}[dtype]


#: Rows per row group of the written cell files.
_ROW_GROUP = 1 << 18


def _write_cells_in_row_groups(writers: dict, table: str, path: Path, codes: _Codes,
                               categories: dict, layout: list[tuple[str, int, int]],
                               words: np.ndarray, n: np.ndarray, spend: np.ndarray | None
                               ) -> None:
    """Decode the counted words and append them to ``path`` (``writers`` keeps the open files).

    Enum columns are written as dictionary indices into their ``categories`` (their text as
    Arrow arrays, built once by :func:`sink_cells`; sliced to the accounts of one row group, a
    contiguous range since the cells are sorted by account), which Parquet stores as its
    dictionary encoding. The file carries no Arrow schema, so every reader gets plain text
    back, exactly as from :func:`write_cells`.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    for start in range(0, max(len(words), 1), _ROW_GROUP):
        chunk = words[start:start + _ROW_GROUP]
        columns = {}
        for column, shift, bits in layout:
            code = ((chunk >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.int64)
            null = code == 0
            if not null.any():
                null = None  # no validity bitmap: the writer skips the null bookkeeping
            kind, extra, _, offset = codes.fields[column]
            if kind == "flag":
                columns[column] = pa.array(code == 2, mask=null)
            elif kind == "enum":
                given = code if null is None else code[~null]
                first = int(given.min()) if len(given) else 1
                last = int(code.max()) if len(code) else 0
                dictionary = categories[column].slice(first - 1, max(last - first + 1, 0))
                index = pa.array((code - first).astype(np.int32), mask=null)
                columns[column] = pa.DictionaryArray.from_arrays(index, dictionary)
            else:
                value = pa.array((code + (offset - 1)).astype(np.int32), mask=null)
                columns[column] = value.cast(_arrow_integer(extra))
        columns["n"] = pa.array(n[start:start + _ROW_GROUP])
        if spend is not None:
            spent = pl.Series("trailing_spend", spend[start:start + _ROW_GROUP])
            columns["trailing_spend"] = spent.to_arrow()
            columns["log10_spend"] = spent.log10().to_arrow()
        frame = pa.table(columns)
        if table not in writers:
            writers[table] = pq.ParquetWriter(
                path, frame.schema, compression="zstd", store_schema=False,
                use_dictionary=list(categories), dictionary_pagesize_limit=1 << 26,
                write_statistics=False)
        writers[table].write_table(frame)


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
