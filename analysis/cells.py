"""Cells: the attributed cases aggregated to the sufficient statistics each test needs.

The heavy work (join, window, group-by) happens in polars; only these small tables reach
statsmodels. A grouped binomial model on cells gives exactly the coefficients and standard errors
of the row-level model (see ``tests/stats/test_regression.py``), provided every covariate of the
model is constant within a cell and, for SEs clustered by account, the account is part of the key.
That is why both tables below are keyed by ``account_id``.
"""

from __future__ import annotations

import polars as pl

#: Key of the account cells: everything the stratified and DiD tests condition on.
ACCOUNT_KEY = ["account_id", "advertiser_account", "policy", "severity_band", "listed",
               "ever_listed", "post", "is_advertiser", "spend_tier", "enforced"]
#: Key of the spend cells: trailing spend is constant for one advertiser on one day.
SPEND_KEY = ["account_id", "flag_date", "policy", "severity_band", "listed", "enforced"]


def with_post(cases: pl.LazyFrame) -> pl.LazyFrame:
    """``post``: the case was flagged on or after the directive date (false without a watchlist)."""
    return cases.with_columns(
        post=(pl.col("flag_date") >= pl.col("directive_date")).fill_null(False))


def account_cells(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Cases counted per account × policy × severity band × listing × spend tier × outcome.

    Returns a frame with the columns of :data:`ACCOUNT_KEY` and ``n`` (number of cases), sorted.
    """
    return (with_post(cases.lazy()).group_by(ACCOUNT_KEY).agg(pl.len().alias("n"))
            .sort(ACCOUNT_KEY).collect())


def spend_cells(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Advertiser cases counted per account × flag date × policy × severity band × listing × outcome.

    Carries ``trailing_spend`` (constant within a cell) and ``log10_spend``. Only cases with
    trailing spend above zero: the log of zero spend is undefined, and the question is about
    how much advertisers spend, not whether they advertise (that is ``advertiser_adjusted``).
    """
    return (
        cases.lazy().filter(pl.col("is_advertiser"))
        .group_by(SPEND_KEY)
        .agg(pl.len().alias("n"), pl.col("trailing_spend").first())
        .with_columns(log10_spend=pl.col("trailing_spend").log10())
        .sort(SPEND_KEY).collect()
    )


#: Key of the appeal cells: enforced cases that were appealed, by whether the appeal reversed them.
APPEAL_KEY = ["account_id", "policy", "listed", "reversed"]
#: Key of the event-time cells: months relative to the directive date.
EVENT_KEY = ["account_id", "ever_listed", "event_month", "policy", "severity_band", "enforced"]


def appeal_cells(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Enforced, appealed cases counted per account × policy × listing × reversal."""
    return (cases.lazy().filter(pl.col("enforced") & pl.col("appealed"))
            .group_by(APPEAL_KEY).agg(pl.len().alias("n")).sort(APPEAL_KEY).collect())


def event_cells(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Cases counted per account × calendar month relative to the directive (month 0 holds it)."""
    month = pl.col("flag_date").dt.year() * 12 + pl.col("flag_date").dt.month()
    directive = pl.col("directive_date").dt.year() * 12 + pl.col("directive_date").dt.month()
    return (cases.lazy().filter(pl.col("directive_date").is_not_null())
            .with_columns(event_month=(month - directive).cast(pl.Int32))
            .group_by(EVENT_KEY).agg(pl.len().alias("n")).sort(EVENT_KEY).collect())
