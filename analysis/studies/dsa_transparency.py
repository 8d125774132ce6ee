"""Business and private accounts in the EU DSA Transparency Database: what the statements can show.

The Transparency Database holds no ad spend, so it cannot say whether money buys leniency. It
does say, for most platforms, whether the account behind the moderated content is a *business*
(a trader) or a *private* user — the only size-like field it has. This study asks, of the
statements of reasons read by :func:`analysis.sources.dsa_tdb.read`, what that field can honestly
answer, always comparing like with like: statements of the same platform, about the same category
of violation, on the same legal ground (illegal content, or content incompatible with the terms
and conditions). Strata are platform × category × ground.

Tests (``id``: question; estimate):

``business_severe_crude``
    Do statements about business accounts record removal of the content (or a stronger measure:
    suspension or termination of the account or of the service) less often than statements about
    private accounts? Crude odds ratio.
``business_severe_adjusted``
    The same, like with like: Mantel–Haenszel common odds ratio over the strata. OR < 1: business
    accounts more often got only a milder measure (demotion, age or interaction restriction, label,
    other visibility restriction, partial service restriction, or a monetary measure alone).
``business_decision_speed``
    Do measures against business accounts' content come later after it was posted? Hazard ratio
    of the measure being applied, per day since the content date (Cox model, separate baseline in
    every stratum). HR < 1: later.
``business_automated_detection``
    Is business accounts' content detected by automated means more or less often? Mantel–Haenszel
    odds ratio of ``automated_detection``. This describes how platforms find content, not leniency.
``business_equal_treatment``
    Can equal treatment (the adjusted odds ratio within 0.80 to 1.25) be shown? Two one-sided tests.

P-values of the first four are adjusted together (Benjamini–Hochberg). OR < 1 and HR < 1 point the
way leniency would, as in the battery.

Uncertainty. The data identify no accounts, so cases cannot be clustered by account, and many
statements may concern the same account (a seller's whole catalogue, say): intervals that treat
statements as independent are then too narrow. When at least :data:`MIN_PLATFORMS` platforms report
statements of both account types, intervals and p-values come instead from leaving out one
platform at a time (delete-one-platform jackknife for the odds ratios; a sandwich variance with
platforms as clusters for the Cox model), which asks how much the answer depends on single
platforms. With fewer platforms the statement-level interval is reported and the conclusion says
it is too narrow.

What the data cannot show, said in every conclusion: they are observational and reported by the
platforms about themselves; a statement exists only where a platform restricted something, so
there is no denominator — content reported and left up is invisible, and leniency by not acting
at all cannot be seen; and ``account_type`` is optional, often missing, and statements without it
are left out (counted in the coverage ledger).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import polars as pl

from analysis.attribute import CoverageLedger
from analysis.config import ALPHA, EQUIVALENCE_MARGIN, POWER, SEED
from analysis.findings import fmt, fmt_p, significant
from analysis.load import Dataset
from analysis.results import build_results
from analysis.sources.dsa_tdb import NO_RESTRICTION, SEVERE_MEASURES, account_group, measure
from analysis.stats.equivalence import tost
from analysis.stats.multiplicity import adjust_p
from analysis.stats.power import e_value, mde_ratio
from analysis.stats.result import Estimate, TestResult
from analysis.stats.stratified import mantel_haenszel, odds_ratio
from analysis.stats.survival import cox

#: Like is compared with like within these strata.
STRATA = ["platform_name", "category", "decision_ground"]
#: Platforms with statements of both account types needed before platforms serve as clusters.
MIN_PLATFORMS = 5
#: Above this many statements the Cox model is fitted on a pseudo-random subsample of them.
COX_MAX_ROWS = 2_000_000
CLUSTER = "platform"
NOT_REPORTED = "account_type not reported"
OTHER_TYPE = "account_type neither business nor private"
#: Columns of the statements the study reads.
REQUIRED = ("uuid", "platform_name", "category", "decision_ground", "account_type",
            "decision_visibility", "decision_monetary", "decision_provision", "decision_account",
            "automated_detection", "content_date", "application_date")

if TYPE_CHECKING:
    import pandas as pd

    Statements = Dataset | pl.DataFrame | pl.LazyFrame | pd.DataFrame


@dataclass(frozen=True)
class Design:
    """What a test asks and estimates (for results.json and the methods appendix)."""

    id: str
    question: str
    estimand: str
    scale: str
    method: str


_LIKE = "same platform, category and legal ground"
DESIGNS = {d.id: d for d in (
    Design("business_severe_crude",
           "Do statements about business accounts record removal (or a stronger measure) less "
           "often than statements about private accounts? (crude)",
           "Odds ratio of a severe measure (content removed or disabled, or account or service "
           "suspended or terminated), business vs private accounts", "OR",
           "Crude 2x2 odds ratio"),
    Design("business_severe_adjusted",
           f"Do statements about business accounts record removal (or a stronger measure) less "
           f"often, comparing like with like ({_LIKE})?",
           "Mantel-Haenszel common odds ratio of a severe measure, business vs private accounts, "
           "over platform x category x decision ground strata (OR < 1: milder measures for "
           "business accounts)", "OR",
           "Mantel-Haenszel common odds ratio over platform x category x decision ground"),
    Design("business_decision_speed",
           f"Are measures against business accounts' content applied later after it was posted "
           f"({_LIKE})?",
           "Hazard ratio of the measure being applied, per day from content_date to "
           "application_date, business vs private accounts (HR < 1: later)", "HR",
           "Cox proportional hazards model stratified by platform x category x decision ground, "
           "Efron ties"),
    Design("business_automated_detection",
           f"Is business accounts' content detected by automated means more or less often "
           f"({_LIKE})?",
           "Mantel-Haenszel common odds ratio of automated detection, business vs private "
           "accounts, over platform x category x decision ground strata", "OR",
           "Mantel-Haenszel common odds ratio over platform x category x decision ground"),
    Design("business_equal_treatment",
           "Can equal treatment of business and private accounts be shown, within a stated "
           "margin?",
           f"The adjusted odds ratio of business_severe_adjusted lies between "
           f"{1 / EQUIVALENCE_MARGIN:.2f} and {EQUIVALENCE_MARGIN:.2f}", "OR",
           "Two one-sided tests (TOST) on the log Mantel-Haenszel odds ratio with its standard "
           "error; equivalence shown when the 90% CI lies inside the margin"),
)}
#: Tests whose p-values are adjusted together (equal treatment tests a different null).
FAMILY = ("business_severe_crude", "business_severe_adjusted", "business_decision_speed",
          "business_automated_detection")


def statement_facts(statements: Statements) -> pl.LazyFrame:
    """One row per statement with what the study needs, and why a statement is left out.

    Parameters
    ----------
    statements : Dataset, polars or pandas DataFrame, or polars LazyFrame
        The ``statements`` table of :func:`analysis.sources.dsa_tdb.read` (or a Dataset holding
        it), or any frame with the columns in :data:`REQUIRED`, typed as there
        (``decision_visibility`` a list of strings, ``automated_detection`` boolean, the dates
        datetimes).

    Returns
    -------
    polars.LazyFrame
        ``uuid``; the strata (missing values become "… not reported" labels, so they form strata
        of their own); ``business`` (true for business, false for private, null otherwise);
        ``measure`` and ``severe`` (see :func:`analysis.sources.dsa_tdb.measure`); ``other_only``
        (the only measure is ``DECISION_VISIBILITY_OTHER``, whose meaning varies by platform);
        ``automated`` (automated detection); ``delay_days`` (days from content date to
        application date); ``exclusion`` (null when the statement is analysed, else the reason).
    """
    lf = _statements(statements)
    visibility = pl.col("decision_visibility")
    other_only = (
        (pl.col("measure") == "restriction") & pl.col("decision_provision").is_null()
        & (visibility.list.len() > 0)
        & visibility.list.eval(pl.element() == "DECISION_VISIBILITY_OTHER").list.all()
    ).fill_null(False)
    group = account_group()
    return lf.with_columns(measure()).select(
        "uuid",
        pl.col("platform_name").fill_null("platform not reported"),
        pl.col("category").fill_null("category not reported"),
        pl.col("decision_ground").fill_null("decision ground not reported"),
        pl.when(group.is_not_null()).then(group == "business").alias("business"),
        "measure",
        pl.col("measure").is_in(SEVERE_MEASURES).alias("severe"),
        other_only.alias("other_only"),
        pl.col("automated_detection").alias("automated"),
        ((pl.col("application_date") - pl.col("content_date")).dt.total_seconds(fractional=True)
         / 86_400.0).alias("delay_days"),
        pl.when(pl.col("measure") == "none").then(pl.lit(NO_RESTRICTION))
        .when(pl.col("account_type").is_null()).then(pl.lit(NOT_REPORTED))
        .when(group.is_null()).then(pl.lit(OTHER_TYPE))
        .otherwise(pl.lit(None, pl.String)).alias("exclusion"),
    )


def study_coverage(data: Statements) -> CoverageLedger:
    """Where every published statement went: analysed, or left out with a reason.

    Rows the reader removed (exact duplicates, repeated uuids) come from ``Dataset.excluded``;
    the study adds statements recording no restriction and statements without a business or
    private account type. With a Dataset the total is reconciled with the rows of its files.

    Parameters
    ----------
    data : Dataset or frame of statements
        As for :func:`run_study`.

    Returns
    -------
    CoverageLedger
        ``enforcement_rows`` counts the statements as published.
    """
    counted = (statement_facts(data).group_by("exclusion").agg(pl.len().alias("rows"))
               .collect())
    excluded = {r: int(n) for r, n in counted.iter_rows() if r is not None}
    removed = _removed_by_reader(data)
    for reason, n in removed.items():
        excluded[reason] = excluded.get(reason, 0) + n
    total = int(counted["rows"].sum()) + sum(removed.values())
    if isinstance(data, Dataset) and data.files:
        published = sum(f.rows for f in data.files)
        if published != total:  # an internal invariant, not a user error
            raise AssertionError(f"statements do not reconcile: {total} accounted for, "
                                 f"{published} published")
    return CoverageLedger(
        enforcement_rows=total,
        analysed=int(counted.filter(pl.col("exclusion").is_null())["rows"].sum()),
        excluded=excluded,
    )


def run_study(data: Statements, *, alpha: float = ALPHA, power: float = POWER) -> list[TestResult]:
    """Run the study's tests on DSA statements of reasons.

    Parameters
    ----------
    data : Dataset, polars or pandas DataFrame, or polars LazyFrame
        The Dataset of :func:`analysis.sources.dsa_tdb.read` (its ``statements`` table is used),
        or a frame of statements with the columns in :data:`REQUIRED`.
    alpha : float, default 0.05
        Significance level; intervals are 1 - alpha.
    power : float, default 0.8
        Power at which the minimum detectable effect (``mde``) is stated.

    Returns
    -------
    list of TestResult
        In the order of :data:`DESIGNS`. Tests the data cannot support (e.g. no statement gives an
        account type) are ``skipped`` with the reason. ``p_adjusted``: Benjamini–Hochberg over
        :data:`FAMILY`; for ``business_equal_treatment`` it is the TOST p-value itself.
        ``details`` hold the standard error, how the interval was obtained, the odds ratio per
        platform, a sensitivity analysis and the statements each test left out.

    Examples
    --------
    The shipped sample dump gives no account types, so nothing can be compared:

    >>> from analysis.config import REFERENCE_DATA_DIR
    >>> from analysis.sources.dsa_tdb import read
    >>> sample = read(REFERENCE_DATA_DIR / "dsa_tdb" / "sor-global-2024-03-14-full_first12rows.csv")
    >>> results = run_study(sample)
    >>> results[1].status, results[1].reason
    ('skipped', 'no statement gives a business or private account type')
    """
    facts = statement_facts(data)
    ledger = study_coverage(data)
    context = _Context.of(facts, ledger)
    results = []
    for test_id, run in RUNNERS.items():
        design = DESIGNS[test_id]
        try:
            estimate = run(context)
        except _Skip as why:
            results.append(_skipped(design, str(why)))
            continue
        context.estimates[test_id] = estimate
        results.append(_result(design, estimate, context, alpha=alpha, power=power))
    adjusted = adjust_p([r.p_value if r.id in FAMILY else None for r in results])
    results = [replace(r, p_adjusted=p if r.id in FAMILY else r.p_value)
               for r, p in zip(results, adjusted, strict=True)]
    return [replace(r, conclusion=conclusion(r, context, alpha=alpha)) for r in results]


def results_document(dataset: Dataset, tests: list[TestResult] | None = None, *,
                     alpha: float = ALPHA, power: float = POWER) -> dict[str, Any]:
    """The study as a results.json document (the same contract as the battery's).

    Parameters
    ----------
    dataset : Dataset
        From :func:`analysis.sources.dsa_tdb.read`.
    tests : list of TestResult, optional
        The results of :func:`run_study`; run here when not given.
    alpha, power : float
        As for :func:`run_study` (recorded in ``parameters``).

    Returns
    -------
    dict
        ``schema_version``, ``levelfield_version``, ``synthetic``, ``data`` (path, source, files
        with checksums and published row counts), ``parameters``, ``coverage`` (statements
        published, analysed, and left out by reason) and ``tests``.
    """
    if tests is None:
        tests = run_study(dataset, alpha=alpha, power=power)
    parameters = {
        "study": "dsa_transparency", "alpha": alpha, "power": power, "strata": STRATA,
        "severe_measures": list(SEVERE_MEASURES), "equivalence_margin": EQUIVALENCE_MARGIN,
        "min_platforms_for_clustering": MIN_PLATFORMS, "cox_max_rows": COX_MAX_ROWS,
        "seed": SEED,
    }
    return build_results(dataset, study_coverage(dataset), tests, parameters=parameters)


# --------------------------------------------------------------------------------------------
# The tests


class _Skip(Exception):
    """Raised inside a test when the data cannot support it; the message is the reason."""


@dataclass
class _Context:
    facts: pl.LazyFrame
    cells: pl.DataFrame
    ledger: CoverageLedger
    cluster: str | None
    platforms_compared: int
    estimates: dict[str, Estimate] = field(default_factory=dict)

    @classmethod
    def of(cls, facts: pl.LazyFrame, ledger: CoverageLedger) -> _Context:
        keys = [*STRATA, "business", "severe", "other_only", "automated"]
        cells = (facts.filter(pl.col("exclusion").is_null())
                 .group_by(keys).agg(pl.len().cast(pl.Int64).alias("n"))
                 .sort(keys, nulls_last=True).collect()
                 # The statistics take each role from its own column: platform is both a stratum
                 # and, when there are enough of them, the cluster.
                 .with_columns(pl.col("platform_name").alias(CLUSTER)))
        both = (cells.group_by("platform_name").agg(pl.col("business").n_unique())
                .filter(pl.col("business") == 2).height)
        return cls(facts, cells, ledger, CLUSTER if both >= MIN_PLATFORMS else None, both)

    @property
    def share_missing(self) -> float:
        missing = self.ledger.excluded.get(NOT_REPORTED, 0) + self.ledger.excluded.get(OTHER_TYPE, 0)
        considered = self.ledger.analysed + missing
        return missing / considered if considered else 0.0


def _need_both_groups(cells: pl.DataFrame) -> None:
    present = set(cells.filter(pl.col("n") > 0)["business"].to_list())
    if not present:
        raise _Skip("no statement gives a business or private account type")
    if True not in present:
        raise _Skip("no statement concerns a business account")
    if False not in present:
        raise _Skip("no statement concerns a private account")


def _mh(cells: pl.DataFrame, outcome: str, cluster: str | None,
        strata: list[str] = STRATA) -> Estimate:
    try:
        return mantel_haenszel(cells, outcome=outcome, group="business", strata=strata,
                               count="n", cluster=cluster)
    except ValueError as exc:
        raise _Skip(str(exc)) from None


def _by_platform(cells: pl.DataFrame, outcome: str) -> list[dict]:
    """The odds ratio within each platform, so a reader sees whether platforms agree."""
    rows = []
    for platform in sorted(cells["platform_name"].unique().to_list()):
        own = cells.filter(pl.col("platform_name") == platform)
        try:
            est = mantel_haenszel(own, outcome=outcome, group="business",
                                  strata=["category", "decision_ground"], count="n")
        except ValueError:
            continue
        rows.append({"platform": platform, "estimate": est.estimate, "ci_low": est.ci_low,
                     "ci_high": est.ci_high, "n": est.n})
    return rows


def _severe_crude(c: _Context) -> Estimate:
    _need_both_groups(c.cells)
    try:
        return odds_ratio(c.cells, outcome="severe", group="business", count="n",
                          cluster=c.cluster)
    except ValueError as exc:
        raise _Skip(str(exc)) from None


def _severe_adjusted(c: _Context) -> Estimate:
    _need_both_groups(c.cells)
    estimate = _mh(c.cells, "severe", c.cluster)
    sensitivity: dict[str, Any]
    try:
        # DECISION_VISIBILITY_OTHER means different things on different platforms; the answer
        # should not hang on counting it as mild.
        without = mantel_haenszel(c.cells.filter(~pl.col("other_only")), outcome="severe",
                                  group="business", strata=STRATA, count="n", cluster=c.cluster)
        sensitivity = {"estimate": without.estimate, "ci_low": without.ci_low,
                       "ci_high": without.ci_high, "p_value": without.p_value, "n": without.n}
    except ValueError as exc:
        sensitivity = {"skipped": str(exc)}
    nearest = estimate.ci_high if estimate.estimate < 1 else estimate.ci_low
    evalue = e_value(estimate.estimate, ci_limit=nearest, rare=False)
    return _with_details(estimate, by_platform=_by_platform(c.cells, "severe"),
                         without_visibility_other_only=sensitivity,
                         e_value={"point": evalue.point, "ci": evalue.ci})


def _decision_speed(c: _Context) -> Estimate:
    _need_both_groups(c.cells)
    analysed = c.facts.filter(pl.col("exclusion").is_null())
    counts = analysed.select(
        pl.len().alias("analysed"),
        pl.col("delay_days").is_null().sum().alias("no_dates"),
        (pl.col("delay_days") < 0).sum().alias("negative"),
    ).collect().row(0, named=True)
    rows = analysed.filter(pl.col("delay_days") >= 0)
    usable = counts["analysed"] - counts["no_dates"] - counts["negative"]
    if usable == 0:
        raise _Skip("no statement has both a content date and an application date on or after it")
    subsample = None
    if usable > COX_MAX_ROWS:
        # A pseudo-random subsample fixed by each statement's uuid: the same statements are
        # chosen whatever the order of the files, so reruns give the same answer.
        threshold = int((2**64 - 1) * COX_MAX_ROWS / usable)
        rows = rows.filter(pl.col("uuid").hash(seed=SEED) < pl.lit(threshold, pl.UInt64))
        subsample = {"statements_usable": usable, "share_kept": COX_MAX_ROWS / usable,
                     "rule": f"uuid hash (seed {SEED}) below a threshold"}
    # The model needs one row per statement; integer codes for stratum and platform (joined
    # from the small table of cells) keep those rows narrow.
    strata = c.cells.select(STRATA).unique().sort(STRATA).with_row_index("stratum")
    platforms = (c.cells.select("platform_name").unique().sort("platform_name")
                 .with_row_index(CLUSTER))
    frame = (rows.join(strata.lazy(), on=STRATA, how="inner")
             .join(platforms.lazy(), on="platform_name", how="inner")
             .select("stratum", CLUSTER, "delay_days", "business",
                     pl.lit(True).alias("applied")))
    try:
        estimate = cox(frame, duration="delay_days", event="applied", group="business",
                       strata="stratum", cluster=c.cluster, max_rows=None)
    except ValueError as exc:
        raise _Skip(str(exc)) from None
    return _with_details(estimate, left_out={
        "no content or application date": counts["no_dates"],
        "application date before content date": counts["negative"]},
        subsample=subsample)


def _automated_detection(c: _Context) -> Estimate:
    cells = c.cells.filter(pl.col("automated").is_not_null())
    _need_both_groups(cells)
    estimate = _mh(cells, "automated", c.cluster)
    missing = int(c.cells.filter(pl.col("automated").is_null())["n"].sum())
    return _with_details(estimate, by_platform=_by_platform(cells, "automated"),
                         left_out={"automated_detection not reported": missing})


def _equal_treatment(c: _Context) -> Estimate:
    if "business_severe_adjusted" not in c.estimates:
        raise _Skip("business_severe_adjusted could not be estimated")
    return tost(c.estimates["business_severe_adjusted"], margin=EQUIVALENCE_MARGIN)


RUNNERS: dict[str, Callable[[_Context], Estimate]] = {
    "business_severe_crude": _severe_crude,
    "business_severe_adjusted": _severe_adjusted,
    "business_decision_speed": _decision_speed,
    "business_automated_detection": _automated_detection,
    "business_equal_treatment": _equal_treatment,
}


def _with_details(estimate: Estimate, **extra: Any) -> Estimate:
    return replace(estimate, details={**estimate.details, **extra})


def _uncertainty(context: _Context, test_id: str) -> str:
    if test_id == "business_equal_treatment":
        return ""
    if context.cluster is not None:
        how = ("sandwich variance with platforms as clusters" if test_id ==
               "business_decision_speed" else "delete-one-platform jackknife")
        return (f"; 95% CI and p-value from a {how} ({context.platforms_compared} platforms "
                "report both account types), since statements of one account are not "
                "independent and accounts are not identified")
    return (f"; statement-level 95% CI and p-value (only {context.platforms_compared} platform(s) "
            f"report both account types, fewer than the {MIN_PLATFORMS} needed to use platforms "
            "as clusters): too narrow if many statements concern the same accounts")


def _skipped(design: Design, reason: str) -> TestResult:
    return TestResult(id=design.id, status="skipped", question=design.question,
                      estimand=design.estimand, scale=design.scale, method=design.method,
                      reason=reason, conclusion=f"Not tested: {reason}")


def _result(design: Design, estimate: Estimate, context: _Context, *, alpha: float,
            power: float) -> TestResult:
    mde = mde_ratio(estimate.se, alpha=alpha, power=power) if math.isfinite(estimate.se) else None
    return TestResult(
        id=design.id, status="ok", question=design.question, estimand=design.estimand,
        scale=design.scale, method=design.method + _uncertainty(context, design.id),
        estimate=estimate.estimate, ci_low=estimate.ci_low, ci_high=estimate.ci_high,
        p_value=estimate.p_value, n=estimate.n, n_clusters=estimate.n_clusters, mde=mde,
        details={"se": estimate.se, "computation": estimate.method, **estimate.details},
    )


# --------------------------------------------------------------------------------------------
# Conclusions in words


def conclusion(result: TestResult, context: _Context, *, alpha: float) -> str:
    """One plain paragraph per test: finding, then what the data cannot show."""
    if result.status != "ok":
        return f"Not tested: {result.reason}"
    sentence = _SENTENCES[result.id](result, alpha)
    if result.id == "business_equal_treatment":
        return sentence + " " + _caveats(context)
    if context.cluster is None:
        sentence += (" The interval treats statements as independent although many may concern "
                     "the same accounts, so it is too narrow.")
    return sentence + " " + _caveats(context)


def _caveats(context: _Context) -> str:
    share = context.share_missing
    missing = (f"{share:.0%} of the statements with a recorded measure do not say whether the "
               "account is a business or private, and are left out"
               if share >= 0.005 else "statements without an account type are left out")
    return ("Caveats: observational data, reported by the platforms about themselves; a "
            "statement exists only where a platform restricted something, so content reported "
            "and left up is not in the data and leniency by not acting at all cannot be seen; "
            f"{missing}.")


def _interval(result: TestResult, name: str = "odds ratio") -> str:
    return (f"{name} {fmt(result.estimate)}, 95% CI {fmt(result.ci_low)} to "
            f"{fmt(result.ci_high)}; adjusted p {fmt_p(result.p_adjusted)}")


def _severe_sentence(result: TestResult, alpha: float) -> str:
    clause = ("In a crude comparison (not like with like), " if result.id ==
              "business_severe_crude" else f"Comparing like with like ({_LIKE}), ")
    if significant(result, alpha):
        lower = result.estimate < 1
        text = (f"{clause}statements about business accounts recorded removal of the content or "
                f"a stronger measure {'less' if lower else 'more'} often than statements about "
                f"private accounts: the odds were {abs(1 - result.estimate) * 100:.0f}% "
                f"{'lower' if lower else 'higher'} ({_interval(result)}).")
        text += (" This is consistent with milder measures for business accounts; it does not "
                 "show why." if lower else
                 " This is not consistent with milder measures for business accounts.")
        return text
    text = (f"{clause}no clear difference was found between statements about business and "
            f"private accounts in how often they recorded removal or a stronger measure "
            f"({_interval(result)}).")
    if result.mde is not None:
        text += (f" Milder treatment of business accounts smaller than an odds ratio of "
                 f"{fmt(result.mde)} cannot be ruled out (the smallest effect this test would "
                 "detect 4 times in 5).")
    return text


def _speed_sentence(result: TestResult, alpha: float) -> str:
    timing = (" The clock starts when the content was posted, not when it was reported, so "
              "this mixes how long content went unnoticed with how long decisions took.")
    if significant(result, alpha):
        later = result.estimate < 1
        return (f"Comparing like with like ({_LIKE}), measures against business accounts' "
                f"content were applied {'later' if later else 'sooner'} after the content was "
                f"posted than measures against private accounts' content "
                f"({_interval(result, 'hazard ratio')}): on any day, a business account's "
                f"content not yet acted on was {abs(1 - result.estimate) * 100:.0f}% "
                f"{'less' if later else 'more'} likely to be acted on." + timing)
    text = (f"Comparing like with like ({_LIKE}), no clear difference was found in how long after "
            f"posting measures were applied to business and private accounts' content "
            f"({_interval(result, 'hazard ratio')}).")
    if result.mde is not None:
        text += f" A slowdown smaller than a hazard ratio of {fmt(result.mde)} cannot be ruled out."
    return text + timing


def _automated_sentence(result: TestResult, alpha: float) -> str:
    note = " This describes how platforms found the content, not how they treated it."
    if significant(result, alpha):
        lower = result.estimate < 1
        return (f"Comparing like with like ({_LIKE}), statements about business accounts said "
                f"the content was detected by automated means {'less' if lower else 'more'} "
                f"often than statements about private accounts ({_interval(result)})." + note)
    return (f"Comparing like with like ({_LIKE}), no clear difference was found in how often "
            f"business and private accounts' content was detected by automated means "
            f"({_interval(result)})." + note)


def _equivalence_sentence(result: TestResult, alpha: float) -> str:
    bounds = result.details.get("bounds", [None, None])
    ci90 = f"90% CI {fmt(result.ci_low)} to {fmt(result.ci_high)}"
    if result.details.get("equivalent"):
        return (f"Equal treatment can be shown within the stated margin: like with like, the "
                f"odds of a severe measure for business accounts were between {fmt(bounds[0])} "
                f"and {fmt(bounds[1])} times those for private accounts ({ci90}; p "
                f"{fmt_p(result.p_value)}). Differences smaller than that margin are not ruled "
                "out.")
    return (f"Equal treatment cannot be shown: the adjusted odds ratio ({ci90}) is not confined "
            f"to the margin of {fmt(bounds[0])} to {fmt(bounds[1])}.")


_SENTENCES: dict[str, Callable[[TestResult, float], str]] = {
    "business_severe_crude": _severe_sentence,
    "business_severe_adjusted": _severe_sentence,
    "business_decision_speed": _speed_sentence,
    "business_automated_detection": _automated_sentence,
    "business_equal_treatment": _equivalence_sentence,
}


# --------------------------------------------------------------------------------------------
# Input


def _statements(data: Statements) -> pl.LazyFrame:
    if isinstance(data, Dataset):
        if "statements" not in data:
            raise ValueError("the dataset has no statements table: read it with "
                             "analysis.sources.dsa_tdb.read")
        lf = data["statements"]
    elif isinstance(data, pl.LazyFrame):
        lf = data
    elif isinstance(data, pl.DataFrame):
        lf = data.lazy()
    else:
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - pandas is a dependency
            pd = None
        if pd is None or not isinstance(data, pd.DataFrame):
            raise TypeError("expected a Dataset, a polars or pandas DataFrame or a polars "
                            f"LazyFrame, got {type(data).__name__}")
        lf = pl.from_pandas(data).lazy()
    missing = [c for c in REQUIRED if c not in lf.collect_schema().names()]
    if missing:
        raise ValueError(f"the statements lack column(s) {missing}; the study needs {REQUIRED}")
    return lf


def _removed_by_reader(data: Statements) -> dict[str, int]:
    """Rows the reader dropped from ``statements`` (not those it only kept out of enforcement)."""
    if not isinstance(data, Dataset):
        return {}
    return {r: n for r, n in data.excluded.items() if r != NO_RESTRICTION}
