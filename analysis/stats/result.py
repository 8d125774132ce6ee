"""The two result types of levelfield's statistics.

``Estimate`` is what every public function in :mod:`analysis.stats` returns: a number, its 95%
confidence interval, a p-value and how they were obtained. ``TestResult`` is one entry of the
battery: an ``Estimate`` put in the words of the question it answers, as written to results.json.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Scale = Literal["OR", "HR", "RR", "probability", "coefficient", "chi2"]


@dataclass(frozen=True)
class Estimate:
    """One estimate with its uncertainty.

    Attributes
    ----------
    estimate : float
        The point estimate, on the stated ``scale`` (an odds ratio, not its log).
    ci_low, ci_high : float
        The 95% (or ``1 - alpha``) confidence interval.
    p_value : float
        Two-sided p-value for the null of no difference (OR = 1, HR = 1, difference = 0).
    scale : str
        ``"OR"``, ``"HR"``, ``"RR"``, ``"probability"`` (a difference in probabilities) or
        ``"coefficient"``.
    n : int
        Number of rows (cases) behind the estimate.
    se : float
        Standard error on the working scale: of the log for ratio scales, of the estimate otherwise.
    n_clusters : int or None
        Number of independent clusters (accounts) when the uncertainty accounts for clustering.
    method : str
        How the estimate, interval and p-value were computed, in one line.
    details : dict
        Further statistics (test statistics, alternative intervals, counts), JSON-serialisable.
    """

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    scale: str
    n: int
    se: float
    method: str
    n_clusters: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def is_ratio(self) -> bool:
        return self.scale in ("OR", "HR", "RR")

    def summary(self) -> str:
        """One line: estimate, interval and p-value."""
        return (
            f"{self.scale} {self.estimate:.4g} (95% CI {self.ci_low:.4g} to {self.ci_high:.4g}), "
            f"p = {self.p_value:.3g}, n = {self.n}"
            + (f", {self.n_clusters} clusters" if self.n_clusters else "")
        )

    def __str__(self) -> str:  # pragma: no cover - convenience for notebooks
        return self.summary()


@dataclass(frozen=True)
class TestResult:
    """One test of the battery, as written to results.json (see DESIGN.md, results contract)."""

    __test__ = False  # not a pytest test class

    id: str
    status: Literal["ok", "skipped"]
    question: str
    estimand: str
    scale: str
    method: str = ""
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    n: int | None = None
    n_clusters: int | None = None
    mde: float | None = None
    conclusion: str = ""
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; non-finite floats become None so the JSON stays valid."""
        return _clean(asdict(self))


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
