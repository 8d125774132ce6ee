"""Attribution: what each enforcement case looked like at the moment it was flagged.

For every case this stage adds the trailing ad spend of the advertiser behind its account, its
spend tier, whether its account was on a watchlist at flag time, and its outcome flags. It also
keeps the **coverage ledger**: every enforcement row is either analysed or excluded with a reason;
nothing is dropped silently.

Trailing spend (DESIGN.md): the spend of the account's advertiser in the ``window_days`` days
before the flag date — days ``flag_date - window_days`` to ``flag_date - 1`` — with each spend
period's amount spread evenly over its days. It is computed from each advertiser's cumulative
spend curve with two as-of joins (no cross join of cases and periods), so it scales to 100M cases.
The spend table covers the days from its first ``period_start`` to its last ``period_end``; a case
whose window leaves that span has unknown spend and is excluded (reason
``spend window outside spend coverage``), never treated as zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl

from analysis.config import SEVERITY_BANDS, SPEND_TIERS, WINDOW_DAYS
from analysis.load import Dataset
from analysis.schema import DataError, Problem

OUTSIDE_COVERAGE = "spend window outside spend coverage"


@dataclass(frozen=True)
class CoverageLedger:
    """Where every enforcement row went: analysed, or excluded with a reason."""

    enforcement_rows: int
    analysed: int
    excluded: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        accounted = self.analysed + sum(self.excluded.values())
        if accounted != self.enforcement_rows:  # an internal invariant, not a user error
            raise AssertionError(f"coverage ledger does not add up: {accounted} != "
                                 f"{self.enforcement_rows}")

    def to_dict(self) -> dict:
        return {"enforcement_rows": self.enforcement_rows, "analysed": self.analysed,
                "excluded": dict(sorted(self.excluded.items()))}


@dataclass(frozen=True)
class SpendCoverage:
    """The days the spend table speaks for, and the unit its amounts are in."""

    first_day: date | None
    last_day: date | None
    currency: str


def spend_in_usd(dataset: Dataset) -> tuple[pl.LazyFrame, str]:
    """Ad spend with one amount column ``spend_amount`` in a single currency.

    With an ``fx_rates`` table every row is converted to USD; with one currency and no rates the
    amounts stay in that currency (the report says which).
    """
    spend = dataset["ad_spend"]
    if "fx_rates" in dataset:
        rates = dataset["fx_rates"].select("currency", "rate_to_usd")
        return (spend.join(rates, on="currency", how="left")
                .with_columns(spend_amount=pl.col("spend") * pl.col("rate_to_usd"))), "USD"
    currencies = spend.select(pl.col("currency").unique().sort()).collect().to_series().to_list()
    currency = currencies[0] if currencies else "USD"
    return spend.with_columns(spend_amount=pl.col("spend")), currency


def cumulative_spend_curve(spend: pl.LazyFrame) -> pl.LazyFrame:
    """Per advertiser and period: spend before the period starts, daily rate, length in days.

    The cumulative spend strictly before day ``q`` is then, for the last period starting before
    ``q``: ``spend_before + daily_rate * min(q - period_start, days)`` — an as-of join away.
    """
    days = (pl.col("period_end") - pl.col("period_start")).dt.total_days() + 1
    return (
        spend.select("advertiser_id", "period_start", "period_end", "spend_amount")
        .sort("advertiser_id", "period_start")
        .with_columns(days=days.cast(pl.Int64))
        .with_columns(
            daily_rate=pl.col("spend_amount") / pl.col("days"),
            spend_before=(pl.col("spend_amount").cum_sum() - pl.col("spend_amount"))
            .over("advertiser_id", order_by="period_start"),
        )
        .select("advertiser_id", "period_start", "days", "daily_rate", "spend_before")
    )


def spend_before(queries: pl.LazyFrame, curve: pl.LazyFrame, *, day: str, out: str) -> pl.LazyFrame:
    """Add column ``out``: each query row's advertiser's total spend on days strictly before ``day``."""
    last_day = pl.col(day) - pl.duration(days=1)
    joined = queries.with_columns(_asof_key=last_day).sort("_asof_key").join_asof(
        curve.sort("period_start"), left_on="_asof_key", right_on="period_start",
        by="advertiser_id", strategy="backward", check_sortedness=False,
    )
    elapsed = (pl.col(day) - pl.col("period_start")).dt.total_days()
    amount = pl.col("spend_before") + pl.col("daily_rate") * pl.min_horizontal(elapsed, pl.col("days"))
    return joined.with_columns(pl.when(pl.col("period_start").is_null()).then(0.0)
                               .otherwise(amount).alias(out)
                               ).drop("_asof_key", "period_start", "days", "daily_rate",
                                      "spend_before")


def trailing_spend(cases: pl.LazyFrame, spend: pl.LazyFrame, *,
                   window_days: int = WINDOW_DAYS) -> pl.LazyFrame:
    """Add ``trailing_spend`` to rows with ``advertiser_id`` and ``flag_date``.

    Rows without an advertiser get 0 (the account buys no ads). Spend on day ``d`` counts when
    ``flag_date - window_days <= d < flag_date``.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import date
    >>> spend = pl.LazyFrame({"advertiser_id": ["a"], "period_start": [date(2023, 1, 1)],
    ...                       "period_end": [date(2023, 1, 10)], "spend_amount": [100.0]})
    >>> cases = pl.LazyFrame({"advertiser_id": ["a"], "flag_date": [date(2023, 1, 6)]})
    >>> trailing_spend(cases, spend, window_days=3).collect()["trailing_spend"].item()
    30.0
    """
    curve = cumulative_spend_curve(spend)
    queries = (cases.select("advertiser_id", "flag_date").unique()
               .filter(pl.col("advertiser_id").is_not_null())
               .with_columns(_window_start=pl.col("flag_date") - pl.duration(days=window_days)))
    queries = spend_before(queries, curve, day="flag_date", out="_through_flag")
    queries = spend_before(queries, curve, day="_window_start", out="_through_start")
    queries = queries.select(
        "advertiser_id", "flag_date",
        (pl.col("_through_flag") - pl.col("_through_start")).clip(lower_bound=0.0)
        .alias("trailing_spend"),
    )
    return (cases.join(queries, on=["advertiser_id", "flag_date"], how="left",
                       nulls_equal=False, maintain_order="left")
            .with_columns(pl.col("trailing_spend").fill_null(0.0)))


def spend_coverage(spend: pl.LazyFrame, currency: str) -> SpendCoverage:
    span = spend.select(pl.col("period_start").min(), pl.col("period_end").max()).collect()
    return SpendCoverage(span["period_start"].item(), span["period_end"].item(), currency)


def severity_band(severity: pl.Expr) -> pl.Expr:
    """low / medium / high by thirds of the severity scale; ``unknown`` where severity is missing."""
    expr = pl.when(severity.is_null()).then(pl.lit("unknown"))
    for upper, label in SEVERITY_BANDS:
        expr = expr.when(severity < upper).then(pl.lit(label))
    return expr.otherwise(pl.lit(SEVERITY_BANDS[-1][1]))


def attribute(dataset: Dataset, *, window_days: int = WINDOW_DAYS) -> tuple[pl.LazyFrame, CoverageLedger]:
    """Attribute spend, listing status and outcomes to every enforcement case.

    Parameters
    ----------
    dataset : Dataset
        Loaded canonical tables (:func:`analysis.load.load`).
    window_days : int, default 90
        Length of the trailing-spend window, in days before the flag date.

    Returns
    -------
    cases : polars.LazyFrame
        One row per analysed case, columns :data:`CASE_COLUMNS` (see :data:`CASE_DOCS`),
        sorted by ``case_id``.
    ledger : CoverageLedger
        Rows analysed and rows excluded, by reason.
    """
    if window_days < 1:
        raise DataError([Problem("parameters", "window_days must be at least 1",
                                 column="window_days", value=str(window_days))])
    spend, currency = spend_in_usd(dataset)
    coverage = spend_coverage(spend, currency)
    accounts = dataset["accounts"].select("account_id", "advertiser_id")
    advertisers = dataset["advertisers"].select("advertiser_id", "parent_name")

    enforcement = dataset["enforcement"]
    end_of_data = enforcement.select(
        pl.max_horizontal(pl.col("flagged_at").max(), pl.col("decided_at").max())).collect().item()

    cases = (
        enforcement.join(accounts, on="account_id", how="left", maintain_order="left")
        .join(advertisers, on="advertiser_id", how="left", maintain_order="left")
        .with_columns(flag_date=pl.col("flagged_at").dt.date())
    )
    cases = trailing_spend(cases, spend, window_days=window_days)

    window_start = pl.col("flag_date") - pl.duration(days=window_days)
    inside = (
        (window_start >= pl.lit(coverage.first_day)) & (pl.col("flag_date") - pl.duration(days=1)
                                                         <= pl.lit(coverage.last_day))
        if coverage.first_day is not None else pl.lit(False)
    )
    cases = cases.with_columns(
        exclusion=pl.when(~inside).then(pl.lit(OUTSIDE_COVERAGE)).otherwise(pl.lit(None, pl.String))
    )
    cases = _listing(cases, dataset)
    decided = pl.col("decided_at").is_not_null()
    cases = cases.with_columns(
        severity_band=severity_band(pl.col("severity")),
        enforced=pl.col("action") != "no_action",
        decided=decided,
        decision_hours=(pl.when(decided).then(pl.col("decided_at")).otherwise(pl.lit(end_of_data))
                        - pl.col("flagged_at")).dt.total_seconds(fractional=True) / 3600.0,
        appealed=pl.col("appealed").fill_null(False),
        reversed=pl.col("appeal_outcome").fill_null("") == "reversed",
        is_advertiser=pl.col("trailing_spend") > 0,
        advertiser_account=pl.col("advertiser_id").is_not_null(),
    )

    counted = cases.group_by("exclusion").agg(pl.len().alias("rows")).collect()
    excluded = {r: n for r, n in counted.iter_rows() if r is not None}
    for reason, n in dataset.excluded.items():  # removed by the source adapter, before us
        excluded[reason] = excluded.get(reason, 0) + n
    ledger = CoverageLedger(
        enforcement_rows=int(counted["rows"].sum()) + sum(dataset.excluded.values()),
        analysed=int(counted.filter(pl.col("exclusion").is_null())["rows"].sum()),
        excluded=excluded,
    )
    analysed = cases.filter(pl.col("exclusion").is_null()).drop("exclusion")
    analysed = _spend_tiers(analysed)
    return analysed.select(CASE_COLUMNS).sort("case_id"), ledger


#: The columns of the attributed "cases" frame and what each means.
CASE_DOCS = {
    "case_id": "the enforcement case",
    "account_id": "the account whose content was flagged",
    "advertiser_id": "the advertiser behind the account (null: buys no ads)",
    "parent_name": "the advertiser's owner, if given",
    "advertiser_account": "the account has an advertiser (whether or not it spent in the window)",
    "policy": "the violation category",
    "severity": "severity in [0, 1], if given",
    "severity_band": "low (< 1/3), medium (< 2/3), high, or unknown",
    "detection": "how the content was flagged, if given",
    "flagged_at": "when it was flagged (UTC)",
    "flag_date": "the UTC date of flagged_at",
    "action": "removed, restricted or no_action",
    "enforced": "action is not no_action",
    "decided": "decided_at is known",
    "decision_hours": "hours to the decision; if undecided, hours to the end of the data (censored)",
    "appealed": "the decision was appealed",
    "reversed": "the appeal reversed the decision",
    "trailing_spend": "advertiser's spend in the window before the flag date (0: no advertiser)",
    "is_advertiser": "trailing_spend > 0",
    "spend_tier": "0 no spend; 1..4 quartiles of trailing spend among advertiser cases",
    "listed": "the account was on a watchlist at flag time",
    "ever_listed": "the account appears on the watchlist",
    "listed_at": "the account's first listing date",
    "directive_date": "the earliest listing date of the watchlist (when the list took effect)",
}
CASE_COLUMNS = list(CASE_DOCS)


def _listing(cases: pl.LazyFrame, dataset: Dataset) -> pl.LazyFrame:
    """listed (at flag time), ever_listed, the account's listed_at and the directive date."""
    if "watchlist" not in dataset:
        return cases.with_columns(listed=pl.lit(False), ever_listed=pl.lit(False),
                                  listed_at=pl.lit(None, pl.Date),
                                  directive_date=pl.lit(None, pl.Date))
    watchlist = dataset["watchlist"].select("account_id", "listed_at", "delisted_at")
    directive_date = watchlist.select(pl.col("listed_at").min()).collect().item()
    first_listing = watchlist.group_by("account_id").agg(pl.col("listed_at").min())
    flagged = pl.col("flagged_at")
    on_list = (flagged >= pl.col("listed_at").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")) & (
        pl.col("delisted_at").is_null()
        | (flagged < pl.col("delisted_at").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
    )
    listed_cases = (cases.select("case_id", "account_id", "flagged_at")
                    .join(watchlist, on="account_id", how="inner")
                    .filter(on_list).select("case_id").unique().with_columns(listed=pl.lit(True)))
    return (
        cases.join(listed_cases, on="case_id", how="left", maintain_order="left")
        .join(first_listing, on="account_id", how="left", maintain_order="left")
        .with_columns(
            listed=pl.col("listed").fill_null(False),
            ever_listed=pl.col("listed_at").is_not_null(),
            directive_date=pl.lit(directive_date, pl.Date),
        )
    )


def _spend_tiers(cases: pl.LazyFrame, tiers: int = SPEND_TIERS) -> pl.LazyFrame:
    """Tier 0: no trailing spend; tiers 1..``tiers``: quantiles of spend among advertiser cases."""
    probs = [i / tiers for i in range(1, tiers)]
    cuts = (cases.filter(pl.col("is_advertiser"))
            .select([pl.col("trailing_spend").quantile(p, interpolation="linear").alias(str(p))
                     for p in probs]).collect())
    spend = pl.col("trailing_spend")
    tier = pl.lit(1, pl.Int8)
    for p in probs:
        cut = cuts[str(p)].item()
        if cut is not None:
            tier = tier + (spend > cut).cast(pl.Int8)
    return cases.with_columns(
        spend_tier=pl.when(pl.col("is_advertiser")).then(tier).otherwise(pl.lit(0, pl.Int8))
        .cast(pl.Int8))

