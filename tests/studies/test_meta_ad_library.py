"""The Meta Ad Library case study on the real Belgian, Bangladeshi and Andorran reports.

Each estimate is checked against an independent computation: the Pages are rebuilt from the CSV
with the csv module, the logistic regressions refitted with statsmodels' ``Logit`` and the trend
statistic recomputed from the Cochran-Armitage formula (Agresti, Categorical Data Analysis, 3rd
ed., section 5.3.5; R's ``prop.trend.test``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as sps

from analysis.results import write_json
from analysis.sources.meta_ad_library import read
from analysis.studies.meta_ad_library import results_document, run_study, study_pages
from tests.conftest import REPO

FOLDER = REPO / "data" / "reference" / "meta_ad_library"
BE = FOLDER / "FacebookAdLibraryReport_2025-07-12_BE_last_30_days_advertisers.csv"
BD = FOLDER / "FacebookAdLibraryReport_2025-07-10_BD_last_30_days_advertisers.csv"
AD = FOLDER / "FacebookAdLibraryReport_2025-07-13_AD_last_30_days_advertisers.csv"
WITHOUT = "These ads ran without a disclaimer"


def pages_by_csv(file: Path, low_bucket: float = 50.0) -> list[dict]:
    """Pages of one report: total and declared spend, caught or not (csv module only)."""
    with file.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    found: dict[str, dict] = {}
    for page_id, name, disclaimer, amount, _ in rows:
        key = page_id if page_id != "0" else f"0:{name}"
        value = low_bucket if amount == "≤100" else float(amount)
        page = found.setdefault(key, {"spend": 0.0, "declared": 0.0, "caught": False,
                                      "has_declared": False})
        page["spend"] += value
        if disclaimer == WITHOUT:
            page["caught"] = True
        else:
            page["declared"] += value
            page["has_declared"] = True
    return list(found.values())


def logit_or(pages: list[dict], spend: str) -> tuple[float, float, float, float]:
    """OR per tenfold spend (spend floored at 1), its 95% Wald CI and p, from statsmodels."""
    x = np.log10(np.maximum([p[spend] for p in pages], 1.0))
    y = np.array([p["caught"] for p in pages], dtype=float)
    fit = sm.Logit(y, sm.add_constant(x)).fit(disp=0)
    low, high = np.exp(fit.conf_int()[1])
    return math.exp(fit.params[1]), low, high, fit.pvalues[1]


def by_id(results) -> dict:
    return {r.id: r for r in results}


@pytest.fixture(scope="module")
def belgium() -> dict:
    return by_id(run_study(BE))


@pytest.fixture(scope="module")
def pooled() -> dict:
    return by_id(run_study(FOLDER))


@pytest.mark.parametrize("test_id, low_bucket", [("spend_caught", 50.0),
                                                 ("spend_caught_low", 0.0),
                                                 ("spend_caught_high", 100.0)])
def test_spend_caught_matches_statsmodels(belgium, test_id: str, low_bucket: float) -> None:
    result = belgium[test_id]
    estimate, low, high, p = logit_or(pages_by_csv(BE, low_bucket), "spend")
    assert result.status == "ok"
    assert result.n == 1002
    assert result.estimate == pytest.approx(estimate, rel=1e-6)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), rel=1e-6)
    assert result.p_value == pytest.approx(p, rel=1e-4)


def test_belgian_numbers(belgium) -> None:
    # The numbers of the Belgian report (30 days to 2025-07-12), as reported.
    assert round(belgium["spend_caught"].estimate, 3) == 0.066
    assert round(belgium["spend_caught_low"].estimate, 3) == 0.325
    assert round(belgium["spend_caught_high"].estimate, 3) == 0.045
    assert round(belgium["declared_spend_caught"].estimate, 2) == 1.60
    assert belgium["spend_caught"].details["analysed"] == {
        "pages": 1002, "caught": 587, "caught_only": 566, "caught_and_declared": 21,
        "declared": 436}
    # Sensitivity analyses are not hypotheses of their own: no adjusted p-value.
    assert belgium["spend_caught_low"].p_adjusted is None
    assert belgium["spend_caught"].p_adjusted is not None


def test_trend_matches_cochran_armitage(belgium) -> None:
    result = belgium["spend_tier_trend"]
    tiers = [(t["tier"], t["pages"], t["caught"]) for t in result.details["tiers"]]
    assert tiers == [(1, 783, 565), (2, 137, 14), (3, 71, 7), (4, 11, 1)]
    # Cochran-Armitage without continuity correction, as R's prop.trend.test.
    s = np.array([t[0] for t in tiers], float)
    n = np.array([t[1] for t in tiers], float)
    x = np.array([t[2] for t in tiers], float)
    p_bar = x.sum() / n.sum()
    s_bar = (n * s).sum() / n.sum()
    chi2 = ((x * (s - s_bar)).sum()) ** 2 / (p_bar * (1 - p_bar) * (n * (s - s_bar) ** 2).sum())
    assert result.details["chi2"] == pytest.approx(chi2, rel=1e-10)
    assert result.p_value == pytest.approx(sps.chi2.sf(chi2, 1), rel=1e-8)
    assert result.estimate < 1


def test_declared_spend_matches_statsmodels(belgium) -> None:
    result = belgium["declared_spend_caught"]
    declared = [p for p in pages_by_csv(BE) if p["has_declared"]]
    assert len(declared) == result.n == 436
    assert sum(p["caught"] for p in declared) == 21
    estimate, low, high, _ = logit_or(declared, "declared")
    assert result.estimate == pytest.approx(estimate, rel=1e-6)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), rel=1e-6)
    sensitivity = result.details["sensitivity"]
    assert sensitivity["low"]["estimate"] == pytest.approx(
        logit_or([p for p in pages_by_csv(BE, 0.0) if p["has_declared"]], "declared")[0],
        rel=1e-6)
    assert sensitivity["high"]["estimate"] == pytest.approx(
        logit_or([p for p in pages_by_csv(BE, 100.0) if p["has_declared"]], "declared")[0],
        rel=1e-6)


def test_bangladesh() -> None:
    results = by_id(run_study(BD))
    estimate = logit_or(pages_by_csv(BD), "spend")[0]
    assert results["spend_caught"].estimate == pytest.approx(estimate, rel=1e-6)
    assert results["spend_caught"].details["analysed"]["pages"] == 938
    assert results["spend_caught"].details["analysed"]["caught"] == 592
    assert round(results["declared_spend_caught"].estimate, 2) == 1.29


def test_andorra_cannot_answer_and_says_why() -> None:
    results = run_study(AD)
    assert [r.status for r in results] == ["skipped"] * 5
    reasons = {r.id: r.reason for r in results}
    assert reasons["spend_caught"].startswith("spend does not vary (every amount is ≤100")
    assert reasons["declared_spend_caught"] == ("no Page was caught: there is no outcome to "
                                                "relate spend to")


def test_pooled_reports_leave_out_andorra_with_the_reason(pooled) -> None:
    main = pooled["spend_caught"]
    assert [r["report"] for r in main.details["reports_left_out"]] == [
        "AD last_30_days to 2025-07-13"]
    assert main.n == 1002 + 938
    # One intercept per report: the slope is the same in any currency, no exchange rates needed.
    assert "report" in main.details["reference_levels"]
    be, bd = pages_by_csv(BE), pages_by_csv(BD)
    x = np.log10(np.maximum([q["spend"] for q in be + bd], 1.0))
    bangladesh = np.array([0.0] * len(be) + [1.0] * len(bd))
    y = np.array([q["caught"] for q in be + bd], dtype=float)
    fit = sm.Logit(y, sm.add_constant(np.column_stack([x, bangladesh]))).fit(disp=0)
    assert main.estimate == pytest.approx(math.exp(fit.params[1]), rel=1e-6)
    assert round(main.estimate, 3) == 0.062
    assert [c["report_rows"] for c in main.details["counts"]] == [66, 959, 1036]


def test_conclusions_spell_out_the_caveats(belgium) -> None:
    text = belgium["spend_caught"].conclusion
    assert text.startswith("Of 1,002 Pages, 587 were caught running political ads without a "
                           "disclaimer; each tenfold step in a Page's spend went with 93% lower "
                           "odds of being caught (odds ratio 0.07, 95% CI 0.04 to 0.11")
    assert "This cannot be read as leniency: 566 of the 587 caught Pages ran only undeclared ads" \
        in text
    assert "Only Pages that ran political ads are in the report" in text
    declared = belgium["declared_spend_caught"].conclusion
    assert "21 were also caught" in declared
    assert "compares catches, not violations" in declared


def test_results_document(tmp_path: Path, pooled) -> None:
    document = results_document(FOLDER, results=list(pooled.values()))
    assert list(document) == ["schema_version", "levelfield_version", "synthetic", "data",
                              "parameters", "coverage", "tests", "study"]
    assert document["schema_version"] == 1 and document["synthetic"] is False
    files = {f["name"]: f for f in document["data"]["files"]}
    for file, rows in ((BE, 1036), (BD, 959), (AD, 66)):
        assert files[file.name]["rows"] == rows
        assert files[file.name]["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    coverage = document["coverage"]
    assert coverage["report_rows"] == 1036 + 959 + 66
    assert coverage["enforcement_rows"] == 1002 + 938 + 66
    assert coverage["analysed"] == 1002 + 938
    assert sum(coverage["excluded"].values()) == 66
    assert [t["id"] for t in document["tests"]] == list(pooled)
    first = write_json(tmp_path / "a.json", document).read_bytes()
    again = write_json(tmp_path / "b.json", results_document(FOLDER, results=list(
        pooled.values()))).read_bytes()
    assert first == again
    assert json.loads(first)["tests"][0]["id"] == "spend_caught"


def test_a_dataset_from_the_adapter_gives_the_same_study(belgium) -> None:
    from_dataset, reports = study_pages(read(BE))
    assert reports.rows.height == 1036
    assert from_dataset.equals(study_pages(BE)[0])
    assert belgium["spend_caught"].n == from_dataset.height == 1002
