"""The DSA Transparency Database study: planted differences found, nulls not, the ledger adds up."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from analysis.results import write_json
from analysis.sources.dsa_tdb import DUPLICATE, read
from analysis.studies.dsa_transparency import (
    DESIGNS,
    NOT_REPORTED,
    results_document,
    run_study,
    statement_facts,
    study_coverage,
)

REFERENCE = Path(__file__).resolve().parents[2] / "data" / "reference" / "dsa_tdb"
# EU DSA Transparency Database, CC BY 4.0, doi:10.2906/134353607485211 (data/reference/MANIFEST.md)
V1 = REFERENCE / "sor-global-2024-03-14-full_first12rows.csv"

PLATFORMS = [f"Platform {k}" for k in range(1, 7)]
CATEGORIES = ["STATEMENT_CATEGORY_SCAMS_AND_FRAUD", "STATEMENT_CATEGORY_VIOLENCE",
              "STATEMENT_CATEGORY_OTHER_VIOLATION_TC"]
GROUNDS = ["DECISION_GROUND_ILLEGAL_CONTENT", "DECISION_GROUND_INCOMPATIBLE_CONTENT"]
DAY = datetime(2025, 7, 1, tzinfo=UTC)


def synthetic_statements(*, severe_or: float, speed_hr: float, seed: int,
                         per_stratum: int = 400) -> pl.DataFrame:
    """Statements of six platforms with a planted business effect, confounded by platform.

    Platforms with more business accounts remove less of everything, so a crude comparison
    sees business accounts treated more mildly even when, platform by platform, they are not
    (Simpson's paradox); the stratified tests must see through it. A business account's odds of
    a severe measure are ``severe_or`` times a private account's in the same stratum, and its
    daily hazard of the measure being applied is ``speed_hr`` times.
    """
    rng = np.random.default_rng(seed)
    columns: dict[str, list] = {name: [] for name in (
        "uuid", "platform_name", "category", "decision_ground", "account_type",
        "decision_visibility", "decision_monetary", "decision_provision", "decision_account",
        "automated_detection", "content_date", "application_date")}
    serial = 0
    for k, platform in enumerate(PLATFORMS):
        business_share = 0.1 + 0.13 * k
        for j, category in enumerate(CATEGORIES):
            for ground in GROUNDS:
                base_logit = 1.2 - 0.45 * k + 0.3 * j + (0.4 if "ILLEGAL" in ground else 0.0)
                rate = 0.2 + 0.05 * j + 0.03 * k  # measures per day, private accounts
                for _ in range(per_stratum):
                    serial += 1
                    business = rng.random() < business_share
                    logit = base_logit + (math.log(severe_or) if business else 0.0)
                    severe = rng.random() < 1 / (1 + math.exp(-logit))
                    delay = rng.exponential(1 / (rate * (speed_hr if business else 1.0)))
                    kind = rng.random()
                    columns["uuid"].append(f"{serial:08d}-0000-4000-8000-000000000000")
                    columns["platform_name"].append(platform)
                    columns["category"].append(category)
                    columns["decision_ground"].append(ground)
                    columns["account_type"].append(
                        None if rng.random() < 0.1 else
                        "ACCOUNT_TYPE_BUSINESS" if business else "ACCOUNT_TYPE_PRIVATE")
                    if severe and kind < 0.2:  # account suspended, no visibility decision
                        visibility, monetary, account = None, None, "DECISION_ACCOUNT_SUSPENDED"
                    elif severe:
                        visibility, monetary, account = (
                            ["DECISION_VISIBILITY_CONTENT_REMOVED"], None, None)
                    elif kind < 0.3:  # demonetised only
                        visibility, monetary, account = (
                            None, "DECISION_MONETARY_SUSPENSION", None)
                    else:
                        visibility, monetary, account = (
                            ["DECISION_VISIBILITY_CONTENT_DEMOTED"], None, None)
                    columns["decision_visibility"].append(visibility)
                    columns["decision_monetary"].append(monetary)
                    columns["decision_provision"].append(None)
                    columns["decision_account"].append(account)
                    columns["automated_detection"].append(bool(rng.random() < 0.5))
                    columns["application_date"].append(DAY)
                    columns["content_date"].append(DAY - timedelta(days=float(delay)))
    return pl.DataFrame(columns, schema_overrides={
        "decision_visibility": pl.List(pl.String), "decision_monetary": pl.String,
        "decision_provision": pl.String, "decision_account": pl.String,
        "account_type": pl.String})


@pytest.fixture(scope="module")
def planted() -> dict:
    return {r.id: r for r in run_study(synthetic_statements(severe_or=0.5, speed_hr=0.6,
                                                            seed=7))}


@pytest.fixture(scope="module")
def null() -> dict:
    return {r.id: r for r in run_study(synthetic_statements(severe_or=1.0, speed_hr=1.0,
                                                            seed=11))}


def test_planted_milder_measures_for_business_accounts_are_found(planted: dict) -> None:
    result = planted["business_severe_adjusted"]
    assert result.status == "ok"
    assert result.ci_low < 0.5 < result.ci_high  # the planted odds ratio
    assert 0.4 < result.estimate < 0.6
    assert result.p_adjusted < 0.05
    assert result.n_clusters == 6  # six platforms report both account types: they are clusters
    assert "delete-one-platform jackknife" in result.method
    assert "consistent with milder measures for business accounts" in result.conclusion
    assert "left up is not in the data" in result.conclusion
    assert [row["platform"] for row in result.details["by_platform"]] == PLATFORMS
    assert all(row["estimate"] < 1 for row in result.details["by_platform"])


def test_planted_later_decisions_for_business_accounts_are_found(planted: dict) -> None:
    result = planted["business_decision_speed"]
    assert result.status == "ok" and result.scale == "HR"
    assert result.ci_low < 0.6 < result.ci_high and 0.5 < result.estimate < 0.7
    assert result.p_adjusted < 0.05
    assert "applied later after the content was posted" in result.conclusion
    assert result.details["left_out"] == {"no content or application date": 0,
                                          "application date before content date": 0}


def test_equal_treatment_is_not_shown_when_there_is_a_difference(planted: dict) -> None:
    result = planted["business_equal_treatment"]
    assert result.status == "ok" and result.details["equivalent"] is False
    assert result.conclusion.startswith("Equal treatment cannot be shown")


def test_null_world_shows_no_difference_like_with_like(null: dict) -> None:
    for test_id in ("business_severe_adjusted", "business_decision_speed",
                    "business_automated_detection"):
        result = null[test_id]
        assert result.status == "ok"
        assert result.ci_low < 1 < result.ci_high, test_id
        assert result.p_adjusted > 0.05, test_id
        assert "no clear difference" in result.conclusion, test_id
    assert 0.8 < null["business_severe_adjusted"].estimate < 1.25
    assert "cannot be ruled out" in null["business_severe_adjusted"].conclusion


def test_null_world_crude_comparison_is_confounded_by_platform(null: dict) -> None:
    # Business accounts sit on the platforms that remove less, so crudely they look treated
    # more mildly (OR well below 1) although within every platform they are not.
    crude, adjusted = null["business_severe_crude"], null["business_severe_adjusted"]
    assert crude.estimate < 0.7 < adjusted.estimate


def test_results_follow_the_contract_and_family(planted: dict) -> None:
    assert list(planted) == list(DESIGNS)
    family = [planted[i] for i in ("business_severe_crude", "business_severe_adjusted",
                                   "business_decision_speed", "business_automated_detection")]
    assert all(r.p_adjusted >= r.p_value for r in family)
    tost = planted["business_equal_treatment"]
    assert tost.p_adjusted == tost.p_value
    json.dumps([r.to_dict() for r in planted.values()], allow_nan=False)


def test_statements_without_account_type_are_counted_not_analysed() -> None:
    statements = synthetic_statements(severe_or=1.0, speed_hr=1.0, seed=3, per_stratum=20)
    ledger = study_coverage(statements)
    missing = statements["account_type"].null_count()
    assert ledger.enforcement_rows == statements.height == 720
    assert ledger.excluded == {NOT_REPORTED: missing}
    assert ledger.analysed == statements.height - missing


def test_pandas_and_polars_inputs_give_the_same_facts() -> None:
    statements = synthetic_statements(severe_or=1.0, speed_hr=1.0, seed=5, per_stratum=5)
    from_polars = statement_facts(statements).collect()
    from_pandas = statement_facts(statements.to_pandas()).collect()
    assert from_pandas.select("uuid", "business", "severe", "measure", "exclusion").equals(
        from_polars.select("uuid", "business", "severe", "measure", "exclusion"))
    assert dict(from_polars["measure"].value_counts().iter_rows()).keys() <= {
        "account", "removal", "restriction", "monetary"}


def test_shipped_sample_is_skipped_with_reasons_and_its_ledger_reconciles(
        tmp_path: Path) -> None:
    dataset = read(V1)
    document = results_document(dataset)
    # 12 published rows: 1 exact duplicate, 11 statements none of which gives an account type.
    assert document["coverage"] == {"enforcement_rows": 12, "analysed": 0, "excluded": {
        NOT_REPORTED: 11, DUPLICATE: 1}}
    assert document["data"]["source"] == "dsa-tdb"
    assert [f["rows"] for f in document["data"]["files"]] == [12]
    assert {t["status"] for t in document["tests"]} == {"skipped"}
    assert document["tests"][0]["reason"] == "no statement gives a business or private account type"
    assert write_json(tmp_path / "results.json", document).exists()


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match="account_type"):
        run_study(pl.DataFrame({"uuid": ["a"]}))
