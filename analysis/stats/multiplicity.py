"""Adjusting p-values for testing a family of questions at once.

The battery asks several questions of the same data. With ten tests at the 5% level, the chance
that at least one comes out "significant" by luck alone is far above 5%, so each p-value is adjusted
for the size of the family. The default is Benjamini and Hochberg's (1995) false discovery rate:
among the findings declared significant, the expected share of false ones is at most ``alpha``.
Bonferroni and Holm control the stricter family-wise error (the chance of any false finding).

Tests that did not run (skipped, or without a p-value) are passed through as ``None`` and are not
counted in the family.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from statsmodels.stats.multitest import multipletests

__all__ = ["METHODS", "adjust_p", "rejections"]

#: Adjustment methods accepted, as named by ``statsmodels.stats.multitest.multipletests``. The
#: two-stage FDR methods are left out because their adjusted p-values depend on ``alpha``.
METHODS = (
    "fdr_bh",
    "fdr_by",
    "bonferroni",
    "holm",
    "hommel",
    "sidak",
    "holm-sidak",
    "simes-hochberg",
)


def adjust_p(p_values: Sequence[float | None], *, method: str = "fdr_bh") -> list[float | None]:
    """Adjust a family of p-values for multiple testing.

    An adjusted p-value is compared with ``alpha`` as an ordinary one would be, but the rule then
    controls the error over the whole family. Benjamini–Hochberg (``"fdr_bh"``, the default) sorts
    the p-values and multiplies the i-th smallest of m by m / i (keeping the order), so that
    rejecting every adjusted p-value at or below ``alpha`` keeps the expected proportion of false
    discoveries at or below ``alpha``. ``"bonferroni"`` multiplies every p-value by m; ``"holm"``
    is a uniformly more powerful step-down version of it.

    Parameters
    ----------
    p_values : sequence of float or None
        One p-value per test, in any order. ``None`` or NaN marks a test without a p-value (e.g.
        skipped); it stays ``None`` in the output and does not count towards the family size.
    method : str, default "fdr_bh"
        One of :data:`METHODS`.

    Returns
    -------
    list of float or None
        Adjusted p-values in the order given (capped at 1).

    Examples
    --------
    Three tests ran and one was skipped; the smallest p-value is multiplied by 3, the next by 3/2:

    >>> def rounded(values):
    ...     return [None if p is None else round(p, 6) for p in values]
    >>> rounded(adjust_p([0.01, 0.04, None, 0.03]))
    [0.03, 0.04, None, 0.04]
    >>> rounded(adjust_p([0.01, 0.04, None, 0.03], method="bonferroni"))
    [0.03, 0.12, None, 0.09]
    """
    present, values = _family(p_values, method)
    adjusted: list[float | None] = [None] * len(p_values)
    if values.size:
        corrected = multipletests(values, method=method)[1]
        for position, value in zip(present, corrected, strict=True):
            adjusted[position] = float(min(value, 1.0))
    return adjusted


def rejections(
    p_values: Sequence[float | None], *, alpha: float = 0.05, method: str = "fdr_bh"
) -> list[bool | None]:
    """Which tests of a family are rejected at level ``alpha`` after adjustment.

    Parameters
    ----------
    p_values : sequence of float or None
        As for :func:`adjust_p`; ``None`` or NaN gives ``None``.
    alpha : float, default 0.05
        The false discovery rate (for FDR methods) or family-wise error rate to control.
    method : str, default "fdr_bh"
        One of :data:`METHODS`.

    Returns
    -------
    list of bool or None
        ``True`` where the null hypothesis is rejected, in the order given.

    Examples
    --------
    >>> rejections([0.01, 0.04, None, 0.03])
    [True, True, None, True]
    >>> rejections([0.01, 0.04, None, 0.03], method="bonferroni")
    [True, False, None, False]
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}.")
    present, values = _family(p_values, method)
    rejected: list[bool | None] = [None] * len(p_values)
    if values.size:
        decisions = multipletests(values, alpha=alpha, method=method)[0]
        for position, decision in zip(present, decisions, strict=True):
            rejected[position] = bool(decision)
    return rejected


def _family(p_values: Sequence[float | None], method: str) -> tuple[list[int], np.ndarray]:
    """Positions and values of the p-values that take part, after checking them."""
    if method not in METHODS:
        raise ValueError(f"Unknown adjustment method {method!r}; use one of {', '.join(METHODS)}.")
    present: list[int] = []
    values: list[float] = []
    for position, p in enumerate(p_values):
        if p is None or (isinstance(p, float) and math.isnan(p)):
            continue
        p = float(p)
        if math.isnan(p):
            continue
        if not 0 <= p <= 1:
            raise ValueError(f"p-value at position {position} is {p}, outside [0, 1].")
        present.append(position)
        values.append(p)
    return present, np.asarray(values, dtype=float)
