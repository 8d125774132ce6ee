"""The stages composed: load → validate → attribute → cells → tests → results (→ report).

The command line and the notebooks both call these functions, so a number in a notebook is the
number in results.json.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from analysis.attribute import CoverageLedger, attribute
from analysis.battery import run_battery
from analysis.config import ALPHA, WINDOW_DAYS
from analysis.load import Dataset, load
from analysis.results import build_results
from analysis.stats.result import TestResult

Progress = Callable[[str], None]


@dataclass
class Analysis:
    """Everything one run of the battery produced."""

    dataset: Dataset
    cases: pl.DataFrame
    ledger: CoverageLedger
    tests: list[TestResult]
    parameters: dict[str, Any]

    @property
    def results(self) -> dict[str, Any]:
        return build_results(self.dataset, self.ledger, self.tests, parameters=self.parameters)


def analyze(data: str | Path | Dataset, *, window_days: int = WINDOW_DAYS, alpha: float = ALPHA,
            progress: Progress | None = None) -> Analysis:
    """Load (and validate) ``data``, attribute every case and run the battery.

    Parameters
    ----------
    data : str, Path or Dataset
        A data folder in the canonical contract, or an already loaded :class:`Dataset`.
    window_days : int, default 90
        Trailing-spend window.
    alpha : float, default 0.05
        Significance level of every test.
    progress : callable, optional
        Called with a short description as each stage starts.
    """
    say = progress or (lambda _: None)
    if isinstance(data, Dataset):
        dataset = data
    else:
        say("loading and validating the data")
        dataset = load(data)
    say("attributing spend and listing status to every case")
    lazy_cases, ledger = attribute(dataset, window_days=window_days)
    cases = lazy_cases.collect()
    say(f"running the battery on {cases.height:,} cases")
    tests = run_battery(cases, has_watchlist="watchlist" in dataset, alpha=alpha)
    parameters = {"window_days": window_days, "alpha": alpha}
    return Analysis(dataset, cases, ledger, tests, parameters)
