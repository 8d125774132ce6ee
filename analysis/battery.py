"""The standard battery: every test of DESIGN.md run on one attributed dataset.

``run_battery(cases)`` aggregates the cases to cells once, runs each design on the cells (the
Cox model, whose Efron ties need rows, runs on the cases), adjusts the p-values across the family
(Benjamini–Hochberg) and words a conclusion for each test. Around every estimate it states the
minimum detectable effect at 80% power; adjusted odds ratios get an E-value; the listed-account
tests get randomization inference that reshuffles which accounts are listed. A test the data
cannot support (no watchlist, no appeals, too few cases) is returned as ``skipped`` with the
reason — never as a silent NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import polars as pl

from analysis.cells import account_cells, appeal_cells, event_cells, spend_cells
from analysis.config import (
    ALPHA,
    EQUIVALENCE_MARGIN,
    EQUIVALENCE_RATIONALE,
    PERMUTATIONS,
    POWER,
    SEED,
    TIER_SCORES,
)
from analysis.findings import conclusion
from analysis.stats.equivalence import tost
from analysis.stats.multiplicity import adjust_p
from analysis.stats.power import e_value, mde_difference, mde_ratio
from analysis.stats.randomization import permutation_test
from analysis.stats.regression import did, event_study, logistic
from analysis.stats.result import Estimate, TestResult
from analysis.stats.stratified import mantel_haenszel, odds_ratio, trend
from analysis.stats.survival import cox

STRATA = ["policy", "severity_band"]
JACKKNIFE = ("95% CI and p-value from a delete-one-account jackknife of the log odds ratio "
             "(cases of one account are not independent)")


@dataclass(frozen=True)
class Design:
    """What a test asks, what it estimates, and how (for results.json and the methods appendix)."""

    id: str
    question: str
    estimand: str
    scale: str
    method: str
    needs_watchlist: bool = True


DESIGNS = {d.id: d for d in (
    Design("listed_unadjusted",
           "Are flagged cases of listed accounts enforced less often? (crude)",
           "Odds ratio of enforcement, cases of accounts listed at flag time vs all other cases",
           "OR", f"Crude 2x2 odds ratio; {JACKKNIFE}"),
    Design("listed_adjusted",
           "Are flagged cases of listed accounts enforced less often, comparing like with like "
           "(same policy, same severity band)?",
           "Mantel-Haenszel common odds ratio of enforcement, listed vs not, over policy x "
           "severity band strata", "OR",
           f"Mantel-Haenszel common odds ratio over policy x severity band; {JACKKNIFE}. "
           "Randomization inference (which accounts are listed reshuffled among accounts of the "
           "same kind, advertiser or not) in details"),
    Design("advertiser_adjusted",
           "Are advertisers' cases enforced less often than non-advertisers', comparing like "
           "with like?",
           "Mantel-Haenszel common odds ratio of enforcement, trailing spend > 0 vs none, over "
           "policy x severity band strata", "OR",
           f"Mantel-Haenszel common odds ratio over policy x severity band; {JACKKNIFE}",
           needs_watchlist=False),
    Design("spend_adjusted",
           "Among advertisers, does enforcement fall as trailing spend rises?",
           "Odds ratio of enforcement per tenfold increase in trailing spend, advertisers only, "
           "policy, severity band and listing status held fixed", "OR",
           "Binomial GLM (logit) of enforcement on log10 trailing spend with policy, severity "
           "band and listed-at-flag-time fixed effects, fitted on exact account x day cells; SEs "
           "clustered by account", needs_watchlist=False),
    Design("spend_trend",
           "Is there a steady trend in enforcement across spend tiers (none, then quartiles)?",
           "Odds ratio of enforcement per step up the spend tiers, policy, severity band and "
           "listing status held fixed", "OR",
           f"Stratified trend score test with a variance robust to clustering by account; scores "
           f"{TIER_SCORES}; OR per tier step from a grouped logistic model with cluster-robust SEs",
           needs_watchlist=False),
    Design("decision_speed",
           "Are listed accounts' cases decided more slowly?",
           "Hazard ratio of a decision, cases of listed vs other accounts (HR < 1: slower)", "HR",
           "Cox proportional hazards model stratified by policy, Efron ties, SEs clustered by "
           "account; undecided cases censored at the end of the data"),
    Design("appeal_reversal",
           "Are listed accounts' enforced cases reversed on appeal more often?",
           "Mantel-Haenszel common odds ratio of reversal among appealed enforced cases, listed "
           "vs not, over policy strata (OR > 1: more reversals, i.e. leniency on appeal)", "OR",
           f"Mantel-Haenszel common odds ratio over policy; {JACKKNIFE}"),
    Design("directive_did",
           "Did enforcement of listed accounts drop after the listing date, relative to everyone "
           "else?",
           "Difference-in-differences in the probability of enforcement: (listed accounts after "
           "- before) minus (other accounts after - before) the directive date", "probability",
           "Linear probability model with listed-account, after-directive and interaction terms "
           "plus policy and severity band fixed effects, on exact cells; SEs clustered by "
           "account. Assumes both groups would otherwise have moved in parallel: the event study "
           "in details shows the months before the directive"),
    Design("equal_treatment",
           "Can equal treatment of listed accounts be shown, within a stated margin?",
           f"The adjusted odds ratio of listed_adjusted lies between {1 / EQUIVALENCE_MARGIN:.2f} "
           f"and {EQUIVALENCE_MARGIN:.2f}", "OR",
           "Two one-sided tests (TOST) on the log Mantel-Haenszel odds ratio with its jackknife "
           "SE; equivalence shown when the 90% CI lies inside the margin"),
)}


@dataclass
class Cells:
    """The inputs of the battery: aggregated cells, and the cases for the one test needing rows."""

    cases: pl.DataFrame
    account: pl.DataFrame
    spend: pl.DataFrame
    appeal: pl.DataFrame
    event: pl.DataFrame
    estimates: dict[str, Estimate] = field(default_factory=dict)

    @classmethod
    def of(cls, cases: pl.DataFrame) -> Cells:
        return cls(cases, account_cells(cases), spend_cells(cases), appeal_cells(cases),
                   event_cells(cases))


class Skip(Exception):
    """Raised inside a test when the data cannot support it; the message is the reason."""


def _need_groups(frame: pl.DataFrame, column: str, reason: str) -> None:
    present = set(frame.filter(pl.col("n") > 0)[column].unique().to_list())
    if True not in present:
        raise Skip(reason)
    if False not in present:
        raise Skip(f"every case has {column} true: there is nothing to compare with")


def _listed_unadjusted(c: Cells) -> Estimate:
    _need_groups(c.account, "listed", "no case was flagged while its account was listed")
    return odds_ratio(c.account, outcome="enforced", group="listed", count="n",
                      cluster="account_id")


def _listed_adjusted(c: Cells) -> Estimate:
    _need_groups(c.account, "listed", "no case was flagged while its account was listed")
    estimate = mantel_haenszel(c.account, outcome="enforced", group="listed", strata=STRATA,
                               count="n", cluster="account_id")
    randomized = permutation_test(
        c.account, outcome="enforced", treated="ever_listed", exposed="post", strata=STRATA,
        cluster="account_id", count="n", within="advertiser_account", statistic="mh",
        n_permutations=PERMUTATIONS, seed=SEED)
    return _with_details(estimate, randomization=_randomization(randomized),
                         e_value=_e_value(estimate))


def _advertiser_adjusted(c: Cells) -> Estimate:
    _need_groups(c.account, "is_advertiser", "no case had trailing ad spend")
    estimate = mantel_haenszel(c.account, outcome="enforced", group="is_advertiser",
                               strata=STRATA, count="n", cluster="account_id")
    return _with_details(estimate, e_value=_e_value(estimate))


def _spend_factors(frame: pl.DataFrame) -> list[str]:
    # Listing is held fixed so that the spend tests measure spend beyond any watchlist; the
    # watchlist's own effect is what the listed_* tests measure.
    return STRATA + (["listed"] if frame["listed"].n_unique() > 1 else [])


def _spend_adjusted(c: Cells) -> Estimate:
    if c.spend.select(pl.col("account_id").n_unique()).item() < 3:
        raise Skip("fewer than three advertiser accounts have cases with trailing spend")
    if c.spend["log10_spend"].n_unique() < 2:
        raise Skip("all advertiser cases have the same trailing spend")
    estimate = logistic(c.spend, outcome="enforced", exposure="log10_spend",
                        factors=_spend_factors(c.spend), count="n", cluster="account_id", per=1.0)
    return _with_details(estimate, e_value=_e_value(estimate))


def _spend_trend(c: Cells) -> Estimate:
    if c.account["spend_tier"].n_unique() < 2:
        raise Skip("every case is in the same spend tier")
    return trend(c.account, outcome="enforced", score="spend_tier",
                 strata=_spend_factors(c.account), count="n", cluster="account_id")


def _decision_speed(c: Cells) -> Estimate:
    _need_groups(c.account, "listed", "no case was flagged while its account was listed")
    if c.cases["decided"].sum() == 0:
        raise Skip("no case has a decision time (decided_at)")
    return cox(c.cases, duration="decision_hours", event="decided", group="listed",
               strata="policy", cluster="account_id", seed=SEED)


def _appeal_reversal(c: Cells) -> Estimate:
    if c.appeal.height == 0:
        raise Skip("no enforced case was appealed")
    _need_groups(c.appeal, "listed", "no appealed case of a listed account")
    if c.appeal.filter(pl.col("reversed"))["n"].sum() == 0:
        raise Skip("no appeal was reversed")
    return mantel_haenszel(c.appeal, outcome="reversed", group="listed", strata="policy",
                           count="n", cluster="account_id")


def _directive_did(c: Cells) -> Estimate:
    _need_groups(c.account, "ever_listed", "no watchlisted account has flagged cases")
    groups = c.account.group_by("ever_listed", "post").agg(pl.col("n").sum())
    if groups.height < 4:
        raise Skip("listed or other accounts have no cases on one side of the directive date")
    estimate = did(c.account, outcome="enforced", treated="ever_listed", post="post",
                   factors=STRATA, count="n", cluster="account_id")
    study = event_study(c.event, outcome="enforced", treated="ever_listed",
                        event_time="event_month", factors=STRATA, count="n",
                        cluster="account_id")
    randomized = permutation_test(
        c.account, outcome="enforced", treated="ever_listed", exposed="post", strata=(),
        cluster="account_id", count="n", within="advertiser_account", statistic="did",
        n_permutations=PERMUTATIONS, seed=SEED)
    return _with_details(estimate, event_study=study.to_dicts(),
                         randomization=_randomization(randomized))


def _equal_treatment(c: Cells) -> Estimate:
    if "listed_adjusted" not in c.estimates:
        raise Skip("listed_adjusted could not be estimated")
    return tost(c.estimates["listed_adjusted"], margin=EQUIVALENCE_MARGIN,
                rationale=EQUIVALENCE_RATIONALE)


def _skip_when_too_sparse(run: Callable[[Cells], Estimate]) -> Callable[[Cells], Estimate]:
    """The estimators raise ValueError exactly when the data cannot support them (e.g. an odds
    ratio of 0 in every stratum); in the battery that is a skipped test with the reason."""

    def guarded(cells: Cells) -> Estimate:
        try:
            return run(cells)
        except ValueError as why:
            raise Skip(f"the data are too sparse for this test: {why}") from None

    return guarded


RUNNERS: dict[str, Callable[[Cells], Estimate]] = {
    test_id: _skip_when_too_sparse(run) for test_id, run in {
        "listed_unadjusted": _listed_unadjusted,
        "listed_adjusted": _listed_adjusted,
        "advertiser_adjusted": _advertiser_adjusted,
        "spend_adjusted": _spend_adjusted,
        "spend_trend": _spend_trend,
        "decision_speed": _decision_speed,
        "appeal_reversal": _appeal_reversal,
        "directive_did": _directive_did,
        "equal_treatment": _equal_treatment,
    }.items()
}


def _with_details(estimate: Estimate, **extra) -> Estimate:
    return replace(estimate, details={**estimate.details, **extra})


def _randomization(result: Estimate) -> dict:
    return {"p_value": result.p_value, "permutations": PERMUTATIONS, "seed": SEED,
            "method": result.method}


def _e_value(estimate: Estimate) -> dict:
    """How strongly a hidden confounder would have to be tied to both group and outcome."""
    nearest = estimate.ci_high if estimate.estimate < 1 else estimate.ci_low
    # Enforcement is common (not rare), so the odds ratio is first converted with RR ~ sqrt(OR).
    value = e_value(estimate.estimate, ci_limit=nearest, rare=False)
    return {"point": value.point, "ci": value.ci}


def run_battery(cases: pl.DataFrame | pl.LazyFrame, *, has_watchlist: bool = True,
                alpha: float = ALPHA, power: float = POWER) -> list[TestResult]:
    """Run every test of the battery on attributed cases (:func:`analysis.attribute.attribute`).

    Parameters
    ----------
    cases : polars DataFrame or LazyFrame
        The attributed cases.
    has_watchlist : bool, default True
        Whether a watchlist was supplied; without one the listed-account tests are skipped with
        that reason.
    alpha : float, default 0.05
        Significance level; intervals are 1 - alpha.
    power : float, default 0.8
        Power at which the minimum detectable effect (``mde``) is stated.

    Returns
    -------
    list of TestResult
        In the order of :data:`DESIGNS`, p-values adjusted across the tests that ran
        (Benjamini–Hochberg). ``equal_treatment`` is not in that family: it tests a different
        null (a difference at least as large as the margin).
    """
    return run_battery_on_cells(Cells.of(cases.lazy().collect()), has_watchlist=has_watchlist,
                                alpha=alpha, power=power)


def with_codes(data: Cells) -> Cells:
    """The same cells with text keys coded: account ids as whole numbers, labels as Enums.

    The tests group and sort millions of cells by account, policy and severity band, which is
    several times faster on numbers than on text. Account ids become their rank among the ids
    (the tests only need to tell accounts apart: to cluster by them and to reshuffle them);
    other text columns become Enums of their sorted values, which keep the labels and sort as
    the text does. Neither depends on the order of the cells, so neither can change a result.
    """
    frames = {name: getattr(data, name) for name in ("cases", "account", "spend", "appeal",
                                                     "event")}
    # Each schema read once: with millions of accounts, building (and hashing) an Enum type of
    # the account ids takes a noticeable fraction of a second.
    schemas = {name: frame.schema for name, frame in frames.items()}
    # The text keys of the cell tables; other text columns of the cases (case ids) stay as they are.
    keys = sorted({column for name, schema in schemas.items() if name != "cases"
                   for column, dtype in schema.items()
                   if dtype in (pl.String, pl.Categorical, pl.Enum)})
    coded = []
    for column in keys:
        types = [schema[column] for schema in schemas.values() if column in schema]
        only = types[0] if all(other == types[0] for other in types[1:]) else None
        if isinstance(only, pl.Enum) and only.categories.is_sorted():
            enum = pl.col(column)  # already coded, e.g. by attribute(..., categorical=True)
        else:
            values = (pl.concat([frame.select(pl.col(column).cast(pl.String)).unique()
                                 for frame in frames.values() if column in frame.columns])
                      .unique().drop_nulls().sort(column).get_column(column))
            enum = pl.col(column).cast(pl.String).cast(pl.Enum(values))
        coded.append((column, enum.to_physical() if column == "account_id" else enum))
    return replace(data, **{
        name: frame.with_columns(expr for column, expr in coded if column in frame.columns)
        for name, frame in frames.items()})


def run_battery_on_cells(data: Cells, *, has_watchlist: bool = True, alpha: float = ALPHA,
                         power: float = POWER) -> list[TestResult]:
    """The battery on prebuilt :class:`Cells` (see :func:`run_battery` for the parameters)."""
    data = with_codes(data)
    results = []
    for test_id, run in RUNNERS.items():
        design = DESIGNS[test_id]
        if design.needs_watchlist and not has_watchlist:
            results.append(_skipped(design, "no watchlist supplied"))
            continue
        try:
            estimate = run(data)
        except Skip as why:
            results.append(_skipped(design, str(why)))
            continue
        data.estimates[test_id] = estimate
        results.append(_result(design, estimate, alpha=alpha, power=power))
    family = [r.p_value if r.id != "equal_treatment" else None for r in results]
    adjusted = adjust_p(family, method="fdr_bh")
    results = [replace(r, p_adjusted=p if r.id != "equal_treatment" else r.p_value)
               for r, p in zip(results, adjusted, strict=True)]
    return [replace(r, conclusion=conclusion(r, alpha=alpha)) for r in results]


def _skipped(design: Design, reason: str) -> TestResult:
    return TestResult(id=design.id, status="skipped", question=design.question,
                      estimand=design.estimand, scale=design.scale, method=design.method,
                      reason=reason)


def _result(design: Design, estimate: Estimate, *, alpha: float, power: float) -> TestResult:
    if design.scale == "probability":
        mde = -mde_difference(estimate.se, alpha=alpha, power=power)
    elif design.id == "appeal_reversal":  # leniency on appeal is an OR above 1
        below = mde_ratio(estimate.se, alpha=alpha, power=power)
        mde = 1 / below if below > 0 else math.inf  # an infinite SE detects nothing
    else:
        mde = mde_ratio(estimate.se, alpha=alpha, power=power)
    return TestResult(
        id=design.id, status="ok", question=design.question, estimand=design.estimand,
        scale=design.scale, method=design.method, estimate=estimate.estimate,
        ci_low=estimate.ci_low, ci_high=estimate.ci_high, p_value=estimate.p_value,
        n=estimate.n, n_clusters=estimate.n_clusters, mde=mde,
        details={"se": estimate.se, "computation": estimate.method, **estimate.details},
    )
