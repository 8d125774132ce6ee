"""Tests of analysis.simulate: determinism, the data contract, and the planted truth."""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm
from polars.testing import assert_frame_equal

from analysis.simulate import SCENARIOS, TABLES, Scenario, simulate

SMALL = {"n_cases": 5000, "n_accounts": 800, "n_advertisers": 100}
WINDOW_DAYS = 90


def _truth_of(name: str, **overrides) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "world"
        simulate(name, seed=3, out=folder, **{**SMALL, "n_cases": 10_000, **overrides})
        return json.loads((folder / "truth.json").read_text())


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _trailing_spend(
    tables: dict[str, pl.DataFrame], window_days: int = WINDOW_DAYS
) -> pl.DataFrame:
    """Trailing spend per case, straight from DESIGN.md and independent of the simulator's code.

    Each spend period contributes spend * (days it shares with [flag_date - window, flag_date - 1])
    / (days of the period). ``outside`` marks windows that leave the spend table's span.
    """
    spend = tables["ad_spend"].with_columns(
        days=(pl.col("period_end") - pl.col("period_start")).dt.total_days() + 1
    )
    cases = (
        tables["enforcement"]
        .join(tables["accounts"].select("account_id", "advertiser_id"), on="account_id", how="left")
        .with_columns(flag_date=pl.col("flagged_at").dt.date())
        .with_columns(
            window_start=pl.col("flag_date") - pl.duration(days=window_days),
            window_end=pl.col("flag_date") - pl.duration(days=1),
        )
    )
    overlap = (
        cases.select("case_id", "advertiser_id", "window_start", "window_end")
        .join(spend, on="advertiser_id", how="inner")
        .with_columns(
            shared=(
                pl.min_horizontal("window_end", "period_end")
                - pl.max_horizontal("window_start", "period_start")
            ).dt.total_days()
            + 1
        )
        .filter(pl.col("shared") > 0)
        .group_by("case_id")
        .agg(trailing=(pl.col("spend") * pl.col("shared") / pl.col("days")).sum())
    )
    first, last = spend["period_start"].min(), spend["period_end"].max()
    return cases.join(overlap, on="case_id", how="left").with_columns(
        pl.col("trailing").fill_null(0.0),
        outside=(pl.col("window_start") < first) | (pl.col("window_end") > last),
        enforced=pl.col("action") != "no_action",
    )


@pytest.fixture(scope="module")
def small_worlds(tmp_path_factory) -> dict[str, tuple[dict[str, pl.DataFrame], dict, Path]]:
    worlds = {}
    for name in SCENARIOS:
        folder = tmp_path_factory.mktemp(name) / "world"
        tables = simulate(name, seed=11, out=folder, **SMALL)
        truth = json.loads((folder / "truth.json").read_text())
        worlds[name] = (tables, truth, folder)
    return worlds


# --- determinism and files ------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(tmp_path):
    simulate("seed-case", seed=5, out=tmp_path / "a", **SMALL)
    simulate("seed-case", seed=5, out=tmp_path / "b", **SMALL)
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert sorted(first) == sorted([f"{t}.csv.gz" for t in TABLES] + ["truth.json"])
    assert first == second


def test_different_seeds_give_different_worlds(tmp_path):
    simulate("seed-case", seed=5, out=tmp_path / "a", **SMALL)
    simulate("seed-case", seed=6, out=tmp_path / "b", **SMALL)
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert first["enforcement.csv.gz"] != second["enforcement.csv.gz"]
    assert first["ad_spend.csv.gz"] != second["ad_spend.csv.gz"]
    assert json.loads(second["truth.json"])["seed"] == 6


def test_files_read_back_as_the_returned_tables(small_worlds):
    tables, _, folder = small_worlds["seed-case"]
    for name, frame in tables.items():
        back = pl.read_csv(folder / f"{name}.csv.gz", schema=frame.schema)
        assert_frame_equal(back, frame)
    raw = pl.read_csv(folder / "enforcement.csv.gz", infer_schema=False)
    assert raw["flagged_at"].str.contains(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$").all()


def test_refuses_a_non_empty_folder_and_creates_a_missing_one(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        simulate("seed-case", seed=1, out=tmp_path / "full", **SMALL)
    assert _files(tmp_path / "full") == {"keep.txt": b"mine"}
    simulate("seed-case", seed=1, out=tmp_path / "new" / "nested", **SMALL)
    assert (tmp_path / "new" / "nested" / "truth.json").exists()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown scenario"):
        simulate("no-such-world", seed=1)
    with pytest.raises(TypeError, match="n_casez"):
        simulate("seed-case", seed=1, n_casez=10)
    with pytest.raises(TypeError, match="seed"):
        simulate("seed-case", seed=1.5)
    with pytest.raises(ValueError, match="n_listed"):
        simulate("seed-case", seed=1, n_listed=65)  # the group runs only 64 accounts
    with pytest.raises(ValueError, match="policy_mix_others"):
        Scenario(policy_mix_others={"unknown_policy": 1.0})


def test_default_sample_world_size(tmp_path):
    tables = simulate("seed-case", seed=20230601, out=tmp_path / "sample")
    assert tables["accounts"].height == 2500
    assert tables["advertisers"].height == 300
    assert 40_000 <= tables["enforcement"].height <= 60_000
    assert tables["watchlist"].height == 64
    written = sum(p.stat().st_size for p in (tmp_path / "sample").iterdir())
    assert written < 4_000_000


# --- the data contract ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_tables_satisfy_the_contract(small_worlds, name):
    tables, _, _ = small_worlds[name]
    accounts, advertisers = tables["accounts"], tables["advertisers"]
    spend, cases = tables["ad_spend"], tables["enforcement"]

    assert accounts["account_id"].null_count() == 0 and accounts["account_id"].is_unique().all()
    assert advertisers["advertiser_id"].is_unique().all()
    assert advertisers["advertiser_name"].null_count() == 0
    advertiser_ids = advertisers["advertiser_id"].implode()
    assert accounts["advertiser_id"].drop_nulls().is_in(advertiser_ids).all()
    assert (accounts["followers"] >= 0).all()

    assert spend["advertiser_id"].is_in(advertiser_ids).all()
    assert (spend["spend"] >= 0).all()
    assert (spend["period_end"] >= spend["period_start"]).all()
    assert spend["currency"].unique().to_list() == ["USD"]
    assert (spend["period_start"].dt.day() == 1).all()
    assert (spend["period_end"] == spend["period_start"].dt.month_end()).all()
    overlaps = spend.sort("advertiser_id", "period_start").filter(
        pl.col("period_start") <= pl.col("period_end").shift(1).over("advertiser_id")
    )
    assert overlaps.height == 0
    months = spend.group_by("advertiser_id").len()["len"]
    assert months.min() < months.max()  # some advertisers skip months

    assert cases["case_id"].null_count() == 0 and cases["case_id"].is_unique().all()
    assert cases["account_id"].is_in(accounts["account_id"].implode()).all()
    assert cases["flagged_at"].null_count() == 0 and cases["policy"].null_count() == 0
    assert cases["flagged_at"].dtype == pl.Datetime("us", "UTC")
    assert cases["severity"].drop_nulls().is_between(0, 1).all()
    assert 0.03 < cases["severity"].null_count() / cases.height < 0.07
    assert set(cases["action"].unique()) == {"removed", "restricted", "no_action"}
    assert set(cases["detection"].unique()) == {"automated", "user_report", "trusted_flagger"}
    decided = cases.filter(pl.col("decided_at").is_not_null())
    assert (decided["decided_at"] >= decided["flagged_at"]).all()
    pending = cases.filter(pl.col("decided_at").is_null())
    # Cases without a logged decision time are drawn at random (share_pending 2%), whatever
    # their action: their censoring carries no information about listing.
    assert 0.01 < pending.height / cases.height < 0.03
    assert set(pending["action"].unique()) == {"removed", "restricted", "no_action"}
    outcome = cases.filter(pl.col("appeal_outcome").is_not_null())
    assert outcome["appealed"].all()
    assert set(outcome["appeal_outcome"].unique()) == {"upheld", "reversed"}
    assert cases.filter(pl.col("appealed"))["appeal_outcome"].null_count() == 0
    assert (cases.filter(pl.col("appealed"))["action"] != "no_action").all()

    audit = tables["audit_sample"]
    assert audit["case_id"].is_unique().all()
    assert audit["case_id"].is_in(cases["case_id"].implode()).all()

    if name == "spend-dose":
        assert "watchlist" not in tables
    else:
        watchlist = tables["watchlist"]
        assert watchlist["account_id"].is_unique().all()
        assert watchlist["account_id"].is_in(accounts["account_id"].implode()).all()
        assert watchlist["list_name"].unique().to_list() == ["do-not-moderate"]
        assert watchlist["listed_at"].unique().to_list() == [SCENARIOS[name].directive_date]
        assert watchlist["delisted_at"].null_count() == watchlist.height
        listed = accounts.filter(pl.col("account_id").is_in(watchlist["account_id"].implode()))
        assert listed["advertiser_id"].null_count() == 0  # listed accounts are advertisers'


def test_seed_case_group_is_the_highest_paying_advertiser(small_worlds):
    tables, _, _ = small_worlds["seed-case"]
    totals = (
        tables["ad_spend"]
        .join(tables["advertisers"], on="advertiser_id")
        .with_columns(owner=pl.coalesce("parent_name", "advertiser_id"))
        .group_by("owner")
        .agg(pl.col("spend").sum())
        .sort("spend", descending=True)
    )
    assert totals["owner"][0] == "Orbital Retail Group"
    brands = tables["advertisers"].filter(pl.col("parent_name") == "Orbital Retail Group")
    assert brands.height == 4
    listed_owners = (
        tables["watchlist"]
        .join(tables["accounts"], on="account_id")
        .join(tables["advertisers"], on="advertiser_id")["parent_name"]
        .unique()
        .to_list()
    )
    assert listed_owners == ["Orbital Retail Group"]


# --- truth.json -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_truth_describes_the_world(small_worlds, name):
    tables, truth, _ = small_worlds[name]
    assert truth["scenario"] == name and truth["seed"] == 11 and truth["synthetic"] is True
    fields = {f.name for f in dataclasses.fields(Scenario)}
    assert set(truth["parameters"]) == fields
    assert truth["parameters"]["n_cases"] == SMALL["n_cases"]
    for test in ("listed_adjusted", "spend_adjusted", "directive_did", "advertiser_adjusted"):
        assert test in truth["estimands"]
    counts = truth["counts"]
    assert counts["cases"] == tables["enforcement"].height == SMALL["n_cases"]
    assert counts["accounts"] == tables["accounts"].height
    assert counts["advertisers"] == tables["advertisers"].height
    assert counts["ad_spend_rows"] == tables["ad_spend"].height
    assert counts["audit_sample"] == tables["audit_sample"].height == 50  # 1% of 5000
    listed = tables["watchlist"].height if "watchlist" in tables else 0
    assert counts["listed_accounts"] == listed
    assert counts["cases_spend_window_outside_coverage"] == 5  # 0.1% of 5000


def test_truth_json_is_sorted_and_indented(small_worlds):
    _, truth, folder = small_worlds["seed-case"]
    text = (folder / "truth.json").read_text()
    assert text == json.dumps(truth, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_trailing_spend_and_coverage_match_the_design_rule(small_worlds):
    for name in SCENARIOS:
        tables, truth, _ = small_worlds[name]
        cases = _trailing_spend(tables)
        covered = cases.filter(~pl.col("outside"))
        checks = truth["checks"]
        assert cases["outside"].sum() == truth["counts"]["cases_spend_window_outside_coverage"]
        assert covered["trailing"].sum() == pytest.approx(
            checks["trailing_spend_sum_usd_covered_cases"], rel=1e-9
        )
        assert (covered["trailing"] > 0).sum() == checks["cases_with_trailing_spend_covered"]
        first = tables["ad_spend"]["period_start"].min().isoformat()
        last = tables["ad_spend"]["period_end"].max().isoformat()
        assert checks["spend_coverage"] == [first, last] == ["2022-07-01", "2023-12-31"]


def test_listed_estimands_are_computed_correctly():
    # Without a random effect and without severity, every listed case of a policy has the same
    # probability, so the expected stratified OR is exactly the planted one.
    truth = _truth_of("seed-case", sd_u=0.0, beta_severity=0.0)
    assert truth["estimands"]["listed_adjusted"]["marginal_or"] == pytest.approx(0.35, rel=1e-9)
    # With a random effect the population-averaged OR moves towards 1. For sd_u = 2 the
    # Zeger, Liang & Albert (1988, Biometrics 44:1049) approximation gives
    # exp(log(0.35) / sqrt(1 + 0.3458 * 4)) = 0.5066; quadrature agrees within a few percent.
    wide = _truth_of("seed-case", sd_u=2.0, beta_severity=0.0)["estimands"]["listed_adjusted"]
    assert wide["conditional_or"] == pytest.approx(0.35)
    assert wide["marginal_or"] == pytest.approx(0.5066, rel=0.04)
    default = _truth_of("seed-case")["estimands"]
    assert SCENARIOS["seed-case"].sd_u == 0.3
    assert 0.35 < default["listed_adjusted"]["marginal_or"] < 0.37
    # The directive lowers listed accounts' enforcement probability by roughly 15-25 points.
    assert -0.25 < default["directive_did"]["difference"] < -0.15
    # For spend: log(0.7) / sqrt(1 + 0.3458 * 0.09) = -0.35125, exp = 0.70381 (same source).
    spend = _truth_of("spend-dose")["estimands"]
    assert spend["spend_adjusted"]["conditional_or_per_10x"] == pytest.approx(0.7)
    marginal_spend = spend["spend_adjusted"]["marginal_or_per_10x_approx"]
    assert marginal_spend == pytest.approx(0.70381, abs=1e-5)
    assert spend["listed_adjusted"] == {"skipped": "no watchlist in this scenario"}
    null = _truth_of("null-confounded")["estimands"]
    assert null["listed_adjusted"]["marginal_or"] == pytest.approx(1.0, abs=1e-12)
    assert null["directive_did"]["difference"] == pytest.approx(0.0, abs=1e-12)
    assert null["advertiser_adjusted"]["marginal_or"] == pytest.approx(1.0, abs=1e-12)


# --- the planted effects show in the data ---------------------------------------------------


def test_seed_case_listed_enforcement_drops_after_the_directive():
    tables = simulate("seed-case", seed=2023, n_cases=20_000)
    directive = SCENARIOS["seed-case"].directive_date
    rates = (
        tables["enforcement"]
        .with_columns(
            listed=pl.col("account_id").is_in(tables["watchlist"]["account_id"].implode()),
            after=pl.col("flagged_at").dt.date() >= directive,
            enforced=pl.col("action") != "no_action",
        )
        .group_by("listed", "after")
        .agg(rate=pl.col("enforced").mean(), n=pl.len())
    )

    def rate(listed: bool, after: bool) -> float:
        return rates.filter((pl.col("listed") == listed) & (pl.col("after") == after))["rate"][0]

    # Planted OR 0.35 takes a ~45% enforcement rate to roughly 25-30%.
    assert rate(True, False) - rate(True, True) > 0.10
    assert abs(rate(False, False) - rate(False, True)) < 0.02


def test_null_confounded_crude_gap_vanishes_within_policy():
    tables = simulate("null-confounded", seed=2024, n_cases=20_000)
    cases = tables["enforcement"].join(
        tables["accounts"].select("account_id", "advertiser_id"), on="account_id"
    ).with_columns(
        advertiser=pl.col("advertiser_id").is_not_null(), enforced=pl.col("action") != "no_action"
    )
    crude = cases.group_by("advertiser").agg(pl.col("enforced").mean()).sort("advertiser")
    others, advertisers = crude["enforced"].to_list()
    assert others - advertisers > 0.20

    by_policy = (
        cases.group_by("policy", "advertiser")
        .agg(rate=pl.col("enforced").mean(), n=pl.len())
        .pivot(on="advertiser", index="policy", values=["rate", "n"])
        .with_columns(
            gap=pl.col("rate_false") - pl.col("rate_true"),
            weight=1 / (1 / pl.col("n_true") + 1 / pl.col("n_false")),
        )
    )
    pooled_gap = (by_policy["gap"] * by_policy["weight"]).sum() / by_policy["weight"].sum()
    assert abs(pooled_gap) < 0.03
    big = by_policy.filter(pl.col("policy").is_in(["spam", "misleading_claims"]))
    assert (big["gap"].abs() < 0.03).all()


def test_spend_dose_slope_is_recovered():
    tables = simulate("spend-dose", seed=7, n_cases=20_000)
    cases = (
        _trailing_spend(tables)
        .filter(~pl.col("outside") & (pl.col("trailing") > 0))
        .with_columns(
            log10_spend=pl.col("trailing").log10(), severity=pl.col("severity").fill_null(0.5)
        )
    )
    policies = cases.select("policy").to_dummies(drop_first=True)
    design = pl.concat([cases.select("log10_spend", "severity"), policies], how="horizontal")
    enforced = cases["enforced"].cast(pl.Float64).to_numpy()
    clusters = cases["account_id"].rank("dense").to_numpy()
    model = sm.GLM(enforced, sm.add_constant(design.to_numpy()), family=sm.families.Binomial())
    fit = model.fit(cov_type="cluster", cov_kwds={"groups": clusters})
    # Planted log OR per tenfold spend: log(0.7) = -0.357.
    assert fit.params[1] == pytest.approx(math.log(0.7), abs=0.1)
    assert fit.params[1] + 1.96 * fit.bse[1] < 0


def test_audit_sees_through_favouritism():
    tables = simulate("seed-case", seed=8, n_cases=60_000, share_audited=0.2)
    audited = (
        tables["audit_sample"]
        .join(tables["enforcement"], on="case_id")
        .with_columns(
            listed_after=pl.col("account_id").is_in(tables["watchlist"]["account_id"].implode())
            & (pl.col("flagged_at").dt.date() >= SCENARIOS["seed-case"].directive_date),
            enforced=pl.col("action") != "no_action",
        )
    )
    violates = audited.group_by("enforced", "listed_after").agg(pl.col("violates").mean())
    spared = violates.filter(~pl.col("enforced") & pl.col("listed_after"))["violates"][0]
    ordinary = violates.filter(~pl.col("enforced") & ~pl.col("listed_after"))["violates"][0]
    enforced = audited.filter(pl.col("enforced"))["violates"].mean()
    assert enforced > 0.85
    assert spared - ordinary > 0.15  # spared cases of listed accounts look like violations


def test_scenario_accepts_dicts_and_stays_frozen():
    scenario = Scenario(policy_mix_others={"spam": 1.0})
    assert scenario.policy_mix_others == (("spam", 1.0),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        scenario.n_cases = 1  # type: ignore[misc]
    tables = simulate(scenario, seed=1, **SMALL)
    others = tables["enforcement"].join(tables["accounts"], on="account_id").filter(
        pl.col("advertiser_id").is_null()
    )
    assert others["policy"].unique().to_list() == ["spam"]
    # Cases are uniform in time: 92 of the 457 case days (plus the early cases) fall in 2022.
    in_2022 = tables["enforcement"].filter(pl.col("flagged_at").dt.year() == 2022).height
    assert np.isclose(in_2022 / SMALL["n_cases"], 92 / 457, atol=0.03)
