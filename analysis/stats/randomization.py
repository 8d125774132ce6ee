"""Randomization inference: an exact test of the listed-account comparisons, reshuffling the list.

The watchlist tests compare the cases of a few dozen listed accounts with everyone else's. The
confidence intervals of :mod:`analysis.stats.stratified` and :mod:`analysis.stats.regression`
account for cases of one account being alike (they cluster by account), but they are
large-sample approximations, and with 60-odd listed accounts the sample of *accounts* is small
enough for them to be optimistic.

A permutation test needs no such approximation. Suppose the list made no difference at all to
any case (the *sharp null*): every case would then have been enforced, or not, whichever
accounts had been listed. So we can take the list away, hand it to the same number of accounts
drawn at random, recompute the statistic, and repeat. The observed statistic is then one draw
from that reshuffled distribution, and the share of reshuffles that come out at least as extreme
is a p-value that is exact in finite samples, however few accounts there are and however
strongly cases of one account resemble each other, because whole accounts are moved, never single
cases.

:func:`permutation_test` does this for the two statistics of the battery: the log
Mantel-Haenszel odds ratio over strata (like compared with like) and the 2x2
difference-in-differences of enforcement rates around the listing date. The counts it needs are
gathered once per account (and stratum); each reshuffle is then a product of a sparse 0/1
matrix of labels (only the treated accounts are stored) with those counts, done a batch of
reshuffles at a time, so a thousand reshuffles of hundreds of thousands of accounts take a
fraction of a second.

What the test does not do: it says whether there is *any* effect, not how large it is. The
estimate and the confidence interval it reports are those of the asymptotic method (a
delete-one-account jackknife or clustered standard errors); the interval is not obtained by
inverting the permutation test, and ``method`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl
from scipy import sparse

from analysis.stats.regression import _codes, _pair_sums, _patterns, did
from analysis.stats.result import Estimate
from analysis.stats.stratified import (
    _as_list,
    _check_alpha,
    _load,
    mantel_haenszel,
    odds_ratio,
)

if TYPE_CHECKING:
    import pandas as pd

    Frame = pl.DataFrame | pl.LazyFrame | pd.DataFrame

__all__ = ["permutation_test"]

Statistic = Literal["mh", "did"]

# Reshuffles are processed in batches of this many, so memory stays bounded whatever the count.
_BATCH = 100

# Working column names of the tables handed to mantel_haenszel / did for the observed estimate.
_GROUP = "__permutation_group"
_COUNT = "__permutation_count"
_CLUSTER_INDEX = "__cluster_index"


def permutation_test(
    frame: Frame,
    *,
    outcome: str,
    treated: str,
    strata: str | Sequence[str],
    cluster: str,
    count: str | None = None,
    exposed: str | None = None,
    within: str | None = None,
    statistic: Statistic = "mh",
    n_permutations: int = 999,
    seed: int | np.random.SeedSequence,
    alpha: float = 0.05,
) -> Estimate:
    """Permutation test of a treated group of accounts, reshuffling which accounts are treated.

    Under the sharp null hypothesis that being treated (e.g. being on the watchlist) changed no
    case's outcome, any other choice of the same number of accounts would have been just as
    likely to produce the observed data. The test therefore reassigns the ``treated`` label to
    randomly chosen accounts ``n_permutations`` times, recomputes the statistic each time, and
    reports the two-sided p-value

        p = (1 + number of reshuffles with |statistic| >= |observed|) / (1 + n_permutations),

    which counts the observed assignment as one of the possible ones, so it is never 0 and its
    smallest value is ``1 / (1 + n_permutations)``. Because whole accounts are reshuffled, the
    dependence between cases of one account is respected exactly, with no large-sample
    approximation: this is the check on the clustered intervals when there are few treated
    accounts.

    With ``within`` (an account-level column, e.g. whether the account is an advertiser), labels
    are reshuffled only among accounts of the same level, keeping the number treated in each
    level. Use it when the treated accounts differ systematically from the rest in a way that
    also moves the outcome (all 60 listed accounts belong to an advertiser, say): reshuffling
    across levels would then compare the list with a mix the list could never have been. If
    every level is all treated or all untreated, no reshuffle changes anything and p = 1: the
    data cannot separate the treatment from ``within``.

    The statistics (``statistic``):

    * ``"mh"``: the log Mantel-Haenszel common odds ratio of ``outcome`` over ``strata``, for
      cases of the group (``treated`` and, if given, ``exposed``) against all other cases, as in
      :func:`~analysis.stats.stratified.mantel_haenszel`.
    * ``"did"``: the 2x2 difference-in-differences of outcome rates, (treated exposed - treated
      unexposed) - (others exposed - others unexposed), as in
      :func:`~analysis.stats.regression.did` without factors. It needs ``exposed`` and takes no
      strata (pass ``strata=()``); use ``"mh"`` with ``exposed`` to compare like with like.

    A reshuffle whose statistic is undefined (e.g. no reshuffled treated account has an exposed
    case) counts as at least as extreme as the observed one, which can only raise the p-value;
    their number is in ``details``.

    The estimate, standard error and interval are not from the permutations: they are those of
    :func:`~analysis.stats.stratified.mantel_haenszel` (or ``odds_ratio`` when ``strata`` is
    empty) with a delete-one-cluster jackknife, or of ``did`` with standard errors clustered by
    ``cluster``. The interval is not inverted from the permutation test; ``method`` says so, and
    ``details`` holds quantiles of the permutation distribution for comparison.

    Parameters
    ----------
    frame : polars or pandas DataFrame, or polars LazyFrame
        One row per case, or one row per cell with its size in ``count``.
    outcome : str
        Boolean or 0/1 column (e.g. ``"enforced"``).
    treated : str
        Boolean or 0/1 account-level column (e.g. ``"ever_listed"``); it must take one value in
        each cluster, otherwise a ``ValueError`` says which clusters mix both.
    strata : str or list of str
        Column(s) whose combinations define the strata of the ``"mh"`` statistic (e.g.
        ``["policy", "severity_band"]``); an empty list means one stratum (the crude odds
        ratio). Must be empty for ``"did"``.
    cluster : str
        The unit that is reshuffled (e.g. ``"account_id"``).
    count : str, optional
        Column of non-negative cell counts; without it every row counts once.
    exposed : str, optional
        Boolean or 0/1 case-level column (e.g. ``"post"``: flagged after the directive date).
        With ``"mh"``, the group compared is ``treated & exposed``; ``"did"`` requires it.
    within : str, optional
        Account-level column: reshuffle only within its levels.
    statistic : {"mh", "did"}, default "mh"
        Which statistic to recompute (see above).
    n_permutations : int, default 999
        Number of reshuffles. 999 gives p-values in steps of 0.001.
    seed : int or numpy.random.SeedSequence
        Seed of the random reshuffles (required, so that a rerun gives the same p-value; the
        battery uses ``analysis.config.SEED``).
    alpha : float, default 0.05
        One minus the confidence level of the (asymptotic) interval; the permutation quantiles
        in ``details`` are at ``alpha / 2`` and ``1 - alpha / 2``.

    Returns
    -------
    Estimate
        ``p_value`` is the permutation p-value. ``estimate``, ``ci_low``, ``ci_high``, ``se``
        and ``n`` come from the asymptotic method (scale ``"OR"`` for ``"mh"``,
        ``"probability"`` for ``"did"``); ``n_clusters`` is the number of clusters reshuffled.
        ``details``: ``statistic``, ``observed_statistic`` (log OR or difference),
        ``n_permutations``, ``n_at_least_as_extreme``, ``undefined_permutations``, ``seed``,
        ``permutation_quantiles`` (at alpha/2, 0.5, 1 - alpha/2, on the statistic's scale),
        ``permutation_sd``, ``clusters``, ``treated_clusters``, ``within`` and
        ``treated_per_level`` ({level: [treated, clusters]}), ``log10_assignments`` (log10 of
        the number of distinct assignments the reshuffles draw from), and ``asymptotic`` (the
        asymptotic p-value, interval and method).

    Examples
    --------
    Four strata, 30 accounts of which 8 are treated; the treated accounts' cases are enforced
    less often:

    >>> import numpy as np, polars as pl
    >>> rng = np.random.default_rng(1)
    >>> account = np.repeat(np.arange(30), 20)
    >>> listed = account < 8
    >>> stratum = rng.integers(0, 4, account.size)
    >>> enforced = rng.random(account.size) < np.where(listed, 0.35, 0.6)
    >>> cases = pl.DataFrame({"account_id": account.astype(str), "listed": listed,
    ...                       "policy": stratum, "enforced": enforced})
    >>> result = permutation_test(cases, outcome="enforced", treated="listed", strata="policy",
    ...                           cluster="account_id", seed=2023)
    >>> result.p_value < 0.01, result.estimate < 1
    (True, True)
    """
    _check_alpha(alpha)
    if statistic not in ("mh", "did"):
        raise ValueError(f"statistic must be 'mh' or 'did', not {statistic!r}.")
    if seed is None:
        raise ValueError(
            "permutation_test needs a seed, so that a rerun gives the same p-value "
            "(the battery uses analysis.config.SEED)."
        )
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, (int, np.integer)):
        raise TypeError(f"n_permutations must be a whole number, not {n_permutations!r}.")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be at least 1, got {n_permutations}.")
    strata_cols = _as_list(strata, "strata")
    if statistic == "did":
        if exposed is None:
            raise ValueError(
                "statistic='did' compares before and after: give the case-level column that "
                "marks the after period in `exposed` (e.g. 'post')."
            )
        if strata_cols:
            raise ValueError(
                "statistic='did' is the unadjusted 2x2 difference-in-differences and takes no "
                f"strata (got {strata_cols}); pass strata=(), or use statistic='mh' with "
                "`exposed` to compare like with like."
            )

    flags = [treated] + ([exposed] if exposed is not None else [])
    keys = _unique([cluster, *strata_cols, *([within] if within is not None else [])])
    data = _load(frame, outcome=outcome, flags=flags, keys=keys, count=count)
    for name in (_GROUP, _COUNT):
        if name in data.columns:
            raise ValueError(f"Column name {name!r} is used internally; rename it first.")

    data = data.with_columns(pl.Series(_CLUSTER_INDEX, _codes(data.get_column(cluster))))
    accounts = _accounts(data, cluster=cluster, treated=treated, within=within)
    labels = accounts.get_column(treated).to_numpy().astype(bool)
    levels = accounts.get_column("_level").to_numpy()
    n_clusters = labels.size
    n_treated = int(labels.sum())
    if n_treated == 0 or n_treated == n_clusters:
        raise ValueError(
            f"permutation_test: {treated!r} is {'never' if n_treated == 0 else 'always'} true "
            f"across the {n_clusters} clusters of {cluster!r}, so there is nothing to compare."
        )
    data = data.with_columns(
        (pl.col(treated) & pl.col(exposed) if exposed is not None else pl.col(treated)).alias(
            _GROUP
        )
    )

    if statistic == "mh":
        compute = _mh_statistic(data, outcome=outcome, exposed=exposed, strata=strata_cols)
    else:
        compute = _did_statistic(data, outcome=outcome, exposed=exposed, n_clusters=n_clusters)

    observed = float(compute(sparse.csr_array(labels[None, :].astype(float)))[0])
    if not math.isfinite(observed):
        raise ValueError(
            f"permutation_test: the observed {_describe(statistic, strata_cols, exposed)} is "
            "not finite (a group has no cases, or the outcome never or always occurs in it), so "
            "there is nothing to test; use coarser strata or a larger group."
        )

    rng = np.random.default_rng(seed)
    null = np.concatenate(
        [
            compute(block)
            for block in _label_batches(labels, levels, rng=rng, n_permutations=n_permutations)
        ]
    )
    # Equal statistics computed in a different order may differ in the last bits; ties must count.
    tolerance = 1e-9 * max(1.0, abs(observed))
    undefined = np.isnan(null)
    extreme = undefined | (np.abs(null) >= abs(observed) - tolerance)
    n_extreme = int(extreme.sum())
    p_value = (1 + n_extreme) / (1 + n_permutations)

    asymptotic = _asymptotic(
        data,
        statistic=statistic,
        outcome=outcome,
        treated=treated,
        exposed=exposed,
        strata=strata_cols,
        cluster=cluster,
        alpha=alpha,
    )
    defined = null[~undefined]
    quantile_levels = [alpha / 2, 0.5, 1 - alpha / 2]
    # Quantiles that are values of the distribution: interpolating could meet an infinite value.
    quantiles = (
        [float(q) for q in np.quantile(defined, quantile_levels, method="inverted_cdf")]
        if defined.size
        else None
    )
    finite = defined[np.isfinite(defined)]
    spread = float(np.std(finite)) if finite.size else None

    level_values = accounts.get_column("_level_value").to_list()
    treated_per_level = {
        str(level_values[int(np.flatnonzero(levels == lv)[0])]): [
            int(labels[levels == lv].sum()),
            int((levels == lv).sum()),
        ]
        for lv in np.unique(levels)
    }
    log10_assignments = sum(
        _log10_comb(total, count_treated) for count_treated, total in treated_per_level.values()
    )

    by = f" within levels of {within}" if within is not None else ""
    method = (
        f"randomization inference: {n_permutations} random reassignments of {treated} among "
        f"{n_clusters} {cluster} clusters{by} (number treated kept); statistic "
        f"{_describe(statistic, strata_cols, exposed)}; two-sided permutation p; estimate and "
        f"{1 - alpha:.0%} CI not from the permutations but from {asymptotic.method}"
    )
    if undefined.any():
        method += f"; {int(undefined.sum())} undefined reshuffle(s) counted as extreme"
    details: dict[str, Any] = {
        "statistic": statistic,
        "observed_statistic": observed,
        "n_permutations": int(n_permutations),
        "n_at_least_as_extreme": n_extreme,
        "undefined_permutations": int(undefined.sum()),
        "seed": int(seed) if isinstance(seed, (int, np.integer)) else str(seed),
        "permutation_quantile_levels": quantile_levels,
        "permutation_quantiles": quantiles,
        "permutation_sd": spread,
        "clusters": n_clusters,
        "treated_clusters": n_treated,
        "within": within,
        "treated_per_level": treated_per_level,
        "log10_assignments": log10_assignments,
        "strata": strata_cols,
        "exposed": exposed,
        "asymptotic": {
            "p_value": asymptotic.p_value,
            "ci": [asymptotic.ci_low, asymptotic.ci_high],
            "se": asymptotic.se,
            "method": asymptotic.method,
        },
    }
    if "cmh_p_value" in asymptotic.details:
        details["asymptotic"]["cmh_p_value"] = asymptotic.details["cmh_p_value"]
    return Estimate(
        estimate=asymptotic.estimate,
        ci_low=asymptotic.ci_low,
        ci_high=asymptotic.ci_high,
        p_value=float(p_value),
        scale=asymptotic.scale,
        n=asymptotic.n,
        se=asymptotic.se,
        method=method,
        n_clusters=n_clusters,
        details=details,
    )


# --------------------------------------------------------------------------------------------
# Accounts and their labels
# --------------------------------------------------------------------------------------------


def _unique(columns: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for column in columns:
        if column not in seen:
            seen.append(column)
    return seen


def _accounts(
    data: pl.DataFrame, *, cluster: str, treated: str, within: str | None
) -> pl.DataFrame:
    """One row per cluster, in the order of its index: its treated label and ``within`` level.

    Raises a ``ValueError`` naming the clusters where ``treated`` or ``within`` is not constant,
    because reshuffling accounts only makes sense for a label that belongs to the account.
    """
    account_level = [treated] + ([within] if within is not None else [])
    summary = data.group_by(_CLUSTER_INDEX).agg(
        pl.col(cluster).first(),
        *[(pl.col(c).min() != pl.col(c).max()).alias(f"__mixed_{c}") for c in account_level],
        *[pl.col(c).first() for c in account_level],
    )
    for column in account_level:
        mixed = summary.filter(pl.col(f"__mixed_{column}")).get_column(cluster).sort()
        if mixed.len():
            role = "treated" if column == treated else "within"
            raise ValueError(
                f"permutation_test: the {role} column {column!r} must be constant within each "
                f"cluster of {cluster!r} (it is reshuffled between clusters), but it takes more "
                f"than one value in {mixed.len()} cluster(s), e.g. {mixed.head(5).to_list()}. "
                "Use an account-level column such as 'ever_listed', not one that changes over "
                "time such as 'listed'; put the time dependence in `exposed`."
            )
    level = pl.col(within) if within is not None else pl.lit("all")
    return (
        summary.sort(_CLUSTER_INDEX)
        .with_columns(
            level.alias("_level_value"),
            (level.rank("dense").cast(pl.Int64) - 1).alias("_level"),
        )
    )


def _label_batches(
    labels: np.ndarray, levels: np.ndarray, *, rng: np.random.Generator, n_permutations: int
):
    """Yield sparse 0/1 matrices (reshuffles x clusters) of reshuffled labels, a batch at a time.

    Within each level of ``levels`` every reshuffle draws, uniformly and without replacement,
    as many clusters as ``labels`` has treated there, so each row keeps exactly as many treated
    clusters per level as ``labels``. Only the treated clusters are stored: with 60 listed
    accounts among 500,000, a reshuffle costs 60 numbers, not 500,000.
    """
    groups = [np.flatnonzero(levels == level) for level in np.unique(levels)]
    wanted = [int(labels[members].sum()) for members in groups]
    per_row = sum(wanted)
    done = 0
    while done < n_permutations:
        size = min(_BATCH, n_permutations - done)
        chosen = np.empty((size, per_row), dtype=np.int64)
        for row in range(size):
            column = 0
            for members, count in zip(groups, wanted, strict=True):
                chosen[row, column:column + count] = members[
                    rng.choice(members.size, count, replace=False)]
                column += count
        rows = np.repeat(np.arange(size), per_row)
        yield sparse.csr_array((np.ones(rows.size), (rows, chosen.reshape(-1))),
                               shape=(size, labels.size))
        done += size


def _log10_comb(n: int, k: int) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(10)


# --------------------------------------------------------------------------------------------
# Statistics as functions of a label matrix
# --------------------------------------------------------------------------------------------


def _mh_statistic(
    data: pl.DataFrame, *, outcome: str, exposed: str | None, strata: list[str]
):
    """Return a function: sparse label matrix (P x G) -> log Mantel-Haenszel OR of each row.

    A case is in the group when its cluster is labelled treated and it is exposed. So per
    stratum k, cell a (group, outcome) is the sum over treated clusters of A[g, k], the count of
    exposed cases with the outcome in cluster g and stratum k, and cell b likewise from the
    exposed cases without it. Cells c and d follow from the stratum totals, which no reshuffle
    changes. A and B are sparse (an account has cases in few strata).
    """
    k = (_patterns(data, strata)[0] if strata else np.zeros(data.height, dtype=np.int64))
    g = data.get_column(_CLUSTER_INDEX).to_numpy()
    y = data.get_column(outcome).to_numpy()
    e = data.get_column(exposed).to_numpy() if exposed is not None else np.ones(y.size, bool)
    w = data.get_column("_w").to_numpy()
    n_clusters, n_strata = int(g.max()) + 1, int(k.max()) + 1
    shape = (n_clusters, n_strata)
    # Counts per (cluster, stratum), summed exactly (whole numbers) into a sparse layout.
    a_cells, b_cells = _pair_sums(g, k, shape, [np.where(e & y, w, 0), np.where(e & ~y, w, 0)])
    m1 = np.bincount(k, weights=np.where(y, w, 0).astype(float), minlength=n_strata)
    total = np.bincount(k, weights=w.astype(float), minlength=n_strata)
    m0 = total - m1
    safe_total = np.where(total > 0, total, 1.0)

    def log_mh(block: sparse.csr_array) -> np.ndarray:
        a = (block @ a_cells).toarray()
        b = (block @ b_cells).toarray()
        c = m1 - a
        d = m0 - b
        r = (a * d / safe_total).sum(axis=1)
        s = (b * c / safe_total).sum(axis=1)
        # r = 0 or s = 0 give -inf / +inf (a legitimately extreme table); both 0 give NaN.
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(r) - np.log(s)

    return log_mh


def _did_statistic(data: pl.DataFrame, *, outcome: str, exposed: str, n_clusters: int):
    """Return a function: sparse label matrix (P x G) -> 2x2 difference-in-differences of each
    row.

    Per cluster we need only four sums: outcomes and cases, exposed and not. The treated group's
    sums are the label matrix times these vectors; the others' are the totals minus them.
    """
    g = data.get_column(_CLUSTER_INDEX).to_numpy()
    y = data.get_column(outcome).to_numpy()
    e = data.get_column(exposed).to_numpy()
    w = data.get_column("_w").to_numpy().astype(float)
    sums = np.column_stack([
        np.bincount(g, weights=np.where(selected, w, 0.0), minlength=n_clusters)
        for selected in (e & y, e, ~e & y, ~e)
    ])
    totals = sums.sum(axis=0)

    def difference(block: sparse.csr_array) -> np.ndarray:
        treated = block @ sums
        others = totals - treated
        with np.errstate(divide="ignore", invalid="ignore"):
            change_treated = treated[:, 0] / treated[:, 1] - treated[:, 2] / treated[:, 3]
            change_others = others[:, 0] / others[:, 1] - others[:, 2] / others[:, 3]
            result = change_treated - change_others
        # A group without cases leaves its rate undefined; mark the whole statistic undefined.
        return np.where(np.isfinite(result), result, np.nan)

    return difference


def _describe(statistic: str, strata: Sequence[str] = (), exposed: str | None = None) -> str:
    if statistic == "did":
        return f"2x2 difference-in-differences of outcome rates (treated x {exposed})"
    group = " (group: treated & " + exposed + ")" if exposed is not None else ""
    if strata:
        return f"log Mantel-Haenszel OR over {', '.join(strata)}{group}"
    return f"log crude OR{group}"


# --------------------------------------------------------------------------------------------
# The asymptotic estimate and interval
# --------------------------------------------------------------------------------------------


def _asymptotic(
    data: pl.DataFrame,
    *,
    statistic: str,
    outcome: str,
    treated: str,
    exposed: str | None,
    strata: list[str],
    cluster: str,
    alpha: float,
) -> Estimate:
    """The estimate and its clustered interval from the existing estimators, on counted cells."""
    if statistic == "did":
        keys = [cluster, treated, exposed, outcome]
    else:
        keys = [cluster, *strata, _GROUP, outcome]
    cells = data.select(*_unique(keys), pl.col("_w").alias(_COUNT))
    if statistic == "did":
        return did(
            cells, outcome=outcome, treated=treated, post=exposed, count=_COUNT,
            cluster=cluster, alpha=alpha,
        )
    if strata:
        return mantel_haenszel(
            cells, outcome=outcome, group=_GROUP, strata=strata, count=_COUNT,
            cluster=cluster, alpha=alpha,
        )
    return odds_ratio(
        cells, outcome=outcome, group=_GROUP, count=_COUNT, cluster=cluster, alpha=alpha
    )
