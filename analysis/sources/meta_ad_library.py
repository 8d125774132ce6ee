"""Meta Ad Library Report: the advertiser CSVs, read into the canonical tables.

Meta publishes, per country and time window, a report of the ads "about social issues, elections
or politics" that reached people there: one row per Page and disclaimer (the "paid for by" line),
with the amount spent and the number of ads. A Page can have several rows, one per disclaimer it
used. Rows whose disclaimer reads ``These ads ran without a disclaimer`` are ads Meta found running
without the required disclaimer and took down: the report's one enforcement outcome. Amounts up
to 100 are not given; they are shown as ``≤100``.

How the report is mapped to the contract (see also ``docs/mapping.md``):

* **advertisers** and **accounts**: one per Page and country (``BE:56605856504``). Pages without a
  Facebook Page (Instagram accounts) all carry Page ID 0 in the report, so for them the Page name
  (``Instagram User 727842325``) is the key (``BE:0:Instagram User 727842325``). The same Page in
  two countries' reports is two advertisers: each report counts spend reaching its own country.
* **ad_spend**: one period per Page and report, the report's window (e.g. the 30 days ending on
  the date in the file name, inclusive), in the currency named in the header ("Amount spent
  (EUR)"). ``≤100`` is interval-censored: its lower bound is 0 and its upper bound 100. ``spend``
  counts it at the midpoint, 50; the extra columns ``spend_low`` and ``spend_high`` keep the
  bounds (the Page's total with every ``≤100`` row at 0, and at 100), so that analyses can show
  how much the choice matters. ``spend_bucketed`` says whether any of the Page's rows was
  ``≤100``.
* **enforcement**: one case per Page and report. The report does not list flags; it lists Pages
  whose political ads the disclaimer rule applied to. A Page is a case with ``action = removed``
  when it has a "without a disclaimer" row (Meta caught and took down some of its ads), and
  ``no_action`` otherwise (all its ads in the report carried a disclaimer). ``policy`` is
  ``political_ads_disclaimer``. The report does not say when ads were caught, so ``flagged_at``
  is the end of the window (midnight UTC after its last day): with ``--window-days`` equal to the
  report's window (30), the trailing spend of every case is the Page's spend in the report. One
  case per Page rather than per row, because several disclaimer rows of one Page are one
  advertiser's choices in one window, not independent decisions of the platform. The extra
  columns ``ads_without_disclaimer`` and ``spend_without_disclaimer`` say how much was caught.

Who is in the report at all is a selection: only Pages that ran political ads (declared, or
caught undeclared) appear. Pages that ran undeclared political ads and were never caught are not
in it. ``analysis.studies.meta_ad_library`` spells out what the data can and cannot show.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from analysis.load import Dataset, FileInfo
from analysis.schema import DataError, Problem
from analysis.sources.mapping import SOURCE_FILE, SOURCE_ROW, load_frames

#: The disclaimer Meta prints on the row of a Page's ads that ran without one (and were removed).
WITHOUT_DISCLAIMER = "These ads ran without a disclaimer"
#: How the report shows an amount it does not disclose: anything from 0 to 100.
LOW_BUCKET = "≤100"
LOW_BUCKET_BOUNDS = (0.0, 100.0)
#: The value ``spend`` gives a ``≤100`` row: the midpoint of its bounds.
LOW_BUCKET_MIDPOINT = 50.0
#: The contract's policy label of every case from this source.
POLICY = "political_ads_disclaimer"
#: Instagram accounts without a Facebook Page share this Page ID in the report.
NO_PAGE_ID = "0"

FILE_NAME = re.compile(
    r"FacebookAdLibraryReport_(?P<date>\d{4}-\d{2}-\d{2})_(?P<country>[A-Z]{2})_"
    r"(?P<window>yesterday|last_(?P<days>\d+)_days)_advertisers\.csv$")
COLUMNS = ("Page ID", "Page name", "Disclaimer", "Amount spent", "Number of ads in Library")
SPEND_HEADER = re.compile(r"^Amount spent \((?P<currency>[A-Z]{3})\)$")


@dataclass(frozen=True)
class Reports:
    """The advertiser rows of one or more reports, typed and checked, and the files they came from.

    ``rows`` has one row per report row, with columns ``report`` (country, window, end date),
    ``country``, ``currency``, ``period_start``, ``period_end``, ``page_id``, ``page_key``,
    ``page_name``, ``disclaimer``, ``without_disclaimer``, ``spend_text`` (as printed),
    ``spend_low``, ``spend_high``, ``spend`` (midpoint for ``≤100``), ``bucketed``, ``ads``,
    ``_source_file`` and ``_source_row``.
    """

    path: Path
    rows: pl.DataFrame
    files: list[FileInfo]


def read_reports(path: str | Path) -> Reports:
    """Read every advertiser report in ``path`` and check each row.

    Parameters
    ----------
    path : str or Path
        One report (``FacebookAdLibraryReport_<date>_<country>_last_<n>_days_advertisers.csv``,
        as Meta names it), a folder of reports, or a zip holding them (the download from the Ad
        Library Report page). Other files (the ``_locations.csv`` summary, README) are ignored.

    Returns
    -------
    Reports
        The rows, sorted by report and source row, and the files' checksums and row counts.

    Raises
    ------
    DataError
        A file that is not named like a report, a header that is not the report's, an amount that
        is neither a number nor ``≤100``, an empty Page ID, a Page listed twice with the same
        disclaimer, or two reports of one country with overlapping windows; with file, line,
        column and value.

    Examples
    --------
    >>> from analysis.config import REFERENCE_DATA_DIR
    >>> reports = read_reports(REFERENCE_DATA_DIR / "meta_ad_library"
    ...     / "FacebookAdLibraryReport_2025-07-13_AD_last_30_days_advertisers.csv")
    >>> reports.rows.height, int(reports.rows["without_disclaimer"].sum())
    (66, 65)
    """
    path = Path(path)
    members = _members(path)
    problems: list[Problem] = []
    frames: list[pl.DataFrame] = []
    files: list[FileInfo] = []
    for name, content in members:
        frame, file_problems = _parse_report(name, content)
        problems += file_problems
        if frame is not None:
            frames.append(frame)
            files.append(FileInfo(table="report", name=name, sha256=_digest(content),
                                  rows=frame.height))
    if problems:
        raise DataError(problems, source=str(path))
    rows = pl.concat(frames).sort("report", SOURCE_FILE, SOURCE_ROW)
    problems = _check_rows(rows)
    if problems:
        raise DataError(problems, source=str(path))
    return Reports(path, rows, files)


def pages(reports: Reports | pl.DataFrame) -> pl.DataFrame:
    """One row per Page and report: its spend, declared and undeclared, and whether it was caught.

    Parameters
    ----------
    reports : Reports or polars DataFrame
        From :func:`read_reports` (or its ``rows``).

    Returns
    -------
    polars DataFrame
        Columns ``report``, ``country``, ``currency``, ``period_start``, ``period_end``,
        ``page_key``, ``page_id``, ``page_name``, ``rows`` (report rows of the Page),
        ``caught`` (a "without a disclaimer" row exists), ``declared`` (a row with a disclaimer
        exists), ``ads``, ``ads_without_disclaimer``, and each spend three ways — ``spend``
        (``≤100`` at 50), ``spend_low`` (at 0), ``spend_high`` (at 100) — for all rows, for the
        declared rows (``declared_spend*``) and for the undeclared row (``undeclared_spend*``);
        ``bucketed`` (any ``≤100`` row), ``_source_file`` and ``_source_row`` of its first row.
        Sorted by report and page key.

    Examples
    --------
    >>> import polars as pl
    >>> rows = pl.DataFrame({
    ...     "report": ["BE"] * 3, "country": ["BE"] * 3, "currency": ["EUR"] * 3,
    ...     "period_start": [None] * 3, "period_end": [None] * 3,
    ...     "page_id": ["1", "1", "2"], "page_key": ["1", "1", "2"], "page_name": ["A", "A", "B"],
    ...     "without_disclaimer": [False, True, False],
    ...     "spend": [500.0, 50.0, 50.0], "spend_low": [500.0, 0.0, 0.0],
    ...     "spend_high": [500.0, 100.0, 100.0], "bucketed": [False, True, True],
    ...     "ads": [3, 1, 2], "_source_file": ["r.csv"] * 3, "_source_row": [1, 2, 3]})
    >>> pages(rows).select("page_key", "caught", "spend", "spend_low", "declared_spend").rows()
    [('1', True, 550.0, 500.0, 500.0), ('2', False, 50.0, 0.0, 50.0)]
    """
    rows = reports.rows if isinstance(reports, Reports) else reports
    caught = pl.col("without_disclaimer")

    def spend_of(which: pl.Expr | None, prefix: str) -> list[pl.Expr]:
        return [(pl.col(c).filter(which) if which is not None else pl.col(c)).sum()
                .alias(f"{prefix}{c}") for c in ("spend", "spend_low", "spend_high")]

    return (
        rows.sort("report", "page_key", SOURCE_FILE, SOURCE_ROW)
        .group_by("report", "page_key", maintain_order=True)
        .agg(
            pl.col("country", "currency", "period_start", "period_end", "page_id",
                   "page_name").first(),
            pl.len().alias("rows"),
            caught.any().alias("caught"),
            (~caught).any().alias("declared"),
            pl.col("ads").sum().alias("ads"),
            pl.col("ads").filter(caught).sum().alias("ads_without_disclaimer"),
            *spend_of(None, ""),
            *spend_of(~caught, "declared_"),
            *spend_of(caught, "undeclared_"),
            pl.col("bucketed").any().alias("bucketed"),
            pl.col(SOURCE_FILE).first(),
            pl.col(SOURCE_ROW).first(),
        )
        .with_columns(pl.col("rows").cast(pl.Int64))
    )


def read(path: str | Path, *, fx_rates: Mapping[str, float] | str | Path | None = None
         ) -> Dataset:
    """Read Meta Ad Library Reports into the canonical tables (see the module's notes).

    Parameters
    ----------
    path : str or Path
        One advertiser report, a folder of them or a zip (see :func:`read_reports`).
    fx_rates : mapping or path, optional
        Needed only when the reports are in more than one currency (e.g. a Belgian report in EUR
        and a Bangladeshi one in USD): ``{"EUR": 1.17, "USD": 1.0}`` (US dollars per unit), or a
        CSV with columns ``currency, rate_to_usd``. A file ``fx_rates.csv`` beside the reports
        is used when this is not given. The reports themselves carry no exchange rates.

    Returns
    -------
    Dataset
        Tables ``advertisers``, ``accounts``, ``ad_spend`` (with ``spend_low``, ``spend_high``,
        ``spend_bucketed``, ``report``), ``enforcement`` (with ``report``,
        ``ads_without_disclaimer``, ``spend_without_disclaimer``), with rates ``fx_rates``, and
        ``report_rows`` (not a contract table: the rows of :func:`read_reports`);
        ``source = "meta-ad-library"``; ``files`` lists each report with its checksum and rows.

    Raises
    ------
    DataError
        Bad report rows (see :func:`read_reports`), several currencies without rates, or any
        breach of the contract.

    Examples
    --------
    >>> from analysis.config import REFERENCE_DATA_DIR
    >>> dataset = read(REFERENCE_DATA_DIR / "meta_ad_library"
    ...     / "FacebookAdLibraryReport_2025-07-13_AD_last_30_days_advertisers.csv")
    >>> dataset["enforcement"].collect()["action"].value_counts(sort=True).rows()
    [('removed', 65), ('no_action', 1)]
    """
    reports = read_reports(path)
    by_page = pages(reports)
    frames = canonical_tables(by_page)
    rates = _rates(Path(path), fx_rates, by_page)
    if rates is not None:
        frames["fx_rates"] = rates
    dataset = load_frames(frames, path=Path(path), source="meta-ad-library", files=reports.files,
                          describe=_describe)
    # Not a contract table: the report's own rows, for the case study and for checking totals.
    dataset.tables["report_rows"] = reports.rows.lazy()
    return dataset


def canonical_tables(by_page: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The contract's tables from :func:`pages` (one case and one spend period per Page and report).

    Parameters
    ----------
    by_page : polars DataFrame
        The output of :func:`pages`.

    Returns
    -------
    dict of str to polars DataFrame
        ``advertisers``, ``accounts``, ``ad_spend``, ``enforcement``, each with
        ``_source_file`` and ``_source_row`` for locating problems.
    """
    advertiser_id = pl.format("{}:{}", pl.col("country"), pl.col("page_key"))
    where = [pl.col(SOURCE_FILE), pl.col(SOURCE_ROW)]
    # A Page seen in several reports of one country is one advertiser; its latest name is used.
    latest = (by_page.with_columns(advertiser_id=advertiser_id)
              .sort("advertiser_id", "period_end", descending=[False, True])
              .unique("advertiser_id", keep="first", maintain_order=True))
    advertisers = latest.select(
        "advertiser_id", pl.col("page_name").alias("advertiser_name"),
        pl.lit(None, pl.String).alias("parent_name"), "page_id", "country", *where)
    accounts = latest.select(
        pl.col("advertiser_id").alias("account_id"), "advertiser_id",
        pl.col("page_name").alias("account_name"),
        pl.when(pl.col("page_id") == NO_PAGE_ID).then(pl.lit("instagram_account"))
        .otherwise(pl.lit("facebook_page")).alias("account_type"),
        "country", *where)
    ad_spend = by_page.select(
        advertiser_id.alias("advertiser_id"), "period_start", "period_end", "spend", "currency",
        "spend_low", "spend_high", pl.col("bucketed").alias("spend_bucketed"), "report", *where)
    end_of_window = (pl.col("period_end") + pl.duration(days=1)).cast(pl.Datetime("us"))
    enforcement = by_page.select(
        pl.format("{}:{}:{}", pl.col("country"), pl.col("period_end"), pl.col("page_key"))
        .alias("case_id"),
        advertiser_id.alias("account_id"),
        end_of_window.dt.replace_time_zone("UTC").alias("flagged_at"),
        pl.lit(POLICY).alias("policy"),
        pl.when(pl.col("caught")).then(pl.lit("removed")).otherwise(pl.lit("no_action"))
        .alias("action"),
        "report", "ads_without_disclaimer",
        pl.col("undeclared_spend").alias("spend_without_disclaimer"), *where)
    return {"advertisers": advertisers, "accounts": accounts, "ad_spend": ad_spend,
            "enforcement": enforcement}


# --------------------------------------------------------------------------------------------
# Reading the files


def _members(path: Path) -> list[tuple[str, bytes]]:
    """(name, content) of every advertiser report in a file, folder or zip, sorted by name."""
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.name.endswith("_advertisers.csv"))
        if not found:
            raise DataError([Problem(str(path), "no Meta Ad Library advertiser report here "
                                     "(files named FacebookAdLibraryReport_<date>_<country>_"
                                     "last_<n>_days_advertisers.csv)", check="no report")],
                            source=str(path))
        return [(p.name, p.read_bytes()) for p in found]
    if not path.is_file():
        raise DataError([Problem(str(path), "no such file or folder", check="folder")],
                        source=str(path))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = sorted(n for n in archive.namelist() if n.endswith("_advertisers.csv"))
            if not names:
                raise DataError([Problem(path.name, "the zip holds no advertiser report (a "
                                         "member named …_advertisers.csv)", check="no report")],
                                source=str(path))
            return [(f"{path.name}:{n}", archive.read(n)) for n in names]
    return [(path.name, path.read_bytes())]


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _parse_report(name: str, content: bytes) -> tuple[pl.DataFrame | None, list[Problem]]:
    """One report's rows, typed; or the problems that prevent reading it."""
    match = FILE_NAME.search(name)
    if match is None:
        return None, [Problem(name, "not named like a Meta Ad Library advertiser report "
                              "(FacebookAdLibraryReport_<YYYY-MM-DD>_<country>_last_<n>_days_"
                              "advertisers.csv); the name says the country and the window, so "
                              "keep the name Meta gave the file", check="file name")]
    end = date.fromisoformat(match["date"])
    days = 1 if match["window"] == "yesterday" else int(match["days"])
    start = end - timedelta(days=days - 1)
    try:
        raw = pl.read_csv(io.BytesIO(content), infer_schema=False, encoding="utf8")
    except pl.exceptions.PolarsError as exc:
        return None, [Problem(name, f"cannot be read as CSV: {exc}", check="unreadable")]
    header = raw.columns
    spend_header = SPEND_HEADER.match(header[3]) if len(header) == 5 else None
    expected = [COLUMNS[0], COLUMNS[1], COLUMNS[2], COLUMNS[4]]
    if spend_header is None or [header[i] for i in (0, 1, 2, 4)] != expected:
        return None, [Problem(name, "the header is not a Meta Ad Library advertiser report's "
                              "(Page ID, Page name, Disclaimer, Amount spent (<currency>), "
                              f"Number of ads in Library); found: {', '.join(header)}",
                              check="header")]
    currency = spend_header["currency"]
    amount = pl.col(header[3]).str.strip_chars()
    bucketed = amount == LOW_BUCKET
    number = amount.str.replace_all(",", "").cast(pl.Float64, strict=False)
    low, high = LOW_BUCKET_BOUNDS
    page_id = pl.col("Page ID").str.strip_chars()
    page_name = pl.col("Page name").str.strip_chars()
    frame = raw.with_row_index(SOURCE_ROW, offset=1).select(
        pl.lit(f"{match['country']} {match['window']} to {end}").alias("report"),
        pl.lit(match["country"]).alias("country"),
        pl.lit(currency).alias("currency"),
        pl.lit(start).alias("period_start"),
        pl.lit(end).alias("period_end"),
        page_id.alias("page_id"),
        pl.when(page_id == NO_PAGE_ID).then(pl.format("{}:{}", page_id, page_name))
        .otherwise(page_id).alias("page_key"),
        page_name.alias("page_name"),
        pl.col("Disclaimer").str.strip_chars().alias("disclaimer"),
        (pl.col("Disclaimer").str.strip_chars() == WITHOUT_DISCLAIMER).alias("without_disclaimer"),
        amount.alias("spend_text"),
        pl.when(bucketed).then(pl.lit(low)).otherwise(number).alias("spend_low"),
        pl.when(bucketed).then(pl.lit(high)).otherwise(number).alias("spend_high"),
        pl.when(bucketed).then(pl.lit(LOW_BUCKET_MIDPOINT)).otherwise(number).alias("spend"),
        bucketed.alias("bucketed"),
        pl.col(header[4]).str.strip_chars().cast(pl.Int64, strict=False).alias("ads"),
        pl.col(header[4]).alias("_ads_text"),
        pl.lit(name).alias(SOURCE_FILE),
        pl.col(SOURCE_ROW).cast(pl.Int64),
    )
    problems = []
    checks = [
        (pl.col("page_id").is_null() | ~pl.col("page_id").str.contains(r"^\d+$"), "Page ID",
         "page_id", "a Page ID must be a number"),
        (pl.col("page_name").is_null(), "Page name", "page_name", "the Page name is empty"),
        (pl.col("disclaimer").is_null(), "Disclaimer", "disclaimer", "the disclaimer is empty"),
        (pl.col("spend").is_null() | (pl.col("spend") < 0), header[3], "spend_text",
         f"the amount must be a number >= 0 or {LOW_BUCKET}"),
        (pl.col("ads").is_null() | (pl.col("ads") < 0), header[4], "_ads_text",
         "the number of ads must be a whole number >= 0"),
    ]
    for bad, column, shown, message in checks:
        for row, value in frame.filter(bad).select(SOURCE_ROW, shown).iter_rows():
            problems.append(Problem(name, message, row=row, column=column, value=value,
                                    check=message))
    return frame.drop("_ads_text"), problems


def _check_rows(rows: pl.DataFrame) -> list[Problem]:
    """Across rows and reports: a Page twice with one disclaimer; overlapping windows."""
    problems = []
    twice = rows.filter(pl.struct("report", "page_key", "disclaimer").is_duplicated()
                        & ~pl.struct("report", "page_key", "disclaimer").is_first_distinct())
    for file, row, key, disclaimer in twice.select(SOURCE_FILE, SOURCE_ROW, "page_key",
                                                    "disclaimer").iter_rows():
        problems.append(Problem(file, "this Page is listed twice with the same disclaimer",
                                row=row, column="Page ID", value=f"{key} / {disclaimer}",
                                check="duplicate"))
    windows = (rows.group_by("country", "report", SOURCE_FILE)
               .agg(pl.col("period_start").first(), pl.col("period_end").first())
               .sort("country", "period_start", SOURCE_FILE))
    for country, group in windows.group_by("country", maintain_order=True):
        spans = group.rows(named=True)
        for before, after in itertools.pairwise(spans):
            if after["period_start"] <= before["period_end"]:
                problems.append(Problem(
                    after[SOURCE_FILE], f"its window ({after['period_start']} to "
                    f"{after['period_end']}) overlaps that of {before[SOURCE_FILE]} "
                    f"({before['period_start']} to {before['period_end']}) for country "
                    f"{country[0]}: the same spend would be counted twice; keep reports whose "
                    "windows do not overlap", check="overlap"))
    return problems


def _rates(path: Path, fx_rates: Mapping[str, float] | str | Path | None,
           by_page: pl.DataFrame) -> pl.DataFrame | None:
    """The fx_rates table: given, found beside the reports, or not needed (one currency)."""
    currencies = sorted(by_page["currency"].unique().to_list())
    if fx_rates is None and path.is_dir() and (path / "fx_rates.csv").exists():
        fx_rates = path / "fx_rates.csv"
    if fx_rates is None:
        if len(currencies) > 1:
            raise DataError([Problem(
                str(path), f"the reports are in {len(currencies)} currencies "
                f"({', '.join(currencies)}) and carry no exchange rates: pass fx_rates "
                "(US dollars per unit of each currency) or put fx_rates.csv (columns currency, "
                "rate_to_usd) beside the reports", column="currency", check="currencies")],
                source=str(path))
        return None
    if isinstance(fx_rates, Mapping):
        return pl.DataFrame({"currency": list(fx_rates), "rate_to_usd": [
            float(v) for v in fx_rates.values()], SOURCE_FILE: "fx_rates",
            SOURCE_ROW: list(range(1, len(fx_rates) + 1))})
    file = Path(fx_rates)
    try:
        table = pl.read_csv(file, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError([Problem(file.name, f"cannot be read: {exc}", check="unreadable")],
                        source=str(file)) from None
    return table.with_row_index(SOURCE_ROW, offset=1).with_columns(
        pl.col(SOURCE_ROW).cast(pl.Int64), pl.lit(file.name).alias(SOURCE_FILE))


def _describe(table: str, column: str) -> str:
    return f"{table}.{column} (built from the report)"


__all__ = [
    "LOW_BUCKET",
    "LOW_BUCKET_MIDPOINT",
    "POLICY",
    "WITHOUT_DISCLAIMER",
    "Reports",
    "canonical_tables",
    "pages",
    "read",
    "read_reports",
]

