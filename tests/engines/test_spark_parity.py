"""The Spark engine gives the polars engine's cells, row for row, and the same ledger.

Skipped when pyspark (the ``spark`` extra, ``make install-spark``) or Java is not installed;
CI installs both.
"""

from __future__ import annotations

import shutil
from datetime import date

import polars as pl
import pytest
from polars.testing import assert_frame_equal

pytest.importorskip("pyspark", reason="pyspark is not installed (make install-spark)")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java: no java on PATH", allow_module_level=True)

from analysis.attribute import attribute
from analysis.cells import CELL_TABLES, build_cells
from analysis.config import SAMPLE_DATA_DIR
from analysis.engines.spark import spark_cells, spark_session
from analysis.load import load
from tests.conftest import write_world

pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")

#: Edge cases: a gap in spend, a case on a period boundary, listing periods that overlap, a
#: listing that starts and ends inside a case's window, flags exactly at listing and delisting
#: midnight, an account without advertiser, an advertiser without any spend row, a time offset.
EDGES = {
    "accounts": """
        account_id,advertiser_id
        a1,adv1
        a2,
        a3,adv2
        a4,adv1
        a5,adv3
    """,
    "advertisers": """
        advertiser_id,advertiser_name,parent_name
        adv1,Acme Video,Acme Group
        adv2,Beta Books,
        adv3,Gamma Games,
    """,
    "ad_spend": """
        advertiser_id,period_start,period_end,spend,currency
        adv1,2023-01-01,2023-01-31,310,USD
        adv1,2023-03-01,2023-03-10,100,USD
        adv1,2023-03-11,2023-06-30,1120,USD
        adv2,2023-01-01,2023-06-30,181,USD
    """,
    "enforcement": """
        case_id,account_id,flagged_at,policy,severity,action,decided_at,appealed,appeal_outcome
        c01,a1,2023-03-06T10:00:00Z,spam,0.2,removed,2023-03-07T10:00:00Z,true,reversed
        c02,a2,2023-04-06T10:00:00Z,spam,,no_action,,,
        c03,a3,2023-04-01T00:00:00Z,hate,0.9,restricted,2023-04-01T06:00:00Z,false,
        c04,a1,2023-01-05T00:00:00Z,hate,0.5,no_action,2023-04-01T06:00:00Z,,
        c05,a4,2023-02-15T23:30:00-02:00,spam,0.5,no_action,2023-02-16T12:00:00Z,,
        c06,a1,2023-03-11T00:00:00Z,spam,0.7,removed,2023-03-11T05:00:00Z,,
        c07,a4,2023-03-03T12:00:00Z,hate,0.4,no_action,2023-03-04T12:00:00Z,,
        c08,a4,2023-03-05T00:00:00Z,hate,0.1,removed,2023-03-05T08:00:00Z,true,upheld
        c09,a4,2023-04-01T00:00:00Z,spam,0.3333333333333333,removed,2023-04-02T00:00:00Z,,
        c10,a5,2023-05-01 08:00,spam,1,removed,2023-05-01T09:00:00Z,,
        c11,a3,2023-04-01T18:00:00+02:00,hate,0.66,removed,2023-04-03T00:00:00Z,yes,reversed
        c12,a1,2023-06-15T12:00:00Z,spam,,removed,,,
    """,
    "watchlist": """
        account_id,list_name,listed_at,delisted_at
        a1,do-not-moderate,2023-03-01,
        a4,do-not-moderate,2023-03-01,2023-03-05
        a4,priority,2023-03-20,
        a4,priority-review,2023-03-25,2023-04-10
    """,
}


@pytest.fixture(scope="module")
def spark():
    session = spark_session("local[2]", shuffle_partitions=4)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def polars_cells(folder, window_days):
    cases, ledger = attribute(load(folder), window_days=window_days, sort_by_case=False,
                              categorical=True)
    return build_cells(cases), ledger


def assert_same(spark, folder, window_days):
    expected, expected_ledger = polars_cells(folder, window_days)
    got, ledger = spark_cells(folder, window_days=window_days, spark=spark)
    assert ledger.to_dict() == expected_ledger.to_dict()
    for name in CELL_TABLES:
        assert_frame_equal(getattr(got, name), getattr(expected, name), check_exact=True)
    return got


def test_spark_cells_equal_polars_cells_on_edge_cases(spark, tmp_path) -> None:
    cells = assert_same(spark, write_world(tmp_path / "edges", EDGES), window_days=30)
    spend = {(r["account_id"], r["flag_date"]): r["trailing_spend"]
             for r in cells.spend.iter_rows(named=True)}
    # c06, flagged on the first day of a period (Mar 11): window Feb 9 - Mar 10 holds the gap
    # (nothing in February) and all of the 10-day period Mar 1-10 (100 USD).
    assert spend[("a1", date(2023, 3, 11))] == pytest.approx(100.0)
    # c01 (Mar 6): Mar 1-5 of that period, 50 USD.
    assert spend[("a1", date(2023, 3, 6))] == pytest.approx(50.0)
    listed = (cells.account.group_by("account_id", "listed").agg(pl.col("n").sum())
              .sort("account_id", "listed").rows())
    # a4: c07 (Mar 3, inside Mar 1-5) and c09 (Apr 1, inside two overlapping periods) listed;
    # c05 (before) and c08 (exactly at the delisting midnight) not.
    assert ("a4", True, 2) in listed and ("a4", False, 2) in listed
    # a5's advertiser has no spend row: trailing spend 0, so not an advertiser case.
    a5 = cells.account.filter(pl.col("account_id") == "a5").row(0, named=True)
    assert a5["advertiser_account"] and not a5["is_advertiser"] and a5["spend_tier"] == 0


def test_spark_cells_equal_polars_cells_on_the_sample(spark) -> None:
    cells = assert_same(spark, SAMPLE_DATA_DIR, window_days=90)
    # The committed sample world analyses 49,950 of its 50,000 cases.
    assert int(cells.account["n"].sum()) == 49_950
