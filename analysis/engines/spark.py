"""The Spark engine: attribution and cells in a Spark cluster (or local Spark), for data that
outgrow one machine.

Spark does the work that grows with the number of cases: reading and parsing the enforcement
table, joining it with the accounts, the listing comparison at flag time, and the four
aggregations to cells. Only small tables cross to the driver: the number of cases per advertiser
and flag date (a few thousand advertisers times the days of the data), from which the trailing
spend, the spend tiers and the coverage ledger are computed with exactly the functions the
polars engine uses (:func:`analysis.attribute.spend_by_day`), and which goes back to Spark as a
broadcast join; the watchlist; and at the end the cells. The cells are sorted and typed as
:mod:`analysis.cells` makes them, so both engines give the same tables, row for row, and the
same statistics.

Where Spark runs is the session's business (:func:`spark_session`): ``local[*]`` by default,
a cluster with ``master="spark://HOST:7077"`` (or ``yarn``, ``k8s://…``), or Spark Connect when
the ``SPARK_REMOTE`` environment variable is set (``sc://HOST:15002``; needs
``pyspark[connect]``). See docs/spark.md.

The Spark engine does not check the data contract: run ``levelfield validate`` (or
``levelfield cells --check``, the default) on data that fit one machine, or trust the export.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from analysis.attribute import (
    CoverageLedger,
    SpendCoverage,
    listing_by_account,
    spend_by_day,
    spend_in_usd,
)
from analysis.cells import (
    ACCOUNT_KEY,
    APPEAL_KEY,
    CELL_TABLES,
    EVENT_KEY,
    SPEND_KEY,
    CellTables,
)
from analysis.config import ALPHA, SEVERITY_BANDS, WINDOW_DAYS
from analysis.load import Dataset
from analysis.schema import CONTRACT, DataError, Problem, Table, find_table_file

if TYPE_CHECKING:
    from analysis.battery import Cells
    from analysis.stats.result import TestResult

__all__ = ["spark_analyze", "spark_cells", "spark_session", "spark_tables"]

_SPARK_TYPES = {"str": T.StringType(), "int": T.LongType(), "float": T.DoubleType(),
                "bool": T.BooleanType(), "date": T.DateType(), "timestamp": T.TimestampType()}
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
#: The dtypes of the cell tables' columns, as :mod:`analysis.cells` makes them.
_CELL_DTYPES = {"account_id": pl.String, "advertiser_account": pl.Boolean, "policy": pl.String,
                "severity_band": pl.String, "listed": pl.Boolean, "ever_listed": pl.Boolean,
                "post": pl.Boolean, "is_advertiser": pl.Boolean, "spend_tier": pl.Int8,
                "enforced": pl.Boolean, "flag_date": pl.Date, "reversed": pl.Boolean,
                "event_month": pl.Int32, "n": pl.UInt32, "trailing_spend": pl.Float64}


def spark_session(master: str | None = None, *, shuffle_partitions: int | None = None
                  ) -> SparkSession:
    """A Spark session set up for levelfield: UTC, lenient parsing, Arrow transfers.

    Parameters
    ----------
    master : str, optional
        Where to run: ``local[*]`` (the default), ``local[2]``, ``spark://HOST:7077``,
        ``yarn``, ``k8s://…``. Ignored when ``SPARK_REMOTE`` is set: then the session is a
        Spark Connect client of that server.
    shuffle_partitions : int, optional
        ``spark.sql.shuffle.partitions``; by default 4 per local core, Spark's default (200)
        on a cluster.

    Returns
    -------
    pyspark.sql.SparkSession
        An existing session is reused (and reconfigured).
    """
    builder = SparkSession.builder.appName("levelfield")
    if os.environ.get("SPARK_REMOTE") and master is None:
        builder = builder.remote(os.environ["SPARK_REMOTE"])
    else:
        master = master or "local[*]"
        builder = builder.master(master).config("spark.ui.enabled", "false")
        if master.startswith("local") and shuffle_partitions is None:
            shuffle_partitions = 4 * (os.cpu_count() or 1)
    session = builder.getOrCreate()
    # Timestamps without an offset are UTC (the contract); a value that does not parse becomes
    # null instead of failing the job (the contract check is where bad values are reported).
    settings = {"spark.sql.session.timeZone": "UTC", "spark.sql.ansi.enabled": "false",
                "spark.sql.execution.arrow.pyspark.enabled": "true"}
    if shuffle_partitions:
        settings["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
    for key, value in settings.items():
        session.conf.set(key, value)
    return session


# --------------------------------------------------------------------------------------------
# Reading the canonical tables


def spark_tables(spark: SparkSession, data: str | Path) -> dict[str, DataFrame]:
    """The canonical tables of a data folder as typed Spark DataFrames (columns of the contract).

    ``<table>.parquet`` is read as it is, ``<table>.csv`` and ``.csv.gz`` as text and parsed
    with the contract's rules (ISO 8601 timestamps, UTC without offset; empty text is missing).
    The folder must be visible to the executors (a shared file system); for data elsewhere,
    read the tables yourself and pass them to :func:`spark_cells` as a mapping.
    """
    folder = Path(data)
    if not folder.is_dir():
        raise DataError([Problem(str(folder), "no such folder", check="folder")],
                        source=str(folder))
    tables: dict[str, DataFrame] = {}
    for name, table in CONTRACT.items():
        file = find_table_file(folder, name)
        if file is None:
            if table.required:
                raise DataError([Problem(str(folder), f"required table {name} is missing",
                                         check="missing table")], source=str(folder))
            continue
        path = str(file.resolve())
        frame = (spark.read.parquet(path) if file.suffix == ".parquet"
                 else spark.read.csv(path, header=True, inferSchema=False))
        tables[name] = _typed(frame, table)
    return tables


def _typed(frame: DataFrame, table: Table) -> DataFrame:
    present = dict(frame.dtypes)
    columns = []
    for column in table.columns:
        target = _SPARK_TYPES[column.type]
        if column.name not in present:
            columns.append(F.lit(None).cast(target).alias(column.name))
            continue
        source = F.col(f"`{column.name}`")
        if present[column.name] == "string":
            text = F.trim(source)
            text = F.when(text == "", None).otherwise(text)
            columns.append(_from_text(text, column.type).alias(column.name))
        elif column.type == "bool" and present[column.name] != "boolean":
            columns.append(F.when(source == 1, True).when(source == 0, False)
                           .alias(column.name))
        else:
            columns.append(source.cast(target).alias(column.name))
    return frame.select(columns)


def _from_text(text: Any, kind: str) -> Any:
    if kind == "str":
        return text
    if kind == "bool":
        lower = F.lower(text)
        return F.when(lower.isin(*_TRUE), True).when(lower.isin(*_FALSE), False)
    if kind == "date":
        return F.to_date(text, "yyyy-MM-dd")
    return text.cast(_SPARK_TYPES[kind])


# --------------------------------------------------------------------------------------------
# Attribution and cells


def _to_polars(frame: DataFrame) -> pl.DataFrame:
    return pl.from_arrow(frame.toArrow())


def _to_spark(spark: SparkSession, frame: pl.DataFrame) -> DataFrame:
    return spark.createDataFrame(frame.to_arrow())


def spark_cases(spark: SparkSession, tables: Mapping[str, DataFrame], *,
                window_days: int = WINDOW_DAYS) -> tuple[DataFrame, CoverageLedger]:
    """The attributed cases as a Spark DataFrame (the columns the cells and the Cox model read).

    Parameters
    ----------
    spark : SparkSession
        The session (:func:`spark_session`).
    tables : mapping of str to DataFrame
        The canonical tables (:func:`spark_tables`).
    window_days : int, default 90
        The trailing-spend window.

    Returns
    -------
    cases : pyspark DataFrame
        One row per analysed case: the keys of the cell tables, ``trailing_spend``,
        ``appealed``, ``directive_date`` and the Cox model's ``decision_hours`` and ``decided``.
    ledger : CoverageLedger
        Rows analysed and excluded, as :func:`analysis.attribute.attribute` counts them.
    """
    if window_days < 1:
        raise DataError([Problem("parameters", "window_days must be at least 1",
                                 column="window_days", value=str(window_days))])
    small = {name: _to_polars(tables[name]).lazy()
             for name in ("ad_spend", "fx_rates", "watchlist") if name in tables}
    spend, currency = spend_in_usd(Dataset(Path("."), small))
    span = spend.select(pl.col("period_start").min(), pl.col("period_end").max()).collect()
    coverage = SpendCoverage(span["period_start"].item(), span["period_end"].item(), currency)

    enforcement = tables["enforcement"].withColumn("flag_date", F.to_date("flagged_at"))
    accounts = tables["accounts"].select("account_id", "advertiser_id")
    days = (enforcement.select("account_id", "flag_date")
            .join(accounts.withColumn("known_account", F.lit(True)), "account_id", "left")
            .groupBy("advertiser_id", "flag_date",
                     F.coalesce("known_account", F.lit(False)).alias("known_account"))
            .agg(F.count(F.lit(1)).alias("cases")))
    spend_days, ledger, _ = spend_by_day(_to_polars(days), spend, coverage,
                                         window_days=window_days)

    if coverage.first_day is None:
        inside = F.lit(False)
    else:
        inside = ((F.date_sub("flag_date", window_days) >= F.lit(coverage.first_day))
                  & (F.date_sub("flag_date", 1) <= F.lit(coverage.last_day)))
    accounts = accounts.withColumn("advertiser_account", F.col("advertiser_id").isNotNull())
    pairs: list[tuple[str, str]] = []
    directive_date = None
    if "watchlist" in small:
        listing, pairs = listing_by_account(small["watchlist"])
        listing = listing.collect()
        directive_date = small["watchlist"].select(pl.col("listed_at").min()).collect().item()
        accounts = accounts.join(F.broadcast(_to_spark(spark, listing)), "account_id", "left")
    else:
        accounts = accounts.withColumn("listed_at", F.lit(None).cast(T.DateType()))

    cases = (enforcement.filter(inside)
             .join(accounts, "account_id", "left")
             .join(F.broadcast(_to_spark(spark, spend_days)), ["advertiser_id", "flag_date"],
                   "left"))
    flagged = F.col("flagged_at")
    listed = F.lit(False)
    for start, end in pairs:
        listed = listed | ((flagged >= F.col(start))
                           & (F.col(end).isNull() | (flagged < F.col(end))))
    severity = F.col("severity")
    band = F.when(severity.isNull(), F.lit("unknown"))
    for upper, label in SEVERITY_BANDS:
        band = band.when(severity < F.lit(upper), F.lit(label))
    band = band.otherwise(F.lit(SEVERITY_BANDS[-1][1]))
    # As microseconds: a timestamp brought to Python would pass through the local time zone.
    end_of_data = tables["enforcement"].select(F.greatest(
        F.max(F.unix_micros("flagged_at")), F.max(F.unix_micros("decided_at")))).first()[0]
    decided = F.col("decided_at").isNotNull()
    until = F.when(decided, F.unix_micros("decided_at")).otherwise(F.lit(end_of_data))
    directive = F.lit(directive_date).cast(T.DateType())
    month = F.year("flag_date") * 12 + F.month("flag_date")
    cases = cases.select(
        "account_id", "advertiser_account", "policy", "flag_date",
        band.alias("severity_band"),
        F.coalesce(listed, F.lit(False)).alias("listed"),
        F.col("listed_at").isNotNull().alias("ever_listed"),
        F.coalesce("trailing_spend", F.lit(0.0)).alias("trailing_spend"),
        F.coalesce("spend_tier", F.lit(0)).cast(T.ByteType()).alias("spend_tier"),
        (F.col("action") != "no_action").alias("enforced"),
        F.coalesce("appealed", F.lit(False)).alias("appealed"),
        (F.coalesce("appeal_outcome", F.lit("")) == "reversed").alias("reversed"),
        directive.alias("directive_date"),
        F.coalesce(F.col("flag_date") >= directive, F.lit(False)).alias("post"),
        (month - (F.year(directive) * 12 + F.month(directive))).cast(T.IntegerType())
        .alias("event_month"),
        decided.alias("decided"),
        # As polars computes it: microseconds times 1e-6, then hours (bit for bit).
        ((until - F.unix_micros(flagged)) * F.lit(1e-6) / F.lit(3600.0))
        .alias("decision_hours"),
    ).withColumn("is_advertiser", F.col("trailing_spend") > 0)
    return cases, ledger


def _cells(frame: DataFrame, key: list[str], *extra: Any) -> pl.DataFrame:
    counted = _to_polars(frame.groupBy(*key).agg(F.count(F.lit(1)).alias("n"), *extra))
    counted = counted.cast({c: _CELL_DTYPES[c] for c in counted.columns})
    return counted.sort(key)


def spark_cells(data: str | Path | Mapping[str, DataFrame], *, window_days: int = WINDOW_DAYS,
                master: str | None = None, spark: SparkSession | None = None
                ) -> tuple[CellTables, CoverageLedger]:
    """Attribute every case and aggregate to the four cell tables in Spark.

    Parameters
    ----------
    data : str, Path or mapping of str to pyspark DataFrame
        A data folder in the canonical contract (on a file system the executors see), or the
        canonical tables already read (e.g. from a warehouse), typed as the contract says.
    window_days : int, default 90
        The trailing-spend window.
    master : str, optional
        Spark master for a new session (:func:`spark_session`); ignored with ``spark``.
    spark : SparkSession, optional
        The session to use.

    Returns
    -------
    cells : CellTables
        The same tables as :func:`analysis.cells.build_cells` on the polars engine, row for
        row.
    ledger : CoverageLedger
        Rows analysed and excluded.

    Examples
    --------
    >>> from analysis.config import SAMPLE_DATA_DIR
    >>> cells, ledger = spark_cells(SAMPLE_DATA_DIR, master="local[2]")  # doctest: +SKIP
    >>> int(cells.account["n"].sum()) == ledger.analysed  # doctest: +SKIP
    True
    """
    spark = spark or spark_session(master)
    tables = spark_tables(spark, data) if isinstance(data, str | Path) else dict(data)
    cases, ledger = spark_cases(spark, tables, window_days=window_days)
    cases = cases.cache()  # read by four aggregations
    try:
        account = _cells(cases, ACCOUNT_KEY)
        spend = _cells(cases.filter("is_advertiser"), SPEND_KEY,
                       F.max("trailing_spend").alias("trailing_spend")
                       ).with_columns(log10_spend=pl.col("trailing_spend").log10())
        appeal = _cells(cases.filter(F.col("enforced") & F.col("appealed")), APPEAL_KEY)
        event = _cells(cases.filter(F.col("directive_date").isNotNull()), EVENT_KEY)
    finally:
        cases.unpersist()
    return CellTables(account, spend, appeal, event), ledger


def spark_analyze(data: str | Path | Mapping[str, DataFrame], *,
                  window_days: int = WINDOW_DAYS, alpha: float = ALPHA,
                  has_watchlist: bool | None = None, master: str | None = None,
                  spark: SparkSession | None = None) -> tuple[list[TestResult], CoverageLedger]:
    """The battery on cells built by Spark: the same statistics as ``levelfield analyze``.

    The Cox model (``decision_speed``) needs rows; the driver receives its five columns
    (decision time, decided, listed, policy, account) for every case, so on data far beyond
    one machine's memory run it on a sample of accounts drawn in Spark.

    Returns
    -------
    tests : list of TestResult
        As :func:`analysis.pipeline.run_battery_on_cells`.
    ledger : CoverageLedger
        Rows analysed and excluded.
    """
    from analysis.battery import Cells
    from analysis.pipeline import COX_COLUMNS, run_battery_on_cells

    spark = spark or spark_session(master)
    tables = spark_tables(spark, data) if isinstance(data, str | Path) else dict(data)
    cells, ledger = spark_cells(tables, window_days=window_days, spark=spark)
    cases, _ = spark_cases(spark, tables, window_days=window_days)
    cox_rows = _to_polars(cases.select(*COX_COLUMNS))
    battery_cells: Cells = Cells(cox_rows, **dict(zip(CELL_TABLES, cells.tables().values(),
                                                      strict=True)))
    watchlist = "watchlist" in tables if has_watchlist is None else has_watchlist
    return run_battery_on_cells(battery_cells, has_watchlist=watchlist, alpha=alpha), ledger
