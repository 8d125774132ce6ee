"""The battery on cells against the same models fitted on rows: time, and identical estimates.

On a world written by ``bench/generate.py`` this times

* **cells**: building the cells in one streaming pass (``analysis.pipeline.collect_cells``) and
  running the *full* battery on them (``run_battery_on_cells``: nine tests, including 999
  permutations of the randomization inference for two of them and the Cox model on rows), and
  separately the three regression models alone on the cells;
* **rows**: the three regression models of the battery fitted by statsmodels on one row per
  case, the way one would without cells: ``spend_adjusted`` (logistic GLM of enforcement on
  log10 trailing spend with policy, severity band and listing dummies, advertisers' cases only),
  the OR per tier step of ``spend_trend`` (logistic GLM on the tier index with the same dummies)
  and ``directive_did`` (linear probability model with listed-account, after-directive and
  interaction terms plus policy and severity band dummies), all with standard errors clustered
  by account (statsmodels' ``cov_type="cluster"``). Collecting the rows and building the design
  matrices is not counted: only the fits.

It then checks that the cells give the same coefficients and clustered standard errors as the
rows (relative difference below 1e-6) and prints the times.

Usage::

    python bench/cells_vs_rows.py --data /tmp/worlds/10M
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import polars as pl
import statsmodels.api as sm

from analysis.attribute import attribute
from analysis.battery import STRATA
from analysis.load import load
from analysis.pipeline import collect_cells, run_battery_on_cells
from analysis.stats.regression import did, logistic
from analysis.stats.stratified import trend

FACTORS = [*STRATA, "listed"]


def dummies(frame: pl.DataFrame, factors: list[str]) -> np.ndarray:
    """Treatment-coded dummies (first sorted level dropped) of each factor."""
    columns = []
    for factor in factors:
        levels = frame[factor].unique().sort().to_list()
        columns += [(frame[factor] == level).cast(pl.Float64).to_numpy() for level in levels[1:]]
    return np.column_stack(columns)


def fit_rows(y: np.ndarray, x: np.ndarray, groups: np.ndarray, *, logit: bool) -> tuple[float, float]:
    """Coefficient and cluster-robust SE of the first column after the intercept."""
    design = np.column_stack([np.ones(len(y)), x])
    if logit:
        fit = sm.GLM(y, design, family=sm.families.Binomial()).fit(
            cov_type="cluster", cov_kwds={"groups": groups}, tol=1e-12)
    else:
        fit = sm.OLS(y, design).fit(cov_type="cluster", cov_kwds={"groups": groups})
    return float(fit.params[1]), float(fit.bse[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    args = parser.parse_args()
    dataset = load(args.data, check_contract=False)

    started = time.perf_counter()
    cases, ledger = attribute(dataset, sort_by_case=False, categorical=True)
    cells = collect_cells(cases)
    built = time.perf_counter() - started
    started = time.perf_counter()
    tests = run_battery_on_cells(cells)
    battery = time.perf_counter() - started
    by_id = {t.id: t for t in tests}

    started = time.perf_counter()
    on_cells = {
        "spend_adjusted": logistic(cells.spend, outcome="enforced", exposure="log10_spend",
                                   factors=FACTORS, count="n", cluster="account_id", per=1.0),
        "spend_trend": trend(cells.account, outcome="enforced", score="spend_tier",
                             strata=FACTORS, count="n", cluster="account_id"),
        "directive_did": did(cells.account, outcome="enforced", treated="ever_listed",
                             post="post", factors=STRATA, count="n", cluster="account_id"),
    }
    models_on_cells = time.perf_counter() - started

    # One row per case, for the row-level fits (not timed).
    rows = (cases.with_columns(post=(pl.col("flag_date") >= pl.col("directive_date"))
                               .fill_null(False))
            .select("account_id", "enforced", "trailing_spend", "is_advertiser", "spend_tier",
                    "ever_listed", "post", *FACTORS)
            .collect(engine="streaming"))
    groups = rows["account_id"].to_physical().to_numpy()
    spenders = rows.filter(pl.col("is_advertiser"))
    problems = {
        "spend_adjusted": (spenders["enforced"].cast(pl.Float64).to_numpy(),
                           np.column_stack([np.log10(spenders["trailing_spend"].to_numpy()),
                                            dummies(spenders, FACTORS)]),
                           spenders["account_id"].to_physical().to_numpy(), True),
        "spend_trend": (rows["enforced"].cast(pl.Float64).to_numpy(),
                        np.column_stack([rows["spend_tier"].cast(pl.Float64).to_numpy(),
                                         dummies(rows, FACTORS)]), groups, True),
        "directive_did": (rows["enforced"].cast(pl.Float64).to_numpy(),
                          np.column_stack([
                              (rows["ever_listed"] & rows["post"]).cast(pl.Float64).to_numpy(),
                              rows["ever_listed"].cast(pl.Float64).to_numpy(),
                              rows["post"].cast(pl.Float64).to_numpy(),
                              dummies(rows, STRATA)]), groups, False),
    }
    del rows, spenders
    timings, gaps = {}, {}
    for name, (y, x, g, logit) in problems.items():
        started = time.perf_counter()
        coefficient, se = fit_rows(y, x, g, logit=logit)
        timings[name] = time.perf_counter() - started
        cell = on_cells[name]
        cell_coefficient = np.log(cell.estimate) if name != "directive_did" else cell.estimate
        gaps[name] = (abs(coefficient / cell_coefficient - 1), abs(se / cell.se - 1))
    rows_total = sum(timings.values())

    print(f"{ledger.analysed:,} cases; cells built in {built:.1f} s "
          f"(account {cells.account.height:,}, spend {cells.spend.height:,} cells)")
    print(f"full battery on cells: {battery:.1f} s; the three models on cells: "
          f"{models_on_cells:.1f} s")
    for name, seconds in timings.items():
        print(f"  {name} on rows: {seconds:.1f} s; relative difference to cells: "
              f"coefficient {gaps[name][0]:.1e}, clustered SE {gaps[name][1]:.1e}; "
              f"battery estimate {by_id[name].estimate:.6g}")
    print(f"rows, three models: {rows_total:.1f} s = {rows_total / models_on_cells:.0f}x the same "
          f"models on cells, {rows_total / battery:.1f}x the full battery on cells "
          f"({rows_total / (battery + built):.1f}x incl. building the cells)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024:.2f} GB")
    worst = max(max(g) for g in gaps.values())
    print("identical estimates (< 1e-6):", "yes" if worst < 1e-6 else f"NO (worst {worst:.1e})")


if __name__ == "__main__":
    main()
