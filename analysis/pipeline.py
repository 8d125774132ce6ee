"""The stages composed: load → validate → attribute → cells → tests → results (→ report).

The command line and the notebooks both call these functions, so a number in a notebook is the
number in results.json.

The attributed cases are never collected whole: :func:`analyze` runs the attribution once, in a
streaming pass that feeds the four cell tables (:mod:`analysis.cells`) and the five columns the
Cox model needs (it reads rows: Efron's ties depend on the individual times). The battery then
runs on those small tables. ``Analysis.cases`` stays a lazy query, for figures that read a few
columns of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from analysis.attribute import CoverageLedger, attribute
from analysis.cells import CELL_TABLES, cell_plans
from analysis.config import ALPHA, POWER, WINDOW_DAYS
from analysis.load import Dataset, load

if TYPE_CHECKING:
    from analysis.battery import Cells
    from analysis.stats.result import TestResult

Progress = Callable[[str], None]

#: The columns of the cases that the Cox model (``decision_speed``) reads.
COX_COLUMNS = ["decision_hours", "decided", "listed", "policy", "account_id"]


@dataclass
class Analysis:
    """Everything one run of the battery produced.

    ``cases`` is the lazy query of the attributed cases (:func:`analysis.attribute.attribute`,
    sorted by ``case_id``): collect the columns you need, e.g.
    ``analysis.cases.select("spend_tier", "enforced").collect()``.
    """

    dataset: Dataset
    cases: pl.LazyFrame
    ledger: CoverageLedger
    tests: list[TestResult]
    parameters: dict[str, Any]

    @property
    def results(self) -> dict[str, Any]:
        from analysis.results import build_results

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
    lazy_cases, ledger = attribute(dataset, window_days=window_days, sort_by_case=False,
                                   categorical=True)
    say(f"aggregating {ledger.analysed:,} cases to cells")
    cells = collect_cells(lazy_cases)
    say(f"running the battery on the cells of {ledger.analysed:,} cases")
    tests = run_battery_on_cells(cells, has_watchlist="watchlist" in dataset, alpha=alpha)
    parameters = {"window_days": window_days, "alpha": alpha}
    return Analysis(dataset, readable_cases(lazy_cases), ledger, tests, parameters)


def collect_cells(cases: pl.LazyFrame, *, engine: str = "streaming") -> Cells:
    """The battery's inputs from the lazy cases, in one pass: the four cell tables and Cox rows.

    Only :data:`COX_COLUMNS` of the cases are collected (the Cox model samples whole accounts
    itself when there are more than its ``max_rows``).
    """
    from analysis.battery import Cells

    plans = [*cell_plans(cases).values(), cases.select(COX_COLUMNS)]
    *tables, cox_rows = pl.collect_all(plans, engine=engine)
    return Cells(cox_rows, **dict(zip(CELL_TABLES, tables, strict=True)))


def readable_cases(cases: pl.LazyFrame) -> pl.LazyFrame:
    """The cases as :func:`analysis.attribute.attribute` returns them by default: text columns as
    String, sorted by ``case_id``."""
    text = [name for name, dtype in cases.collect_schema().items() if isinstance(dtype, pl.Enum)]
    return cases.with_columns(pl.col(text).cast(pl.String)).sort("case_id")


def run_battery_on_cells(cells: Cells, *, has_watchlist: bool = True, alpha: float = ALPHA,
                         power: float = POWER) -> list[TestResult]:
    """Run the battery on prebuilt cells (and Cox rows) of :func:`collect_cells`, so no step
    needs all cases in memory; :func:`analysis.battery.run_battery_on_cells` does the work."""
    # Imported here, not at the top, so that commands that only build cells start quickly.
    from analysis.battery import run_battery_on_cells as run

    return run(cells, has_watchlist=has_watchlist, alpha=alpha, power=power)
