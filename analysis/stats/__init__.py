"""Statistics of levelfield: one module per design, one result type (:class:`Estimate`)."""

from analysis.stats.result import Estimate, TestResult

__all__ = ["Estimate", "TestResult"]
