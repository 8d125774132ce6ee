"""The battery on cells against the same battery and the same models on rows: time, and
identical estimates.

On a world written by ``bench/generate.py`` this times

* **cells**: building the cells in one streaming pass (``analysis.pipeline.collect_cells``) and
  running the *full* battery on them (``run_battery_on_cells``: nine tests, including 999
  permutations of the randomization inference for two of them and the Cox model on rows), per
  test and in total;
* **the battery on rows**: the same battery, the same code, given the four tables with one row
  per case (``n`` = 1) instead of counted cells. Every number of the two batteries (estimates,
  CIs, SEs, p-values, randomization p-values, event-study rows) is compared;
* **the regression models on cells**, and the same models fitted by statsmodels on one row
  per case, the way one would without cells: ``spend_adjusted`` (logistic GLM of enforcement on
  log10 trailing spend with policy, severity band and listing dummies, advertisers' cases only),
  the OR per tier step of ``spend_trend`` (logistic GLM on the tier index with the same dummies),
  ``directive_did`` (linear probability model with listed-account, after-directive and
  interaction terms plus policy and severity band dummies) and the event study of
  ``directive_did`` (the same linear probability model with a dummy for each month around the
  listing date and its product with the listed-account indicator), all with standard errors
  clustered by account (statsmodels' ``cov_type="cluster"``). Collecting the rows and building
  the design matrices is not counted: only the fits. On the cells side everything from the
  stored cells to the estimates is counted, starting with coding the account ids as the battery
  does. The cells side runs ``--repeats`` times (default 5), each in a fresh process (nothing
  warmed up), and the ratio is taken to the median; the row fits run once, the event study in
  a process of its own (its design alone is 5.6 GB at 10M cases, and statsmodels' fit peaks
  far above that; if it runs out of memory, the benchmark says so and goes on).

* **the battery's other models on rows**, fitted by statsmodels the same way: the crude odds
  ratio (``Table2x2``), the three Mantel-Haenszel odds ratios (``StratifiedTable``) and the Cox
  model (``PHReg``, on the battery's own sample of accounts). Their point estimates are compared
  with the battery's; their standard errors are not (statsmodels has neither the battery's
  delete-one-account jackknife nor Efron-weighted cluster-robust errors for Cox). Every model on
  rows is then set against the full battery on cells, which does strictly more (the jackknives
  and 2 x 999 permutations have no counterpart on the rows side).

It checks that the cells give the same coefficients and clustered standard errors as the rows
(relative difference below 1e-6; every month of the event study) and prints the times.
Building the cells, each battery and the models run in child processes, one after the other,
so that each has the memory to itself and its peak resident memory can be read.

The stored cells are read back with their text keys as sorted Enums, which is how
``analysis.pipeline.collect_cells`` hands them to the battery in ``levelfield analyze``.

Usage::

    python bench/cells_vs_rows.py --data /tmp/worlds/10M
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import statsmodels.api as sm

from analysis.attribute import attribute
from analysis.battery import STRATA
from analysis.load import load
from analysis.pipeline import collect_cells, run_battery_on_cells
from analysis.stats.regression import did, event_study, logistic
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


def build(data: Path, work: Path) -> None:
    """Build the cells (timed) and store them, with the Cox rows, in ``work``."""
    from analysis.cells import CellTables, write_cells

    started = time.perf_counter()
    cases, ledger = attribute(load(data, check_contract=False), sort_by_case=False,
                              categorical=True)
    cells = collect_cells(cases)
    seconds = time.perf_counter() - started
    write_cells(CellTables(cells.account, cells.spend, cells.appeal, cells.event), work)
    cells.cases.with_columns(pl.col("account_id", "policy").cast(pl.String)).write_parquet(
        work / "cox_rows.parquet")
    # The same tables with one row per case (n = 1), for the battery on rows.
    rows = row_tables(cases)
    write_cells(CellTables(*(table.with_columns(pl.col(pl.Enum, pl.Categorical).cast(pl.String))
                             for table in rows)), work / "rows")
    print(f"{ledger.analysed:,} cases; cells built in {seconds:.1f} s (account "
          f"{cells.account.height:,}, spend {cells.spend.height:,}, event "
          f"{cells.event.height:,} cells)")


def row_tables(cases: pl.LazyFrame) -> list[pl.DataFrame]:
    """The four cell tables' columns with one row per case and ``n`` = 1 (no counting): the
    battery's inputs as they would be without cells."""
    from analysis.cells import _TABLE_KEYS, CELL_TABLES, table_cases

    one = pl.lit(1, dtype=pl.UInt32).alias("n")
    spend = [pl.col("trailing_spend"), pl.col("trailing_spend").log10().alias("log10_spend")]
    plans = [table_cases(cases, name).select(*_TABLE_KEYS[name], one,
                                             *(spend if name == "spend" else []))
             for name in CELL_TABLES]
    return pl.collect_all(plans, engine="streaming")


def stored_cells(work: Path, rows: bool = False):
    """The stored cells (or, with ``rows``, the row tables) and the Cox rows, as the battery
    gets them."""
    from analysis.battery import Cells
    from analysis.cells import read_cells

    tables = read_cells(work / "rows" if rows else work)
    cells = Cells(pl.read_parquet(work / "cox_rows.parquet"), tables.account, tables.spend,
                  tables.appeal, tables.event)
    # Text keys as sorted Enums, as collect_cells returns them from the attributed cases.
    frames = [cells.cases, cells.account, cells.spend, cells.appeal, cells.event]
    types = {}
    for column in ("account_id", "policy", "severity_band"):
        values = pl.concat([f.select(column).unique() for f in frames if column in f.columns])
        types[column] = pl.Enum(values.unique().sort(column).get_column(column))
    return Cells(*[f.with_columns(pl.col(c).cast(t) for c, t in types.items() if c in f.columns)
                   for f in frames])


def battery(work: Path, *, rows: bool = False) -> None:
    """The full battery on the stored cells, or on the row tables (timed, and per test)."""
    from analysis import battery as module

    data = stored_cells(work, rows=rows)
    per_test = {}

    def timed(test_id, run):
        def wrapped(cells):
            started = time.perf_counter()
            try:
                return run(cells)
            finally:
                per_test[test_id] = time.perf_counter() - started
        return wrapped

    module.RUNNERS = {test_id: timed(test_id, run) for test_id, run in module.RUNNERS.items()}
    started = time.perf_counter()
    tests = run_battery_on_cells(data)
    seconds = time.perf_counter() - started
    what = "rows (n = 1)" if rows else "cells"
    print(f"full battery on {what}: {seconds:.1f} s ({sum(t.status == 'ok' for t in tests)} "
          f"tests ran; {', '.join(f'{k} {v:.1f}' for k, v in per_test.items())}); peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GB")
    name = "battery_rows" if rows else "battery"
    (work / f"{name}_seconds").write_text(f"{seconds}\n")
    (work / f"{name}.json").write_text(json.dumps([t.to_dict() for t in tests]))
    (work / f"{name}_tests_seconds.json").write_text(json.dumps(per_test))
    if rows:
        compare_batteries(work)


def _numbers(test: dict) -> dict[str, float]:
    """The numbers of one test that the two batteries must share."""
    found = {k: test[k] for k in ("estimate", "ci_low", "ci_high", "p_value", "p_adjusted")
             if test.get(k) is not None}
    details = test.get("details", {})
    if "se" in details and details["se"] is not None:
        found["se"] = details["se"]
    if isinstance(details.get("randomization"), dict):
        found["randomization p"] = details["randomization"]["p_value"]
    for row in details.get("event_study") or []:
        if not row["reference"]:
            found[f"event month {row['event_time']}"] = row["estimate"]
            found[f"event month {row['event_time']} se"] = row["se"]
    return found


def compare_batteries(work: Path) -> None:
    """Largest relative difference between the battery on cells and on rows, over every number."""
    on_cells = {t["id"]: t for t in json.loads((work / "battery.json").read_text())}
    on_rows = {t["id"]: t for t in json.loads((work / "battery_rows.json").read_text())}
    worst = (0.0, "")
    for test_id, test in on_cells.items():
        mine, theirs = _numbers(test), _numbers(on_rows[test_id])
        if mine.keys() != theirs.keys() or test["status"] != on_rows[test_id]["status"]:
            print(f"  {test_id}: different results on cells and rows")
            worst = (math.inf, test_id)
            continue
        for key, value in mine.items():
            gap = abs(theirs[key] - value) / max(abs(value), 1e-300) if value else abs(theirs[key])
            worst = max(worst, (gap, f"{test_id} {key}"))
    cells_seconds = float((work / "battery_seconds").read_text())
    rows_seconds = float((work / "battery_rows_seconds").read_text())
    gap = f"{worst[0]:.1e} ({worst[1]})" if worst[0] > 0 else "0 (every number identical)"
    print(f"battery on rows / on cells: {rows_seconds:.1f} s / {cells_seconds:.1f} s = "
          f"{rows_seconds / cells_seconds:.2f}x; largest relative difference of any number "
          f"(estimates, CIs, SEs, p-values, randomization p, event study): {gap}")


#: Models timed on cells, in the order the battery fits them.
MODELS = ("spend_adjusted", "spend_trend", "directive_did", "event_study")


def models_on_cells(work: Path) -> None:
    """The four models on the stored cells, timed from the stored cells to the estimates; one
    line of ``models_cells.jsonl`` per run (each run in a fresh process)."""
    from analysis.battery import with_codes

    cells = stored_cells(work)
    seconds = {}
    started = time.perf_counter()
    cells = with_codes(cells)  # account ids as numbers, as the battery has them (timed)
    seconds["coding the accounts"] = time.perf_counter() - started
    fits = {
        "spend_adjusted": lambda: logistic(
            cells.spend, outcome="enforced", exposure="log10_spend", factors=FACTORS, count="n",
            cluster="account_id", per=1.0),
        "spend_trend": lambda: trend(cells.account, outcome="enforced", score="spend_tier",
                                     strata=FACTORS, count="n", cluster="account_id"),
        "directive_did": lambda: did(cells.account, outcome="enforced", treated="ever_listed",
                                     post="post", factors=STRATA, count="n",
                                     cluster="account_id"),
        "event_study": lambda: event_study(cells.event, outcome="enforced",
                                           treated="ever_listed", event_time="event_month",
                                           factors=STRATA, count="n", cluster="account_id"),
    }
    estimates = {}
    for name in MODELS:
        begun = time.perf_counter()
        fit = fits[name]()
        seconds[name] = time.perf_counter() - begun
        if name == "event_study":
            gaps = fit.filter(~pl.col("reference"))
            estimates[name] = {str(k): [b, se] for k, b, se in gaps.select(
                "event_time", "estimate", "se").iter_rows()}
        else:  # the coefficient (log OR for the logistic models) and its clustered SE
            coefficient = fit.estimate if name == "directive_did" else math.log(fit.estimate)
            estimates[name] = {"": [coefficient, fit.se]}
    total = time.perf_counter() - started
    with (work / "models_cells.jsonl").open("a") as out:
        out.write(json.dumps({"total": total, "seconds": seconds, "estimates": estimates}) + "\n")
    print(f"  on cells: {total:.1f} s ({', '.join(f'{k} {v:.1f}' for k, v in seconds.items())})")


def event_study_on_rows(work: Path) -> None:
    """The event study fitted by statsmodels on one row per case (OLS, SEs clustered by
    account): the design is built in place, then only the fit is timed. Writes
    ``event_study_rows.json``; on a machine without the memory the process is killed first."""
    rows = pl.read_parquet(work / "rows" / "event_cells.parquet")
    months = [k for k in rows["event_month"].unique().sort().to_list() if k != -1]
    levels = {f: rows[f].unique().sort().to_list()[1:] for f in STRATA}
    # Intercept, treated, then each month's dummy and its product with treated, then the factors.
    x = np.empty((rows.height, 2 + 2 * len(months) + sum(map(len, levels.values()))))
    x[:, 0] = 1.0
    treated = rows["ever_listed"].to_numpy()
    x[:, 1] = treated
    month = rows["event_month"].to_numpy()
    for j, k in enumerate(months):
        np.equal(month, k, out=x[:, 2 + 2 * j])
        np.multiply(x[:, 2 + 2 * j], treated, out=x[:, 3 + 2 * j])
    column = 2 + 2 * len(months)
    for factor, kept in levels.items():
        for level in kept:
            x[:, column] = (rows[factor] == level).to_numpy()
            column += 1
    y = rows["enforced"].cast(pl.Float64).to_numpy()
    groups = rows["account_id"].cast(pl.Categorical).to_physical().to_numpy()
    del rows, treated, month
    print(f"  event study on rows: a {x.shape[0]:,} x {x.shape[1]} design "
          f"({x.nbytes / 2**30:.1f} GB), peak RSS so far "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GB", flush=True)
    started = time.perf_counter()
    fit = sm.OLS(y, x).fit(cov_type="cluster", cov_kwds={"groups": groups})
    seconds = time.perf_counter() - started
    estimates = {str(k): [float(fit.params[3 + 2 * j]), float(fit.bse[3 + 2 * j])]
                 for j, k in enumerate(months)}
    (work / "event_study_rows.json").write_text(json.dumps(
        {"seconds": seconds, "estimates": estimates}))
    print(f"  event study on rows: {seconds:.1f} s")


def other_models_on_rows(work: Path) -> None:
    """The battery's other models fitted by statsmodels on one row per case: the crude odds
    ratio (``Table2x2``), the three Mantel-Haenszel odds ratios (``StratifiedTable``) and the Cox
    model (``PHReg``, Efron ties, stratified by policy, on the same sample of accounts as the
    battery's). Only the fits are timed. Their point estimates are compared with the battery's
    on cells; their standard errors are not, because statsmodels has neither the battery's
    delete-one-account jackknife nor Efron-weighted cluster-robust errors for Cox. Writes
    ``other_models_rows.json``."""
    from statsmodels.duration.hazard_regression import PHReg
    from statsmodels.stats.contingency_tables import StratifiedTable, Table2x2

    from analysis.config import SEED
    from analysis.stats import survival

    account = (pl.read_parquet(work / "rows" / "account_cells.parquet")
               .with_columns(stratum=pl.concat_str("policy", "severity_band", separator="|"))
               .select("listed", "is_advertiser", "enforced", "stratum").to_pandas())
    appeal = pl.read_parquet(work / "rows" / "appeal_cells.parquet").select(
        "listed", "reversed", "policy").to_pandas()
    sample, _ = survival._load(pl.read_parquet(work / "cox_rows.parquet"),
                               duration="decision_hours", event="decided", group="listed",
                               strata=["policy"], cluster="account_id", max_rows=2_000_000,
                               seed=SEED)
    time_, event_, group_, stratum_ = (sample.get_column(c).to_numpy() for c in (
        survival._TIME, survival._EVENT, survival._GROUP, survival._STRATUM))
    fits = {
        "listed_unadjusted": lambda: Table2x2.from_data(account[["listed", "enforced"]])
        .oddsratio,
        "listed_adjusted": lambda: StratifiedTable.from_data(
            "listed", "enforced", "stratum", account).oddsratio_pooled,
        "advertiser_adjusted": lambda: StratifiedTable.from_data(
            "is_advertiser", "enforced", "stratum", account).oddsratio_pooled,
        "appeal_reversal": lambda: StratifiedTable.from_data(
            "listed", "reversed", "policy", appeal).oddsratio_pooled,
        "decision_speed": lambda: math.exp(PHReg(
            time_, group_.astype(float)[:, None], status=event_.astype(float),
            strata=stratum_, ties="efron").fit().params[0]),
    }
    seconds, estimates = {}, {}
    for name, fit in fits.items():
        started = time.perf_counter()
        estimates[name] = float(fit())
        seconds[name] = time.perf_counter() - started
    (work / "other_models_rows.json").write_text(json.dumps(
        {"seconds": seconds, "estimates": estimates}))
    print(f"  the other models on rows: {sum(seconds.values()):.1f} s "
          f"({', '.join(f'{k} {v:.1f}' for k, v in seconds.items())}); peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GB")


def three_models_on_rows(work: Path) -> tuple[dict, dict]:
    """The three regression models fitted by statsmodels on one row per case (the row tables
    stored by ``build``): seconds of each fit, and its coefficient and clustered SE."""
    rows = pl.read_parquet(work / "rows" / "account_cells.parquet")
    spenders = pl.read_parquet(work / "rows" / "spend_cells.parquet")  # advertisers' cases
    groups = rows["account_id"].cast(pl.Categorical).to_physical().to_numpy()
    problems = {
        "spend_adjusted": lambda: (
            spenders["enforced"].cast(pl.Float64).to_numpy(),
            np.column_stack([np.log10(spenders["trailing_spend"].to_numpy()),
                             dummies(spenders, FACTORS)]),
            spenders["account_id"].cast(pl.Categorical).to_physical().to_numpy(), True),
        "spend_trend": lambda: (
            rows["enforced"].cast(pl.Float64).to_numpy(),
            np.column_stack([rows["spend_tier"].cast(pl.Float64).to_numpy(),
                             dummies(rows, FACTORS)]), groups, True),
        "directive_did": lambda: (
            rows["enforced"].cast(pl.Float64).to_numpy(),
            np.column_stack([(rows["ever_listed"] & rows["post"]).cast(pl.Float64).to_numpy(),
                             rows["ever_listed"].cast(pl.Float64).to_numpy(),
                             rows["post"].cast(pl.Float64).to_numpy(),
                             dummies(rows, STRATA)]), groups, False),
    }
    timings, on_rows = {}, {}
    for name, problem in problems.items():
        y, x, g, logit = problem()  # one design matrix in memory at a time
        started = time.perf_counter()
        coefficient, se = fit_rows(y, x, g, logit=logit)
        timings[name] = time.perf_counter() - started
        on_rows[name] = {"": [coefficient, se]}
        del y, x
        print(f"  {name} on rows: {timings[name]:.1f} s")
    return timings, on_rows


def models(data: Path, work: Path, repeats: int) -> None:
    """The four regression models on cells (``repeats`` fresh processes), then on rows, then the
    battery's other models on rows; compare estimates and times."""
    (work / "models_cells.jsonl").unlink(missing_ok=True)
    (work / "event_study_rows.json").unlink(missing_ok=True)
    for _ in range(repeats):
        _step("models-cells", data, work)
    runs = [json.loads(line) for line in (work / "models_cells.jsonl").read_text().splitlines()]
    on_cells = runs[-1]["estimates"]

    # The row fits in processes of their own first, while this one holds little memory (a
    # child's peak RSS starts from its parent's size at the fork): the event study, whose design
    # alone is 5.6 GB at 10M cases, and the battery's other models.
    (work / "other_models_rows.json").unlink(missing_ok=True)
    _step("other-models-rows", data, work)
    timings, on_rows = {}, {}
    finished = _step("event-study-rows", data, work)
    fitted = work / "event_study_rows.json"
    if finished.returncode == 0 and fitted.exists():
        result = json.loads(fitted.read_text())
        timings["event_study"], on_rows["event_study"] = result["seconds"], result["estimates"]
    else:
        why = ("killed by the system, out of memory" if finished.returncode == -9
               else f"exit {finished.returncode}")
        print(f"  event study on rows: did not finish ({why})")
    three_timings, three_on_rows = three_models_on_rows(work)
    timings, on_rows = {**three_timings, **timings}, {**three_on_rows, **on_rows}

    totals = sorted(run["total"] for run in runs)
    fitted_both = [name for name in MODELS if name in timings]
    cells_fitted = sorted(sum(run["seconds"][k] for k in ["coding the accounts", *fitted_both])
                          for run in runs)
    rows_total = sum(timings.values())
    done = work / "battery_seconds"
    battery_seconds = float(done.read_text()) if done.exists() else float("nan")
    print(f"the four models on cells, {len(runs)} fresh processes: "
          f"{', '.join(f'{t:.1f}' for t in totals)} s (median {float(np.median(totals)):.1f})")
    print(f"models fitted on both sides ({', '.join(fitted_both)}): rows {rows_total:.1f} s, "
          f"cells median {float(np.median(cells_fitted)):.1f} s (each run: "
          f"{', '.join(f'{rows_total / t:.1f}x' for t in cells_fitted)}; on the median "
          f"{rows_total / float(np.median(cells_fitted)):.1f}x); rows / full battery on cells "
          f"{rows_total / battery_seconds:.2f}x")
    if "event_study" not in timings:
        seconds = float(np.median([run["seconds"]["event_study"] for run in runs]))
        print(f"  the event study: {seconds:.1f} s on cells (median); statsmodels did not finish "
              "it on rows")
    _compare_other_models(work, rows_total, battery_seconds)
    worst = 0.0
    for name in fitted_both:
        gap = max(max(abs(coefficient / on_cells[name][key][0] - 1),
                      abs(se / on_cells[name][key][1] - 1))
                  for key, (coefficient, se) in on_rows[name].items())
        worst = max(worst, gap)
        print(f"  {name}: largest relative difference, rows to cells, of a coefficient or its "
              f"clustered SE {gap:.1e}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GB")
    print("identical estimates (< 1e-6):", "yes" if worst < 1e-6 else f"NO (worst {worst:.1e})")


def _compare_other_models(work: Path, regressions: float, battery_seconds: float) -> None:
    """The battery's other models on rows (fitted by the ``other-models-rows`` step), their
    point estimates against the battery's on cells, and every model on rows against the full
    battery."""
    fitted = work / "other_models_rows.json"
    if not all(path.exists() for path in (fitted, work / "battery.json",
                                          work / "battery_tests_seconds.json")):
        print("  the other models on rows, or the battery on cells, did not finish")
        return
    other = json.loads(fitted.read_text())
    battery_estimates = {t["id"]: t["estimate"]
                         for t in json.loads((work / "battery.json").read_text())}
    gap = max(abs(value / battery_estimates[name] - 1)
              for name, value in other["estimates"].items())
    cox = other["seconds"]["decision_speed"]
    battery_cox = json.loads((work / "battery_tests_seconds.json").read_text())["decision_speed"]
    every = regressions + sum(other["seconds"].values())
    print(f"every model of the battery on rows: {every:.1f} s = {every / battery_seconds:.1f}x "
          f"the full battery on cells ({battery_seconds:.1f} s); without the Cox model on either "
          f"side (statsmodels {cox:.1f} s, the battery {battery_cox:.1f} s): "
          f"{(every - cox) / (battery_seconds - battery_cox):.1f}x; point estimates of the other "
          f"models, rows to cells: largest relative difference {gap:.1e}")


def _step(step: str, data: Path, work: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run one step of this script in a child process of its own."""
    return subprocess.run([sys.executable, __file__, "--data", str(data), "--work", str(work),
                           "--step", step, *extra], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cells-vs-rows"),
                        help="scratch folder for the cells")
    parser.add_argument("--repeats", type=int, default=5,
                        help="fresh processes timing the models on cells (default 5)")
    parser.add_argument("--step", choices=("build", "battery", "battery-rows", "models",
                                           "models-cells", "event-study-rows",
                                           "other-models-rows"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    args.work.mkdir(parents=True, exist_ok=True)
    if args.step:
        {"build": lambda: build(args.data, args.work), "battery": lambda: battery(args.work),
         "battery-rows": lambda: battery(args.work, rows=True),
         "models": lambda: models(args.data, args.work, args.repeats),
         "models-cells": lambda: models_on_cells(args.work),
         "event-study-rows": lambda: event_study_on_rows(args.work),
         "other-models-rows": lambda: other_models_on_rows(args.work)}[args.step]()
        return
    # Each step in its own process, so that each one's memory is its own.
    for stale in ("battery_seconds", "battery_rows_seconds", "battery.json", "battery_rows.json",
                  "battery_tests_seconds.json", "battery_rows_tests_seconds.json"):
        (args.work / stale).unlink(missing_ok=True)
    for step in ("build", "battery", "battery-rows", "models"):
        finished = _step(step, args.data, args.work, "--repeats", str(args.repeats))
        if finished.returncode != 0:  # e.g. the battery killed for lack of memory: say so, go on
            print(f"step {step} failed (exit {finished.returncode})")


if __name__ == "__main__":
    main()
