"""What a test could have found, and how strong hidden bias would have to be.

A result that is not significant is only informative if the test had a fair chance of finding an
effect of a size that matters. The functions here answer that question for the estimates in
:mod:`analysis.stats`:

* :func:`mde_ratio` and :func:`mde_difference` turn a standard error into the *minimum detectable
  effect*: the smallest effect a two-sided Wald test at level ``alpha`` finds with probability
  ``power``.
* :func:`power_t_test` is the classic power of a two-sample t-test (as R's ``power.t.test``), for
  planning and for checking the normal approximations above against an exact answer.
* :func:`e_value` says how strongly an unmeasured confounder would have to be tied to both exposure
  and outcome to explain away an observed ratio (VanderWeele & Ding 2017).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from scipy import stats

__all__ = ["EValue", "e_value", "mde_difference", "mde_ratio", "power_t_test"]


def _check_alpha_power(alpha: float, power: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be between 0 and 1, got {power!r}")


def _z_sum(alpha: float, power: float) -> float:
    # A two-sided test rejects beyond z_{1-alpha/2}; an effect that sits z_power standard errors
    # further out is crossed with probability `power` (ignoring the negligible far tail).
    return float(stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power))


def mde_difference(se: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable difference for an estimate with standard error ``se``.

    The smallest true difference (in either direction) that a two-sided Wald test at level
    ``alpha`` detects with probability ``power``: ``(z_{1-alpha/2} + z_power) * se``. With the
    defaults this is 2.80 standard errors.

    Parameters
    ----------
    se : float
        Standard error of the estimate (e.g. of a difference in probabilities).
    alpha : float, default 0.05
        Significance level of the two-sided test.
    power : float, default 0.8
        Probability of detecting the effect.

    Returns
    -------
    float
        The minimum detectable difference, as a positive number on the scale of ``se``.

    Examples
    --------
    >>> round(mde_difference(0.01), 5)
    0.02802
    """
    _check_alpha_power(alpha, power)
    if not se >= 0.0:
        raise ValueError(f"se must be a non-negative number, got {se!r}")
    return _z_sum(alpha, power) * se


def mde_ratio(se_log: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable ratio below 1 (e.g. an odds ratio of leniency).

    Ratios are tested on the log scale, so the detectable log-ratio is ``(z_{1-alpha/2} +
    z_power) * se_log`` and the ratio is its exponential. We report the side below 1 because that
    is the direction of leniency (fewer enforcements); the detectable ratio above 1 is its
    reciprocal.

    Parameters
    ----------
    se_log : float
        Standard error of the log of the ratio (``Estimate.se`` for ratio scales).
    alpha : float, default 0.05
        Significance level of the two-sided test.
    power : float, default 0.8
        Probability of detecting the effect.

    Returns
    -------
    float
        ``exp(-(z_{1-alpha/2} + z_power) * se_log)``, a number in (0, 1].

    Examples
    --------
    An odds ratio estimated with a log-scale SE of 0.1 can reveal a true OR of 0.76 or lower:

    >>> round(mde_ratio(0.1), 4)
    0.7557
    """
    _check_alpha_power(alpha, power)
    if not se_log >= 0.0:
        raise ValueError(f"se_log must be a non-negative number, got {se_log!r}")
    return math.exp(-_z_sum(alpha, power) * se_log)


def power_t_test(*, n: float, delta: float, sd: float = 1.0, alpha: float = 0.05) -> float:
    """Power of a two-sided two-sample t-test with ``n`` observations per group.

    The test statistic follows a noncentral t distribution with ``2(n - 1)`` degrees of freedom and
    noncentrality ``sqrt(n/2) * delta / sd``; the power is the probability that it lands beyond
    the upper critical value. Like R's ``power.t.test`` (with its default ``strict = FALSE``) the
    tiny chance of rejecting in the wrong direction is not counted.

    Parameters
    ----------
    n : float
        Number of observations in each of the two groups.
    delta : float
        True difference in means.
    sd : float, default 1.0
        Standard deviation of the observations (equal in both groups).
    alpha : float, default 0.05
        Significance level.

    Returns
    -------
    float
        The probability that the test rejects.

    Examples
    --------
    Same as R ``power.t.test(n = 100, delta = 1, sd = 2.5)``:

    >>> round(power_t_test(n=100, delta=1, sd=2.5), 7)
    0.8036466
    """
    if not n > 1:
        raise ValueError(f"n must be greater than 1, got {n!r}")
    if not sd > 0:
        raise ValueError(f"sd must be positive, got {sd!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    df = 2.0 * (n - 1.0)
    noncentrality = math.sqrt(n / 2.0) * abs(delta) / sd
    critical = stats.t.isf(alpha / 2.0, df)
    return float(stats.nct.sf(critical, df, noncentrality))


class EValue(NamedTuple):
    """E-values of a ratio and of its confidence limit.

    Attributes
    ----------
    point : float
        E-value of the point estimate.
    ci : float or None
        E-value of the confidence limit nearest to 1 (1.0 when the interval contains 1); None
        when no limit was given.
    """

    point: float
    ci: float | None


def _e_value_of_risk_ratio(rr: float) -> float:
    if rr < 1.0:
        rr = 1.0 / rr
    return rr + math.sqrt(rr * (rr - 1.0))


def e_value(ratio: float, *, ci_limit: float | None = None, rare: bool = True) -> EValue:
    """E-value of a risk ratio (VanderWeele & Ding 2017), and of its confidence limit.

    The E-value is the minimum strength of association, on the risk-ratio scale, that an
    unmeasured confounder would need with *both* the exposure and the outcome to fully explain away
    the observed ratio: ``RR + sqrt(RR * (RR - 1))``. Ratios below 1 (leniency) are inverted
    first. A large E-value means only a strong hidden factor could account for the finding.

    For the confidence interval the E-value is computed at the limit nearest to 1; if the
    interval already contains 1 no confounding is needed to move it there and the E-value is 1.

    Odds ratios and hazard ratios approximate risk ratios only when the outcome is rare (under
    about 15%). For an odds ratio of a common outcome pass ``rare=False``: the ratio and the limit
    are then first converted with ``RR ~ sqrt(OR)`` (VanderWeele 2017). That conversion is for odds
    ratios only; do not use it for hazard ratios.

    Parameters
    ----------
    ratio : float
        The observed risk ratio (or odds ratio, see ``rare``); must be positive.
    ci_limit : float, optional
        The confidence limit nearest to 1 (the upper limit when ``ratio < 1``, the lower when
        ``ratio > 1``).
    rare : bool, default True
        Whether the outcome is rare, so that the ratio can be used as a risk ratio as it is.
        ``False`` applies the square-root conversion for odds ratios of common outcomes.

    Returns
    -------
    EValue
        ``point`` for the estimate and ``ci`` for the limit (None if no limit was given).

    Examples
    --------
    Both from VanderWeele & Ding (2017):

    >>> round(e_value(3.9).point, 6)
    7.263034
    >>> round(e_value(10.73).point, 5)
    20.94777
    >>> e_value(0.8, ci_limit=1.05).ci
    1.0
    """
    if not ratio > 0.0:
        raise ValueError(f"ratio must be positive, got {ratio!r}")
    if ci_limit is not None and not ci_limit > 0.0:
        raise ValueError(f"ci_limit must be positive, got {ci_limit!r}")
    given_ratio, given_limit = ratio, ci_limit
    if not rare:
        ratio = math.sqrt(ratio)
        ci_limit = None if ci_limit is None else math.sqrt(ci_limit)
    point = _e_value_of_risk_ratio(ratio)
    if ci_limit is None:
        return EValue(point=point, ci=None)
    # The limit must lie between the estimate and 1; past 1 means the interval includes the null.
    if (ratio >= 1.0 and ci_limit > ratio) or (ratio < 1.0 and ci_limit < ratio):
        raise ValueError(
            f"ci_limit {given_limit!r} is not the limit nearest to 1 for ratio {given_ratio!r}: "
            "pass the lower limit for a ratio above 1 and the upper limit for a ratio below 1"
        )
    crosses_null = (ratio >= 1.0 and ci_limit <= 1.0) or (ratio < 1.0 and ci_limit >= 1.0)
    ci = 1.0 if crosses_null else _e_value_of_risk_ratio(ci_limit)
    return EValue(point=point, ci=ci)
