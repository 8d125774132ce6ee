"""Tests of analysis.stats.survival: published values, statsmodels, and a planted hazard ratio."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps
from statsmodels.duration.hazard_regression import PHReg

from analysis.stats.survival import cox, kaplan_meier, logrank, median_survival

# ----------------------------------------------------------------------------------------------
# Gehan / Freireich 6-MP leukaemia trial: weeks of remission, "+" = still in remission (censored)
# ----------------------------------------------------------------------------------------------

DRUG = "6 6 6 6+ 7 9+ 10 10+ 11+ 13 16 17+ 19+ 20+ 22 23 25+ 32+ 32+ 34+ 35+".split()
PLACEBO = [1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23]
LEUKAEMIA = pl.DataFrame(
    {
        "patient": [f"p{i:02d}" for i in range(42)],
        "weeks": [float(t.rstrip("+")) for t in DRUG] + [float(t) for t in PLACEBO],
        "relapsed": [not t.endswith("+") for t in DRUG] + [True] * len(PLACEBO),
        "drug": [True] * len(DRUG) + [False] * len(PLACEBO),
    }
)
KINDS = ["polars", "pandas", "lazy"]


def as_kind(frame: pl.DataFrame, kind: str):
    if kind == "pandas":
        return frame.to_pandas()
    if kind == "lazy":
        return frame.lazy()
    return frame


@pytest.mark.parametrize("kind", KINDS)
def test_cox_efron_reproduces_r(kind):
    result = cox(as_kind(LEUKAEMIA, kind), duration="weeks", event="relapsed", group="drug")
    # R coxph, Efron ties, 6-MP vs placebo: coef -1.5721, se 0.4124 (VALIDATION.md, Survival)
    assert round(result.details["coefficient"], 4) == -1.5721
    assert round(result.se, 4) == 0.4124
    assert result.scale == "HR"
    assert result.estimate == pytest.approx(math.exp(-1.5721), abs=1e-4)
    assert result.ci_low == pytest.approx(math.exp(-1.5721 - 1.959964 * 0.4124), rel=1e-3)
    assert result.n == 42 and result.n_clusters is None
    assert result.details["n_events"] == 30 and result.details["n_events_group"] == 9
    assert result.details["ties"] == "efron"
    # R survdiff for the same data: chi-square 16.8 (VALIDATION.md, Survival)
    assert round(result.details["logrank_statistic"], 1) == 16.8


def test_cox_breslow_reproduces_statsmodels_default():
    result = cox(LEUKAEMIA, duration="weeks", event="relapsed", group="drug", ties="breslow")
    # statsmodels PHReg default (Breslow ties): coef -1.5092 (VALIDATION.md, Survival)
    assert round(result.details["coefficient"], 4) == -1.5092


@pytest.mark.parametrize("kind", KINDS)
def test_logrank_reproduces_r(kind):
    result = logrank(as_kind(LEUKAEMIA, kind), duration="weeks", event="relapsed", group="drug")
    # R survdiff: chi-square 16.8 on 1 df (VALIDATION.md, Survival)
    assert round(result.estimate, 1) == 16.8
    assert result.scale == "chi2" and result.details["df"] == 1
    assert result.p_value == pytest.approx(sps.chi2.sf(result.estimate, 1), rel=1e-9)
    observed, expected = result.details["observed"], result.details["expected"]
    assert observed == {"False": 21.0, "True": 9.0}
    # expected events share out the 30 relapses, so they add up to the observed total
    assert sum(expected.values()) == pytest.approx(30.0, abs=1e-12)


def test_stratified_logrank_with_one_stratum_equals_unstratified():
    plain = logrank(LEUKAEMIA, duration="weeks", event="relapsed", group="drug")
    one = logrank(
        LEUKAEMIA.with_columns(site=pl.lit("a")),
        duration="weeks",
        event="relapsed",
        group="drug",
        strata="site",
    )
    assert one.estimate == pytest.approx(plain.estimate, rel=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_median_survival_reproduces_r(kind):
    medians = median_survival(
        as_kind(LEUKAEMIA, kind), duration="weeks", event="relapsed", group="drug"
    )
    by_group = {row["group"]: row for row in medians.iter_rows(named=True)}
    # R survfit, 6-MP arm: median remission 23 weeks (VALIDATION.md, Survival)
    assert by_group[True]["median"] == 23.0
    # placebo: 21 relapses, the 11th (half) at week 8 (S falls from 12/21 to 8/21 there)
    assert by_group[False]["median"] == 8.0
    assert by_group[True]["ci_high"] == math.inf  # the 6-MP curve never gets far below 1/2
    assert by_group[True]["n"] == 21 and by_group[True]["events"] == 9


def test_median_is_midpoint_where_curve_sits_at_one_half():
    # Two of four cases decided by time 2, the next at 4: S = 1/2 on [2, 4), as in R the median
    # is the midpoint 3.
    frame = pl.DataFrame({"t": [1.0, 2.0, 4.0, 5.0], "e": [1, 1, 1, 0]})
    assert median_survival(frame, duration="t", event="e")["median"].item() == 3.0
    never_half = pl.DataFrame({"t": [1.0, 2.0, 3.0], "e": [1, 0, 0]})
    assert median_survival(never_half, duration="t", event="e")["median"].item() is None


@pytest.mark.parametrize("kind", KINDS)
def test_kaplan_meier_by_hand(kind):
    frame = as_kind(LEUKAEMIA, kind)
    curves = kaplan_meier(frame, duration="weeks", event="relapsed", group="drug")
    assert curves.columns == ["group", "time", "survival", "ci_low", "ci_high", "at_risk", "events"]
    drug = curves.filter(pl.col("group"))
    # Product-limit estimate of the 6-MP arm, from the definition: at each relapse time the
    # share of those at risk who did not relapse (at risk 21, 17, 15, 12, 11, 7, 6).
    steps = [(6, 21, 3), (7, 17, 1), (10, 15, 1), (13, 12, 1), (16, 11, 1), (22, 7, 1), (23, 6, 1)]
    expected, s = [1.0], 1.0
    for _, at_risk, relapses in steps:
        s *= (at_risk - relapses) / at_risk
        expected.append(s)
    assert drug["time"].to_list() == [0.0] + [float(t) for t, _, _ in steps]
    assert drug["survival"].to_list() == pytest.approx(expected, rel=1e-12)
    assert drug["at_risk"].to_list() == [21] + [n for _, n, _ in steps]
    assert drug["events"].to_list() == [0] + [d for _, _, d in steps]
    # log(-log) interval at week 6 from Greenwood's variance: S = 6/7, var(log S) = 3/(21*18)
    s6, sigma = 6 / 7, math.sqrt(3 / (21 * 18))
    spread = 1.959963984540054 * sigma / abs(math.log(s6))
    row = drug.row(1, named=True)
    assert row["ci_low"] == pytest.approx(s6 ** math.exp(spread), rel=1e-9)
    assert row["ci_high"] == pytest.approx(s6 ** math.exp(-spread), rel=1e-9)
    assert drug.row(0, named=True)["ci_low"] is None  # no interval before the first event
    # Placebo: all 21 relapse, so the curve ends at 0, where the interval is undefined.
    placebo = curves.filter(~pl.col("group"))
    assert placebo["survival"][-1] == 0.0 and placebo["ci_low"][-1] is None


def test_kaplan_meier_without_group():
    curve = kaplan_meier(LEUKAEMIA, duration="weeks", event="relapsed")
    assert curve["group"].unique().to_list() == ["all"]
    assert curve.row(0, named=True)["at_risk"] == 42


# ----------------------------------------------------------------------------------------------
# Against statsmodels PHReg, and the cluster-robust variance against its definition
# ----------------------------------------------------------------------------------------------


def _tied_cases(seed: int, n: int = 600, n_clusters: int = 40, rounding: float = 0.5):
    """Cases with tied times (rounded), three strata and clusters; every stratum starts with an
    event, because statsmodels' robust covariance is NaN otherwise."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, n_clusters, n)
    x = (rng.random(n) < 0.4).astype(float)
    stratum = rng.integers(0, 3, n)
    t = rng.exponential(1.0 / (np.array([0.5, 1.0, 2.0])[stratum] * np.exp(-0.4 * x)))
    c = rng.uniform(0.5, 4.0, n)
    time = np.round(np.minimum(t, c) / rounding) * rounding
    event = t <= c
    for s in range(3):
        in_s = np.flatnonzero(stratum == s)
        first = in_s[np.argmin(time[in_s])]
        event[in_s[time[in_s] == time[first]]] = True
    return pl.DataFrame(
        {"t": time, "event": event, "x": x == 1, "stratum": stratum, "cluster": cluster}
    )


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_cox_equals_statsmodels_phreg(ties):
    cases = _tied_cases(1)
    result = cox(cases, duration="t", event="event", group="x", strata="stratum", ties=ties)
    reference = PHReg(
        cases["t"].to_numpy(),
        cases["x"].cast(float).to_numpy()[:, None],
        status=cases["event"].cast(float).to_numpy(),
        strata=cases["stratum"].to_numpy(),
        ties=ties,
    ).fit()
    assert result.details["coefficient"] == pytest.approx(reference.params[0], rel=1e-9)
    assert result.details["se_model"] == pytest.approx(reference.bse[0], rel=1e-8)


@pytest.mark.parametrize(
    ("ties", "rounding"), [("breslow", 0.5), ("efron", 1e-9), ("breslow", 1e-9)]
)
def test_robust_se_equals_statsmodels_where_statsmodels_is_right(ties, rounding):
    # statsmodels' score residuals are Breslow's whatever the ties, so they are right for
    # Breslow fits, and for Efron fits without tied event times.
    cases = _tied_cases(2, rounding=rounding)
    result = cox(
        cases, duration="t", event="event", group="x", strata="stratum", cluster="cluster",
        ties=ties,
    )
    reference = PHReg(
        cases["t"].to_numpy(),
        cases["x"].cast(float).to_numpy()[:, None],
        status=cases["event"].cast(float).to_numpy(),
        strata=cases["stratum"].to_numpy(),
        ties=ties,
    ).fit(groups=cases["cluster"].to_numpy())
    assert result.details["se_robust"] == pytest.approx(reference.bse[0], rel=1e-8)
    assert result.n_clusters == 40


def _weighted_efron_score(beta: float, cases: pl.DataFrame, weights: np.ndarray) -> float:
    """Slope of Efron's log partial likelihood with case weights, written from its definition
    (Therneau & Grambsch 2000, §3.3; the average weight of the tied events multiplies each term,
    as in R's coxph)."""
    time, x = cases["t"].to_numpy(), cases["x"].cast(float).to_numpy()
    event, stratum = cases["event"].to_numpy(), cases["stratum"].to_numpy()
    risk = weights * np.exp(beta * x)
    score = 0.0
    for s in np.unique(stratum):
        for t in np.unique(time[(stratum == s) & event]):
            at_risk = (stratum == s) & (time >= t)
            tied = at_risk & (time == t) & event
            d = int(tied.sum())
            mean_weight = weights[tied].sum() / d
            score += float((weights * x)[tied].sum())
            for k in range(d):
                denominator = risk[at_risk].sum() - k / d * risk[tied].sum()
                numerator = (risk * x)[at_risk].sum() - k / d * (risk * x)[tied].sum()
                score -= mean_weight * numerator / denominator
    return score


def test_robust_se_with_efron_ties_is_the_sandwich():
    # The sandwich is I^-1 (sum over clusters of U_g^2) I^-1, where U_g is how much the score
    # moves when the cluster's cases get more weight (its summed score residuals). Here U_g is
    # taken by finite differences of the weighted Efron score above, independently of the module.
    cases = _tied_cases(3, n=240, n_clusters=12, rounding=0.5)
    kwargs = dict(duration="t", event="event", group="x", strata="stratum", ties="efron")
    result = cox(cases, cluster="cluster", **kwargs)
    beta = result.details["coefficient"]
    information = 1.0 / result.details["se_model"] ** 2
    ones = np.ones(cases.height)
    assert _weighted_efron_score(beta, cases, ones) == pytest.approx(0.0, abs=1e-8)
    cluster = cases["cluster"].to_numpy()
    h = 1e-6
    cluster_scores = []
    for g in np.unique(cluster):
        bump = h * (cluster == g)
        up = _weighted_efron_score(beta, cases, ones + bump)
        down = _weighted_efron_score(beta, cases, ones - bump)
        cluster_scores.append((up - down) / (2 * h))
    expected_se = math.sqrt(sum(u * u for u in cluster_scores)) / information
    assert result.details["se_robust"] == pytest.approx(expected_se, rel=1e-6)
    assert result.se == max(result.details["se_robust"], result.details["se_model"])
    # ... and it differs from statsmodels, whose residuals ignore Efron's weights for ties
    statsmodels_se = PHReg(
        cases["t"].to_numpy(),
        cases["x"].cast(float).to_numpy()[:, None],
        status=cases["event"].cast(float).to_numpy(),
        strata=cases["stratum"].to_numpy(),
        ties="efron",
    ).fit(groups=cluster).bse[0]
    assert abs(result.details["se_robust"] - statsmodels_se) > 1e-4


# ----------------------------------------------------------------------------------------------
# A planted hazard ratio with dependent cases within accounts
# ----------------------------------------------------------------------------------------------

PLANTED_HR = 0.6


def _frailty_cases(seed: int, n_accounts: int = 150, frailty_index: float = 0.7) -> pl.DataFrame:
    """Decision times of cases in accounts that share a frailty (how fast their cases go).

    A positive stable frailty with index a (drawn by Kanter's method) keeps hazards proportional
    after averaging over accounts, with the conditional log hazard ratio multiplied by a
    (Hougaard 2000, §7.2): so the listed-vs-not hazard ratio of the population, which a Cox model
    with cluster-robust errors estimates, is exactly PLANTED_HR.
    """
    rng = np.random.default_rng(seed)
    a = frailty_index
    listed = rng.random(n_accounts) < 0.3
    u, e = rng.uniform(0, np.pi, n_accounts), rng.exponential(1.0, n_accounts)
    kanter = (np.sin(a * u) / np.sin(u)) ** (1 / (1 - a)) * np.sin((1 - a) * u) / np.sin(a * u)
    frailty = (kanter / e) ** ((1 - a) / a)
    account = np.repeat(np.arange(n_accounts), rng.poisson(12, n_accounts) + 1)
    n = account.size
    policy = rng.integers(0, 3, n)
    x = listed[account]
    hazard = frailty[account] * np.array([0.2, 0.5, 1.0])[policy] * PLANTED_HR ** (x / a)
    decision = rng.exponential(1.0, n) / hazard
    end_of_data = rng.uniform(0, 10, n)  # flagged at different times before the data end
    return pl.DataFrame(
        {
            "decision_hours": np.minimum(decision, end_of_data),
            "decided": decision <= end_of_data,
            "listed": x,
            "policy": np.array(["spam", "hate", "fraud"])[policy],
            "account_id": [f"acct{i:03d}" for i in account],
        }
    )


DECISION = dict(
    duration="decision_hours", event="decided", group="listed", strata="policy",
    cluster="account_id",
)


def test_clustered_interval_covers_planted_hazard_ratio():
    result = cox(_frailty_cases(20240601), **DECISION)
    assert result.ci_low < PLANTED_HR < result.ci_high
    assert result.n_clusters == 150
    # accounts share a frailty, so the model-based SE, which ignores it, is far too small
    assert result.se > 1.5 * result.details["se_model"]
    assert "cluster-robust" in result.method and "stratified by policy" in result.method


def test_clustered_intervals_have_nominal_coverage():
    covered = covered_naive = 0
    log_hrs = []
    replicates = 200
    z = 1.959963984540054
    for seed in range(replicates):
        result = cox(_frailty_cases(seed), **DECISION)
        beta, se_model = result.details["coefficient"], result.details["se_model"]
        log_hrs.append(beta)
        covered += result.ci_low < PLANTED_HR < result.ci_high
        covered_naive += abs(beta - math.log(PLANTED_HR)) < z * se_model
    # 95% of 200 ± 2 binomial SDs is 0.92 to 0.98; the sandwich runs a little low with 150
    # clusters, so allow 0.90
    assert 0.90 <= covered / replicates <= 0.99
    assert covered_naive / replicates < 0.75
    assert math.exp(np.mean(log_hrs)) == pytest.approx(PLANTED_HR, abs=0.03)


@pytest.mark.parametrize("kind", ["pandas", "lazy", "shuffled"])
def test_same_result_whatever_the_input(kind):
    cases = _frailty_cases(7)
    reference = cox(cases, **DECISION)
    if kind == "shuffled":
        frame = cases.sample(fraction=1.0, shuffle=True, seed=3)
    else:
        frame = as_kind(cases, kind)
    assert cox(frame, **DECISION) == reference


# ----------------------------------------------------------------------------------------------
# Sampling above max_rows
# ----------------------------------------------------------------------------------------------


def test_sampling_whole_clusters_is_deterministic_and_said():
    cases = _frailty_cases(11)
    first = cox(cases, max_rows=1000, seed=5, **DECISION)
    again = cox(cases.sample(fraction=1.0, shuffle=True, seed=1).to_pandas(),
                max_rows=1000, seed=5, **DECISION)
    other = cox(cases, max_rows=1000, seed=6, **DECISION)
    assert first == again
    assert first.estimate != other.estimate
    assert first.n <= 1000 < cases.height
    assert first.details["sampled"] is True
    assert first.details["n_rows_total"] == cases.height
    assert first.details["n_clusters_total"] == 150
    assert first.n_clusters < 150
    assert "random sample" in first.method and "seed 5" in first.method
    # whole accounts: the fitted rows are exactly the rows of the sampled accounts
    sizes = cases.group_by("account_id").len()
    assert first.n in _subset_sums_reachable(sizes["len"].to_list(), first.n)
    unsampled = cox(cases, max_rows=None, **DECISION)
    assert unsampled.details["sampled"] is False and unsampled.n == cases.height


def _subset_sums_reachable(sizes: list[int], target: int) -> set[int]:
    reachable = {0}
    for size in sizes:
        reachable |= {s + size for s in reachable if s + size <= target}
    return reachable


def test_sampling_rows_without_clusters():
    cases = _frailty_cases(12)
    kwargs = dict(duration="decision_hours", event="decided", group="listed", strata="policy")
    first = cox(cases, max_rows=500, seed=1, **kwargs)
    shuffled = cases.sample(fraction=1.0, shuffle=True, seed=9)
    assert cox(shuffled, max_rows=500, seed=1, **kwargs) == first
    assert first.n == 500 and first.details["sampled"] is True


# ----------------------------------------------------------------------------------------------
# Errors a user can meet
# ----------------------------------------------------------------------------------------------


def test_errors_are_explained():
    kwargs = dict(duration="weeks", event="relapsed", group="drug")
    with pytest.raises(ValueError, match="always true"):
        cox(LEUKAEMIA.with_columns(drug=pl.lit(True)), **kwargs)
    with pytest.raises(ValueError, match="missing values"):
        cox(LEUKAEMIA.with_columns(weeks=pl.when(pl.col("drug")).then(None)
                                   .otherwise(pl.col("weeks"))), **kwargs)
    with pytest.raises(ValueError, match="negative"):
        cox(LEUKAEMIA.with_columns(weeks=pl.col("weeks") - 5), **kwargs)
    with pytest.raises(ValueError, match="not found"):
        cox(LEUKAEMIA, duration="weeks", event="relapsed", group="listed")
    # every drug patient relapses after every placebo patient: no finite hazard ratio
    separated = pl.DataFrame(
        {"weeks": [1.0, 2.0, 3.0, 4.0], "relapsed": [1, 1, 1, 1], "drug": [0, 0, 1, 1]}
    )
    with pytest.raises(ValueError, match=r"is 0 \(monotone likelihood\)"):
        cox(separated, **kwargs)
    with pytest.raises(ValueError, match=r"is infinite \(monotone likelihood\)"):
        cox(separated.with_columns(drug=1 - pl.col("drug")), **kwargs)
    # ... but separation in one stratum only still leaves a finite estimate
    two_strata = pl.concat(
        [
            separated.with_columns(site=pl.lit("a")),
            pl.DataFrame({"weeks": [1.0, 2.0, 3.0, 4.0], "relapsed": [1, 1, 1, 1],
                          "drug": [1, 0, 1, 0], "site": ["b"] * 4}),
        ]
    )
    assert math.isfinite(cox(two_strata, strata="site", **kwargs).estimate)
