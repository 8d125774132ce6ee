"""Cells: one streaming pass gives exactly the tables (and the results) of the collected cases."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from analysis.attribute import attribute, attribute_with_account_codes, weighted_quantile
from analysis.battery import Cells, run_battery
from analysis.cells import (
    CELL_TABLES,
    _count,
    build_cells,
    read_cells,
    sink_cells,
    write_cells,
)
from analysis.cli import app
from analysis.config import SAMPLE_DATA_DIR
from analysis.load import load
from analysis.pipeline import collect_cells, run_battery_on_cells


@pytest.fixture(scope="module")
def sample():
    return load(SAMPLE_DATA_DIR)


@pytest.fixture(scope="module")
def collected(sample):
    """The old way: every case in memory, aggregated by ``Cells.of``."""
    cases, _ = attribute(sample)
    return Cells.of(cases.collect())


@pytest.mark.parametrize("categorical", [True, False])
def test_streaming_cells_equal_cells_of_collected_cases(sample, collected, categorical) -> None:
    cases, ledger = attribute(sample, sort_by_case=False, categorical=categorical)
    cells = build_cells(cases)
    for name in CELL_TABLES:
        assert_frame_equal(getattr(cells, name), getattr(collected, name), check_exact=True)
    # The committed sample world: 50,000 cases, 50 outside the spend coverage (truth.json).
    assert int(cells.account["n"].sum()) == ledger.analysed == 49_950
    assert cells.account["account_id"].dtype == pl.String


def test_battery_on_cells_equals_battery_on_cases(sample, collected) -> None:
    cases, _ = attribute(sample, sort_by_case=False, categorical=True)
    on_cells = run_battery_on_cells(collect_cells(cases))
    on_cases = run_battery(collected.cases)
    assert on_cells == on_cases
    # listed_adjusted on the sample: MH OR 0.408 (the value the README's findings quote).
    listed = next(t for t in on_cells if t.id == "listed_adjusted")
    assert listed.estimate == pytest.approx(0.408, abs=5e-4)


def test_packed_keys_sort_and_count_like_plain_columns() -> None:
    kinds = pl.Enum(["alpha", "beta", "gamma"])
    frame = pl.LazyFrame({
        "who": pl.Series(["gamma", "alpha", None, "gamma", "alpha", "beta"], dtype=kinds),
        "flag": [True, None, False, True, True, False],
        "day": [date(2023, 1, 2), date(1969, 12, 31), None, date(2023, 1, 2), date(2023, 1, 1),
                date(2023, 1, 1)],
        "step": pl.Series([-3, 4, 0, -3, None, 127], dtype=pl.Int8),
        "text": ["b", "a", "a", "b", "c", None],
    })
    key = ["who", "flag", "day", "step", "text"]
    got = _count(frame, key).collect()
    expected = (frame.with_columns(pl.col("who").cast(pl.String)).group_by(key)
                .agg(pl.len().alias("n")).sort(key).collect())
    assert_frame_equal(got, expected, check_exact=True)
    # Nulls sort first, Enum text in its (sorted) category order; two gamma rows are one cell.
    assert got["who"].to_list() == [None, "alpha", "alpha", "beta", "gamma"]
    assert got["n"].to_list() == [1, 1, 1, 1, 2]


def _random_cases(n: int, seed: int) -> pl.LazyFrame:
    """Cases with every kind of key column, nulls in each, and spend fixed per account and day."""
    rng = np.random.default_rng(seed)
    accounts = pl.Enum([f"acct{i:03d}" for i in range(40)])
    policies = pl.Enum(["hate", "spam", "violence"])
    bands = pl.Enum(["high", "low", "medium", "unknown"])

    def maybe_null(values: list, share: float = 0.05) -> list:
        return [None if rng.random() < share else v for v in values]

    def flags() -> list:
        return maybe_null(rng.random(n) < 0.5)

    account = rng.integers(0, 40, n)
    day = rng.integers(0, 60, n)
    spend = np.where((account * 7 + day) % 5 == 0, 0.0, (account * 100 + day) / 3)
    return pl.LazyFrame({
        "account_id": pl.Series(maybe_null([f"acct{a:03d}" for a in account], 0.0), dtype=accounts),
        "advertiser_account": flags(),
        "policy": pl.Series(maybe_null(rng.choice(["hate", "spam", "violence"], n).tolist()),
                            dtype=policies),
        "severity_band": pl.Series(rng.choice(["high", "low", "medium", "unknown"], n).tolist(),
                                   dtype=bands),
        "listed": flags(), "ever_listed": flags(),
        "is_advertiser": (spend > 0).tolist(),
        "spend_tier": pl.Series(maybe_null(rng.integers(-2, 5, n).tolist()), dtype=pl.Int8),
        "enforced": flags(), "appealed": flags(), "reversed": flags(),
        "flag_date": maybe_null([date(2023, 1, 1) + timedelta(days=int(d)) for d in day]),
        "directive_date": maybe_null([date(2023, 2, 1)] * n, 0.1),
        "trailing_spend": spend,
    })


@pytest.mark.parametrize("parts", [1, 2])
def test_cells_counted_by_sorting_codes_equal_the_polars_group_by(tmp_path, parts) -> None:
    cases = _random_cases(3_000, seed=parts)
    sink_cells(cases, tmp_path / "sorted", parts=parts)
    got, expected = read_cells(tmp_path / "sorted"), build_cells(cases)
    for name in CELL_TABLES:
        assert_frame_equal(getattr(got, name), getattr(expected, name), check_exact=True)
    # No cases at all: four empty tables with the same columns.
    sink_cells(cases.filter(pl.lit(False)), tmp_path / "empty", parts=parts)
    empty = read_cells(tmp_path / "empty")
    for name in CELL_TABLES:
        assert_frame_equal(getattr(empty, name), getattr(expected, name).clear())


def test_cells_counted_range_by_range_with_the_number_of_cases_given(tmp_path, monkeypatch
                                                                    ) -> None:
    """Ranges of accounts of a few hundred cases each (at scale, about a million): the same
    tables; the number of cases, when given, must be right."""
    import analysis.cells

    cases = _random_cases(3_000, seed=5)
    monkeypatch.setattr(analysis.cells, "_CASES_PER_RANGE", 400)
    sink_cells(cases, tmp_path / "ranges", parts=2, rows=3_000)
    got, expected = read_cells(tmp_path / "ranges"), build_cells(cases)
    for name in CELL_TABLES:
        assert_frame_equal(getattr(got, name), getattr(expected, name), check_exact=True)
    for wrong in (2_999, 3_001):
        with pytest.raises(ValueError, match=f"{wrong:,} cases expected|{wrong:,} expected"):
            sink_cells(cases, tmp_path / "wrong", rows=wrong)


def test_weighted_quantile_is_polars_quantile_of_repeated_values() -> None:
    rng = np.random.default_rng(3)
    values = np.round(rng.lognormal(5, 2, 400), 1)
    weights = rng.integers(1, 6, 400)
    repeated = pl.Series(np.repeat(values, weights))
    for q in (0.25, 0.5, 0.75, 0.1, 0.9):
        assert weighted_quantile(values, weights, q) == repeated.quantile(q, "linear")
    # By hand: 1, 2, 2, 10 -> the 0.75 quantile is at position 3 * 0.75 = 2.25, a quarter of
    # the way from the third value (2) to the fourth (10): 2 + 0.25 * 8 = 4.
    assert weighted_quantile(np.array([10.0, 2.0, 1.0]), np.array([1, 2, 1]), 0.75) == 4.0
    assert weighted_quantile(np.array([]), np.array([], dtype=int), 0.5) is None


def test_write_and_read_cells_round_trip(sample, tmp_path) -> None:
    cases, _ = attribute(sample, sort_by_case=False, categorical=True)
    cells = build_cells(cases)
    written = write_cells(cells, tmp_path / "cells")
    assert [p.name for p in written] == [f"{t}_cells.parquet" for t in CELL_TABLES]
    back = read_cells(tmp_path / "cells")
    # Aggregated in three ranges of accounts, appended part by part: the same tables.
    sink_cells(cases, tmp_path / "parts", parts=3)
    parts = read_cells(tmp_path / "parts")
    for name in CELL_TABLES:
        assert_frame_equal(getattr(back, name), getattr(cells, name), check_exact=True)
        assert_frame_equal(getattr(parts, name), getattr(cells, name), check_exact=True)


@pytest.mark.parametrize("parts", [1, 3])
def test_cells_of_account_codes_are_the_cells_of_the_enum(sample, tmp_path, monkeypatch,
                                                          parts) -> None:
    """``levelfield cells`` keeps each case's account as its position in the sorted ids (an
    Enum of millions of accounts is slow in polars): the same cases, and the same files, byte
    for byte, also when the cells are counted by polars instead."""
    import analysis.cells

    cases, ledger = attribute(sample, sort_by_case=False, categorical=True)
    coded, coded_ledger, ids = attribute_with_account_codes(sample)
    assert coded_ledger == ledger
    assert ids.to_list() == cases.collect_schema()["account_id"].categories.to_list()
    assert coded.collect_schema()["account_id"] == pl.UInt32
    as_text = coded.with_columns(account_id=pl.lit(ids).gather(pl.col("account_id")))
    assert_frame_equal(as_text.collect(),
                       cases.with_columns(pl.col("account_id").cast(pl.String)).collect())
    sink_cells(cases, tmp_path / "enum", parts=parts)
    sink_cells(coded, tmp_path / "codes", parts=parts, accounts=ids)
    monkeypatch.setattr(analysis.cells, "_code_plan", lambda *_: None)  # polars counts
    sink_cells(coded, tmp_path / "polars", parts=parts, accounts=ids)
    enum = read_cells(tmp_path / "enum")
    for name in CELL_TABLES:
        file = f"{name}_cells.parquet"
        assert (tmp_path / "codes" / file).read_bytes() == (tmp_path / "enum" / file).read_bytes()
        assert_frame_equal(getattr(read_cells(tmp_path / "polars"), name), getattr(enum, name),
                           check_exact=True)


def test_cells_command_writes_the_tables_and_the_ledger(tiny_world, tmp_path) -> None:
    out = tmp_path / "cells"
    result = CliRunner().invoke(app, ["cells", "--data", str(tiny_world), "--out", str(out),
                                      "--window-days", "30"])
    assert result.exit_code == 0, result.output
    import json

    coverage = json.loads((out / "coverage.json").read_text())
    # The tiny world (tests/conftest.py): c4 needs spend from before the spend table starts.
    assert coverage["coverage"] == {"enforcement_rows": 5, "analysed": 4,
                                    "excluded": {"spend window outside spend coverage": 1}}
    account = read_cells(out).account
    assert int(account["n"].sum()) == 4
    # c1 (a1, flagged 2023-03-06 while listed) and c5 (a4, before its listing) are the two
    # listed-account rows; c1 has 50 USD of trailing spend, so it is an advertiser case.
    a1 = account.filter(pl.col("account_id") == "a1").row(0, named=True)
    assert a1["listed"] and a1["is_advertiser"] and a1["post"]

    bad = CliRunner().invoke(app, ["cells", "--data", str(tiny_world), "--out", str(out),
                                   "--engine", "dask"])
    assert bad.exit_code == 2 and "unknown engine" in bad.output


def test_day_table_spend_is_the_as_of_join_bit_for_bit() -> None:
    """The cells' trailing spend (binary search per advertiser-day) equals ``trailing_spend``."""
    from datetime import timedelta

    from analysis.attribute import (
        SpendCoverage,
        advertiser_days,
        spend_by_day,
        trailing_spend,
    )

    rng = np.random.default_rng(11)
    rows = []
    for adv in ("x", "y", "z"):
        day = date(2023, 1, 1)
        while day < date(2023, 12, 1):
            length = int(rng.integers(1, 60))
            if rng.random() < 0.7:  # otherwise a gap
                rows.append((adv, day, day + timedelta(days=length - 1),
                             float(rng.integers(0, 10_000)) / 7))
            day += timedelta(days=length)
    spend = pl.LazyFrame(rows, schema=["advertiser_id", "period_start", "period_end",
                                       "spend_amount"], orient="row")
    n = 300
    accounts = pl.LazyFrame({"account_id": ["ax", "ay", "az", "aw", "none"],
                             "advertiser_id": ["x", "y", "z", "w", None]})  # w: no spend rows
    enforcement = pl.LazyFrame({
        "account_id": rng.choice(["ax", "ay", "az", "aw", "none"], n).tolist(),
        "flag_date": [date(2023, 4, 1) + timedelta(days=int(d)) for d in rng.integers(0, 240, n)],
    })
    coverage = SpendCoverage(date(2023, 1, 1), date(2023, 12, 31), "USD")
    days = advertiser_days(enforcement, accounts).collect()
    for window in (1, 30, 90):
        got, ledger, unknown = spend_by_day(days, spend, coverage, window_days=window)
        expected = trailing_spend(days.lazy(), spend, window_days=window).collect()
        joined = got.join(expected.select("advertiser_id", "flag_date", "trailing_spend"),
                          on=["advertiser_id", "flag_date"], suffix="_as_of")
        assert joined.height == got.height > 0
        assert (joined["trailing_spend"] == joined["trailing_spend_as_of"]).all()
        assert ledger.enforcement_rows == n and unknown == 0
