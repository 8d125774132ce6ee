"""Figures of levelfield, in one house style, each with the table behind it.

Every figure function returns a matplotlib :class:`~matplotlib.figure.Figure` (it never calls
``plt.show``; a notebook shows the figure when the cell ends), and has a companion ``*_data``
function returning the numbers drawn, as a polars DataFrame, so that the data behind every chart
can be published beside it. :func:`save_figure` writes both:
``name.png``, ``name.svg`` and ``name.csv``, byte-identical when rerun on the same inputs.

The style: seaborn's white grid, its colour-blind-safe "colorblind" palette, matplotlib's bundled
DejaVu Sans (so figures look the same on every machine), labelled axes with units, and every
estimate drawn with its 95% confidence interval.

Examples
--------
>>> import json
>>> from analysis import plots
>>> tests = json.load(open("reports/sample/results.json"))["tests"]  # doctest: +SKIP
>>> fig = plots.forest(tests)                                       # doctest: +SKIP
>>> plots.save_figure(fig, plots.forest_data(tests), "reports/sample/figures", "forest")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib as mpl
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import seaborn as sns
from cycler import cycler
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator, PercentFormatter

__all__ = [
    "FigurePaths",
    "coverage_funnel",
    "coverage_funnel_data",
    "crude_vs_adjusted",
    "crude_vs_adjusted_data",
    "enforcement_by_tier",
    "enforcement_by_tier_data",
    "enforcement_over_time",
    "enforcement_over_time_data",
    "event_study",
    "event_study_data",
    "forest",
    "forest_data",
    "kaplan_meier",
    "kaplan_meier_data",
    "mde_chart",
    "mde_chart_data",
    "save_figure",
]

PALETTE: list[str] = sns.color_palette("colorblind").as_hex()
"""The colour-blind-safe palette every figure draws from (seaborn "colorblind")."""

_BLUE, _ORANGE, _GREEN, _VERMILLION, _PURPLE = PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[3], PALETTE[4]
_GREY = PALETTE[7]

_RATIO_SCALES = {"OR": "odds ratio", "HR": "hazard ratio", "RR": "risk ratio"}
_LENIENT = "\u2190 more lenient"
_STRICTER = "stricter \u2192"
# Tests whose estimate points to leniency when it is *above* the reference (more reversals of
# enforcement on appeal). A test can say so itself with details["leniency_direction"] = "higher".
_HIGHER_IS_LENIENT = frozenset({"appeal_reversal"})

_WIDTH = 7.5  # inches: fits an A4 page with margins, and a phone screen when scaled down


# ----------------------------------------------------------------------------------------------
# Style and small helpers
# ----------------------------------------------------------------------------------------------


@contextmanager
def _style() -> Iterator[None]:
    """Apply the house style to figures created inside the block, leaving global settings alone."""
    rc: dict[str, Any] = {
        **sns.axes_style("whitegrid"),
        **sns.plotting_context("notebook", font_scale=0.9),
        "axes.prop_cycle": cycler(color=PALETTE),
        # matplotlib ships DejaVu Sans, so text renders identically on every machine
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans"],
        "axes.titlelocation": "left",
        "axes.titleweight": "bold",
        "axes.titlesize": 11,
        "axes.labelsize": 9.5,
        "xtick.labelsize": 8.5,
        "ytick.labelsize": 8.5,
        "legend.fontsize": 8.5,
        "legend.frameon": False,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
    with _rc(rc):
        yield


@contextmanager
def _rc(settings: Mapping[str, Any]) -> Iterator[None]:
    """Set some rcParams for the block and restore exactly those.

    Unlike ``matplotlib.rc_context``, which restores every setting, this leaves alone what
    happens inside the block to other settings: the first figure of a Jupyter kernel loads the
    inline backend, which switches interactive mode on; undoing that would keep every later
    figure from being shown.
    """
    saved = {key: mpl.rcParams[key] for key in settings}
    mpl.rcParams.update(settings)
    try:
        yield
    finally:
        mpl.rcParams.update(saved)


def _new_figure(nrows: int = 1, *, height: float, height_ratios: Sequence[float] | None = None):
    with _style():
        fig, axes = plt.subplots(
            nrows,
            1,
            figsize=(_WIDTH, height),
            squeeze=False,
            gridspec_kw={"height_ratios": list(height_ratios)} if height_ratios else None,
            layout="constrained",
        )
    # The figure stays registered with pyplot, as seaborn's do: in a notebook it is shown when
    # the cell ends (write ``plots.forest(tests);`` to show it once); save_figure closes it.
    return fig, list(axes[:, 0])


def _as_frame(frame: Any, columns: Sequence[str], *, optional: Sequence[str] = ()) -> pl.DataFrame:
    """A polars DataFrame with ``columns`` (required) and whichever of ``optional`` exist."""
    if isinstance(frame, pl.LazyFrame):
        available = frame.collect_schema().names()
    elif isinstance(frame, pl.DataFrame):
        available = frame.columns
    else:
        try:
            frame = pl.from_pandas(frame)
        except (TypeError, ValueError, ImportError) as error:
            raise TypeError(
                f"expected a polars or pandas DataFrame (or a polars LazyFrame), got {type(frame).__name__}"
            ) from error
        available = frame.columns
    missing = [c for c in columns if c not in available]
    if missing:
        raise ValueError(
            f"the cases frame lacks column(s) {', '.join(missing)}; "
            "pass the frame returned by analysis.attribute"
        )
    wanted = list(columns) + [c for c in optional if c in available and c not in columns]
    selected = frame.select(wanted)
    return selected.collect() if isinstance(selected, pl.LazyFrame) else selected


def wilson(successes: Sequence[float] | np.ndarray, trials: Sequence[float] | np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score 95% interval for a proportion (Newcombe 1998, method 3), via statsmodels.

    Unlike the textbook "estimate ± 1.96 standard errors", it stays inside [0, 1] and keeps its
    coverage for small groups and rates near 0 or 100%. A group with no trials gets NaN bounds.

    Examples
    --------
    Newcombe (1998), Statistics in Medicine 17:857, Table I, 81 of 263:

    >>> low, high = wilson([81], [263])
    >>> round(float(low[0]), 4), round(float(high[0]), 4)
    (0.2553, 0.3662)
    """
    from statsmodels.stats.proportion import proportion_confint

    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    low = np.full(k.shape, np.nan)
    high = np.full(k.shape, np.nan)
    some = n > 0
    if some.any():
        lo, hi = proportion_confint(k[some], n[some], alpha=0.05, method="wilson")
        low[some], high[some] = np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)
    # exact bounds at the edges, where rounding could leave 1e-17 instead of 0
    low = np.where(some & (k == 0), 0.0, low)
    high = np.where(some & (k == n), 1.0, high)
    return low, high





def _with_rates(counts: pl.DataFrame) -> pl.DataFrame:
    """Add rate and Wilson 95% interval to a frame with ``cases`` and ``enforced`` counts."""
    low, high = wilson(counts["enforced"].to_numpy(), counts["cases"].to_numpy())
    return counts.with_columns(
        rate=pl.col("enforced") / pl.col("cases"),
        ci_low=pl.Series(low, dtype=pl.Float64),
        ci_high=pl.Series(high, dtype=pl.Float64),
    )


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _usd(value: float) -> str:
    """Compact US dollars: $950, $12k, $3.4M."""
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            scaled = value / threshold
            if scaled >= 100:
                return f"${scaled:.0f}{suffix}"
            return f"${scaled:.1f}{suffix}".replace(".0" + suffix, suffix)
    return f"${value:.0f}"


def _share(value: float) -> str:
    if value == 0:
        return "0%"
    if value < 0.001:
        return "<0.1%"
    if 0.999 < value < 1:
        return ">99.9%"  # rather than a rounded "100.0%" that hides the exclusions
    return f"{value:.1%}"


def _empty(ax, message: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color=_GREY)


# ----------------------------------------------------------------------------------------------
# Forest plot of the battery
# ----------------------------------------------------------------------------------------------


def forest_data(tests: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """The estimates drawn by :func:`forest`: one row per test that ran and has an estimate.

    Parameters
    ----------
    tests : list of dict
        The ``tests`` list of results.json (``TestResult`` objects are accepted too). Skipped
        tests, and tests without a finite estimate, are left out.

    Returns
    -------
    polars.DataFrame
        Columns ``id``, ``panel`` ("ratio" for odds/hazard/risk ratios, "difference" for
        differences in probability), ``scale``, ``estimate``, ``ci_low``, ``ci_high`` (the 95%
        confidence interval), ``p_value``, ``p_adjusted``, ``n`` and ``higher_is_lenient`` (True
        for the few tests where a value above the reference line, rather than below, points to
        leniency). Rows keep the order of ``tests``.

    Examples
    --------
    >>> forest_data([{"id": "listed_adjusted", "status": "ok", "scale": "OR", "estimate": 0.31,
    ...               "ci_low": 0.27, "ci_high": 0.36, "p_value": 1e-30, "p_adjusted": 1e-29,
    ...               "n": 60000}])["estimate"].to_list()
    [0.31]
    """
    rows = []
    for test in tests:
        if not isinstance(test, Mapping):
            test = test.to_dict()  # a TestResult
        scale = test.get("scale")
        estimate = test.get("estimate")
        if test.get("status") != "ok" or not _finite(estimate):
            continue
        if scale in _RATIO_SCALES:
            if estimate <= 0:
                continue  # a ratio of zero cannot be drawn on a log axis
            panel = "ratio"
        elif scale == "probability":
            panel = "difference"
        else:
            continue
        details = test.get("details") or {}
        direction = details.get("leniency_direction")
        rows.append(
            {
                "id": str(test.get("id")),
                "panel": panel,
                "scale": scale,
                "estimate": float(estimate),
                "ci_low": float(test["ci_low"]) if _finite(test.get("ci_low")) else None,
                "ci_high": float(test["ci_high"]) if _finite(test.get("ci_high")) else None,
                "p_value": float(test["p_value"]) if _finite(test.get("p_value")) else None,
                "p_adjusted": float(test["p_adjusted"]) if _finite(test.get("p_adjusted")) else None,
                "n": int(test["n"]) if _finite(test.get("n")) else None,
                "higher_is_lenient": direction == "higher"
                or (direction is None and test.get("id") in _HIGHER_IS_LENIENT),
            }
        )
    schema = {
        "id": pl.String,
        "panel": pl.String,
        "scale": pl.String,
        "estimate": pl.Float64,
        "ci_low": pl.Float64,
        "ci_high": pl.Float64,
        "p_value": pl.Float64,
        "p_adjusted": pl.Float64,
        "n": pl.Int64,
        "higher_is_lenient": pl.Boolean,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def forest(tests: Sequence[Mapping[str, Any]]) -> Figure:
    """Forest plot: every test's estimate with its 95% confidence interval, on one page.

    Ratios (odds and hazard ratios) share a log-scaled axis with a reference line at 1, the value
    of "no difference"; a ratio of 0.5 and one of 2 are equally far from it. Differences in
    enforcement probability (the difference-in-differences test) get a second panel, in
    percentage points, with the reference at 0. An interval that does not cross the reference
    line is what "statistically significant at the 5% level" looks like, before adjustment for
    testing many questions at once.

    Parameters
    ----------
    tests : list of dict
        The ``tests`` list of results.json; see :func:`forest_data` for what is drawn.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = forest([{"id": "listed_adjusted", "status": "ok", "scale": "OR", "estimate": 0.31,
    ...                "ci_low": 0.27, "ci_high": 0.36}])
    >>> len(fig.axes) >= 1
    True
    """
    data = forest_data(tests)
    ratios = data.filter(pl.col("panel") == "ratio")
    diffs = data.filter(pl.col("panel") == "difference")
    panels = [(frame, kind) for frame, kind in ((ratios, "ratio"), (diffs, "difference")) if frame.height]
    if not panels:
        fig, (ax,) = _new_figure(height=2.0)
        _empty(ax, "No test produced an estimate.")
        return fig

    heights = [frame.height + 1.6 for frame, _ in panels]
    fig, axes = _new_figure(len(panels), height=0.36 * sum(heights) + 0.8, height_ratios=heights)
    with _style():
        for ax, (frame, kind) in zip(axes, panels):
            _forest_panel(ax, frame, kind)
        axes[0].set_title("Estimates of every test, with 95% confidence intervals", pad=22)
        if data["higher_is_lenient"].any():
            # a figure-level label: the layout engine makes room for it below the last panel
            fig.supxlabel(
                "\u2020 For these tests a value above the reference line points to leniency "
                "(e.g. more enforcement reversed on appeal).",
                x=0.01,
                ha="left",
                fontsize=7.5,
                color="0.3",
            )
    return fig


def _ratio_ticks(low: float, high: float) -> list[float]:
    """Readable ticks for a log axis: 0.3, 0.5, 1, 2 ... rather than only powers of ten."""
    for mantissas in ((1, 2, 3, 4, 5, 6, 8), (1, 2, 5), (1,)):
        ticks = [
            round(m * 10.0**e, 6)
            for e in range(-6, 7)
            for m in mantissas
            if low <= m * 10.0**e <= high
        ]
        if len(ticks) <= 9:
            break
    return ticks or [1.0]


def _forest_panel(ax, frame: pl.DataFrame, kind: str) -> None:
    ratio = kind == "ratio"
    factor = 1.0 if ratio else 100.0  # differences in probability are drawn in percentage points
    reference = 1.0 if ratio else 0.0
    y = np.arange(frame.height)[::-1]  # first test on top
    est = frame["estimate"].to_numpy() * factor
    low = frame["ci_low"].fill_null(float("nan")).to_numpy() * factor
    high = frame["ci_high"].fill_null(float("nan")).to_numpy() * factor
    has_ci = ~(np.isnan(low) | np.isnan(high))

    ax.axvline(reference, color="0.35", linestyle="--", linewidth=1, zorder=1)
    ax.hlines(y[has_ci], low[has_ci], high[has_ci], color=_BLUE, linewidth=2, zorder=2)
    ax.plot(est, y, "s", color=_BLUE, markersize=6, zorder=3, markeredgecolor="white", markeredgewidth=0.6)

    labels = [f"{i} \u2020" if flip else i for i, flip in zip(frame["id"], frame["higher_is_lenient"])]
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.7, frame.height - 0.3)
    ax.grid(axis="y", visible=False)

    finite = np.concatenate([est, low[has_ci], high[has_ci], [reference]])
    if ratio:
        lo, hi = float(np.min(finite)), float(np.max(finite))
        span = max(math.log(hi / lo), math.log(1.5))
        ax.set_xscale("log")
        ax.set_xlim(lo / math.exp(0.08 * span), hi * math.exp(0.08 * span))
        ax.set_xticks(_ratio_ticks(*ax.get_xlim()))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        scales = [_RATIO_SCALES[s] for s in dict.fromkeys(frame["scale"].to_list())]
        name = " or ".join(scales)
        ax.set_xlabel(f"{name[0].upper()}{name[1:]} (log scale; 1 = no difference)")
    else:
        lo, hi = float(np.min(finite)), float(np.max(finite))
        pad = max(0.08 * (hi - lo), 0.5)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_xlabel("Difference in enforcement probability (percentage points; 0 = no difference)")

    # the estimate and interval in numbers, in a column right of the panel
    for yi, e, lw, hg, ok in zip(y, est, low, high, has_ci):
        digits = "{:.2f}" if ratio else "{:+.1f}"
        text = digits.format(e) + (f"  ({digits.format(lw)} to {digits.format(hg)})" if ok else "")
        ax.annotate(
            text.replace("-", "\u2212"),
            xy=(1.0, yi),
            xycoords=("axes fraction", "data"),
            xytext=(8, 0),
            textcoords="offset points",
            va="center",
            ha="left",
            fontsize=8,
            color="0.2",
        )
    for text, ha, dx in ((_LENIENT, "right", -6), (_STRICTER, "left", 6)):
        ax.annotate(
            text,
            xy=(reference, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(dx, 3),
            textcoords="offset points",
            ha=ha,
            va="bottom",
            fontsize=8,
            color="0.3",
        )


# ----------------------------------------------------------------------------------------------
# Enforcement rate by spend tier
# ----------------------------------------------------------------------------------------------


def enforcement_by_tier_data(cases: Any) -> pl.DataFrame:
    """Enforcement rate with its Wilson 95% interval for each spend tier, as drawn by
    :func:`enforcement_by_tier`.

    The enforcement rate of a group is the share of its flagged cases that were removed or
    restricted. The Wilson score interval (Newcombe 1998) is used because, unlike "rate ± 1.96
    standard errors", it stays between 0 and 100% and keeps its 95% coverage for small groups.
    When some cases belong to accounts on a watchlist at flag time, those cases form their own
    group ("listed accounts") and the tiers hold the remaining cases, so no case counts twice.

    Parameters
    ----------
    cases : polars or pandas DataFrame, or polars LazyFrame
        The cases frame of :func:`analysis.attribute`; needs ``spend_tier`` and ``enforced``,
        uses ``listed`` and ``trailing_spend`` when present.

    Returns
    -------
    polars.DataFrame
        One row per group: ``group`` (label), ``spend_tier`` (0 = no ad spend, 1-4 = quartiles of
        trailing spend among advertisers' cases; null for listed accounts and unknown spend),
        ``cases``, ``enforced``, ``rate``, ``ci_low``, ``ci_high``, ``spend_min`` and
        ``spend_max`` (range of trailing spend in USD).

    Examples
    --------
    >>> import polars as pl
    >>> cases = pl.DataFrame({"spend_tier": [0, 0, 1, 1], "enforced": [True, False, True, True]})
    >>> enforcement_by_tier_data(cases)["rate"].to_list()
    [0.5, 1.0]
    """
    df = _as_frame(cases, ["spend_tier", "enforced"], optional=["listed", "trailing_spend"])
    if "trailing_spend" not in df.columns:
        df = df.with_columns(trailing_spend=pl.lit(None, dtype=pl.Float64))
    has_listed = "listed" in df.columns and bool(df["listed"].fill_null(False).any())
    listed = pl.col("listed").fill_null(False) if has_listed else pl.lit(False)
    df = df.with_columns(pl.col("enforced").cast(pl.Boolean), _listed=listed)

    counts = (
        df.filter(~pl.col("_listed"))
        .group_by("spend_tier")
        .agg(
            cases=pl.len(),
            enforced=pl.col("enforced").sum(),
            spend_min=pl.col("trailing_spend").min(),
            spend_max=pl.col("trailing_spend").max(),
        )
        .sort("spend_tier", nulls_last=True)
        .with_columns(
            group=pl.when(pl.col("spend_tier").is_null())
            .then(pl.lit("spend unknown"))
            .when(pl.col("spend_tier") == 0)
            .then(pl.lit("no ad spend"))
            .otherwise(pl.lit("tier ") + pl.col("spend_tier").cast(pl.String))
        )
    )
    if has_listed:
        listed_counts = (
            df.filter(pl.col("_listed"))
            .select(
                cases=pl.len(),
                enforced=pl.col("enforced").sum(),
                spend_min=pl.col("trailing_spend").min(),
                spend_max=pl.col("trailing_spend").max(),
            )
            .with_columns(
                group=pl.lit("listed accounts"),
                spend_tier=pl.lit(None, dtype=counts["spend_tier"].dtype),
            )
        )
        counts = pl.concat([counts, listed_counts.select(counts.columns)])
    counts = counts.with_columns(
        pl.col("cases").cast(pl.Int64),
        pl.col("enforced").cast(pl.Int64),
        pl.col("spend_min").cast(pl.Float64),
        pl.col("spend_max").cast(pl.Float64),
    )
    return _with_rates(counts).select(
        "group", "spend_tier", "cases", "enforced", "rate", "ci_low", "ci_high", "spend_min", "spend_max"
    )


def enforcement_by_tier(cases: Any) -> Figure:
    """Bar chart: share of flagged cases enforced, by the advertiser's trailing ad-spend tier.

    Tier 0 holds accounts without ad spend; tiers 1-4 are the quartiles of trailing spend among
    advertisers' cases. If money bought leniency, the bars would fall from left to right. Cases
    of watchlisted accounts, when there are any, get their own bar at the right. Whiskers are
    Wilson 95% confidence intervals; the number of cases is printed under each bar. This chart
    is descriptive: it does not hold policy or severity fixed, the adjusted tests do.

    Parameters
    ----------
    cases : polars or pandas DataFrame, or polars LazyFrame
        The cases frame of :func:`analysis.attribute`.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import polars as pl
    >>> cases = pl.DataFrame({"spend_tier": [0, 0, 1, 1], "enforced": [True, False, True, True]})
    >>> fig = enforcement_by_tier(cases)
    """
    data = enforcement_by_tier_data(cases)
    fig, (ax,) = _new_figure(height=4.0)
    if data.height == 0:
        _empty(ax, "No cases to show.")
        return fig
    with _style():
        x = np.arange(data.height, dtype=float)
        is_listed = (data["group"] == "listed accounts").to_numpy()
        x[is_listed] += 0.6  # a gap sets the listed accounts apart from the tiers
        rate = data["rate"].to_numpy() * 100
        low = data["ci_low"].to_numpy() * 100
        high = data["ci_high"].to_numpy() * 100
        colours = [_ORANGE if flag else _BLUE for flag in is_listed]
        ax.bar(x, rate, width=0.7, color=colours, alpha=0.85, zorder=2)
        ax.errorbar(
            x, rate, yerr=[rate - low, high - rate],
            fmt="none", ecolor="0.15", elinewidth=1.2, capsize=4, zorder=3,
        )
        for xi, r, h in zip(x, rate, high):
            ax.annotate(
                f"{r:.1f}%", xy=(xi, h), xytext=(0, 3), textcoords="offset points",
                ha="center", va="bottom", fontsize=8,
            )

        labels = []
        for row in data.iter_rows(named=True):
            label = row["group"].capitalize()
            tier = row["spend_tier"]
            if tier is not None and tier > 0 and row["spend_min"] is not None:
                label += f"\n{_usd(row['spend_min'])}\u2013{_usd(row['spend_max'])}"
            # a bare "$" would start matplotlib's mathtext
            labels.append(f"{label}\nn = {row['cases']:,}".replace("$", r"\$"))
        ax.set_xticks(x, labels)
        if is_listed.any():
            ax.axvline((x[~is_listed].max() + x[is_listed].min()) / 2, color="0.6", linewidth=0.8, linestyle=":")
        top = float(np.nanmax(high)) if np.isfinite(high).any() else 100.0
        ax.set_ylim(0, min(100.0, top * 1.15 + 2))
        ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.set_ylabel("Flagged cases enforced (% with 95% CI)")
        ax.set_xlabel("Advertiser's trailing ad spend before the flag (USD; tiers are quartiles)")
        ax.grid(axis="x", visible=False)
        ax.set_title("Enforcement rate by ad-spend tier")
    return fig


# ----------------------------------------------------------------------------------------------
# Enforcement over time
# ----------------------------------------------------------------------------------------------

_PERIOD_NAMES = {"1d": "Day", "1w": "Week", "1mo": "Month", "3mo": "Quarter", "1q": "Quarter", "1y": "Year"}


def enforcement_over_time_data(cases: Any, *, freq: str = "1mo") -> pl.DataFrame:
    """Enforcement rate per period for ever-listed accounts and all others, as drawn by
    :func:`enforcement_over_time`.

    Parameters
    ----------
    cases : polars or pandas DataFrame, or polars LazyFrame
        The cases frame of :func:`analysis.attribute`; needs ``flag_date`` (or ``flagged_at``)
        and ``enforced``, uses ``ever_listed`` and ``directive_date`` when present.
    freq : str, default "1mo"
        Period length as a polars duration ("1w", "1mo", "3mo", ...); cases are grouped by the
        period their flag date falls in.

    Returns
    -------
    polars.DataFrame
        One row per period and group: ``period`` (first day), ``group`` ("ever-listed accounts",
        "all other accounts", or "all accounts" when no account was ever listed), ``cases``,
        ``enforced``, ``rate``, ``ci_low``, ``ci_high`` (Wilson 95% interval) and
        ``directive_date`` (the earliest listing date, the same on every row; null without a
        watchlist).

    Examples
    --------
    >>> import datetime as dt, polars as pl
    >>> cases = pl.DataFrame({"flag_date": [dt.date(2023, 1, 5), dt.date(2023, 1, 9)],
    ...                       "enforced": [True, False]})
    >>> enforcement_over_time_data(cases)["rate"].to_list()
    [0.5]
    """
    date_column = "flag_date"
    if isinstance(cases, pl.LazyFrame):
        names = cases.collect_schema().names()
    elif isinstance(cases, pl.DataFrame):
        names = cases.columns
    else:
        names = list(getattr(cases, "columns", []))
    if "flag_date" not in names and "flagged_at" in names:
        date_column = "flagged_at"
    df = _as_frame(cases, [date_column, "enforced"], optional=["ever_listed", "directive_date"])
    has_listed = "ever_listed" in df.columns and bool(df["ever_listed"].fill_null(False).any())
    directive = None
    if "directive_date" in df.columns:
        directive = df["directive_date"].cast(pl.Date).min()

    group = (
        pl.when(pl.col("ever_listed").fill_null(False))
        .then(pl.lit("ever-listed accounts"))
        .otherwise(pl.lit("all other accounts"))
        if has_listed
        else pl.lit("all accounts")
    )
    counts = (
        df.with_columns(
            period=pl.col(date_column).dt.truncate(freq).cast(pl.Date),
            group=group,
            enforced=pl.col("enforced").cast(pl.Boolean),
        )
        .group_by("period", "group")
        .agg(cases=pl.len().cast(pl.Int64), enforced=pl.col("enforced").sum().cast(pl.Int64))
        .sort("period", "group")
    )
    return _with_rates(counts).with_columns(directive_date=pl.lit(directive, dtype=pl.Date))


def enforcement_over_time(cases: Any, *, freq: str = "1mo") -> Figure:
    """Line chart: enforcement rate per month, ever-listed accounts against all other accounts.

    If a directive told moderators to spare listed accounts, their line would drop after the
    directive date (the dashed vertical line) while the other line stays level; the
    difference-in-differences test puts a number and an interval on that gap. Shaded bands are
    Wilson 95% confidence intervals, wide where a month has few cases.

    Parameters
    ----------
    cases : polars or pandas DataFrame, or polars LazyFrame
        The cases frame of :func:`analysis.attribute`.
    freq : str, default "1mo"
        Period length as a polars duration ("1w", "1mo", "3mo", ...).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import datetime as dt, polars as pl
    >>> cases = pl.DataFrame({"flag_date": [dt.date(2023, 1, 5), dt.date(2023, 2, 9)],
    ...                       "enforced": [True, False]})
    >>> fig = enforcement_over_time(cases)
    """
    data = enforcement_over_time_data(cases, freq=freq)
    fig, (ax,) = _new_figure(height=3.8)
    if data.height == 0:
        _empty(ax, "No cases to show.")
        return fig
    colours = {"ever-listed accounts": _ORANGE, "all other accounts": _BLUE, "all accounts": _BLUE}
    markers = {"ever-listed accounts": "o", "all other accounts": "s", "all accounts": "s"}
    with _style():
        for name in sorted(data["group"].unique().to_list(), key=lambda g: g != "ever-listed accounts"):
            part = data.filter(pl.col("group") == name).sort("period")
            periods = part["period"].to_list()
            colour = colours.get(name, _GREEN)
            ax.fill_between(
                periods, part["ci_low"].to_numpy() * 100, part["ci_high"].to_numpy() * 100,
                color=colour, alpha=0.18, linewidth=0,
            )
            ax.plot(
                periods, part["rate"].to_numpy() * 100, marker=markers.get(name, "o"),
                markersize=3.5, color=colour, linewidth=1.6, label=name.capitalize(),
            )
        directive = data["directive_date"][0]
        if directive is not None:
            ax.axvline(directive, color=_VERMILLION, linestyle="--", linewidth=1.2)
            ax.annotate(
                f"directive {directive.isoformat()}",
                xy=(directive, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(4, -4),
                textcoords="offset points",
                ha="left",
                va="top",
                fontsize=8,
                color=_VERMILLION,
            )
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.set_ylim(0, 100)
        period = _PERIOD_NAMES.get(freq, f"Period ({freq})")
        ax.set_xlabel(f"{period} flagged")
        ax.set_ylabel("Flagged cases enforced (% with 95% CI)")
        ax.legend(loc="lower left")
        ax.set_title(f"Enforcement rate by {period.lower() if freq in _PERIOD_NAMES else 'period'}")
    return fig


# ----------------------------------------------------------------------------------------------
# Coverage funnel
# ----------------------------------------------------------------------------------------------


def coverage_funnel_data(coverage: Mapping[str, Any]) -> pl.DataFrame:
    """The coverage ledger as steps, as drawn by :func:`coverage_funnel`.

    Parameters
    ----------
    coverage : dict
        The ``coverage`` entry of results.json: ``enforcement_rows``, ``analysed`` and
        ``excluded`` ({reason: rows}).

    Returns
    -------
    polars.DataFrame
        Columns ``step``, ``kind`` ("input", "excluded", "unaccounted" or "analysed"), ``rows``
        and ``share`` (of all enforcement rows). Exclusions are sorted largest first. If the
        ledger does not add up, the difference appears as a "not accounted for" step rather than
        being hidden.

    Examples
    --------
    >>> coverage_funnel_data({"enforcement_rows": 100, "analysed": 90,
    ...                       "excluded": {"duplicate case": 10}})["rows"].to_list()
    [100, 10, 90]
    """
    total = int(coverage.get("enforcement_rows") or 0)
    analysed = int(coverage.get("analysed") or 0)
    excluded = {str(k): int(v) for k, v in (coverage.get("excluded") or {}).items()}
    steps = [("Enforcement records", "input", total)]
    largest_first = sorted(excluded.items(), key=lambda kv: (-kv[1], kv[0]))
    steps += [(reason, "excluded", rows) for reason, rows in largest_first]
    gap = total - analysed - sum(excluded.values())
    if gap != 0:
        steps.append(("not accounted for", "unaccounted", gap))
    steps.append(("Analysed", "analysed", analysed))
    return pl.DataFrame(
        {
            "step": [s[0] for s in steps],
            "kind": [s[1] for s in steps],
            "rows": [s[2] for s in steps],
            "share": [s[2] / total if total else None for s in steps],
        },
        schema={"step": pl.String, "kind": pl.String, "rows": pl.Int64, "share": pl.Float64},
    )


def coverage_funnel(coverage: Mapping[str, Any]) -> Figure:
    """Waterfall of the coverage ledger: from enforcement records to analysed cases.

    Every input row is either analysed or excluded for a stated reason; each exclusion is drawn
    as the slice it removes, with its count and share. Nothing is dropped silently.

    Parameters
    ----------
    coverage : dict
        The ``coverage`` entry of results.json.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = coverage_funnel({"enforcement_rows": 100, "analysed": 90,
    ...                        "excluded": {"duplicate case": 10}})
    """
    data = coverage_funnel_data(coverage)
    fig, (ax,) = _new_figure(height=1.0 + 0.42 * data.height)
    total = int(data["rows"][0])
    if total == 0:
        _empty(ax, "No enforcement records.")
        return fig
    colours = {"input": _BLUE, "excluded": _VERMILLION, "unaccounted": _PURPLE, "analysed": _GREEN}
    with _style():
        y = np.arange(data.height)[::-1]
        remaining = total
        for yi, row in zip(y, data.iter_rows(named=True)):
            rows = row["rows"]
            if row["kind"] in ("excluded", "unaccounted"):
                left, width = remaining - rows, rows
                remaining -= rows
                label = f"\u2212{rows:,} ({_share(row['share'])})"
            else:
                left, width = 0, rows
                label = f"{rows:,} ({_share(row['share'])})"
            ax.barh(yi, width, left=left, height=0.6, color=colours[row["kind"]], alpha=0.9, zorder=2)
            ax.annotate(
                label, xy=(left + width, yi), xytext=(4, 0), textcoords="offset points",
                va="center", ha="left", fontsize=8,
            )
        ax.set_yticks(y, [s[:1].upper() + s[1:] for s in data["step"].to_list()])
        ax.set_xlim(0, total * 1.22)  # room for the labels right of the longest bar
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_xlabel("Enforcement records (rows)")
        ax.grid(axis="y", visible=False)
        ax.set_title("Coverage: from enforcement records to analysed cases")
    return fig


# ----------------------------------------------------------------------------------------------
# Crude and adjusted comparisons side by side
# ----------------------------------------------------------------------------------------------


def crude_vs_adjusted_data(comparisons: Any) -> pl.DataFrame:
    """The crude and adjusted estimates drawn by :func:`crude_vs_adjusted`, one row each.

    Parameters
    ----------
    comparisons : polars or pandas DataFrame
        One row per comparison, as returned by :func:`analysis.audit.crude_and_adjusted`:
        ``comparison`` (label), ``crude``, ``crude_ci_low``, ``crude_ci_high``, ``adjusted``,
        ``adjusted_ci_low``, ``adjusted_ci_high`` (odds ratios) and, when present,
        ``adjusted_test`` (the test id of the adjusted estimate).

    Returns
    -------
    polars.DataFrame
        Long form: ``comparison``, ``kind`` ("crude" or "adjusted"), ``estimate``, ``ci_low``,
        ``ci_high`` and ``test`` (test id, null for a crude estimate computed for the figure).
        Comparisons keep their order; a missing estimate (a test that did not run) is left out.

    Examples
    --------
    >>> import polars as pl
    >>> table = pl.DataFrame({"comparison": ["listed vs other"], "crude": [0.33],
    ...     "crude_ci_low": [0.28], "crude_ci_high": [0.39], "adjusted": [0.41],
    ...     "adjusted_ci_low": [0.34], "adjusted_ci_high": [0.50]})
    >>> crude_vs_adjusted_data(table)["kind"].to_list()
    ['crude', 'adjusted']
    """
    wanted = ["comparison", "crude", "crude_ci_low", "crude_ci_high", "adjusted", "adjusted_ci_low",
              "adjusted_ci_high"]
    df = _as_frame(comparisons, wanted, optional=["crude_test", "adjusted_test"])
    rows = []
    for row in df.iter_rows(named=True):
        for kind in ("crude", "adjusted"):
            estimate = row[kind]
            if not _finite(estimate) or estimate <= 0:
                continue
            low, high = row[f"{kind}_ci_low"], row[f"{kind}_ci_high"]
            rows.append({
                "comparison": str(row["comparison"]),
                "kind": kind,
                "estimate": float(estimate),
                "ci_low": float(low) if _finite(low) and low > 0 else None,
                "ci_high": float(high) if _finite(high) and high > 0 else None,
                "test": row.get(f"{kind}_test"),
            })
    schema = {"comparison": pl.String, "kind": pl.String, "estimate": pl.Float64,
              "ci_low": pl.Float64, "ci_high": pl.Float64, "test": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


def crude_vs_adjusted(comparisons: Any) -> Figure:
    """Crude and like-with-like odds ratios of each comparison, drawn next to each other.

    The crude odds ratio compares all cases of one group with all cases of the other; the
    adjusted one compares cases of the same policy and severity band only, then combines the
    strata. When the two disagree, the groups differ in the mix of violations they are flagged
    for, and the crude figure mixes that difference into the comparison. In the extreme the
    direction flips (Simpson's paradox): a group can be enforced less often overall and yet no
    less often within every policy. The adjusted estimate is the one that answers the question.

    Parameters
    ----------
    comparisons : polars or pandas DataFrame
        As returned by :func:`analysis.audit.crude_and_adjusted`.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import polars as pl
    >>> table = pl.DataFrame({"comparison": ["listed vs other"], "crude": [0.33],
    ...     "crude_ci_low": [0.28], "crude_ci_high": [0.39], "adjusted": [0.41],
    ...     "adjusted_ci_low": [0.34], "adjusted_ci_high": [0.50]})
    >>> fig = crude_vs_adjusted(table)
    """
    data = crude_vs_adjusted_data(comparisons)
    names = list(dict.fromkeys(data["comparison"].to_list()))
    fig, (ax,) = _new_figure(height=1.5 + 0.75 * max(len(names), 1))
    if not names:
        _empty(ax, "No comparison has an estimate.")
        return fig
    # the crude estimate above the adjusted one: read top to bottom, "before" and "after"
    styles = {"crude": ("o", "0.45", 0.17, "Crude (all cases)"),
              "adjusted": ("s", _BLUE, -0.17, "Adjusted (like with like)")}
    with _style():
        centre = {name: len(names) - 1 - i for i, name in enumerate(names)}  # first on top
        ax.axvline(1.0, color="0.35", linestyle="--", linewidth=1, zorder=1)
        values = [1.0]
        for kind, (marker, colour, offset, label) in styles.items():
            part = data.filter(pl.col("kind") == kind)
            if part.height == 0:
                continue
            y = np.array([centre[n] + offset for n in part["comparison"]])
            est = part["estimate"].to_numpy()
            low = part["ci_low"].fill_null(float("nan")).to_numpy()
            high = part["ci_high"].fill_null(float("nan")).to_numpy()
            ok = ~(np.isnan(low) | np.isnan(high))
            ax.hlines(y[ok], low[ok], high[ok], color=colour, linewidth=2, zorder=2)
            ax.plot(est, y, marker, color=colour, markersize=6, linestyle="none", zorder=3,
                    markeredgecolor="white", markeredgewidth=0.6, label=label)
            values += list(est) + list(low[ok]) + list(high[ok])
            for yi, e, lw, hg, has in zip(y, est, low, high, ok):
                text = f"{e:.2f}" + (f"  ({lw:.2f} to {hg:.2f})" if has else "")
                ax.annotate(text, xy=(1.0, yi), xycoords=("axes fraction", "data"),
                            xytext=(8, 0), textcoords="offset points", va="center", ha="left",
                            fontsize=8, color=colour)
        lo, hi = min(values), max(values)
        span = max(math.log(hi / lo), math.log(1.5))
        ax.set_xscale("log")
        ax.set_xlim(lo / math.exp(0.08 * span), hi * math.exp(0.08 * span))
        ax.set_xticks(_ratio_ticks(*ax.get_xlim()))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_yticks([centre[n] for n in names], names)
        ax.set_ylim(-0.7, len(names) - 0.3)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("Odds ratio of enforcement (log scale; 1 = no difference)")
        for text, ha, dx in ((_LENIENT, "right", -6), (_STRICTER, "left", 6)):
            ax.annotate(text, xy=(1.0, 1.0), xycoords=("data", "axes fraction"), xytext=(dx, 3),
                        textcoords="offset points", ha=ha, va="bottom", fontsize=8, color="0.3")
        fig.legend(loc="outside lower center", ncols=2)
        ax.set_title("Crude and like-with-like odds ratios (95% CI)", pad=22)
    return fig


# ----------------------------------------------------------------------------------------------
# Time to decision: Kaplan-Meier curves
# ----------------------------------------------------------------------------------------------

# Labels of the groups of analysis.stats.kaplan_meier(..., group="listed")
_SURVIVAL_GROUPS = {True: "cases of listed accounts", False: "cases of other accounts", "all": "all cases"}
# Readable ticks for hours on a log axis
_HOUR_TICKS = ((1 / 60, "1 min"), (1, "1 hour"), (6, "6 hours"), (24, "1 day"), (24 * 7, "1 week"),
               (24 * 30, "30 days"), (24 * 91, "3 months"), (24 * 365, "1 year"))


def _survival_label(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)) or value in (0, 1):
        return _SURVIVAL_GROUPS[bool(value)]
    return _SURVIVAL_GROUPS.get(value, str(value))


def kaplan_meier_data(curves: Any, *, points: int = 400) -> pl.DataFrame:
    """The Kaplan-Meier curves as drawn by :func:`kaplan_meier`, read off at ``points`` times.

    A curve of 50,000 cases has a step at nearly every decision, tens of thousands of them. The
    figure reads each curve at ``points`` times spaced evenly on a log scale (the value at a time
    is that of the curve's last step at or before it), which draws the same picture at a
    fraction of the size, and this table holds exactly those values. Each curve stops at its
    last decision: after that the data say nothing about it.

    Parameters
    ----------
    curves : polars or pandas DataFrame
        The output of :func:`analysis.stats.kaplan_meier` (``group``, ``time``, ``survival``,
        ``ci_low``, ``ci_high``), e.g. ``kaplan_meier(cases, duration="decision_hours",
        event="decided", group="listed")``.
    points : int, default 400
        Number of times at which each curve is read.

    Returns
    -------
    polars.DataFrame
        ``group`` (readable label: "cases of listed accounts", "cases of other accounts", or the
        group's value), ``time`` (hours since the flag), ``survival`` (share of cases still
        undecided), ``ci_low`` and ``ci_high`` (pointwise 95% interval; null before the first
        decision). Sorted by group and time.

    Examples
    --------
    >>> import polars as pl
    >>> curves = pl.DataFrame({"group": [True, True, False, False], "time": [0.0, 2.0, 0.0, 4.0],
    ...                        "survival": [1.0, 0.5, 1.0, 0.25]})
    >>> data = kaplan_meier_data(curves, points=2)
    >>> data.select("group", "time", "survival").rows()
    [('cases of listed accounts', 2.0, 0.5), ('cases of other accounts', 2.0, 1.0), ('cases of other accounts', 4.0, 0.25)]
    """
    if points < 2:
        raise ValueError(f"points must be at least 2, got {points}")
    df = _as_frame(curves, ["time", "survival"], optional=["group", "ci_low", "ci_high"])
    if "group" not in df.columns:
        df = df.with_columns(group=pl.lit("all"))
    for column in ("ci_low", "ci_high"):
        if column not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.Float64).alias(column))
    schema = {"group": pl.String, "time": pl.Float64, "survival": pl.Float64, "ci_low": pl.Float64,
              "ci_high": pl.Float64}
    df = df.with_columns(pl.col("time", "survival", "ci_low", "ci_high").cast(pl.Float64))
    positive = df.filter(pl.col("time") > 0)["time"]
    if positive.len() == 0:
        return pl.DataFrame(schema=schema)
    grid = np.unique(np.geomspace(positive.min(), df["time"].max(), points))
    pieces = []
    for value in df["group"].unique(maintain_order=True).sort().to_list():
        part = df.filter(pl.col("group") == value).sort("time")
        times = pl.DataFrame({"time": grid[grid <= part["time"].max()]})
        read = times.join_asof(part.select("time", "survival", "ci_low", "ci_high"), on="time",
                               strategy="backward")
        pieces.append(read.select(pl.lit(_survival_label(value)).alias("group"), pl.all()))
    return pl.concat(pieces).cast(schema).sort("group", "time")


def kaplan_meier(curves: Any, *, points: int = 400) -> Figure:
    """Kaplan-Meier curves: the share of cases still undecided, hour by hour after the flag.

    Each curve starts at 100% when cases are flagged and falls as they are decided. A curve that
    stays higher means that group's cases wait longer for a decision. Cases still open when the
    data end count for as long as they were observed and are never counted as decided (that is
    what the Kaplan-Meier estimator is for). Where the curve crosses the dotted 50% line is the
    median time to a decision. Time is on a log scale, so that the first hours and the long
    tail both show. Bands are pointwise 95% confidence intervals. The curves compare all cases;
    the Cox model (test ``decision_speed``) compares cases of the same policy.

    Parameters
    ----------
    curves : polars or pandas DataFrame
        The output of :func:`analysis.stats.kaplan_meier` with durations in hours.
    points : int, default 400
        Number of times at which each curve is drawn (see :func:`kaplan_meier_data`).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import polars as pl
    >>> curves = pl.DataFrame({"group": [True, True, False, False], "time": [0.0, 2.0, 0.0, 4.0],
    ...                        "survival": [1.0, 0.5, 1.0, 0.25]})
    >>> fig = kaplan_meier(curves)
    """
    data = kaplan_meier_data(curves, points=points)
    fig, (ax,) = _new_figure(height=4.0)
    if data.height == 0:
        _empty(ax, "No decision times to show.")
        return fig
    colours = {"cases of listed accounts": _ORANGE, "cases of other accounts": _BLUE}
    with _style():
        names = sorted(data["group"].unique().to_list(), key=lambda g: g != "cases of listed accounts")
        for i, name in enumerate(names):
            part = data.filter(pl.col("group") == name)
            colour = colours.get(name, PALETTE[(i + 2) % len(PALETTE)])
            time = part["time"].to_numpy()
            ok = part["ci_low"].is_not_null().to_numpy() & part["ci_high"].is_not_null().to_numpy()
            ax.fill_between(time, part["ci_low"].fill_null(float("nan")).to_numpy() * 100,
                            part["ci_high"].fill_null(float("nan")).to_numpy() * 100,
                            where=ok, step="post", color=colour, alpha=0.18, linewidth=0)
            ax.step(time, part["survival"].to_numpy() * 100, where="post", color=colour,
                    linewidth=1.6, label=name[0].upper() + name[1:])
        ax.axhline(50, color="0.45", linestyle=":", linewidth=1)
        ax.annotate("half decided", xy=(1.0, 50), xycoords=("axes fraction", "data"),
                    xytext=(-4, 3), textcoords="offset points", ha="right", va="bottom",
                    fontsize=8, color="0.35")
        ax.set_xscale("log")
        low, high = float(data["time"].min()), float(data["time"].max())
        ax.set_xlim(low, high)
        ticks = [(t, label) for t, label in _HOUR_TICKS if low <= t <= high]
        if len(ticks) >= 2:
            ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks])
            ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.set_ylim(0, 100)
        ax.set_xlabel("Time since the case was flagged (log scale)")
        ax.set_ylabel("Cases still undecided (% with 95% CI)")
        ax.legend(loc="lower left")
        ax.set_title("Time to a moderation decision (Kaplan\u2013Meier)")
    return fig


# ----------------------------------------------------------------------------------------------
# Event study around the directive
# ----------------------------------------------------------------------------------------------


def event_study_data(rows: Any, *, directive_month: int = 0) -> pl.DataFrame:
    """The month-by-month gaps drawn by :func:`event_study`.

    Parameters
    ----------
    rows : list of dict, or polars or pandas DataFrame
        The ``event_study`` rows of the ``directive_did`` test in results.json (its
        ``details``), or the output of :func:`analysis.stats.event_study`: ``event_time``
        (months relative to the directive), ``estimate``, ``ci_low``, ``ci_high`` and, when
        present, ``p_value``, ``reference``, ``n_treated``, ``n_control``.
    directive_month : int, default 0
        The event time of the month in which the directive took effect.

    Returns
    -------
    polars.DataFrame
        ``event_time``, ``estimate`` (difference in enforcement probability relative to the
        reference month), ``ci_low``, ``ci_high``, ``p_value``, ``reference`` (True for the
        month everything is compared with), ``after_directive`` (event time at or after
        ``directive_month``), ``n_treated`` and ``n_control`` (cases of listed and of other
        accounts that month), sorted by event time.

    Examples
    --------
    >>> rows = [{"event_time": 0, "estimate": -0.2, "ci_low": -0.3, "ci_high": -0.1},
    ...         {"event_time": -1, "estimate": 0.0, "ci_low": 0.0, "ci_high": 0.0, "reference": True}]
    >>> event_study_data(rows)["after_directive"].to_list()
    [False, True]
    """
    schema = {"event_time": pl.Int64, "estimate": pl.Float64, "ci_low": pl.Float64,
              "ci_high": pl.Float64, "p_value": pl.Float64, "reference": pl.Boolean,
              "after_directive": pl.Boolean, "n_treated": pl.Int64, "n_control": pl.Int64}
    if isinstance(rows, (list, tuple)):
        if not rows:
            return pl.DataFrame(schema=schema)
        rows = pl.DataFrame([dict(r) for r in rows], infer_schema_length=None)
    df = _as_frame(rows, ["event_time", "estimate"],
                   optional=["ci_low", "ci_high", "p_value", "reference", "n_treated", "n_control"])
    for column in ("ci_low", "ci_high", "p_value", "reference", "n_treated", "n_control"):
        if column not in df.columns:
            df = df.with_columns(pl.lit(None).alias(column))
    return (
        df.with_columns(
            pl.col("reference").cast(pl.Boolean).fill_null(False),
            after_directive=pl.col("event_time") >= directive_month,
        )
        .select(list(schema))
        .cast(schema)
        .sort("event_time")
    )


def event_study(rows: Any, *, directive_month: int = 0) -> Figure:
    """Event study: the gap between listed and other accounts, month by month around the directive.

    Each point is how much the enforcement rate of listed accounts moved relative to that of
    all other accounts, between the month before the directive (the reference, drawn hollow at 0)
    and the month shown, in percentage points, like with like (same policy and severity band).
    Before the directive the points should hover around 0: the two groups moved in parallel,
    which is what the difference-in-differences test assumes. A drop that starts at the
    directive, and not before, is the pattern a do-not-moderate list would leave. Lines are 95%
    confidence intervals, clustered by account.

    Parameters
    ----------
    rows : list of dict, or polars or pandas DataFrame
        The ``event_study`` rows of the ``directive_did`` test (see :func:`event_study_data`).
    directive_month : int, default 0
        The event time of the month in which the directive took effect; a dashed line marks
        its start.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> rows = [{"event_time": 0, "estimate": -0.2, "ci_low": -0.3, "ci_high": -0.1},
    ...         {"event_time": -1, "estimate": 0.0, "ci_low": 0.0, "ci_high": 0.0, "reference": True}]
    >>> fig = event_study(rows)
    """
    data = event_study_data(rows, directive_month=directive_month)
    fig, (ax,) = _new_figure(height=4.0)
    if data.height == 0:
        _empty(ax, "No event study: the directive test did not run.")
        return fig
    with _style():
        x = data["event_time"].to_numpy()
        est = data["estimate"].to_numpy() * 100
        low = data["ci_low"].fill_null(float("nan")).to_numpy() * 100
        high = data["ci_high"].fill_null(float("nan")).to_numpy() * 100
        reference = data["reference"].to_numpy()
        after = data["after_directive"].to_numpy()
        has_ci = ~(np.isnan(low) | np.isnan(high)) & ~reference
        ax.axhline(0, color="0.35", linestyle="--", linewidth=1, zorder=1)
        for mask, colour, label in ((~after, _BLUE, "before the directive"),
                                    (after, _ORANGE, "from the directive on")):
            ci = mask & has_ci
            ax.vlines(x[ci], low[ci], high[ci], color=colour, linewidth=1.8, zorder=2)
            shown = mask & ~reference
            ax.plot(x[shown], est[shown], "o", color=colour, markersize=5.5, zorder=3,
                    markeredgecolor="white", markeredgewidth=0.6, label=label.capitalize())
        ax.plot(x[reference], est[reference], "o", markerfacecolor="white", markeredgecolor="0.2",
                markersize=6, zorder=3, label="Reference month (set to 0)")
        ax.axvline(directive_month - 0.5, color=_VERMILLION, linestyle="--", linewidth=1.2)
        ax.annotate("directive", xy=(directive_month - 0.5, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(4, -4), textcoords="offset points", ha="left", va="top", fontsize=8,
                    color=_VERMILLION)
        finite = np.concatenate([est, low[has_ci], high[has_ci], [0.0]])
        reach = max(abs(float(np.min(finite))), abs(float(np.max(finite))), 1.0) * 1.12
        ax.set_ylim(-reach, reach)
        ax.set_xticks(x)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+.0f}".replace("-", "\u2212")
                                                   if v else "0"))
        ax.set_xlabel(f"Months relative to the directive ({directive_month} = the month it took effect)")
        ax.set_ylabel("Listed minus other accounts,\nchange in enforcement (points)")
        ax.legend(loc="lower left", fontsize=8)
        ax.set_title("Listed against other accounts, month by month")
    return fig


# ----------------------------------------------------------------------------------------------
# What each test could have detected
# ----------------------------------------------------------------------------------------------

# Tests whose estimate repeats another test's (the equivalence test re-reads listed_adjusted)
_SAME_ESTIMATE_AS_ANOTHER = frozenset({"equal_treatment"})


def mde_chart_data(tests: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Each test's estimate, interval and minimum detectable effect, as drawn by :func:`mde_chart`.

    Parameters
    ----------
    tests : list of dict
        The ``tests`` list of results.json. Tests that did not run, without an MDE, or that
        re-read another test's estimate (``equal_treatment``) are left out.

    Returns
    -------
    polars.DataFrame
        The columns of :func:`forest_data` plus ``mde``: the effect the test would detect 4
        times in 5, on the leniency side of the reference (below 1 for most ratios, above 1 for
        reversals on appeal, negative for differences in probability).

    Examples
    --------
    >>> mde_chart_data([{"id": "spend_adjusted", "status": "ok", "scale": "OR", "estimate": 0.99,
    ...                  "ci_low": 0.93, "ci_high": 1.05, "mde": 0.92}])["mde"].to_list()
    [0.92]
    """
    listed = [t if isinstance(t, Mapping) else t.to_dict() for t in tests]
    keep = [t for t in listed if t.get("id") not in _SAME_ESTIMATE_AS_ANOTHER and _finite(t.get("mde"))]
    data = forest_data(keep)
    mde = {str(t.get("id")): float(t["mde"]) for t in keep}
    return data.with_columns(
        mde=pl.col("id").replace_strict(mde, return_dtype=pl.Float64)
    ).filter((pl.col("panel") == "difference") | (pl.col("mde") > 0))


def mde_chart(tests: Sequence[Mapping[str, Any]]) -> Figure:
    """What each test could have seen: its estimate against its minimum detectable effect.

    The shaded bar of each test runs from "no difference" to its minimum detectable effect
    (MDE), the leniency it had an 80% chance of detecting at the 5% level. Leniency inside the
    shaded bar could have been missed: a test that found nothing only rules out effects
    beyond its bar, and only roughly. The square and line are the estimate and its 95%
    confidence interval, as in the forest plot.

    Parameters
    ----------
    tests : list of dict
        The ``tests`` list of results.json.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = mde_chart([{"id": "spend_adjusted", "status": "ok", "scale": "OR", "estimate": 0.99,
    ...                   "ci_low": 0.93, "ci_high": 1.05, "mde": 0.92}])
    """
    data = mde_chart_data(tests)
    panels = [(data.filter(pl.col("panel") == kind), kind) for kind in ("ratio", "difference")]
    panels = [(frame, kind) for frame, kind in panels if frame.height]
    if not panels:
        fig, (ax,) = _new_figure(height=2.0)
        _empty(ax, "No test has a minimum detectable effect.")
        return fig
    heights = [frame.height + 1.6 for frame, _ in panels]
    fig, axes = _new_figure(len(panels), height=0.36 * sum(heights) + 1.1, height_ratios=heights)
    with _style():
        for ax, (frame, kind) in zip(axes, panels):
            _mde_panel(ax, frame, kind)
        axes[0].set_title("What each test could detect", pad=22)
        note = ("Shaded: from no difference to the minimum detectable effect (80% power, 5% level); "
                "leniency inside it could have been missed.")
        if data["higher_is_lenient"].any():
            note += "\n\u2020 For these tests leniency lies above the reference line."
        fig.supxlabel(note, x=0.01, ha="left", fontsize=7.5, color="0.3")
    return fig


def _mde_panel(ax, frame: pl.DataFrame, kind: str) -> None:
    ratio = kind == "ratio"
    factor = 1.0 if ratio else 100.0
    reference = 1.0 if ratio else 0.0
    y = np.arange(frame.height)[::-1]
    est = frame["estimate"].to_numpy() * factor
    low = frame["ci_low"].fill_null(float("nan")).to_numpy() * factor
    high = frame["ci_high"].fill_null(float("nan")).to_numpy() * factor
    mde = frame["mde"].to_numpy() * factor
    has_ci = ~(np.isnan(low) | np.isnan(high))
    left = np.minimum(mde, reference)
    ax.barh(y, np.abs(mde - reference), left=left, height=0.55, color=_GREY, alpha=0.3, zorder=1,
            linewidth=0)
    ax.axvline(reference, color="0.35", linestyle="--", linewidth=1, zorder=1)
    ax.hlines(y[has_ci], low[has_ci], high[has_ci], color=_BLUE, linewidth=2, zorder=2)
    ax.plot(est, y, "s", color=_BLUE, markersize=6, zorder=3, markeredgecolor="white",
            markeredgewidth=0.6)
    labels = [f"{i} \u2020" if flip else i for i, flip in zip(frame["id"], frame["higher_is_lenient"])]
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.7, frame.height - 0.3)
    ax.grid(axis="y", visible=False)
    finite = np.concatenate([est, low[has_ci], high[has_ci], mde, [reference]])
    lo, hi = float(np.min(finite)), float(np.max(finite))
    if ratio:
        span = max(math.log(hi / lo), math.log(1.5))
        ax.set_xscale("log")
        ax.set_xlim(lo / math.exp(0.08 * span), hi * math.exp(0.08 * span))
        ax.set_xticks(_ratio_ticks(*ax.get_xlim()))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        scales = [_RATIO_SCALES[s] for s in dict.fromkeys(frame["scale"].to_list())]
        name = " or ".join(scales)
        ax.set_xlabel(f"{name[0].upper()}{name[1:]} (log scale; 1 = no difference)")
    else:
        pad = max(0.08 * (hi - lo), 0.5)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_xlabel("Difference in enforcement probability (percentage points; 0 = no difference)")
    for yi, m in zip(y, mde):
        text = f"MDE {m:.2f}" if ratio else f"MDE {m:+.1f}"
        ax.annotate(text.replace("-", "\u2212"), xy=(1.0, yi), xycoords=("axes fraction", "data"),
                    xytext=(8, 0), textcoords="offset points", va="center", ha="left",
                    fontsize=8, color="0.2")


# ----------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------


class FigurePaths(NamedTuple):
    """Where :func:`save_figure` wrote a figure and its data."""

    png: Path
    svg: Path
    csv: Path


def save_figure(
    fig: Figure, data: Any, out_dir: str | Path, name: str, *, dpi: int = 150
) -> FigurePaths:
    """Write a figure as PNG and SVG, and the data behind it as CSV; close the figure.

    The files carry no timestamp and SVG element ids are salted with ``name``, so the same figure
    saved twice gives byte-identical files, and a rerun of a report can be compared file by file.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        A figure from this module (or any other).
    data : polars or pandas DataFrame
        The numbers drawn, e.g. from the figure's ``*_data`` companion; written as ``name.csv``,
        decimals to 10 significant digits (as in results.json).
    out_dir : str or Path
        Folder to write into (created if missing), e.g. ``<run>/figures``.
    name : str
        File stem: ``forest`` gives forest.png, forest.svg and forest.csv.
    dpi : int, default 150
        Resolution of the PNG.

    Returns
    -------
    FigurePaths
        The paths of the PNG, SVG and CSV files.

    Examples
    --------
    >>> fig = coverage_funnel({"enforcement_rows": 100, "analysed": 90,
    ...                        "excluded": {"duplicate case": 10}})
    >>> data = coverage_funnel_data({"enforcement_rows": 100, "analysed": 90,
    ...                              "excluded": {"duplicate case": 10}})
    >>> save_figure(fig, data, "figures", "coverage_funnel").png.name  # doctest: +SKIP
    'coverage_funnel.png'
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = FigurePaths(out / f"{name}.png", out / f"{name}.svg", out / f"{name}.csv")
    frame = data.collect() if isinstance(data, pl.LazyFrame) else data
    if not isinstance(frame, pl.DataFrame):
        frame = pl.from_pandas(frame)
    try:
        with _rc({"svg.hashsalt": f"levelfield-{name}", "svg.fonttype": "path"}):
            fig.savefig(paths.png, dpi=dpi, metadata={"Software": None}, facecolor="white")
            fig.savefig(paths.svg, format="svg", metadata={"Date": None}, facecolor="white")
    finally:
        plt.close(fig)
    # Numbers to 10 significant digits, as in results.json: the last bits of a float can differ
    # between processors (vectorised exp and log) and summation orders, the file must not.
    frame.with_columns(pl.col(pl.Float32, pl.Float64).round_sig_figs(10)).write_csv(paths.csv)
    return paths
