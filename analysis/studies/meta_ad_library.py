"""Case study, Meta Ad Library Reports: is a Page's spend tied to being caught undeclared?

Meta's Ad Library Report lists, per country and window, every Page whose ads about social issues,
elections or politics reached people there, with its spend — and, in rows labelled "These ads ran
without a disclaimer", the Pages Meta caught running such ads without the required "paid for by"
disclaimer and took them down. It is the one public source with spend *and* an enforcement
outcome per advertiser. This study asks of it: **are Pages that spend more less likely to be
caught?** If money bought leniency, big spenders would be caught less often than small ones.

The tests (ids as in ``results.json``):

``spend_caught``
    Odds ratio of being caught per tenfold spend, all Pages in the report(s), with a separate
    baseline per report (so reports in different currencies need no exchange rates: within one
    report a tenfold step is the same in any currency). Spend below 100 is shown as ``≤100``; it
    is counted at the midpoint, 50.
``spend_caught_low``, ``spend_caught_high``
    The same with every ``≤100`` at its lower bound (0) and at its upper bound (100): how much the
    answer depends on the censored amounts. Sensitivity analyses, not separate hypotheses (no
    adjusted p-value).
``spend_tier_trend``
    Trend in the share caught across fixed spend tiers (≤100, 101-1,000, 1,001-10,000,
    > 10,000; scores 1-4, one per tenfold step), within reports (Mantel's extension of the
    Cochran-Armitage test). The tiers at the ``≤100`` bounds are in ``details``.
``declared_spend_caught``
    Among Pages that ran declared political ads (with a disclaimer), the odds ratio per tenfold
    *declared* spend of also having been caught running ads without one. This comparison avoids
    the two biggest biases of ``spend_caught`` (below): every Page in it is in the report for a
    reason that has nothing to do with being caught, and its spend was not cut short by a
    takedown. It is the better test of leniency, and the smaller one.

What the data cannot say (each conclusion repeats the part that matters for it):

* **Selection**: only Pages that ran political ads appear. A Page that ran undeclared political
  ads and was never caught is not in the report at all; the report cannot say how many escaped.
* **The takedown caps the spend it is compared with**: most caught Pages ran *only* undeclared
  ads, so their spend is whatever ran before Meta removed them — usually under 100. A low spend is
  then partly a consequence of being caught, not a cause; ``spend_caught`` mixes the two and is
  bound to show caught Pages spending less, with or without leniency.
* **A caught Page may also have declared ads**: it then has two rows (or more); its spend is the
  sum. ``declared_spend_caught`` compares those Pages with Pages that only ran declared ads.
* **More ads, more chances to slip**: a Page running many ads has more chances to run one without
  a disclaimer and be caught, so some rise of the catch rate with spend is expected without any
  change in scrutiny. ``details`` of ``declared_spend_caught`` shows the estimate holding the
  number of declared ads (in bands) fixed.
* Spend of undeclared ads and of declared ads are different things: the first is what the
  platform let run before removing it; the second is what the Page chose to spend openly.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from analysis.attribute import CoverageLedger
from analysis.config import ALPHA, POWER
from analysis.findings import fmt, fmt_p
from analysis.load import Dataset, FileInfo
from analysis.results import build_results
from analysis.schema import DataError, Problem
from analysis.sources.meta_ad_library import (
    LOW_BUCKET,
    LOW_BUCKET_BOUNDS,
    LOW_BUCKET_MIDPOINT,
    Reports,
    pages,
    read_reports,
)
from analysis.stats.multiplicity import adjust_p
from analysis.stats.power import mde_ratio
from analysis.stats.regression import logistic
from analysis.stats.result import Estimate, TestResult
from analysis.stats.stratified import trend

STUDY = "meta_ad_library"
#: Spend below one currency unit counts as one before taking logarithms (log 0 is undefined).
SPEND_FLOOR = 1.0
#: Upper bounds of the spend tiers 1-3 (tier 4 is above the last); one tier per tenfold step.
TIER_BOUNDS = (100.0, 1_000.0, 10_000.0)
TIER_LABELS = ("≤100", "101-1,000", "1,001-10,000", "> 10,000")
#: Bands of the number of declared ads, held fixed in the activity-adjusted estimate.
AD_BANDS = (1, 10, 100)
#: Which spend column each way of counting ``≤100`` uses.
BOUNDS = {"midpoint": "spend", "low": "spend_low", "high": "spend_high"}
PRIMARY = ("spend_caught", "spend_tier_trend", "declared_spend_caught")

QUESTIONS = {
    "spend_caught": (
        ("Are Pages that spend more on political ads less likely to be caught running political "
         "ads without a disclaimer?"),
        ("Odds ratio of having ads taken down for a missing disclaimer, per tenfold total spend "
         f"in the report's window ({LOW_BUCKET} counted as {LOW_BUCKET_MIDPOINT:g}), same "
         "report")),
    "spend_caught_low": (
        f"Does the answer change if every {LOW_BUCKET} amount is taken as 0?",
        (f"As spend_caught, with {LOW_BUCKET} counted as {LOW_BUCKET_BOUNDS[0]:g} (spend below 1 "
         "counted as 1)")),
    "spend_caught_high": (
        f"Does the answer change if every {LOW_BUCKET} amount is taken as 100?",
        f"As spend_caught, with {LOW_BUCKET} counted as {LOW_BUCKET_BOUNDS[1]:g}"),
    "spend_tier_trend": (
        "Does the share of Pages caught fall steadily from the lowest to the highest spend tier?",
        ("Odds ratio of being caught per step up the spend tiers (≤100, 101-1,000, "
         "1,001-10,000, > 10,000), same report")),
    "declared_spend_caught": (
        ("Among Pages that ran declared political ads, are those that spend more less likely to "
         "also be caught running ads without a disclaimer?"),
        ("Odds ratio of also having ads taken down for a missing disclaimer, per tenfold spend "
         f"on declared ads ({LOW_BUCKET} counted as {LOW_BUCKET_MIDPOINT:g}), Pages with "
         "declared ads only, same report")),
}
METHODS = {
    "spend_caught": "Logistic regression of caught on log10 spend with one intercept per report "
                    "(grouped binomial GLM, Wald CI)",
    "spend_caught_low": "As spend_caught",
    "spend_caught_high": "As spend_caught",
    "spend_tier_trend": "Cochran-Armitage test for trend (Mantel's extension within reports when "
                        "there are several), scores 1-4; OR per tier step from a grouped "
                        "logistic model",
    "declared_spend_caught": "Logistic regression of caught on log10 declared spend with one "
                             "intercept per report, Pages with declared ads (grouped binomial "
                             "GLM, Wald CI)",
}

SELECTION = ("Only Pages that ran political ads are in the report; Pages that ran undeclared "
             "political ads and were never caught are missing, so this is not a catch rate.")
ACTIVITY = ("Pages running more ads have more chances to run one without a disclaimer, which "
            "pushes the other way.")


def study_pages(data: str | Path | Reports | Dataset) -> tuple[pl.DataFrame, Reports]:
    """The Pages the study compares, one row per Page and report, and the reports they came from.

    Parameters
    ----------
    data : str, Path, Reports or Dataset
        Reports (a file, folder or zip; see
        :func:`analysis.sources.meta_ad_library.read_reports`), already read reports, or a
        Dataset from :func:`analysis.sources.meta_ad_library.read`.

    Returns
    -------
    pages : polars DataFrame
        :func:`analysis.sources.meta_ad_library.pages` plus ``caught_flag`` (0/1), the log10
        spends ``log_spend``, ``log_spend_low``, ``log_spend_high``, ``log_declared_spend`` (and
        its ``_low``/``_high``), the spend tier at each bound (``tier``, ``tier_low``,
        ``tier_high``), ``ad_band`` (declared ads: 1-9, 10-99, 100+) and ``advertiser`` (country
        and Page: one Page in several reports of a country).
    reports : Reports
        The rows and the files' checksums.
    """
    reports = _reports(data)
    frame = pages(reports)
    floor = SPEND_FLOOR
    exprs = []
    for bound, column in BOUNDS.items():
        suffix = "" if bound == "midpoint" else f"_{bound}"
        exprs += [
            pl.col(column).clip(lower_bound=floor).log10().alias(f"log_spend{suffix}"),
            pl.col(f"declared_{column}").clip(lower_bound=floor).log10()
            .alias(f"log_declared_spend{suffix}"),
            _tier(pl.col(column)).alias(f"tier{suffix}"),
        ]
    ads_band = pl.lit("1-9")
    for lower, label in ((AD_BANDS[1], "10-99"), (AD_BANDS[2], "100+")):
        ads_band = pl.when(pl.col("declared_ads") >= lower).then(pl.lit(label)).otherwise(ads_band)
    frame = frame.with_columns(
        pl.col("caught").cast(pl.Int8).alias("caught_flag"),
        (pl.col("ads") - pl.col("ads_without_disclaimer")).alias("declared_ads"),
        pl.format("{}:{}", pl.col("country"), pl.col("page_key")).alias("advertiser"),
        *exprs,
    ).with_columns(ads_band.alias("ad_band"))
    return frame, reports


def _tier(spend: pl.Expr) -> pl.Expr:
    tier = pl.lit(1, pl.Int8)
    for bound in TIER_BOUNDS:
        tier = tier + (spend > bound).cast(pl.Int8)
    return tier


def _reports(data: str | Path | Reports | Dataset) -> Reports:
    if isinstance(data, Reports):
        return data
    if isinstance(data, Dataset):
        if data.source != "meta-ad-library" or "report_rows" not in data:
            raise DataError([Problem(str(data.path), "this study needs Meta Ad Library Reports "
                                     f"(source meta-ad-library); the dataset's source is "
                                     f"{data.source}", check="source")], source=str(data.path))
        return Reports(data.path, data["report_rows"].collect(), list(data.files))
    return read_reports(data)


def tier_table(study: pl.DataFrame, *, bound: str = "midpoint") -> pl.DataFrame:
    """Pages and the share caught per report and spend tier (the numbers behind the trend test).

    Parameters
    ----------
    study : polars DataFrame
        From :func:`study_pages`.
    bound : {"midpoint", "low", "high"}
        How ``≤100`` amounts are counted (50, 0 or 100).

    Returns
    -------
    polars DataFrame
        ``report``, ``tier``, ``tier_label``, ``pages``, ``caught``, ``share_caught``, sorted.
    """
    column = "tier" if bound == "midpoint" else f"tier_{bound}"
    return (study.group_by("report", pl.col(column).alias("tier"))
            .agg(pl.len().cast(pl.Int64).alias("pages"),
                 pl.col("caught_flag").sum().cast(pl.Int64).alias("caught"))
            .with_columns(tier_label=pl.col("tier").cast(pl.Int64).replace_strict(
                dict(enumerate(TIER_LABELS, start=1)), return_dtype=pl.String),
                share_caught=pl.col("caught") / pl.col("pages"))
            .sort("report", "tier")
            .select("report", "tier", "tier_label", "pages", "caught", "share_caught"))


def run_study(data: str | Path | Reports | Dataset, *, alpha: float = ALPHA,
              power: float = POWER) -> list[TestResult]:
    """Run the study's tests on one or more Meta Ad Library advertiser reports.

    Parameters
    ----------
    data : str, Path, Reports or Dataset
        See :func:`study_pages`.
    alpha : float, default 0.05
        Significance level; intervals are 1 - alpha.
    power : float, default 0.8
        Power at which the minimum detectable effect (``mde``, an odds ratio below 1) is stated.

    Returns
    -------
    list of TestResult
        ``spend_caught``, ``spend_caught_low``, ``spend_caught_high``, ``spend_tier_trend``,
        ``declared_spend_caught``, in that order. P-values of the three primary tests are
        adjusted together (Benjamini-Hochberg); the two sensitivity analyses have no adjusted
        p-value. A report that cannot inform a test (no Page caught, every Page caught, or spend
        that does not vary, as in the Andorran report where every amount is ``≤100``) is left
        out of it and named in ``details["reports_left_out"]``; a test no report can inform is
        ``skipped`` with the reason. ``details`` also has per-report counts and estimates, and
        any warnings of the fit (e.g. a band of ads in which no Page was caught).

    Examples
    --------
    >>> from analysis.config import REFERENCE_DATA_DIR
    >>> results = run_study(REFERENCE_DATA_DIR / "meta_ad_library"
    ...     / "FacebookAdLibraryReport_2025-07-12_BE_last_30_days_advertisers.csv")
    >>> [r.id for r in results if r.status == "ok"][:2]
    ['spend_caught', 'spend_caught_low']
    """
    study, _ = study_pages(data)
    repeated = study["advertiser"].n_unique() < study.height
    cluster = "advertiser" if repeated else None
    counts = _counts(study)

    def model(frame: pl.DataFrame, exposure: str, extra: tuple[str, ...] = ()):
        factors = ["report"] if frame["report"].n_unique() > 1 else []
        return lambda: logistic(frame, outcome="caught_flag", exposure=exposure,
                                factors=[*factors, *extra], cluster=cluster, alpha=alpha)

    def tiers(frame: pl.DataFrame, score: str):
        strata = "report" if frame["report"].n_unique() > 1 else None
        return lambda: trend(frame, outcome="caught_flag", score=score, strata=strata,
                             cluster=cluster, alpha=alpha)

    results: list[TestResult] = []
    for test_id, bound in (("spend_caught", "midpoint"), ("spend_caught_low", "low"),
                           ("spend_caught_high", "high")):
        exposure = "log_spend" + ("" if bound == "midpoint" else f"_{bound}")
        used, left_out = _informative(study, exposure)
        results.append(_fit(
            test_id, model(used, exposure), used, left_out, alpha=alpha, power=power,
            details={"counts": counts, "low_bucket_counted_as": _bound_value(bound),
                     "by_report": _by_report(study, exposure, alpha)}))
    used, left_out = _informative(study, "tier")
    results.append(_fit(
        "spend_tier_trend", tiers(used, "tier"), used, left_out, alpha=alpha, power=power,
        details={"tiers": tier_table(study).to_dicts(),
                 "sensitivity": {bound: _sensitivity(study, f"tier_{bound}", tiers)
                                 | {"tiers": tier_table(study, bound=bound).to_dicts()}
                                 for bound in ("low", "high")}}))
    declared = study.filter(pl.col("declared"))
    used, left_out = _informative(declared, "log_declared_spend")
    results.append(_fit(
        "declared_spend_caught", model(used, "log_declared_spend"), used, left_out,
        alpha=alpha, power=power,
        details={"counts": _counts(declared),
                 "sensitivity": {bound: _sensitivity(declared, f"log_declared_spend_{bound}",
                                                     model) for bound in ("low", "high")},
                 "ads_band_held_fixed": _estimate_dict(model(used, "log_declared_spend",
                                                             ("ad_band",)))
                 if used.height else {"status": "skipped", "reason": "no Pages to compare"},
                 "by_report": _by_report(declared, "log_declared_spend", alpha)}))
    family = [r.p_value if r.id in PRIMARY else None for r in results]
    adjusted = adjust_p(family, method="fdr_bh")
    results = [replace(r, p_adjusted=p if r.id in PRIMARY else None)
               for r, p in zip(results, adjusted, strict=True)]
    by_id = {r.id: r for r in results}
    return [replace(r, conclusion=_conclusion(r, by_id, alpha)) for r in results]


def _bound_value(bound: str) -> float:
    return {"midpoint": LOW_BUCKET_MIDPOINT, "low": LOW_BUCKET_BOUNDS[0],
            "high": LOW_BUCKET_BOUNDS[1]}[bound]


def _counts(study: pl.DataFrame) -> list[dict[str, Any]]:
    """Per report: Pages, caught, with declared ads, both, and in the ≤100 bucket only."""
    return (study.group_by("report").agg(
        pl.len().cast(pl.Int64).alias("pages"),
        pl.col("caught").sum().cast(pl.Int64).alias("caught"),
        pl.col("declared").sum().cast(pl.Int64).alias("declared"),
        (pl.col("caught") & pl.col("declared")).sum().cast(pl.Int64).alias("caught_and_declared"),
        (pl.col("caught") & ~pl.col("declared")).sum().cast(pl.Int64).alias("caught_only"),
        (pl.col("spend_high") <= LOW_BUCKET_BOUNDS[1]).sum().cast(pl.Int64)
        .alias("spend_at_most_100"),
        pl.col("rows").sum().cast(pl.Int64).alias("report_rows"),
        pl.first("currency"),
    ).sort("report").to_dicts())


def _why_not(group: pl.DataFrame, exposure: str) -> str | None:
    """Why one report's Pages cannot inform a fit of caught on ``exposure`` (None if they can)."""
    if group.height == 0:
        return "no Pages to compare"
    caught = int(group["caught_flag"].sum())
    if caught == 0:
        return "no Page was caught: there is no outcome to relate spend to"
    if caught == group.height:
        return "every Page was caught: there is nothing to compare with"
    if group[exposure].n_unique() < 2:
        return (f"spend does not vary (every amount is {LOW_BUCKET}, or all are equal), so its "
                "relation to being caught cannot be estimated")
    return None


def _informative(study: pl.DataFrame, exposure: str
                 ) -> tuple[pl.DataFrame, list[dict[str, str]]]:
    """The Pages of reports that can inform the fit, and the reports left out with the reason."""
    left_out = []
    for (report,), group in study.sort("report").group_by("report", maintain_order=True):
        reason = _why_not(group, exposure)
        if reason is not None:
            left_out.append({"report": report, "pages": group.height, "reason": reason})
    dropped = [r["report"] for r in left_out]
    return study.filter(~pl.col("report").is_in(dropped)), left_out


def _captured(estimate) -> tuple[Estimate | None, str | None, list[str]]:
    """Run a fit; return it, or the reason it failed, and the warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = estimate()
        except ValueError as exc:  # e.g. perfect separation: no finite estimate
            return None, f"no estimate: {exc}", sorted({str(w.message) for w in caught})
    return result, None, sorted({str(w.message) for w in caught})


def _fit(test_id: str, estimate, used: pl.DataFrame, left_out: list[dict[str, str]], *,
         alpha: float, power: float, details: dict[str, Any]) -> TestResult:
    question, estimand = QUESTIONS[test_id]
    details = {**details, "reports_left_out": left_out}
    result, reason, raised = (None, None, []) if used.height == 0 else _captured(estimate)
    if used.height == 0:
        reasons = sorted({r["reason"] for r in left_out})
        reason = "; ".join(reasons) if reasons else "no Pages to compare"
    if raised:
        details["warnings"] = raised
    if result is None or not math.isfinite(result.estimate):
        return TestResult(id=test_id, status="skipped", question=question, estimand=estimand,
                          scale="OR", method=METHODS[test_id], n=used.height,
                          reason=reason or "no finite estimate", details=details)
    caught = int(used["caught_flag"].sum())
    details["analysed"] = {"pages": used.height, "caught": caught,
                           "caught_only": int((used["caught"] & ~used["declared"]).sum()),
                           "caught_and_declared": int((used["caught"] & used["declared"]).sum()),
                           "declared": int(used["declared"].sum())}
    return TestResult(
        id=test_id, status="ok", question=question, estimand=estimand, scale="OR",
        method=METHODS[test_id], estimate=result.estimate, ci_low=result.ci_low,
        ci_high=result.ci_high, p_value=result.p_value, n=result.n,
        n_clusters=result.n_clusters, mde=mde_ratio(result.se, alpha=alpha, power=power),
        details={"se": result.se, "computation": result.method, **result.details, **details})


def _estimate_dict(estimate) -> dict[str, Any]:
    result, reason, raised = _captured(estimate)
    if result is None:
        return {"status": "skipped", "reason": reason}
    out = {"status": "ok", "estimate": result.estimate, "ci_low": result.ci_low,
           "ci_high": result.ci_high, "p_value": result.p_value, "n": result.n}
    if raised:
        out["warnings"] = raised
    return out


def _sensitivity(study: pl.DataFrame, exposure: str, fit) -> dict[str, Any]:
    used, left_out = _informative(study, exposure)
    if used.height == 0:
        return {"status": "skipped", "reason": "; ".join(sorted({r["reason"] for r in left_out}))}
    return {**_estimate_dict(fit(used, exposure)), "reports_left_out": left_out}


def _by_report(study: pl.DataFrame, exposure: str, alpha: float) -> list[dict[str, Any]]:
    out = []
    for (report,), group in study.sort("report").group_by("report", maintain_order=True):
        reason = _why_not(group, exposure)
        entry: dict[str, Any] = {"report": report, "pages": group.height}
        if reason is not None:
            entry.update(status="skipped", reason=reason)
        else:
            entry.update(_estimate_dict(lambda g=group: logistic(
                g, outcome="caught_flag", exposure=exposure, alpha=alpha)))
        out.append(entry)
    return out


# --------------------------------------------------------------------------------------------
# Words


def _conclusion(result: TestResult, by_id: dict[str, TestResult], alpha: float) -> str:
    if result.status != "ok":
        return f"Not tested: {result.reason}."
    ci = f"odds ratio {fmt(result.estimate)}, 95% CI {fmt(result.ci_low)} to {fmt(result.ci_high)}"
    p = (f"adjusted p {fmt_p(result.p_adjusted)}" if result.p_adjusted is not None
         else f"p {fmt_p(result.p_value)}")
    decided = (result.p_adjusted if result.p_adjusted is not None else result.p_value) < alpha
    lower = result.estimate < 1
    counts = result.details["analysed"]
    n, caught, caught_only = counts["pages"], counts["caught"], counts["caught_only"]
    left = result.details.get("reports_left_out", [])
    note = (f" ({', '.join(r['report'] for r in left)} left out: "
            f"{'; '.join(sorted({r['reason'] for r in left}))}.)" if left else "")
    if result.id in ("spend_caught", "spend_caught_low", "spend_caught_high"):
        bound = {"spend_caught": f"{LOW_BUCKET} counted as {LOW_BUCKET_MIDPOINT:g}",
                 "spend_caught_low": f"{LOW_BUCKET} counted as 0",
                 "spend_caught_high": f"{LOW_BUCKET} counted as 100"}[result.id]
        relation = (f"each tenfold step in a Page's spend went with "
                    f"{abs(1 - result.estimate) * 100:.0f}% {'lower' if lower else 'higher'} odds "
                    f"of being caught" if decided else "being caught showed no clear relation to "
                    "spend")
        head = (f"Of {n:,} Pages, {caught:,} were caught running political ads without a "
                f"disclaimer; {relation} ({ci}; {p}; {bound}).{note}")
        if result.id != "spend_caught":
            main = by_id.get("spend_caught")
            if main is not None and main.status == "ok":
                effect = ("changes the answer little" if _close(main, result) else
                          "changes its size, so the size is not to be trusted")
                head += (f" With {LOW_BUCKET} at {LOW_BUCKET_MIDPOINT:g} it is "
                         f"{fmt(main.estimate)}: how the censored amounts are counted {effect}.")
            return head
        return (head + f" This cannot be read as leniency: {caught_only:,} of the {caught:,} "
                "caught Pages ran only undeclared ads, whose spend stopped when Meta took them "
                "down, so their low spend is partly a result of being caught, and a lower catch "
                f"rate among big spenders is expected with or without leniency. {SELECTION}")
    if result.id == "spend_tier_trend":
        tiers = [t for t in result.details.get("tiers", [])
                 if t["report"] not in {r["report"] for r in left}]
        shares = "; ".join(f"{t['tier_label']}: {t['caught']:,} of {t['pages']:,}"
                           for t in _pooled_tiers(tiers))
        words = ("fell" if lower else "rose") if decided else "showed no clear trend"
        return (f"The share of Pages caught {words} across spend tiers ({shares}; {ci} per tier "
                f"step; {p}).{note} Nearly all caught Pages are in the lowest tier because their "
                "only political ads were the ones taken down; this mirrors the takedown, not the "
                f"scrutiny big spenders get. {SELECTION}")
    # declared_spend_caught
    declared, both = counts["declared"], counts["caught_and_declared"]
    head = (f"Among {declared:,} Pages that ran declared political ads, {both:,} were also caught "
            f"running ads without a disclaimer; ")
    if decided:
        head += (f"each tenfold step in declared spend went with "
                 f"{abs(1 - result.estimate) * 100:.0f}% {'lower' if lower else 'higher'} odds "
                 f"of being caught ({ci}; {p}).")
        head += (" This is consistent with big spenders being caught less, though it does not "
                 "show why." if lower else " Big spenders were caught more often, not less: no "
                 f"sign of leniency; {ACTIVITY[0].lower()}{ACTIVITY[1:]}")
    else:
        head += f"being caught showed no clear relation to declared spend ({ci}; {p})."
        if result.ci_low is not None and result.ci_low < 1:
            head += (f" Leniency stronger than an odds ratio of {fmt(result.ci_low)} per tenfold "
                     "spend is ruled out at this level; weaker leniency is not.")
    return (head + note + " Undeclared ads that were never caught are not in the report, so this "
            "compares catches, not violations.")


def _close(a: TestResult, b: TestResult) -> bool:
    """Two odds ratios agree in direction and differ by less than a fifth on the log scale."""
    if a.estimate is None or b.estimate is None:
        return False
    return ((a.estimate < 1) == (b.estimate < 1)
            and abs(math.log(a.estimate) - math.log(b.estimate)) < math.log(1.2))


def _pooled_tiers(tiers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pooled: dict[int, dict[str, Any]] = {}
    for t in tiers:
        entry = pooled.setdefault(t["tier"], {"tier_label": t["tier_label"], "caught": 0,
                                              "pages": 0})
        entry["caught"] += t["caught"]
        entry["pages"] += t["pages"]
    return [pooled[k] for k in sorted(pooled)]


# --------------------------------------------------------------------------------------------
# results.json


def results_document(data: str | Path | Reports | Dataset, *,
                     results: list[TestResult] | None = None, alpha: float = ALPHA
                     ) -> dict[str, Any]:
    """The study's results in the shape of ``results.json`` (DESIGN.md, results contract).

    Parameters
    ----------
    data : str, Path, Reports or Dataset
        See :func:`study_pages`.
    results : list of TestResult, optional
        From :func:`run_study`; computed when not given.
    alpha : float, default 0.05
        Significance level (used when the tests are run here, and recorded).

    Returns
    -------
    dict
        ``schema_version``, ``levelfield_version``, ``synthetic`` (false), ``data`` (path,
        source, and each report file with its SHA-256 and rows), ``parameters``, ``coverage``
        (cases are Pages, one per Page and report; those of a report that cannot inform
        ``spend_caught`` are excluded with the reason; ``report_rows`` is the files' rows, which
        add up to the Pages' rows), ``tests``, and ``study``.
    """
    study, reports = study_pages(data)
    tests = results if results is not None else run_study(reports, alpha=alpha)
    report_rows = int(reports.rows.height)
    assert int(study["rows"].sum()) == report_rows, "every report row belongs to one Page"
    dataset = Dataset(Path(reports.path), {}, [FileInfo(f.table, f.name, f.sha256, f.rows)
                                               for f in reports.files],
                      synthetic=False, source="meta-ad-library")
    # The ledger follows the main test: a report that cannot inform it is excluded, by reason.
    main = next((t for t in tests if t.id == "spend_caught"), None)
    excluded: dict[str, int] = {}
    for left in (main.details.get("reports_left_out", []) if main is not None else []):
        excluded[left["reason"]] = excluded.get(left["reason"], 0) + left["pages"]
    ledger = CoverageLedger(enforcement_rows=study.height,
                            analysed=study.height - sum(excluded.values()), excluded=excluded)
    parameters = {
        "alpha": alpha,
        "low_bucket": {"shown_as": LOW_BUCKET, "bounds": list(LOW_BUCKET_BOUNDS),
                       "counted_as": LOW_BUCKET_MIDPOINT},
        "spend_floor_before_log10": SPEND_FLOOR,
        "spend_tiers": list(TIER_LABELS),
        "case": "one Page in one report; caught = a 'These ads ran without a disclaimer' row",
    }
    document = build_results(dataset, ledger, tests, parameters=parameters)
    document["coverage"]["report_rows"] = report_rows
    document["coverage"]["cases_are"] = "Pages (one per Page and report), built from report_rows"
    document["study"] = STUDY
    return document
