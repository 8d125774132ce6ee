"""Tests of analysis.plots: the numbers behind each figure, the figures, and reproducible files."""

from __future__ import annotations

import datetime as dt

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import polars as pl
import pytest

from analysis import plots

# Newcombe RG (1998), "Two-sided confidence intervals for the single proportion: comparison of
# seven methods", Statistics in Medicine 17:857-872, worked examples, method 3 (Wilson score
# interval without continuity correction).
NEWCOMBE_WILSON = {
    1: (81, 263, 0.2553, 0.3662),
    2: (15, 148, 0.0624, 0.1605),
    3: (0, 20, 0.0000, 0.1611),
    4: (1, 29, 0.0061, 0.1718),
}


@pytest.fixture(autouse=True)
def _close_figures():
    """Figures stay registered with pyplot until saved (so notebooks show them); close them here."""
    yield
    plt.close("all")


def _cases_with_counts(counts: dict[int, tuple[int, int]], *, listed: tuple[int, int] | None = None) -> pl.DataFrame:
    """A cases frame whose tier t has counts[t] = (enforced, cases); listed cases optional."""
    tiers, enforced, is_listed, spend = [], [], [], []
    for tier, (k, n) in sorted(counts.items()):
        tiers += [tier] * n
        enforced += [True] * k + [False] * (n - k)
        is_listed += [False] * n
        spend += [0.0 if tier == 0 else 1000.0 * 10**tier + i for i in range(n)]
    if listed is not None:
        k, n = listed
        tiers += [4] * n
        enforced += [True] * k + [False] * (n - k)
        is_listed += [True] * n
        spend += [5e6] * n
    return pl.DataFrame(
        {
            "spend_tier": pl.Series(tiers, dtype=pl.Int8),
            "enforced": enforced,
            "listed": is_listed,
            "trailing_spend": spend,
        }
    )


def _as(kind: str, frame: pl.DataFrame):
    return {"polars": frame, "lazy": frame.lazy(), "pandas": frame.to_pandas()}[kind]


@pytest.mark.parametrize("kind", ["polars", "lazy", "pandas"])
def test_tier_rates_use_wilson_intervals_matching_newcombe(kind):
    cases = _cases_with_counts({t: (k, n) for t, (k, n, _, _) in NEWCOMBE_WILSON.items()})
    data = plots.enforcement_by_tier_data(_as(kind, cases))
    assert data["spend_tier"].to_list() == [1, 2, 3, 4]
    for row in data.iter_rows(named=True):
        k, n, low, high = NEWCOMBE_WILSON[row["spend_tier"]]
        assert (row["enforced"], row["cases"]) == (k, n)
        assert row["rate"] == pytest.approx(k / n)
        assert row["ci_low"] == pytest.approx(low, abs=5e-5)
        assert row["ci_high"] == pytest.approx(high, abs=5e-5)


def test_listed_cases_form_their_own_group_and_are_not_counted_twice():
    cases = _cases_with_counts({0: (30, 50), 1: (20, 40), 4: (10, 30)}, listed=(2, 10))
    data = plots.enforcement_by_tier_data(cases)
    assert data["group"].to_list() == ["no ad spend", "tier 1", "tier 4", "listed accounts"]
    assert data["cases"].to_list() == [50, 40, 30, 10]
    assert data["enforced"].to_list() == [30, 20, 10, 2]
    assert data["cases"].sum() == cases.height
    assert data.filter(pl.col("group") == "listed accounts")["spend_tier"].to_list() == [None]
    # the tier's spend range is that of its own cases, in USD
    tier1 = data.filter(pl.col("spend_tier") == 1).row(0, named=True)
    assert (tier1["spend_min"], tier1["spend_max"]) == (10000.0, 10039.0)


def test_without_listed_accounts_there_is_no_listed_group():
    cases = _cases_with_counts({0: (1, 2), 2: (2, 2)}).drop("listed")
    data = plots.enforcement_by_tier_data(cases)
    assert data["group"].to_list() == ["no ad spend", "tier 2"]
    # 2 of 2 enforced: the upper Wilson bound is exactly 1
    assert data["ci_high"].to_list()[1] == 1.0


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="spend_tier"):
        plots.enforcement_by_tier_data(pl.DataFrame({"enforced": [True]}))


def _timeline() -> pl.DataFrame:
    d = dt.date
    return pl.DataFrame(
        {
            "flag_date": [d(2023, 5, 3), d(2023, 5, 20), d(2023, 5, 21), d(2023, 6, 2), d(2023, 6, 30), d(2023, 6, 9)],
            "enforced": [True, False, True, False, False, True],
            "ever_listed": [True, False, False, True, True, False],
            "directive_date": [d(2023, 6, 1)] * 6,
        }
    )


@pytest.mark.parametrize("kind", ["polars", "lazy", "pandas"])
def test_monthly_rates_by_listing_status(kind):
    data = plots.enforcement_over_time_data(_as(kind, _timeline()))
    assert data.select("period", "group", "cases", "enforced").rows() == [
        (dt.date(2023, 5, 1), "all other accounts", 2, 1),
        (dt.date(2023, 5, 1), "ever-listed accounts", 1, 1),
        (dt.date(2023, 6, 1), "all other accounts", 1, 1),
        (dt.date(2023, 6, 1), "ever-listed accounts", 2, 0),
    ]
    assert data["directive_date"].unique().to_list() == [dt.date(2023, 6, 1)]
    # 1 of 2: Wilson 95% interval 0.0945 to 0.9055 (closed form, z = 1.96)
    assert data["ci_low"][0] == pytest.approx(0.0945, abs=1e-4)
    assert data["ci_high"][0] == pytest.approx(0.9055, abs=1e-4)


def test_without_watchlist_all_accounts_form_one_line():
    cases = _timeline().drop("ever_listed", "directive_date")
    data = plots.enforcement_over_time_data(cases, freq="1y")
    assert data.select("period", "group", "cases", "enforced").rows() == [(dt.date(2023, 1, 1), "all accounts", 6, 3)]
    assert data["directive_date"].to_list() == [None]
    fig = plots.enforcement_over_time(cases)
    assert fig.axes[0].get_ylabel().startswith("Flagged cases enforced")


TESTS = [
    {"id": "listed_adjusted", "status": "ok", "scale": "OR", "estimate": 0.31, "ci_low": 0.27, "ci_high": 0.36,
     "p_value": 1e-30, "p_adjusted": 1e-29, "n": 60000},
    {"id": "decision_speed", "status": "ok", "scale": "HR", "estimate": 0.74, "ci_low": 0.66, "ci_high": 0.83,
     "p_value": 3e-7, "p_adjusted": 2e-6, "n": 60000},
    {"id": "appeal_reversal", "status": "ok", "scale": "OR", "estimate": 1.8, "ci_low": 1.2, "ci_high": 2.7,
     "p_value": 0.004, "p_adjusted": 0.02, "n": 900},
    {"id": "spend_trend", "status": "skipped", "scale": "OR", "estimate": None, "ci_low": None, "ci_high": None,
     "reason": "no advertisers"},
    {"id": "directive_did", "status": "ok", "scale": "probability", "estimate": -0.21, "ci_low": -0.27,
     "ci_high": -0.15, "p_value": 4e-12, "p_adjusted": 3e-11, "n": 60000},
]


def test_forest_data_keeps_tests_with_estimates_in_order():
    data = plots.forest_data(TESTS)
    assert data["id"].to_list() == ["listed_adjusted", "decision_speed", "appeal_reversal", "directive_did"]
    assert data["panel"].to_list() == ["ratio", "ratio", "ratio", "difference"]
    assert data["higher_is_lenient"].to_list() == [False, False, True, False]
    assert data["ci_low"].to_list() == [0.27, 0.66, 1.2, -0.27]


def test_forest_draws_ratios_on_a_log_axis_and_differences_apart():
    fig = plots.forest(TESTS)
    ratio_ax, diff_ax = fig.axes
    assert ratio_ax.get_xscale() == "log"
    assert diff_ax.get_xscale() == "linear"
    assert [t.get_text() for t in ratio_ax.get_yticklabels()] == ["listed_adjusted", "decision_speed", "appeal_reversal \u2020"]
    texts = [t.get_text() for t in ratio_ax.texts]
    assert "\u2190 more lenient" in texts and "stricter \u2192" in texts
    assert "0.31  (0.27 to 0.36)" in texts
    # reference lines: 1 for ratios, 0 for differences (in percentage points)
    assert any(list(line.get_xdata()) == [1.0, 1.0] for line in ratio_ax.get_lines())
    assert any(list(line.get_xdata()) == [0.0, 0.0] for line in diff_ax.get_lines())
    assert "\u221221.0  (\u221227.0 to \u221215.0)" in [t.get_text() for t in diff_ax.texts]


def test_forest_without_estimates_still_returns_a_figure():
    fig = plots.forest([TESTS[3]])
    assert len(fig.axes) == 1


def test_coverage_steps_account_for_every_row():
    data = plots.coverage_funnel_data(
        {"enforcement_rows": 1000, "analysed": 900, "excluded": {"account unknown": 30, "spend window outside spend coverage": 60}}
    )
    assert data.rows() == [
        ("Enforcement records", "input", 1000, 1.0),
        ("spend window outside spend coverage", "excluded", 60, 0.06),
        ("account unknown", "excluded", 30, 0.03),
        ("not accounted for", "unaccounted", 10, 0.01),
        ("Analysed", "analysed", 900, 0.9),
    ]


def test_save_figure_writes_reproducible_files(tmp_path):
    coverage = {"enforcement_rows": 60000, "analysed": 59990, "excluded": {"spend window outside spend coverage": 10}}
    before = plt.get_fignums()
    first = plots.save_figure(plots.coverage_funnel(coverage), plots.coverage_funnel_data(coverage), tmp_path / "a", "coverage_funnel")
    second = plots.save_figure(plots.coverage_funnel(coverage), plots.coverage_funnel_data(coverage).to_pandas(), tmp_path / "b", "coverage_funnel")
    assert plt.get_fignums() == before  # nothing left open in pyplot
    assert [p.name for p in first] == ["coverage_funnel.png", "coverage_funnel.svg", "coverage_funnel.csv"]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert first.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = first.svg.read_text()
    assert "<dc:date>" not in svg
    assert pl.read_csv(first.csv)["rows"].to_list() == [60000, 10, 59990]


def test_figures_of_a_realistic_cases_frame(tmp_path):
    rng = np.random.default_rng(7)
    n = 2000
    tier = rng.integers(0, 5, n)
    cases = pd.DataFrame(
        {
            "spend_tier": tier.astype("int8"),
            "trailing_spend": np.where(tier == 0, 0.0, 10.0 ** (tier + 2)),
            "enforced": rng.random(n) < 0.6,
            "listed": rng.random(n) < 0.02,
            "ever_listed": rng.random(n) < 0.05,
            "flag_date": pd.to_datetime("2023-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
            "directive_date": pd.Timestamp("2023-06-01"),
        }
    )
    tiers = plots.save_figure(plots.enforcement_by_tier(cases), plots.enforcement_by_tier_data(cases), tmp_path, "enforcement_by_tier")
    time = plots.save_figure(plots.enforcement_over_time(cases), plots.enforcement_over_time_data(cases), tmp_path, "enforcement_over_time")
    assert pl.read_csv(tiers.csv)["cases"].sum() == n
    assert pl.read_csv(time.csv)["cases"].sum() == n
    assert pl.read_csv(time.csv).height == 24  # 12 months x 2 groups
    # "$" in the tier labels is escaped, so matplotlib's mathtext does not swallow the dollar signs
    labels = [t.get_text() for t in plots.enforcement_by_tier(cases).axes[0].get_xticklabels()]
    assert labels[0].startswith("No ad spend") and "\\$1k" in labels[1]


# ----------------------------------------------------------------------------------------------
# Kaplan-Meier curves
# ----------------------------------------------------------------------------------------------

# Freireich et al. (1963) leukaemia trial, weeks of remission ("+": still in remission, censored)
DRUG = "6 6 6 6+ 7 9+ 10 10+ 11+ 13 16 17+ 19+ 20+ 22 23 25+ 32+ 32+ 34+ 35+".split()
PLACEBO = [1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23]
# Kaplan-Meier estimates of the 6-MP group, Kleinbaum & Klein, "Survival Analysis: A
# Self-Learning Text" (3rd ed., 2012), chapter 2: S(t) from each event time on.
DRUG_KM = ((6, 0.8571), (7, 0.8067), (10, 0.7529), (13, 0.6902), (16, 0.6275), (22, 0.5378), (23, 0.4482))


def _leukaemia(labels: tuple) -> pl.DataFrame:
    return pl.DataFrame({
        "weeks": [float(t.rstrip("+")) for t in DRUG] + [float(t) for t in PLACEBO],
        "relapsed": [not t.endswith("+") for t in DRUG] + [True] * len(PLACEBO),
        "arm": [labels[0]] * len(DRUG) + [labels[1]] * len(PLACEBO),
    })


def _published_step(time: float) -> float:
    """The published 6-MP curve at ``time``: the value of its last step at or before it."""
    value = 1.0
    for step, survival in DRUG_KM:
        if step <= time:
            value = survival
    return value


def test_kaplan_meier_curves_are_read_off_exactly_at_every_drawn_time():
    from analysis.stats import kaplan_meier

    curves = kaplan_meier(_leukaemia(("6-MP", "placebo")), duration="weeks", event="relapsed", group="arm")
    data = plots.kaplan_meier_data(curves, points=200)
    drug = data.filter(pl.col("group") == "6-MP")
    assert drug.height > 100
    for time, survival in drug.select("time", "survival").iter_rows():
        assert survival == pytest.approx(_published_step(time), abs=1e-4), time
    # each curve stops at its last relapse: week 23 in both arms (later 6-MP times are censored)
    assert drug["time"].max() == 23.0
    placebo = data.filter(pl.col("group") == "placebo")
    assert placebo["survival"].to_list()[-1] == 0.0  # every placebo patient relapsed
    # times are spaced evenly on a log scale, from the first event (week 1) on
    times = placebo["time"].to_numpy()
    assert times[0] == 1.0
    assert np.allclose(np.diff(np.log(times)), np.log(times[1] / times[0]))


def test_kaplan_meier_names_listed_groups_and_draws_percent_on_log_time():
    from analysis.stats import kaplan_meier

    curves = kaplan_meier(_leukaemia((True, False)), duration="weeks", event="relapsed", group="arm")
    data = plots.kaplan_meier_data(curves)
    assert sorted(data["group"].unique().to_list()) == ["cases of listed accounts", "cases of other accounts"]
    fig = plots.kaplan_meier(curves)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert ax.get_ylim() == (0.0, 100.0)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Cases of listed accounts", "Cases of other accounts"]
    # the listed group's line ends at 44.82% (the published S(23) of the 6-MP arm)
    listed_line = ax.get_lines()[0]
    assert listed_line.get_ydata()[-1] == pytest.approx(44.82, abs=0.01)


def test_kaplan_meier_without_events_says_so():
    curves = pl.DataFrame({"group": [True], "time": [0.0], "survival": [1.0]})
    assert plots.kaplan_meier_data(curves).height == 0
    fig = plots.kaplan_meier(curves)
    assert "No decision times" in fig.axes[0].texts[0].get_text()


# ----------------------------------------------------------------------------------------------
# Event study
# ----------------------------------------------------------------------------------------------


def _event_study_rows() -> pl.DataFrame:
    """Two months, computed by hand: listed accounts' rate falls from 50% to 30% between the
    reference month and the directive month, the others' rises from 50% to 60%: a gap of -0.3."""
    from analysis.stats import event_study

    cells = pl.DataFrame({
        "treated": [0, 0, 0, 0, 1, 1, 1, 1], "month": [-1, -1, 0, 0, -1, -1, 0, 0],
        "enforced": [1, 0, 1, 0, 1, 0, 1, 0], "n": [50, 50, 60, 40, 50, 50, 30, 70]})
    return event_study(cells, outcome="enforced", treated="treated", event_time="month", count="n")


@pytest.mark.parametrize("as_json", [False, True])
def test_event_study_data_takes_results_json_rows_or_a_frame(as_json):
    rows = _event_study_rows()
    data = plots.event_study_data(rows.to_dicts() if as_json else rows)
    assert data["event_time"].to_list() == [-1, 0]
    assert data["estimate"].to_list() == pytest.approx([0.0, -0.3])
    assert data["reference"].to_list() == [True, False]
    assert data["after_directive"].to_list() == [False, True]
    assert data.select("n_treated", "n_control").rows() == [(100, 100), (100, 100)]


def test_event_study_marks_zero_the_reference_and_the_directive():
    fig = plots.event_study(_event_study_rows().to_dicts(), directive_month=0)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert any(list(line.get_ydata()) == [0.0, 0.0] for line in lines)  # zero line
    assert any(list(line.get_xdata()) == [-0.5, -0.5] for line in lines)  # directive
    hollow = [line for line in lines if line.get_markerfacecolor() == "white"]
    assert len(hollow) == 1 and list(hollow[0].get_xdata()) == [-1]
    after = next(line for line in lines if line.get_label() == "From the directive on")
    assert list(after.get_ydata()) == pytest.approx([-30.0])  # percentage points
    assert "directive" in [t.get_text() for t in ax.texts]


def test_event_study_without_rows_says_so():
    assert plots.event_study_data([]).height == 0
    assert "did not run" in plots.event_study([]).axes[0].texts[0].get_text()


# ----------------------------------------------------------------------------------------------
# Minimum detectable effects
# ----------------------------------------------------------------------------------------------


def test_mde_chart_shades_from_no_difference_to_each_tests_mde():
    from analysis.stats import mde_ratio

    mde = mde_ratio(0.1)  # 0.7557 for a log-scale SE of 0.1 (analysis.stats.power docstring)
    tests = [dict(t, mde=mde) for t in TESTS]
    tests[2]["mde"] = 1 / mde  # appeal reversals: leniency is above 1
    tests[4]["mde"] = -0.05
    tests.append(dict(TESTS[0], id="equal_treatment", mde=mde))  # re-reads listed_adjusted
    data = plots.mde_chart_data(tests)
    assert data["id"].to_list() == ["listed_adjusted", "decision_speed", "appeal_reversal", "directive_did"]
    assert data["mde"].to_list() == pytest.approx([0.7557, 0.7557, 1.3233, -0.05], abs=1e-4)
    fig = plots.mde_chart(tests)
    ratio_ax, diff_ax = fig.axes
    bars = sorted((round(p.get_x(), 4), round(p.get_x() + p.get_width(), 4)) for p in ratio_ax.patches)
    assert bars == [(0.7557, 1.0), (0.7557, 1.0), (1.0, 1.3233)]
    assert [(p.get_x(), p.get_x() + p.get_width()) for p in diff_ax.patches] == [(-5.0, 0.0)]
    assert "MDE 0.76" in [t.get_text() for t in ratio_ax.texts]
    assert "appeal_reversal \u2020" in [t.get_text() for t in ratio_ax.get_yticklabels()]


# ----------------------------------------------------------------------------------------------
# Crude next to adjusted: Simpson's paradox in the Berkeley admissions
# ----------------------------------------------------------------------------------------------


def _berkeley_comparison() -> pl.DataFrame:
    from analysis.config import REFERENCE_DATA_DIR
    from analysis.stats import mantel_haenszel, odds_ratio

    cells = pl.read_csv(REFERENCE_DATA_DIR / "berkeley" / "UCBAdmissions.csv").select(
        dept=pl.col("Dept"), male=pl.col("Gender") == "Male",
        admitted=pl.col("Admit") == "Admitted", n=pl.col("Freq"))
    crude = odds_ratio(cells, outcome="admitted", group="male", count="n")
    adjusted = mantel_haenszel(cells, outcome="admitted", group="male", strata="dept", count="n")
    return pl.DataFrame({
        "comparison": ["men vs women"], "crude": [crude.estimate], "crude_ci_low": [crude.ci_low],
        "crude_ci_high": [crude.ci_high], "crude_test": ["computed here"],
        "adjusted": [adjusted.estimate], "adjusted_ci_low": [adjusted.ci_low],
        "adjusted_ci_high": [adjusted.ci_high], "adjusted_test": ["by department"]})


def test_crude_vs_adjusted_shows_the_berkeley_paradox():
    data = plots.crude_vs_adjusted_data(_berkeley_comparison())
    assert data["kind"].to_list() == ["crude", "adjusted"]
    # crude: (1198 x 1278) / (1493 x 557) = 1.841; Mantel-Haenszel over departments: 0.9046968,
    # R mantelhaen.test(UCBAdmissions) (Bickel, Hammel & O'Connell 1975 data)
    assert data["estimate"].to_list() == pytest.approx([1.8411, 0.9046968], abs=1e-4)
    assert data["test"].to_list() == ["computed here", "by department"]
    fig = plots.crude_vs_adjusted(_berkeley_comparison())
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    texts = [t.get_text() for t in ax.texts]
    assert any(t.startswith("1.84  (") for t in texts) and any(t.startswith("0.90  (") for t in texts)
    # the crude estimate is drawn above the adjusted one
    crude_y = next(line for line in ax.get_lines() if line.get_label() == "Crude (all cases)").get_ydata()[0]
    adjusted_y = next(line for line in ax.get_lines() if line.get_label() == "Adjusted (like with like)").get_ydata()[0]
    assert crude_y > adjusted_y


def test_a_comparison_that_did_not_run_is_left_out():
    table = _berkeley_comparison().with_columns(pl.lit(None, dtype=pl.Float64).alias("adjusted"))
    assert plots.crude_vs_adjusted_data(table)["kind"].to_list() == ["crude"]


@pytest.mark.parametrize("name", ["kaplan_meier", "event_study", "mde_chart", "crude_vs_adjusted"])
def test_new_figures_save_byte_identical_files(tmp_path, name):
    from analysis.stats import kaplan_meier

    inputs = {
        "kaplan_meier": kaplan_meier(_leukaemia((True, False)), duration="weeks", event="relapsed", group="arm"),
        "event_study": _event_study_rows().to_dicts(),
        "mde_chart": [dict(t, mde=0.8) for t in TESTS],
        "crude_vs_adjusted": _berkeley_comparison(),
    }[name]
    draw, data = getattr(plots, name), getattr(plots, f"{name}_data")
    first = plots.save_figure(draw(inputs), data(inputs), tmp_path / "a", name)
    second = plots.save_figure(draw(inputs), data(inputs), tmp_path / "b", name)
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
