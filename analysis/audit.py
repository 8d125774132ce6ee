"""Tables the notebooks show: the data audit, and the results of a run read in plain words.

Every function returns a small table (a polars DataFrame) or a few sentences (:class:`Markdown`),
built either from the attributed cases of :func:`analysis.attribute.attribute` or from a run's
results.json. A notebook cell is then one call, and every number it shows comes from the
analysis, never typed in by hand.

* Reading a run: :func:`read_results` (results.json), :func:`read_run` (results.json and the
  attributed cases, read as the run read them).
* The data: :func:`files_table`, :func:`ledger_table`, :func:`exclusions`, :func:`data_period`,
  :func:`distributions`, :func:`cases_by_policy`, :func:`spend_tier_bounds`,
  :func:`watchlist_summary`.
* Comparisons of cases: :func:`spend_tier_rates`, :func:`rates_by_policy`,
  :func:`crude_and_adjusted`, :func:`side_by_side`, :func:`decision_times`, :func:`appeal_summary`.
* Readings of results.json: :func:`conclusions`, :func:`result_summary`, :func:`did_table`,
  :func:`event_study_rows`, :func:`event_study_table`, :func:`power_table`,
  :func:`equivalence_table`, :func:`e_value_table`, :func:`randomization_table`.

:func:`show_tables_plainly` makes polars tables read well in a notebook and in the HTML report:
no row of data types, no quotes around text, numbers to three significant digits, a dash for
a missing value.

Examples
--------
>>> import json
>>> from analysis import audit
>>> results = json.load(open("reports/sample/results.json"))   # doctest: +SKIP
>>> audit.power_table(results)                                  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from analysis.attribute import OUTSIDE_COVERAGE, CoverageLedger, attribute
from analysis.config import WINDOW_DAYS
from analysis.load import Dataset

__all__ = [
    "Markdown",
    "Run",
    "appeal_summary",
    "cases_by_policy",
    "conclusions",
    "crude_and_adjusted",
    "data_period",
    "decision_times",
    "did_table",
    "distributions",
    "e_value_table",
    "equivalence_table",
    "event_study_rows",
    "event_study_table",
    "exclusions",
    "files_table",
    "ledger_table",
    "power_table",
    "randomization_table",
    "rates_by_policy",
    "read_results",
    "read_run",
    "result_summary",
    "show_tables_plainly",
    "side_by_side",
    "spend_tier_bounds",
    "spend_tier_rates",
    "table_html",
    "watchlist_summary",
]

_DASH = "\u2013"
_MINUS = "\u2212"

#: Plain-language reasons for the exclusions of the coverage ledger.
EXCLUSION_REASONS = {
    OUTSIDE_COVERAGE: (
        "The trailing-spend window of the case reaches outside the days the spend table covers, "
        "so the advertiser's spend at flag time is unknown. Counting it as zero would make a big "
        "spender look like an account without ads, so the case is left out of the analysis."
    ),
}

#: How the groups of a comparison are called in tables.
_GROUP_WORDS = {"listed": ("listed accounts", "other accounts"),
                "ever_listed": ("ever-listed accounts", "other accounts"),
                "is_advertiser": ("advertisers", "accounts without ad spend")}


class Markdown(str):
    """Text in Markdown; a notebook shows it formatted, as paragraphs and lists."""

    def _repr_markdown_(self) -> str:
        return str(self)


# ---------------------------------------------------------------------------------------------
# Reading a run
# ---------------------------------------------------------------------------------------------


class Run(NamedTuple):
    """A finished run: its results.json and the cases it analysed."""

    results: dict[str, Any]
    dataset: Dataset
    cases: pl.DataFrame
    ledger: CoverageLedger


def read_results(out_dir: str | Path) -> dict[str, Any]:
    """The results.json of a run folder, as a dict.

    Raises
    ------
    FileNotFoundError
        When the folder has no results.json, saying which command writes it.
    """
    path = Path(out_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run `levelfield analyze --data DATA --out {out_dir}` first")
    return json.loads(path.read_text(encoding="utf-8"))


def read_run(data_dir: str | Path, *, out_dir: str | Path) -> Run:
    """Read a run's results.json and attribute its data again, exactly as the run did.

    The data are read with the source adapter and attributed with the trailing-spend window
    recorded in results.json, so that every table and figure a notebook draws from the cases
    matches the numbers of the tests. The input files are checked against the checksums in
    results.json first: a notebook pointed at other data than the results were computed from
    stops with an error instead of mixing the two.

    Parameters
    ----------
    data_dir : str or Path
        The data the run analysed.
    out_dir : str or Path
        The run folder, holding results.json.

    Returns
    -------
    Run
        ``results`` (dict), ``dataset``, ``cases`` (polars DataFrame) and ``ledger``.

    Raises
    ------
    ValueError
        When the files in ``data_dir`` are not those results.json was computed from.
    """
    from analysis.sources import read_source

    results = read_results(out_dir)
    data = results.get("data") or {}
    dataset = read_source(data_dir, source=str(data.get("source") or "canonical"))
    recorded = {str(f["name"]): str(f["sha256"]) for f in data.get("files") or []}
    found = {f.name: f.sha256 for f in dataset.files}
    if recorded and recorded != found:
        differing = sorted(name for name in set(recorded) | set(found)
                           if recorded.get(name) != found.get(name))
        raise ValueError(
            f"the data in {data_dir} are not the data {Path(out_dir) / 'results.json'} was computed "
            f"from (files that differ: {', '.join(differing)}); rerun `levelfield run` on them")
    window_days = int((results.get("parameters") or {}).get("window_days", WINDOW_DAYS))
    cases, ledger = attribute(dataset, window_days=window_days)
    return Run(results, dataset, cases.collect(), ledger)


# ---------------------------------------------------------------------------------------------
# Showing tables
# ---------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    """A value as a reader wants to see it in a table."""
    if value is None:
        return _DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace("-", _MINUS)
    if isinstance(value, float):
        if math.isnan(value):
            return _DASH
        if math.isinf(value):
            return "\u221e" if value > 0 else f"{_MINUS}\u221e"
        text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
        return text.replace("-", _MINUS) if "e" not in text else text
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


def table_html(frame: pl.DataFrame) -> str:
    """A polars table as plain HTML: header, rows, values formatted by :func:`_cell`.

    Text columns are aligned left and numbers right, so a column of numbers reads down.

    Parameters
    ----------
    frame : polars.DataFrame
        The table.

    Returns
    -------
    str
        A ``<table class="dataframe">`` element.

    Examples
    --------
    >>> import polars as pl
    >>> table_html(pl.DataFrame({"group": ["listed"], "share": [0.30120]}))
    '<table class="dataframe"><thead><tr><th style="text-align:left">group</th><th>share</th></tr></thead><tbody><tr><td style="text-align:left">listed</td><td>0.301</td></tr></tbody></table>'
    """
    text_columns = {name for name, dtype in frame.schema.items() if dtype == pl.String}
    align = {name: ' style="text-align:left"' if name in text_columns else "" for name in frame.columns}
    head = "".join(f"<th{align[c]}>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td{align[c]}>{html.escape(_cell(v))}</td>" for c, v in row.items()) + "</tr>"
        for row in frame.iter_rows(named=True)
    )
    return f'<table class="dataframe"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def show_tables_plainly() -> bool:
    """Show polars tables in this notebook as plain HTML tables (see :func:`table_html`).

    Polars' own notebook display prints the table's shape, a row of data types and quotes around
    every text value: useful when programming, noise in a report. Call this once at the top of a
    notebook. Outside IPython it does nothing.

    Returns
    -------
    bool
        Whether a notebook display was found and set up.

    Examples
    --------
    >>> show_tables_plainly()  # not in a notebook here
    False
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the report extras
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.display_formatter.formatters["text/html"].for_type(pl.DataFrame, table_html)
    return True


# ---------------------------------------------------------------------------------------------
# The data
# ---------------------------------------------------------------------------------------------


def files_table(dataset: Dataset) -> pl.DataFrame:
    """Input files with their row counts and the first 16 hex digits of their SHA-256."""
    return pl.DataFrame(
        {"table": [f.table for f in dataset.files], "file": [f.name for f in dataset.files],
         "rows": [f.rows for f in dataset.files],
         "sha256 (first 16)": [f.sha256[:16] for f in dataset.files]})


def ledger_table(ledger: CoverageLedger) -> pl.DataFrame:
    """The coverage ledger as rows: enforcement rows, then each exclusion, then analysed."""
    stages = [("enforcement rows in the input", ledger.enforcement_rows)]
    stages += [(f"excluded: {reason}", -n) for reason, n in sorted(ledger.excluded.items())]
    stages.append(("analysed", ledger.analysed))
    return pl.DataFrame(stages, schema=["stage", "rows"], orient="row")


def exclusions(ledger: CoverageLedger | Mapping[str, Any]) -> pl.DataFrame:
    """Each reason for leaving enforcement records out, with its count and what it means.

    Parameters
    ----------
    ledger : CoverageLedger or dict
        The ledger of :func:`analysis.attribute.attribute`, or the ``coverage`` entry of
        results.json.

    Returns
    -------
    polars.DataFrame
        ``reason``, ``rows``, ``share of input (%)`` and ``what it means``, largest first; a
        single row saying so when nothing was excluded.

    Examples
    --------
    >>> exclusions({"enforcement_rows": 100, "analysed": 90,
    ...             "excluded": {"spend window outside spend coverage": 10}})["rows"].to_list()
    [10]
    """
    coverage = ledger.to_dict() if isinstance(ledger, CoverageLedger) else dict(ledger)
    total = int(coverage.get("enforcement_rows") or 0)
    excluded = sorted((coverage.get("excluded") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    schema = {"reason": pl.String, "rows": pl.Int64, "share of input (%)": pl.Float64,
              "what it means": pl.String}
    if not excluded:
        return pl.DataFrame([("nothing excluded", 0, 0.0, "Every enforcement record was analysed.")],
                            schema=schema, orient="row")
    rows = [(reason, int(n), 100 * n / total if total else None,
             EXCLUSION_REASONS.get(reason, "Left out when the source was read (see its adapter)."))
            for reason, n in excluded]
    return pl.DataFrame(rows, schema=schema, orient="row")


def data_period(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """What the analysed cases cover: dates, accounts, advertisers, the watchlist.

    Returns
    -------
    polars.DataFrame
        Two text columns, ``item`` and ``value``.
    """
    summary = cases.lazy().select(
        cases=pl.len(),
        first=pl.col("flag_date").min(),
        last=pl.col("flag_date").max(),
        accounts=pl.col("account_id").n_unique(),
        advertisers=pl.col("advertiser_id").drop_nulls().n_unique(),
        listed_accounts=pl.col("account_id").filter(pl.col("ever_listed")).n_unique(),
        directive=pl.col("directive_date").min(),
    ).collect().row(0, named=True)
    items = [
        ("analysed cases", _cell(summary["cases"])),
        ("first flag date", _cell(summary["first"])),
        ("last flag date", _cell(summary["last"])),
        ("accounts with cases", _cell(summary["accounts"])),
        ("advertisers behind them", _cell(summary["advertisers"])),
        ("accounts ever on the watchlist", _cell(summary["listed_accounts"])),
        ("directive date (earliest listing)", _cell(summary["directive"])
         if summary["directive"] is not None else "no watchlist"),
    ]
    return pl.DataFrame(items, schema=["item", "value"], orient="row")


def distributions(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Quartiles of the numbers the tests rest on: severity, spend, decision time, cases per account.

    A median says what is typical; the quartiles say how spread out the values are; the
    maximum shows outliers (one account with thousands of cases weighs on a crude comparison,
    which is why the tests cluster by account).

    Returns
    -------
    polars.DataFrame
        ``variable``, ``counted`` (which cases), ``n``, ``missing``, ``min``, ``25%``,
        ``median``, ``75%``, ``max``.
    """
    lf = cases.lazy()
    columns = [
        ("severity (0 to 1)", "all cases", lf.select(pl.col("severity").alias("v"))),
        ("trailing spend (USD)", "cases of advertisers",
         lf.filter(pl.col("is_advertiser")).select(pl.col("trailing_spend").alias("v"))),
        ("hours to a decision", "decided cases",
         lf.filter(pl.col("decided")).select(pl.col("decision_hours").alias("v"))),
        ("cases per account", "accounts with cases",
         lf.group_by("account_id").agg(pl.len().cast(pl.Float64).alias("v"))),
    ]
    rows = []
    for name, counted, values in columns:
        stats = values.select(
            n=pl.col("v").count(), missing=pl.col("v").null_count(),
            min=pl.col("v").min(), q1=pl.col("v").quantile(0.25, "linear"),
            median=pl.col("v").median(), q3=pl.col("v").quantile(0.75, "linear"),
            max=pl.col("v").max(),
        ).collect().row(0, named=True)
        rows.append({"variable": name, "counted": counted, **stats})
    schema = {"variable": pl.String, "counted": pl.String, "n": pl.Int64, "missing": pl.Int64,
              "min": pl.Float64, "q1": pl.Float64, "median": pl.Float64, "q3": pl.Float64,
              "max": pl.Float64}
    return pl.DataFrame(rows, schema=schema).rename({"q1": "25%", "q3": "75%"})


def cases_by_policy(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Per policy: cases, share enforced, share of cases from advertisers and listed accounts (%)."""
    return (
        cases.lazy().group_by("policy")
        .agg(pl.len().alias("cases"), (pl.col("enforced").mean() * 100).alias("enforced (%)"),
             (pl.col("is_advertiser").mean() * 100).alias("from advertisers (%)"),
             (pl.col("listed").mean() * 100).alias("from listed accounts (%)"))
        .sort("cases", "policy", descending=[True, False]).collect()
    )


def spend_tier_bounds(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """The trailing-spend range, case count and enforcement share (%) of each spend tier."""
    return (cases.lazy().group_by("spend_tier")
            .agg(pl.len().alias("cases"), pl.col("trailing_spend").min().alias("min spend (USD)"),
                 pl.col("trailing_spend").max().alias("max spend (USD)"),
                 (pl.col("enforced").mean() * 100).alias("enforced (%)"))
            .sort("spend_tier").collect())


def watchlist_summary(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Accounts, cases and enforcement (%) of listed accounts before and while listed, and of the others."""
    group = (pl.when(~pl.col("ever_listed")).then(pl.lit("other accounts"))
             .when(pl.col("listed")).then(pl.lit("listed accounts, while listed"))
             .otherwise(pl.lit("listed accounts, not (yet) listed")))
    return (cases.lazy().with_columns(group=group).group_by("group")
            .agg(pl.col("account_id").n_unique().alias("accounts"), pl.len().alias("cases"),
                 (pl.col("enforced").mean() * 100).alias("enforced (%)"))
            .sort("group").collect())


# ---------------------------------------------------------------------------------------------
# Comparisons of cases
# ---------------------------------------------------------------------------------------------


def spend_tier_rates(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Enforcement rate of each spend tier with its 95% interval: the table behind the tier chart.

    The numbers are those of :func:`analysis.plots.enforcement_by_tier_data` (Wilson score
    intervals), in percent. Cases of accounts listed at flag time form their own row.

    Returns
    -------
    polars.DataFrame
        ``group``, ``trailing spend (USD)`` (the tier's range), ``cases``, ``enforced``,
        ``enforced (%)``, ``95% CI low (%)``, ``95% CI high (%)``.
    """
    from analysis.plots import _usd, enforcement_by_tier_data

    data = enforcement_by_tier_data(cases)
    spend = [
        "none" if row["spend_tier"] == 0
        else f"{_usd(row['spend_min'])} to {_usd(row['spend_max'])}" if row["spend_min"] is not None
        else _DASH
        for row in data.iter_rows(named=True)
    ]
    return data.select(
        "group",
        pl.Series("trailing spend (USD)", spend, dtype=pl.String),
        "cases",
        "enforced",
        (pl.col("rate") * 100).alias("enforced (%)"),
        (pl.col("ci_low") * 100).alias("95% CI low (%)"),
        (pl.col("ci_high") * 100).alias("95% CI high (%)"),
    )


def rates_by_policy(cases: pl.DataFrame | pl.LazyFrame, *, group: str = "listed") -> pl.DataFrame:
    """Enforcement rate per policy for a group and for everyone else, with each group's policy mix.

    This is the table that shows Simpson's paradox when there is one. If a group's cases fall
    mostly under policies that are rarely enforced, its overall (crude) enforcement rate is low
    even when, policy by policy, it is enforced as often as anyone. The adjusted tests compare
    the rates within each policy (and severity band), row by row of this table.

    Parameters
    ----------
    cases : polars DataFrame or LazyFrame
        The attributed cases.
    group : str, default "listed"
        Boolean column of the group: ``"listed"`` (at flag time), ``"ever_listed"`` or
        ``"is_advertiser"``.

    Returns
    -------
    polars.DataFrame
        One row per policy, largest first, then a row "all policies" (the crude comparison):
        ``policy``, and for the group and for the others the number of cases, the share of the
        group's cases in that policy (%) and the share enforced (%).

    Examples
    --------
    >>> import polars as pl
    >>> cases = pl.DataFrame({"policy": ["spam", "spam", "hate", "hate"],
    ...                       "listed": [True, False, True, False],
    ...                       "enforced": [True, False, True, True]})
    >>> rates_by_policy(cases)["policy"].to_list()
    ['hate', 'spam', 'all policies']
    """
    inside, outside = _GROUP_WORDS.get(group, (group, f"not {group}"))
    lf = cases.lazy().select("policy", pl.col(group).fill_null(False).alias("_in"), "enforced")

    def side(flag: bool, label: str) -> list[pl.Expr]:
        chosen = pl.col("_in") == flag
        count = chosen.sum()
        return [
            count.alias(f"{label}: cases"),
            (pl.col("enforced").filter(chosen).mean() * 100).alias(f"{label}: enforced (%)"),
        ]

    per_policy = lf.group_by("policy").agg(*side(True, inside), *side(False, outside))
    overall = lf.select(pl.lit("all policies").alias("policy"), *side(True, inside), *side(False, outside))
    table = pl.concat([per_policy.sort(pl.col(f"{inside}: cases") + pl.col(f"{outside}: cases"),
                                       "policy", descending=[True, False]),
                       overall]).collect()
    totals = {label: table.filter(pl.col("policy") == "all policies")[f"{label}: cases"].item()
              for label in (inside, outside)}
    return table.with_columns(
        (pl.col(f"{label}: cases") * 100 / totals[label] if totals[label] else pl.lit(None))
        .cast(pl.Float64).alias(f"{label}: share of its cases (%)")
        for label in (inside, outside)
    ).select(
        "policy",
        f"{inside}: cases", f"{inside}: share of its cases (%)", f"{inside}: enforced (%)",
        f"{outside}: cases", f"{outside}: share of its cases (%)", f"{outside}: enforced (%)",
    ).with_columns(pl.col(f"{inside}: cases", f"{outside}: cases").cast(pl.Int64))


#: Crude counterparts of the adjusted tests, computed by :func:`crude_and_adjusted`.
_COMPARISONS = {
    "listed_adjusted": "Listed vs other accounts",
    "advertiser_adjusted": "Advertisers vs accounts without ad spend",
    "spend_adjusted": "Per tenfold trailing spend (advertisers)",
    "spend_trend": "Per step up the spend tiers",
}


def crude_and_adjusted(
    cases: pl.DataFrame | pl.LazyFrame,
    *,
    results: Mapping[str, Any],
    tests: Sequence[str] = tuple(_COMPARISONS),
) -> pl.DataFrame:
    """Each adjusted comparison of the battery next to its crude counterpart.

    The adjusted estimates are those of results.json. The crude ones compare all cases, with
    nothing held equal, using the same cases and the same clustering by account:

    * ``listed_adjusted``: the battery's own crude test, ``listed_unadjusted``.
    * ``advertiser_adjusted``: the crude odds ratio, advertisers vs accounts without ad spend
      (:func:`analysis.stats.odds_ratio`, delete-one-account jackknife).
    * ``spend_adjusted``: logistic regression on log10 trailing spend without policy, severity
      or listing (:func:`analysis.stats.logistic`, SEs clustered by account).
    * ``spend_trend``: the trend across spend tiers without strata (:func:`analysis.stats.trend`).

    Parameters
    ----------
    cases : polars DataFrame or LazyFrame
        The attributed cases the results were computed from.
    results : dict
        The content of results.json.
    tests : list of str, optional
        The adjusted tests to show, by id (default: all four above).

    Returns
    -------
    polars.DataFrame
        One row per comparison: ``comparison``, ``crude``, ``crude_ci_low``, ``crude_ci_high``,
        ``crude_test`` (the test id, or "computed here"), ``adjusted``, ``adjusted_ci_low``,
        ``adjusted_ci_high``, ``adjusted_test``. Odds ratios; null where a test did not run.
        :func:`analysis.plots.crude_vs_adjusted` draws it.
    """
    from analysis.cells import account_cells, spend_cells
    from analysis.stats import logistic, odds_ratio, trend

    unknown = [t for t in tests if t not in _COMPARISONS]
    if unknown:
        raise ValueError(f"no crude counterpart is defined for {', '.join(unknown)}; "
                         f"choose from {', '.join(_COMPARISONS)}")
    by_id = _by_id(results)
    lazy = cases.lazy()
    # only the cells are collected, never all the cases: the cases may be a large lazy query
    cells = account_cells(lazy)
    if cells.height == 0:
        cells = None
    rows = []
    for test in tests:
        adjusted = _ok(by_id.get(test))
        crude_test = "listed_unadjusted" if test == "listed_adjusted" else "computed here"
        if test == "listed_adjusted":
            crude = _ok(by_id.get("listed_unadjusted"))
            crude_values = (crude["estimate"], crude["ci_low"], crude["ci_high"]) if crude else None
        else:
            crude_values = None
            try:
                if cells is None:
                    raise ValueError("no cases")
                if test == "advertiser_adjusted":
                    estimate = odds_ratio(cells, outcome="enforced", group="is_advertiser",
                                          count="n", cluster="account_id")
                elif test == "spend_adjusted":
                    estimate = logistic(spend_cells(lazy), outcome="enforced",
                                        exposure="log10_spend", count="n", cluster="account_id")
                else:
                    estimate = trend(cells, outcome="enforced", score="spend_tier", count="n",
                                     cluster="account_id")
                crude_values = (estimate.estimate, estimate.ci_low, estimate.ci_high)
            except ValueError:
                # the data cannot support the comparison (e.g. no advertisers): shown as missing
                crude_values = None
        rows.append({
            "comparison": _COMPARISONS[test],
            "crude": crude_values[0] if crude_values else None,
            "crude_ci_low": crude_values[1] if crude_values else None,
            "crude_ci_high": crude_values[2] if crude_values else None,
            "crude_test": crude_test,
            "adjusted": adjusted["estimate"] if adjusted else None,
            "adjusted_ci_low": adjusted["ci_low"] if adjusted else None,
            "adjusted_ci_high": adjusted["ci_high"] if adjusted else None,
            "adjusted_test": test,
        })
    schema = {"comparison": pl.String, "crude": pl.Float64, "crude_ci_low": pl.Float64,
              "crude_ci_high": pl.Float64, "crude_test": pl.String, "adjusted": pl.Float64,
              "adjusted_ci_low": pl.Float64, "adjusted_ci_high": pl.Float64,
              "adjusted_test": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


def side_by_side(comparisons: pl.DataFrame) -> pl.DataFrame:
    """The table of :func:`crude_and_adjusted` for reading: estimates with intervals, and a verdict.

    An interval "shows a difference" here when it excludes 1 (95%, before adjustment for the
    number of tests); the reading compares what the crude and the adjusted estimate say.

    Parameters
    ----------
    comparisons : polars.DataFrame
        The output of :func:`crude_and_adjusted`.

    Returns
    -------
    polars.DataFrame
        ``comparison``, ``crude OR (95% CI)``, ``crude from``, ``adjusted OR (95% CI)``,
        ``adjusted test`` and ``reading``, all text.

    Examples
    --------
    >>> import polars as pl
    >>> table = pl.DataFrame({"comparison": ["advertisers"], "crude": [0.49],
    ...     "crude_ci_low": [0.43], "crude_ci_high": [0.55], "crude_test": ["computed here"],
    ...     "adjusted": [0.89], "adjusted_ci_low": [0.78], "adjusted_ci_high": [1.02],
    ...     "adjusted_test": ["advertiser_adjusted"]})
    >>> side_by_side(table)["reading"].item()[:48]
    'The crude difference vanishes like with like: it'
    """
    def shown(estimate: Any, low: Any, high: Any) -> str:
        if estimate is None:
            return _DASH
        if low is None or high is None:
            return _value(estimate, "OR")
        return f"{_value(estimate, 'OR')} ({_value(low, 'OR')} to {_value(high, 'OR')})"

    def side(low: Any, high: Any) -> int | None:
        """-1 below 1, +1 above 1, 0 when the interval contains 1, None when unknown."""
        if low is None or high is None:
            return None
        return -1 if high < 1 else 1 if low > 1 else 0

    rows = []
    for row in comparisons.iter_rows(named=True):
        crude = side(row["crude_ci_low"], row["crude_ci_high"])
        adjusted = side(row["adjusted_ci_low"], row["adjusted_ci_high"])
        if crude is None or adjusted is None:
            reading = "One of the two could not be estimated."
        elif crude and not adjusted:
            reading = ("The crude difference vanishes like with like: it comes from the mix of "
                       "cases each group is flagged for, not from how the group is treated.")
        elif adjusted and not crude:
            reading = "A difference appears only like with like: the mix of cases hid it."
        elif crude and adjusted and crude != adjusted:
            reading = ("The two point in opposite directions (Simpson's paradox); the adjusted "
                       "estimate answers the question.")
        elif crude and adjusted:
            closer = abs(math.log(row["adjusted"])) < abs(math.log(row["crude"]))
            reading = ("Both show a difference in the same direction; like with like it is "
                       f"{'smaller' if closer else 'larger'}.")
        else:
            reading = "Neither shows a clear difference."
        rows.append((row["comparison"], shown(row["crude"], row["crude_ci_low"], row["crude_ci_high"]),
                     row.get("crude_test") or _DASH,
                     shown(row["adjusted"], row["adjusted_ci_low"], row["adjusted_ci_high"]),
                     row.get("adjusted_test") or _DASH, reading))
    return pl.DataFrame(rows, schema=["comparison", "crude OR (95% CI)", "crude from",
                                      "adjusted OR (95% CI)", "adjusted test", "reading"],
                        orient="row")


def decision_times(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Median hours from flag to decision, listed accounts' cases and the others', with 95% CIs.

    From the Kaplan-Meier curves (:func:`analysis.stats.median_survival`): cases still open
    when the data end count as waiting at least that long, which a plain median of the decided
    cases would ignore.

    Returns
    -------
    polars.DataFrame
        ``group``, ``cases``, ``decided``, ``median hours``, ``95% CI low``, ``95% CI high``.
    """
    from analysis.plots import _survival_label
    from analysis.stats import median_survival

    medians = median_survival(cases, duration="decision_hours", event="decided", group="listed")
    return pl.DataFrame({
        "group": [_survival_label(g) for g in medians["group"].to_list()],
        "cases": medians["n"].cast(pl.Int64),
        "decided": medians["events"].cast(pl.Int64),
        "median hours": medians["median"],
        "95% CI low": medians["ci_low"],
        "95% CI high": medians["ci_high"],
    }).sort("group")


def appeal_summary(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """How often enforced cases were appealed, and how often appeals reversed the decision.

    Returns
    -------
    polars.DataFrame
        For cases of accounts listed at flag time and for all others: ``enforced cases``,
        ``appealed``, ``appealed (%)``, ``reversed``, ``reversed (% of appeals)``.

    Examples
    --------
    >>> import polars as pl
    >>> cases = pl.DataFrame({"listed": [True, True, False], "enforced": [True, True, True],
    ...                       "appealed": [True, False, True], "reversed": [True, False, False]})
    >>> appeal_summary(cases)["reversed (% of appeals)"].to_list()
    [100.0, 0.0]
    """
    enforced = cases.lazy().filter(pl.col("enforced"))
    appealed = pl.col("appealed").fill_null(False)
    reversed_ = appealed & pl.col("reversed").fill_null(False)
    return (
        enforced.group_by(pl.col("listed").fill_null(False).alias("_listed"))
        .agg(pl.len().cast(pl.Int64).alias("enforced cases"),
             appealed.sum().cast(pl.Int64).alias("appealed"),
             reversed_.sum().cast(pl.Int64).alias("reversed"))
        .with_columns(
            pl.when(pl.col("_listed")).then(pl.lit("cases of listed accounts"))
            .otherwise(pl.lit("cases of other accounts")).alias("group"),
            (pl.col("appealed") * 100 / pl.col("enforced cases")).alias("appealed (%)"),
            pl.when(pl.col("appealed") > 0).then(pl.col("reversed") * 100 / pl.col("appealed"))
            .alias("reversed (% of appeals)"),
        )
        .sort("group")
        .select("group", "enforced cases", "appealed", "appealed (%)", "reversed",
                "reversed (% of appeals)")
        .collect()
    )


# ---------------------------------------------------------------------------------------------
# Readings of results.json
# ---------------------------------------------------------------------------------------------


def _by_id(results: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    tests = results.get("tests", []) if isinstance(results, Mapping) else results
    return {str(t["id"]): dict(t) for t in tests}


def _ok(test: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return test if test is not None and test.get("status") == "ok" else None


def _alpha(results: Mapping[str, Any]) -> float:
    return float(((results.get("parameters") or {}) if isinstance(results, Mapping) else {})
                 .get("alpha", 0.05))


def _p(value: Any) -> str:
    from analysis.findings import fmt_p

    return fmt_p(value) if isinstance(value, (int, float)) else _DASH


def _value(value: Any, scale: str | None) -> str:
    """An estimate on its scale: ratios to 2 decimals, differences in percentage points."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return _DASH
    text = f"{value * 100:+.1f} points" if scale == "probability" else f"{value:.2f}"
    return text.replace("-", _MINUS)


def _interval(test: Mapping[str, Any]) -> str:
    low, high, scale = test.get("ci_low"), test.get("ci_high"), test.get("scale")
    if low is None or high is None:
        return _DASH
    return f"{_value(low, scale)} to {_value(high, scale)}".replace(" points to", " to")


def conclusions(results: Mapping[str, Any], *, tests: Sequence[str]) -> Markdown:
    """The plain-language conclusions of some tests, as a list, each naming its test.

    Parameters
    ----------
    results : dict
        The content of results.json.
    tests : list of str
        Test ids, in the order to show them.

    Returns
    -------
    Markdown
        One bullet per test: its conclusion (or why it did not run) and its id.

    Examples
    --------
    >>> conclusions({"tests": [{"id": "spend_trend", "status": "ok", "conclusion": "None found."}]},
    ...             tests=["spend_trend"])
    '- None found. *[test: `spend_trend`]*'
    """
    by_id = _by_id(results)
    lines = []
    for test_id in tests:
        test = by_id.get(test_id)
        if test is None:
            text = "This test is not in the results."
        elif test.get("status") != "ok":
            text = f"Not tested: {test.get('reason') or 'no reason recorded'}."
        else:
            text = str(test.get("conclusion") or test.get("question") or "")
        lines.append(f"- {text} *[test: `{test_id}`]*")
    return Markdown("\n".join(lines))


# Details of results.json worth showing, in words; each is shown when a test has it
_DETAIL_WORDS = (
    ("n_events", "decisions observed"),
    ("n_events_group", "decisions observed, listed accounts"),
    ("p_value_model", "p if cases were independent (no clustering)"),
    ("naive_p_value", "p if cases were independent (no clustering)"),
    ("logrank_p_value", "log-rank test p (cases treated as independent)"),
    ("cmh_p_value", "Cochran-Mantel-Haenszel test p (cases treated as independent)"),
    ("breslow_day_p_value", "Breslow-Day p (does the odds ratio differ between strata?)"),
    ("raw_did", "difference-in-differences of the raw rates (nothing held equal)"),
)


def result_summary(results: Mapping[str, Any], *, test: str) -> pl.DataFrame:
    """One test of results.json as a two-column table in plain words.

    Parameters
    ----------
    results : dict
        The content of results.json.
    test : str
        The test's id, e.g. ``"decision_speed"``.

    Returns
    -------
    polars.DataFrame
        ``item`` and ``value`` (text): the question, the estimand, the estimate with its 95%
        CI, p-values, cases and accounts, the minimum detectable effect, the method and the
        further statistics worth knowing (e.g. the log-rank test of a Cox model).

    Examples
    --------
    >>> result_summary({"tests": [{"id": "x", "status": "skipped", "question": "Q?",
    ...                          "reason": "no data"}]}, test="x")["value"].to_list()
    ['Q?', 'not run: no data']
    """
    found = _by_id(results).get(test)
    if found is None:
        raise ValueError(f"results.json has no test {test!r}")
    items = [("question", str(found.get("question") or ""))]
    if found.get("status") != "ok":
        items.append(("result", f"not run: {found.get('reason') or 'no reason recorded'}"))
        return pl.DataFrame(items, schema=["item", "value"], orient="row")
    scale = found.get("scale")
    details = found.get("details") or {}
    items += [
        ("what is estimated", str(found.get("estimand") or "")),
        ("estimate", f"{_SCALE_WORDS.get(scale, scale)} {_value(found.get('estimate'), scale)}"),
        ("95% confidence interval", _interval(found)),
        ("p", _p(found.get("p_value"))),
        ("p adjusted for the number of tests", _p(found.get("p_adjusted"))),
        ("cases", _cell(found.get("n"))),
        ("accounts (clusters)", _cell(found.get("n_clusters"))),
        ("minimum detectable effect (80% power)", _value(found.get("mde"), scale)),
    ]
    seen = set()
    for key, words in _DETAIL_WORDS:
        if key in details and words not in seen:
            value = details[key]
            seen.add(words)
            if key.endswith("p_value"):
                items.append((words, _p(value)))
            elif key == "raw_did":
                items.append((words, _value(value, "probability")))
            else:
                items.append((words, _cell(value)))
    randomized = details.get("randomization")
    if isinstance(randomized, Mapping):
        items.append((f"randomization-inference p ({randomized.get('permutations')} reshuffles)",
                      _p(randomized.get("p_value"))))
    items += [("method", str(found.get("method") or "")), ("conclusion", str(found.get("conclusion") or ""))]
    return pl.DataFrame(items, schema=["item", "value"], orient="row")


_SCALE_WORDS = {"OR": "odds ratio", "HR": "hazard ratio", "RR": "risk ratio",
                "probability": "difference in enforcement probability"}


def did_table(results: Mapping[str, Any]) -> pl.DataFrame:
    """Enforcement rates before and after the directive, listed accounts against the others.

    The raw rates behind the difference-in-differences test (``directive_did``): how the share
    of cases enforced changed for each group, and the difference of those changes. The test's
    own estimate also holds policy and severity fixed, so it can differ slightly.

    Returns
    -------
    polars.DataFrame
        Rows "ever-listed accounts", "other accounts" and "difference"; columns ``before (%)``,
        ``after (%)``, ``change (points)``, ``cases before``, ``cases after``. Empty when the
        test did not run.
    """
    schema = {"group": pl.String, "before (%)": pl.Float64, "after (%)": pl.Float64,
              "change (points)": pl.Float64, "cases before": pl.Int64, "cases after": pl.Int64}
    test = _ok(_by_id(results).get("directive_did"))
    means = (test or {}).get("details", {}).get("group_means")
    counts = (test or {}).get("details", {}).get("group_rows") or {}
    if not means:
        return pl.DataFrame(schema=schema)
    rows = []
    for label, key in (("ever-listed accounts", "treated"), ("other accounts", "control")):
        before, after = means[f"{key}_pre"], means[f"{key}_post"]
        rows.append((label, before * 100, after * 100, (after - before) * 100,
                     counts.get(f"{key}_pre"), counts.get(f"{key}_post")))
    rows.append(("difference (listed minus other)", rows[0][1] - rows[1][1], rows[0][2] - rows[1][2],
                 rows[0][3] - rows[1][3], None, None))
    return pl.DataFrame(rows, schema=schema, orient="row")


def event_study_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The month-by-month rows of the event study (details of ``directive_did``); empty if none.

    Examples
    --------
    >>> event_study_rows({"tests": []})
    []
    """
    test = _ok(_by_id(results).get("directive_did"))
    return list(((test or {}).get("details") or {}).get("event_study") or [])


def event_study_table(results: Mapping[str, Any]) -> pl.DataFrame:
    """The event study as a table: per month, the listed-vs-other gap relative to the month before.

    Returns
    -------
    polars.DataFrame
        ``month`` (relative to the directive; the reference month is marked), ``cases of
        listed accounts``, ``cases of other accounts``, ``gap (points)``, ``95% CI low``,
        ``95% CI high`` (percentage points) and ``p``.
    """
    from analysis.plots import event_study_data

    data = event_study_data(event_study_rows(results))
    months = [
        (f"{m:+d}".replace("-", _MINUS) if m else "0") + (" (reference)" if ref else "")
        for m, ref in zip(data["event_time"].to_list(), data["reference"].to_list())
    ]
    return pl.DataFrame({
        "month": pl.Series(months, dtype=pl.String),
        "cases of listed accounts": data["n_treated"],
        "cases of other accounts": data["n_control"],
        "gap (points)": data["estimate"] * 100,
        "95% CI low": data["ci_low"] * 100,
        "95% CI high": data["ci_high"] * 100,
        "p": pl.Series([_p(p) if not ref else _DASH
                        for p, ref in zip(data["p_value"].to_list(), data["reference"].to_list())],
                       dtype=pl.String),
    })


def power_table(results: Mapping[str, Any]) -> pl.DataFrame:
    """Each test's estimate next to the smallest effect it could reliably have detected.

    The minimum detectable effect (MDE) is the effect a test would find 4 times in 5 (80%
    power) at the 5% level, given how much data it had. A test that found nothing says little
    about effects smaller than its MDE; a test whose MDE is large had too little data to settle
    the question either way.

    Returns
    -------
    polars.DataFrame
        ``test``, ``estimate``, ``95% CI``, ``adjusted p``, ``MDE`` (on the same scale) and
        ``reading`` (one sentence). Text columns, formatted.
    """
    alpha = _alpha(results)
    rows = []
    for test in _by_id(results).values():
        if test["id"] == "equal_treatment":
            continue  # re-reads listed_adjusted; its own reading is in equivalence_table
        if test.get("status") != "ok":
            rows.append((test["id"], _DASH, _DASH, _DASH, _DASH,
                         f"Not run: {test.get('reason') or 'no reason recorded'}."))
            continue
        scale, mde = test.get("scale"), test.get("mde")
        p = test.get("p_adjusted") if test.get("p_adjusted") is not None else test.get("p_value")
        if p is not None and p < alpha:
            reading = "A difference was found (adjusted p below the significance level)."
        elif isinstance(mde, (int, float)):
            reading = (f"No clear difference. An effect of {_value(mde, scale)} or stronger would "
                       "have been detected 4 times in 5; a weaker one could have been missed.")
        else:
            reading = "No clear difference; no minimum detectable effect could be computed."
        rows.append((test["id"], _value(test.get("estimate"), scale), _interval(test), _p(p),
                     _value(mde, scale), reading))
    return pl.DataFrame(rows, schema=["test", "estimate", "95% CI", "adjusted p", "MDE", "reading"],
                        orient="row")


_EQUIVALENCE_WORDS = {
    "equivalent": "Equal treatment shown: the whole 90% interval lies inside the margin.",
    "equivalent, though different": ("Equal within the margin, though a difference smaller than the "
                                      "margin was detected."),
    "different": ("Equal treatment cannot be shown, and a difference was found: the interval "
                  "reaches outside the margin."),
    "inconclusive": ("Neither equal treatment nor a difference can be shown: the data are too few "
                     "to tell."),
}


def equivalence_table(results: Mapping[str, Any]) -> pl.DataFrame:
    """The equivalence test (``equal_treatment``): can equal treatment be shown within a margin?

    A test that finds no difference has not shown that there is none. Equivalence testing turns
    the question around: equal treatment is shown when the 90% confidence interval of the
    adjusted odds ratio lies entirely inside a margin set in advance (by default 0.80 to 1.25:
    odds at most a fifth lower or a quarter higher), by two one-sided tests (TOST).

    Returns
    -------
    polars.DataFrame
        ``item`` and ``value`` (text): the test compared, the margin and why it was chosen, the
        90% CI, the TOST p-value, whether equivalence is shown, and a reading.
    """
    test = _by_id(results).get("equal_treatment")
    if test is None:
        return pl.DataFrame([("result", "no equivalence test in the results")],
                            schema=["item", "value"], orient="row")
    if test.get("status") != "ok":
        items = [("result", f"not run: {test.get('reason') or 'no reason recorded'}")]
        return pl.DataFrame(items, schema=["item", "value"], orient="row")
    details = test.get("details") or {}
    bounds = details.get("bounds") or [None, None]
    reading = details.get("reading")
    items = [
        ("question", str(test.get("question") or "")),
        ("margin (odds ratio)", f"{_value(bounds[0], 'OR')} to {_value(bounds[1], 'OR')}"),
        ("why this margin", str(details.get("margin_rationale") or _DASH)),
        ("adjusted odds ratio", _value(test.get("estimate"), "OR")),
        ("90% confidence interval", _interval(test)),
        ("TOST p (equivalence shown when below the significance level)", _p(test.get("p_value"))),
        ("equivalence shown", "yes" if details.get("equivalent") else "no"),
        ("reading", _EQUIVALENCE_WORDS.get(reading, str(test.get("conclusion") or _DASH))),
    ]
    return pl.DataFrame(items, schema=["item", "value"], orient="row")


def e_value_table(results: Mapping[str, Any]) -> pl.DataFrame:
    """E-values: how strong a hidden factor would have to be to explain each finding away.

    An E-value (VanderWeele and Ding 2017) is the smallest risk ratio that an unmeasured
    factor would need with *both* the group (e.g. being listed) and enforcement to make the
    estimate vanish. 1 means no confounding is needed; 2.5 means a factor that multiplies both
    by 2.5 could do it, but a weaker one could not. The E-value of the confidence limit says the
    same for making the result no longer significant. Odds ratios of a common outcome are first
    converted to risk ratios (square-root rule), as the battery does.

    Returns
    -------
    polars.DataFrame
        ``test``, ``estimate``, ``95% CI``, ``E-value (estimate)``, ``E-value (CI limit)`` and
        ``reading``, for every test that has E-values in results.json.
    """
    rows = []
    for test in _by_id(results).values():
        values = ((test.get("details") or {}).get("e_value") if test.get("status") == "ok" else None)
        if not isinstance(values, Mapping):
            continue
        point, limit = values.get("point"), values.get("ci")
        if isinstance(limit, (int, float)) and limit <= 1.0:
            reading = ("The confidence interval already includes no difference: there is no finding "
                       "for a hidden factor to explain away.")
        else:
            reading = (f"A hidden factor tied to both group and enforcement by a risk ratio of "
                       f"{_cell(point)} each could explain the estimate away; to make it no longer "
                       f"significant, {_cell(limit)} would do. Weaker factors could not.")
        rows.append((test["id"], _value(test.get("estimate"), test.get("scale")), _interval(test),
                     point, limit, reading))
    schema = {"test": pl.String, "estimate": pl.String, "95% CI": pl.String,
              "E-value (estimate)": pl.Float64, "E-value (CI limit)": pl.Float64, "reading": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


def randomization_table(results: Mapping[str, Any]) -> pl.DataFrame:
    """Randomization-inference p-values next to the usual (asymptotic) ones.

    The usual p-value relies on large-sample theory. Randomization inference asks instead: if
    the watchlist had been drawn at random among comparable accounts (advertisers among
    advertisers), how often would a difference as large as the one seen arise? It reshuffles
    which accounts are listed many times and counts. With few listed accounts, or a handful
    of accounts with many cases, it is the more trustworthy of the two. The smallest p-value it
    can give is 1 / (reshuffles + 1).

    Returns
    -------
    polars.DataFrame
        ``test``, ``p (asymptotic)``, ``p (randomization)``, ``reshuffles``, ``smallest
        possible p`` and ``reading``.
    """
    alpha = _alpha(results)
    rows = []
    for test in _by_id(results).values():
        randomized = ((test.get("details") or {}).get("randomization")
                      if test.get("status") == "ok" else None)
        if not isinstance(randomized, Mapping):
            continue
        asymptotic, permuted = test.get("p_value"), randomized.get("p_value")
        reshuffles = randomized.get("permutations")
        floor = 1 / (reshuffles + 1) if isinstance(reshuffles, int) else None
        if not isinstance(asymptotic, (int, float)) or not isinstance(permuted, (int, float)):
            reading = "One of the p-values is missing."
        elif (asymptotic < alpha) == (permuted < alpha):
            side = "below" if permuted < alpha else "above"
            reading = f"The two agree: both are {side} the significance level ({_cell(alpha)})."
        else:
            reading = ("The two disagree about significance; rely on the randomization p-value, "
                       "which makes no large-sample assumption.")
        if floor is not None and isinstance(permuted, (int, float)) and permuted <= floor:
            reading += " The randomization p is the smallest the reshuffles can show."
        rows.append((test["id"], _p(asymptotic), _p(permuted), reshuffles, floor, reading))
    schema = {"test": pl.String, "p (asymptotic)": pl.String, "p (randomization)": pl.String,
              "reshuffles": pl.Int64, "smallest possible p": pl.Float64, "reading": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")
