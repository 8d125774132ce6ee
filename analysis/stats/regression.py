"""Regression models fitted on aggregated cells that are exactly the row-level models.

A case either was enforced or was not, so a model of enforcement only needs, for every
combination of the model's variables (a *cell*), how many cases there were and how many of them
were enforced. Fitting on those counts gives the same coefficients and the same standard errors as
fitting on millions of rows, in a fraction of the time:

* a logistic regression is a binomial GLM on the cells with response (successes, failures);
* a linear probability model is weighted least squares on the cell proportions with the cell
  sizes as weights;
* the cluster-robust (by account) and heteroskedasticity-robust standard errors are computed
  here from per-cell sums, with the small-sample factors of the row-level fit, so they also equal
  what statsmodels gives on the expanded rows. The cluster (account) must then be part of the
  cell key; :func:`logistic`, :func:`did` and :func:`event_study` make sure of that themselves.

What aggregation does not keep: the log-likelihood, deviance and AIC of the row-level fit.

Public functions:

* :func:`grouped_glm` fits either model on a table of cells and returns a :class:`GroupedFit`;
* :func:`logistic` gives the odds ratio for a numeric exposure (e.g. per 10x trailing spend),
  like with like across categorical factors;
* :func:`did` gives a difference-in-differences in the probability of an outcome;
* :func:`event_study` gives the treated-vs-control gap in every period around an event, relative
  to a reference period, to check parallel pre-trends.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import polars as pl
from scipy import linalg, sparse, special, stats

from analysis.stats.frames import as_lazy as _as_lazy
from analysis.stats.result import Estimate

__all__ = ["GroupedFit", "did", "event_study", "grouped_glm", "logistic"]

Family = Literal["logit", "linear"]
Frame = pl.DataFrame | pl.LazyFrame | pd.DataFrame

# Column names used for the aggregated counts; chosen so they cannot clash with a user's columns
# (checked in _aggregate).
_SUCCESSES = "_lf_successes"
_TRIALS = "_lf_trials"

# A column whose remaining variation, after projecting out the columns before it, is below this
# share of its own variation is treated as collinear with them.
_COLLINEAR_TOLERANCE = 1e-10

# Covariate patterns are found by counting (no sort) when their possible combinations number at
# most this many, or this many per cell; by sorting one packed integer per cell when they fit in
# 62 bits; else by comparing the columns row by row.
_COUNTING_LIMIT = 1_000_000
_COUNTING_PER_CELL = 10
_PACKED_LIMIT = 2.0**62

# A design is fitted by blocks (see _Blocks) when it has at least this many covariate patterns per
# combination of factor levels and at most this many numeric columns (its cost grows with their
# square, as the whole matrix's does with the square of all columns).
_BLOCKS_PER_COMBINATION = 8
_BLOCKS_MAX_FREE = 4

# Fitted probabilities this close to 0 or 1 mean the outcome is perfectly predicted somewhere.
_SEPARATION_TOLERANCE = 1e-9


# ----------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------


def _unique(columns: Sequence[str | None]) -> list[str]:
    seen: list[str] = []
    for column in columns:
        if column is not None and column not in seen:
            seen.append(column)
    return seen


def _as_names(value: str | Sequence[str], what: str) -> list[str]:
    # A bare string is a common slip for a one-element list; without this it would be read as a
    # sequence of one-letter column names.
    if isinstance(value, str):
        return [value]
    names = list(value)
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"{what} must be column names (strings), got {value!r}")
    return names


def _check_columns(schema: pl.Schema, columns: Sequence[str]) -> None:
    missing = [column for column in columns if column not in schema]
    if missing:
        raise ValueError(
            f"column(s) {', '.join(map(repr, missing))} not found; the data have "
            f"{', '.join(map(repr, schema.names()))}"
        )


def _check_not_null(lf: pl.LazyFrame, columns: Sequence[str]) -> None:
    if not columns:
        return
    counts = lf.select(pl.col(columns).null_count()).collect().row(0, named=True)
    with_nulls = {column: count for column, count in counts.items() if count}
    if with_nulls:
        listed = ", ".join(f"{column!r} ({count} missing)" for column, count in with_nulls.items())
        raise ValueError(
            f"missing values in {listed}: fill them in (e.g. an explicit 'unknown' level) or "
            "filter those rows out before fitting, so that no case is dropped silently"
        )


def _check_numeric(schema: pl.Schema, column: str, what: str) -> None:
    dtype = schema[column]
    if not (dtype.is_numeric() or dtype == pl.Boolean):
        raise ValueError(f"{what} {column!r} must be numeric, but it has type {dtype}")


def _check_zero_one(lf: pl.LazyFrame, schema: pl.Schema, column: str, what: str) -> None:
    """Fail unless ``column`` is boolean or numeric with only the values 0 and 1."""
    dtype = schema[column]
    if dtype == pl.Boolean:
        return
    if not dtype.is_numeric():
        raise ValueError(f"{what} {column!r} must be boolean or 0/1, but it has type {dtype}")
    bad = (
        lf.filter((pl.col(column) != 0) & (pl.col(column) != 1))
        .select(pl.col(column))
        .unique()
        .sort(column)
        .head(5)
        .collect()
        .get_column(column)
        .to_list()
    )
    if bad:
        raise ValueError(f"{what} {column!r} must be boolean or 0/1, but it contains {bad}")


def _check_count(lf: pl.LazyFrame, schema: pl.Schema, count: str) -> None:
    dtype = schema[count]
    if not dtype.is_integer():
        raise ValueError(f"count column {count!r} must hold whole numbers, but it has type {dtype}")
    negative = lf.filter(pl.col(count) < 0).select(pl.len()).collect().item()
    if negative:
        raise ValueError(f"count column {count!r} has {negative} negative value(s)")


def _aggregate(
    frame: Frame, *, outcome: str, keys: Sequence[str], count: str | None
) -> pl.DataFrame:
    """Cells: the ``keys``, and per row the number of cases and of outcomes it stands for.

    ``frame`` holds either one row per case (``count`` None) or cells whose ``count`` rows all
    have the value of ``outcome``. Rows are not grouped here: :func:`_fit_cells` collapses them to
    covariate patterns (and cluster x pattern sums) itself, exactly, so the result does not
    depend on the order or the grouping of the input.
    """
    lf = _as_lazy(frame)
    schema = lf.collect_schema()
    for reserved in (_SUCCESSES, _TRIALS):
        if reserved in schema:
            raise ValueError(f"the column name {reserved!r} is reserved; rename that column")
    used = _unique([outcome, *keys, count])
    _check_columns(schema, used)
    _check_not_null(lf, used)
    _check_zero_one(lf, schema, outcome, "outcome")
    is_success = pl.col(outcome).cast(pl.Int64)
    if count is None:
        successes, trials = is_success, pl.lit(1, dtype=pl.Int64)
    else:
        _check_count(lf, schema, count)
        weight = pl.col(count).cast(pl.Int64)
        successes, trials = is_success * weight, weight
    return lf.select(*keys, successes.alias(_SUCCESSES), trials.alias(_TRIALS)).collect()


# ----------------------------------------------------------------------------------------------
# The fit
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class GroupedFit:
    """A regression fitted on cells, with what is needed to report any coefficient.

    Attributes
    ----------
    params : numpy.ndarray
        Coefficients, in the order of ``names`` (log-odds for ``family="logit"``, probabilities
        for ``family="linear"``).
    cov : numpy.ndarray
        Their covariance matrix (see ``cov_type``).
    names : tuple of str
        ``"Intercept"``, then the numeric columns, then one ``"factor[level]"`` per non-reference
        level of each factor.
    n_rows : int
        Number of rows (cases) the cells stand for.
    n_cells : int
        Number of covariate patterns (distinct combinations of the model's variables) the model
        was fitted on: the cells collapsed over clusters.
    n_clusters : int or None
        Number of clusters when the covariance is cluster-robust.
    family : str
        ``"logit"`` or ``"linear"``.
    cov_type : str
        ``"model"`` (model-based), ``"cluster"`` (cluster-robust, CR1) or ``"hc1"``
        (heteroskedasticity-robust).
    references : dict
        The reference level of each factor, as text.
    cluster : str or None
        The column the covariance is clustered on.
    """

    params: np.ndarray
    cov: np.ndarray
    names: tuple[str, ...]
    n_rows: int
    n_cells: int
    n_clusters: int | None
    family: str
    cov_type: str
    references: dict[str, str]
    cluster: str | None = None

    def _index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(
                f"no coefficient {name!r}; the model has {', '.join(map(repr, self.names))}"
            ) from None

    def coefficient(self, name: str) -> float:
        """The coefficient ``name`` (log-odds scale for logit)."""
        return float(self.params[self._index(name)])

    def se(self, name: str) -> float:
        """Standard error of the coefficient ``name``."""
        i = self._index(name)
        return float(np.sqrt(self.cov[i, i]))

    @property
    def method(self) -> str:
        """How the model and its uncertainty were computed, in one line."""
        model = (
            "logistic regression (binomial GLM)"
            if self.family == "logit"
            else "linear probability model (least squares)"
        )
        if self.cov_type == "cluster":
            uncertainty = f"SEs clustered by {self.cluster} ({self.n_clusters:,} clusters, CR1)"
        elif self.cov_type == "hc1":
            uncertainty = "heteroskedasticity-robust SEs (HC1)"
        else:
            uncertainty = "model-based SEs"
        return (f"{model} on {self.n_cells:,} covariate patterns of {self.n_rows:,} rows; Wald CI; "
                f"{uncertainty}")

    def estimate(
        self,
        name: str,
        *,
        alpha: float = 0.05,
        per: float = 1.0,
        scale: str | None = None,
    ) -> Estimate:
        """One coefficient as an :class:`~analysis.stats.result.Estimate`.

        Parameters
        ----------
        name : str
            The coefficient, as in ``names``.
        alpha : float, default 0.05
            One minus the confidence level of the Wald interval.
        per : float, default 1.0
            Report the effect of a change of ``per`` units of a numeric variable (the coefficient
            and its SE are multiplied by ``per``).
        scale : str, optional
            ``"OR"`` (logit, the default: the exponentiated coefficient), ``"probability"``
            (linear: the coefficient as a difference in probability) or ``"coefficient"`` (the
            coefficient itself; the default for linear).

        Returns
        -------
        Estimate
            Estimate, Wald interval, two-sided p-value from the normal distribution, ``se`` of
            the coefficient (of the log for ``"OR"``).
        """
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
        scale = scale or ("OR" if self.family == "logit" else "coefficient")
        if scale == "OR" and self.family != "logit":
            raise ValueError("an odds ratio needs family='logit'")
        if scale == "probability" and self.family != "linear":
            raise ValueError("a difference in probability needs family='linear'")
        if scale not in ("OR", "probability", "coefficient"):
            raise ValueError(f"scale must be 'OR', 'probability' or 'coefficient', got {scale!r}")
        coefficient = self.coefficient(name) * per
        se = self.se(name) * abs(per)
        z_crit = float(stats.norm.ppf(1.0 - alpha / 2.0))
        z = coefficient / se if se > 0 else float("nan")
        p_value = float(2.0 * stats.norm.sf(abs(z))) if se > 0 else float("nan")
        low, high = coefficient - z_crit * se, coefficient + z_crit * se
        transform = np.exp if scale == "OR" else (lambda value: value)
        details: dict[str, Any] = {
            "term": name,
            "coefficient": coefficient,
            "z": z,
            "per": per,
            "n_cells": self.n_cells,
            "cov_type": self.cov_type,
            "reference_levels": dict(self.references),
        }
        return Estimate(
            estimate=float(transform(coefficient)),
            ci_low=float(transform(low)),
            ci_high=float(transform(high)),
            p_value=p_value,
            scale=scale,
            n=self.n_rows,
            se=se,
            method=self.method,
            n_clusters=self.n_clusters,
            details=details,
        )


def _reference_level(cells: pl.DataFrame, factor: str, trials: str, chosen: Any) -> Any:
    levels = cells.get_column(factor).unique().sort().to_list()
    if chosen is not None:
        if chosen not in levels:
            raise ValueError(
                f"reference level {chosen!r} of {factor!r} does not occur; levels are {levels}"
            )
        return chosen
    # The most common level (by rows, not cells) gives the most precise contrasts; ties go to the
    # first level in sort order so the choice never depends on the input order.
    totals = (
        cells.group_by(factor)
        .agg(pl.col(trials).sum().alias("_total"))
        .sort(["_total", factor], descending=[True, False])
    )
    return totals.get_column(factor)[0]


def _design(
    cells: pl.DataFrame,
    *,
    numeric: Sequence[str],
    factors: Sequence[str],
    trials: str,
    reference: Mapping[str, Any],
) -> tuple[np.ndarray, list[str], dict[str, str]]:
    """Intercept, numeric columns and treatment-coded factor dummies, as a float matrix."""
    columns = [pl.lit(1.0).alias("Intercept")]
    names = ["Intercept"]
    for column in numeric:
        columns.append(pl.col(column).cast(pl.Float64).alias(column))
        names.append(column)
    references: dict[str, str] = {}
    for factor in factors:
        ref = _reference_level(cells, factor, trials, reference.get(factor))
        references[factor] = str(ref)
        for level in cells.get_column(factor).unique().sort().to_list():
            if level == ref:
                continue
            name = f"{factor}[{level}]"
            columns.append((pl.col(factor) == level).cast(pl.Float64).alias(name))
            names.append(name)
    if len(set(names)) != len(names):
        raise ValueError(f"two model terms have the same name: {names}")
    x = cells.select(columns).to_numpy().astype(np.float64, copy=False)
    return x, names, references


def _check_full_rank(gram: np.ndarray, names: Sequence[str]) -> None:
    """Name the columns that are linear combinations of the columns before them."""
    k = gram.shape[0]
    kept: list[int] = []
    collinear: list[str] = []
    for j in range(k):
        own = gram[j, j]
        if own <= 0:
            collinear.append(names[j])
            continue
        if kept:
            cross = gram[np.ix_(kept, [j])]
            solved = np.linalg.lstsq(gram[np.ix_(kept, kept)], cross, rcond=None)[0]
            remaining = own - float((cross.T @ solved)[0, 0])
        else:
            remaining = own
        if remaining <= _COLLINEAR_TOLERANCE * own:
            collinear.append(names[j])
        else:
            kept.append(j)
    if collinear:
        raise ValueError(
            "the model cannot separate the effects of these terms from the others (they are "
            f"collinear in these data): {', '.join(collinear)}. Drop a factor or merge levels."
        )


class _Dense:
    """A model's design as one matrix, a row per covariate pattern."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.k = x.shape[1]

    def dot(self, params: np.ndarray) -> np.ndarray:
        """X b: the linear predictor of each pattern."""
        return self.x @ params

    def tdot(self, values: np.ndarray) -> np.ndarray:
        """X'v for one value per pattern."""
        return self.x.T @ values

    def gram(self, w: np.ndarray) -> np.ndarray:
        """X'WX, with W the diagonal of the weights ``w`` (one per pattern)."""
        return self.x.T @ (w[:, None] * self.x)

    def scores(self, residuals: sparse.csr_array) -> np.ndarray:
        """R X: per cluster, its residuals (a clusters x patterns matrix) times the covariates."""
        return residuals @ self.x


class _Blocks:
    """A model's design in two blocks, for many patterns and few combinations of factor levels
    (a continuous exposure has about one pattern per value).

    The ``fixed`` columns (the intercept and the factors' indicators) take one value per
    combination of factor levels: ``rows`` holds them for each combination and ``group`` gives
    each pattern's combination. The ``free`` columns (numeric covariates) vary from pattern to
    pattern: ``values``. Every product with the fixed columns is taken over sums per
    combination, so the cost grows with the patterns times the few free columns, not times the
    square of all columns, and no matrix of all columns for every pattern is built.
    """

    def __init__(self, group: np.ndarray, fixed: np.ndarray, rows: np.ndarray, free: np.ndarray,
                 values: np.ndarray) -> None:
        self.group, self.fixed, self.rows = group, fixed, rows
        self.free, self.values = free, values
        self.k = fixed.size + free.size

    def _per_combination(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.group, weights=values, minlength=self.rows.shape[0])

    def dot(self, params: np.ndarray) -> np.ndarray:
        return self.values @ params[self.free] + (self.rows @ params[self.fixed])[self.group]

    def tdot(self, values: np.ndarray) -> np.ndarray:
        out = np.empty(self.k)
        out[self.free] = self.values.T @ values
        out[self.fixed] = self.rows.T @ self._per_combination(values)
        return out

    def gram(self, w: np.ndarray) -> np.ndarray:
        fixed, free, rows = self.fixed, self.free, self.rows
        cross = np.column_stack([self._per_combination(w * column) for column in self.values.T])
        gram = np.empty((self.k, self.k))
        gram[np.ix_(fixed, fixed)] = rows.T @ (self._per_combination(w)[:, None] * rows)
        gram[np.ix_(fixed, free)] = rows.T @ cross
        gram[np.ix_(free, fixed)] = gram[np.ix_(fixed, free)].T
        gram[np.ix_(free, free)] = self.values.T @ (w[:, None] * self.values)
        return gram

    def scores(self, residuals: sparse.csr_array) -> np.ndarray:
        # The fixed columns' part from the residuals summed per cluster and combination, which
        # has far fewer entries than R (R X would read a row of X for each entry of R). Summing
        # the duplicates works in place, so it gets copies of the arrays R shares with others.
        scores = np.empty((residuals.shape[0], self.k))
        scores[:, self.free] = residuals @ self.values
        by_combination = sparse.csr_array(
            (residuals.data.copy(), self.group[residuals.indices], residuals.indptr.copy()),
            shape=(residuals.shape[0], self.rows.shape[0]))
        by_combination.sum_duplicates()
        scores[:, self.fixed] = by_combination @ self.rows
        return scores


def _model_design(
    patterns: pl.DataFrame, *, numeric: Sequence[str], factors: Sequence[str], trials: str,
    reference: Mapping[str, Any]
) -> tuple[_Dense | _Blocks, list[str], dict[str, str]]:
    """The design of :func:`_design` on the patterns, by blocks when they are many."""
    combination, first = _patterns(patterns, factors)
    if (not numeric or len(numeric) > _BLOCKS_MAX_FREE
            or patterns.height < _BLOCKS_PER_COMBINATION * first.size):
        x, names, references = _design(patterns, numeric=numeric, factors=factors, trials=trials,
                                       reference=reference)
        return _Dense(x), names, references
    trials_per_combination = np.bincount(combination, weights=patterns.get_column(trials).to_numpy())
    combinations = patterns[first].with_columns(pl.Series(trials, trials_per_combination))
    x, names, references = _design(combinations, numeric=numeric, factors=factors, trials=trials,
                                   reference=reference)
    free = np.arange(1, 1 + len(numeric))  # the intercept, the numeric columns, the indicators
    fixed = np.setdiff1d(np.arange(len(names)), free)
    values = patterns.select(pl.col(numeric).cast(pl.Float64)).to_numpy()
    return (_Blocks(combination, fixed, x[:, fixed], free, np.ascontiguousarray(values)), names,
            references)


def _log_likelihood(eta: np.ndarray, s: np.ndarray, n: np.ndarray) -> float:
    """Binomial log-likelihood (without the constant binomial coefficients) at log-odds eta."""
    # log(1 + e^eta), written so that it neither overflows nor loses digits for large |eta|
    softplus = np.abs(eta)
    np.negative(softplus, out=softplus)
    np.exp(softplus, out=softplus)
    np.log1p(softplus, out=softplus)
    softplus += np.maximum(eta, 0.0)
    return float(s @ eta - n @ softplus)


def _fit_logit(x: _Dense | _Blocks, s: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Coefficients of the binomial GLM with response (successes, failures), by Newton-Raphson.

    The log-likelihood of a logistic regression is concave, so Newton's method with step halving
    (never accept a step that lowers it) converges from the intercept-only start; it is stopped
    when the log-likelihood no longer changes in its 14th significant digit, which leaves the
    coefficients exact to far more digits than any report shows. (This is the iteration of
    statsmodels' IRLS, with a Cholesky solve instead of its SVD: the same estimates, several times
    faster on millions of cells.)
    """
    params = np.zeros(x.k)
    total_s, total_n = float(s.sum()), float(n.sum())
    params[0] = np.log((total_s + 0.5) / (total_n - total_s + 0.5))  # column 0 is the intercept
    eta = x.dot(params)
    loglik = _log_likelihood(eta, s, n)
    converged = False
    for _ in range(200):
        mean = special.expit(eta)
        gradient = x.tdot(s - n * mean)
        hessian = x.gram(n * mean * (1.0 - mean))
        try:
            step = linalg.solve(hessian, gradient, assume_a="pos")
        except (linalg.LinAlgError, ValueError):  # near-singular under perfect prediction
            step = np.linalg.lstsq(hessian, gradient, rcond=None)[0]
        size = 1.0
        while True:
            candidate = params + size * step
            candidate_eta = x.dot(candidate)
            candidate_loglik = _log_likelihood(candidate_eta, s, n)
            if candidate_loglik >= loglik - 1e-12 * abs(loglik) or size < 1e-8:
                break
            size /= 2.0
        change = candidate_loglik - loglik
        params, eta, loglik = candidate, candidate_eta, candidate_loglik
        if abs(change) <= 1e-14 * (abs(loglik) + 1.0):
            converged = True
            break
    if not converged or not np.all(np.isfinite(params)):
        raise ValueError("the logistic regression did not converge")
    mean = special.expit(eta)
    # Fitted probabilities of exactly 0 or 1 mean some cases are perfectly predicted (e.g. a
    # factor level whose cases were all enforced): the coefficients of those terms run off to
    # infinity and their estimates mean nothing, though the other coefficients are still usable.
    boundary = (mean < _SEPARATION_TOLERANCE) | (mean > 1.0 - _SEPARATION_TOLERANCE)
    if boundary.any():
        warnings.warn(
            f"perfect prediction: {int(boundary.sum())} cell(s) have fitted probabilities of 0 "
            "or 1, so the coefficients that single them out (often a factor level whose cases "
            "all had the same outcome) are not identified; merge sparse levels",
            RuntimeWarning,
            stacklevel=4,
        )
    return params


def _fit_least_squares(
    x: _Dense | _Blocks, s: np.ndarray, n: np.ndarray, gram: np.ndarray
) -> np.ndarray:
    """Least squares of the rows' 0/1 outcomes, from the cells: solves X'N X b = X's."""
    # The normal equations are cheap for many cells and few terms; one step of iterative
    # refinement brings the solution to the precision of a QR fit on the rows.
    factor = linalg.cho_factor(gram)
    params = linalg.cho_solve(factor, x.tdot(s))
    params += linalg.cho_solve(factor, x.tdot(s - n * x.dot(params)))
    return params


def grouped_glm(
    frame: Frame,
    *,
    successes: str,
    trials: str,
    numeric: Sequence[str] = (),
    factors: Sequence[str] = (),
    cluster: str | None = None,
    n_rows: int | None = None,
    family: Family = "logit",
    robust: bool = False,
    reference: Mapping[str, Any] | None = None,
) -> GroupedFit:
    """Fit a logistic or linear probability model on cells, exactly as on the rows.

    Each row of ``frame`` is a cell: ``trials`` cases that share the values of the model's
    variables, ``successes`` of which had the outcome (e.g. were enforced). The model is the one
    you would fit on the cases themselves, and it gives the same coefficients and standard errors:

    * ``family="logit"``: logistic regression, fitted as a binomial GLM with response
      (successes, failures);
    * ``family="linear"``: linear probability model (ordinary least squares of the 0/1 outcome),
      which is weighted least squares on the cell proportions with the cell sizes as weights.
      Its model-based variance uses the residual sum of squares of the rows, which the counts
      determine because the outcome is 0/1.

    The design is an intercept, the ``numeric`` columns as they are, and for each of the
    ``factors`` one indicator per level except the reference level ("treatment coding"): each
    factor coefficient compares its level with the reference level, holding the other variables
    fixed. That is what "controlling for" a factor means here. The reference level is the most
    common level (by rows) unless given in ``reference``; levels are taken in sorted order (the
    declared order for an Enum column), ties for most common going to the first.

    Standard errors are model-based, or with ``cluster`` cluster-robust (cases of one account are
    not independent, so the account is the unit of independent information): the sandwich
    ``B M B`` with ``B`` the inverse Hessian and ``M`` the outer product of the per-cluster sums of
    case scores, times ``G/(G-1) * (N-1)/(N-K)`` (G clusters, N rows, K coefficients). A case's
    score is its covariates times its residual, and the covariates are the same for all cases of
    a cell, so a cell's score is its covariates times the sum of its residuals; this is exactly
    statsmodels' ``cov_type="cluster"`` on the expanded rows. Each cell must lie within one
    cluster (the cluster column is part of the cell key). ``robust=True`` without ``cluster``
    gives heteroskedasticity-robust (HC1) errors, also equal to the row-level ones.

    Parameters
    ----------
    frame : polars or pandas DataFrame, or polars LazyFrame
        One row per cell.
    successes : str
        Column with the number of cases with the outcome in each cell.
    trials : str
        Column with the number of cases in each cell. Cells with none are ignored.
    numeric : sequence of str, optional
        Columns entering the model as numbers (one coefficient each).
    factors : sequence of str, optional
        Categorical columns entering the model as indicator variables.
    cluster : str, optional
        Column identifying the cluster (e.g. ``account_id``) of each cell.
    n_rows : int, optional
        Number of rows the cells stand for, used in the small-sample factors and the linear
        model's residual variance. Defaults to the total of ``trials``.
    family : {"logit", "linear"}, default "logit"
        Logistic regression or linear probability model.
    robust : bool, default False
        Heteroskedasticity-robust (HC1) standard errors when no ``cluster`` is given.
    reference : mapping, optional
        Reference level for some factors, e.g. ``{"election_level": "federal"}``.

    Returns
    -------
    GroupedFit
        Coefficients, covariance and sizes; ``fit.estimate(name)`` reports one coefficient.

    Examples
    --------
    UC Berkeley 1973 admissions of two departments: women were admitted more often than men
    within each department.

    >>> import polars as pl
    >>> cells = pl.DataFrame({
    ...     "gender": ["M", "F", "M", "F"], "dept": ["A", "A", "B", "B"],
    ...     "admitted": [512, 89, 353, 17], "applied": [825, 108, 560, 25]})
    >>> fit = grouped_glm(cells, successes="admitted", trials="applied", factors=["gender", "dept"])
    >>> fit.names
    ('Intercept', 'gender[F]', 'dept[B]')
    >>> round(fit.estimate("gender[F]").estimate, 3)
    2.362
    """
    if family not in ("logit", "linear"):
        raise ValueError(f"family must be 'logit' or 'linear', got {family!r}")
    numeric = _as_names(numeric, "numeric")
    factors = _as_names(factors, "factors")
    reference = dict(reference or {})
    unknown = [factor for factor in reference if factor not in factors]
    if unknown:
        raise ValueError(f"reference levels given for {unknown}, which are not among the factors")
    lf = _as_lazy(frame)
    schema = lf.collect_schema()
    used = _unique([successes, trials, *numeric, *factors, cluster])
    _check_columns(schema, used)
    _check_not_null(lf, used)
    for column in (successes, trials, *numeric):
        _check_numeric(schema, column, "column")
    if cluster is not None and schema[cluster].is_nested():
        # A cell must belong to one cluster; a list of accounts per cell means the cells were
        # built without the cluster in their key, and the row-level scores cannot be recovered.
        raise ValueError(
            f"cluster column {cluster!r} holds {schema[cluster]} values: each cell must lie "
            "within one cluster, so aggregate with the cluster in the cell key"
        )
    cells = lf.select(used).collect()
    return _fit_cells(
        cells,
        successes=successes,
        trials=trials,
        numeric=numeric,
        factors=factors,
        cluster=cluster,
        n_rows=n_rows,
        family=family,
        robust=robust,
        reference=reference,
    )


def _codes(column: pl.Series) -> np.ndarray:
    """Codes 0..K-1 of a column's distinct values, in their sort order (as whole numbers of any
    width: small columns keep small integers).

    The codes depend only on the set of values, never on the order of the rows, so everything
    summed in code order below is reproducible to the last bit whatever order the cells come in.
    """
    if column.dtype == pl.Boolean:
        return column.to_numpy().view(np.uint8) if not column.has_nulls() else (
            column.cast(pl.Int64).to_numpy())
    if isinstance(column.dtype, pl.Enum):
        # The categories are fixed by the type, so their numbers do not depend on the rows.
        return _dense(column.to_physical().to_numpy())
    if column.dtype.is_integer() and column.len() and column.max() - column.min() < 10_000_000:
        lowest = column.min()
        values = column.to_numpy()
        return _dense(values if lowest == 0 and values.dtype != np.uint64
                      else values.astype(np.int64) - lowest)
    if column.dtype == pl.Categorical:
        column = column.cast(pl.String)  # sort by the text, not by the order categories appeared
    if column.dtype == pl.String and column.n_unique() <= 1_000:
        # Few levels (policy, severity band): number the sorted levels, then look each row up.
        levels = column.unique().sort()
        return column.cast(pl.Enum(levels.to_list())).to_physical().to_numpy()
    return column.rank("dense").cast(pl.Int64).to_numpy() - 1


def _dense(values: np.ndarray) -> np.ndarray:
    """Whole numbers 0..M renumbered 0..K-1 in their order, skipping the values absent (the
    numbers themselves when none is absent)."""
    present = np.bincount(values) > 0
    if present.all():
        return values
    return (np.cumsum(present) - 1)[values]


def _patterns(cells: pl.DataFrame, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Index of each cell's covariate pattern, and one cell of each pattern, in the sort order
    of the patterns (the model's columns compared one after the other)."""
    if not columns:
        return np.zeros(cells.height, dtype=np.int64), np.zeros(1, dtype=np.int64)
    # A continuous column (e.g. log10 spend) has about one value per cell: it is sorted on as it
    # is, rather than first numbered by a sort of its own.
    series = [cells.get_column(column) for column in columns]
    codes = [s.to_numpy() if s.dtype.is_float() else _codes(s) for s in series]
    keys = _packed(codes)
    if len(keys) == 1 and keys[0].dtype == np.int64:
        key = keys[0]
        if int(key.max()) + 1 <= max(_COUNTING_PER_CELL * key.size, _COUNTING_LIMIT):
            pattern = _dense(key)
            first = np.empty(int(pattern.max()) + 1, dtype=np.int64)
            first[pattern] = np.arange(key.size)  # any row of a pattern stands for all of them
            return pattern, first
    # Sort the cells by the keys, stably: the first cell of each pattern stands for it.
    names = [f"key{i}" for i in range(len(keys))]
    order = (pl.DataFrame(dict(zip(names, keys, strict=True)))
             .select(pl.arg_sort_by(names, maintain_order=True)).to_series().to_numpy())
    starts = np.zeros(order.size, dtype=bool)
    starts[0] = True
    for key in keys:
        ordered = key[order]
        starts[1:] |= ordered[1:] != ordered[:-1]
    numbers = np.cumsum(starts)
    numbers -= 1
    pattern = np.empty(order.size, dtype=np.int64)
    pattern[order] = numbers
    return pattern, order[starts]


def _packed(codes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The columns of codes (whole numbers from 0) packed into as few int64 keys as keep their
    order, each run of neighbouring integer columns into one while its combinations fit in 62
    bits; float columns are kept as they are."""
    keys: list[np.ndarray] = []
    combinations = math.inf
    for code in codes:
        if code.dtype.kind == "f":
            keys.append(code)
            combinations = math.inf
            continue
        size = float(code.max()) + 1
        if combinations * size < _PACKED_LIMIT:
            keys[-1] *= int(size)  # in place: the first code of a key is a copy (below)
            keys[-1] += code
            combinations *= size
        else:
            keys.append(code.astype(np.int64))
            combinations = size
    return keys


def _pair_sums(cluster: np.ndarray, key: np.ndarray, shape: tuple[int, int],
               values: Sequence[np.ndarray]) -> list[sparse.csr_array]:
    """Each array of ``values`` summed per (cluster, key) pair: matrices of clusters x keys.

    All the matrices share one layout: an entry for every pair with at least one row (even if
    its sums are 0), keys in order within each cluster, sums in floating point. Sums of whole
    numbers (counts of cases) are exact below 2^53, so they do not depend on the order of the
    rows.
    The arrays are summed two at a time, as the real and imaginary parts of one complex array,
    which halves the sorting; the matrices share their index arrays, so none may be changed in
    place.
    """
    if shape[0] * shape[1] <= cluster.size:
        # Few keys per cluster (e.g. one stratum): count on the dense grid of pairs, no sort.
        pair = cluster.astype(np.int64) * shape[1] + key
        present = np.flatnonzero(np.bincount(pair, minlength=shape[0] * shape[1]))
        rows, columns = np.divmod(present, shape[1])
        indptr = np.zeros(shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
        return [sparse.csr_array((np.bincount(pair, weights=value, minlength=shape[0] * shape[1])
                                  [present], columns, indptr), shape=shape) for value in values]
    # Cells stored in account order (as the cell tables are) already have each cluster's rows
    # together: the compressed layout is then built directly, without reordering the rows. The
    # rows of each cluster keep their order either way, so the sums are the same to the last bit.
    indptr = None
    if cluster.size and bool((cluster[1:] >= cluster[:-1]).all()):
        indptr = np.zeros(shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(cluster, minlength=shape[0]), out=indptr[1:])
    matrices = []
    for i in range(0, len(values), 2):
        both = values[i].astype(np.complex128)
        if i + 1 < len(values):
            both.imag = values[i + 1]
        if indptr is None:
            matrix = sparse.coo_array((both, (cluster, key)), shape=shape).tocsr()
        else:  # copies: summing the duplicates below sorts the index arrays in place
            matrix = sparse.csr_array((both, key.copy(), indptr.copy()), shape=shape)
        matrix.sum_duplicates()  # canonical: keys sorted within each cluster
        parts = [matrix.data.real, matrix.data.imag][:len(values) - i]
        matrices += [sparse.csr_array((np.ascontiguousarray(part), matrix.indices,
                                       matrix.indptr), shape=shape) for part in parts]
    return matrices


def _cluster_totals(cluster: np.ndarray, pattern: np.ndarray, n_patterns: int, s: np.ndarray,
                    n: np.ndarray) -> tuple[sparse.csr_array, sparse.csr_array]:
    """Per cluster and pattern, the cases' outcomes and the cases (two clusters x patterns
    matrices of one layout), laid out in (cluster, pattern) order: see :func:`_pair_sums`."""
    successes, trials = _pair_sums(cluster, pattern, (int(cluster.max()) + 1, n_patterns), [s, n])
    return successes, trials


def _cluster_scores(successes: sparse.csr_array, trials: sparse.csr_array,
                    mean: np.ndarray) -> sparse.csr_array:
    """Per cluster and pattern, the sum of the cases' residuals y - mean (clusters x patterns).

    Cases of one cluster and one covariate pattern share their covariates and fitted mean, so
    their scores x * (y - mean) sum to the pattern's covariates times (outcomes - cases x mean):
    the cluster's score sum is this matrix times the patterns' covariates. ``successes`` and
    ``trials`` are the per (cluster, pattern) totals of :func:`_cluster_totals`.
    """
    residual = successes.data - trials.data * mean[trials.indices]
    return sparse.csr_array((residual, trials.indices, trials.indptr), shape=trials.shape)


def _meat(residuals: sparse.csr_array, x: _Dense | _Blocks) -> np.ndarray:
    """Sum over clusters of the outer product of the cluster's score sum: S'S with S = R X."""
    scores = x.scores(residuals)
    return scores.T @ scores


def _fit_cells(
    cells: pl.DataFrame,
    *,
    successes: str,
    trials: str,
    numeric: Sequence[str],
    factors: Sequence[str],
    cluster: str | None,
    n_rows: int | None,
    family: Family,
    robust: bool,
    reference: Mapping[str, Any],
    pattern_columns: Sequence[str] | None = None,
    derived: Sequence[pl.Expr] = (),
    layout: tuple[np.ndarray, np.ndarray, sparse.csr_array | None, sparse.csr_array | None]
    | None = None,
) -> GroupedFit:
    """The fit behind :func:`grouped_glm`.

    ``pattern_columns`` (default: the numeric columns and factors) are the columns that determine
    every covariate; ``derived`` are expressions adding numeric covariates computed from them
    (e.g. interactions), evaluated on the patterns only. ``layout`` hands over what a caller
    has already computed on the same cells (all with trials): the pattern of each cell and one
    cell of each pattern, as :func:`_patterns` gives them for ``pattern_columns``, and, with a
    ``cluster``, the :func:`_cluster_totals` of the cells (or None to have them computed).

    The cells are first collapsed to covariate patterns (distinct combinations of the model's
    variables): the likelihood, the model-based and the heteroskedasticity-robust variances depend
    on the data only through each pattern's cases and outcomes (the outcome is 0/1, so y^2 = y).
    Only the cluster-robust variance needs the clusters, through each cluster's sum of scores,
    which :func:`_cluster_scores` gets from (cluster, pattern) totals. No matrix of one row per
    cell is ever built, so millions of account cells cost little more than their patterns.
    """
    if layout is None:
        cells = cells.filter(pl.col(trials) > 0)
    if cells.height == 0:
        raise ValueError("no cell has any trials: there is nothing to fit")
    s_cells = cells.get_column(successes).cast(pl.Float64).to_numpy()
    n_cells = cells.get_column(trials).cast(pl.Float64).to_numpy()
    if np.any(s_cells < 0) or np.any(s_cells > n_cells):
        raise ValueError(f"{successes!r} must lie between 0 and {trials!r} in every cell")
    columns = _unique(pattern_columns if pattern_columns is not None else [*numeric, *factors])
    if layout is None:
        pattern, first, *totals = *_patterns(cells, columns), None, None
    else:
        pattern, first, *totals = layout
        if pattern.size != cells.height or np.any(n_cells <= 0):
            raise ValueError("the layout handed over does not match the cells with trials")
    s = np.bincount(pattern, weights=s_cells, minlength=first.size)
    n = np.bincount(pattern, weights=n_cells, minlength=first.size)
    patterns = cells.select(columns)[first].with_columns(*derived, pl.Series(trials, n))
    if numeric and not np.all(np.isfinite(patterns.select(numeric).cast(pl.Float64).to_numpy())):
        raise ValueError(f"numeric columns {numeric} contain infinite or NaN values")
    x, names, references = _model_design(
        patterns, numeric=numeric, factors=factors, trials=trials, reference=reference
    )
    n_total = float(n.sum()) if n_rows is None else float(n_rows)
    k = x.k
    if n_total <= k:
        raise ValueError(f"{int(n_total)} rows are too few for a model with {k} coefficients")
    # X'NX is the row-level X'X: each pattern's covariate row repeated for each of its cases.
    gram = x.gram(n)
    _check_full_rank(gram, names)

    if family == "logit":
        params = _fit_logit(x, s, n)
        mean = special.expit(x.dot(params))
        bread = np.linalg.inv(x.gram(n * mean * (1.0 - mean)))
    else:
        params = _fit_least_squares(x, s, n, gram)
        mean = x.dot(params)
        bread = np.linalg.inv(gram)
    # Sum over a pattern's cases of the squared residual (outcome is 0/1, so sum y^2 = s).
    residual_squares = s - 2.0 * mean * s + n * mean**2

    n_clusters: int | None = None
    if cluster is not None:
        if totals[0] is None:
            codes = _codes(cells.get_column(cluster))
            totals = _cluster_totals(codes, pattern, first.size, s_cells, n_cells)
        n_clusters = totals[0].shape[0]
        if n_clusters < 2:
            raise ValueError(f"cluster-robust errors need at least 2 clusters of {cluster!r}")
        meat = _meat(_cluster_scores(*totals, mean), x)
        factor = n_clusters / (n_clusters - 1.0) * (n_total - 1.0) / (n_total - k)
        cov = factor * bread @ meat @ bread
        cov_type = "cluster"
    elif robust:
        meat = x.gram(residual_squares)
        cov = n_total / (n_total - k) * bread @ meat @ bread
        cov_type = "hc1"
    elif family == "logit":
        cov = bread
        cov_type = "model"
    else:
        cov = float(residual_squares.sum()) / (n_total - k) * bread
        cov_type = "model"
    cov = (cov + cov.T) / 2.0
    return GroupedFit(
        params=params,
        cov=cov,
        names=tuple(names),
        n_rows=int(round(n_total)),
        n_cells=first.size,
        n_clusters=n_clusters,
        family=family,
        cov_type=cov_type,
        references=references,
        cluster=cluster,
    )


# ----------------------------------------------------------------------------------------------
# Designs
# ----------------------------------------------------------------------------------------------


def logistic(
    frame: Frame,
    *,
    outcome: str,
    exposure: str,
    factors: Sequence[str] = (),
    count: str | None = None,
    cluster: str | None = None,
    per: float = 1.0,
    alpha: float = 0.05,
) -> Estimate:
    """Odds ratio of an outcome per ``per`` units of a numeric exposure, like with like.

    A logistic regression of the 0/1 ``outcome`` on the numeric ``exposure`` and the categorical
    ``factors``: the odds ratio says by how much the odds of the outcome are multiplied when the
    exposure rises by ``per`` units and the factors stay the same. With ``exposure`` the base-10
    logarithm of trailing spend and ``per=1`` it is the odds ratio per tenfold spend; below 1 means
    big spenders' cases are enforced less. The model is fitted on cells (one per combination of
    exposure, factors and cluster), which gives exactly the row-level fit; see
    :func:`grouped_glm`.

    Parameters
    ----------
    frame : polars or pandas DataFrame, or polars LazyFrame
        One row per case, or cells with a ``count`` column: ``count`` cases that all have the
        cell's value of ``outcome``.
    outcome : str
        Boolean or 0/1 column (e.g. ``enforced``).
    exposure : str
        Numeric column (e.g. log10 of trailing spend).
    factors : sequence of str, optional
        Categorical columns to control for (e.g. ``policy``, ``severity_band``).
    count : str, optional
        Column with the number of cases each row stands for.
    cluster : str, optional
        Column to cluster the standard errors on (e.g. ``account_id``).
    per : float, default 1.0
        Size of the exposure step the odds ratio refers to.
    alpha : float, default 0.05
        One minus the confidence level.

    Returns
    -------
    Estimate
        Odds ratio (scale ``"OR"``), Wald interval and p-value; ``se`` is that of the log odds
        ratio; ``details`` has the coefficient, the number of cells and the reference levels.

    Examples
    --------
    >>> import polars as pl
    >>> cases = pl.DataFrame({
    ...     "log10_spend": [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0],
    ...     "enforced": [True, True, True, False, True, False, False, False]})
    >>> result = logistic(cases, outcome="enforced", exposure="log10_spend")
    >>> round(result.estimate, 4)  # odds 1/3 against 3/1
    0.1111
    """
    factors = _as_names(factors, "factors")
    if exposure in factors:
        raise ValueError(f"{exposure!r} cannot be both the exposure and a factor")
    schema = _as_lazy(frame).collect_schema()
    _check_columns(schema, [exposure])
    _check_numeric(schema, exposure, "exposure")
    keys = _unique([exposure, *factors, cluster])
    cells = _aggregate(frame, outcome=outcome, keys=keys, count=count)
    fit = _fit_cells(
        cells,
        successes=_SUCCESSES,
        trials=_TRIALS,
        numeric=[exposure],
        factors=factors,
        cluster=cluster,
        n_rows=None,
        family="logit",
        robust=False,
        reference={},
    )
    return fit.estimate(exposure, alpha=alpha, per=per, scale="OR")


def _indicator(lf: pl.LazyFrame, column: str, what: str) -> None:
    schema = lf.collect_schema()
    _check_columns(schema, [column])
    _check_zero_one(lf, schema, column, what)


def did(
    frame: Frame,
    *,
    outcome: str,
    treated: str,
    post: str,
    factors: Sequence[str] = (),
    count: str | None = None,
    cluster: str | None = None,
    alpha: float = 0.05,
) -> Estimate:
    """Difference-in-differences in the probability of an outcome.

    Did the outcome change more for the treated group (e.g. listed accounts) than for everyone
    else after the event (e.g. the listing date)? The change among the others stands in for what
    would have happened to the treated group anyway, so the estimate is (treated after - treated
    before) - (others after - others before), in probability: -0.2 means 20 percentage points less.

    It is the coefficient of ``treated x post`` in a linear probability model ``outcome ~ treated
    + post + treated:post + factors``; the factors (e.g. policy) are fixed effects, so groups are
    compared like with like. Without factors it equals the raw difference of the four group means,
    which ``details`` always reports. The key assumption (parallel trends: without the event both
    groups would have changed alike) can be checked with :func:`event_study`.

    Standard errors are clustered by ``cluster`` (e.g. ``account_id``) when given, otherwise
    heteroskedasticity-robust (HC1), because a 0/1 outcome never has constant variance.

    Parameters
    ----------
    frame : polars or pandas DataFrame, or polars LazyFrame
        One row per case, or cells with a ``count`` column.
    outcome : str
        Boolean or 0/1 column (e.g. ``enforced``).
    treated : str
        Boolean or 0/1 column: the case belongs to the treated group.
    post : str
        Boolean or 0/1 column: the case is after the event.
    factors : sequence of str, optional
        Categorical columns entered as fixed effects.
    count : str, optional
        Column with the number of cases each row stands for.
    cluster : str, optional
        Column to cluster the standard errors on.
    alpha : float, default 0.05
        One minus the confidence level.

    Returns
    -------
    Estimate
        The difference-in-differences (scale ``"probability"``) with its interval and p-value.
        ``details["group_means"]`` holds the outcome rate of ``treated_pre``, ``treated_post``,
        ``control_pre`` and ``control_post``, ``details["group_rows"]`` their sizes and
        ``details["raw_did"]`` the unadjusted difference-in-differences.

    Examples
    --------
    >>> import polars as pl
    >>> cells = pl.DataFrame({
    ...     "treated": [0, 0, 0, 0, 1, 1, 1, 1], "post": [0, 0, 1, 1, 0, 0, 1, 1],
    ...     "enforced": [1, 0, 1, 0, 1, 0, 1, 0], "n": [50, 50, 60, 40, 50, 50, 30, 70]})
    >>> result = did(cells, outcome="enforced", treated="treated", post="post", count="n")
    >>> round(result.estimate, 2)  # (0.3 - 0.5) - (0.6 - 0.5)
    -0.3
    """
    factors = _as_names(factors, "factors")
    for role, column in (("treated", treated), ("post", post)):
        if column in factors:
            raise ValueError(f"{column!r} cannot be both the {role} indicator and a factor")
    lf = _as_lazy(frame)
    _indicator(lf, treated, "treated indicator")
    _indicator(lf, post, "post indicator")
    keys = _unique([treated, post, *factors, cluster])
    cells = _aggregate(lf, outcome=outcome, keys=keys, count=count)
    interaction = f"{treated}:{post}"
    covariates = [
        pl.col(treated).cast(pl.Float64),
        pl.col(post).cast(pl.Float64),
        (pl.col(treated).cast(pl.Float64) * pl.col(post).cast(pl.Float64)).alias(interaction),
    ]

    groups = (
        cells.group_by([treated, post])
        .agg(pl.col(_SUCCESSES).sum(), pl.col(_TRIALS).sum())
        .sort([treated, post])
    )
    means: dict[str, float] = {}
    rows: dict[str, int] = {}
    for is_treated, is_post, successes, trials in groups.iter_rows():
        label = f"{'treated' if is_treated else 'control'}_{'post' if is_post else 'pre'}"
        means[label] = successes / trials
        rows[label] = int(trials)
    missing = [
        label
        for label in ("treated_pre", "treated_post", "control_pre", "control_post")
        if rows.get(label, 0) == 0
    ]
    if missing:
        raise ValueError(f"no cases in group(s) {', '.join(missing)}: a DiD needs all four")
    raw_did = (means["treated_post"] - means["treated_pre"]) - (
        means["control_post"] - means["control_pre"]
    )

    fit = _fit_cells(
        cells,
        successes=_SUCCESSES,
        trials=_TRIALS,
        numeric=[treated, post, interaction],
        factors=factors,
        cluster=cluster,
        n_rows=None,
        family="linear",
        robust=True,
        reference={},
        pattern_columns=[treated, post, *factors],
        derived=covariates,
    )
    result = fit.estimate(interaction, alpha=alpha, scale="probability")
    details = {
        **result.details,
        "group_means": {label: means[label] for label in sorted(means)},
        "group_rows": {label: rows[label] for label in sorted(rows)},
        "raw_did": raw_did,
    }
    return Estimate(
        estimate=result.estimate,
        ci_low=result.ci_low,
        ci_high=result.ci_high,
        p_value=result.p_value,
        scale=result.scale,
        n=result.n,
        se=result.se,
        method=f"difference-in-differences, {fit.method}",
        n_clusters=result.n_clusters,
        details=details,
    )


def event_study(
    frame: Frame,
    *,
    outcome: str,
    treated: str,
    event_time: str,
    factors: Sequence[str] = (),
    count: str | None = None,
    cluster: str | None = None,
    reference: int = -1,
    alpha: float = 0.05,
) -> pl.DataFrame:
    """Treated-vs-control gap in each period around an event, relative to a reference period.

    A difference-in-differences per period: for every ``event_time`` k (e.g. months since the
    listing date, negative before it) the coefficient of ``treated x (event_time == k)`` in the
    linear probability model ``outcome ~ treated + period dummies + treated x period dummies +
    factors``. It is how much the treated group's outcome rate moved relative to the others between
    the ``reference`` period (by default the last period before the event) and period k. Before the
    event these should be near zero if the two groups were on parallel trends, which is what the
    difference-in-differences of :func:`did` relies on; after it they show how an effect unfolds.

    Standard errors are clustered by ``cluster`` when given, otherwise heteroskedasticity-robust
    (HC1). Each period needs cases of both groups.

    Parameters
    ----------
    frame : polars or pandas DataFrame, or polars LazyFrame
        One row per case, or cells with a ``count`` column.
    outcome : str
        Boolean or 0/1 column.
    treated : str
        Boolean or 0/1 column: the case belongs to the treated group.
    event_time : str
        Integer column: the period relative to the event.
    factors : sequence of str, optional
        Categorical columns entered as fixed effects.
    count : str, optional
        Column with the number of cases each row stands for.
    cluster : str, optional
        Column to cluster the standard errors on.
    reference : int, default -1
        The period everything is compared with; its row has estimate 0 and no p-value.
    alpha : float, default 0.05
        One minus the confidence level.

    Returns
    -------
    polars.DataFrame
        One row per period, sorted by ``event_time``: ``event_time``, ``estimate`` (difference in
        probability), ``se``, ``ci_low``, ``ci_high``, ``p_value``, ``reference`` (True for the
        reference period), ``n_treated`` and ``n_control`` (cases in that period).

    Examples
    --------
    >>> import polars as pl
    >>> cells = pl.DataFrame({
    ...     "treated": [0, 0, 0, 0, 1, 1, 1, 1], "month": [-1, -1, 0, 0, -1, -1, 0, 0],
    ...     "enforced": [1, 0, 1, 0, 1, 0, 1, 0], "n": [50, 50, 60, 40, 50, 50, 30, 70]})
    >>> table = event_study(cells, outcome="enforced", treated="treated", event_time="month",
    ...                     count="n")
    >>> table.get_column("estimate").round(2).to_list()
    [0.0, -0.3]
    """
    factors = _as_names(factors, "factors")
    for role, column in (("treated", treated), ("event time", event_time)):
        if column in factors:
            raise ValueError(f"{column!r} cannot be both the {role} column and a factor")
    lf = _as_lazy(frame)
    _indicator(lf, treated, "treated indicator")
    schema = lf.collect_schema()
    _check_columns(schema, [event_time])
    if not schema[event_time].is_integer():
        raise ValueError(
            f"event time {event_time!r} must be an integer period, but it has type "
            f"{schema[event_time]}"
        )
    keys = _unique([treated, event_time, *factors, cluster])
    cells = _aggregate(lf, outcome=outcome, keys=keys, count=count)
    is_treated = pl.col(treated).cast(pl.Float64)

    counts = (
        cells.group_by(event_time)
        .agg(
            pl.col(_TRIALS).filter(is_treated == 1.0).sum().alias("n_treated"),
            pl.col(_TRIALS).filter(is_treated == 0.0).sum().alias("n_control"),
        )
        .sort(event_time)
    )
    periods = counts.get_column(event_time).to_list()
    if reference not in periods:
        raise ValueError(f"reference period {reference} does not occur; periods are {periods}")
    empty = counts.filter((pl.col("n_treated") == 0) | (pl.col("n_control") == 0))
    if empty.height:
        raise ValueError(
            "periods without cases of both groups cannot be compared: "
            f"{empty.get_column(event_time).to_list()}; drop or merge them"
        )

    period_terms: list[str] = []
    gap_terms: dict[int, str] = {}
    dummies = []
    for period in periods:
        if period == reference:
            continue
        is_period = (pl.col(event_time) == period).cast(pl.Float64)
        period_name = f"{event_time}[{period}]"
        gap_name = f"{treated}:{event_time}[{period}]"
        dummies += [is_period.alias(period_name), (is_treated * is_period).alias(gap_name)]
        period_terms.append(period_name)
        gap_terms[period] = gap_name
    fit = _fit_cells(
        cells,
        successes=_SUCCESSES,
        trials=_TRIALS,
        numeric=[treated, *period_terms, *gap_terms.values()],
        factors=factors,
        cluster=cluster,
        n_rows=None,
        family="linear",
        robust=True,
        reference={},
        pattern_columns=[treated, event_time, *factors],
        derived=[is_treated, *dummies],
    )
    z_crit = float(stats.norm.ppf(1.0 - alpha / 2.0))
    records = []
    for period in periods:
        if period == reference:
            records.append((period, 0.0, 0.0, 0.0, 0.0, None, True))
            continue
        coefficient = fit.coefficient(gap_terms[period])
        se = fit.se(gap_terms[period])
        p_value = float(2.0 * stats.norm.sf(abs(coefficient / se))) if se > 0 else None
        records.append(
            (
                period,
                coefficient,
                se,
                coefficient - z_crit * se,
                coefficient + z_crit * se,
                p_value,
                False,
            )
        )
    table = pl.DataFrame(
        records,
        schema={
            event_time: pl.Int64,
            "estimate": pl.Float64,
            "se": pl.Float64,
            "ci_low": pl.Float64,
            "ci_high": pl.Float64,
            "p_value": pl.Float64,
            "reference": pl.Boolean,
        },
        orient="row",
    )
    return (
        table.join(counts.with_columns(pl.col(event_time).cast(pl.Int64)), on=event_time)
        .with_columns(pl.col("n_treated", "n_control").cast(pl.Int64))
        .rename({event_time: "event_time"})
        .sort("event_time")
    )
