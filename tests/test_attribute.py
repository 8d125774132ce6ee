"""Attribution: trailing spend against hand-computed cases, listing status, the coverage ledger."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from analysis.attribute import OUTSIDE_COVERAGE, attribute, trailing_spend
from analysis.load import load
from polars.testing import assert_frame_equal


@pytest.fixture
def tiny_cases(tiny_world):
    cases, ledger = attribute(load(tiny_world), window_days=30)
    return cases.collect(), ledger


def by_case(cases: pl.DataFrame, column: str) -> dict:
    return dict(zip(cases["case_id"], cases[column], strict=True))


def test_trailing_spend_by_hand(tiny_cases) -> None:
    cases, _ = tiny_cases
    spend = by_case(cases, "trailing_spend")
    # c1: flagged 2023-03-06, window 2023-02-04..03-05. adv1 spent 310 over Jan (10/day, outside
    # the window), nothing in Feb (a gap), 100 over Mar 1-10 (10/day): Mar 1-5 in the window = 50.
    assert spend["c1"] == pytest.approx(50.0)
    # c3: adv2 spent 181 over Jan 1 - Jun 30 (181 days, 1/day); window of 30 days = 30.
    assert spend["c3"] == pytest.approx(30.0)
    # c5: flagged 2023-02-15T23:30-02:00 = 2023-02-16 01:30 UTC, so the window is Jan 17 - Feb 15:
    # Jan 17-31 at 10/day = 150 (a period straddling the window start), Feb nothing.
    assert spend["c5"] == pytest.approx(150.0)
    # c2: the account has no advertiser: spend is known to be zero.
    assert spend["c2"] == 0.0
    assert by_case(cases, "is_advertiser") == {"c1": True, "c2": False, "c3": True, "c5": True}


def test_listing_and_outcomes(tiny_cases) -> None:
    cases, _ = tiny_cases
    # a1 listed from 2023-03-01 (no end): c1 (Mar 6) listed. a4 listed Mar 1-5 only: c5 (Feb 16)
    # was flagged before its listing, but the account is ever listed.
    assert by_case(cases, "listed") == {"c1": True, "c2": False, "c3": False, "c5": False}
    assert by_case(cases, "ever_listed") == {"c1": True, "c2": False, "c3": False, "c5": True}
    assert set(cases["directive_date"]) == {date(2023, 3, 1)}
    assert by_case(cases, "enforced") == {"c1": True, "c2": False, "c3": True, "c5": False}
    assert by_case(cases, "reversed") == {"c1": True, "c2": False, "c3": False, "c5": False}
    hours = by_case(cases, "decision_hours")
    assert hours["c1"] == pytest.approx(24.0)
    assert hours["c3"] == pytest.approx(6.0)
    assert hours["c5"] == pytest.approx(10.5)  # 01:30 to 12:00 UTC
    assert by_case(cases, "decided")["c2"] is False
    assert by_case(cases, "severity_band") == {"c1": "low", "c2": "unknown", "c3": "high",
                                               "c5": "medium"}


def test_coverage_ledger_accounts_for_every_row(tiny_cases) -> None:
    cases, ledger = tiny_cases
    # c4 (2023-01-05) needs spend from 2022-12-06, before the spend table starts (2023-01-01).
    assert ledger.to_dict() == {"enforcement_rows": 5, "analysed": 4,
                                "excluded": {OUTSIDE_COVERAGE: 1}}
    assert "c4" not in set(cases["case_id"])
    assert cases.height == ledger.analysed


def test_longer_window_excludes_more(tiny_world) -> None:
    _, ledger = attribute(load(tiny_world), window_days=90)
    # With 90 days only c2 (Apr 6: window from Jan 6) and c3 (Apr 1: from Jan 1) are covered.
    assert ledger.analysed == 2 and ledger.excluded == {OUTSIDE_COVERAGE: 3}


def brute_force(periods: list[tuple], flag: date, window: int) -> float:
    """Spend in [flag - window, flag - 1], day by day."""
    total = 0.0
    for start, end, amount in periods:
        days = (end - start).days + 1
        for k in range(days):
            day = start + timedelta(days=k)
            if flag - timedelta(days=window) <= day < flag:
                total += amount / days
    return total


def test_trailing_spend_matches_day_by_day_reference() -> None:
    rng = np.random.default_rng(7)
    periods, rows = {}, []
    for adv in ("x", "y", "z"):
        day, mine = date(2023, 1, 1), []
        while day < date(2023, 12, 1):
            length = int(rng.integers(1, 60))
            if rng.random() < 0.7:  # otherwise a gap
                end = day + timedelta(days=length - 1)
                amount = float(rng.integers(0, 10_000))
                mine.append((day, end, amount))
                rows.append((adv, day, end, amount))
            day += timedelta(days=length)
        periods[adv] = mine
    spend = pl.LazyFrame(rows, schema=["advertiser_id", "period_start", "period_end",
                                       "spend_amount"], orient="row")
    flags = [date(2023, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 360, 60)]
    advs = [str(a) for a in rng.choice(["x", "y", "z"], 60)]
    cases = pl.LazyFrame({"advertiser_id": advs, "flag_date": flags})
    for window in (1, 30, 90):
        got = trailing_spend(cases, spend, window_days=window).collect()
        expected = [brute_force(periods[a], f, window) for a, f in zip(advs, flags, strict=True)]
        np.testing.assert_allclose(got["trailing_spend"].to_numpy(), expected, rtol=1e-9, atol=1e-6)


def test_account_lookup_without_the_contract_check(tmp_path) -> None:
    """With ``--no-check``, data breaking the contract's account rules: a watchlisted account
    missing from accounts is ignored, as by the join of the text path; an advertiser missing
    from advertisers has no owner but keeps its spend; a repeated account id is an error."""
    from analysis.schema import DataError
    from tests.conftest import TINY, write_world

    broken = dict(TINY)
    broken["watchlist"] = TINY["watchlist"].rstrip() + "\nzz9,do-not-moderate,2023-01-01,"
    broken["accounts"] = TINY["accounts"].rstrip() + "\na5,adv9"
    broken["ad_spend"] = TINY["ad_spend"].rstrip() + "\nadv9,2023-01-01,2023-06-30,181,USD"
    broken["enforcement"] = (TINY["enforcement"].rstrip()
                             + "\nc6,a5,2023-04-02T00:00:00Z,spam,0.1,removed,,,")
    folder = write_world(tmp_path / "broken", broken)
    text, _ = attribute(load(folder, check_contract=False), window_days=30)
    coded, _ = attribute(load(folder, check_contract=False), window_days=30, categorical=True)
    coded = coded.with_columns(pl.col(pl.Enum, pl.Categorical).cast(pl.String)).collect()
    assert_frame_equal(coded.sort("case_id"), text.collect())
    assert by_case(coded, "listed") == {"c1": True, "c2": False, "c3": False, "c5": False,
                                        "c6": False}
    # adv9: 181 USD over the 181 days of 2023-01-01..06-30, so 1 USD a day for 30 days.
    assert by_case(coded, "trailing_spend")["c6"] == pytest.approx(30.0)
    assert by_case(coded, "parent_name")["c6"] is None

    broken["accounts"] = TINY["accounts"].rstrip() + "\na3,adv1"
    folder = write_world(tmp_path / "repeated", broken)
    for categorical in (True, False):  # else a3's cases would be counted twice
        with pytest.raises(DataError, match="account_id must be given and unique"):
            attribute(load(folder, check_contract=False), categorical=categorical)
