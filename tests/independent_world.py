"""A canonical world written independently of analysis.simulate, with a planted truth.

Deliberately simple, so the expected value of each test is known in closed form: severity takes
one value per band (so policy × severity-band strata are homogeneous and the Mantel–Haenszel odds
ratio equals the planted conditional odds ratio), and there are no account random effects.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl

POLICY_BASE = {"A": 0.80, "B": 0.30, "C": 0.55}
SEVERITIES = np.array([0.1, 0.5, 0.9])  # one per band: low, medium, high
DIRECTIVE = date(2023, 7, 1)


def write_independent_world(folder: Path, *, seed: int, listed_or: float = 1.0,
                            spend_or_per_10x: float = 1.0, confounded: bool = False,
                            n_accounts: int = 600, n_advertisers: int = 200, n_listed: int = 40,
                            n_cases: int = 40_000) -> dict:
    """Write accounts, advertisers, ad_spend, enforcement, watchlist CSVs; return the truth."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    accounts = [f"acct{i:04d}" for i in range(n_accounts)]
    advertiser_of = {accounts[i]: f"adv{i:03d}" for i in range(n_advertisers)}
    listed_accounts = accounts[:n_listed]  # listed accounts are advertisers

    pl.DataFrame({"account_id": accounts,
                  "advertiser_id": [advertiser_of.get(a) for a in accounts]}
                 ).write_csv(folder / "accounts.csv")
    pl.DataFrame({"advertiser_id": list(advertiser_of.values()),
                  "advertiser_name": [f"Advertiser {i}" for i in range(n_advertisers)]}
                 ).write_csv(folder / "advertisers.csv")

    # Monthly spend, 2022-09 .. 2023-12, each advertiser at its own level (log-uniform 1e2..1e6).
    level = 10 ** rng.uniform(2, 6, n_advertisers)
    months = [date(2022 + (8 + k) // 12, (8 + k) % 12 + 1, 1) for k in range(16)]
    rows = []
    for j, adv in enumerate(advertiser_of.values()):
        for start in months:
            end = (start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
            rows.append((adv, start, end, float(level[j] * (end - start).days + level[j]), "USD"))
    spend = pl.DataFrame(rows, schema=["advertiser_id", "period_start", "period_end", "spend",
                                       "currency"], orient="row")
    spend.write_csv(folder / "ad_spend.csv")

    pl.DataFrame({"account_id": listed_accounts, "list_name": "do-not-moderate",
                  "listed_at": [DIRECTIVE] * n_listed}).write_csv(folder / "watchlist.csv")

    account_idx = rng.integers(0, n_accounts, n_cases)
    is_adv = account_idx < n_advertisers
    policies = np.array(list(POLICY_BASE))
    if confounded:  # advertisers mostly in rarely enforced B, others mostly in often enforced A
        p_adv, p_other = [0.1, 0.8, 0.1], [0.8, 0.1, 0.1]
        policy = np.where(is_adv, rng.choice(3, n_cases, p=p_adv), rng.choice(3, n_cases, p=p_other))
    else:
        policy = rng.choice(3, n_cases)
    severity = SEVERITIES[rng.integers(0, 3, n_cases)]
    start = datetime(2023, 1, 1, tzinfo=timezone.utc)
    seconds = rng.integers(0, 365 * 86400, n_cases)
    flagged = [start + timedelta(seconds=int(s)) for s in seconds]
    listed = (account_idx < n_listed) & np.array([f.date() >= DIRECTIVE for f in flagged])

    base = np.array([POLICY_BASE[p] for p in policies[policy]])
    logit0 = np.log(base / (1 - base)) + 1.0 * (severity - 0.5)
    # Trailing 90-day spend is 90 × the constant daily level (monthly periods cover every day).
    log10_spend = np.where(is_adv, np.log10(90 * level[np.minimum(account_idx, n_advertisers - 1)]),
                           0.0)
    logit_no_list = logit0 + np.log(spend_or_per_10x) * log10_spend * is_adv
    logit = logit_no_list + np.log(listed_or) * listed
    p, p_no_list = 1 / (1 + np.exp(-logit)), 1 / (1 + np.exp(-logit_no_list))
    enforced = rng.random(n_cases) < p
    action = np.where(enforced, np.where(rng.random(n_cases) < 0.7, "removed", "restricted"),
                      "no_action")
    pl.DataFrame({
        "case_id": [f"case{i:06d}" for i in range(n_cases)],
        "account_id": [accounts[i] for i in account_idx],
        "flagged_at": [f.strftime("%Y-%m-%dT%H:%M:%SZ") for f in flagged],
        "policy": policies[policy], "severity": severity, "action": action,
    }).write_csv(folder / "enforcement.csv")
    return {"listed_or": listed_or, "spend_or_per_10x": spend_or_per_10x,
            "did": float(np.mean((p - p_no_list)[listed])) if listed.any() else 0.0}
