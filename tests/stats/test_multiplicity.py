"""Tests of analysis.stats.multiplicity against Benjamini & Hochberg (1995)."""

from __future__ import annotations

import math

import pytest

from analysis.stats.multiplicity import METHODS, adjust_p, rejections

# Benjamini & Hochberg (1995), the worked example of 15 p-values (VALIDATION.md).
BH_EXAMPLE = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344]
BH_EXAMPLE += [0.0459, 0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.0]


def test_benjamini_hochberg_example_rejects_four():
    # Benjamini & Hochberg (1995): at q = 0.05 the step-up procedure rejects 4 hypotheses
    assert sum(rejections(BH_EXAMPLE, alpha=0.05)) == 4
    assert rejections(BH_EXAMPLE)[:5] == [True, True, True, True, False]


def test_bonferroni_on_the_example_rejects_three():
    # Benjamini & Hochberg (1995): Bonferroni at 0.05 (threshold 0.05 / 15) rejects 3
    assert sum(rejections(BH_EXAMPLE, method="bonferroni")) == 3
    adjusted = adjust_p(BH_EXAMPLE, method="bonferroni")
    assert adjusted[3] == pytest.approx(0.0095 * 15)  # 0.1425 > 0.05
    assert adjusted[-1] == 1.0  # capped


def test_benjamini_hochberg_adjusted_values():
    adjusted = adjust_p(BH_EXAMPLE)
    # By the step-up definition, adjusted p_(i) = min over j >= i of p_(j) · m / j, m = 15:
    # 4th: min(.0095·15/4 = .035625, .0201·15/5 = .0603, .0278·15/6 = .0695, ...) = .035625
    assert adjusted[3] == pytest.approx(0.035625, rel=1e-12)
    # 5th: min(.0603, .0695, .0298·15/7 = .063857, .0344·15/8 = .0645, .0459·15/9 = .0765, ...)
    assert adjusted[4] == pytest.approx(0.0603, rel=1e-12)
    # 1st: min(.0015, .0004·15/2 = .003, ...) = .0015
    assert adjusted[0] == pytest.approx(0.0015, rel=1e-12)
    assert adjusted[-1] == 1.0
    assert adjusted == sorted(adjusted)  # monotone in the input order, which is sorted here


def test_missing_p_values_pass_through_and_are_not_counted():
    shuffled = [BH_EXAMPLE[4], None, BH_EXAMPLE[0], math.nan, *BH_EXAMPLE[1:4], *BH_EXAMPLE[5:]]
    adjusted = adjust_p(shuffled)
    assert adjusted[1] is None and adjusted[3] is None
    # the family is still the 15 p-values: same adjusted values, in the order given
    full = adjust_p(BH_EXAMPLE)
    assert adjusted[0] == pytest.approx(full[4]) and adjusted[2] == pytest.approx(full[0])
    decisions = rejections(shuffled)
    assert decisions[1] is None and decisions[3] is None
    assert sum(d for d in decisions if d is not None) == 4  # Benjamini & Hochberg (1995): 4


def test_empty_family_and_all_missing():
    assert adjust_p([]) == []
    assert adjust_p([None, math.nan]) == [None, None]
    assert rejections([None]) == [None]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_keeps_order_and_bounds(method):
    adjusted = adjust_p([0.04, None, 0.001, 0.5], method=method)
    assert adjusted[1] is None
    assert all(0 <= p <= 1 for p in adjusted if p is not None)
    assert adjusted[2] <= adjusted[0] <= adjusted[3]


def test_invalid_input_is_explained():
    with pytest.raises(ValueError, match="position 1"):
        adjust_p([0.2, 1.3])
    with pytest.raises(ValueError, match="Unknown adjustment method"):
        adjust_p([0.2], method="fdr_tsbh")
    with pytest.raises(ValueError, match="alpha"):
        rejections([0.2], alpha=0)
