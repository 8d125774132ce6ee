"""Meta Ad Library Report adapter: the real Belgian, Bangladeshi and Andorran reports.

The reports are Meta's own advertiser reports (30 days) as archived in GitHub
favstats/meta_ad_reports2 (commit 995d5bdf); see data/reference/MANIFEST.md. Expected counts and
totals are computed independently here, with the csv module, and also pinned as numbers.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from analysis.attribute import attribute
from analysis.schema import DataError
from analysis.sources.meta_ad_library import (
    LOW_BUCKET,
    WITHOUT_DISCLAIMER,
    pages,
    read,
    read_reports,
)
from tests.conftest import REPO

FOLDER = REPO / "data" / "reference" / "meta_ad_library"
BE = FOLDER / "FacebookAdLibraryReport_2025-07-12_BE_last_30_days_advertisers.csv"
BD = FOLDER / "FacebookAdLibraryReport_2025-07-10_BD_last_30_days_advertisers.csv"
AD = FOLDER / "FacebookAdLibraryReport_2025-07-13_AD_last_30_days_advertisers.csv"

# Data rows of each file (csv.reader, header excluded). The files end without a newline, so a
# line count minus the header (`wc -l` - 1) shows one fewer: 1,035, 958 and 65.
ROWS = {BE: 1036, BD: 959, AD: 66}
WITHOUT = {BE: 587, BD: 592, AD: 65}      # rows "These ads ran without a disclaimer"
BUCKETED = {BE: 811, BD: 911, AD: 66}     # rows whose amount is "≤100"
DISCLOSED = {BE: 519_332, BD: 32_498, AD: 0}  # sum of the amounts given as numbers
CURRENCY = {BE: "EUR", BD: "USD", AD: "EUR"}
PAGES = {BE: 1002, BD: 938, AD: 66}       # Page ID, or Page name where the Page ID is 0


def independent(file: Path) -> dict:
    """Counts and totals of one report, with the csv module only."""
    with file.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    amounts = [r[3] for r in rows]
    disclosed = sum(float(a) for a in amounts if a != LOW_BUCKET)
    bucketed = sum(a == LOW_BUCKET for a in amounts)
    keys = {r[0] if r[0] != "0" else f"0:{r[1]}" for r in rows}
    return {"header": header, "rows": len(rows), "bucketed": bucketed, "disclosed": disclosed,
            "without": sum(r[2] == WITHOUT_DISCLAIMER for r in rows), "pages": len(keys)}


@pytest.fixture(scope="module")
def belgium():
    return read(BE)


@pytest.mark.parametrize("file", [BE, BD, AD], ids=["BE", "BD", "AD"])
def test_rows_disclaimers_and_spend_match_the_file(file: Path) -> None:
    expected = independent(file)
    assert (expected["rows"], expected["without"], expected["bucketed"],
            expected["disclosed"], expected["pages"]) == (
        ROWS[file], WITHOUT[file], BUCKETED[file], DISCLOSED[file], PAGES[file])
    reports = read_reports(file)
    rows = reports.rows
    assert rows.height == ROWS[file]
    assert [f.rows for f in reports.files] == [ROWS[file]]
    assert int(rows["without_disclaimer"].sum()) == WITHOUT[file]
    assert rows["currency"].unique().to_list() == [CURRENCY[file]]
    # ≤100 is interval-censored: 0 to 100, counted at 50 in `spend`.
    k = BUCKETED[file]
    assert rows["spend_low"].sum() == DISCLOSED[file]
    assert rows["spend_high"].sum() == DISCLOSED[file] + 100 * k
    assert rows["spend"].sum() == DISCLOSED[file] + 50 * k
    assert int(rows["bucketed"].sum()) == k
    assert pages(reports).height == PAGES[file]


def test_checksum_is_of_the_file() -> None:
    [info] = read_reports(AD).files
    assert info.sha256 == hashlib.sha256(AD.read_bytes()).hexdigest()
    assert info.sha256.startswith("77e6aa90e2560cb3")  # data/reference/MANIFEST.md


def test_canonical_tables_of_the_belgian_report(belgium) -> None:
    tables = {name: frame.collect() for name, frame in belgium.tables.items()}
    assert belgium.source == "meta-ad-library"
    assert {n: t.height for n, t in tables.items()} == {
        "advertisers": 1002, "accounts": 1002, "ad_spend": 1002, "enforcement": 1002,
        "report_rows": 1036}
    spend = tables["ad_spend"]
    assert spend["spend"].sum() == 519_332 + 50 * 811
    assert spend["spend_low"].sum() == 519_332
    assert spend["spend_high"].sum() == 519_332 + 100 * 811
    assert spend["currency"].unique().to_list() == ["EUR"]
    assert spend["period_start"].unique().to_list() == [date(2025, 6, 13)]  # 30 days, inclusive
    assert spend["period_end"].unique().to_list() == [date(2025, 7, 12)]
    cases = tables["enforcement"]
    # Every "without a disclaimer" row is a different Page: 587 removed, 1,002 - 587 no action.
    assert dict(cases["action"].value_counts().iter_rows()) == {"removed": 587, "no_action": 415}
    assert cases["flagged_at"].unique().to_list() == [datetime(2025, 7, 13, tzinfo=UTC)]
    assert cases["policy"].unique().to_list() == ["political_ads_disclaimer"]
    accounts = tables["accounts"]
    assert accounts["account_id"].equals(accounts["advertiser_id"])
    # Instagram accounts without a Facebook Page all have Page ID 0: 14 of them, told apart by name.
    assert accounts.filter(pl.col("account_type") == "instagram_account").height == 14
    assert "BE:0:Instagram User 727842325" in accounts["account_id"].to_list()


def test_a_page_with_several_rows_is_one_case(belgium) -> None:
    # Médecins Sans Frontières (Page 53950718052): line 28, disclaimer "Médecins Sans
    # Frontières (Belgique)", 4014 EUR, 205 ads; line 130, "These ads ran without a
    # disclaimer", 334 EUR, 10 ads.
    case = belgium["enforcement"].filter(pl.col("account_id") == "BE:53950718052").collect()
    assert case.select("action", "ads_without_disclaimer", "spend_without_disclaimer").row(0) == (
        "removed", 10, 334.0)
    spend = belgium["ad_spend"].filter(pl.col("advertiser_id") == "BE:53950718052").collect()
    assert spend.select("spend", "spend_low", "spend_high", "spend_bucketed").row(0) == (
        4348.0, 4348.0, 4348.0, False)
    # European Commission (107898832590939): 173 EUR declared and a "≤100" without disclaimer.
    spend = belgium["ad_spend"].filter(
        pl.col("advertiser_id") == "BE:107898832590939").collect()
    assert spend.select("spend", "spend_low", "spend_high", "spend_bucketed").row(0) == (
        223.0, 173.0, 273.0, True)


def test_trailing_spend_over_the_report_window_is_the_pages_spend(belgium) -> None:
    cases, ledger = attribute(belgium, window_days=30)
    cases = cases.collect()
    assert (ledger.enforcement_rows, ledger.analysed) == (1002, 1002)
    assert cases["trailing_spend"].sum() == pytest.approx(519_332 + 50 * 811)
    # With the default 90-day window every case leaves the report's 30 days: excluded, not zero.
    _, ledger = attribute(belgium)
    assert ledger.excluded == {"spend window outside spend coverage": 1002}


def test_a_folder_mixes_currencies_and_needs_rates() -> None:
    with pytest.raises(DataError) as caught:
        read(FOLDER)
    [problem] = caught.value.problems
    assert "2 currencies (EUR, USD)" in problem.message
    dataset = read(FOLDER, fx_rates={"EUR": 1.17, "USD": 1.0})  # illustrative rates
    assert dataset["enforcement"].collect().height == 1002 + 938 + 66
    assert sorted(f.name for f in dataset.files) == sorted(p.name for p in (AD, BD, BE))
    assert dataset["fx_rates"].collect().sort("currency").rows() == [("EUR", 1.17), ("USD", 1.0)]
    # A Page in two countries' reports is two advertisers: ids start with the country.
    ids = dataset["advertisers"].collect()["advertiser_id"]
    assert ids.str.slice(0, 3).unique().sort().to_list() == ["AD:", "BD:", "BE:"]


def test_a_zip_reads_like_the_file(tmp_path: Path) -> None:
    archive = tmp_path / "report.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        locations = FOLDER / BE.name.replace("_advertisers", "_locations")
        for file in (BE, locations, FOLDER / "README.txt"):
            handle.write(file, file.name)
    from_zip = read_reports(archive)
    assert from_zip.rows.drop("_source_file").equals(read_reports(BE).rows.drop("_source_file"))
    assert [f.name for f in from_zip.files] == [f"report.zip:{BE.name}"]


# --------------------------------------------------------------------------------------------
# Errors, located by file, line, column and value


def broken(tmp_path: Path, old: str, new: str, *, file: Path = AD) -> Path:
    target = tmp_path / file.name
    text = file.read_text(encoding="utf-8")
    assert old in text
    target.write_text(text.replace(old, new, 1), encoding="utf-8")
    return target


def test_bad_amount_count_and_page_id_are_located(tmp_path: Path) -> None:
    # AD line 3: 687044491154005,Unai Belcan Real Estate,These ads ran without a disclaimer,≤100,2
    target = broken(tmp_path, "Unai Belcan Real Estate,These ads ran without a disclaimer,≤100,2",
                    "Unai Belcan Real Estate,These ads ran without a disclaimer,<100,two")
    target.write_text(target.read_text(encoding="utf-8").replace(
        "113047585383781,EUSS", ",EUSS", 1), encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read(target)
    found = {(p.file, p.row, p.column, p.value) for p in caught.value.problems}
    assert found == {(target.name, 2, "Amount spent (EUR)", "<100"),
                     (target.name, 2, "Number of ads in Library", "two"),
                     (target.name, 3, "Page ID", None)}
    assert str(next(p for p in caught.value.problems if p.column == "Amount spent (EUR)")) == (
        f"{target.name}, line 3, column Amount spent (EUR): the amount must be a number >= 0 or "
        "≤100 (value '<100')")


def test_bad_name_header_and_duplicate_row(tmp_path: Path) -> None:
    renamed = tmp_path / "report.csv"
    shutil.copy(AD, renamed)
    with pytest.raises(DataError, match="not named like a Meta Ad Library advertiser report"):
        read(renamed)
    header = broken(tmp_path, "Amount spent (EUR)", "Amount (EUR)")
    with pytest.raises(DataError, match="the header is not a Meta Ad Library"):
        read(header)
    twice = broken(tmp_path, "646541138550400,Int. Holdings",
                   "113047585383781,EUSS School of Engineering")
    with pytest.raises(DataError) as caught:
        read(twice)
    [problem] = caught.value.problems
    assert (problem.row, problem.check) == (4, "duplicate")  # line 5 repeats line 4


def test_overlapping_reports_of_one_country(tmp_path: Path) -> None:
    shutil.copy(AD, tmp_path / AD.name)
    shutil.copy(AD, tmp_path / AD.name.replace("2025-07-13", "2025-07-20"))
    with pytest.raises(DataError) as caught:
        read(tmp_path)
    [problem] = caught.value.problems
    assert problem.check == "overlap"
    assert "2025-06-21 to 2025-07-20" in problem.message
