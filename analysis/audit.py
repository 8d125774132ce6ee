"""The data audit: small tables that show what went in and what was analysed (for notebook 01)."""

from __future__ import annotations

import polars as pl

from analysis.attribute import CoverageLedger
from analysis.load import Dataset


def files_table(dataset: Dataset) -> pl.DataFrame:
    """Input files with their row counts and the first 16 hex digits of their SHA-256."""
    return pl.DataFrame(
        {"table": [f.table for f in dataset.files], "file": [f.name for f in dataset.files],
         "rows": [f.rows for f in dataset.files],
         "sha256 (first 16)": [f.sha256[:16] for f in dataset.files]})


def ledger_table(ledger: CoverageLedger) -> pl.DataFrame:
    """The coverage ledger as rows: enforcement rows, then each exclusion, then analysed."""
    stages = [("enforcement rows in the input", ledger.enforcement_rows)]
    stages += [(f"excluded: {reason}", -n) for reason, n in sorted(ledger.excluded.items())]
    stages.append(("analysed", ledger.analysed))
    return pl.DataFrame(stages, schema=["stage", "rows"], orient="row")


def cases_by_policy(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Per policy: cases, share enforced, share of cases from advertisers and listed accounts."""
    return (
        cases.lazy().group_by("policy")
        .agg(pl.len().alias("cases"), pl.col("enforced").mean().alias("share enforced"),
             pl.col("is_advertiser").mean().alias("share from advertisers"),
             pl.col("listed").mean().alias("share from listed accounts"))
        .sort("cases", "policy", descending=[True, False]).collect()
    )


def spend_tier_bounds(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """The trailing-spend range, case count and enforcement share of each spend tier."""
    return (cases.lazy().group_by("spend_tier")
            .agg(pl.len().alias("cases"), pl.col("trailing_spend").min().alias("min spend"),
                 pl.col("trailing_spend").max().alias("max spend"),
                 pl.col("enforced").mean().alias("share enforced"))
            .sort("spend_tier").collect())


def watchlist_summary(cases: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Accounts and cases of listed accounts before and after their listing, and of the others."""
    group = (pl.when(~pl.col("ever_listed")).then(pl.lit("other accounts"))
             .when(pl.col("listed")).then(pl.lit("listed accounts, while listed"))
             .otherwise(pl.lit("listed accounts, not (yet) listed")))
    return (cases.lazy().with_columns(group=group).group_by("group")
            .agg(pl.col("account_id").n_unique().alias("accounts"), pl.len().alias("cases"),
                 pl.col("enforced").mean().alias("share enforced"))
            .sort("group").collect())
