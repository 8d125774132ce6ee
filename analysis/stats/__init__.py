"""Statistics of levelfield: one module per design, one result type (:class:`Estimate`).

Every function takes a pandas or polars frame of rows, or of cells with a count column, uses
keyword-only arguments and returns an :class:`Estimate`.
"""

from analysis.stats.equivalence import tost
from analysis.stats.multiplicity import adjust_p, rejections
from analysis.stats.power import (
    EValue,
    e_value,
    mde_difference,
    mde_ratio,
    power_t_test,
)
from analysis.stats.randomization import permutation_test
from analysis.stats.regression import (
    GroupedFit,
    did,
    event_study,
    grouped_glm,
    logistic,
)
from analysis.stats.result import Estimate, TestResult
from analysis.stats.stratified import mantel_haenszel, odds_ratio, trend
from analysis.stats.survival import cox, kaplan_meier, logrank, median_survival

__all__ = [
    "Estimate", "TestResult", "EValue", "GroupedFit",
    "odds_ratio", "mantel_haenszel", "trend",
    "grouped_glm", "logistic", "did", "event_study",
    "cox", "kaplan_meier", "logrank", "median_survival",
    "adjust_p", "rejections", "permutation_test", "tost",
    "mde_ratio", "mde_difference", "power_t_test", "e_value",
]
