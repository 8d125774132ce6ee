"""Tests of analysis.stats.stratified against published values (sources beside each number)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from analysis.stats.stratified import mantel_haenszel, odds_ratio, trend

REPO_ROOT = Path(__file__).resolve().parents[2]
BERKELEY_CSV = REPO_ROOT / "data" / "reference" / "berkeley" / "UCBAdmissions.csv"

# Every function must give the same answer whatever form the same data arrive in.
INPUT_KINDS = ["polars_cells", "pandas_cells", "lazy_cells", "polars_rows", "pandas_rows"]


def as_input(cells: pl.DataFrame, kind: str, count: str = "n"):
    """The cells in the requested form; returns (frame, count column or None)."""
    if kind.endswith("rows"):
        frame = (
            cells.filter(pl.col(count) > 0)
            .with_columns(pl.int_ranges(count).alias("_copy"))
            .explode("_copy")
            .drop("_copy", count)
        )
        return (frame.to_pandas() if kind.startswith("pandas") else frame), None
    if kind == "pandas_cells":
        return cells.to_pandas(), count
    if kind == "lazy_cells":
        return cells.lazy(), count
    return cells, count


def stratified_cells(tables: list[tuple[int, int, int, int]]) -> pl.DataFrame:
    """Cells from per-stratum tables (a, b, c, d) = (group & outcome, group & not, ...)."""
    rows = []
    for stratum, (a, b, c, d) in enumerate(tables):
        rows += [(stratum, True, True, a), (stratum, True, False, b)]
        rows += [(stratum, False, True, c), (stratum, False, False, d)]
    return pl.DataFrame(rows, schema=["stratum", "group", "outcome", "n"], orient="row")


@pytest.fixture(scope="module")
def berkeley() -> pl.DataFrame:
    """UCBAdmissions as cells: dept, male, admitted, n (see data/reference/MANIFEST.md)."""
    return pl.read_csv(BERKELEY_CSV).select(
        dept=pl.col("Dept"),
        male=pl.col("Gender") == "Male",
        admitted=pl.col("Admit") == "Admitted",
        n=pl.col("Freq"),
    )


# Agresti, Categorical Data Analysis: Chinese smoking and lung cancer, eight cities; per city
# (smoker case, smoker control, non-smoker case, non-smoker control), from VALIDATION.md.
CHINESE_SMOKING = [
    (126, 100, 35, 61),
    (908, 688, 497, 807),
    (913, 747, 336, 598),
    (235, 172, 58, 121),
    (402, 308, 121, 215),
    (182, 156, 72, 98),
    (60, 99, 11, 43),
    (104, 89, 21, 36),
]

# SAS PROC FREQ documentation, migraine example: per sex (active better, active same,
# placebo better, placebo same), from VALIDATION.md.
MIGRAINE = [(16, 11, 5, 20), (12, 16, 7, 19)]


# ------------------------------------------------------------------------------------------
# Crude odds ratio
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_berkeley_crude_odds_ratio(berkeley, kind):
    frame, count = as_input(berkeley, kind)
    result = odds_ratio(frame, outcome="admitted", group="male", count=count)
    assert round(result.estimate, 3) == 1.841  # Bickel et al. 1975 (VALIDATION.md): crude OR 1.841
    assert round(100 * result.details["rate_group_true"], 2) == 44.52  # men 1198/2691 = 44.52%
    assert round(100 * result.details["rate_group_false"], 2) == 30.35  # women 557/1835 = 30.35%
    assert result.n == 4526  # 4,526 applicants (MANIFEST.md)
    assert result.scale == "OR" and result.n_clusters is None
    # Woolf interval by hand: log(1.841) ± 1.96·sqrt(1/1198 + 1/1493 + 1/557 + 1/1278)
    se = math.sqrt(1 / 1198 + 1 / 1493 + 1 / 557 + 1 / 1278)
    assert result.se == pytest.approx(se, rel=1e-12)
    assert result.ci_low == pytest.approx(1198 * 1278 / (1493 * 557) * math.exp(-1.959963985 * se))


def test_zero_cell_uses_haldane_anscombe_and_reports_fisher():
    cells = stratified_cells([(0, 10, 5, 5)])
    result = odds_ratio(cells, outcome="outcome", group="group", count="n")
    # Haldane-Anscombe: (0.5 · 5.5) / (10.5 · 5.5), Woolf SE on the corrected cells
    assert result.estimate == pytest.approx(0.5 * 5.5 / (10.5 * 5.5), rel=1e-12)
    assert result.se == pytest.approx(math.sqrt(1 / 0.5 + 1 / 10.5 + 2 / 5.5), rel=1e-12)
    assert "Haldane-Anscombe" in result.method
    # Fisher's exact two-sided p for [[0, 10], [5, 5]]: P(X = 0) + P(X = 5) of the hypergeometric
    # with 20 cases, 5 outcomes, 10 in the group = 2 · C(10,5) / C(20,5) = 504 / 15504
    assert result.details["fisher_p_value"] == pytest.approx(2 * 252 / 15504, rel=1e-9)


def test_zero_cell_with_clusters_is_never_narrower_than_woolf():
    # Deleting accounts never changes an empty cell, so the jackknife alone would understate the
    # uncertainty; the interval falls back to Woolf's on the corrected cells.
    cells = pl.DataFrame(
        {
            "account": ["a", "b", "c", "d"] * 2,
            "group": [True, True, False, False] * 2,
            "outcome": [True] * 4 + [False] * 4,
            "n": [0, 0, 3, 2, 5, 4, 3, 3],
        }
    )
    result = odds_ratio(cells, outcome="outcome", group="group", count="n", cluster="account")
    # cells a, b, c, d = 0, 9, 5, 6 plus 0.5 each
    assert result.se == pytest.approx(math.sqrt(1 / 0.5 + 1 / 9.5 + 1 / 5.5 + 1 / 6.5), rel=1e-12)
    assert result.ci_low == pytest.approx(result.details["naive_ci"][0], rel=1e-12)
    assert "widened to the Woolf interval" in result.method
    assert result.n_clusters == 4


def test_odds_ratio_rejects_a_missing_comparison_group():
    cells = pl.DataFrame({"group": [True, True], "outcome": [True, False], "n": [3, 4]})
    with pytest.raises(ValueError, match="always true"):
        odds_ratio(cells, outcome="outcome", group="group", count="n")


# ------------------------------------------------------------------------------------------
# Mantel-Haenszel
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_berkeley_mantel_haenszel(berkeley, kind):
    frame, count = as_input(berkeley, kind)
    result = mantel_haenszel(frame, outcome="admitted", group="male", strata="dept", count=count)
    # R mantelhaen.test(UCBAdmissions), documented output (VALIDATION.md):
    assert round(result.estimate, 7) == 0.9046968  # common OR 0.9046968
    assert round(result.ci_low, 7) == 0.7719074  # 95% CI 0.7719074 ...
    assert round(result.ci_high, 7) == 1.0603298  # ... to 1.0603298
    assert round(result.details["cmh_statistic"], 4) == 1.4269  # Mantel-Haenszel X-squared = 1.4269
    assert round(result.p_value, 4) == 0.2323  # p-value = 0.2323
    assert result.details["correction"] is True
    # Breslow-Day homogeneity (VALIDATION.md): 18.83 on 5 df, p = 0.0021
    assert round(result.details["breslow_day_statistic"], 2) == 18.83
    assert result.details["breslow_day_df"] == 5
    assert round(result.details["breslow_day_p_value"], 4) == 0.0021
    assert result.details["strata_total"] == result.details["strata_informative"] == 6
    assert result.n == 4526


def test_berkeley_cmh_without_correction(berkeley):
    result = mantel_haenszel(
        berkeley, outcome="admitted", group="male", strata="dept", count="n", correction=False
    )
    # R mantelhaen.test(UCBAdmissions, correct = FALSE) (VALIDATION.md): 1.5246, p = 0.2169
    assert round(result.details["cmh_statistic"], 4) == 1.5246
    assert round(result.p_value, 4) == 0.2169
    assert round(result.estimate, 7) == 0.9046968  # the estimate does not depend on the correction


@pytest.mark.parametrize("kind", ["polars_cells", "pandas_cells", "polars_rows"])
def test_chinese_smoking(kind):
    frame, count = as_input(stratified_cells(CHINESE_SMOKING), kind)
    result = mantel_haenszel(
        frame, outcome="outcome", group="group", strata="stratum", count=count, correction=False
    )
    # SAS PROC FREQ on Agresti's table (VALIDATION.md):
    assert round(result.details["cmh_statistic"], 3) == 280.138  # CMH 280.138, no correction
    assert round(result.estimate, 3) == 2.174  # MH common OR 2.174
    assert round(result.details["mh_risk_ratio"], 3) == 1.519  # MH risk ratio 1.519
    assert round(result.details["breslow_day_statistic"], 3) == 5.200  # Breslow-Day 5.200
    assert result.details["breslow_day_df"] == 7


def test_migraine_cmh_matches_sas_uncorrected():
    result = mantel_haenszel(
        stratified_cells(MIGRAINE),
        outcome="outcome",
        group="group",
        strata="stratum",
        count="n",
        correction=False,
    )
    # SAS PROC FREQ migraine example (VALIDATION.md): CMH 8.3052; SAS applies no correction
    assert round(result.details["cmh_statistic"], 4) == 8.3052


def test_strata_given_as_list_of_columns(berkeley):
    # Splitting a stratum column into two columns whose combinations are the same strata
    # must not change anything.
    split = berkeley.with_columns(
        dept_half=pl.col("dept").is_in(["A", "B", "C"]),
        dept_letter=pl.col("dept"),
    )
    result = mantel_haenszel(
        split, outcome="admitted", group="male", strata=["dept_half", "dept_letter"], count="n"
    )
    assert round(result.estimate, 7) == 0.9046968  # R mantelhaen.test(UCBAdmissions)
    assert result.details["strata"] == ["dept_half", "dept_letter"]


def test_uninformative_strata_are_dropped_and_counted(berkeley):
    extra = pl.DataFrame(
        {
            # one department with men only, one where everybody was admitted
            "dept": ["Y", "Y", "Z", "Z"],
            "male": [True, True, True, False],
            "admitted": [True, False, True, True],
            "n": [40, 60, 7, 9],
        }
    )
    result = mantel_haenszel(
        pl.concat([berkeley, extra]), outcome="admitted", group="male", strata="dept", count="n"
    )
    assert round(result.estimate, 7) == 0.9046968  # unchanged: R mantelhaen.test(UCBAdmissions)
    assert round(result.details["breslow_day_statistic"], 2) == 18.83  # and BD, df unchanged
    assert result.details["breslow_day_df"] == 5
    assert result.details["strata_total"] == 8
    assert result.details["strata_informative"] == 6
    assert result.details["cases_in_uninformative_strata"] == 116
    assert result.n == 4526
    assert "2 uninformative strata dropped" in result.method


def test_no_informative_stratum_raises():
    cells = pl.DataFrame(
        {"stratum": ["x", "y"], "group": [True, False], "outcome": [True, False], "n": [5, 5]}
    )
    with pytest.raises(ValueError, match="none of the 2 strata"):
        mantel_haenszel(cells, outcome="outcome", group="group", strata="stratum", count="n")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (pl.col("group").cast(pl.Int64) * 2, "boolean or 0/1"),
        (pl.when(pl.col("n") == 19).then(None).otherwise(pl.col("group")), "Missing values"),
    ],
)
def test_bad_columns_are_explained(change, message):
    cells = stratified_cells(MIGRAINE).with_columns(change.alias("group"))
    with pytest.raises(ValueError, match=message):
        mantel_haenszel(cells, outcome="outcome", group="group", strata="stratum", count="n")


def test_missing_column_is_named():
    with pytest.raises(ValueError, match=r"\['policy'\] not found"):
        mantel_haenszel(
            stratified_cells(MIGRAINE), outcome="outcome", group="group", strata="policy", count="n"
        )


# ------------------------------------------------------------------------------------------
# Cluster jackknife
# ------------------------------------------------------------------------------------------


def clustered_world(seed: int, accounts: int = 12) -> pl.DataFrame:
    """A small table of cells per (account, stratum, group, outcome); group is per account."""
    rng = np.random.default_rng(seed)
    rows = []
    for account in range(accounts):
        in_group = account % 2 == 0
        for stratum in ("p", "q", "r"):
            cases = int(rng.integers(3, 15))
            outcomes = int(rng.binomial(cases, 0.3 if in_group else 0.5))
            rows += [(f"acct{account:02d}", stratum, in_group, True, outcomes)]
            rows += [(f"acct{account:02d}", stratum, in_group, False, cases - outcomes)]
    return pl.DataFrame(rows, schema=["account", "stratum", "group", "outcome", "n"], orient="row")


def brute_force_jackknife_se(frame: pl.DataFrame, estimator) -> float:
    """Leave out each account and recompute from scratch: the definition the fast code follows."""
    accounts = frame.get_column("account").unique().sort().to_list()
    thetas = np.array(
        [math.log(estimator(frame.filter(pl.col("account") != a)).estimate) for a in accounts]
    )
    g = len(accounts)
    return math.sqrt((g - 1) / g * ((thetas - thetas.mean()) ** 2).sum())


def test_mh_jackknife_equals_leave_one_out_recomputation():
    world = clustered_world(seed=3)

    def estimator(frame):
        return mantel_haenszel(
            frame, outcome="outcome", group="group", strata="stratum", count="n"
        )

    result = mantel_haenszel(
        world, outcome="outcome", group="group", strata="stratum", count="n", cluster="account"
    )
    assert result.se == pytest.approx(brute_force_jackknife_se(world, estimator), rel=1e-10)
    assert result.n_clusters == 12
    assert result.estimate == pytest.approx(estimator(world).estimate, rel=1e-14)
    z = math.log(result.estimate) / result.se
    assert result.p_value == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-12)
    assert "jackknife" in result.method


def test_crude_jackknife_equals_leave_one_out_recomputation():
    world = clustered_world(seed=4)

    def estimator(frame):
        return odds_ratio(frame, outcome="outcome", group="group", count="n")

    result = odds_ratio(world, outcome="outcome", group="group", count="n", cluster="account")
    assert result.se == pytest.approx(brute_force_jackknife_se(world, estimator), rel=1e-10)
    assert result.details["naive_se"] == pytest.approx(estimator(world).se, rel=1e-14)


def test_jackknife_with_one_case_per_cluster_approaches_the_model_variance(berkeley):
    # With every applicant its own cluster the jackknife estimates the same sampling variance
    # as the Woolf / Robins-Breslow-Greenland formulas; on 4,526 cases they agree within 1%.
    rows, _ = as_input(berkeley, "polars_rows")
    rows = rows.with_row_index("applicant")
    crude = odds_ratio(rows, outcome="admitted", group="male", cluster="applicant")
    assert crude.se == pytest.approx(crude.details["naive_se"], rel=0.01)
    stratified = mantel_haenszel(
        rows, outcome="admitted", group="male", strata="dept", cluster="applicant"
    )
    assert stratified.se == pytest.approx(stratified.details["rgb_se"], rel=0.01)
    assert stratified.n_clusters == 4526
    assert round(stratified.estimate, 7) == 0.9046968  # R mantelhaen.test(UCBAdmissions)


def test_jackknife_reports_replicates_it_cannot_compute():
    # One account holds every outcome of the group: without it the odds ratio is 0.
    cells = pl.DataFrame(
        {
            "account": ["a1", "a1", "a2", "a3", "a3", "a4", "a4"],
            "stratum": ["s"] * 7,
            "group": [True, True, True, False, False, False, False],
            "outcome": [True, False, False, True, False, True, False],
            "n": [4, 2, 5, 3, 4, 2, 6],
        }
    )
    result = mantel_haenszel(
        cells, outcome="outcome", group="group", strata="stratum", count="n", cluster="account"
    )
    assert result.details["jackknife_undefined_replicates"] == 1
    assert result.ci_low == 0.0 and math.isinf(result.ci_high) and result.p_value == 1.0
    assert "undefined" in result.method


def _simulated_accounts(rng: np.random.Generator, accounts: int = 80, cases: int = 30):
    """Cells of one world with account-level random effects and a known common OR of 0.5.

    Group membership is per account (like a watchlist). Each account's outcome probability in
    stratum s is 2·mu·b with b ~ Beta(2, 2) (mean 1/2), so averaged over accounts the probability
    is exactly mu: the population odds ratio is 0.5 in each stratum, while cases of one account
    are strongly correlated.
    """
    mu = {("p", False): 0.4, ("p", True): 0.25, ("q", False): 0.2, ("q", True): 0.1 / 0.9}
    in_group = np.arange(accounts) < accounts // 2
    frailty = rng.beta(2.0, 2.0, size=accounts)
    in_p = rng.binomial(cases, 0.5, size=accounts)
    names = ("account", "stratum", "group", "outcome", "n")
    columns: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for stratum, size in (("p", in_p), ("q", cases - in_p)):
        probability = 2 * frailty * np.where(in_group, mu[(stratum, True)], mu[(stratum, False)])
        hits = rng.binomial(size, probability)
        for outcome, n in ((True, hits), (False, size - hits)):
            columns["account"].append(np.arange(accounts))
            columns["stratum"].append(np.full(accounts, stratum))
            columns["group"].append(in_group)
            columns["outcome"].append(np.full(accounts, outcome))
            columns["n"].append(n)
    return pl.DataFrame({k: np.concatenate(v) for k, v in columns.items()})


def test_jackknife_covers_under_account_random_effects_where_naive_does_not():
    rng = np.random.default_rng(20240601)
    true_or, replicates = 0.5, 200
    covered = {"mh_jackknife": 0, "mh_naive": 0, "crude_jackknife": 0, "crude_naive": 0}
    for _ in range(replicates):
        world = _simulated_accounts(rng)
        mh = mantel_haenszel(
            world, outcome="outcome", group="group", strata="stratum", count="n", cluster="account"
        )
        covered["mh_jackknife"] += mh.ci_low <= true_or <= mh.ci_high
        covered["mh_naive"] += mh.details["rgb_ci"][0] <= true_or <= mh.details["rgb_ci"][1]
        # within one stratum the crude OR has the same known target
        crude = odds_ratio(
            world.filter(pl.col("stratum") == "p"),
            outcome="outcome",
            group="group",
            count="n",
            cluster="account",
        )
        naive_low, naive_high = crude.details["naive_ci"]
        covered["crude_jackknife"] += crude.ci_low <= true_or <= crude.ci_high
        covered["crude_naive"] += naive_low <= true_or <= naive_high
    coverage = {k: v / replicates for k, v in covered.items()}
    # Nominal 95%; the seeded run gives 0.955 and 0.945 for the jackknife, 0.715 and 0.775 naive.
    assert coverage["mh_jackknife"] >= 0.90
    assert coverage["crude_jackknife"] >= 0.90
    assert coverage["mh_naive"] <= 0.80
    assert coverage["crude_naive"] <= 0.85


def test_cluster_with_a_single_account_is_refused():
    cells = stratified_cells(MIGRAINE).with_columns(account=pl.lit("only"))
    with pytest.raises(ValueError, match="at least two clusters"):
        mantel_haenszel(
            cells, outcome="outcome", group="group", strata="stratum", count="n", cluster="account"
        )


# ------------------------------------------------------------------------------------------
# Trend
# ------------------------------------------------------------------------------------------


def trend_cells(successes, totals, scores) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "score": [float(s) for s in scores] * 2,
            "outcome": [True] * len(scores) + [False] * len(scores),
            "n": list(successes) + [t - s for s, t in zip(successes, totals, strict=True)],
        }
    )


PROP_TREND = trend_cells([83, 90, 129, 70], [86, 93, 136, 82], [1, 2, 3, 4])


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_trend_matches_r_prop_trend_test(kind):
    frame, count = as_input(PROP_TREND, kind)
    result = trend(frame, outcome="outcome", score="score", count=count)
    # R prop.trend.test(c(83,90,129,70), c(86,93,136,82)) (VALIDATION.md): X-squared 8.2249,
    # p-value 0.004132
    assert round(result.details["chi2"], 4) == 8.2249
    assert round(result.p_value, 6) == 0.004132
    assert [level["score"] for level in result.details["scores"]] == [1.0, 2.0, 3.0, 4.0]
    assert [level["cases"] for level in result.details["scores"]] == [86, 93, 136, 82]
    assert result.details["z"] < 0  # the proportion falls with the score
    assert result.estimate < 1 and result.ci_low < result.estimate < result.ci_high
    assert result.n == 397


# Graubard & Korn (1987) malformation data, as in the StatXact example (VALIDATION.md):
# present 48, 38, 5, 1, 1 out of 17114, 14502, 793, 127, 38 by maternal drinks per day.
MALFORMATION_PRESENT = [48, 38, 5, 1, 1]
MALFORMATION_TOTAL = [17114, 14502, 793, 127, 38]


def test_trend_graubard_korn_equally_spaced_scores():
    cells = trend_cells(MALFORMATION_PRESENT, MALFORMATION_TOTAL, [1, 2, 3, 4, 5])
    result = trend(cells, outcome="outcome", score="score", count="n")
    # StatXact asymptotic Cochran-Armitage, scores 1..5: one-sided p .0882, two-sided .1765.
    # The statistic here gives one-sided 0.08820 (matches) and two-sided 0.17639; StatXact's
    # printed two-sided value is 1e-4 higher than twice its own one-sided value, hence the
    # tolerance of 1.5e-4 on the two-sided p.
    assert round(sps.norm.sf(abs(result.details["z"])), 4) == 0.0882
    assert result.p_value == pytest.approx(0.1765, abs=1.5e-4)


def test_trend_graubard_korn_average_drinks_scores():
    cells = trend_cells(MALFORMATION_PRESENT, MALFORMATION_TOTAL, [0, 0.5, 1.5, 4, 8])
    result = trend(cells, outcome="outcome", score="score", count="n")
    # StatXact asymptotic Cochran-Armitage, scores 0, 0.5, 1.5, 4, 8: two-sided p .0078,
    # one-sided .0039 (VALIDATION.md and the StatXact example)
    assert round(result.p_value, 4) == 0.0078
    assert round(sps.norm.sf(abs(result.details["z"])), 4) == 0.0039
    assert [level["score"] for level in result.details["scores"]] == [0.0, 0.5, 1.5, 4.0, 8.0]


@pytest.mark.parametrize("kind", ["polars_cells", "pandas_cells", "polars_rows"])
def test_stratified_trend_with_a_binary_score_is_the_cmh_test(kind):
    # With scores 0/1 Mantel's trend statistic is the uncorrected CMH statistic, so Agresti's
    # Chinese smoking table gives SAS PROC FREQ's CMH 280.138 (VALIDATION.md).
    cells = stratified_cells(CHINESE_SMOKING).with_columns(smoker=pl.col("group").cast(pl.Int8))
    frame, count = as_input(cells.drop("group"), kind)
    result = trend(frame, outcome="outcome", score="smoker", strata="stratum", count=count)
    assert round(result.details["chi2"], 3) == 280.138
    assert result.details["strata_informative"] == 8
    assert "Mantel" in result.method


def test_stratified_trend_identities():
    n_total = 397
    single = PROP_TREND.with_columns(stratum=pl.lit("one"))
    unstratified = trend(PROP_TREND, outcome="outcome", score="score", count="n")
    one_stratum = trend(single, outcome="outcome", score="score", strata="stratum", count="n")
    # Mantel's (hypergeometric) variance is N / (N - 1) times Cochran-Armitage's.
    assert one_stratum.details["chi2"] == pytest.approx(
        unstratified.details["chi2"] * (n_total - 1) / n_total, rel=1e-12
    )
    # Three identical strata: deviations and variances both triple, so the statistic triples,
    # and the stratum fixed effects leave the common slope unchanged.
    tripled = pl.concat([single.with_columns(stratum=pl.lit(s)) for s in ("a", "b", "c")])
    three = trend(tripled, outcome="outcome", score="score", strata="stratum", count="n")
    assert three.details["chi2"] == pytest.approx(3 * one_stratum.details["chi2"], rel=1e-12)
    assert three.estimate == pytest.approx(unstratified.estimate, rel=1e-8)
    assert three.se == pytest.approx(unstratified.se / math.sqrt(3), rel=1e-8)


def test_trend_notes_perfect_separation():
    cells = trend_cells([0, 5], [5, 5], [0, 1])
    result = trend(cells, outcome="outcome", score="score", count="n")
    # Cochran-Armitage by hand: p̄ = 1/2, s̄ = 1/2, T - E = 5 · 1/2, V = 1/4 · 10 · 1/4, chi2 = 10
    assert result.details["chi2"] == pytest.approx(10.0, rel=1e-12)
    assert result.details["glm_notes"] == ["perfect separation: the slope may be infinite"]
    assert math.isinf(result.ci_high)


def test_trend_without_any_informative_stratum_raises():
    cells = pl.DataFrame({"score": [1.0, 2.0], "outcome": [True, True], "n": [3, 4]})
    with pytest.raises(ValueError, match="no trend can be tested"):
        trend(cells, outcome="outcome", score="score", count="n")


# --- trend with clustering -------------------------------------------------------------------


def _clustered_trend_world(seed: int, *, n: int = 6000, accounts: int = 200, sd_u: float = 0.8):
    rng = np.random.default_rng(seed)
    account = rng.integers(0, accounts, n)
    tier = account % 5  # the score is an account property, as spend tiers mostly are
    policy = rng.integers(0, 3, n)
    u = rng.normal(0, sd_u, accounts)[account]
    p = 1 / (1 + np.exp(-(0.3 * policy - 0.3 + u)))  # no trend at all
    return pl.DataFrame({"account": account.astype(str), "tier": tier,
                         "policy": policy.astype(str), "y": rng.random(n) < p})


def test_clustered_trend_equals_plain_trend_when_clusters_are_cases() -> None:
    world = _clustered_trend_world(0, sd_u=0.0).with_row_index("case").with_columns(
        pl.col("case").cast(pl.String))
    plain = trend(world, outcome="y", score="tier", strata="policy")
    robust = trend(world, outcome="y", score="tier", strata="policy", cluster="case")
    # Same score statistic; the robust variance estimates the hypergeometric one (within 5%).
    assert robust.details["chi2"] == pytest.approx(plain.details["chi2"], rel=0.05)
    assert robust.estimate == pytest.approx(plain.estimate, rel=1e-8)


def test_clustered_trend_holds_its_level_where_the_plain_test_does_not() -> None:
    plain, robust = [], []
    for seed in range(60):
        world = _clustered_trend_world(seed)
        plain.append(trend(world, outcome="y", score="tier", strata="policy").p_value < 0.05)
        robust.append(trend(world, outcome="y", score="tier", strata="policy",
                            cluster="account").p_value < 0.05)
    # Strong account effects: treating cases as independent rejects far too often.
    assert np.mean(plain) > 0.3
    assert np.mean(robust) <= 0.12  # nominal 0.05; 60 worlds, 0.12 is ~2.4 binomial SDs above
