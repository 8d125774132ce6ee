"""Google Political Ads Transparency Report: advertiser stats, as spend for the canonical tables.

Google's transparency bundle has one row per verified election advertiser in
``google-political-ads-advertiser-stats.csv``: its id (``AR…``), name, regions, number of ads
(``Total_Creatives``) and its spend since the report began, in up to 20 currency columns
(``Spend_USD``, ``Spend_EUR``, … ``Spend_MXN``). It says nothing about enforcement: which ads were
removed is not in the bundle. So this source gives the *money* side only; the enforcement records
must come from elsewhere (a leak, a platform's own export, a researcher's data).

How the stats are mapped to the contract:

* **advertisers**: one per row; ``advertiser_id`` = ``Advertiser_ID``, ``advertiser_name`` =
  ``Advertiser_Name``; extra columns ``regions``, ``elections``, ``total_creatives``.
* **ad_spend**: one row per advertiser (every row, including the advertisers with no spend, so
  the counts reconcile with the file), one period for all of it, ``period_start`` to
  ``period_end``. The stats are lifetime totals: the file does not say when the money was spent,
  nor even on which day it was exported, so ``period_end`` (the day the bundle was downloaded)
  must be given, and ``period_start`` defaults to :data:`REPORT_START` (2018-05-31, the first day
  of the report, in the United States; later regions started later). Spread evenly over that
  span, a trailing-spend window sees a fixed share of each advertiser's lifetime spend: it ranks
  advertisers by lifetime spend, not by what they spent just before a case.
* **Currencies**: each ``Spend_<CUR>`` column is the spend paid in that currency — *not* the same
  total converted. ``Spend_USD`` is 0 for advertisers who paid only in other currencies (e.g. a
  Brazilian advertiser with ``Spend_BRL`` 6,000), and an EU advertiser's ``Spend_BGN`` is not
  ``Spend_EUR`` at the lev's fixed rate. Using ``Spend_USD`` as the total would silently give
  thousands of advertisers no spend at all. The file carries no exchange rates, so when spend is in
  more than one currency the caller supplies ``fx_rates`` (US dollars per unit); each advertiser's
  spend is then the sum of its columns converted to USD, ``currency = "USD"``, and the rates used
  are kept as the ``fx_rates`` table (with USD at 1). With spend in one currency only, no rates are
  needed and the spend stays in it. The extra column ``paid_in`` lists the currencies an
  advertiser paid in.
* **accounts** and **enforcement**: from ``enforcement``, records the user brings (see
  :func:`read`). :func:`read` without them raises a :class:`~analysis.schema.DataError` saying
  so; :func:`read_spend` returns the spend-only tables (advertisers, ad_spend, fx_rates), a
  Dataset without ``accounts`` or ``enforcement`` that cannot be analysed until joined.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from analysis.load import Dataset, FileInfo, sha256
from analysis.schema import CONTRACT, DataError, Problem, find_table_file
from analysis.sources.mapping import SOURCE_FILE, SOURCE_ROW, load_frames

FILE = "google-political-ads-advertiser-stats.csv"
#: First day of Google's political ads transparency report (United States).
REPORT_START = date(2018, 5, 31)
ID_COLUMNS = ("Advertiser_ID", "Advertiser_Name", "Public_IDs_List", "Regions", "Elections",
              "Total_Creatives")
SPEND_COLUMN = re.compile(r"^Spend_(?P<currency>[A-Z]{3})$")
#: Tables the user's enforcement records may hold (the money side comes from Google's file).
USER_TABLES = ("enforcement", "accounts", "watchlist", "audit_sample")


@dataclass(frozen=True)
class Stats:
    """The advertiser stats, typed and checked.

    ``rows`` has ``advertiser_id``, ``advertiser_name``, ``public_ids``, ``regions``,
    ``elections``, ``total_creatives`` and one float column per currency (``USD``, ``EUR``, …),
    plus ``_source_file`` and ``_source_row``; ``currencies`` lists the currency columns in the
    file's order.
    """

    path: Path
    rows: pl.DataFrame
    currencies: list[str]
    files: list[FileInfo]

    def currencies_with_spend(self) -> list[str]:
        """Currencies in which at least one advertiser spent something."""
        totals = self.rows.select(pl.col(self.currencies).sum()).row(0, named=True)
        return [c for c in self.currencies if totals[c] > 0]


def read_stats(path: str | Path) -> Stats:
    """Read ``google-political-ads-advertiser-stats.csv`` and check every row.

    Parameters
    ----------
    path : str or Path
        The CSV, a folder holding it, or the transparency bundle zip.

    Returns
    -------
    Stats

    Raises
    ------
    DataError
        A missing file or column, an empty or repeated ``Advertiser_ID``, or a spend or count
        that is not a number >= 0, with file, line, column and value.

    Examples
    --------
    >>> from analysis.config import REFERENCE_DATA_DIR
    >>> stats = read_stats(REFERENCE_DATA_DIR / "google_political_ads")
    >>> stats.rows.height, len(stats.currencies)
    (20832, 20)
    """
    path = Path(path)
    name, content = _member(path)
    try:
        raw = pl.read_csv(io.BytesIO(content), infer_schema=False, encoding="utf8")
    except pl.exceptions.PolarsError as exc:
        raise DataError([Problem(name, f"cannot be read as CSV: {exc}", check="unreadable")],
                        source=str(path)) from None
    missing = [c for c in ID_COLUMNS if c not in raw.columns]
    currencies = [m["currency"] for c in raw.columns if (m := SPEND_COLUMN.match(c))]
    if missing or not currencies:
        raise DataError([Problem(
            name, "not Google's advertiser stats: "
            + (f"missing column(s) {', '.join(missing)}" if missing else "no Spend_<currency> "
               "column") + f" (columns found: {', '.join(raw.columns)})", check="header")],
            source=str(path))
    text = {c: pl.col(c).str.strip_chars() for c in raw.columns}
    rows = raw.with_row_index(SOURCE_ROW, offset=1).select(
        text["Advertiser_ID"].alias("advertiser_id"),
        text["Advertiser_Name"].alias("advertiser_name"),
        text["Public_IDs_List"].alias("public_ids"),
        text["Regions"].alias("regions"),
        text["Elections"].alias("elections"),
        text["Total_Creatives"].cast(pl.Int64, strict=False).alias("total_creatives"),
        *[text[f"Spend_{c}"].cast(pl.Float64, strict=False).alias(c) for c in currencies],
        *[text[c].alias(f"_raw_{c}") for c in ("Total_Creatives",
                                                *[f"Spend_{c}" for c in currencies])],
        pl.lit(name).alias(SOURCE_FILE),
        pl.col(SOURCE_ROW).cast(pl.Int64),
    )
    problems = []
    checks = [(pl.col("advertiser_id").is_null(), "Advertiser_ID", "advertiser_id",
               "Advertiser_ID must not be empty"),
              (pl.col("advertiser_id").is_not_null()
               & ~pl.col("advertiser_id").is_first_distinct(), "Advertiser_ID", "advertiser_id",
               "duplicate Advertiser_ID: the same id is on an earlier row"),
              (pl.col("advertiser_name").is_null(), "Advertiser_Name", "advertiser_name",
               "Advertiser_Name must not be empty"),
              (pl.col("total_creatives").is_null() | (pl.col("total_creatives") < 0),
               "Total_Creatives", "_raw_Total_Creatives", "must be a whole number >= 0")]
    checks += [(pl.col(c).is_null() | (pl.col(c) < 0), f"Spend_{c}", f"_raw_Spend_{c}",
                "must be a number >= 0") for c in currencies]
    for bad, column, shown, message in checks:
        for row, value in rows.filter(bad).select(SOURCE_ROW, shown).iter_rows():
            problems.append(Problem(name, message, row=row, column=column, value=value,
                                    check=f"{column}: {message}"))
    if problems:
        raise DataError(problems, source=str(path))
    rows = rows.drop([c for c in rows.columns if c.startswith("_raw_")])
    files = [FileInfo(table="advertiser_stats", name=name, sha256=_digest(content),
                      rows=rows.height)]
    return Stats(path, rows, currencies, files)


def spend_tables(stats: Stats, *, fx_rates: Mapping[str, float] | str | Path | None = None,
                 period_start: date = REPORT_START, period_end: date
                 ) -> dict[str, pl.DataFrame]:
    """``advertisers``, ``ad_spend`` and (with rates) ``fx_rates`` from the stats.

    Parameters
    ----------
    stats : Stats
        From :func:`read_stats`.
    fx_rates : mapping or path, optional
        US dollars per unit of each currency in which anyone spent (``{"EUR": 1.08, …}``), or a
        CSV with columns ``currency, rate_to_usd``. Needed when spend is in several currencies.
    period_start : date, default 2018-05-31
        First day the lifetime totals can cover.
    period_end : date
        The day the bundle was downloaded (the file does not record it).

    Returns
    -------
    dict of str to polars DataFrame
        Each with ``_source_file`` and ``_source_row``.

    Raises
    ------
    DataError
        Spend in several currencies without rates for all of them, or a period that ends
        before it starts.

    Examples
    --------
    >>> from datetime import date
    >>> from analysis.config import REFERENCE_DATA_DIR
    >>> stats = read_stats(REFERENCE_DATA_DIR / "google_political_ads")
    >>> rates = {c: 1.0 for c in stats.currencies}  # made-up rates, for the shape only
    >>> tables = spend_tables(stats, fx_rates=rates, period_end=date(2025, 4, 15))
    >>> tables["ad_spend"].height, tables["ad_spend"]["currency"].unique().to_list()
    (20832, ['USD'])
    """
    where = [pl.col(SOURCE_FILE), pl.col(SOURCE_ROW)]
    paying = stats.currencies_with_spend()
    problems = []
    if period_end < period_start:
        problems.append(Problem("parameters", f"period_end {period_end} is before period_start "
                                f"{period_start}", column="period_end", check="period"))
    rates = _rates(fx_rates, stats.path) if fx_rates is not None else None
    if rates is None and len(paying) > 1:
        problems.append(Problem(
            stats.files[0].name, f"spend is in {len(paying)} currencies ({', '.join(paying)}) and "
            "the file has no exchange rates: pass fx_rates (US dollars per unit of each). "
            "Spend_USD is not a USD total: it is the spend paid in dollars, 0 for advertisers "
            "who paid in other currencies, so it cannot stand in for the others",
            column="currency", check="currencies"))
    if rates is not None:
        lacking = [c for c in paying if c not in rates]
        if lacking:
            problems.append(Problem("fx_rates", f"no rate for {', '.join(lacking)}, in which "
                                    "advertisers spent", column="currency",
                                    value=", ".join(lacking), check="currencies"))
        bad = [c for c, r in rates.items() if not r > 0]
        if bad:
            problems.append(Problem("fx_rates", "rates must be > 0", column="rate_to_usd",
                                    value=", ".join(bad), check="rates"))
    if problems:
        raise DataError(problems, source=str(stats.path))
    rows = stats.rows
    if rates is not None:
        spend = pl.sum_horizontal([pl.col(c) * rates.get(c, 0.0) for c in stats.currencies])
        currency = "USD"
    else:
        only = paying[0] if paying else "USD"
        spend, currency = pl.col(only), only
    paid_in = pl.concat_str([pl.when(pl.col(c) > 0).then(pl.lit(c)) for c in stats.currencies],
                            separator=", ", ignore_nulls=True)
    tables = {
        "advertisers": rows.select(
            "advertiser_id", "advertiser_name", pl.lit(None, pl.String).alias("parent_name"),
            "regions", "elections", "total_creatives", *where),
        "ad_spend": rows.select(
            "advertiser_id", pl.lit(period_start).alias("period_start"),
            pl.lit(period_end).alias("period_end"), spend.cast(pl.Float64).alias("spend"),
            pl.lit(currency).alias("currency"),
            pl.when(paid_in == "").then(None).otherwise(paid_in).alias("paid_in"), *where),
    }
    if rates is not None:
        used = {"USD": 1.0, **{c: r for c, r in rates.items() if c in stats.currencies}}
        tables["fx_rates"] = pl.DataFrame({
            "currency": sorted(used), "rate_to_usd": [used[c] for c in sorted(used)],
            SOURCE_FILE: "fx_rates", SOURCE_ROW: list(range(1, len(used) + 1))})
    return tables


def read_spend(path: str | Path, *, fx_rates: Mapping[str, float] | str | Path | None = None,
               period_start: date = REPORT_START, period_end: date | None = None) -> Dataset:
    """The spend side alone: ``advertisers``, ``ad_spend`` (and ``fx_rates``), checked.

    The Dataset has no ``accounts`` or ``enforcement``: it is for looking at spend and for
    joining with enforcement records later (:func:`read` does both at once). The contract's
    checks run as usual; the missing tables are the only thing it lacks.

    Parameters
    ----------
    path : str or Path
        The advertiser stats (see :func:`read_stats`).
    fx_rates, period_start, period_end
        See :func:`spend_tables`; ``period_end`` is required.

    Returns
    -------
    Dataset
        ``source = "google-political-ads (spend only)"``.
    """
    stats = read_stats(path)
    tables = spend_tables(stats, fx_rates=fx_rates, period_start=period_start,
                          period_end=_need_period_end(period_end, stats))
    # The contract requires accounts and enforcement; empty ones let every other check run.
    empty = {name: pl.DataFrame(schema={**CONTRACT[name].schema, SOURCE_FILE: pl.String,
                                        SOURCE_ROW: pl.Int64})
             for name in ("accounts", "enforcement")}
    dataset = load_frames({**tables, **empty}, path=Path(path),
                          source="google-political-ads (spend only)", files=stats.files)
    for name in empty:
        del dataset.tables[name]
    return dataset


def read(path: str | Path, *, enforcement: str | Path | None = None,
         fx_rates: Mapping[str, float] | str | Path | None = None,
         period_start: date = REPORT_START, period_end: date | None = None) -> Dataset:
    """Google's advertiser stats joined with enforcement records the user brings.

    Parameters
    ----------
    path : str or Path
        The advertiser stats: the CSV, a folder holding it, or the bundle zip.
    enforcement : str or Path
        The enforcement side, in the canonical contract: a folder with ``enforcement.csv`` (or
        ``.csv.gz``/``.parquet``) and optionally ``accounts``, ``watchlist``, ``audit_sample``;
        or a single enforcement file. Without an ``accounts`` table, each ``account_id`` is
        taken to be an advertiser: accounts whose id is an ``Advertiser_ID`` get that advertiser,
        the others none. Required: without it there is nothing to analyse, and a DataError says
        so (use :func:`read_spend` for the spend alone).
    fx_rates : mapping or path, optional
        US dollars per unit of each currency; needed because the stats mix currencies.
    period_start : date, default 2018-05-31
        First day the lifetime spend totals can cover.
    period_end : date
        The day the bundle was downloaded; required (the file does not record it).

    Returns
    -------
    Dataset
        All tables checked against the contract; ``source = "google-political-ads"``;
        ``files`` lists the stats file and the enforcement files, with checksums and rows.

    Raises
    ------
    DataError
        Everything missing at once (enforcement records, ``period_end``, exchange rates), or any
        problem in the files, located.

    Examples
    --------
    >>> from analysis.config import REFERENCE_DATA_DIR
    >>> read(REFERENCE_DATA_DIR / "google_political_ads")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    analysis.schema.DataError: ... enforcement records are needed ...
    """
    stats = read_stats(path)
    problems = []
    if enforcement is None:
        problems.append(Problem(
            stats.files[0].name, "this file gives spend only, no enforcement outcome: "
            "enforcement records are needed to analyse it; pass enforcement=FOLDER (enforcement "
            "and optionally accounts tables in the canonical contract, accounts' advertiser_id "
            "being Google's Advertiser_ID), or use read_spend() to look at the spend alone",
            check="enforcement"))
    if period_end is None:
        problems.append(_period_problem(stats))
    try:
        # Without period_end the currencies are still checked, so every problem shows at once.
        tables = spend_tables(stats, fx_rates=fx_rates, period_start=period_start,
                              period_end=period_end if period_end is not None else period_start)
    except DataError as error:
        problems += error.problems
        tables = {}
    if problems:
        raise DataError(problems, source=str(path))
    user, user_files = _user_tables(Path(enforcement))
    if "accounts" not in user and "account_id" in user["enforcement"].collect_schema():
        user["accounts"] = _accounts_from_cases(user["enforcement"], stats)
    return load_frames({**tables, **user}, path=Path(path), source="google-political-ads",
                       files=[*stats.files, *user_files])


# --------------------------------------------------------------------------------------------


def _member(path: Path) -> tuple[str, bytes]:
    if path.is_dir():
        path = path / FILE
    if not path.is_file():
        raise DataError([Problem(str(path), f"no such file (expected {FILE}, a folder holding "
                                 "it, or the transparency bundle zip)", check="file")],
                        source=str(path))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = sorted(n for n in archive.namelist() if n.rsplit("/", 1)[-1] == FILE)
            if not names:
                raise DataError([Problem(path.name, f"the zip holds no {FILE}", check="file")],
                                source=str(path))
            return f"{path.name}:{names[0]}", archive.read(names[0])
    return path.name, path.read_bytes()


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _period_problem(stats: Stats) -> Problem:
    return Problem(stats.files[0].name, "the stats are lifetime totals up to the day the bundle "
                   "was downloaded, which the file does not record: pass period_end (that day)",
                   column="period_end", check="period")


def _need_period_end(period_end: date | None, stats: Stats) -> date:
    if period_end is None:
        raise DataError([_period_problem(stats)], source=str(stats.path))
    return period_end


def _rates(fx_rates: Mapping[str, float] | str | Path, base: Path) -> dict[str, float]:
    if isinstance(fx_rates, Mapping):
        return {str(c): float(r) for c, r in fx_rates.items()}
    file = Path(fx_rates)
    try:
        table = pl.read_csv(file, schema_overrides={"currency": pl.String,
                                                    "rate_to_usd": pl.Float64})
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError([Problem(file.name, f"cannot be read as fx_rates (columns currency, "
                                 f"rate_to_usd): {exc}", check="unreadable")],
                        source=str(base)) from None
    return dict(table.select("currency", "rate_to_usd").iter_rows())


def _user_tables(place: Path) -> tuple[dict[str, pl.LazyFrame], list[FileInfo]]:
    """The user's enforcement-side tables, as text, with where each row came from."""
    if place.is_file():
        found = {"enforcement": place}
    elif place.is_dir():
        found = {name: file for name in USER_TABLES
                 if (file := find_table_file(place, name)) is not None}
        stray = [name for name in ("advertisers", "ad_spend", "fx_rates")
                 if find_table_file(place, name) is not None]
        problems = [Problem(str(place), f"holds a {name} table, but the spend side comes from "
                            "Google's advertiser stats; remove it", check="stray table")
                    for name in stray]
        if "enforcement" not in found:
            problems.append(Problem(str(place), "no enforcement table (enforcement.csv, "
                                    ".csv.gz or .parquet)", check="missing table"))
        if problems:
            raise DataError(problems, source=str(place))
    else:
        raise DataError([Problem(str(place), "no such file or folder", check="folder")],
                        source=str(place))
    frames, files = {}, []
    for name, file in found.items():
        try:
            frame = (pl.scan_parquet(file) if file.suffix == ".parquet"
                     else pl.scan_csv(file, infer_schema=False, encoding="utf8"))
            frame.collect_schema()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataError([Problem(file.name, f"cannot be read: {exc}", check="unreadable")],
                            source=str(place)) from None
        frames[name] = frame.with_row_index(SOURCE_ROW, offset=1).with_columns(
            pl.col(SOURCE_ROW).cast(pl.Int64), pl.lit(file.name).alias(SOURCE_FILE))
        files.append(FileInfo(table=name, name=file.name, sha256=sha256(file),
                              rows=frame.select(pl.len()).collect().item()))
    return frames, files


def _accounts_from_cases(enforcement: pl.LazyFrame, stats: Stats) -> pl.LazyFrame:
    """One account per account_id in the cases; its advertiser is itself when it is one."""
    known = stats.rows.select(pl.col("advertiser_id").alias("_known")).lazy()
    accounts = (enforcement.select("account_id", SOURCE_FILE, SOURCE_ROW)
                .filter(pl.col("account_id").is_not_null())
                .with_columns(pl.col("account_id").cast(pl.String).str.strip_chars())
                .unique("account_id", keep="first", maintain_order=True))
    return (accounts.join(known, left_on="account_id", right_on="_known", how="left",
                          maintain_order="left", coalesce=False)
            .select("account_id", pl.col("_known").alias("advertiser_id"), SOURCE_FILE,
                    SOURCE_ROW))
