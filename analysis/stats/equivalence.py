"""Equivalence tests: can equal treatment be *shown*, not merely not disproved?

A test of difference that finds nothing does not show that there is nothing: a small or noisy
sample finds nothing too. To claim that listed accounts were treated like everyone else, the
question has to be turned around: is the difference demonstrably smaller than a stated margin?
That is an equivalence test. :func:`tost` runs Schuirmann's (1987) two one-sided tests (TOST) on
an estimate the battery has already made (e.g. the Mantel-Haenszel odds ratio of enforcement,
listed against not listed):

* one test asks whether the odds ratio is above the lower bound (``1 / margin``),
* the other whether it is below the upper bound (``margin``);

equivalence is shown when both reject at level ``alpha``, which is the same as the
``1 - 2·alpha`` (90%) confidence interval lying entirely inside the bounds.

**The default margin, 1.25 on the odds-ratio scale** (bounds 0.80 to 1.25). These are the
conventional 80-125% equivalence bounds, used for decades to decide that two medicines act alike
(US FDA, *Statistical Approaches to Establishing Bioequivalence*, 2001); they are symmetric on the
log scale, so "25% higher" and "20% lower" count as equally far from 1. For our question an odds
ratio of 0.8 means the odds that a flagged case is enforced are 20% lower for listed accounts,
roughly the smallest difference a newsroom would call preferential treatment; a smaller gap
would be hard to tell apart from ordinary differences between moderators, queues and weeks. The
margin is a judgement, not a statistic: it must be fixed before the data are seen, and a reader
who thinks 10% leniency already matters should rerun with ``margin=1.11``. On the probability
scale (e.g. a difference-in-differences) there is no conventional margin, so the caller must give
one (e.g. 0.05, five percentage points) and should say why (``rationale``).

**What an equivalence result rules out**, when ``details["equivalent"]`` is true: that the
comparison the estimate makes (e.g. listed against other accounts, same policy and severity
band, pooled over strata) differs by as much as the margin in either direction, at the stated
level, *provided* the estimate is unbiased and its standard error right.

**What it does not rule out:**

* smaller differences, inside the margin: equivalence is not equality;
* larger differences in some strata, policies or accounts that average out in the pooled
  estimate (look at the Breslow-Day test and the per-stratum results);
* leniency through channels the estimate does not measure: cases never flagged in the first
  place, slower decisions, reversals on appeal, lighter actions (restricted instead of removed);
* bias: confounders outside the strata, or a standard error that is too small (few clusters;
  compare the permutation test of :mod:`analysis.stats.randomization`). TOST uses the estimate's
  standard error as given.

And a result that is *not* equivalent is not evidence of a difference: it may only mean the data
are too few to tell (``details["reading"]`` says which of the four cases applies).
"""

from __future__ import annotations

import math
from typing import Any

from scipy import stats

from analysis.stats.result import Estimate

__all__ = ["DEFAULT_RATIO_MARGIN", "tost"]

#: Default equivalence margin on ratio scales: bounds 1/1.25 = 0.80 to 1.25 (see module docstring).
DEFAULT_RATIO_MARGIN = 1.25

_RATIO_SCALES = ("OR", "HR", "RR")
_NATURAL_SCALES = ("probability", "coefficient")
_RATIO_WORDS = {
    "OR": "odds ratio",
    "HR": "hazard ratio",
    "RR": "risk ratio",
}
_RATIO_MEANING = {
    "OR": "the odds that a flagged case is enforced are 20% lower",
    "HR": "cases are decided at a 20% lower rate",
    "RR": "the probability of the outcome is 20% lower",
}


def tost(
    estimate: Estimate,
    *,
    margin: float | None = None,
    alpha: float = 0.05,
    rationale: str | None = None,
) -> Estimate:
    """Two one-sided tests (TOST) of equivalence of an estimate within ``±margin``.

    Ratios (scales ``"OR"``, ``"HR"``, ``"RR"``) are tested on the log scale, with the bounds
    ``1 / margin`` and ``margin`` (``margin`` > 1; 1.25 by default, i.e. 0.80 to 1.25).
    Differences (scales ``"probability"`` and ``"coefficient"``) are tested on their own scale,
    with the bounds ``-margin`` and ``+margin``; there is no default margin for them.

    With ``θ`` the estimate (log of a ratio) and ``se`` its standard error (``estimate.se``,
    which for ratios is already on the log scale), the two one-sided tests are

    * lower: H0 ``θ <= lower bound``, ``z = (θ - lower) / se``, ``p = P(Z >= z)``;
    * upper: H0 ``θ >= upper bound``, ``z = (θ - upper) / se``, ``p = P(Z <= z)``.

    The TOST p-value is the larger of the two: equivalence is shown at level ``alpha`` when it
    is below ``alpha``, exactly when the ``1 - 2·alpha`` confidence interval ``θ ± z_(1-alpha)
    se`` lies inside the bounds. (The interval is 90%, not 95%, because each side is tested
    once at 5%.) The normal approximation is that of the estimate's own Wald interval; an
    estimate whose standard error understates its uncertainty makes equivalence too easy to show.

    Parameters
    ----------
    estimate : Estimate
        The estimate to test, e.g. the result of
        :func:`~analysis.stats.stratified.mantel_haenszel`; its ``se`` must be finite.
    margin : float, optional
        Ratio scales: the upper bound (> 1), the lower being its reciprocal; default 1.25.
        Difference scales: the half-width of the bounds (> 0), required.
    alpha : float, default 0.05
        Level of each one-sided test.
    rationale : str, optional
        Why this margin; recorded in ``details["margin_rationale"]``. The default margin has its
        rationale built in.

    Returns
    -------
    Estimate
        Same ``estimate``, ``scale``, ``se``, ``n`` and ``n_clusters`` as the input.
        ``p_value`` is the TOST p-value (the null is a difference at least as large as the
        margin, so a *small* p-value supports equivalence); ``ci_low``/``ci_high`` the
        ``1 - 2·alpha`` interval. ``details``: ``bounds`` (on the estimate's scale), ``margin``,
        ``confidence_level``, ``equivalent`` (bool), ``p_lower`` and ``p_upper`` (the one-sided
        p-values), ``z_lower``, ``z_upper``, ``difference_p_value`` (the input's own p-value),
        ``reading`` (one of ``"equivalent"``, ``"equivalent, though different"``,
        ``"different"``, ``"inconclusive"``), ``margin_rationale`` and ``tested_method``.

    Examples
    --------
    An odds ratio of 0.97 whose log has a standard error of 0.05: the 90% interval, 0.89 to
    1.05, lies inside 0.80 to 1.25.

    >>> from analysis.stats.result import Estimate
    >>> est = Estimate(estimate=0.97, ci_low=0.88, ci_high=1.07, p_value=0.54, scale="OR",
    ...                n=5000, se=0.05, method="example")
    >>> result = tost(est)
    >>> result.details["equivalent"], round(result.p_value, 6)
    (True, 5.8e-05)
    >>> round(result.ci_low, 3), round(result.ci_high, 3), result.details["reading"]
    (0.893, 1.053, 'equivalent')
    """
    if not 0 < alpha < 0.5:
        raise ValueError(
            f"alpha must be between 0 and 0.5 (each side is tested at alpha), got {alpha}."
        )
    scale = estimate.scale
    if scale in _RATIO_SCALES:
        if margin is None:
            margin = DEFAULT_RATIO_MARGIN
            if rationale is None:
                rationale = _default_rationale(scale)
        if not (math.isfinite(margin) and margin > 1):
            raise ValueError(
                f"On the {scale} scale the margin is the upper equivalence bound and must be "
                f"greater than 1 (e.g. 1.25 for bounds 0.80-1.25), got {margin}."
            )
        if not estimate.estimate >= 0:
            raise ValueError(f"A ratio estimate must be non-negative, got {estimate.estimate}.")
        theta = math.log(estimate.estimate) if estimate.estimate > 0 else -math.inf
        lower, upper = -math.log(margin), math.log(margin)
        to_scale = _exp
        working = "log scale"
    elif scale in _NATURAL_SCALES:
        if margin is None:
            raise ValueError(
                f"On the {scale} scale there is no conventional equivalence margin: give one "
                "(e.g. margin=0.05 for five percentage points) and say why in `rationale`."
            )
        if not (math.isfinite(margin) and margin > 0):
            raise ValueError(f"The margin must be a positive number, got {margin}.")
        theta = float(estimate.estimate)
        lower, upper = -float(margin), float(margin)
        to_scale = float
        working = f"{scale} scale"
    else:
        raise ValueError(
            f"tost tests ratios ({', '.join(_RATIO_SCALES)}) and differences "
            f"({', '.join(_NATURAL_SCALES)}), not estimates on the {scale!r} scale."
        )
    se = float(estimate.se)
    if math.isnan(se) or se < 0 or math.isnan(theta):
        raise ValueError(
            f"tost needs a point estimate and a non-negative standard error; got estimate "
            f"{estimate.estimate} with se {estimate.se}."
        )
    if rationale is None:
        rationale = (
            f"margin {margin:g} set by the caller, without a stated reason; say why a difference "
            "inside it would not matter"
        )

    z_lower, p_lower = _one_sided(theta - lower, se, reject_when="above")
    z_upper, p_upper = _one_sided(theta - upper, se, reject_when="below")
    p_tost = max(p_lower, p_upper)
    z_crit = float(stats.norm.isf(alpha))
    half_width = z_crit * se if math.isfinite(se) else math.inf
    ci_low, ci_high = to_scale(theta - half_width), to_scale(theta + half_width)
    bound_low, bound_high = to_scale(lower), to_scale(upper)
    # Equivalent exactly when the 1 - 2 alpha interval lies strictly inside the bounds.
    equivalent = bool(bound_low < ci_low and ci_high < bound_high)
    different = estimate.p_value < alpha
    if equivalent:
        reading = "equivalent, though different" if different else "equivalent"
    else:
        reading = "different" if different else "inconclusive"

    details: dict[str, Any] = {
        "bounds": [bound_low, bound_high],
        "margin": float(margin),
        "confidence_level": 1 - 2 * alpha,
        "equivalent": equivalent,
        "p_lower": p_lower,
        "p_upper": p_upper,
        "z_lower": z_lower,
        "z_upper": z_upper,
        "difference_p_value": estimate.p_value,
        "reading": reading,
        "margin_rationale": rationale,
        "tested_method": estimate.method,
    }
    method = (
        f"TOST: two one-sided z tests at {alpha:g} on the {working}, equivalence bounds "
        f"{bound_low:.4g} to {bound_high:.4g}, {1 - 2 * alpha:.0%} CI; using the estimate and "
        f"standard error of: {estimate.method}"
    )
    return Estimate(
        estimate=estimate.estimate,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_tost,
        scale=scale,
        n=estimate.n,
        se=estimate.se,
        method=method,
        n_clusters=estimate.n_clusters,
        details=details,
    )


def _one_sided(distance: float, se: float, *, reject_when: str) -> tuple[float, float]:
    """z and p of a one-sided test that the estimate lies ``distance`` above/below a bound."""
    if se == 0:
        # No uncertainty: the null is rejected exactly when the estimate is on the right side.
        inside = distance > 0 if reject_when == "above" else distance < 0
        z = math.copysign(math.inf, distance) if distance else 0.0
        return z, 0.0 if inside else 1.0
    z = distance / se if math.isfinite(se) else 0.0
    p = stats.norm.sf(z) if reject_when == "above" else stats.norm.cdf(z)
    return float(z), float(p)


def _exp(value: float) -> float:
    if value == -math.inf:
        return 0.0
    return math.exp(value) if value < 709.0 else math.inf


def _default_rationale(scale: str) -> str:
    return (
        f"default margin {DEFAULT_RATIO_MARGIN} on the {_RATIO_WORDS[scale]} scale, i.e. bounds "
        "0.80 to 1.25: the conventional 80-125% equivalence bounds (symmetric on the log scale); "
        f"a {_RATIO_WORDS[scale]} of 0.8 means {_RATIO_MEANING[scale]}, roughly the smallest "
        "difference a newsroom would call preferential treatment"
    )
