"""Figures of the case studies, each with the table behind it, in the house style.

Like :mod:`analysis.plots`, every figure function returns a matplotlib
:class:`~matplotlib.figure.Figure` and has a ``*_data`` companion returning the numbers drawn
as a polars DataFrame; :func:`analysis.plots.save_figure` writes both.

* Any study: :func:`data_audit` (from the rows of the published files to the cases analysed) and
  :func:`estimates` (every estimate with its confidence interval, without reading a direction
  into it).
* Meta Ad Library: :func:`caught_by_tier` (share of Pages caught per spend tier and report, with
  Wilson 95% confidence intervals).
* DSA Transparency Database: :func:`measures_by_account_type` (the measures recorded, for
  business, private and unreported account types).

Examples
--------
>>> import json
>>> from analysis.studies import plots
>>> results = json.load(open("reports/meta_ad_library/results.json"))  # doctest: +SKIP
>>> fig = plots.data_audit(results)                                   # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from analysis.plots import wilson
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator, PercentFormatter

from analysis.plots import PALETTE

__all__ = [
    "caught_by_tier",
    "caught_by_tier_data",
    "data_audit",
    "data_audit_data",
    "estimates",
    "estimates_data",
    "measures_by_account_type",
    "measures_by_account_type_data",
    "wilson",
]

_WIDTH = 7.5  # inches, as analysis.plots: fits an A4 page and a phone screen
_GREY = PALETTE[7]
_KIND_COLOURS = {"input": PALETTE[0], "combined": PALETTE[4], "excluded": PALETTE[3],
                 "unaccounted": PALETTE[5], "analysed": PALETTE[2]}
#: The DSA measures from most to least severe (see analysis.sources.dsa_tdb.measure).
MEASURE_ORDER = ("account", "service", "removal", "restriction", "monetary", "none")
MEASURE_WORDS = {
    "account": "account suspended or terminated",
    "service": "service suspended or terminated",
    "removal": "content removed or disabled",
    "restriction": "content restricted (demoted, labelled, …)",
    "monetary": "monetary measure only",
    "none": "no restriction recorded",
}
ACCOUNT_GROUPS = ("business", "private", "not reported", "other value")


@contextmanager
def _style() -> Iterator[None]:
    """The house style of :mod:`analysis.plots` for the figures made inside the block.

    Only the settings named here are restored afterwards (not matplotlib's whole state), so a
    notebook's inline backend, switched on by the first figure, stays on.
    """
    settings: dict[str, Any] = {
        **sns.axes_style("whitegrid"),
        **sns.plotting_context("notebook", font_scale=0.9),
        "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"],
        "axes.titlelocation": "left", "axes.titleweight": "bold", "axes.titlesize": 11,
        "axes.labelsize": 9.5, "xtick.labelsize": 8.5, "ytick.labelsize": 8.5,
        "legend.fontsize": 8.5, "legend.frameon": False,
        "axes.spines.top": False, "axes.spines.right": False,
    }
    saved = {key: mpl.rcParams[key] for key in settings}
    mpl.rcParams.update(settings)
    try:
        yield
    finally:
        mpl.rcParams.update(saved)


def _figure(height: float) -> tuple[Figure, Any]:
    with _style():
        fig, ax = plt.subplots(figsize=(_WIDTH, height), layout="constrained")
    return fig, ax


def _empty(ax: Any, message: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color=_GREY,
            wrap=True)


def _share(value: float | None) -> str:
    if value is None:
        return "\u2013"
    if 0 < value < 0.001:
        return "<0.1%"
    return f"{value:.1%}"




# --------------------------------------------------------------------------------------------
# Any study: the data audit and the estimates


def data_audit_data(results: Mapping[str, Any], *, cases: str = "cases") -> pl.DataFrame:
    """From the rows of the published files to the cases analysed, step by step.

    Parameters
    ----------
    results : dict
        A study's results.json: its ``data.files`` (rows of each file) and ``coverage``.
    cases : str, default "cases"
        What one case is, plural (``"Pages"``, ``"statements"``), for the labels.

    Returns
    -------
    polars.DataFrame
        ``step``, ``kind`` ("input", "combined": rows of one case joined into one, "excluded",
        "unaccounted", "analysed"), ``rows`` and ``share`` (of the rows in the files). The steps
        add up: input − combined − exclusions = analysed; a gap would show as "not accounted
        for" rather than be hidden.

    Examples
    --------
    >>> data_audit_data({"data": {"files": [{"rows": 10}]},
    ...                  "coverage": {"enforcement_rows": 8, "analysed": 7,
    ...                               "excluded": {"no spend": 1}}},
    ...                 cases="Pages")["rows"].to_list()
    [10, 2, 8, 1, 7]
    """
    coverage = results.get("coverage") or {}
    files = (results.get("data") or {}).get("files") or []
    rows_in = sum(int(f.get("rows") or 0) for f in files)
    total = int(coverage.get("enforcement_rows") or 0)
    analysed = int(coverage.get("analysed") or 0)
    excluded = {str(k): int(v) for k, v in (coverage.get("excluded") or {}).items()}
    steps = [("rows in the published files", "input", rows_in)]
    if rows_in != total:
        steps += [(f"extra rows of {cases} listed more than once (joined into one case)",
                   "combined", rows_in - total),
                  (f"{cases} (cases)", "input", total)]
    steps += [(reason, "excluded", n)
              for reason, n in sorted(excluded.items(), key=lambda kv: (-kv[1], kv[0]))]
    gap = total - analysed - sum(excluded.values())
    if gap:
        steps.append(("not accounted for", "unaccounted", gap))
    steps.append((f"{cases} analysed", "analysed", analysed))
    return pl.DataFrame(
        {"step": [s[0] for s in steps], "kind": [s[1] for s in steps],
         "rows": [s[2] for s in steps],
         "share": [s[2] / rows_in if rows_in else None for s in steps]},
        schema={"step": pl.String, "kind": pl.String, "rows": pl.Int64, "share": pl.Float64})


def data_audit(results: Mapping[str, Any], *, cases: str = "cases") -> Figure:
    """Waterfall from the rows of the published files to the cases analysed.

    Each bar that is taken away is one step of :func:`data_audit_data`: rows joined into one case
    (e.g. a Page with several disclaimers), then each exclusion, with its count and its share of
    the published rows. Nothing is dropped silently.

    Parameters
    ----------
    results : dict
        A study's results.json.
    cases : str, default "cases"
        What one case is, plural.

    Returns
    -------
    matplotlib.figure.Figure
    """
    data = data_audit_data(results, cases=cases)
    fig, ax = _figure(1.0 + 0.42 * data.height)
    total = int(data["rows"][0])
    if total == 0:
        _empty(ax, "The files hold no rows.")
        return fig
    with _style():
        y = np.arange(data.height)[::-1]
        remaining = total
        for yi, row in zip(y, data.iter_rows(named=True), strict=True):
            rows, kind = row["rows"], row["kind"]
            if kind in ("combined", "excluded", "unaccounted"):
                left, width = remaining - rows, rows
                remaining -= rows
                label = f"\u2212{rows:,} ({_share(row['share'])})"
            else:
                left, width = 0, rows
                label = f"{rows:,} ({_share(row['share'])})"
            ax.barh(yi, width, left=left, height=0.6, color=_KIND_COLOURS[kind], alpha=0.9,
                    zorder=2)
            ax.annotate(label, xy=(left + width, yi), xytext=(4, 0), textcoords="offset points",
                        va="center", ha="left", fontsize=8)
        ax.set_yticks(y, [_wrap(s[:1].upper() + s[1:]) for s in data["step"].to_list()])
        ax.set_xlim(0, total * 1.25)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_xlabel("Rows")
        ax.grid(axis="y", visible=False)
        ax.set_title(f"From the published rows to the {cases} analysed")
    return fig


def _wrap(text: str, width: int = 48) -> str:
    """Break a long label into lines of about ``width`` characters."""
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def estimates_data(tests: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """The estimates drawn by :func:`estimates`: every test that ran, with its interval.

    Parameters
    ----------
    tests : list of dict
        The ``tests`` of results.json (``TestResult`` objects are accepted too).

    Returns
    -------
    polars.DataFrame
        ``id``, ``scale``, ``estimate``, ``ci_low``, ``ci_high``, ``p_value``, ``p_adjusted``
        (null for a sensitivity analysis, which is not a hypothesis of its own) and ``n``, in
        the order of ``tests``. Tests that did not run, or whose ratio is not positive and
        finite, are left out.

    Examples
    --------
    >>> estimates_data([{"id": "a", "status": "ok", "scale": "OR", "estimate": 0.5,
    ...                  "ci_low": 0.3, "ci_high": 0.9, "n": 10},
    ...                 {"id": "b", "status": "skipped"}])["id"].to_list()
    ['a']
    """
    rows = []
    for test in tests:
        if not isinstance(test, Mapping):
            test = test.to_dict()
        estimate = test.get("estimate")
        if (test.get("status") != "ok" or not isinstance(estimate, (int, float))
                or not math.isfinite(estimate) or estimate <= 0):
            continue
        rows.append({key: test.get(key) for key in
                     ("id", "scale", "estimate", "ci_low", "ci_high", "p_value", "p_adjusted",
                      "n")})
    schema = {"id": pl.String, "scale": pl.String, "estimate": pl.Float64,
              "ci_low": pl.Float64, "ci_high": pl.Float64, "p_value": pl.Float64,
              "p_adjusted": pl.Float64, "n": pl.Int64}
    return pl.DataFrame(rows, schema=schema, orient="row")


def estimates(tests: Sequence[Mapping[str, Any]], *, axis_label: str | None = None) -> Figure:
    """Every estimate of a study with its confidence interval, on a log scale around 1.

    Unlike :func:`analysis.plots.forest` this figure does not mark a side of the line as
    "lenient": in a case study what a ratio below 1 means depends on the test (the conclusions
    say it). Tests without an adjusted p-value (sensitivity analyses) are drawn hollow.

    Parameters
    ----------
    tests : list of dict
        The ``tests`` of results.json.
    axis_label : str, optional
        The label of the ratio axis; by default the scale's name.

    Returns
    -------
    matplotlib.figure.Figure
    """
    data = estimates_data(tests)
    fig, ax = _figure(1.2 + 0.42 * max(data.height, 2))
    if data.height == 0:
        _empty(ax, "No test produced an estimate.")
        return fig
    with _style():
        y = np.arange(data.height)[::-1]
        est = data["estimate"].to_numpy()
        low = data["ci_low"].fill_null(float("nan")).to_numpy()
        high = data["ci_high"].fill_null(float("nan")).to_numpy()
        primary = data["p_adjusted"].is_not_null().to_numpy()
        has_ci = ~(np.isnan(low) | np.isnan(high))
        ax.axvline(1.0, color="0.35", linestyle="--", linewidth=1, zorder=1)
        ax.hlines(y[has_ci], low[has_ci], high[has_ci], color=PALETTE[0], linewidth=2, zorder=2)
        ax.plot(est[primary], y[primary], "s", color=PALETTE[0], markersize=6, zorder=3,
                markeredgecolor="white")
        ax.plot(est[~primary], y[~primary], "s", color="white", markersize=6, zorder=3,
                markeredgecolor=PALETTE[0], markeredgewidth=1.4)
        ax.set_yticks(y, data["id"].to_list())
        ax.set_ylim(-0.7, data.height - 0.3)
        ax.grid(axis="y", visible=False)
        finite = np.concatenate([est, low[has_ci], high[has_ci], [1.0]])
        lo, hi = float(finite.min()), float(finite.max())
        span = max(math.log(hi / lo), math.log(1.5))
        ax.set_xscale("log")
        ax.set_xlim(lo / math.exp(0.08 * span), hi * math.exp(0.08 * span))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(_log_ticks(*ax.get_xlim()))
        words = {"OR": "odds ratio", "HR": "hazard ratio"}
        names = " or ".join(words.get(s, s) for s in dict.fromkeys(data["scale"].to_list()))
        ax.set_xlabel(axis_label or f"{names[:1].upper()}{names[1:]} (log scale; 1 = no "
                                    "difference)")
        for yi, e, lw, hg, ok in zip(y, est, low, high, has_ci, strict=True):
            text = f"{e:.2f}" + (f"  ({lw:.2f} to {hg:.2f})" if ok else "")
            ax.annotate(text, xy=(1.0, yi), xycoords=("axes fraction", "data"), xytext=(8, 0),
                        textcoords="offset points", va="center", ha="left", fontsize=8,
                        color="0.2")
        ax.set_title("Estimates with 95% confidence intervals", pad=10)
    return fig


def _log_ticks(low: float, high: float) -> list[float]:
    for mantissas in ((1, 2, 3, 5), (1, 2, 5), (1,)):
        ticks = [round(m * 10.0**e, 6) for e in range(-6, 7) for m in mantissas
                 if low <= m * 10.0**e <= high]
        if len(ticks) <= 9:
            return ticks or [1.0]
    return [1.0]


# --------------------------------------------------------------------------------------------
# Meta Ad Library: share caught by spend tier


def caught_by_tier_data(reports: Any) -> pl.DataFrame:
    """Pages and the share caught per report and spend tier, with Wilson 95% intervals.

    Parameters
    ----------
    reports : str, Path, Reports or Dataset
        Meta Ad Library advertiser reports, as
        :func:`analysis.studies.meta_ad_library.study_pages` takes them.

    Returns
    -------
    polars.DataFrame
        :func:`analysis.studies.meta_ad_library.tier_table` (``report``, ``tier``,
        ``tier_label``, ``pages``, ``caught``, ``share_caught``) with ``currency``, ``ci_low``
        and ``ci_high``. Tiers are in each report's own currency (``≤100`` counted at 50, as
        in the main test).
    """
    from analysis.studies.meta_ad_library import study_pages, tier_table

    study, _ = study_pages(reports)
    currency = study.group_by("report").agg(pl.first("currency")).sort("report")
    table = tier_table(study).join(currency, on="report", how="left")
    low, high = wilson(table["caught"].to_numpy(), table["pages"].to_numpy())
    return table.with_columns(ci_low=pl.Series(low, dtype=pl.Float64),
                              ci_high=pl.Series(high, dtype=pl.Float64)).sort("report", "tier")


def caught_by_tier(reports: Any, *, results: Mapping[str, Any] | None = None) -> Figure:
    """Share of Pages caught running political ads without a disclaimer, by spend tier.

    One line per report, with Wilson 95% confidence intervals as whiskers and the number of
    Pages beside each point. The tiers are tenfold steps of spend in the report's window, in the
    report's own currency. The share caught is of Pages *in the report*: Pages never caught are
    in it only if they also ran declared political ads, so these are not catch rates, and the
    lowest tier is full of Pages whose only ads were the ones taken down.

    Parameters
    ----------
    reports : str, Path, Reports or Dataset
        See :func:`caught_by_tier_data`.
    results : dict, optional
        The study's results.json: the reports its main test left out are marked in the legend.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from analysis.studies.meta_ad_library import TIER_LABELS

    left_out = set()
    for test in (results or {}).get("tests", []):
        if test.get("id") == "spend_caught":
            left_out = {r["report"] for r in (test.get("details") or {}).get("reports_left_out",
                                                                             [])}
    data = caught_by_tier_data(reports)
    fig, ax = _figure(3.9)
    if data.height == 0:
        _empty(ax, "No Pages in the reports.")
        return fig
    names = data["report"].unique(maintain_order=True).to_list()
    with _style():
        for index, report in enumerate(names):
            rows = data.filter(pl.col("report") == report)
            offset = (index - (len(names) - 1) / 2) * 0.09
            x = rows["tier"].to_numpy() + offset
            share = rows["share_caught"].to_numpy()
            colour = PALETTE[index % len(PALETTE)]
            pages = int(rows["pages"].sum())
            label = (f"{report.split()[0]} ({rows['currency'][0]}), {pages:,} Pages, "
                     f"{int(rows['caught'].sum()):,} caught"
                     + (" (not in the tests)" if report in left_out else ""))
            ax.errorbar(x, share, yerr=[share - rows["ci_low"].to_numpy(),
                                        rows["ci_high"].to_numpy() - share],
                        fmt="o-", color=colour, markersize=5, linewidth=1.2, capsize=2.5,
                        label=label, zorder=3)
            for xi, si, n in zip(x, share, rows["pages"].to_list(), strict=True):
                ax.annotate(f"{n:,}", xy=(xi, si), xytext=(5, 4), textcoords="offset points",
                            fontsize=7, color=colour)
        ax.set_xticks(range(1, len(TIER_LABELS) + 1), list(TIER_LABELS))
        ax.set_xlim(0.6, len(TIER_LABELS) + 0.4)
        ax.set_ylim(-0.03, 1.05)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xlabel("Spend on political ads in the report's window (report's currency)")
        ax.set_ylabel("Pages caught without a disclaimer")
        ax.legend(loc="upper right")
        ax.set_title("Share of Pages caught, by spend tier (numbers: Pages in the tier)")
    return fig


# --------------------------------------------------------------------------------------------
# DSA Transparency Database: measures by account type


def measures_by_account_type_data(statements: Any) -> pl.DataFrame:
    """Statements per account type and measure, with each measure's share within the type.

    Parameters
    ----------
    statements : Dataset, polars or pandas DataFrame, or polars LazyFrame
        The Dataset of :func:`analysis.sources.dsa_tdb.read`, or its ``statements`` table.

    Returns
    -------
    polars.DataFrame
        ``account_type`` (business, private, not reported, other value), ``measure`` (the most
        severe measure recorded, from :func:`analysis.sources.dsa_tdb.measure`), ``statements``
        and ``share`` (of the statements of that account type), sorted by type and by measure
        from most to least severe.
    """
    from analysis.load import Dataset
    from analysis.sources.dsa_tdb import account_group, measure

    if isinstance(statements, Dataset):
        lf = statements["statements"]
    elif isinstance(statements, pl.LazyFrame):
        lf = statements
    elif isinstance(statements, pl.DataFrame):
        lf = statements.lazy()
    else:
        lf = pl.from_pandas(statements).lazy()
    group = account_group()
    kind = (pl.when(group.is_not_null()).then(group)
            .when(pl.col("account_type").is_null()).then(pl.lit("not reported"))
            .otherwise(pl.lit("other value")))
    counts = (lf.select(kind.alias("account_type"), measure())
              .group_by("account_type", "measure").agg(pl.len().cast(pl.Int64)
                                                       .alias("statements"))
              .collect())
    order_type = {name: i for i, name in enumerate(ACCOUNT_GROUPS)}
    order_measure = {name: i for i, name in enumerate(MEASURE_ORDER)}
    return (counts.with_columns(
                share=pl.col("statements") / pl.col("statements").sum().over("account_type"))
            .sort(pl.col("account_type").replace_strict(order_type, return_dtype=pl.Int64),
                  pl.col("measure").replace_strict(order_measure, return_dtype=pl.Int64)))


def measures_by_account_type(statements: Any) -> Figure:
    """What the statements record, for business, private and unreported account types.

    One horizontal bar per account type, split by the most severe measure each statement
    records (account or service suspended, content removed, content only restricted, a
    monetary measure only). The bars are shares within each type, the counts are beside them.
    This is the raw picture behind ``business_severe_crude``; the adjusted test compares like
    with like. When no statement gives a business or private account type, the figure says so:
    nothing can then be compared.

    Parameters
    ----------
    statements : Dataset or frame of statements
        See :func:`measures_by_account_type_data`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    data = measures_by_account_type_data(statements)
    types = data["account_type"].unique(maintain_order=True).to_list()
    fig, ax = _figure(1.9 + 0.5 * max(len(types), 1))
    if not types:
        _empty(ax, "No statements.")
        return fig
    colours = dict(zip(MEASURE_ORDER, [PALETTE[3], PALETTE[5], PALETTE[1], PALETTE[0],
                                       PALETTE[2], _GREY], strict=True))
    with _style():
        y = np.arange(len(types))[::-1]
        for yi, account_type in zip(y, types, strict=True):
            rows = data.filter(pl.col("account_type") == account_type)
            left = 0.0
            for row in rows.iter_rows(named=True):
                ax.barh(yi, row["share"], left=left, height=0.6, color=colours[row["measure"]],
                        zorder=2, label=MEASURE_WORDS[row["measure"]])
                if row["share"] >= 0.08:
                    ax.text(left + row["share"] / 2, yi, f"{row['statements']:,}", ha="center",
                            va="center", fontsize=7.5, color="white")
                left += row["share"]
        totals = data.group_by("account_type", maintain_order=True).agg(pl.col("statements")
                                                                          .sum())
        ax.set_yticks(y, [f"{t} ({n:,})" for t, n in totals.iter_rows()])
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xlabel("Share of the statements of the account type")
        ax.grid(axis="y", visible=False)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), loc="upper center", ncols=2,
                  bbox_to_anchor=(0.5, -0.32 if len(types) < 3 else -0.22))
        ax.set_title("Measures recorded, by account type (number of statements)")
        if not {"business", "private"} <= set(types):
            missing = " or ".join(t for t in ("business", "private") if t not in types)
            fig.supxlabel(f"No statement here concerns a {missing} account: the comparison of "
                          "business and private accounts cannot be made.", x=0.01, ha="left",
                          fontsize=8, color="0.3")
    return fig
