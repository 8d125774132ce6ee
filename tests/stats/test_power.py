"""Tests of analysis.stats.power against published values and against each other."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from analysis.stats.power import e_value, mde_difference, mde_ratio, power_t_test


def test_power_t_test_matches_r():
    # R: power.t.test(n = 100, delta = 1, sd = 2.5) -> power = 0.8036466 (VALIDATION.md)
    assert round(power_t_test(n=100, delta=1, sd=2.5), 7) == 0.8036466


def test_power_t_test_grows_with_n_and_alpha():
    assert power_t_test(n=50, delta=1, sd=2.5) < power_t_test(n=100, delta=1, sd=2.5)
    assert power_t_test(n=100, delta=1, sd=2.5, alpha=0.01) < 0.8036466
    # no difference: only the upper tail of alpha is counted (R's strict = FALSE)
    assert power_t_test(n=100, delta=0, sd=1) == pytest.approx(0.025, rel=1e-12)


def test_mde_is_2_8_standard_errors():
    # two-sided 5% test with 80% power: z_0.975 + z_0.8 = 1.959964 + 0.841621 = 2.801585
    assert mde_difference(1.0) == pytest.approx(2.801585, abs=1e-6)
    assert mde_difference(0.01) == pytest.approx(0.02801585, abs=1e-8)
    assert mde_ratio(0.1) == pytest.approx(math.exp(-0.2801585), rel=1e-6)
    assert mde_ratio(0.0) == 1.0


def test_wald_test_has_the_stated_power_at_the_mde():
    se = 0.07
    for alpha, power in [(0.05, 0.8), (0.01, 0.9)]:
        effect = mde_difference(se, alpha=alpha, power=power)
        z = stats.norm.ppf(1 - alpha / 2)
        # the rejection probability beyond the near critical value is exactly `power`
        assert stats.norm.sf(z - effect / se) == pytest.approx(power, rel=1e-12)
        log_ratio = math.log(mde_ratio(se, alpha=alpha, power=power))
        assert log_ratio == pytest.approx(-effect, rel=1e-12)


def test_mde_agrees_with_exact_t_test_power_for_large_samples():
    n, sd = 20_000, 1.0
    se = sd * math.sqrt(2 / n)  # SE of a difference of two means with n per group
    assert power_t_test(n=n, delta=mde_difference(se), sd=sd) == pytest.approx(0.8, abs=1e-4)


def test_e_value_published_examples():
    # VanderWeele & Ding 2017: RR 3.9 -> 7.263034, RR 10.73 -> 20.94777 (VALIDATION.md)
    assert round(e_value(3.9).point, 6) == 7.263034
    assert round(e_value(10.73).point, 5) == 20.94777
    # ratios below 1 are inverted first
    assert round(e_value(1 / 3.9).point, 6) == 7.263034
    assert e_value(3.9).ci is None


def test_e_value_of_the_confidence_limit():
    # VanderWeele & Ding 2017, RR 3.9 with 95% CI 1.8 to 8.7: E-value of the lower limit
    # 1.8 + sqrt(1.8 * 0.8) = 3.0
    assert e_value(3.9, ci_limit=1.8).ci == pytest.approx(3.0, abs=1e-12)
    assert e_value(1 / 3.9, ci_limit=1 / 1.8).ci == pytest.approx(3.0, abs=1e-12)
    # an interval that contains 1 needs no confounding to reach the null
    assert e_value(0.8, ci_limit=1.05).ci == 1.0
    assert e_value(1.3, ci_limit=0.97).ci == 1.0
    with pytest.raises(ValueError, match="nearest to 1"):
        e_value(0.8, ci_limit=0.6)


def test_e_value_of_odds_ratio_for_a_common_outcome():
    # VanderWeele 2017 conversion RR ~ sqrt(OR): OR 4 -> RR 2 -> 2 + sqrt(2)
    result = e_value(4.0, ci_limit=2.25, rare=False)
    assert result.point == pytest.approx(2 + math.sqrt(2), abs=1e-12)
    assert result.ci == pytest.approx(1.5 + math.sqrt(1.5 * 0.5), abs=1e-12)


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError):
        mde_ratio(-0.1)
    with pytest.raises(ValueError):
        mde_difference(0.1, power=1.2)
    with pytest.raises(ValueError):
        power_t_test(n=1, delta=1, sd=1)
    with pytest.raises(ValueError):
        e_value(0.0)
