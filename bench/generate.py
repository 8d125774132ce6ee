"""Canonical worlds of 1M, 10M or 100M enforcement cases, as Parquet, for the scale benchmarks.

The worlds follow the data contract (DESIGN.md) and look like a large platform's export: about one
account per 20 cases (``--cases-per-account``), a few thousand advertisers (one advertiser group
whose brands spend the most), monthly spend rows with gaps (advertisers that skip months), a
watchlist of the group's accounts plus a few others (some delisted, one listed twice with
overlapping periods), and cases spread over 33 months, a few of them flagged so early that their
spend window leaves the spend table. Account activity is heavy-tailed (log-normal), so some
accounts have thousands of cases.

Nothing here is a statistical model with a planted truth (that is ``analysis.simulate``): these
worlds exist to measure time and memory. They are written in chunks of ``--chunk`` cases with a
seeded generator per chunk, so memory stays bounded (about 1 GB at any size) and the same
arguments give the same files.

Usage::

    python bench/generate.py --cases 10M --out /tmp/worlds/10M
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

POLICIES = ("spam", "violence", "nudity", "hate_speech", "harassment", "copyright",
            "misleading_claims")
POLICY_MIX = (0.30, 0.10, 0.12, 0.12, 0.16, 0.12, 0.08)
ENFORCE_RATE = (0.85, 0.75, 0.70, 0.60, 0.50, 0.40, 0.15)
DETECTION = ("automated", "user_report", "trusted_flagger")
DETECTION_MIX = (0.6, 0.35, 0.05)

SPEND_START = dt.date(2022, 1, 1)  # first spend month
SPEND_END = dt.date(2024, 12, 31)  # last day of the spend table
CASES_START = dt.datetime(2022, 4, 1, tzinfo=dt.UTC)
CASES_END = dt.datetime(2024, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
#: Cases flagged this many days before CASES_START: their 90-day window leaves the spend table.
EARLY_DAYS = 20
SHARE_EARLY = 0.001
DIRECTIVE = dt.date(2023, 6, 1)
WATCHLIST_NAME = "do_not_moderate"


def parse_size(text: str) -> int:
    """``1M`` -> 1_000_000, ``250k`` -> 250_000, ``100000`` -> 100_000."""
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000, "b": 1_000_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("kmb")) * scale)


def shape(n_cases: int, cases_per_account: int = 20) -> dict[str, int]:
    """Accounts, advertisers and advertiser accounts for a world of ``n_cases`` cases."""
    accounts = max(n_cases // cases_per_account, 100)
    # A few thousand advertisers at every size: 2,000 at 1M cases, 4,000 at 10M, 8,000 at 100M.
    advertisers = max(50, round(2000 * 2 ** math.log10(max(n_cases, 10) / 1e6)))
    # Each advertiser runs at least one account, and the group's 60 brand accounts are
    # advertisers' accounts; with few accounts (many cases each) the advertisers are fewer.
    advertiser_accounts = max(accounts // 5, min(advertisers, accounts // 2), 60)
    advertisers = min(advertisers, advertiser_accounts)
    return {"accounts": accounts, "advertisers": advertisers,
            "advertiser_accounts": advertiser_accounts}


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    """``prefix`` + zero-padded numbers, e.g. ``acct000000042``."""
    digits = pl.Series(numbers, dtype=pl.Int64).cast(pl.String).str.zfill(width)
    return pl.select(pl.lit(prefix) + pl.lit(digits)).to_series()


def advertisers_and_spend(n_advertisers: int, rng: np.random.Generator
                          ) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray]:
    """Advertisers (brands of one group first) and their monthly spend; returns each one's level."""
    group_brands = 6
    numbers = np.arange(n_advertisers)
    advertiser_id = _ids("adv", numbers, 6)
    parent = ["Orbital Retail Group" if i < group_brands else None for i in range(n_advertisers)]
    advertisers = pl.DataFrame({
        "advertiser_id": advertiser_id,
        "advertiser_name": _ids("Advertiser ", numbers, 6),
        "parent_name": pl.Series(parent, dtype=pl.String),
    })
    level = np.exp(rng.normal(np.log(5_000.0), 1.5, n_advertisers))
    level[:group_brands] = level.max() * 5 / group_brands
    months = pl.date_range(SPEND_START, SPEND_END, "1mo", eager=True)
    n_months = months.len()
    skips = rng.random(n_advertisers) < 0.3  # these skip about a quarter of the months
    rows = []
    for a in range(n_advertisers):
        keep = np.ones(n_months, bool) if not skips[a] else rng.random(n_months) > 0.25
        amount = level[a] * np.exp(rng.normal(0, 0.4, n_months))
        idx = np.flatnonzero(keep)
        rows.append(pl.DataFrame({"a": np.full(idx.size, a), "m": idx,
                                  "spend": np.round(amount[idx], 2)}))
    grid = pl.concat(rows)
    start = months.gather(grid["m"])
    spend = pl.DataFrame({
        "advertiser_id": advertiser_id.gather(grid["a"]),
        "period_start": start,
        "period_end": start.dt.month_end(),
        "spend": grid["spend"],
        "currency": pl.Series(["USD"] * grid.height),
    })
    return advertisers, spend, level


def accounts_table(sizes: dict[str, int], level: np.ndarray, rng: np.random.Generator
                   ) -> pl.DataFrame:
    """Accounts: the first ``advertiser_accounts`` belong to advertisers, the rest buy no ads."""
    n, n_adv = sizes["accounts"], sizes["advertiser_accounts"]
    owners = np.concatenate([np.arange(sizes["advertisers"]),  # every advertiser runs one
                             rng.integers(0, sizes["advertisers"], n_adv - sizes["advertisers"])])
    owners[:60] = np.arange(60) % 6  # the group's brand accounts come first
    advertiser_id = _ids("adv", owners, 6)
    return pl.DataFrame({
        "account_id": _ids("acct", np.arange(n), 9),
        "advertiser_id": pl.concat([advertiser_id, pl.Series([None] * (n - n_adv),
                                                             dtype=pl.String)]),
        "account_type": pl.Series(np.where(np.arange(n) < n_adv, "business", "creator")),
    })


def watchlist_table(n_accounts: int) -> pl.DataFrame:
    """The group's 60 brand accounts from the directive date, plus a few others (edge cases)."""
    listed = list(range(60))
    rows = [{"account_id": i, "listed_at": DIRECTIVE, "delisted_at": None} for i in listed]
    # Account 0 is also on a second list from an earlier date, overlapping the first.
    rows.append({"account_id": 0, "listed_at": dt.date(2023, 3, 1),
                 "delisted_at": dt.date(2023, 7, 1)})
    # Two accounts listed and delisted again.
    for i, (start, end) in zip((61, 62), ((dt.date(2023, 1, 15), dt.date(2023, 4, 1)),
                                          (dt.date(2023, 9, 1), dt.date(2024, 2, 1))),
                               strict=True):
        if i < n_accounts:
            rows.append({"account_id": i, "listed_at": start, "delisted_at": end})
    frame = pl.DataFrame(rows, schema={"account_id": pl.Int64, "listed_at": pl.Date,
                                       "delisted_at": pl.Date})
    return frame.select(
        account_id=_ids("acct", frame["account_id"].to_numpy(), 9),
        list_name=pl.lit(WATCHLIST_NAME),
        listed_at=pl.col("listed_at"), delisted_at=pl.col("delisted_at"))


def enforcement_chunk(first: int, count: int, *, activity_cdf: np.ndarray, listed: np.ndarray,
                      seed: int) -> pl.DataFrame:
    """Cases ``first`` .. ``first + count - 1``; each chunk has its own seeded generator."""
    rng = np.random.default_rng([seed, first])
    account = np.searchsorted(activity_cdf, rng.random(count) * activity_cdf[-1], side="right")
    start, end = CASES_START.timestamp(), CASES_END.timestamp()
    seconds = rng.uniform(start, end, count)
    early = rng.random(count) < SHARE_EARLY
    seconds[early] = start - rng.uniform(0, EARLY_DAYS * 86_400, early.sum())
    flagged_us = (seconds * 1e6).astype(np.int64)
    policy = rng.choice(len(POLICIES), count, p=POLICY_MIX)
    severity = np.round(rng.random(count), 3)
    severity_missing = rng.random(count) < 0.05
    rate = np.asarray(ENFORCE_RATE)[policy]
    after = flagged_us >= int(dt.datetime.combine(DIRECTIVE, dt.time(), dt.UTC).timestamp() * 1e6)
    rate = np.where(listed[account] & after, rate * 0.5, rate)
    enforced = rng.random(count) < rate
    removed = rng.random(count) < 0.7
    action = np.where(enforced, np.where(removed, 0, 1), 2)
    delay_us = (np.exp(rng.normal(np.log(20.0), 1.2, count)).clip(0, 24 * 60) * 3.6e9)
    pending = ~enforced & (rng.random(count) < 0.03)
    appealed = enforced & (rng.random(count) < 0.05)
    reversed_ = appealed & (rng.random(count) < 0.2)
    frame = pl.DataFrame({
        "case_id": _ids("case", np.arange(first, first + count), 10),
        "account_id": _ids("acct", account, 9),
        "flagged_at": pl.Series(flagged_us, dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
        "policy": pl.Series(np.asarray(POLICIES)[policy]),
        "severity": pl.Series(np.where(severity_missing, np.nan, severity)).fill_nan(None),
        "detection": pl.Series(np.asarray(DETECTION)[rng.choice(3, count, p=DETECTION_MIX)]),
        "action": pl.Series(np.asarray(("removed", "restricted", "no_action"))[action]),
        "decided_at": pl.Series(np.where(pending, 0, flagged_us + delay_us.astype(np.int64)),
                                dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
        "appealed": pl.Series(appealed),
        "appeal_outcome": pl.Series(np.where(reversed_, "reversed", "upheld")),
    })
    return frame.with_columns(
        decided_at=pl.when(pl.Series(pending)).then(None).otherwise(pl.col("decided_at")),
        appeal_outcome=pl.when(pl.col("appealed")).then(pl.col("appeal_outcome")),
    )


def generate(n_cases: int, out: Path, *, seed: int = 1, chunk: int = 2_000_000,
             cases_per_account: int = 20) -> dict[str, int]:
    """Write accounts, advertisers, ad_spend, watchlist and enforcement Parquet files to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = shape(n_cases, cases_per_account)
    advertisers, spend, level = advertisers_and_spend(sizes["advertisers"], rng)
    accounts = accounts_table(sizes, level, rng)
    watchlist = watchlist_table(sizes["accounts"])
    advertisers.write_parquet(out / "advertisers.parquet")
    spend.write_parquet(out / "ad_spend.parquet")
    accounts.write_parquet(out / "accounts.parquet")
    watchlist.write_parquet(out / "watchlist.parquet")

    activity = np.exp(rng.normal(0.0, 1.0, sizes["accounts"]))
    activity[: sizes["advertiser_accounts"]] *= 2.0  # advertisers' accounts post more
    activity[:60] *= 20.0  # the group's brand accounts are big
    cdf = np.cumsum(activity)
    listed = np.zeros(sizes["accounts"], bool)
    listed[:60] = True

    writer = None
    try:
        for first in range(0, n_cases, chunk):
            frame = enforcement_chunk(first, min(chunk, n_cases - first), activity_cdf=cdf,
                                      listed=listed, seed=seed)
            table = frame.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(out / "enforcement.parquet", table.schema,
                                          compression="zstd")
            writer.write_table(table, row_group_size=500_000)
    finally:
        if writer is not None:
            writer.close()
    return {"enforcement": n_cases, "accounts": accounts.height,
            "advertisers": advertisers.height, "ad_spend": spend.height,
            "watchlist": watchlist.height}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", required=True, help="number of cases: 1M, 10M, 100M, 250k, …")
    parser.add_argument("--out", required=True, type=Path, help="folder to write")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=2_000_000, help="cases per chunk")
    parser.add_argument("--cases-per-account", type=int, default=20,
                        help="cases per account on average (default 20: a platform's long tail "
                             "of small accounts; more makes the account-level cells fewer)")
    args = parser.parse_args()
    if args.cases_per_account < 1:
        parser.error(f"--cases-per-account must be at least 1, got {args.cases_per_account}")
    started = time.perf_counter()
    rows = generate(parse_size(args.cases), args.out, seed=args.seed, chunk=args.chunk,
                    cases_per_account=args.cases_per_account)
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s: "
          + ", ".join(f"{k} {v:,}" for k, v in rows.items()))


if __name__ == "__main__":
    main()
