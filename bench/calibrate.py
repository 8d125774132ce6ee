"""Calibration of the battery: are its error rates what they claim, on worlds with a known truth?

Each test of the battery is run on hundreds of simulated worlds (``analysis.simulate``, seeds
``0 .. N-1``) and its error rates are compared with what it promises:

* **type I error** in worlds where nothing is planted: the share of worlds whose p-value is below
  0.05 should be about 0.05 (target 0.04-0.06). Two kinds of null world are used: the
  ``null-confounded`` scenario (advertisers, the listed accounts among them, are flagged under
  a rarely enforced policy, so crude comparisons are biased) and a *null seed-case* (the
  ``seed-case`` world with the listing effect ``log_or_listed`` set to 0, i.e. OR 1). The crude
  ``listed_unadjusted`` test is expected to fail there: that is why the battery reports it beside
  the adjusted one. The randomization-inference p-values of ``listed_adjusted`` and
  ``directive_did`` are checked the same way. ``equal_treatment`` (TOST) does not test "no
  effect"; for it the share of null worlds in which equivalence is shown (its power) is reported.
* **coverage** in worlds with planted effects (``seed-case``, ``spend-dose``): the share of
  worlds whose 95% confidence interval contains the truth recorded in ``truth.json`` should be
  about 0.95 (target 0.93-0.97).
* **bias**: the mean estimate against the mean truth (ratios on the log scale), and the ratio of
  the tests' own standard error to the spread of the estimates over worlds, which tells whether
  a miss comes from a shifted estimate or from a standard error that is too small or too large.

Rates come with exact (Clopper-Pearson) 95% binomial intervals: with 300 worlds a rate of 0.05
has a Monte Carlo standard error of about 0.013, so a point estimate just outside the target band
is not by itself evidence of miscalibration.

Run ``make calibrate`` (300 worlds per kind of world, two worker processes), or e.g.::

    python bench/calibrate.py --worlds 20 --out /tmp/calibration

Outputs: ``calibration.csv`` (one row per world kind, test and metric), ``calibration.md`` (the
tables and the command that produced them) and ``calibration.png``/``.svg``. The same command
gives byte-identical files; the wall time is printed, never written.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import stats as sps

__all__ = [
    "COVERAGE_TARGET",
    "TYPE_I_TARGET",
    "WORLD_KINDS",
    "WORLD_SIZE",
    "calibrate",
    "failures",
    "run_world",
    "summarize",
    "world_frame",
    "write_outputs",
]

ALPHA = 0.05
TYPE_I_TARGET = (0.04, 0.06)
COVERAGE_TARGET = (0.93, 0.97)
CRUDE_VERDICT = "crude: expected biased"

#: Smaller than the default world (50,000 cases, 2,500 accounts, 300 advertisers) so that 300
#: worlds of each kind run in minutes on two cores; the 64 listed accounts are kept.
WORLD_SIZE: dict[str, int] = {"n_cases": 20_000, "n_accounts": 1_200, "n_advertisers": 150}


@dataclass(frozen=True)
class WorldKind:
    """One kind of simulated world: a scenario of ``analysis.simulate`` and its overrides."""

    label: str
    scenario: str
    overrides: dict[str, Any] = field(default_factory=dict)
    null: bool = False
    note: str = ""


WORLD_KINDS: tuple[WorldKind, ...] = (
    WorldKind("null-confounded", "null-confounded", null=True,
              note="nothing planted; listed accounts drawn among advertiser accounts, whose "
                   "policy mix differs from everyone else's"),
    WorldKind("null-seed-case", "seed-case", {"log_or_listed": 0.0}, null=True,
              note="the seed-case world with the listing effect set to none (log_or_listed = 0, "
                   "OR 1); spend has no effect either"),
    WorldKind("seed-case", "seed-case",
              note="64 group accounts listed, conditional OR 0.35 of enforcement once listed"),
    WorldKind("spend-dose", "spend-dose",
              note="no watchlist; conditional OR 0.7 of enforcement per tenfold trailing spend"),
)

#: Hypothesis tests whose type I error is checked (equal_treatment tests a different null).
TYPE_I_TESTS = ("listed_unadjusted", "listed_adjusted", "advertiser_adjusted", "spend_adjusted",
                "spend_trend", "decision_speed", "appeal_reversal", "directive_did")
#: Tests whose randomization-inference p-value is in details["randomization"]["p_value"].
RANDOMIZATION_TESTS = ("listed_adjusted", "directive_did")


@dataclass(frozen=True)
class Truth:
    """Which value of ``truth.json`` (``estimands[test][field]``) a test's CI should contain."""

    test: str
    field: str
    definition: str
    alternative: str | None = None  # a second definition, reported as coverage_conditional_truth


TRUTHS: tuple[Truth, ...] = (
    Truth("listed_adjusted", "marginal_or",
          "marginal_or: expected Mantel-Haenszel OR over policy x severity band of listed cases "
          "against their own probability without listing, integrated over the account effect",
          alternative="conditional_or"),
    Truth("advertiser_adjusted", "marginal_or",
          "marginal_or: expected Mantel-Haenszel OR over policy x severity band of cases with "
          "trailing spend against their own probability without listing and spend effects"),
    Truth("spend_adjusted", "marginal_or_per_10x_approx",
          "marginal_or_per_10x_approx: planted OR per tenfold spend attenuated to its "
          "population-averaged value (Zeger, Liang & Albert 1988)",
          alternative="conditional_or_per_10x"),
    Truth("decision_speed", "hazard_ratio", "hazard_ratio: 1 (no planted effect on decision "
          "delay)"),
    Truth("appeal_reversal", "odds_ratio", "odds_ratio: 1 (no planted effect on appeal outcomes)"),
    Truth("directive_did", "difference",
          "difference: mean over listed cases after the directive of the enforcement probability "
          "with minus without the listing effect"),
)
TRUTH_BY_TEST = {t.test: t for t in TRUTHS}
#: Worlds with planted effects, and the tests whose coverage is checked in each.
COVERAGE_TESTS = {
    "seed-case": ("listed_adjusted", "advertiser_adjusted", "spend_adjusted", "decision_speed",
                  "appeal_reversal", "directive_did"),
    "spend-dose": ("advertiser_adjusted", "spend_adjusted"),
}

# Columns of the per-world frame; floats may be null (test skipped, no truth, world failed).
_WORLD_SCHEMA = {
    "world": pl.String, "seed": pl.Int64, "test": pl.String, "status": pl.String,
    "scale": pl.String, "estimate": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
    "se": pl.Float64, "p_value": pl.Float64, "p_randomization": pl.Float64,
    "equivalent": pl.Boolean, "truth": pl.Float64, "truth_alternative": pl.Float64,
    "error": pl.String,
}
_CSV_COLUMNS = ["scenario", "test", "metric", "value", "lo", "hi", "n_worlds", "target",
                "within_target"]
_DIGITS = 6  # rounding of every number written, so files do not depend on the last float bit


# ----------------------------------------------------------------------------------------------
# One world
# ----------------------------------------------------------------------------------------------


def run_world(kind: WorldKind, seed: int, *, size: dict[str, int] | None = None) -> list[dict]:
    """Simulate one world into a temporary folder, run the battery on it, and delete the folder.

    Parameters
    ----------
    kind : WorldKind
        Which world (scenario and overrides).
    seed : int
        Seed of the world.
    size : dict, optional
        Scenario parameters applied to every world, normally its size; default
        :data:`WORLD_SIZE`.

    Returns
    -------
    list of dict
        One record per test of the battery (columns of :data:`_WORLD_SCHEMA`): status, estimate,
        95% CI, standard error, p-value, randomization p-value, whether equivalence was shown,
        and the truth from ``truth.json``. A world whose analysis fails gives one record with the
        error message and test ``"(world)"``, so failures are counted rather than hidden.

    Examples
    --------
    >>> rows = run_world(WORLD_KINDS[0], 0, size={"n_cases": 3000, "n_accounts": 500,
    ...                                           "n_advertisers": 60})  # doctest: +SKIP
    """
    from analysis.pipeline import analyze
    from analysis.simulate import simulate

    overrides = {**(size or WORLD_SIZE), **kind.overrides}
    with tempfile.TemporaryDirectory(prefix="levelfield-calibration-") as tmp:
        folder = Path(tmp) / "world"
        simulate(kind.scenario, seed=seed, out=folder, **overrides)
        truth = json.loads((folder / "truth.json").read_text(encoding="utf-8"))["estimands"]
        try:
            with warnings.catch_warnings():
                # Sparse strata warn in almost every world; the rates below are what matters.
                warnings.simplefilter("ignore")
                tests = analyze(folder).tests
        except Exception as error:  # noqa: BLE001 - a crash is a finding, not a reason to stop
            return [{"world": kind.label, "seed": seed, "test": "(world)", "status": "error",
                     "error": f"{type(error).__name__}: {error}"}]
    rows = []
    for result in tests:
        details = result.details or {}
        randomization = details.get("randomization") or {}
        spec = TRUTH_BY_TEST.get(result.id)
        estimands = truth.get(result.id, {})
        rows.append({
            "world": kind.label, "seed": seed, "test": result.id, "status": result.status,
            "scale": result.scale, "estimate": result.estimate, "ci_low": result.ci_low,
            "ci_high": result.ci_high, "se": details.get("se"), "p_value": result.p_value,
            "p_randomization": randomization.get("p_value"),
            "equivalent": details.get("equivalent"),
            "truth": _number(estimands.get(spec.field)) if spec else None,
            "truth_alternative": (_number(estimands.get(spec.alternative))
                                  if spec and spec.alternative else None),
            "error": None,
        })
    return rows


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _run_task(task: tuple[WorldKind, int, dict[str, int]]) -> list[dict]:
    kind, seed, size = task
    return run_world(kind, seed, size=size)


def world_frame(rows: Iterable[dict]) -> pl.DataFrame:
    """The per-world records as one frame, sorted by world kind, seed and test."""
    records = [{name: row.get(name) for name in _WORLD_SCHEMA} for row in rows]
    frame = pl.DataFrame(records, schema=_WORLD_SCHEMA)
    # NaN p-values or estimates (a degenerate fit) count as "not estimated", like nulls.
    floats = [name for name, dtype in _WORLD_SCHEMA.items() if dtype == pl.Float64]
    return frame.with_columns(pl.col(floats).fill_nan(None)).sort("world", "seed", "test")


def calibrate(
    *,
    worlds: int,
    kinds: Sequence[WorldKind] = WORLD_KINDS,
    size: dict[str, int] | None = None,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """Run the battery on ``worlds`` worlds (seeds 0..worlds-1) of each kind.

    Parameters
    ----------
    worlds : int
        Number of worlds per kind.
    kinds : sequence of WorldKind, default :data:`WORLD_KINDS`
        The kinds of world.
    size : dict, optional
        Scenario parameters applied to every world, normally its size; default
        :data:`WORLD_SIZE`.
    workers : int, default 2
        Worker processes; 1 runs in this process.
    progress : callable, optional
        Called with (worlds done, worlds in total) as worlds finish.

    Returns
    -------
    polars.DataFrame
        :func:`world_frame` of every world: one row per world and test.
    """
    if worlds < 1:
        raise ValueError(f"worlds must be at least 1, got {worlds}")
    size = dict(size or WORLD_SIZE)
    tasks = [(kind, seed, size) for kind in kinds for seed in range(worlds)]
    rows: list[dict] = []
    if workers <= 1:
        for done, task in enumerate(tasks, start=1):
            rows += _run_task(task)
            if progress:
                progress(done, len(tasks))
        return world_frame(rows)
    # One thread per worker: the workers already use the cores, and single-threaded numerics
    # keep every world's numbers independent of how the work was scheduled.
    for name in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    # spawn, not fork: polars' thread pool in the parent must not be copied into the children.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for done, world_rows in enumerate(pool.imap(_run_task, tasks, chunksize=1), start=1):
            rows += world_rows
            if progress:
                progress(done, len(tasks))
    return world_frame(rows)


# ----------------------------------------------------------------------------------------------
# Summary
# ----------------------------------------------------------------------------------------------


def _rate_row(world: str, test: str, metric: str, hits: int, n: int,
              target: tuple[float, float] | None, verdict: str | None = None) -> dict:
    if n == 0:
        return {"scenario": world, "test": test, "metric": metric, "value": None, "lo": None,
                "hi": None, "n_worlds": 0, "target": _band(target), "within_target": "no data"}
    ci = sps.binomtest(hits, n).proportion_ci(confidence_level=0.95, method="exact")
    value, lo, hi = hits / n, float(ci.low), float(ci.high)
    if verdict is None:
        verdict = _verdict(value, lo, hi, target) if target else ""
    return {"scenario": world, "test": test, "metric": metric, "value": value, "lo": lo,
            "hi": hi, "n_worlds": n, "target": _band(target), "within_target": verdict}


def _band(target: tuple[float, float] | None) -> str:
    return f"{target[0]:.2f}-{target[1]:.2f}" if target else ""


def _verdict(value: float, lo: float, hi: float, target: tuple[float, float]) -> str:
    """yes: inside the band; uncertain: outside, but the 95% interval reaches it; no: clear miss."""
    low, high = target
    if low <= value <= high:
        return "yes"
    return "uncertain" if hi >= low and lo <= high else "no"


def _mean_row(world: str, test: str, metric: str, values: np.ndarray, *,
              target: str = "", check_zero: bool = False) -> dict:
    n = values.size
    mean = float(values.mean()) if n else None
    half = 1.959963984540054 * float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else None
    lo = mean - half if half is not None else None
    hi = mean + half if half is not None else None
    verdict = ""
    if check_zero and lo is not None:
        verdict = "yes" if lo <= 0 <= hi else "no"
    return {"scenario": world, "test": test, "metric": metric, "value": mean, "lo": lo, "hi": hi,
            "n_worlds": n, "target": target, "within_target": verdict}


def _plain_row(world: str, test: str, metric: str, value: float | None, n: int) -> dict:
    return {"scenario": world, "test": test, "metric": metric, "value": value, "lo": None,
            "hi": None, "n_worlds": n, "target": "", "within_target": ""}


def _on_analysis_scale(frame: pl.DataFrame, column: str) -> np.ndarray:
    """Ratios on the log scale (where their CIs and SEs live), differences as they are."""
    values = frame[column].to_numpy().astype(float)
    is_ratio = frame["scale"].to_numpy() != "probability"
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(is_ratio, np.log(values), values)


def _estimate_rows(world: str, test: str, ran: pl.DataFrame) -> list[dict]:
    """Mean estimate, mean truth, bias and the SE ratio of one test in one kind of world."""
    rows = []
    estimates = _on_analysis_scale(ran, "estimate")
    finite = np.isfinite(estimates)
    ratio = bool(ran.height) and ran["scale"][0] != "probability"
    back = np.exp if ratio else (lambda x: x)
    if finite.any():
        rows.append(_plain_row(world, test, "mean_estimate", float(back(estimates[finite].mean())),
                               int(finite.sum())))
    with_truth = ran.filter(pl.col("truth").is_not_null())
    if with_truth.height:
        truth = _on_analysis_scale(with_truth, "truth")
        error = _on_analysis_scale(with_truth, "estimate") - truth
        error = error[np.isfinite(error)]
        rows.append(_plain_row(world, test, "mean_truth", float(back(truth.mean())),
                               with_truth.height))
        scale = "log scale" if ratio else "probability scale"
        rows.append(_mean_row(world, test, "bias", error,
                              target=f"0 ({scale}; 95% MC interval includes 0)", check_zero=True))
    se = ran["se"].to_numpy().astype(float)
    keep = finite & np.isfinite(se)
    if keep.sum() > 2:
        spread = float(estimates[keep].std(ddof=1))
        rows.append(_plain_row(world, test, "empirical_sd", spread, int(keep.sum())))
        rows.append(_plain_row(world, test, "mean_model_se", float(se[keep].mean()),
                               int(keep.sum())))
        rows.append(_plain_row(world, test, "se_ratio",
                               float(se[keep].mean()) / spread if spread > 0 else None,
                               int(keep.sum())))
    return rows


def summarize(per_world: pl.DataFrame, *, kinds: Sequence[WorldKind] = WORLD_KINDS
              ) -> pl.DataFrame:
    """The calibration table: one row per kind of world, test and metric.

    Parameters
    ----------
    per_world : polars.DataFrame
        Output of :func:`calibrate`.
    kinds : sequence of WorldKind
        The kinds of world, in the order of the table.

    Returns
    -------
    polars.DataFrame
        Columns scenario, test, metric, value, lo, hi, n_worlds, target, within_target.
        Metrics: ``type_i_error`` and ``type_i_error_randomization`` (share of null worlds with
        p < 0.05, exact 95% binomial interval), ``equivalence_shown`` (share of null worlds in
        which TOST shows equal treatment), ``coverage`` and ``coverage_conditional_truth``
        (share of planted worlds whose 95% CI holds the truth), ``mean_estimate``,
        ``mean_truth`` (geometric means for ratios), ``bias`` (mean of estimate minus truth, log
        scale for ratios, with a Monte Carlo 95% interval), ``empirical_sd`` (spread of the
        estimates over worlds), ``mean_model_se`` (the tests' own SE) and ``se_ratio`` (their
        quotient: below 1 the intervals are too narrow), and ``worlds_failed`` (worlds whose
        analysis raised an error). ``within_target``: ``yes``, ``uncertain`` (outside the band
        but its 95% interval reaches into it), ``no``, or ``crude: expected biased``.
    """
    rows: list[dict] = []
    for kind in kinds:
        world = per_world.filter(pl.col("world") == kind.label)
        n_seeds = world["seed"].n_unique()
        failed = world.filter(pl.col("status") == "error")["seed"].n_unique()
        rows.append(_plain_row(kind.label, "(all)", "worlds_failed", float(failed), n_seeds))
        if kind.null:
            rows += _null_rows(kind.label, world)
        else:
            rows += _planted_rows(kind.label, world)
        for test in _ordered_tests(world):
            ran = world.filter((pl.col("test") == test) & (pl.col("status") == "ok")
                               & pl.col("estimate").is_not_null())
            if ran.height and test != "equal_treatment":
                rows += _estimate_rows(kind.label, test, ran)
    table = pl.DataFrame(rows, schema={
        "scenario": pl.String, "test": pl.String, "metric": pl.String, "value": pl.Float64,
        "lo": pl.Float64, "hi": pl.Float64, "n_worlds": pl.Int64, "target": pl.String,
        "within_target": pl.String})
    return table.with_columns(pl.col("value", "lo", "hi").round(_DIGITS))


def _ordered_tests(world: pl.DataFrame) -> list[str]:
    present = set(world["test"].unique().to_list()) - {"(world)"}
    order = [*TYPE_I_TESTS, "equal_treatment"]
    return [t for t in order if t in present] + sorted(present - set(order))


def _null_rows(label: str, world: pl.DataFrame) -> list[dict]:
    rows = []
    for test in TYPE_I_TESTS:
        p = world.filter((pl.col("test") == test) & pl.col("p_value").is_not_null())["p_value"]
        if p.len() == 0:
            continue
        verdict = CRUDE_VERDICT if test == "listed_unadjusted" else None
        rows.append(_rate_row(label, test, "type_i_error", int((p < ALPHA).sum()), p.len(),
                              TYPE_I_TARGET, verdict))
    for test in RANDOMIZATION_TESTS:
        p = world.filter((pl.col("test") == test)
                         & pl.col("p_randomization").is_not_null())["p_randomization"]
        if p.len():
            rows.append(_rate_row(label, test, "type_i_error_randomization",
                                  int((p < ALPHA).sum()), p.len(), TYPE_I_TARGET))
    shown = world.filter((pl.col("test") == "equal_treatment")
                         & pl.col("equivalent").is_not_null())["equivalent"]
    if shown.len():
        rows.append(_rate_row(label, "equal_treatment", "equivalence_shown", int(shown.sum()),
                              shown.len(), None))
    return rows


def _planted_rows(label: str, world: pl.DataFrame) -> list[dict]:
    rows = []
    for test in COVERAGE_TESTS.get(label, ()):
        ran = world.filter((pl.col("test") == test) & pl.col("ci_low").is_not_null()
                           & pl.col("ci_high").is_not_null())
        for metric, column in (("coverage", "truth"),
                               ("coverage_conditional_truth", "truth_alternative")):
            with_truth = ran.filter(pl.col(column).is_not_null())
            if with_truth.height == 0:
                continue
            inside = with_truth.filter((pl.col("ci_low") <= pl.col(column))
                                       & (pl.col(column) <= pl.col("ci_high"))).height
            rows.append(_rate_row(label, test, metric, inside, with_truth.height,
                                  COVERAGE_TARGET))
    return rows


def failures(per_world: pl.DataFrame) -> pl.DataFrame:
    """Worlds whose analysis raised an error, grouped by kind of world and message.

    Parameters
    ----------
    per_world : polars.DataFrame
        Output of :func:`calibrate`.

    Returns
    -------
    polars.DataFrame
        Columns world, error, worlds (how many) and seeds (the first ten, comma-separated).
    """
    failed = per_world.filter(pl.col("status") == "error")
    return (
        failed.group_by("world", "error")
        .agg(pl.len().alias("worlds"), pl.col("seed").sort().head(10).cast(pl.String)
             .str.join(", ").alias("seeds"))
        .sort("world", "worlds", "error", descending=[False, True, False])
    )


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


def _interval(row: dict, digits: int = 3) -> str:
    if row["lo"] is None:
        return "–"
    return f"{_fmt(row['lo'], digits)}–{_fmt(row['hi'], digits)}"


def _lookup(table: pl.DataFrame) -> dict[tuple[str, str, str], dict]:
    return {(r["scenario"], r["test"], r["metric"]): r for r in table.iter_rows(named=True)}


def _markdown(table: pl.DataFrame, *, command: str, worlds: int, size: dict[str, int],
              kinds: Sequence[WorldKind], failed: pl.DataFrame | None) -> str:
    rows = _lookup(table)
    lines = [
        "# Calibration of the battery",
        "",
        ("Every test of the battery run on simulated worlds with a known truth "
        "(`analysis.simulate`). Produced by"),
        "",
        "```sh",
        command,
        "```",
        "",
        f"{worlds} worlds of each kind, seeds 0 to {worlds - 1} (the same seeds in every kind, "
        "so null-seed-case and seed-case worlds share their accounts, spend and cases). World "
        "size: " + ", ".join(f"`{k}={v:,}`" for k, v in sorted(size.items()))
        + "; the other parameters are the scenario's.",
        "",
        "| world | scenario and overrides | what is planted |",
        "|---|---|---|",
    ]
    for kind in kinds:
        overrides = ", ".join(f"`{k}={v}`" for k, v in sorted(kind.overrides.items()))
        count = rows.get((kind.label, "(all)", "worlds_failed"))
        note = ""
        if count and count["value"]:
            note = f" **{int(count['value'])} of {count['n_worlds']} worlds failed.**"
        lines.append(f"| {kind.label} | `{kind.scenario}` {overrides} | {kind.note}.{note} |")
    if failed is not None and failed.height:
        lines += [
            "",
            ("A world whose analysis fails counts for none of its tests. The errors raised "
            "(first ten seeds shown):"),
            "",
            "| world | worlds | error | seeds |",
            "|---|---|---|---|",
        ]
        lines += [f"| {r['world']} | {r['worlds']} | {r['error'].replace('|', '/')} | "
                  f"{r['seeds']} |" for r in failed.iter_rows(named=True)]
    lines += [
        "",
        ("Rates are shares of worlds with exact (Clopper–Pearson) 95% binomial intervals. "
        "*Within target*: **yes** inside the target band; **uncertain** outside it, but the "
        "interval reaches into the band (too few worlds to tell); **no** the interval misses "
        "the band. *SE ratio* is the test's mean standard error divided by the spread (SD) of "
        "its estimates over worlds, on the log scale for ratios: below 1 the intervals are too "
        "narrow, above 1 too wide."),
        "",
        _summary(table),
        "",
        f"## Type I error at α = {ALPHA} (null worlds)",
        "",
        ("Share of worlds with p < 0.05; target "
        f"{TYPE_I_TARGET[0]:.2f}–{TYPE_I_TARGET[1]:.2f}. `listed_unadjusted` is the crude "
        "comparison: in these worlds listed accounts are flagged under a different policy mix, "
        "so it is expected to be biased — the reason the battery shows it beside the adjusted "
        "test."),
        "",
        ("| world | test | p-value | type I error | 95% interval | worlds | within target "
        "| mean estimate | SE ratio |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in (k for k in kinds if k.null):
        for metric, source in (("type_i_error", "test"),
                               ("type_i_error_randomization", "randomization")):
            for test in (*TYPE_I_TESTS,):
                row = rows.get((kind.label, test, metric))
                if row is None:
                    continue
                mean = rows.get((kind.label, test, "mean_estimate"))
                ratio = rows.get((kind.label, test, "se_ratio"))
                lines.append(
                    f"| {kind.label} | {test} | {source} | {_fmt(row['value'])} | "
                    f"{_interval(row)} | {row['n_worlds']} | {row['within_target']} | "
                    f"{_fmt(mean['value']) if mean and source == 'test' else ''} | "
                    f"{_fmt(ratio['value'], 2) if ratio and source == 'test' else ''} |")
    lines += [
        "",
        "## Equal treatment (TOST) in null worlds",
        "",
        ("`equal_treatment` does not test “no effect”: a small p-value supports equivalence "
        "(90% CI of the adjusted OR inside 0.80–1.25). In null worlds the share of worlds where "
        "equivalence is shown is its power; there is no target."),
        "",
        "| world | equivalence shown | 95% interval | worlds |",
        "|---|---|---|---|",
    ]
    for kind in (k for k in kinds if k.null):
        row = rows.get((kind.label, "equal_treatment", "equivalence_shown"))
        if row:
            lines.append(f"| {kind.label} | {_fmt(row['value'])} | {_interval(row)} | "
                         f"{row['n_worlds']} |")
    lines += [
        "",
        "## Coverage of the 95% confidence intervals (planted worlds)",
        "",
        (f"Share of worlds whose CI contains the truth of `truth.json`; target "
        f"{COVERAGE_TARGET[0]:.2f}–{COVERAGE_TARGET[1]:.2f}. Bias is the mean of estimate minus "
        "truth (log scale for ratios) with its Monte Carlo 95% interval; mean estimate and mean "
        "truth are geometric means for ratios."),
        "",
        ("| world | test | truth | coverage | 95% interval | worlds | within target | mean "
        "estimate | mean truth | bias | bias 95% interval | SE ratio |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in (k for k in kinds if not k.null):
        for test in COVERAGE_TESTS.get(kind.label, ()):
            spec = TRUTH_BY_TEST[test]
            for metric, field_name in (("coverage", spec.field),
                                       ("coverage_conditional_truth", spec.alternative)):
                row = rows.get((kind.label, test, metric))
                if row is None:
                    continue
                main = metric == "coverage"
                mean = rows.get((kind.label, test, "mean_estimate"))
                truth = rows.get((kind.label, test, "mean_truth"))
                bias = rows.get((kind.label, test, "bias"))
                ratio = rows.get((kind.label, test, "se_ratio"))
                extra = ("| | | | | " if not main else
                         f"| {_fmt(mean['value']) if mean else '–'} | "
                         f"{_fmt(truth['value']) if truth else '–'} | "
                         f"{_fmt(bias['value']) if bias else '–'} | "
                         f"{_interval(bias) if bias else '–'} | "
                         f"{_fmt(ratio['value'], 2) if ratio else '–'} |")
                lines.append(
                    f"| {kind.label} | {test} | `{field_name}` | {_fmt(row['value'])} | "
                    f"{_interval(row)} | {row['n_worlds']} | {row['within_target']} " + extra)
    lines += [
        "",
        "Truth definitions (`truth.json`, `estimands.<test>`):",
        "",
    ]
    lines += [f"- `{t.test}`: {t.definition}."
              + (f" Also checked against `{t.alternative}` (coverage_conditional_truth)."
                 if t.alternative else "") for t in TRUTHS]
    lines += [
        "",
        "## Bias in null worlds",
        "",
        "| world | test | mean estimate | mean truth | bias | bias 95% interval | SE ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in (k for k in kinds if k.null):
        for test in TYPE_I_TESTS:
            bias = rows.get((kind.label, test, "bias"))
            if bias is None:
                continue
            mean = rows.get((kind.label, test, "mean_estimate"))
            truth = rows.get((kind.label, test, "mean_truth"))
            ratio = rows.get((kind.label, test, "se_ratio"))
            lines.append(f"| {kind.label} | {test} | {_fmt(mean['value']) if mean else '–'} | "
                         f"{_fmt(truth['value']) if truth else '–'} | {_fmt(bias['value'])} | "
                         f"{_interval(bias)} | {_fmt(ratio['value'], 2) if ratio else '–'} |")
    lines += ["", ("Every number is in `calibration.csv`; the figure is `calibration.png` "
              "(`.svg`)."), ""]
    return "\n".join(lines)


def _summary(table: pl.DataFrame) -> str:
    checked = table.filter(pl.col("metric").is_in(
        ["type_i_error", "type_i_error_randomization", "coverage"]))
    lines = ["## Summary", ""]
    for verdict, heading in (("yes", "Within target"), ("uncertain", "Uncertain"),
                             ("no", "Miss")):
        hits = checked.filter(pl.col("within_target") == verdict)
        items = [f"{r['test']} ({_label(r['metric'])}, {r['scenario']}: {_fmt(r['value'])})"
                 for r in hits.iter_rows(named=True)]
        lines.append(f"- **{heading}** ({len(items)}): " + ("; ".join(items) or "none") + ".")
    crude = checked.filter(pl.col("within_target") == CRUDE_VERDICT)
    items = [f"{r['scenario']}: {_fmt(r['value'])}" for r in crude.iter_rows(named=True)]
    lines.append("- **Crude, expected biased**: listed_unadjusted type I error "
                 + ("; ".join(items) or "none") + ".")
    return "\n".join(lines)


def _label(metric: str) -> str:
    return {"type_i_error": "type I", "type_i_error_randomization": "type I, randomization",
            "coverage": "coverage"}.get(metric, metric)


# Colour-blind-safe (seaborn "colorblind", as analysis.plots), with a marker shape per verdict
# so the figure also reads in grey.
_VERDICT_STYLE = {
    "yes": ("#0173b2", "o", "within target"),
    "uncertain": ("#de8f05", "D", "uncertain (interval reaches target)"),
    "no": ("#d55e00", "X", "outside target"),
    CRUDE_VERDICT: ("#949494", "s", "crude comparison, expected biased"),
}


def _figure(table: pl.DataFrame):
    import matplotlib as mpl
    import matplotlib.pyplot as plt
    import seaborn as sns

    type_i = table.filter(pl.col("metric").is_in(["type_i_error", "type_i_error_randomization"])
                          & pl.col("value").is_not_null())
    coverage = table.filter((pl.col("metric") == "coverage") & pl.col("value").is_not_null())
    rc = {**sns.axes_style("whitegrid"), "font.family": "sans-serif",
          "font.sans-serif": ["DejaVu Sans"], "font.size": 8.5, "axes.titlelocation": "left",
          "axes.titleweight": "bold", "axes.titlesize": 10.5, "axes.spines.top": False,
          "axes.spines.right": False, "legend.frameon": False}
    heights = [max(type_i.height, 1), max(coverage.height, 1)]
    with mpl.rc_context(rc):
        fig, axes = plt.subplots(2, 1, figsize=(7.5, 0.24 * sum(heights) + 2.2),
                                 gridspec_kw={"height_ratios": heights}, layout="constrained")
        _panel(axes[0], type_i, TYPE_I_TARGET, ALPHA, x_max=0.2,
               title=f"Type I error at α = {ALPHA}, null worlds",
               xlabel="share of worlds with p < 0.05 (95% binomial interval)")
        _panel(axes[1], coverage, COVERAGE_TARGET, 0.95, x_max=1.0,
               title="Coverage of the 95% CI, worlds with planted effects",
               xlabel="share of worlds whose 95% CI contains the truth (95% binomial interval)")
        handles = [mpl.lines.Line2D([], [], color=c, marker=m, linestyle="none", label=text)
                   for c, m, text in _VERDICT_STYLE.values()]
        handles.append(mpl.patches.Patch(color="#029e73", alpha=0.18, label="target band"))
        fig.legend(handles=handles, loc="outside lower center", ncol=3)
    return fig


def _panel(ax, rows: pl.DataFrame, band: tuple[float, float], nominal: float, *, x_max: float,
           title: str, xlabel: str) -> None:
    labels = [f"{r['test']}" + (" (randomization)" if r["metric"].endswith("randomization")
                                else "") + f" · {r['scenario']}"
              for r in rows.iter_rows(named=True)]
    x_min = 0.0 if nominal < 0.5 else min(0.8, float(rows["lo"].min() or 0.8) - 0.02)
    pad = 0.01 * (x_max - x_min)  # room for a marker sitting at 0 or at 1
    ax.axvspan(*band, color="#029e73", alpha=0.18, linewidth=0)
    ax.axvline(nominal, color="#029e73", linewidth=1)
    for y, r in enumerate(rows.iter_rows(named=True)):
        colour, marker, _ = _VERDICT_STYLE.get(r["within_target"], _VERDICT_STYLE["no"])
        lo, hi, value = r["lo"], r["hi"], r["value"]
        ax.plot([max(lo, x_min), min(hi, x_max)], [y, y], color=colour, linewidth=1.6)
        if value > x_max:  # e.g. the crude test in the confounded null: say the value in words
            ax.plot(x_max, y, marker=">", color=colour, markersize=6, clip_on=False)
            ax.annotate(f"{value:.2f}", (x_max, y), xytext=(-8, 0), textcoords="offset points",
                        ha="right", va="center", color=colour, fontsize=7.5)
        else:
            ax.plot(value, y, marker=marker, color=colour, markersize=6, clip_on=False)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlim(x_min - pad, x_max + pad)
    # A thin rule between kinds of world.
    kinds = rows["scenario"].to_list()
    for y in range(1, len(kinds)):
        if kinds[y] != kinds[y - 1]:
            ax.axhline(y - 0.5, color="#bbbbbb", linewidth=0.8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", visible=False)


def write_outputs(table: pl.DataFrame, out: Path | str, *, command: str, worlds: int,
                  size: dict[str, int], kinds: Sequence[WorldKind] = WORLD_KINDS,
                  failed: pl.DataFrame | None = None) -> list[Path]:
    """Write calibration.csv, calibration.md, calibration.png and calibration.svg to ``out``.

    Parameters
    ----------
    table : polars.DataFrame
        Output of :func:`summarize`.
    out : path
        Output folder (created if missing).
    command : str
        The command that produced the table, quoted in calibration.md.
    worlds : int
        Worlds per kind, for the text.
    size : dict
        The world size, for the text.
    kinds : sequence of WorldKind
        The kinds of world in the table.
    failed : polars.DataFrame, optional
        Output of :func:`failures`, listed in calibration.md.

    Returns
    -------
    list of Path
        The files written.
    """
    from analysis.plots import save_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # save_figure writes the figure and "the data behind it" as calibration.csv: the full table.
    paths = save_figure(_figure(table), table.select(_CSV_COLUMNS), out, "calibration")
    markdown = out / "calibration.md"
    markdown.write_text(_markdown(table, command=command, worlds=worlds, size=size,
                                  kinds=kinds, failed=failed), encoding="utf-8")
    return [paths.csv, markdown, paths.png, paths.svg]


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def _command(args: argparse.Namespace) -> str:
    parts = ["python bench/calibrate.py", f"--worlds {args.worlds}", f"--out {args.out}"]
    for name, default in WORLD_SIZE.items():
        value = getattr(args, name)
        if value != default:
            parts.append(f"--{name.replace('_', '-')} {value}")
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=300, help="worlds per kind (default 300)")
    parser.add_argument("--out", default="reports/calibration", help="output folder")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--save-worlds", type=Path, help="also write the per-world results "
                        "(parquet) to this file")
    parser.add_argument("--load-worlds", type=Path, help="summarize per-world results saved by "
                        "--save-worlds instead of running the worlds again")
    for name, default in WORLD_SIZE.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int, default=default,
                            help=f"world size (default {default})")
    args = parser.parse_args(argv)
    size = {name: getattr(args, name) for name in WORLD_SIZE}
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 25 == 0 or done == total:
            print(f"{done}/{total} worlds, {time.perf_counter() - started:,.0f} s", flush=True)

    if args.load_worlds:
        per_world = pl.read_parquet(args.load_worlds)
    else:
        per_world = calibrate(worlds=args.worlds, size=size, workers=args.workers,
                              progress=progress)
    if args.save_worlds:
        per_world.write_parquet(args.save_worlds)
    table = summarize(per_world)
    for path in write_outputs(table, args.out, command=_command(args), worlds=args.worlds,
                              size=size, failed=failures(per_world)):
        print(f"wrote {path}")
    print(f"wall time {time.perf_counter() - started:,.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
