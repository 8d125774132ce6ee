"""Google Political Ads advertiser stats: the real file (20,832 advertisers), spend and joins.

The file is a verbatim copy of the transparency bundle's google-political-ads-advertiser-stats.csv
(via GitHub annaellisonnn/Stat-100-Project, commit 9e6e99c2); see data/reference/MANIFEST.md.
Totals are computed independently here, with the csv module.
"""

from __future__ import annotations

import csv
import zipfile
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from analysis.schema import DataError
from analysis.sources.google_political_ads import FILE, REPORT_START, read, read_spend, read_stats
from tests.conftest import REPO, write_world

STATS = REPO / "data" / "reference" / "google_political_ads" / FILE
DOWNLOADED = date(2025, 4, 15)  # the day the copy was committed; the bundle can be older
CURRENCIES = ["USD", "EUR", "INR", "BGN", "CZK", "DKK", "HUF", "PLN", "RON", "SEK", "GBP", "NZD",
              "ILS", "AUD", "TWD", "BRL", "ARS", "ZAR", "CLP", "MXN"]
# Made-up rates (US dollars per unit), one per currency: they test the arithmetic only.
RATES = {c: 1.0 / (i + 1) for i, c in enumerate(CURRENCIES)}


@pytest.fixture(scope="module")
def by_csv() -> dict:
    with STATS.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    totals = {c: sum(float(r[f"Spend_{c}"]) for r in rows) for c in CURRENCIES}
    paying = [sum(float(r[f"Spend_{c}"]) > 0 for c in CURRENCIES) for r in rows]
    return {"rows": rows, "totals": totals, "paying": paying}


@pytest.fixture(scope="module")
def spend_only():
    return read_spend(STATS, fx_rates=RATES, period_end=DOWNLOADED)


@pytest.fixture(scope="module")
def stats():
    return read_stats(STATS)


def test_every_advertiser_is_read_once(stats, by_csv) -> None:
    assert len(by_csv["rows"]) == 20_832  # data/reference/MANIFEST.md
    assert stats.rows.height == 20_832
    assert stats.rows["advertiser_id"].n_unique() == 20_832
    assert stats.currencies == CURRENCIES
    assert [(f.name, f.rows) for f in stats.files] == [(FILE, 20_832)]
    assert stats.files[0].sha256.startswith("d9dd7788642c961b")
    assert int(stats.rows["total_creatives"].sum()) == sum(
        int(r["Total_Creatives"]) for r in by_csv["rows"]) == 1_931_110
    for currency in CURRENCIES:
        assert stats.rows[currency].sum() == by_csv["totals"][currency], currency
    assert by_csv["totals"]["USD"] == 2_128_902_500


def test_spend_usd_is_not_a_total(stats, by_csv) -> None:
    brazilian = stats.rows.filter(pl.col("advertiser_id") == "AR04185907356116189185")
    assert brazilian.select("USD", "BRL").row(0) == (0.0, 6000.0)
    # 7,479 advertisers spent only in other currencies: Spend_USD would give them nothing.
    others = stats.rows.filter((pl.col("USD") == 0)
                               & (pl.sum_horizontal(pl.col(CURRENCIES[1:])) > 0))
    assert others.height == 7_479
    assert sum(n > 1 for n in by_csv["paying"]) == 2_179  # paid in several currencies
    assert sum(n == 0 for n in by_csv["paying"]) == 77  # no spend at all


def test_spend_only_dataset_reconciles_with_the_file(spend_only, by_csv) -> None:
    assert spend_only.source == "google-political-ads (spend only)"
    assert set(spend_only.tables) == {"advertisers", "ad_spend", "fx_rates"}
    assert "enforcement" not in spend_only
    advertisers = spend_only["advertisers"].collect()
    spend = spend_only["ad_spend"].collect()
    assert advertisers.height == spend.height == 20_832
    assert spend["currency"].unique().to_list() == ["USD"]
    assert spend.select(pl.col("period_start").unique(), pl.col("period_end").unique()).row(0) == (
        REPORT_START, DOWNLOADED)
    expected = sum(RATES[c] * by_csv["totals"][c] for c in CURRENCIES)
    assert spend["spend"].sum() == pytest.approx(expected, rel=1e-12)
    assert spend["paid_in"].null_count() == 77
    brazilian = spend.filter(pl.col("advertiser_id") == "AR04185907356116189185")
    assert brazilian.select("spend", "paid_in").row(0) == (6000.0 * RATES["BRL"], "BRL")
    rates = spend_only["fx_rates"].collect()
    assert rates.height == 20
    assert rates.filter(pl.col("currency") == "USD")["rate_to_usd"].item() == 1.0


def test_read_without_enforcement_says_what_is_needed() -> None:
    with pytest.raises(DataError) as caught:
        read(STATS)
    checks = sorted(p.check for p in caught.value.problems)
    assert checks == ["currencies", "enforcement", "period"]
    text = caught.value.summary()
    assert "enforcement records are needed to analyse it" in text
    assert "Spend_USD is not a USD total" in text


def test_missing_rate_is_named() -> None:
    rates = {c: r for c, r in RATES.items() if c not in ("ARS", "CLP")}
    with pytest.raises(DataError) as caught:
        read_spend(STATS, fx_rates=rates, period_end=DOWNLOADED)
    [problem] = caught.value.problems
    assert problem.value == "ARS, CLP"


def test_join_with_enforcement_records(tmp_path: Path) -> None:
    folder = write_world(tmp_path / "cases", {"enforcement": """
        case_id,account_id,flagged_at,policy,action
        g1,AR08395185106758664193,2024-06-01T10:00:00Z,misleading,removed
        g2,AR04185907356116189185,2024-06-02T10:00:00Z,misleading,no_action
        g3,not-an-advertiser,2024-06-03T10:00:00Z,misleading,no_action
    """})
    dataset = read(STATS, enforcement=folder, fx_rates=RATES, period_end=DOWNLOADED)
    assert dataset.source == "google-political-ads"
    assert [(f.table, f.rows) for f in dataset.files] == [("advertiser_stats", 20_832),
                                                          ("enforcement", 3)]
    accounts = dataset["accounts"].collect().sort("account_id")
    assert accounts.select("account_id", "advertiser_id").rows() == [
        ("AR04185907356116189185", "AR04185907356116189185"),
        ("AR08395185106758664193", "AR08395185106758664193"),
        ("not-an-advertiser", None)]


def test_join_errors_are_located_in_the_users_files(tmp_path: Path) -> None:
    folder = write_world(tmp_path / "cases", {
        "enforcement": """
            case_id,account_id,flagged_at,policy,action
            g1,acc1,2024-06-01T10:00:00Z,misleading,removed
            g2,acc2,2024-06-02,misleading,taken down
        """,
        "accounts": """
            account_id,advertiser_id
            acc1,AR08395185106758664193
            acc2,AR99999999999999999999
        """})
    with pytest.raises(DataError) as caught:
        read(STATS, enforcement=folder, fx_rates=RATES, period_end=DOWNLOADED)
    found = {(p.file, p.row, p.column, p.value) for p in caught.value.problems}
    assert found == {("accounts.csv", 2, "advertiser_id", "AR99999999999999999999"),
                     ("enforcement.csv", 2, "action", "taken down")}


def test_one_currency_needs_no_rates_and_bad_values_are_located(tmp_path: Path) -> None:
    lines = STATS.read_text(encoding="utf-8").splitlines()
    us_only = [lines[0]] + [line for line in lines[1:200] if ",US," in line][:3]
    small = tmp_path / FILE
    small.write_text("\n".join(us_only) + "\n", encoding="utf-8")
    spend = read_spend(small, period_end=DOWNLOADED)["ad_spend"].collect()
    assert spend["currency"].unique().to_list() == ["USD"]
    assert spend.height == 3
    rows = list(csv.reader(us_only))
    rows[2][5], rows[3][6] = "many", "-5"  # Total_Creatives of line 3, Spend_USD of line 4
    with small.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    with pytest.raises(DataError) as caught:
        read_stats(small)
    located = {(p.file, p.row, p.column, p.value) for p in caught.value.problems}
    assert located == {(FILE, 2, "Total_Creatives", "many"), (FILE, 3, "Spend_USD", "-5")}
    ragged = us_only[:2] + [us_only[2] + ",1"]
    small.write_text("\n".join(ragged) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="cannot be read as CSV"):
        read_stats(small)


def test_the_bundle_zip_is_read(tmp_path: Path) -> None:
    bundle = tmp_path / "google-political-ads-transparency-bundle.zip"
    with zipfile.ZipFile(bundle, "w", compression=zipfile.ZIP_DEFLATED) as handle:
        handle.write(STATS, f"google-political-ads-transparency-bundle/{FILE}")
    stats = read_stats(bundle)
    assert stats.rows.height == 20_832
    assert stats.files[0].name == f"{bundle.name}:google-political-ads-transparency-bundle/{FILE}"
