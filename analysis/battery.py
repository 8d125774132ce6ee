"""The standard battery: every test of DESIGN.md run on one attributed dataset.

``run_battery(cases)`` aggregates the cases to cells once, runs each design on the cells, adjusts
the p-values across the family (Benjamini–Hochberg) and words a conclusion for each test. A test
that cannot run on the data (no watchlist, no advertisers, too few cases) is returned with status
``skipped`` and the reason — never as a silent NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import polars as pl

from analysis.cells import account_cells, spend_cells
from analysis.config import ALPHA, POWER
from analysis.findings import conclusion
from analysis.stats.multiplicity import adjust_p
from analysis.stats.power import mde_difference, mde_ratio
from analysis.stats.regression import did, logistic
from analysis.stats.result import Estimate, TestResult
from analysis.stats.stratified import mantel_haenszel, odds_ratio

STRATA = ["policy", "severity_band"]


@dataclass(frozen=True)
class Design:
    """What a test asks, what it estimates, and how (for results.json and the methods appendix)."""

    id: str
    question: str
    estimand: str
    scale: str
    method: str


DESIGNS = {d.id: d for d in (
    Design("listed_unadjusted",
           "Are flagged cases of listed accounts enforced less often? (crude)",
           "Odds ratio of enforcement, cases of accounts listed at flag time vs all other cases",
           "OR",
           "Crude 2x2 odds ratio; 95% CI and p-value from a delete-one-account jackknife of the "
           "log odds ratio (cases of one account are not independent)"),
    Design("listed_adjusted",
           "Are flagged cases of listed accounts enforced less often, comparing like with like "
           "(same policy, same severity band)?",
           "Mantel-Haenszel common odds ratio of enforcement, listed vs not, over policy x "
           "severity band strata",
           "OR",
           "Mantel-Haenszel common odds ratio over policy x severity band; 95% CI and p-value from "
           "a delete-one-account jackknife of the log odds ratio"),
    Design("advertiser_adjusted",
           "Are advertisers' cases enforced less often than non-advertisers', comparing like "
           "with like?",
           "Mantel-Haenszel common odds ratio of enforcement, trailing spend > 0 vs none, over "
           "policy x severity band strata",
           "OR",
           "Mantel-Haenszel common odds ratio over policy x severity band; 95% CI and p-value from "
           "a delete-one-account jackknife of the log odds ratio"),
    Design("spend_adjusted",
           "Among advertisers, does enforcement fall as trailing spend rises?",
           "Odds ratio of enforcement per tenfold increase in trailing spend, advertisers only, "
           "policy, severity band and listing status held fixed",
           "OR",
           "Binomial GLM (logit) of enforcement on log10 trailing spend with policy, severity "
           "band and listed-at-flag-time fixed effects, fitted on exact account x day cells; SEs "
           "clustered by account"),
    Design("directive_did",
           "Did enforcement of listed accounts drop after the listing date, relative to everyone "
           "else?",
           "Difference-in-differences in the probability of enforcement: (listed accounts after "
           "- before) minus (other accounts after - before) the directive date",
           "probability",
           "Linear probability model with listed-account, after-directive and interaction terms "
           "plus policy and severity band fixed effects, on exact cells; SEs clustered by "
           "account. Assumes both groups would otherwise have moved in parallel"),
)}


class Skip(Exception):
    """Raised inside a test when the data cannot support it; the message is the reason."""


def _listed(cells: pl.DataFrame, spend: pl.DataFrame) -> Estimate:
    _need_groups(cells, "listed", "no case was flagged while its account was listed")
    return odds_ratio(cells, outcome="enforced", group="listed", count="n", cluster="account_id")


def _listed_adjusted(cells: pl.DataFrame, spend: pl.DataFrame) -> Estimate:
    _need_groups(cells, "listed", "no case was flagged while its account was listed")
    return mantel_haenszel(cells, outcome="enforced", group="listed", strata=STRATA, count="n",
                           cluster="account_id")


def _advertiser_adjusted(cells: pl.DataFrame, spend: pl.DataFrame) -> Estimate:
    _need_groups(cells, "is_advertiser", "no case had trailing ad spend")
    return mantel_haenszel(cells, outcome="enforced", group="is_advertiser", strata=STRATA,
                           count="n", cluster="account_id")


def _spend_adjusted(cells: pl.DataFrame, spend: pl.DataFrame) -> Estimate:
    if spend.select(pl.col("account_id").n_unique()).item() < 3:
        raise Skip("fewer than three advertiser accounts have cases with trailing spend")
    if spend["log10_spend"].n_unique() < 2:
        raise Skip("all advertiser cases have the same trailing spend")
    # Listing is held fixed so that this test measures spend beyond any watchlist; the
    # watchlist's own effect is what the listed_* tests measure.
    factors = STRATA + (["listed"] if spend["listed"].n_unique() > 1 else [])
    return logistic(spend, outcome="enforced", exposure="log10_spend", factors=factors, count="n",
                    cluster="account_id", per=1.0)


def _directive_did(cells: pl.DataFrame, spend: pl.DataFrame) -> Estimate:
    _need_groups(cells, "ever_listed", "no watchlisted account has flagged cases")
    groups = cells.group_by("ever_listed", "post").agg(pl.col("n").sum())
    if groups.height < 4:
        raise Skip("listed or other accounts have no cases on one side of the directive date")
    return did(cells, outcome="enforced", treated="ever_listed", post="post", factors=STRATA,
               count="n", cluster="account_id")


RUNNERS: dict[str, Callable[[pl.DataFrame, pl.DataFrame], Estimate]] = {
    "listed_unadjusted": _listed,
    "listed_adjusted": _listed_adjusted,
    "advertiser_adjusted": _advertiser_adjusted,
    "spend_adjusted": _spend_adjusted,
    "directive_did": _directive_did,
}


def _need_groups(cells: pl.DataFrame, column: str, reason: str) -> None:
    present = set(cells.filter(pl.col("n") > 0)[column].unique().to_list())
    if True not in present:
        raise Skip(reason)
    if False not in present:
        raise Skip(f"every case has {column} true: there is nothing to compare with")


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
        In the order of :data:`DESIGNS`, p-values adjusted across the tests that ran.
    """
    cells = account_cells(cases)
    spend = spend_cells(cases)
    results = []
    for test_id, run in RUNNERS.items():
        design = DESIGNS[test_id]
        if not has_watchlist and test_id in ("listed_unadjusted", "listed_adjusted",
                                             "directive_did"):
            results.append(_skipped(design, "no watchlist supplied"))
            continue
        try:
            estimate = run(cells, spend)
        except Skip as why:
            results.append(_skipped(design, str(why)))
            continue
        results.append(_result(design, estimate, alpha=alpha, power=power))
    adjusted = adjust_p([r.p_value for r in results], method="fdr_bh")
    results = [replace(r, p_adjusted=p) for r, p in zip(results, adjusted, strict=True)]
    return [replace(r, conclusion=conclusion(r, alpha=alpha)) for r in results]


def _skipped(design: Design, reason: str) -> TestResult:
    return TestResult(id=design.id, status="skipped", question=design.question,
                      estimand=design.estimand, scale=design.scale, method=design.method,
                      reason=reason)


def _result(design: Design, estimate: Estimate, *, alpha: float, power: float) -> TestResult:
    if design.scale == "probability":
        mde = -mde_difference(estimate.se, alpha=alpha, power=power)
    else:
        mde = mde_ratio(estimate.se, alpha=alpha, power=power)
    return TestResult(
        id=design.id, status="ok", question=design.question, estimand=design.estimand,
        scale=design.scale, method=design.method, estimate=estimate.estimate,
        ci_low=estimate.ci_low, ci_high=estimate.ci_high, p_value=estimate.p_value,
        n=estimate.n, n_clusters=estimate.n_clusters, mde=mde,
        details={"se": estimate.se, "computation": estimate.method, **estimate.details},
    )
