"""The scale benchmarks' world generator (bench/generate.py) writes worlds that keep the contract."""

from __future__ import annotations

import importlib.util
import sys

import polars as pl
import pytest

from analysis.load import load
from tests.conftest import REPO

# bench/ is scripts, not a package: load the script as a module.
_SPEC = importlib.util.spec_from_file_location("bench_generate", REPO / "bench" / "generate.py")
generate = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = generate
_SPEC.loader.exec_module(generate)


@pytest.mark.parametrize(("cases_per_account", "accounts"), [(20, 1000), (100, 200)])
def test_world_keeps_the_contract(tmp_path, cases_per_account, accounts) -> None:
    rows = generate.generate(20_000, tmp_path, seed=3, chunk=7_000,
                             cases_per_account=cases_per_account)
    data = load(tmp_path)  # every rule of the contract checked; raises DataError otherwise
    enforcement = data["enforcement"].collect()
    assert rows["enforcement"] == enforcement.height == 20_000
    assert rows["accounts"] == data["accounts"].collect().height == accounts
    # Every account that has cases is in the accounts table, and ids are unique.
    assert enforcement["case_id"].n_unique() == 20_000
    known = set(data["accounts"].collect()["account_id"].to_list())
    assert set(enforcement["account_id"].unique().to_list()) <= known
    # The group's 60 brand accounts are listed from the directive date.
    watchlist = data["watchlist"].collect()
    assert watchlist.filter(pl.col("account_id").is_in(
        data["accounts"].collect()["account_id"].head(60).to_list())).height >= 60


def test_same_arguments_give_the_same_files(tmp_path) -> None:
    for name in ("a", "b"):
        generate.generate(5_000, tmp_path / name, seed=5, chunk=2_000, cases_per_account=50)
    for table in ("enforcement", "accounts", "ad_spend", "watchlist", "advertisers"):
        first = pl.read_parquet(tmp_path / "a" / f"{table}.parquet")
        assert first.equals(pl.read_parquet(tmp_path / "b" / f"{table}.parquet")), table
