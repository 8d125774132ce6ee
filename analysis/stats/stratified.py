"""Odds ratios from 2×2 tables, crude and stratified, and tests for a trend across ordered groups.

These are the workhorses of the battery. Each function takes a frame of cases (one row per case)
or of cells (one row per combination of the columns involved, with a ``count`` column), reduces it
to the counts that the statistic needs, and returns an :class:`~analysis.stats.result.Estimate`.

* :func:`odds_ratio`: the crude odds ratio of an outcome (e.g. *enforced*) between two groups (e.g.
  *listed* accounts against the rest).
* :func:`mantel_haenszel`: the same comparison made like with like: within strata (e.g. policy ×
  severity band), pooled into one common odds ratio, with the Cochran–Mantel–Haenszel test and the
  Breslow–Day test of whether the odds ratio is the same in every stratum.
* :func:`trend`: whether the outcome rises or falls steadily across ordered groups (e.g. spend
  tiers), by the Cochran–Armitage test, or Mantel's stratified version of it.

Cases of one account are not independent, so :func:`odds_ratio` and :func:`mantel_haenszel` take a
``cluster`` column and then measure uncertainty with a delete-one-cluster jackknife.

Layout of the 2×2 table used throughout (``group`` in rows, ``outcome`` in columns)::

                      outcome true   outcome false
    group true             a              b
    group false            c              d

and the odds ratio is ``(a·d) / (b·c)``: the odds of the outcome in the group over its odds outside.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import statsmodels.api as sm
from scipy import stats as sps
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

from analysis.stats.frames import as_lazy as _as_lazy
from analysis.stats.result import Estimate

if TYPE_CHECKING:
    import pandas as pd

    Frame = pl.DataFrame | pl.LazyFrame | pd.DataFrame

__all__ = ["mantel_haenszel", "odds_ratio", "trend"]

# Names of the working columns; _load refuses input columns that would collide with them.
_CELLS = ("_a", "_b", "_c", "_d")
_WORKING_COLUMNS = frozenset(
    {*_CELLS, "_w", "_successes", "_total", "_cases", "_outcomes"}
    | {"_k", "_stratum_index", "_cluster_index"}
)


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


def odds_ratio(
    frame: Frame,
    *,
    outcome: str,
    group: str,
    count: str | None = None,
    cluster: str | None = None,
    alpha: float = 0.05,
) -> Estimate:
    """Crude odds ratio of ``outcome`` for ``group`` true against ``group`` false.

    The odds of an outcome are its probability over the probability of its absence (60% enforced
    means odds of 1.5). The odds ratio divides the odds among the group (e.g. listed accounts'
    cases) by the odds among everyone else: 1 means no difference, below 1 means the outcome is
    rarer in the group. "Crude" means nothing else is held equal; compare it with
    :func:`mantel_haenszel`.

    Without ``cluster`` the confidence interval is Woolf's: the log odds ratio is roughly normal
    with variance ``1/a + 1/b + 1/c + 1/d``; the p-value is the matching Wald test. When a cell is
    zero that variance is infinite, so 0.5 is added to all four cells (the Haldane–Anscombe
    correction), the ``method`` says so, and Fisher's exact p-value, which needs no correction, is
    put in ``details["fisher_p_value"]``.

    With ``cluster`` (e.g. ``"account_id"``) the point estimate is unchanged but the uncertainty
    comes from a delete-one-cluster jackknife: the log odds ratio is recomputed leaving out each
    cluster in turn, and the variance is ``(G - 1) / G · Σ (θ₋g − θ̄)²`` over the ``G`` clusters.
    Cases of one account share its moderators, content and history, so they are not independent
    and Woolf's interval, which treats them as independent, is too narrow; the jackknife asks how
    much the estimate moves when one account is taken away, which measures exactly the dependence
    that matters. The naive (Woolf) interval is kept in ``details``. With a zero cell the
    jackknife cannot see the uncertainty of the empty cell (no deletion changes it), so the
    interval is then never narrower than Woolf's.

    Parameters
    ----------
    frame : polars or pandas DataFrame, or polars LazyFrame
        One row per case, or one row per cell with its size in ``count``.
    outcome : str
        Boolean or 0/1 column: the outcome whose odds are compared (e.g. ``"enforced"``).
    group : str
        Boolean or 0/1 column: the group compared with the rest (e.g. ``"listed"``).
    count : str, optional
        Column of non-negative cell counts; without it every row counts once.
    cluster : str, optional
        Column identifying independent units (e.g. ``"account_id"``); switches the interval and
        p-value to the jackknife.
    alpha : float, default 0.05
        One minus the confidence level of the interval.

    Returns
    -------
    Estimate
        ``estimate`` is the odds ratio (scale ``"OR"``), ``se`` the standard error of its log.
        ``details`` holds the four cells, the outcome rate in each group, Fisher's p-value when
        a cell was zero, and with ``cluster`` the naive interval.

    Examples
    --------
    UC Berkeley graduate admissions, 1973 (Bickel et al. 1975): men were admitted with 1.84 times
    the odds of women.

    >>> import polars as pl
    >>> cells = pl.DataFrame({
    ...     "male": [True, True, False, False],
    ...     "admitted": [True, False, True, False],
    ...     "n": [1198, 1493, 557, 1278],
    ... })
    >>> result = odds_ratio(cells, outcome="admitted", group="male", count="n")
    >>> round(result.estimate, 3), round(result.ci_low, 3), round(result.ci_high, 3)
    (1.841, 1.624, 2.087)
    """
    _check_alpha(alpha)
    keys = [] if cluster is None else [cluster]
    data = _load(frame, outcome=outcome, flags=[group], keys=keys, count=count)
    total = _two_by_two(data, [], group, outcome).row(0, named=True)
    a, b, c, d = (float(total[k]) for k in _CELLS)
    n_cases = _as_count(a + b + c + d)
    if a + b == 0 or c + d == 0:
        raise ValueError(
            f"odds_ratio: column {group!r} is {'never' if a + b == 0 else 'always'} true, "
            "so there is no second group to compare with."
        )
    if a + c == 0 or b + d == 0:
        raise ValueError(
            f"odds_ratio: column {outcome!r} is {'never' if a + c == 0 else 'always'} true, "
            "so its odds are 0 or infinite in both groups and no odds ratio can be formed."
        )

    z = sps.norm.isf(alpha / 2)
    zero_cell = min(a, b, c, d) == 0
    add = 0.5 if zero_cell else 0.0
    ca, cb, cc, cd = a + add, b + add, c + add, d + add
    log_or = math.log(ca * cd / (cb * cc))
    woolf_se = math.sqrt(1 / ca + 1 / cb + 1 / cc + 1 / cd)

    details: dict[str, Any] = {
        "cells": {"a": a, "b": b, "c": c, "d": d},
        "rate_group_true": a / (a + b),
        "rate_group_false": c / (c + d),
        "haldane_anscombe": zero_cell,
    }
    method = "crude odds ratio"
    if zero_cell:
        method += " with 0.5 added to every cell (Haldane-Anscombe: a cell was zero)"
        details["fisher_p_value"] = _fisher_p(a, b, c, d)

    if cluster is None:
        lo, hi, p = _wald(log_or, woolf_se, z)
        method += "; Woolf (log) CI; Wald p"
        if zero_cell:
            method += " (Fisher's exact p in details)"
        return Estimate(
            estimate=math.exp(log_or),
            ci_low=lo,
            ci_high=hi,
            p_value=p,
            scale="OR",
            n=n_cases,
            se=woolf_se,
            method=method,
            details=details,
        )

    jack = _jackknife_log_mh(
        *_cells_by_cluster(data, cluster=cluster, stratum=np.zeros(data.height, dtype=np.int64),
                           group=group, outcome=outcome),
        cluster=cluster,
        totals=np.array([[a, b, c, d]]) + add,
    )
    naive_lo, naive_hi, naive_p = _wald(log_or, woolf_se, z)
    details.update(
        naive_ci=[naive_lo, naive_hi],
        naive_se=woolf_se,
        naive_p_value=naive_p,
        jackknife_undefined_replicates=jack["undefined"],
    )
    se = jack["se"]
    method += (
        f"; CI and Wald p from a delete-one-cluster jackknife of the log OR over {cluster}"
        f" ({jack['n_clusters']} clusters)"
    )
    if zero_cell and se < woolf_se:
        # Leaving out clusters never changes an empty cell, so the jackknife cannot see the
        # largest source of uncertainty; do not report an interval narrower than Woolf's.
        se = woolf_se
        method += ", widened to the Woolf interval because a cell was zero"
    lo, hi, p = _wald(log_or, se, z)
    if jack["undefined"]:
        method += f"; {jack['undefined']} replicate(s) undefined, so no finite interval"
    return Estimate(
        estimate=math.exp(log_or),
        ci_low=lo,
        ci_high=hi,
        p_value=p,
        scale="OR",
        n=n_cases,
        se=se,
        method=method,
        n_clusters=jack["n_clusters"],
        details=details,
    )


def mantel_haenszel(
    frame: Frame,
    *,
    outcome: str,
    group: str,
    strata: str | Sequence[str],
    count: str | None = None,
    correction: bool = True,
    cluster: str | None = None,
    alpha: float = 0.05,
) -> Estimate:
    """Mantel–Haenszel common odds ratio of ``outcome`` for ``group``, like compared with like.

    A crude odds ratio can mislead when the groups differ in what they are made of: in 1973 men
    were admitted to Berkeley with higher odds than women overall, yet department by department
    women did as well or better, because women applied more to the departments that admitted few
    (Simpson's paradox). The Mantel–Haenszel estimate compares the groups within each stratum
    (e.g. the same policy and severity band) and pools the comparisons into one odds ratio,
    ``Σ (a·d/n) / Σ (b·c/n)`` over strata, which assumes the odds ratio is the same in every
    stratum; the Breslow–Day test in ``details`` checks that assumption (a small p-value says the
    odds ratio differs between strata, and the common one is an average).

    Only strata in which both groups and both outcomes occur say anything about the comparison;
    the others contribute nothing to any of the statistics below, so they are dropped and counted
    (``details["strata_total"]``, ``details["strata_informative"]``). If none is informative a
    ``ValueError`` explains why.

    Without ``cluster``: the confidence interval is that of Robins, Breslow and Greenland (1986),
    valid both for many small strata and few large ones; ``p_value`` is that of the
    Cochran–Mantel–Haenszel chi-square test of no association, with a continuity correction by
    default as in R's ``mantelhaen.test`` (``correction=False`` gives the uncorrected statistic of
    SAS PROC FREQ and statsmodels).

    With ``cluster`` (e.g. ``"account_id"``): the estimate is unchanged, but the interval and
    p-value come from a delete-one-cluster jackknife of the log common odds ratio (variance
    ``(G - 1) / G · Σ (θ₋g − θ̄)²``, Wald z test). The RGB interval and the CMH test both treat
    every case as independent, but cases of one account share moderators, content and history, so
    with many cases per account they are too narrow and too quick to reject. Leaving out one
    account at a time and watching the estimate move measures the uncertainty at the level where
    observations are independent. This is the interval the battery reports. Each jackknife
    replicate is computed from per-(cluster, stratum) counts by subtracting the cluster's counts
    from the stratum totals, so the cost grows with the number of (cluster, stratum) cells, not
    with clusters × strata. The CMH and RGB results stay in ``details`` for reference.

    Parameters
    ----------
    frame : polars or pandas DataFrame, or polars LazyFrame
        One row per case, or one row per cell with its size in ``count``.
    outcome : str
        Boolean or 0/1 column: the outcome whose odds are compared (e.g. ``"enforced"``).
    group : str
        Boolean or 0/1 column: the group compared with the rest (e.g. ``"listed"``).
    strata : str or list of str
        Column(s) whose combinations define the strata (e.g. ``["policy", "severity_band"]``).
    count : str, optional
        Column of non-negative cell counts; without it every row counts once.
    correction : bool, default True
        Apply the continuity correction (subtract 0.5 from the absolute deviation, when it is
        at least 0.5) to the CMH statistic.
    cluster : str, optional
        Column identifying independent units; switches the interval and p-value to the jackknife.
    alpha : float, default 0.05
        One minus the confidence level of the interval.

    Returns
    -------
    Estimate
        ``estimate`` is the common odds ratio (scale ``"OR"``); ``n`` counts the cases in
        informative strata. ``details``: ``cmh_statistic``, ``cmh_p_value``, ``correction``,
        ``mh_risk_ratio`` (Mantel–Haenszel risk ratio of the outcome, group true vs false),
        ``breslow_day_statistic``, ``breslow_day_df``, ``breslow_day_p_value`` (and the Tarone-
        adjusted statistic), ``rgb_ci``, ``rgb_se``, ``strata_total``, ``strata_informative``,
        ``cases_total``, ``cases_in_uninformative_strata``, and with ``cluster`` the jackknife's
        ``jackknife_undefined_replicates``.

    Examples
    --------
    Berkeley admissions by department (R ``datasets::UCBAdmissions``): department by department,
    men's odds of admission were if anything lower than women's (crude odds ratio 1.84).

    >>> import polars as pl
    >>> counts = {  # department: men admitted, men rejected, women admitted, women rejected
    ...     "A": (512, 313, 89, 19), "B": (353, 207, 17, 8), "C": (120, 205, 202, 391),
    ...     "D": (138, 279, 131, 244), "E": (53, 138, 94, 299), "F": (22, 351, 24, 317),
    ... }
    >>> cells = pl.DataFrame({
    ...     "dept": [dept for dept in counts for _ in range(4)],
    ...     "male": [True, True, False, False] * 6,
    ...     "admitted": [True, False, True, False] * 6,
    ...     "n": [n for cell_counts in counts.values() for n in cell_counts],
    ... })
    >>> result = mantel_haenszel(cells, outcome="admitted", group="male", strata="dept", count="n")
    >>> round(result.estimate, 4), round(result.ci_low, 4), round(result.ci_high, 4)
    (0.9047, 0.7719, 1.0603)
    >>> round(result.details["breslow_day_p_value"], 4)  # the odds ratio differs by department
    0.0021
    """
    _check_alpha(alpha)
    strata_cols = _as_list(strata, "strata")
    if not strata_cols:
        raise ValueError("mantel_haenszel: give at least one strata column.")
    keys = strata_cols + ([] if cluster is None else [cluster])
    data = _load(frame, outcome=outcome, flags=[group], keys=keys, count=count)

    by_stratum = _two_by_two(data, strata_cols, group, outcome)
    a_all, b_all, c_all, d_all = (by_stratum.get_column(k).to_numpy().astype(float) for k in _CELLS)
    # Both groups and both outcomes present; any other stratum adds zero to every sum below.
    informative = (a_all + b_all > 0) & (c_all + d_all > 0)
    informative &= (a_all + c_all > 0) & (b_all + d_all > 0)
    n_strata = by_stratum.height
    n_informative = int(informative.sum())
    cases_total = _as_count((a_all + b_all + c_all + d_all).sum())
    if n_informative == 0:
        raise ValueError(
            f"mantel_haenszel: none of the {n_strata} strata of {strata_cols} holds both values "
            f"of {group!r} and both values of {outcome!r}, so no stratum compares like with like. "
            "Use coarser strata, or report the crude odds ratio only."
        )
    a, b, c, d = a_all[informative], b_all[informative], c_all[informative], d_all[informative]
    n = a + b + c + d
    cases = _as_count(n.sum())

    r_k, s_k = a * d / n, b * c / n
    r_sum, s_sum = r_k.sum(), s_k.sum()
    if r_sum == 0 or s_sum == 0:
        raise ValueError(
            "mantel_haenszel: in every informative stratum "
            + ("a·d = 0" if r_sum == 0 else "b·c = 0")
            + ", so the common odds ratio is "
            + ("0" if r_sum == 0 else "infinite")
            + " and no interval can be given; the data are too sparse for this comparison."
        )
    log_or = math.log(r_sum / s_sum)
    rgb_se = _rgb_se(a, b, c, d)
    z = sps.norm.isf(alpha / 2)
    rgb_lo, rgb_hi, rgb_p = _wald(log_or, rgb_se, z)
    cmh_stat, cmh_p = _cmh(a, b, c, d, correction=correction)
    bd = _breslow_day(a, b, c, d, odds_ratio=r_sum / s_sum)
    rr_den = (c * (a + b) / n).sum()
    mh_rr = float((a * (c + d) / n).sum() / rr_den) if rr_den > 0 else math.inf

    details: dict[str, Any] = {
        "cmh_statistic": cmh_stat,
        "cmh_p_value": cmh_p,
        "correction": bool(correction),
        "mh_risk_ratio": mh_rr,
        **bd,
        "rgb_ci": [rgb_lo, rgb_hi],
        "rgb_se": rgb_se,
        "rgb_p_value": rgb_p,
        "strata": strata_cols,
        "strata_total": n_strata,
        "strata_informative": n_informative,
        "cases_total": cases_total,
        "cases_in_uninformative_strata": cases_total - cases,
    }
    cmh_name = "CMH chi-square" + (" (continuity-corrected)" if correction else "")
    described = f"Mantel-Haenszel common OR over {n_informative} strata of {', '.join(strata_cols)}"
    if n_informative < n_strata:
        described += f"; {n_strata - n_informative} uninformative strata dropped"

    if cluster is None:
        return Estimate(
            estimate=math.exp(log_or),
            ci_low=rgb_lo,
            ci_high=rgb_hi,
            p_value=cmh_p,
            scale="OR",
            n=cases,
            se=rgb_se,
            method=f"{described}; Robins-Breslow-Greenland CI; p from {cmh_name}",
            details=details,
        )

    from analysis.stats.regression import _patterns

    # Each row's index among the informative strata (-1 for the others), via its pattern of
    # strata values: a lookup in the small table of strata, not a join of all rows.
    pattern, first = _patterns(data, strata_cols)
    informative_index = by_stratum.select(strata_cols).with_columns(
        pl.Series("_stratum_index", np.where(informative, np.cumsum(informative) - 1, -1)))
    pattern_index = (
        data.select(strata_cols)[first]
        .join(informative_index, on=strata_cols, how="left", maintain_order="left")
        .get_column("_stratum_index").to_numpy()
    )
    totals = np.column_stack([a, b, c, d])
    jack = _jackknife_log_mh(
        *_cells_by_cluster(data, cluster=cluster, stratum=pattern_index[pattern], group=group,
                           outcome=outcome),
        cluster=cluster, totals=totals)
    se = jack["se"]
    lo, hi, p = _wald(log_or, se, z)
    details["jackknife_undefined_replicates"] = jack["undefined"]
    method = (
        f"{described}; CI and Wald p from a delete-one-cluster jackknife of the log OR over "
        f"{cluster} ({jack['n_clusters']} clusters); {cmh_name} and RGB CI in details"
    )
    if jack["undefined"]:
        method += f"; {jack['undefined']} replicate(s) undefined, so no finite interval"
    return Estimate(
        estimate=math.exp(log_or),
        ci_low=lo,
        ci_high=hi,
        p_value=p,
        scale="OR",
        n=cases,
        se=se,
        method=method,
        n_clusters=jack["n_clusters"],
        details=details,
    )


def trend(
    frame: Frame,
    *,
    outcome: str,
    score: str,
    strata: str | Sequence[str] | None = None,
    count: str | None = None,
    cluster: str | None = None,
    alpha: float = 0.05,
) -> Estimate:
    """Test for a steady rise or fall of an outcome's rate across ordered groups.

    Each ordered group (e.g. spend tier 0, 1, 2, 3, 4) carries a numeric score. The
    Cochran–Armitage test asks whether the outcome rate moves linearly with the score: it compares
    ``Σ successes × score`` with what it would be if the rate were the same everywhere. It is far
    more powerful than a general test of "any difference" when the difference is a trend, but the
    answer depends on the scores, which should therefore be fixed before looking at the data
    (equally spaced tiers and mean spend per tier can give different p-values).

    Without ``strata`` the statistic is Cochran–Armitage's, as R's ``prop.trend.test`` computes it
    (no continuity correction). With ``strata`` it is Mantel's extension (Agresti, *Categorical
    Data Analysis*, "Mantel test for linear trend"): within each stratum the deviation of
    ``Σ successes × score`` from its null expectation is summed over strata and divided by the
    summed hypergeometric variances, so groups are only compared within strata. (For one stratum
    it is Cochran–Armitage's statistic times ``(N − 1) / N``.) Either way ``p_value`` is two-sided,
    from chi-square with 1 degree of freedom.

    The ``estimate`` gives the size of the trend: the odds ratio per one-unit step of the score,
    from a logistic regression of the outcome on the score (a straight line on the log-odds scale)
    with a separate intercept for each stratum, fitted to grouped counts (which gives the same
    coefficients as fitting to individual cases), with its Wald interval.

    Strata in which the outcome never or always occurs, or with a single score, carry no
    information on the trend and are dropped and counted.

    Parameters
    ----------
    frame : polars or pandas DataFrame, or polars LazyFrame
        One row per case, or one row per cell with its size in ``count``.
    outcome : str
        Boolean or 0/1 column (e.g. ``"enforced"``).
    score : str
        Numeric column giving each case's group score (e.g. ``"spend_tier"``).
    strata : str or list of str, optional
        Column(s) whose combinations define strata.
    count : str, optional
        Column of non-negative cell counts; without it every row counts once.
    cluster : str, optional
        Column of cluster labels (e.g. ``account_id``) when cases of one cluster are not
        independent. The trend statistic is then a score statistic with a cluster-robust
        variance: each cluster's contribution ``Σ (score − stratum mean score) × (outcome −
        stratum rate)`` is squared and summed (times ``G / (G − 1)``), instead of the
        hypergeometric variance that assumes independent cases; the odds ratio per unit of score
        gets cluster-robust standard errors. Without clustering both reduce to the usual test.
    alpha : float, default 0.05
        One minus the confidence level of the interval.

    Returns
    -------
    Estimate
        ``estimate``: odds ratio per unit of score (scale ``"OR"``); ``p_value``: trend test.
        ``details``: ``chi2``, ``z`` (signed: positive when the rate rises with the score),
        ``test``, ``scores`` (per level: score, cases, outcomes, rate), ``glm_p_value`` (Wald p of
        the regression slope), ``strata_total``, ``strata_informative``.

    Examples
    --------
    R's ``prop.trend.test(c(83, 90, 129, 70), c(86, 93, 136, 82))`` (smokers among patients):

    >>> import polars as pl
    >>> cells = pl.DataFrame({
    ...     "group_score": [1, 2, 3, 4] * 2,
    ...     "smoker": [True] * 4 + [False] * 4,
    ...     "n": [83, 90, 129, 70, 3, 3, 7, 12],
    ... })
    >>> result = trend(cells, outcome="smoker", score="group_score", count="n")
    >>> round(result.details["chi2"], 4), round(result.p_value, 6)
    (8.2249, 0.004132)
    """
    _check_alpha(alpha)
    strata_cols = [] if strata is None else _as_list(strata, "strata")
    if cluster is not None:
        return _clustered_trend(frame, outcome=outcome, score=score, strata=strata_cols,
                                count=count, cluster=cluster, alpha=alpha)
    data = _load(frame, outcome=outcome, flags=[], keys=strata_cols, count=count, scores=[score])
    keys = [*strata_cols, score]
    cells = (
        data.group_by(keys)
        .agg(
            _successes=weight_where(pl.col(outcome)).sum(),
            _total=pl.col("_w").sum(),
        )
        .filter(pl.col("_total") > 0)
        .sort(keys)
    )
    if strata_cols:
        index = cells.select(strata_cols).unique(maintain_order=True).with_row_index("_k")
        cells = cells.join(index, on=strata_cols, how="left", maintain_order="left")
        k = cells.get_column("_k").to_numpy().astype(np.int64)
    else:
        k = np.zeros(cells.height, dtype=np.int64)
    s = cells.get_column(score).to_numpy().astype(float)
    x = cells.get_column("_successes").to_numpy().astype(float)
    n = cells.get_column("_total").to_numpy().astype(float)

    n_strata = int(k.max()) + 1 if k.size else 0
    big_n = np.bincount(k, weights=n, minlength=n_strata)
    big_m = np.bincount(k, weights=x, minlength=n_strata)
    with np.errstate(invalid="ignore", divide="ignore"):
        s_bar = np.bincount(k, weights=n * s, minlength=n_strata) / big_n
    dev = s - s_bar[k]
    ss = np.bincount(k, weights=n * dev**2, minlength=n_strata)
    # Cells are one per (stratum, score) with cases, so counting cells counts distinct scores.
    distinct_scores = np.bincount(k, minlength=n_strata)
    informative = (big_m > 0) & (big_m < big_n) & (distinct_scores >= 2)
    n_informative = int(informative.sum())
    if n_informative == 0:
        where = f" in any of the {n_strata} strata" if strata_cols else ""
        raise ValueError(
            f"trend: no trend can be tested{where}: it needs at least two different values of "
            f"{score!r} and both values of {outcome!r}."
        )
    keep = informative[k]
    t_minus_e = np.bincount(k, weights=x * dev, minlength=n_strata)[informative].sum()
    if strata_cols:
        mm, nn = big_m[informative], big_n[informative]
        variance = (mm * (nn - mm) / (nn * (nn - 1)) * ss[informative]).sum()
        test_name = "Mantel test for linear trend (stratified Cochran-Armitage)"
    else:
        p_bar = big_m[0] / big_n[0]
        variance = p_bar * (1 - p_bar) * ss[0]
        test_name = "Cochran-Armitage test for trend"
    z_trend = t_minus_e / math.sqrt(variance)
    chi2 = z_trend**2
    p_trend = float(sps.chi2.sf(chi2, 1))

    slope, slope_se, glm_p, glm_notes = _grouped_logit_slope(
        s[keep], x[keep], n[keep], np.unique(k[keep], return_inverse=True)[1]
    )
    zc = sps.norm.isf(alpha / 2)
    lo, hi, _ = _wald(slope, slope_se, zc)

    levels = (
        cells.filter(pl.Series(keep))
        .group_by(score)
        .agg(_cases=pl.col("_total").sum(), _outcomes=pl.col("_successes").sum())
        .sort(score)
    )
    score_rows = [
        {
            "score": float(row[score]),
            "cases": _as_count(row["_cases"]),
            "outcomes": _as_count(row["_outcomes"]),
            "rate": float(row["_outcomes"]) / float(row["_cases"]),
        }
        for row in levels.iter_rows(named=True)
    ]
    strata_note = ""
    if strata_cols:
        strata_note = f" within {n_informative} strata of {', '.join(strata_cols)}"
        if n_informative < n_strata:
            strata_note += f" ({n_strata - n_informative} uninformative strata dropped)"
    method = (
        f"{test_name}{strata_note}, scores from {score}; OR per unit of score from a grouped "
        f"binomial GLM{' with stratum fixed effects' if strata_cols else ''}, Wald CI"
        + (f" ({'; '.join(glm_notes)})" if glm_notes else "")
    )
    return Estimate(
        estimate=_exp(slope),
        ci_low=lo,
        ci_high=hi,
        p_value=p_trend,
        scale="OR",
        n=_as_count(n[keep].sum()),
        se=slope_se,
        method=method,
        details={
            "test": test_name,
            "chi2": float(chi2),
            "df": 1,
            "z": float(z_trend),
            "scores": score_rows,
            "glm_p_value": glm_p,
            "glm_notes": glm_notes,
            "strata": strata_cols,
            "strata_total": n_strata,
            "strata_informative": n_informative,
            "cases_total": _as_count(n.sum()),
        },
    )


def _clustered_trend(frame: Frame, *, outcome: str, score: str, strata: list[str],
                     count: str | None, cluster: str, alpha: float) -> Estimate:
    """Stratified trend test and OR per score unit, both robust to clustering (see ``trend``)."""
    from analysis.stats.regression import _cluster_totals, _codes, _fit_cells, _patterns

    data = _load(frame, outcome=outcome, flags=[], keys=[*strata, cluster], count=count,
                 scores=[score])
    data = data.with_columns(_x=weight_where(pl.col(outcome)), _n=pl.col("_w")).filter(
        pl.col("_n") > 0)
    # Per stratum: the outcome rate and the mean score, from the (score, stratum) patterns, which
    # are also the patterns of the GLM below.
    pattern, first = _patterns(data, [score, *strata])
    in_stratum = (_patterns(data[first], strata)[0] if strata
                  else np.zeros(first.size, dtype=np.int64))
    x = data.get_column("_x").cast(pl.Float64).to_numpy()
    n = data.get_column("_n").cast(pl.Float64).to_numpy()
    x_p = np.bincount(pattern, weights=x, minlength=first.size)
    n_p = np.bincount(pattern, weights=n, minlength=first.size)
    score_p = data.get_column(score).cast(pl.Float64).to_numpy()[first]
    n_k = np.bincount(in_stratum, weights=n_p)
    rate = np.bincount(in_stratum, weights=x_p) / n_k
    mean_score = np.bincount(in_stratum, weights=n_p * score_p) / n_k
    # Each cluster's contribution: over its (score, stratum) cells, summed in that order (whole
    # counts added up exactly first), so the result does not depend on the order of the rows.
    totals = _cluster_totals(_codes(data.get_column(cluster)), pattern, first.size, x, n)
    outcomes, cases = totals
    p = cases.indices
    k = in_stratum[p]
    u = (score_p[p] - mean_score[k]) * (outcomes.data - cases.data * rate[k])
    by_cluster = np.add.reduceat(u, cases.indptr[:-1]) if u.size else u
    g = by_cluster.size
    if g < 2:
        raise ValueError(f"trend: clustering needs at least two clusters in {cluster!r}")
    u = float(by_cluster.sum())
    variance = g / (g - 1) * float((by_cluster**2).sum())
    if variance <= 0:
        raise ValueError(f"trend: no trend can be tested: {score!r} or {outcome!r} does not vary "
                         "within any stratum")
    z_trend = u / math.sqrt(variance)
    fit = _fit_cells(data, successes="_x", trials="_n", numeric=[score], factors=strata,
                     cluster=cluster, n_rows=None, family="logit", robust=False, reference={},
                     layout=(pattern, first, *totals))
    slope = fit.estimate(score, alpha=alpha)
    strata_note = f" within strata of {', '.join(strata)}" if strata else ""
    return Estimate(
        estimate=slope.estimate, ci_low=slope.ci_low, ci_high=slope.ci_high,
        p_value=float(sps.chi2.sf(z_trend**2, 1)), scale="OR", n=slope.n, se=slope.se,
        n_clusters=g,
        method=(f"Score test for linear trend across {score}{strata_note} with a variance robust "
                f"to clustering by {cluster} ({g} clusters); OR per unit of score from a grouped "
                "binomial GLM with stratum fixed effects and cluster-robust SEs"),
        details={"test": "cluster-robust stratified trend score test", "chi2": z_trend**2,
                 "df": 1, "z": z_trend, "strata": strata, "glm": slope.method},
    )


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _load(
    frame: Frame,
    *,
    outcome: str,
    flags: list[str],
    keys: list[str],
    count: str | None,
    scores: Sequence[str] = (),
) -> pl.DataFrame:
    """Select and check the columns a statistic needs.

    Returns a polars frame with the boolean ``outcome`` and ``flags`` columns, the ``keys`` and
    ``scores`` unchanged, and the case weight in ``_w`` (Int64 when counts are whole numbers, so
    sums are exact and independent of summation order).
    """
    flag_cols = [outcome, *flags]
    columns = [*flag_cols, *keys, *scores] + ([count] if count is not None else [])
    if len(set(columns)) != len(columns):
        raise ValueError(
            f"The same column is used twice among {columns}; each role needs its own column."
        )
    clashes = sorted(_WORKING_COLUMNS.intersection(columns))
    if clashes:
        raise ValueError(f"Column name(s) {clashes} are used internally; rename them first.")
    lazy = _as_lazy(frame, columns)
    available = lazy.collect_schema().names()
    missing = [c for c in columns if c not in available]
    if missing:
        raise ValueError(f"Column(s) {missing} not found; the frame has {available}.")
    data = lazy.select(columns).collect()
    if data.height == 0:
        raise ValueError("The frame has no rows.")

    nulls = {c: n for c, n in zip(columns, data.null_count().row(0), strict=True) if n}
    if nulls:
        raise ValueError(
            f"Missing values in {nulls} (column: number of nulls). Rows cannot be analysed "
            "without them; fill them (e.g. a stratum label such as 'unknown') or filter them out "
            "first, and count them in the coverage ledger."
        )

    exprs = [_flag(data, c) for c in flag_cols]
    for c in scores:
        dtype = data.schema[c]
        if not (dtype.is_numeric() and dtype != pl.Boolean):
            raise TypeError(f"Score column {c!r} must be numeric, not {dtype}.")
        if not data.get_column(c).cast(pl.Float64).is_finite().all():
            raise ValueError(f"Score column {c!r} has infinite or NaN values.")
    if count is None:
        exprs.append(pl.lit(1, dtype=pl.Int64).alias("_w"))
    else:
        dtype = data.schema[count]
        if not dtype.is_numeric() or dtype == pl.Boolean:
            raise TypeError(f"Count column {count!r} must be numeric, not {dtype}.")
        weights = data.get_column(count).cast(pl.Float64)
        if not weights.is_finite().all() or (weights < 0).any():
            raise ValueError(f"Count column {count!r} must hold finite, non-negative numbers.")
        whole = dtype.is_integer() or bool((weights == weights.round()).all())
        exprs.append(pl.col(count).cast(pl.Int64 if whole else pl.Float64).alias("_w"))
    return data.with_columns(exprs).select([*flag_cols, *keys, *scores, "_w"])


def _flag(data: pl.DataFrame, name: str) -> pl.Expr:
    """The column as a boolean expression, after checking it is boolean or 0/1."""
    dtype = data.schema[name]
    if dtype == pl.Boolean:
        return pl.col(name)
    if dtype.is_numeric():
        column = data.get_column(name)
        bad = column.filter(~column.is_in([0, 1])).unique().sort()
        if bad.len():
            raise ValueError(
                f"Column {name!r} must be boolean or 0/1; it also holds {bad.head(5).to_list()}."
            )
        return (pl.col(name) == 1).alias(name)
    raise TypeError(f"Column {name!r} must be boolean or 0/1, not {dtype}.")


def _as_list(columns: str | Sequence[str], role: str) -> list[str]:
    if isinstance(columns, str):
        return [columns]
    out = list(columns)
    if not all(isinstance(c, str) for c in out):
        raise TypeError(f"{role} must be a column name or a list of column names.")
    return out


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}.")


def _as_count(value: float) -> int:
    return int(round(float(value)))


def _two_by_two(data: pl.DataFrame, keys: list[str], group: str, outcome: str) -> pl.DataFrame:
    """Cells a, b, c, d (see the module docstring) per combination of ``keys``, sorted by them."""
    g, y = pl.col(group), pl.col(outcome)
    # Weights zeroed outside each cell, then plain sums: much faster in a group-by over millions
    # of rows than a filtered sum per cell.
    weights = data.select(
        *keys,
        _a=weight_where(g & y),
        _b=weight_where(g & ~y),
        _c=weight_where(~g & y),
        _d=weight_where(~g & ~y),
    )
    if not keys:
        return weights.select(pl.col(_CELLS).sum())
    return weights.group_by(keys).agg(pl.col(_CELLS).sum()).sort(keys)


def weight_where(condition: pl.Expr) -> pl.Expr:
    """The case weight ``_w`` where ``condition`` holds, else 0 (summed, the weight of the cell)."""
    return pl.when(condition).then(pl.col("_w")).otherwise(0)


# --------------------------------------------------------------------------------------------
# Statistics on arrays of per-stratum cells
# --------------------------------------------------------------------------------------------


def _wald(log_estimate: float, se: float, z: float) -> tuple[float, float, float]:
    """Interval on the ratio scale and two-sided p-value from a normal log estimate."""
    if not math.isfinite(se):
        return 0.0, math.inf, 1.0
    lo = _exp(log_estimate - z * se)
    hi = _exp(log_estimate + z * se)
    p = float(2 * sps.norm.sf(abs(log_estimate) / se)) if se > 0 else (0.0 if log_estimate else 1.0)
    return lo, hi, p


def _exp(value: float) -> float:
    """exp that gives inf instead of raising when a separated fit returns a huge log ratio."""
    return math.exp(value) if value < 709.0 else math.inf


def _fisher_p(a: float, b: float, c: float, d: float) -> float | None:
    cells = [a, b, c, d]
    if any(v != round(v) for v in cells):
        return None  # the exact test needs whole counts
    return float(sps.fisher_exact([[int(a), int(b)], [int(c), int(d)]]).pvalue)


def _rgb_se(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> float:
    """Robins, Breslow & Greenland (1986) standard error of the log Mantel–Haenszel odds ratio."""
    n = a + b + c + d
    r, s = a * d / n, b * c / n
    p, q = (a + d) / n, (b + c) / n
    r_sum, s_sum = r.sum(), s.sum()
    variance = (
        (p * r).sum() / (2 * r_sum**2)
        + (p * s + q * r).sum() / (2 * r_sum * s_sum)
        + (q * s).sum() / (2 * s_sum**2)
    )
    return float(math.sqrt(variance))


def _cmh(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, *, correction: bool
) -> tuple[float, float]:
    """Cochran–Mantel–Haenszel chi-square (1 df) and its p-value.

    The continuity correction follows R's ``mantelhaen.test``: 0.5 is subtracted from the absolute
    deviation only when that deviation is at least 0.5, so the statistic never turns negative.
    """
    n = a + b + c + d
    n1, n0, m1, m0 = a + b, c + d, a + c, b + d
    deviation = float((a - n1 * m1 / n).sum())
    variance = float((n1 * n0 * m1 * m0 / (n**2 * (n - 1))).sum())
    shift = 0.5 if correction and abs(deviation) >= 0.5 else 0.0
    statistic = (abs(deviation) - shift) ** 2 / variance
    return float(statistic), float(sps.chi2.sf(statistic, 1))


def _breslow_day(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, *, odds_ratio: float
) -> dict[str, Any]:
    """Breslow–Day test that the odds ratio is the same in every stratum.

    For each stratum the count ``a`` expected if its odds ratio were the common (MH) one is the
    root, inside the table's margins, of a quadratic; the statistic sums the squared deviations of
    the observed ``a`` over their variances and is compared with chi-square on K − 1 df. The
    Tarone (1985) adjusted statistic is given too (it corrects for using the MH estimate).
    """
    if a.size < 2:
        return {
            "breslow_day_statistic": None,
            "breslow_day_df": 0,
            "breslow_day_p_value": None,
            "breslow_day_tarone_statistic": None,
        }
    n = a + b + c + d
    n1, m1 = a + b, a + c
    r = odds_ratio
    # (1 - r) e² + (n - n1 - m1 + r (n1 + m1)) e - r n1 m1 = 0; this form of the root is stable
    # for every r > 0, including r = 1 where the quadratic term vanishes.
    lin = n - n1 - m1 + r * (n1 + m1)
    const = -r * n1 * m1
    root = np.sqrt(lin**2 - 4 * (1 - r) * const)
    expected = -2 * const / (lin + root)
    variance = 1 / (
        1 / expected + 1 / (m1 - expected) + 1 / (n1 - expected) + 1 / (n - n1 - m1 + expected)
    )
    statistic = float(((a - expected) ** 2 / variance).sum())
    tarone = statistic - float((a.sum() - expected.sum()) ** 2 / variance.sum())
    df = int(a.size - 1)
    return {
        "breslow_day_statistic": statistic,
        "breslow_day_df": df,
        "breslow_day_p_value": float(sps.chi2.sf(statistic, df)),
        "breslow_day_tarone_statistic": tarone,
    }


def _cells_by_cluster(
    data: pl.DataFrame, *, cluster: str, stratum: np.ndarray, group: str, outcome: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells a, b, c, d per (cluster, stratum), in (cluster, stratum) order.

    ``stratum`` gives each row's index among the analysed strata (-1: not analysed). Returns the
    cluster codes (in the sort order of the cluster values), the stratum indexes and an array of
    the four cells, one row per (cluster, stratum) pair present. Sums of whole numbers are exact,
    and in a fixed order otherwise, so they never depend on the order of the rows (see
    ``_pair_sums``).
    """
    from analysis.stats.regression import _codes, _pair_sums

    keep = stratum >= 0
    g = _codes(data.get_column(cluster))[keep]
    k = stratum[keep]
    in_group = data.get_column(group).to_numpy()[keep]
    is_outcome = data.get_column(outcome).to_numpy()[keep]
    w = data.get_column("_w").to_numpy()[keep]
    # Which of the four cells each row counts in (0 a, 1 b, 2 c, 3 d): the rows are summed once
    # per (cluster, stratum, cell), one array rather than four that are mostly zeros.
    cell = (~in_group).astype(np.int64) * 2 + ~is_outcome
    n_clusters = int(g.max()) + 1 if g.size else 0
    (sums,) = _pair_sums(g, k.astype(np.int64, copy=False) * 4 + cell,
                         (n_clusters, (int(stratum.max()) + 1) * 4), [w])
    g_all = np.repeat(np.arange(n_clusters), np.diff(sums.indptr))
    k_all, cell = np.divmod(sums.indices.astype(np.int64), 4)
    # One row per (cluster, stratum) pair with at least one row of data (even if its sums are 0).
    first = np.ones(g_all.size, dtype=bool)
    first[1:] = (g_all[1:] != g_all[:-1]) | (k_all[1:] != k_all[:-1])
    cells = np.zeros((int(first.sum()), 4))
    cells[np.cumsum(first) - 1, cell] = sums.data
    return g_all[first], k_all[first], cells


def _jackknife_log_mh(
    g_index: np.ndarray, k_index: np.ndarray, cells: np.ndarray, *, cluster: str,
    totals: np.ndarray
) -> dict[str, Any]:
    """Delete-one-cluster jackknife of the log Mantel–Haenszel odds ratio.

    ``cells`` has one row per (cluster, stratum) with cells a, b, c, d, from
    :func:`_cells_by_cluster`; ``k_index`` points into ``totals`` (K × 4 stratum totals,
    informative strata only). Leaving out cluster g changes only the strata it appears in, so its
    replicate is the full sums Σ a·d/n and Σ b·c/n minus, for each of its strata, the stratum's
    term before removal and plus the term after removal. All replicates come from a few
    vectorised operations over the (cluster, stratum) rows.
    """
    # Clusters without cases in the analysed strata (e.g. explicit zero-count cells) are not units
    # of the analysis, so they must not inflate G.
    present = cells.sum(axis=1) > 0
    g_index, k_index = g_index[present], k_index[present]
    a, b, c, d = (cells[present, j].astype(float) for j in range(4))
    # Renumber the clusters left 0..G-1 (g_index is sorted).
    g_index = np.cumsum(np.r_[True, g_index[1:] != g_index[:-1]]) - 1 if g_index.size else g_index
    n_clusters = int(g_index.max()) + 1 if g_index.size else 0
    if n_clusters < 2:
        raise ValueError(
            f"The jackknife over {cluster!r} needs at least two clusters in the analysed data; "
            f"found {n_clusters}."
        )
    ta, tb, tc, td = (totals[:, j].astype(float) for j in range(4))
    tn = ta + tb + tc + td
    r_k, s_k = ta * td / tn, tb * tc / tn

    ra, rb, rc, rd = ta[k_index] - a, tb[k_index] - b, tc[k_index] - c, td[k_index] - d
    rn = ra + rb + rc + rd
    # A stratum emptied by removing the cluster contributes nothing afterwards.
    safe_n = np.where(rn > 0, rn, 1.0)
    r_after = np.where(rn > 0, ra * rd / safe_n, 0.0)
    s_after = np.where(rn > 0, rb * rc / safe_n, 0.0)
    r_change = np.bincount(g_index, weights=r_k[k_index] - r_after, minlength=n_clusters)
    s_change = np.bincount(g_index, weights=s_k[k_index] - s_after, minlength=n_clusters)
    r_minus = r_k.sum() - r_change
    s_minus = s_k.sum() - s_change

    # Cancellation can leave a tiny positive residue where the true value is 0.
    tol = 1e-12 * max(r_k.sum(), s_k.sum())
    defined = (r_minus > tol) & (s_minus > tol)
    undefined = int((~defined).sum())
    if undefined:
        se = math.inf
    else:
        theta = np.log(r_minus / s_minus)
        se = math.sqrt((n_clusters - 1) / n_clusters * float(((theta - theta.mean()) ** 2).sum()))
    return {"se": se, "n_clusters": n_clusters, "undefined": undefined}


def _grouped_logit_slope(
    score: np.ndarray, successes: np.ndarray, totals: np.ndarray, stratum: np.ndarray
) -> tuple[float, float, float, list[str]]:
    """Slope (log OR per unit score), its SE and Wald p from a grouped binomial GLM.

    The design is an intercept, the score, and one indicator per stratum after the first. Grouped
    counts (successes, failures) give the same coefficients and SEs as the case-level regression.
    """
    n_strata = int(stratum.max()) + 1
    dummies = (stratum[:, None] == np.arange(1, n_strata)[None, :]).astype(float)
    exog = np.column_stack([np.ones_like(score), score, dummies])
    endog = np.column_stack([successes, totals - successes])
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = sm.GLM(endog, exog, family=sm.families.Binomial()).fit()
    for warning in caught:
        if issubclass(warning.category, PerfectSeparationWarning):
            notes.append("perfect separation: the slope may be infinite")
        elif issubclass(warning.category, ConvergenceWarning):
            notes.append("GLM did not converge")
    notes = sorted(set(notes))
    return float(fit.params[1]), float(fit.bse[1]), float(fit.pvalues[1]), notes
