"""Smoke run of the calibration study (bench/calibrate.py) on three tiny worlds of each kind."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import REPO

# bench/ is scripts, not a package: load the script as a module (registered, for its dataclasses).
_SPEC = importlib.util.spec_from_file_location("bench_calibrate", REPO / "bench" / "calibrate.py")
calibrate = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = calibrate
_SPEC.loader.exec_module(calibrate)

WORLDS = 3
# Tiny worlds keep the run to seconds (the 64 listed accounts of the scenarios need ~60
# advertisers); more appeals keep the appeal comparison from being too sparse to estimate.
TINY = {"n_cases": 2000, "n_accounts": 400, "n_advertisers": 60, "share_appealed": 0.3}
COLUMNS = ["scenario", "test", "metric", "value", "lo", "hi", "n_worlds", "target",
           "within_target"]
# One null and one planted kind exercise every metric; all four would take three times as long.
KINDS = tuple(k for k in calibrate.WORLD_KINDS if k.label in ("null-seed-case", "seed-case"))
RATES = ("type_i_error", "type_i_error_randomization", "equivalence_shown", "coverage",
         "coverage_conditional_truth")


@pytest.fixture(scope="module")
def run() -> tuple[pl.DataFrame, pl.DataFrame]:
    per_world = calibrate.calibrate(worlds=WORLDS, kinds=KINDS, size=TINY, workers=1)
    return per_world, calibrate.summarize(per_world, kinds=KINDS)


def test_table_shape(run) -> None:
    per_world, table = run
    assert table.columns == COLUMNS
    assert set(per_world["seed"].unique().to_list()) == {0, 1, 2}
    assert table["scenario"].unique(maintain_order=True).to_list() == [
        "null-seed-case", "seed-case"]
    # Null worlds: one type I row per hypothesis test, the randomization p-values, and TOST.
    rows = table.filter(pl.col("scenario") == "null-seed-case")
    assert rows.filter(pl.col("metric") == "type_i_error")["test"].to_list() == list(
        calibrate.TYPE_I_TESTS)
    assert rows.filter(pl.col("metric") == "type_i_error_randomization")["test"].to_list() == list(
        calibrate.RANDOMIZATION_TESTS)
    crude = rows.filter((pl.col("test") == "listed_unadjusted")
                        & (pl.col("metric") == "type_i_error"))
    assert crude["within_target"].item() == calibrate.CRUDE_VERDICT
    assert rows.filter(pl.col("metric") == "equivalence_shown")["test"].to_list() == [
        "equal_treatment"]
    # Planted worlds: coverage of every test with a truth, and of the conditional truths too.
    planted = table.filter(pl.col("scenario") == "seed-case")
    assert planted.filter(pl.col("metric") == "coverage")["test"].to_list() == list(
        calibrate.COVERAGE_TESTS["seed-case"])
    assert planted.filter(pl.col("metric") == "coverage_conditional_truth")["test"].to_list() \
        == ["listed_adjusted", "spend_adjusted"]
    assert "type_i_error" not in planted["metric"].to_list()


def test_rates_are_shares_of_worlds(run) -> None:
    _, table = run
    rates = table.filter(pl.col("metric").is_in(RATES))
    assert rates.height > 0
    for row in rates.iter_rows(named=True):
        assert 1 <= row["n_worlds"] <= WORLDS
        assert 0.0 <= row["lo"] <= row["value"] <= row["hi"] <= 1.0
        hits = row["value"] * row["n_worlds"]
        assert math.isclose(hits, round(hits), abs_tol=1e-5)  # a count of worlds
        assert row["within_target"] in {"yes", "uncertain", "no", calibrate.CRUDE_VERDICT, ""}


def test_binomial_interval_and_verdict() -> None:
    # Clopper-Pearson 95% interval of 15 of 300, as R's binom.test(15, 300): 0.02825 to 0.08113.
    row = calibrate._rate_row("w", "t", "type_i_error", 15, 300, calibrate.TYPE_I_TARGET)
    assert row["value"] == pytest.approx(0.05)
    assert row["lo"] == pytest.approx(0.0282512, abs=1e-6)
    assert row["hi"] == pytest.approx(0.0811274, abs=1e-6)
    assert row["within_target"] == "yes"
    # 0 of 300: the upper limit has the closed form 1 - 0.025^(1/300) = 0.012221, below 0.04.
    none = calibrate._rate_row("w", "t", "type_i_error", 0, 300, calibrate.TYPE_I_TARGET)
    assert none["hi"] == pytest.approx(1 - 0.025 ** (1 / 300))
    assert none["within_target"] == "no"
    # 25 of 300 = 0.083 lies above the band, but its interval (0.055-0.120) reaches into it.
    assert calibrate._rate_row("w", "t", "m", 25, 300, (0.04, 0.06))["within_target"] == (
        "uncertain")


def test_outputs_are_written(run, tmp_path: Path) -> None:
    per_world, table = run
    command = "python bench/calibrate.py --worlds 3 --out x"
    paths = calibrate.write_outputs(table, tmp_path, command=command, worlds=WORLDS, size=TINY,
                                    kinds=KINDS, failed=calibrate.failures(per_world))
    assert [p.name for p in paths] == ["calibration.csv", "calibration.md", "calibration.png",
                                       "calibration.svg"]
    assert pl.read_csv(paths[0]).columns == COLUMNS
    text = paths[1].read_text(encoding="utf-8")
    assert command in text and "## Type I error" in text
