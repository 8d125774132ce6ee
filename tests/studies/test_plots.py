"""Figures of the case studies: the numbers behind them (analysis/studies/plots.py)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from analysis.sources.dsa_tdb import read
from analysis.studies import plots
from tests.conftest import REPO

META = REPO / "data" / "reference" / "meta_ad_library"
BE = META / "FacebookAdLibraryReport_2025-07-12_BE_last_30_days_advertisers.csv"
DSA = REPO / "data" / "reference" / "dsa_tdb"


@pytest.mark.parametrize("successes, trials, low, high", [
    # Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3 (Wilson score)
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_matches_newcombe(successes: int, trials: int, low: float, high: float) -> None:
    lower, upper = plots.wilson([successes], [trials])
    assert (round(float(lower[0]), 4), round(float(upper[0]), 4)) == (low, high)


def test_caught_by_tier_matches_the_trend_test_counts() -> None:
    data = plots.caught_by_tier_data(BE)
    # tests/studies/test_meta_ad_library.py: BE tiers (pages, caught) from the CSV
    assert list(zip(data["pages"], data["caught"], strict=True)) == [(783, 565), (137, 14),
                                                                     (71, 7), (11, 1)]
    assert data["currency"].unique().to_list() == ["EUR"]
    assert (data["ci_low"] <= data["share_caught"]).all()
    assert (data["share_caught"] <= data["ci_high"]).all()
    plt.close(plots.caught_by_tier(BE))


def test_data_audit_adds_up() -> None:
    results = {"data": {"files": [{"rows": 1036}]},
               "coverage": {"enforcement_rows": 1002, "analysed": 1002, "excluded": {}}}
    data = plots.data_audit_data(results, cases="Pages")
    assert data["kind"].to_list() == ["input", "combined", "input", "analysed"]
    assert data["rows"].to_list() == [1036, 34, 1002, 1002]
    plt.close(plots.data_audit(results, cases="Pages"))


def test_measures_by_account_type_of_the_sample_dump() -> None:
    data = plots.measures_by_account_type_data(read(DSA))
    # data/reference/MANIFEST.md: 32 rows, one exact duplicate, account_type empty everywhere
    assert data["statements"].sum() == 31
    assert data["account_type"].unique().to_list() == ["not reported"]
    assert data["share"].sum() == pytest.approx(1.0)
    fig = plots.measures_by_account_type(read(DSA))
    assert "cannot be made" in fig.get_supxlabel()
    plt.close(fig)


def test_estimates_leave_out_tests_that_did_not_run() -> None:
    tests = [{"id": "a", "status": "ok", "scale": "OR", "estimate": 1.5, "ci_low": 0.9,
              "ci_high": 2.5, "p_value": 0.08, "p_adjusted": None, "n": 800},
             {"id": "b", "status": "skipped", "scale": "OR"}]
    assert plots.estimates_data(tests)["id"].to_list() == ["a"]
    plt.close(plots.estimates([tests[1]]))
