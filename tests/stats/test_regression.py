"""Tests of analysis.stats.regression: fits on cells equal fits on rows; published values."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm

from analysis.stats.regression import did, event_study, grouped_glm, logistic

# ----------------------------------------------------------------------------------------------
# Simulated cases: accounts with a spend level, cases with a policy and a severity band
# ----------------------------------------------------------------------------------------------


def _simulated_cases(
    seed: int = 20240601, n_accounts: int = 80, n_cases: int = 4000
) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    accounts = pl.DataFrame(
        {
            "account_id": [f"acct{i:03d}" for i in range(n_accounts)],
            # rounded so that several accounts share a spend level: cells then span accounts only
            # through the cluster key, as in real data
            "log_spend": np.round(rng.normal(3.0, 1.0, n_accounts), 1),
            "account_effect": rng.normal(0.0, 0.5, n_accounts),
        }
    )
    cases = pl.DataFrame(
        {
            "account_id": rng.choice(accounts.get_column("account_id").to_numpy(), n_cases),
            "policy": rng.choice(["spam", "hate", "fraud"], n_cases, p=[0.5, 0.3, 0.2]),
            "band": rng.choice(["low", "medium", "high"], n_cases),
        }
    ).join(accounts, on="account_id", how="left")
    log_odds = (
        -0.5
        - 0.3 * (cases.get_column("log_spend").to_numpy() - 3.0)
        + 0.8 * (cases.get_column("policy") == "hate").to_numpy()
        + cases.get_column("account_effect").to_numpy()
    )
    enforced = rng.random(n_cases) < 1.0 / (1.0 + np.exp(-log_odds))
    return cases.with_columns(enforced=pl.Series(enforced)).drop("account_effect")


CASES = _simulated_cases()
CELLS = (
    CASES.group_by(["account_id", "log_spend", "policy", "band"])
    .agg(enforced=pl.col("enforced").sum(), cases=pl.len())
    .sort(["account_id", "log_spend", "policy", "band"])
)
MODEL = dict(numeric=["log_spend"], factors=["policy", "band"])


def _row_design(rows: pl.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    """The row-level design matrix, rebuilt from the term names (independently of the module)."""
    columns = []
    for name in names:
        if name == "Intercept":
            columns.append(np.ones(rows.height))
        elif name.endswith("]"):
            factor, level = name[:-1].split("[", 1)
            is_level = rows.get_column(factor).cast(pl.String) == level
            columns.append(is_level.cast(float).to_numpy())
        else:
            columns.append(rows.get_column(name).cast(float).to_numpy())
    return np.column_stack(columns)


def _row_fit_inputs(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = _row_design(CASES, names)
    y = CASES.get_column("enforced").cast(float).to_numpy()
    groups = CASES.get_column("account_id").rank("dense").cast(pl.Int64).to_numpy()
    return x, y, groups


def _ses(cov: np.ndarray) -> np.ndarray:
    return np.sqrt(np.diag(cov))


def test_design_uses_most_frequent_level_as_reference():
    fit = grouped_glm(CELLS, successes="enforced", trials="cases", **MODEL)
    # spam is half the cases; the bands are near equal, "high" happens to be most common here
    assert fit.references["policy"] == "spam"
    band_rows = CASES.group_by("band").len().sort(["len", "band"], descending=[True, False])
    assert fit.references["band"] == band_rows.get_column("band")[0]
    assert fit.names[:2] == ("Intercept", "log_spend")
    # fitted on the distinct covariate patterns, not on the (account-keyed) cells
    patterns = CELLS.select("log_spend", "policy", "band").n_unique()
    assert fit.n_rows == 4000 and fit.n_cells == patterns < CELLS.height


def test_grouped_logit_equals_row_level_logit():
    fit = grouped_glm(CELLS, successes="enforced", trials="cases", **MODEL)
    x, y, _ = _row_fit_inputs(fit.names)
    rows = sm.Logit(y, x).fit(disp=0)  # Newton on the rows: exact Hessian at the estimate
    np.testing.assert_allclose(fit.params, rows.params, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(_ses(fit.cov), rows.bse, rtol=1e-8)
    assert fit.cov_type == "model" and fit.n_clusters is None


def test_grouped_logit_cluster_robust_equals_row_level():
    fit = grouped_glm(CELLS, successes="enforced", trials="cases", cluster="account_id", **MODEL)
    x, y, groups = _row_fit_inputs(fit.names)
    rows = sm.GLM(y, x, family=sm.families.Binomial()).fit(
        cov_type="cluster", cov_kwds={"groups": groups}
    )
    np.testing.assert_allclose(fit.params, rows.params, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(_ses(fit.cov), rows.bse, rtol=1e-8)
    assert fit.n_clusters == 80


def test_grouped_logit_hc1_is_row_level_hc0_with_n_over_n_minus_k():
    fit = grouped_glm(CELLS, successes="enforced", trials="cases", robust=True, **MODEL)
    x, y, _ = _row_fit_inputs(fit.names)
    # statsmodels' GLM applies no small-sample factor for "HC1"; ours is N/(N-K) as for OLS
    rows = sm.GLM(y, x, family=sm.families.Binomial()).fit(cov_type="HC0")
    n, k = x.shape
    np.testing.assert_allclose(_ses(fit.cov), rows.bse * np.sqrt(n / (n - k)), rtol=1e-8)


@pytest.mark.parametrize(
    ("cluster", "robust", "cov_type"),
    [(None, False, "nonrobust"), ("account_id", False, "cluster"), (None, True, "HC1")],
)
def test_grouped_linear_equals_row_level_ols(cluster, robust, cov_type):
    fit = grouped_glm(
        CELLS,
        successes="enforced",
        trials="cases",
        cluster=cluster,
        robust=robust,
        family="linear",
        **MODEL,
    )
    x, y, groups = _row_fit_inputs(fit.names)
    kwds = {"groups": groups} if cov_type == "cluster" else None
    rows = sm.OLS(y, x).fit(cov_type=cov_type, cov_kwds=kwds)
    np.testing.assert_allclose(fit.params, rows.params, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(_ses(fit.cov), rows.bse, rtol=1e-8)


def test_cell_order_does_not_matter():
    shuffled = CELLS.sample(fraction=1.0, shuffle=True, seed=7)
    a = grouped_glm(CELLS, successes="enforced", trials="cases", cluster="account_id", **MODEL)
    b = grouped_glm(shuffled, successes="enforced", trials="cases", cluster="account_id", **MODEL)
    assert np.array_equal(a.params, b.params) and np.array_equal(a.cov, b.cov)


# ----------------------------------------------------------------------------------------------
# logistic(): rows or counted cells, any frame type
# ----------------------------------------------------------------------------------------------


def _counted_cells() -> pl.DataFrame:
    """Cells whose ``n`` cases all share one outcome value (as cells from a group-by would)."""
    return (
        CASES.group_by(["account_id", "log_spend", "policy", "band", "enforced"])
        .agg(n=pl.len())
        .sort(["account_id", "policy", "band", "enforced"])
    )


@pytest.mark.parametrize("kind", ["polars", "lazy", "pandas"])
def test_logistic_rows_and_cells_agree_with_row_level_fit(kind):
    fit = grouped_glm(CELLS, successes="enforced", trials="cases", cluster="account_id", **MODEL)
    x, y, groups = _row_fit_inputs(fit.names)
    rows_fit = sm.GLM(y, x, family=sm.families.Binomial()).fit(
        cov_type="cluster", cov_kwds={"groups": groups}
    )
    convert = {"polars": lambda f: f, "lazy": pl.DataFrame.lazy, "pandas": pl.DataFrame.to_pandas}
    arguments = dict(outcome="enforced", exposure="log_spend", factors=["policy", "band"],
                     cluster="account_id")
    from_rows = logistic(convert[kind](CASES), **arguments)
    from_cells = logistic(convert[kind](_counted_cells()), count="n", **arguments)
    for result in (from_rows, from_cells):
        assert result.scale == "OR"
        assert result.estimate == pytest.approx(np.exp(rows_fit.params[1]), rel=1e-8)
        assert result.se == pytest.approx(rows_fit.bse[1], rel=1e-8)
        assert result.p_value == pytest.approx(rows_fit.pvalues[1], rel=1e-6)
        assert result.n == 4000 and result.n_clusters == 80
        assert result.ci_low < result.estimate < result.ci_high
    assert from_rows.estimate == from_cells.estimate and from_rows.se == from_cells.se


def test_logistic_per_rescales_the_exposure():
    one = logistic(CASES, outcome="enforced", exposure="log_spend", factors=["policy"])
    two = logistic(CASES, outcome="enforced", exposure="log_spend", factors=["policy"], per=2.0)
    assert two.estimate == pytest.approx(one.estimate**2, rel=1e-12)
    assert two.ci_low == pytest.approx(one.ci_low**2, rel=1e-12)
    assert two.p_value == pytest.approx(one.p_value, rel=1e-12)


def test_logistic_refuses_missing_values_and_non_binary_outcomes():
    with_null = CASES.with_columns(
        policy=pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("policy"))
    )
    with pytest.raises(ValueError, match="missing values in 'policy'"):
        logistic(with_null, outcome="enforced", exposure="log_spend", factors=["policy"])
    counts = CASES.with_columns(enforced=pl.col("enforced").cast(pl.Int64) * 2)
    with pytest.raises(ValueError, match="must be boolean or 0/1"):
        logistic(counts, outcome="enforced", exposure="log_spend")
    with pytest.raises(ValueError, match="not found"):
        logistic(CASES, outcome="enforced", exposure="spend")


def test_perfectly_predicted_level_warns_and_leaves_the_exposure_estimate_intact():
    # cases of a new policy that were all enforced: its coefficient runs off to infinity
    extra = CASES.head(30).with_columns(policy=pl.lit("scam"), enforced=pl.lit(True))
    arguments = dict(outcome="enforced", exposure="log_spend", factors=["policy"])
    with pytest.warns(RuntimeWarning, match="perfect prediction"):
        with_level = logistic(pl.concat([CASES, extra]), **arguments)
    without_level = logistic(CASES, **arguments)
    # those cases carry no information about spend once their level is fitted perfectly
    assert with_level.estimate == pytest.approx(without_level.estimate, rel=1e-6)
    assert with_level.se == pytest.approx(without_level.se, rel=1e-6)


def test_cells_spanning_several_clusters_are_refused():
    spanning = CELLS.group_by(["log_spend", "policy", "band"]).agg(
        pl.col("enforced").sum(), pl.col("cases").sum(), pl.col("account_id")
    )
    with pytest.raises(ValueError, match="each cell must lie within one cluster"):
        grouped_glm(spanning, successes="enforced", trials="cases", cluster="account_id", **MODEL)


def test_collinear_terms_are_named():
    cells = CELLS.with_columns(policy_copy=pl.col("policy"))
    with pytest.raises(ValueError, match=r"collinear.*policy_copy\["):
        grouped_glm(cells, successes="enforced", trials="cases", factors=["policy", "policy_copy"])


# ----------------------------------------------------------------------------------------------
# Published values
# ----------------------------------------------------------------------------------------------

# UC Berkeley graduate admissions 1973, R datasets::UCBAdmissions (Admit x Gender x Dept):
# dept, admitted men, admitted women, rejected men, rejected women
_BERKELEY = [
    ("A", 512, 89, 313, 19),
    ("B", 353, 17, 207, 8),
    ("C", 120, 202, 205, 391),
    ("D", 138, 131, 279, 244),
    ("E", 53, 94, 138, 299),
    ("F", 22, 24, 351, 317),
]
BERKELEY = pl.DataFrame(
    [
        (dept, gender, admitted, count)
        for dept, am, af, rm, rf in _BERKELEY
        for gender, admitted, count in (("M", True, am), ("F", True, af), ("M", False, rm),
                                        ("F", False, rf))
    ],
    schema={"dept": pl.String, "gender": pl.String, "admitted": pl.Boolean, "n": pl.Int64},
    orient="row",
)


def test_berkeley_binomial_glm():
    assert BERKELEY.get_column("n").sum() == 4526  # 2691 men + 1835 women
    cells = (
        BERKELEY.group_by(["dept", "gender"])
        .agg(admitted=(pl.col("n") * pl.col("admitted")).sum(), applied=pl.col("n").sum())
    )
    adjusted = grouped_glm(
        cells, successes="admitted", trials="applied", factors=["gender", "dept"]
    )
    female = adjusted.estimate("gender[F]")
    # VALIDATION.md, binomial GLM admit ~ gender + dept: female +0.0999 (se 0.0808, p 0.217)
    assert adjusted.references == {"gender": "M", "dept": "A"}
    assert round(adjusted.coefficient("gender[F]"), 4) == 0.0999
    assert round(female.se, 4) == 0.0808
    assert round(female.p_value, 3) == 0.217
    crude = grouped_glm(cells, successes="admitted", trials="applied", factors=["gender"])
    # VALIDATION.md, without dept: -0.6104 (se 0.0639); crude OR men:women 1.841
    assert round(crude.coefficient("gender[F]"), 4) == -0.6104
    assert round(crude.se("gender[F]"), 4) == 0.0639
    assert round(1.0 / crude.estimate("gender[F]").estimate, 3) == 1.841


def test_berkeley_through_logistic_with_counted_cells():
    cells = BERKELEY.with_columns(female=(pl.col("gender") == "F").cast(pl.Int64))
    result = logistic(cells, outcome="admitted", exposure="female", factors=["dept"], count="n")
    # VALIDATION.md: female coefficient +0.0999 (se 0.0808, p 0.217) given department
    assert round(np.log(result.estimate), 4) == 0.0999
    assert round(result.se, 4) == 0.0808
    assert round(result.p_value, 3) == 0.217
    assert result.n == 4526 and result.details["n_cells"] == 12


# Hounsel, Matias et al. 2018, Facebook, Table 2: location, election level, leaning, ad type,
# ads placed, ads published ("US federal R product 19/18": 19 placed, 18 published)
HOUNSEL = pl.DataFrame(
    [
        ("US", "federal", "D", "product", 20, 20),
        ("US", "federal", "R", "product", 19, 18),
        ("US", "state", "D", "product", 20, 20),
        ("US", "state", "D", "park", 20, 15),
        ("US", "state", "R", "product", 20, 20),
        ("US", "state", "R", "park", 21, 19),
        ("non-US", "federal", "D", "product", 20, 20),
        ("non-US", "federal", "R", "product", 19, 19),
        ("non-US", "state", "D", "product", 19, 19),
        ("non-US", "state", "D", "park", 20, 18),
        ("non-US", "state", "R", "product", 20, 20),
        ("non-US", "state", "R", "park", 20, 20),
    ],
    schema=["location", "election_level", "leaning", "ad_type", "placed", "published"],
    orient="row",
)


@pytest.mark.parametrize(
    ("factor", "reference", "term", "intercept", "intercept_se", "coefficient", "coefficient_se"),
    [
        # Hounsel et al. 2018, Table 1: ad type (park vs product) 5.05 (1.00), -2.97 (1.06)
        ("ad_type", "product", "ad_type[park]", 5.05, 1.00, -2.97, 1.06),
        # Table 1: leaning (R vs D) 2.77 (0.39), 0.88 (0.70)
        ("leaning", "D", "leaning[R]", 2.77, 0.39, 0.88, 0.70),
        # Table 1: election level (state vs federal) 4.34 (1.01), -1.52 (1.06)
        ("election_level", "federal", "election_level[state]", 4.34, 1.01, -1.52, 1.06),
        # Table 1: poster location (US vs non-US) 4.06 (0.71), -1.42 (0.80)
        ("location", "non-US", "location[US]", 4.06, 0.71, -1.42, 0.80),
    ],
)
def test_hounsel_table_1(factor, reference, term, intercept, intercept_se, coefficient,
                         coefficient_se):
    assert HOUNSEL.get_column("placed").sum() == 238  # Facebook: 238 ads placed
    fit = grouped_glm(
        HOUNSEL, successes="published", trials="placed", factors=[factor],
        reference={factor: reference},
    )
    assert fit.names == ("Intercept", term)
    assert round(fit.coefficient("Intercept"), 2) == intercept
    assert round(fit.se("Intercept"), 2) == intercept_se
    assert round(fit.coefficient(term), 2) == coefficient
    assert round(fit.se(term), 2) == coefficient_se


# ----------------------------------------------------------------------------------------------
# Difference-in-differences and event study
# ----------------------------------------------------------------------------------------------

TRUE_DID = -0.15


def _simulated_panel(seed: int = 11) -> pl.DataFrame:
    """Cases of 200 accounts (40 treated) over months -6..5, with a planted post-event drop."""
    rng = np.random.default_rng(seed)
    n_accounts, n_cases = 200, 12000
    account = rng.integers(0, n_accounts, n_cases)
    treated = account < 40
    month = rng.integers(-6, 6, n_cases)
    policy = rng.choice(["spam", "hate", "fraud"], n_cases)
    account_shift = rng.normal(0.0, 0.05, n_accounts)[account]
    probability = (
        0.6
        + 0.05 * treated
        + 0.01 * month  # a common trend, the same for both groups
        + 0.1 * (policy == "hate")
        + account_shift
        + TRUE_DID * (treated & (month >= 0))
    )
    enforced = rng.random(n_cases) < probability
    return pl.DataFrame(
        {
            "account_id": [f"acct{a:03d}" for a in account],
            "treated": treated,
            "month": month,
            "post": month >= 0,
            "policy": policy,
            "enforced": enforced,
        }
    )


PANEL = _simulated_panel()


def test_did_recovers_planted_effect():
    result = did(PANEL, outcome="enforced", treated="treated", post="post", factors=["policy"],
                 cluster="account_id")
    assert result.scale == "probability"
    assert result.ci_low < TRUE_DID < result.ci_high
    assert result.p_value < 0.001
    assert result.n == 12000 and result.n_clusters == 200
    assert set(result.details["group_means"]) == {
        "control_post", "control_pre", "treated_post", "treated_pre"
    }


def test_did_without_factors_is_raw_difference_of_means():
    result = did(PANEL, outcome="enforced", treated="treated", post="post", cluster="account_id")
    rates = PANEL.group_by(["treated", "post"]).agg(pl.col("enforced").mean())
    rate = {(t, p): r for t, p, r in rates.iter_rows()}
    raw = (rate[True, True] - rate[True, False]) - (rate[False, True] - rate[False, False])
    assert result.estimate == pytest.approx(raw, abs=1e-12)
    assert result.details["raw_did"] == pytest.approx(raw, abs=1e-12)
    assert result.details["group_means"]["treated_pre"] == pytest.approx(rate[True, False])


def test_did_cluster_se_equals_row_level_ols():
    result = did(PANEL.to_pandas(), outcome="enforced", treated="treated", post="post",
                 factors=["policy"], cluster="account_id")
    policy = PANEL.get_column("policy")
    treated = PANEL.get_column("treated").cast(float).to_numpy()
    post = PANEL.get_column("post").cast(float).to_numpy()
    reference = result.details["reference_levels"]["policy"]
    others = sorted({"fraud", "hate", "spam"} - {reference})
    x = np.column_stack(
        [np.ones(PANEL.height), treated, post, treated * post]
        + [(policy == level).cast(float).to_numpy() for level in others]
    )
    groups = PANEL.get_column("account_id").rank("dense").cast(pl.Int64).to_numpy()
    rows = sm.OLS(PANEL.get_column("enforced").cast(float).to_numpy(), x).fit(
        cov_type="cluster", cov_kwds={"groups": groups}
    )
    assert result.estimate == pytest.approx(rows.params[3], rel=1e-10)
    assert result.se == pytest.approx(rows.bse[3], rel=1e-8)


def test_event_study_shows_flat_pre_trends_and_the_drop():
    table = event_study(PANEL, outcome="enforced", treated="treated", event_time="month",
                        factors=["policy"], cluster="account_id")
    assert table.get_column("event_time").to_list() == list(range(-6, 6))
    reference = table.filter(pl.col("reference"))
    assert reference.get_column("event_time").to_list() == [-1]
    assert reference.get_column("estimate").item() == 0.0
    before = table.filter((pl.col("event_time") < 0) & ~pl.col("reference"))
    after = table.filter(pl.col("event_time") >= 0)
    # no planted pre-trend: every pre-period interval covers zero
    assert ((before["ci_low"] < 0) & (before["ci_high"] > 0)).all()
    # planted drop: every post-period interval covers the truth and the average is close to it
    assert ((after["ci_low"] < TRUE_DID) & (after["ci_high"] > TRUE_DID)).all()
    # averaged over periods, after minus before is the planted effect (the reference counts as 0)
    shift = after["estimate"].mean() - table.filter(pl.col("event_time") < 0)["estimate"].mean()
    assert shift == pytest.approx(TRUE_DID, abs=0.03)
    assert (table.get_column("n_treated") + table.get_column("n_control")).sum() == 12000


def test_event_study_without_factors_is_the_difference_of_differences_per_period():
    table = event_study(PANEL, outcome="enforced", treated="treated", event_time="month")
    rates = PANEL.group_by(["treated", "month"]).agg(pl.col("enforced").mean())
    rate = {(t, m): r for t, m, r in rates.iter_rows()}
    gap = {m: rate[True, m] - rate[False, m] for m in range(-6, 6)}
    for month, estimate in table.select("event_time", "estimate").iter_rows():
        assert estimate == pytest.approx(gap[month] - gap[-1], abs=1e-12)


def test_event_study_needs_the_reference_period():
    with pytest.raises(ValueError, match="reference period -7"):
        event_study(PANEL, outcome="enforced", treated="treated", event_time="month",
                    reference=-7)


def test_pandas_input_is_accepted_by_grouped_glm():
    fit = grouped_glm(CELLS.to_pandas(), successes="enforced", trials="cases", **MODEL)
    reference = grouped_glm(CELLS, successes="enforced", trials="cases", **MODEL)
    assert np.array_equal(fit.params, reference.params)


def test_patterns_by_counting_and_by_sorting_agree(monkeypatch):
    from analysis.stats import regression

    frame = CASES.with_columns(spend=(pl.col("log_spend") * 15).cast(pl.Int64)
                               + pl.col("band").str.len_chars())
    columns = ["spend", "policy", "band"]
    counted, first_counted = regression._patterns(frame, columns)
    monkeypatch.setattr(regression, "_COUNTING_LIMIT", 0)
    monkeypatch.setattr(regression, "_COUNTING_PER_CELL", 0)
    packed, first_packed = regression._patterns(frame, columns)
    monkeypatch.setattr(regression, "_PACKED_LIMIT", 0.0)
    column_by_column, first_column_by_column = regression._patterns(frame, columns)
    # a float column is sorted on as it is
    as_float = frame.with_columns(pl.col("spend").cast(pl.Float64))
    floats, first_floats = regression._patterns(as_float, columns)
    for pattern in (packed, column_by_column, floats):
        assert np.array_equal(counted, pattern)
    # the representative rows may differ, but they show the same values
    for first in (first_packed, first_column_by_column, first_floats):
        assert frame.select(columns)[first_counted].equals(frame.select(columns)[first])
    # patterns are numbered in the sort order of their values
    expected = frame.select(columns).unique().sort(columns)
    assert frame.select(columns)[first_counted].equals(expected)


@pytest.mark.parametrize("family, cluster, robust", [
    ("logit", "account_id", False), ("logit", None, True), ("logit", None, False),
    ("linear", "account_id", False), ("linear", None, True), ("linear", None, False)])
def test_design_by_blocks_equals_the_dense_design(monkeypatch, family, cluster, robust):
    """A continuous exposure gives many patterns per combination of factor levels, and the fit
    takes its design in two blocks; the same fit on the whole design matrix agrees."""
    from analysis.stats import regression

    rng = np.random.default_rng(7)
    cells = CASES.with_columns(  # one cell per case, each with a spend of its own
        log_spend=pl.col("log_spend") + pl.Series(rng.normal(0.0, 0.01, CASES.height)),
        enforced=pl.col("enforced").cast(pl.Int64), cases=pl.lit(1))
    arguments = dict(successes="enforced", trials="cases", numeric=["log_spend"],
                     factors=["policy", "band"], cluster=cluster, robust=robust, family=family)
    taken = []
    monkeypatch.setattr(regression, "_Blocks", _recording(regression._Blocks, taken))
    by_blocks = grouped_glm(cells, **arguments)
    monkeypatch.setattr(regression, "_BLOCKS_PER_COMBINATION", np.inf)
    dense = grouped_glm(cells, **arguments)
    assert len(taken) == 1  # only the first fit went by blocks
    assert by_blocks.names == dense.names and by_blocks.n_cells == dense.n_cells == 4000
    np.testing.assert_allclose(by_blocks.params, dense.params, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(by_blocks.cov, dense.cov, rtol=1e-9, atol=1e-15)


def _recording(cls, calls: list):
    def make(*args, **kwargs):
        calls.append(args)
        return cls(*args, **kwargs)
    return make


@pytest.mark.parametrize("clusters, keys", [(50, 2), (400, 30)])  # a dense grid, then a sparse one
def test_pair_sums_are_the_sums_of_each_cluster_and_key(clusters, keys):
    from analysis.stats.regression import _pair_sums

    rng = np.random.default_rng(clusters)
    size = 3000
    cluster, key = rng.integers(0, clusters, size), rng.integers(0, keys, size)
    counts = rng.integers(0, 4, size)  # zeros too: a pair whose sum is 0 keeps its entry
    weights = rng.random(size)
    counted, weighted, again = _pair_sums(cluster, key, (clusters, keys), [counts, weights, counts])
    expected: dict[tuple[int, int], list[float]] = {}
    for c, k, n, w in zip(cluster, key, counts, weights, strict=True):
        sums = expected.setdefault((int(c), int(k)), [0, 0.0])
        sums[0] += int(n)
        sums[1] += float(w)
    for matrix in (counted, weighted, again):
        matrix = matrix.tocoo()
        assert list(zip(matrix.row.tolist(), matrix.col.tolist(), strict=True)) == sorted(expected)
    assert counted.data.tolist() == [expected[pair][0] for pair in sorted(expected)]  # exact
    assert np.array_equal(again.data, counted.data)
    np.testing.assert_allclose(weighted.data, [expected[pair][1] for pair in sorted(expected)],
                               rtol=1e-12)


def test_pair_sums_of_cells_in_cluster_order_are_those_of_any_order():
    """Cells stored in account order take a shortcut (no reordering of the rows): the sums and
    the layout are the same as for the same cells in another order, and the arrays handed over
    are left as they were."""
    from analysis.stats.regression import _pair_sums

    rng = np.random.default_rng(5)
    size, clusters, keys = 5000, 300, 40
    cluster, key = np.sort(rng.integers(0, clusters, size)), rng.integers(0, keys, size)
    counts, weights = rng.integers(0, 4, size).astype(float), rng.random(size)
    given = [array.copy() for array in (cluster, key, counts, weights)]
    in_order = _pair_sums(cluster, key, (clusters, keys), [counts, weights])
    for array, before in zip((cluster, key, counts, weights), given, strict=True):
        assert np.array_equal(array, before)
    shuffled = rng.permutation(size)
    out_of_order = _pair_sums(cluster[shuffled], key[shuffled], (clusters, keys),
                              [counts[shuffled], weights[shuffled]])
    for mine, theirs in zip(in_order, out_of_order, strict=True):
        assert mine.has_canonical_format
        assert np.array_equal(mine.indptr, theirs.indptr)
        assert np.array_equal(mine.indices, theirs.indices)
    assert np.array_equal(in_order[0].data, out_of_order[0].data)  # whole numbers: exact
    np.testing.assert_allclose(in_order[1].data, out_of_order[1].data, rtol=1e-12)


def test_design_by_blocks_leaves_the_cluster_totals_as_they_were():
    """The sandwich by blocks sums residuals per cluster and combination in place; it must not
    touch the (cluster, pattern) layout it was given, which other statistics share."""
    from analysis.stats import regression

    rng = np.random.default_rng(11)
    cells = CASES.with_columns(
        log_spend=pl.col("log_spend") + pl.Series(rng.normal(0.0, 0.01, CASES.height)),
        enforced=pl.col("enforced").cast(pl.Int64), cases=pl.lit(1))
    pattern, first = regression._patterns(cells, ["log_spend", "policy", "band"])
    clusters = regression._codes(cells.get_column("account_id"))
    s, n = (cells.get_column(c).cast(pl.Float64).to_numpy() for c in ("enforced", "cases"))
    totals = regression._cluster_totals(clusters, pattern, first.size, s, n)
    before = [(m.data.copy(), m.indices.copy(), m.indptr.copy()) for m in totals]
    regression._fit_cells(cells, successes="enforced", trials="cases", numeric=["log_spend"],
                          factors=["policy", "band"], cluster="account_id", n_rows=None,
                          family="logit", robust=False, reference={},
                          layout=(pattern, first, *totals))
    for matrix, (data, indices, indptr) in zip(totals, before, strict=True):
        assert np.array_equal(matrix.data, data) and np.array_equal(matrix.indices, indices)
        assert np.array_equal(matrix.indptr, indptr)
