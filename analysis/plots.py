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
    "enforcement_by_tier",
    "enforcement_by_tier_data",
    "enforcement_over_time",
    "enforcement_over_time_data",
    "forest",
    "forest_data",
    "save_figure",
]

PALETTE: list[str] = sns.color_palette("colorblind").as_hex()
"""The colour-blind-safe palette every figure draws from (seaborn "colorblind")."""

_BLUE, _ORANGE, _GREEN, _VERMILLION, _PURPLE = PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[3], PALETTE[4]
_GREY = PALETTE[7]

_Z95 = 1.959963984540054  # standard normal quantile for a two-sided 95% interval
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


def _wilson(successes: np.ndarray, trials: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score 95% interval for a proportion (Newcombe 1998, method 3).

    Unlike the textbook "estimate ± 1.96 standard errors", it stays inside [0, 1] and keeps its
    coverage for small groups and rates near 0 or 100%.
    """
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        z2 = _Z95**2
        centre = (p + z2 / (2 * n)) / (1 + z2 / n)
        half = _Z95 * np.sqrt(p * (1 - p) / n + z2 / (4 * n**2)) / (1 + z2 / n)
        low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
        high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    # exact bounds at the edges, where rounding could leave 1e-17 instead of 0
    low = np.where(k == 0, 0.0, low)
    high = np.where((k == n) & (n > 0), 1.0, high)
    return low, high


def _with_rates(counts: pl.DataFrame) -> pl.DataFrame:
    """Add rate and Wilson 95% interval to a frame with ``cases`` and ``enforced`` counts."""
    low, high = _wilson(counts["enforced"].to_numpy(), counts["cases"].to_numpy())
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
        The numbers drawn, e.g. from the figure's ``*_data`` companion; written as ``name.csv``.
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
    frame.write_csv(paths.csv)
    return paths
