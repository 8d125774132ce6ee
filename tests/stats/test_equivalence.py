"""Tests of analysis.stats.equivalence: TOST p-values and intervals computed by hand with scipy."""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats

from analysis.stats.equivalence import DEFAULT_RATIO_MARGIN, tost
from analysis.stats.result import Estimate, TestResult

Z95 = stats.norm.isf(0.05)  # one-sided 5%: the half-width of a 90% interval, in SEs


def ratio_estimate(odds_ratio: float, se: float, *, scale: str = "OR") -> Estimate:
    """An estimate with its Wald 95% interval and two-sided p, as the stats functions give."""
    log_or = math.log(odds_ratio)
    return Estimate(
        estimate=odds_ratio,
        ci_low=math.exp(log_or - 1.959964 * se),
        ci_high=math.exp(log_or + 1.959964 * se),
        p_value=float(2 * stats.norm.sf(abs(log_or) / se)),
        scale=scale,
        n=10_000,
        se=se,
        method="Mantel-Haenszel common OR (test)",
        n_clusters=60,
    )


def difference_estimate(difference: float, se: float) -> Estimate:
    return Estimate(
        estimate=difference,
        ci_low=difference - 1.959964 * se,
        ci_high=difference + 1.959964 * se,
        p_value=float(2 * stats.norm.sf(abs(difference) / se)),
        scale="probability",
        n=8_000,
        se=se,
        method="difference-in-differences (test)",
    )


def test_log_or_zero_is_equivalent_with_hand_computed_p():
    result = tost(ratio_estimate(1.0, 0.05))
    # Both one-sided tests are as far from their bound: p = Φ(-log(1.25) / 0.05).
    expected = stats.norm.cdf(-math.log(1.25) / 0.05)
    assert result.p_value == pytest.approx(expected, rel=1e-12)
    assert result.details["p_lower"] == pytest.approx(expected, rel=1e-12)
    assert result.details["p_upper"] == pytest.approx(expected, rel=1e-12)
    assert result.details["equivalent"] is True
    assert result.details["reading"] == "equivalent"
    assert result.details["bounds"] == pytest.approx([0.8, 1.25], rel=1e-12)
    assert result.details["confidence_level"] == pytest.approx(0.90)
    assert result.ci_low == pytest.approx(math.exp(-Z95 * 0.05), rel=1e-12)
    assert result.ci_high == pytest.approx(math.exp(Z95 * 0.05), rel=1e-12)
    # The estimate itself and its bookkeeping are carried over unchanged.
    assert (result.estimate, result.se, result.n, result.n_clusters) == (1.0, 0.05, 10_000, 60)
    assert result.scale == "OR" and "TOST" in result.method and "Mantel-Haenszel" in result.method


def test_wide_interval_is_not_equivalent():
    result = tost(ratio_estimate(0.9, 0.3))
    theta = math.log(0.9)
    p_lower = stats.norm.sf((theta + math.log(1.25)) / 0.3)  # H0: OR <= 0.8
    p_upper = stats.norm.cdf((theta - math.log(1.25)) / 0.3)  # H0: OR >= 1.25
    assert result.details["p_lower"] == pytest.approx(p_lower, rel=1e-12)
    assert result.details["p_upper"] == pytest.approx(p_upper, rel=1e-12)
    assert result.p_value == pytest.approx(max(p_lower, p_upper), rel=1e-12)
    assert result.p_value > 0.3
    assert result.details["equivalent"] is False
    assert result.details["reading"] == "inconclusive"  # neither different nor equivalent
    assert result.ci_low == pytest.approx(0.9 * math.exp(-Z95 * 0.3), rel=1e-12)


def test_probability_scale_uses_plus_minus_margin():
    result = tost(difference_estimate(-0.01, 0.01), margin=0.05, rationale="five points")
    # Lower test: H0 difference <= -0.05, z = (-0.01 + 0.05) / 0.01 = 4;
    # upper test: H0 difference >= 0.05, z = (-0.01 - 0.05) / 0.01 = -6.
    assert result.details["z_lower"] == pytest.approx(4.0)
    assert result.details["z_upper"] == pytest.approx(-6.0)
    assert result.p_value == pytest.approx(stats.norm.sf(4.0), rel=1e-9)
    assert result.details["bounds"] == [-0.05, 0.05]
    assert result.ci_low == pytest.approx(-0.01 - Z95 * 0.01, rel=1e-12)
    assert result.ci_high == pytest.approx(-0.01 + Z95 * 0.01, rel=1e-12)
    assert result.details["equivalent"] is True
    assert result.details["margin_rationale"] == "five points"
    assert result.scale == "probability"

    wide = tost(difference_estimate(-0.03, 0.02), margin=0.05)
    assert wide.p_value == pytest.approx(stats.norm.sf((-0.03 + 0.05) / 0.02), rel=1e-9)
    assert wide.details["equivalent"] is False
    assert "without a stated reason" in wide.details["margin_rationale"]


def test_equivalent_exactly_when_p_below_alpha_and_ci_inside_bounds():
    for odds_ratio in (0.7, 0.8, 0.85, 0.95, 1.0, 1.1, 1.2, 1.3):
        for se in (0.01, 0.05, 0.1, 0.2):
            result = tost(ratio_estimate(odds_ratio, se))
            inside = 0.8 < result.ci_low and result.ci_high < 1.25
            assert result.details["equivalent"] is inside
            assert (result.p_value < 0.05) is inside


def test_statistically_different_yet_equivalent():
    # A 5% lower odds, very precisely measured: real, but inside the margin.
    result = tost(ratio_estimate(0.95, 0.01))
    assert result.details["difference_p_value"] < 0.001
    assert result.details["equivalent"] is True
    assert result.details["reading"] == "equivalent, though different"
    at_bound = tost(ratio_estimate(0.8, 0.001))
    assert at_bound.p_value == pytest.approx(0.5, abs=1e-6)  # on the bound: a coin toss
    assert tost(ratio_estimate(0.5, 0.05)).details["reading"] == "different"


def test_default_margin_rationale_and_custom_margin():
    result = tost(ratio_estimate(1.02, 0.04))
    assert DEFAULT_RATIO_MARGIN == 1.25
    rationale = result.details["margin_rationale"]
    assert "80-125%" in rationale and "20% lower" in rationale and "newsroom" in rationale
    narrow = tost(ratio_estimate(1.02, 0.04), margin=1.1, alpha=0.025)
    assert narrow.details["bounds"] == pytest.approx([1 / 1.1, 1.1])
    assert narrow.details["confidence_level"] == pytest.approx(0.95)
    assert narrow.ci_high == pytest.approx(1.02 * math.exp(stats.norm.isf(0.025) * 0.04))
    hazard = tost(ratio_estimate(1.0, 0.05, scale="HR"))
    assert "hazard ratio" in hazard.details["margin_rationale"]


def test_details_are_json_ready():
    result = tost(ratio_estimate(0.97, 0.05))
    entry = TestResult(
        id="equal_treatment", status="ok", question="q", estimand="e", scale=result.scale,
        estimate=result.estimate, p_value=result.p_value, details=result.details,
    )
    assert json.loads(json.dumps(entry.to_dict()))["details"]["equivalent"] is True


def test_errors():
    with pytest.raises(ValueError, match="greater than 1"):
        tost(ratio_estimate(1.0, 0.05), margin=0.8)
    with pytest.raises(ValueError, match="no conventional equivalence margin"):
        tost(difference_estimate(0.0, 0.01))
    with pytest.raises(ValueError, match="positive"):
        tost(difference_estimate(0.0, 0.01), margin=-0.05)
    chi2 = Estimate(estimate=3.2, ci_low=math.nan, ci_high=math.nan, p_value=0.07,
                    scale="chi2", n=10, se=math.nan, method="x")
    with pytest.raises(ValueError, match="not estimates on the 'chi2' scale"):
        tost(chi2)
    with pytest.raises(ValueError, match="alpha"):
        tost(ratio_estimate(1.0, 0.05), alpha=0.5)
    no_se = Estimate(estimate=1.0, ci_low=0.5, ci_high=2.0, p_value=1.0, scale="OR", n=10,
                     se=math.nan, method="x")
    with pytest.raises(ValueError, match="standard error"):
        tost(no_se)
