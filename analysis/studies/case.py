"""A case study's report: figures, notebook, HTML and PDF, and the tables its notebook shows.

``levelfield run --source meta-ad-library`` (or ``dsa-tdb``) runs the source's study
(:func:`analysis.studies.run_case_study`), writes results.json and then calls
:func:`build_case_report`. The case-study notebooks (``notebooks/10_case_meta_ad_library``,
``notebooks/11_case_dsa_transparency``) read the run back with :func:`read_case` and show the
tables below, one call per cell; every number comes from results.json or from the data the
study read, checked against results.json's checksums.

* Reading a run: :func:`read_case`.
* Tables: :func:`files_table`, :func:`tests_table`, :func:`designs_table`, :func:`reports_table`
  and :func:`sensitivity_table` (Meta), :func:`statements_by_platform` (DSA).
* Words: :func:`conclusions`, :func:`caveats`, :func:`caveats_markdown`.
* The report: :data:`FIGURES`, :func:`draw_figures`, :func:`build_case_report`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import polars as pl

from analysis.audit import Markdown
from analysis.studies import STUDIES, read_study_data

if TYPE_CHECKING:
    from analysis.studies import StudyRun

__all__ = [
    "FIGURES",
    "CaseRun",
    "build_case_report",
    "caveats",
    "caveats_markdown",
    "conclusions",
    "designs_table",
    "draw_figures",
    "files_table",
    "read_case",
    "reports_table",
    "sensitivity_table",
    "statements_by_platform",
    "tests_table",
]

_DASH = "\u2013"

#: The figures of each study's PDF, in reading order: (file name, title, caption).
FIGURES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "meta-ad-library": (
        ("caught_by_tier", "Share of Pages caught, by spend tier",
         "Share of the Pages in each report that had ads taken down for running without a "
         "disclaimer, by the Page's spend on political ads in the report's window (tenfold "
         "tiers in the report's own currency; \u2264100 counted as 50). Whiskers: Wilson 95% "
         "confidence intervals; numbers: Pages in the tier. A Page that was never caught is in "
         "a report only if it also ran declared political ads, so these shares are not catch "
         "rates, and most caught Pages sit in the lowest tier because their only political ads "
         "were the ones taken down."),
        ("estimates", "The estimates",
         "Odds ratios with 95% confidence intervals on a log scale; 1 means no relation between "
         "spend and being caught. spend_caught and its two sensitivity analyses (hollow: "
         "\u2264100 counted as 0 or as 100) are per tenfold total spend; spend_tier_trend per "
         "step up the tiers; declared_spend_caught per tenfold spend on declared ads, among "
         "Pages that ran them. The findings say what each can and cannot mean."),
        ("data_audit", "From report rows to analysed Pages",
         "Each report row is one Page and one disclaimer; the rows of one Page in one report "
         "make one case. Reports that cannot inform the main test are excluded with the reason. "
         "Every row is accounted for."),
    ),
    "dsa-tdb": (
        ("measures_by_account_type", "Measures recorded, by account type",
         "The most severe measure each statement records (account or service suspended or "
         "terminated, content removed or disabled, content only restricted, a monetary measure "
         "only), as shares of the statements of each account type, with the number of "
         "statements. Not adjusted for platform, category or legal ground."),
        ("estimates", "The estimates",
         "Odds and hazard ratios of business against private accounts with 95% confidence "
         "intervals (90% for the equal-treatment test) on a log scale; 1 means no difference."),
        ("data_audit", "From published statements to analysed statements",
         "Every published row is accounted for: exact duplicates in the dump are removed, and "
         "statements recording no restriction or giving no business or private account type are "
         "left out, each with its count."),
    ),
}


# --------------------------------------------------------------------------------------------
# Reading a run back


class CaseRun(NamedTuple):
    """A finished case study: its results.json and the data the study read."""

    results: dict[str, Any]
    data: Any


def read_case(data_dir: str | Path, *, out_dir: str | Path) -> CaseRun:
    """Read a case study's results.json and the data it was computed from.

    The data are read with the study's reader (:func:`analysis.studies.read_study_data`) and
    their files checked against the checksums in results.json, so a notebook pointed at other
    data stops with an error instead of mixing the two.

    Parameters
    ----------
    data_dir : str or Path
        The data the study analysed (a file, folder or zip).
    out_dir : str or Path
        The run folder, holding results.json.

    Returns
    -------
    CaseRun
        ``results`` (dict) and ``data`` (Meta's reports, or the DSA Dataset).

    Raises
    ------
    FileNotFoundError
        When the run folder has no results.json.
    ValueError
        When results.json is not a case study's, or the files differ from those it recorded.
    """
    path = Path(out_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `levelfield analyze --source SOURCE "
                                f"--data DATA --out {out_dir}` first")
    results = json.loads(path.read_text(encoding="utf-8"))
    source = str((results.get("data") or {}).get("source"))
    if source not in STUDIES:
        raise ValueError(f"{path} is not a case study's results (source {source}); case studies "
                         f"exist for {', '.join(STUDIES)}")
    data = read_study_data(source, data_dir)
    recorded = {f["name"]: f["sha256"] for f in results["data"]["files"]}
    found = {f.name: f.sha256 for f in data.files}
    if recorded != found:
        differing = sorted(n for n in set(recorded) | set(found) if recorded.get(n) != found.get(n))
        raise ValueError(f"the data in {data_dir} are not the data {path} was computed from "
                         f"(files that differ: {', '.join(differing)}); rerun `levelfield run`")
    return CaseRun(results, data)


# --------------------------------------------------------------------------------------------
# Tables


def _by_id(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(t["id"]): t for t in results.get("tests", [])}


def _ratio(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else _DASH


def _p(value: Any) -> str:
    from analysis.findings import fmt_p

    return fmt_p(value) if isinstance(value, (int, float)) else _DASH


def files_table(results: Mapping[str, Any]) -> pl.DataFrame:
    """The input files as results.json records them: name, rows, start of the SHA-256.

    Examples
    --------
    >>> files_table({"data": {"files": [{"name": "a.csv", "rows": 3, "sha256": "ab" * 32}]}}
    ...             )["rows"].to_list()
    [3]
    """
    files = (results.get("data") or {}).get("files") or []
    return pl.DataFrame({"file": [str(f["name"]) for f in files],
                         "rows": [int(f["rows"]) for f in files],
                         "sha256 (first 16)": [str(f["sha256"])[:16] for f in files]},
                        schema={"file": pl.String, "rows": pl.Int64,
                                "sha256 (first 16)": pl.String})


def tests_table(results: Mapping[str, Any]) -> pl.DataFrame:
    """Every test of a run: estimate, 95% CI, p, adjusted p and n, or why it did not run.

    Returns
    -------
    polars.DataFrame
        ``test``, ``estimate`` (with its scale: OR, HR), ``95% CI``, ``p``, ``adjusted p`` (a
        dash for sensitivity analyses, which are not hypotheses of their own), ``n`` and
        ``status`` (``ok`` or ``not run: <reason>``).

    Examples
    --------
    >>> tests_table({"tests": [{"id": "x", "status": "skipped", "reason": "no data"}]}
    ...             )["status"].to_list()
    ['not run: no data']
    """
    rows = []
    for t in results.get("tests", []):
        ok = t.get("status") == "ok"
        rows.append({
            "test": str(t["id"]),
            "estimate": f"{t.get('scale') or ''} {_ratio(t.get('estimate'))}".strip() if ok
            else _DASH,
            "95% CI": f"{_ratio(t.get('ci_low'))} to {_ratio(t.get('ci_high'))}" if ok else _DASH,
            "p": _p(t.get("p_value")) if ok else _DASH,
            "adjusted p": _p(t.get("p_adjusted")) if ok else _DASH,
            "n": int(t["n"]) if ok and t.get("n") is not None else None,
            "status": "ok" if ok else f"not run: {t.get('reason') or 'no reason recorded'}",
        })
    schema = {"test": pl.String, "estimate": pl.String, "95% CI": pl.String, "p": pl.String,
              "adjusted p": pl.String, "n": pl.Int64, "status": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


def designs_table(results: Mapping[str, Any]) -> pl.DataFrame:
    """What each test asks, estimates and how, whether or not it could run on these data."""
    tests = results.get("tests", [])
    return pl.DataFrame({"test": [str(t["id"]) for t in tests],
                         "question": [str(t.get("question") or "") for t in tests],
                         "estimate": [str(t.get("estimand") or "") for t in tests],
                         "method": [str(t.get("method") or "") for t in tests]},
                        schema={"test": pl.String, "question": pl.String, "estimate": pl.String,
                                "method": pl.String})


def conclusions(results: Mapping[str, Any]) -> Markdown:
    """Every test's conclusion (or why it did not run), one bullet each, naming the test."""
    from analysis.audit import conclusions as listed

    return listed(results, tests=[str(t["id"]) for t in results.get("tests", [])])


def reports_table(results: Mapping[str, Any]) -> pl.DataFrame:
    """Meta Ad Library: each report's rows, Pages, catches and whether the tests could use it.

    Returns
    -------
    polars.DataFrame
        ``report``, ``currency``, ``rows`` (in the file), ``Pages``, ``caught`` (Pages with ads
        taken down for a missing disclaimer), ``caught, no declared ads``, ``caught and
        declared``, ``with declared ads``, ``spend ≤100`` (Pages whose total could be at most
        100) and ``in spend_caught`` (the reason when the report was left out).
    """
    main = _by_id(results).get("spend_caught") or {}
    details = main.get("details") or {}
    left_out = {r["report"]: r["reason"] for r in details.get("reports_left_out", [])}
    rows = [{
        "report": c["report"], "currency": c["currency"], "rows": c["report_rows"],
        "Pages": c["pages"], "caught": c["caught"], "caught, no declared ads": c["caught_only"],
        "caught and declared": c["caught_and_declared"], "with declared ads": c["declared"],
        "spend \u2264100": c["spend_at_most_100"],
        "in spend_caught": "yes" if c["report"] not in left_out else
        f"no: {left_out[c['report']]}",
    } for c in details.get("counts", [])]
    return pl.DataFrame(rows, orient="row") if rows else pl.DataFrame()


def sensitivity_table(results: Mapping[str, Any]) -> pl.DataFrame:
    """Meta Ad Library: how the two spend tests move with the hidden amounts and with activity.

    Amounts up to 100 are printed as ``≤100``; the tests count them as 50. This table puts the
    estimates with ``≤100`` counted as 0 and as 100 beside them, the declared-spend estimate
    with the number of declared ads (in bands) held fixed, and each report on its own.

    Returns
    -------
    polars.DataFrame
        ``test``, ``variant``, ``odds ratio``, ``95% CI``, ``p``, ``Pages``.
    """
    by_id = _by_id(results)
    rows: list[tuple[str, str, Any, Any, Any, Any, Any]] = []

    def add(test: str, variant: str, entry: Mapping[str, Any] | None) -> None:
        if not entry or entry.get("status", "ok") != "ok" or entry.get("estimate") is None:
            reason = (entry or {}).get("reason") or "not estimated"
            rows.append((test, f"{variant} (not run: {reason})", None, None, None, None, None))
            return
        rows.append((test, variant, entry.get("estimate"), entry.get("ci_low"),
                     entry.get("ci_high"), entry.get("p_value"), entry.get("n")))

    for test_id in ("spend_caught", "declared_spend_caught"):
        test = by_id.get(test_id)
        if test is None:
            continue
        details = test.get("details") or {}
        add(test_id, "\u2264100 counted as 50 (the test)", test)
        if test_id == "spend_caught":
            for bound in ("low", "high"):
                add(test_id, f"\u2264100 counted as {0 if bound == 'low' else 100}",
                    by_id.get(f"spend_caught_{bound}"))
        else:
            for bound, entry in (details.get("sensitivity") or {}).items():
                add(test_id, f"\u2264100 counted as {0 if bound == 'low' else 100}", entry)
            add(test_id, "number of declared ads (bands) held fixed",
                details.get("ads_band_held_fixed"))
        for entry in details.get("by_report", []):
            add(test_id, f"{entry['report']} alone", entry)
    frame = pl.DataFrame(rows, schema={"test": pl.String, "variant": pl.String,
                                       "odds ratio": pl.Float64, "low": pl.Float64,
                                       "high": pl.Float64, "p": pl.Float64, "Pages": pl.Int64},
                         orient="row")
    return frame.select(
        "test", "variant", "odds ratio",
        pl.when(pl.col("low").is_not_null())
        .then(pl.format("{} to {}", pl.col("low").round(2), pl.col("high").round(2)))
        .otherwise(pl.lit(_DASH)).alias("95% CI"),
        pl.col("p").map_elements(_p, return_dtype=pl.String), "Pages")


def statements_by_platform(dataset: Any) -> pl.DataFrame:
    """DSA: statements per platform, how many give an account type, and the measures recorded.

    Parameters
    ----------
    dataset : Dataset
        From :func:`analysis.sources.dsa_tdb.read` (duplicates already removed).

    Returns
    -------
    polars.DataFrame
        ``platform``, ``statements``, ``business``, ``private``, ``no account type``, and the
        number recording each measure as its most severe (``removal``, ``restriction``, …),
        largest platform first.
    """
    from analysis.sources.dsa_tdb import account_group, measure
    from analysis.studies.plots import MEASURE_ORDER

    facts = dataset["statements"].select(
        pl.col("platform_name").fill_null("platform not reported").alias("platform"),
        account_group().alias("group"), measure()).collect()
    measures = [m for m in MEASURE_ORDER if m in set(facts["measure"].to_list())]
    return (facts.group_by("platform").agg(
        pl.len().cast(pl.Int64).alias("statements"),
        (pl.col("group") == "business").sum().cast(pl.Int64).alias("business"),
        (pl.col("group") == "private").sum().cast(pl.Int64).alias("private"),
        pl.col("group").is_null().sum().cast(pl.Int64).alias("no account type"),
        *[(pl.col("measure") == m).sum().cast(pl.Int64).alias(m) for m in measures],
    ).sort("statements", "platform", descending=[True, False]))


# --------------------------------------------------------------------------------------------
# What the data can and cannot show


def caveats(results: Mapping[str, Any]) -> list[dict[str, str]]:
    """What a case study's findings can and cannot show, with the numbers of this run.

    Parameters
    ----------
    results : dict
        The study's results.json.

    Returns
    -------
    list of dict
        ``title`` and ``text`` of each caveat (the PDF's "What these findings can and cannot
        show" section, and the notebook's).
    """
    source = str((results.get("data") or {}).get("source"))
    if source == "meta-ad-library":
        return _meta_caveats(results)
    if source == "dsa-tdb":
        return _dsa_caveats(results)
    raise ValueError(f"no case study for source {source!r}")


def caveats_markdown(results: Mapping[str, Any]) -> Markdown:
    """:func:`caveats` as Markdown: one bullet per caveat, its title in bold."""
    return Markdown("\n".join(f"- **{c['title']}.** {c['text']}" for c in caveats(results)))


def _meta_caveats(results: Mapping[str, Any]) -> list[dict[str, str]]:
    coverage = results.get("coverage") or {}
    main = _by_id(results).get("spend_caught") or {}
    left = (main.get("details") or {}).get("reports_left_out", [])
    # the numbers of the Pages the tests compare, as in the conclusions
    counts = [c for c in (main.get("details") or {}).get("counts", [])
              if c["report"] not in {r["report"] for r in left}]
    caught = sum(c["caught"] for c in counts)
    caught_only = sum(c["caught_only"] for c in counts)
    low = sum(c["spend_at_most_100"] for c in counts)
    analysed = sum(c["pages"] for c in counts)
    pages = int(coverage.get("enforcement_rows") or 0)
    rows = int(coverage.get("report_rows") or 0)
    left_text = (" " + "; ".join(f"The {r['report']} report ({r['pages']:,} Pages) is left out "
                                 f"of the tests: {r['reason']}." for r in left)) if left else ""
    return [
        {"title": "Who is in the report",
         "text": "Meta's report lists only Pages whose political ads reached the country in the "
                 "window: those that ran ads with a disclaimer, and those caught running ads "
                 "without one. A Page that ran undeclared political ads and was never caught is "
                 "not in it at all, so the report cannot say how many escaped, and a share of "
                 "Pages caught is not a catch rate."},
        {"title": "The takedown caps the spend",
         "text": f"Of the {caught:,} caught Pages analysed, {caught_only:,} ran no declared ads: their "
                 "spend is whatever ran before Meta removed their ads, usually little. Low spend "
                 "is then partly a result of being caught, so the comparison over all Pages "
                 "(spend_caught, spend_tier_trend) is bound to find caught Pages spending less, "
                 "with or without leniency. The comparison among Pages that ran declared ads "
                 "(declared_spend_caught) avoids this and is the better test."},
        {"title": "More ads, more chances to be caught",
         "text": "A Page running many ads has more chances to run one without a disclaimer, so "
                 "some rise of the share caught with spend is expected under equal scrutiny. The "
                 "declared-spend estimate with the number of declared ads held fixed is shown "
                 "beside it."},
        {"title": "Hidden amounts",
         "text": f"Amounts up to 100 are printed as \u2264100 ({low:,} of the {analysed:,} Pages "
                 "analysed spent at most 100 in total). The tests count them as 50; the "
                 "sensitivity analyses count "
                 "them as 0 and as 100. Where these disagree, only the direction of an estimate "
                 "can be trusted, not its size."},
        {"title": "Cases are Pages, within one report",
         "text": f"The {rows:,} report rows are one per Page and disclaimer; the rows of one Page "
                 f"in one report are one case, {pages:,} in all. Spend is compared only within a "
                 "report, so reports in different currencies need no exchange rates." + left_text},
        {"title": "Consistent with, not caused by",
         "text": "These are published counts, not an experiment: a relation between spend and "
                 "being caught may come from what big and small spenders advertise, how, and "
                 "where, none of which the report records."},
    ]


def _dsa_caveats(results: Mapping[str, Any]) -> list[dict[str, str]]:
    from analysis.studies.dsa_transparency import NOT_REPORTED, OTHER_TYPE

    coverage = results.get("coverage") or {}
    excluded = coverage.get("excluded") or {}
    published = int(coverage.get("enforcement_rows") or 0)
    analysed = int(coverage.get("analysed") or 0)
    untyped = int(excluded.get(NOT_REPORTED, 0)) + int(excluded.get(OTHER_TYPE, 0))
    removed = sum(int(n) for reason, n in excluded.items()
                  if reason not in (NOT_REPORTED, OTHER_TYPE))
    considered = analysed + untyped
    share = f" ({untyped / considered:.0%})" if considered else ""
    missing = (f"{untyped:,} of the {considered:,} statements considered{share} give no business "
               "or private account type and are left out")
    if analysed == 0:
        missing += ("; here that is every statement, so no test could run. With account types, "
                    "the tests would compare the measures, their timing and the detection of "
                    "business and private accounts' content, like with like")
    return [
        {"title": "No money in these data",
         "text": "The Transparency Database holds no ad spend, so it cannot say whether money buys "
                 "leniency. Whether the account is a business (a trader) or a private user is "
                 "the only size-like field it has; these tests compare the two."},
        {"title": "No denominator",
         "text": "A statement of reasons exists only where a platform restricted something. "
                 "Content reported and left up is not in the data, so leniency by not acting at "
                 "all cannot be seen, and no enforcement rate can be computed."},
        {"title": "Reported by the platforms",
         "text": "Every statement is the platform's own account of its decision; fields are "
                 "filled in differently by different platforms, which is why every comparison is "
                 "made within one platform, category and legal ground."},
        {"title": "Account type is optional",
         "text": f"The account type is an optional field: {missing}."},
        {"title": "No account identifiers",
         "text": "Statements do not identify accounts, so many may concern one account (a "
                 "seller's whole catalogue, say) and intervals that treat them as independent are "
                 "too narrow. With five or more platforms reporting both account types, "
                 "intervals come from leaving out one platform at a time instead."},
        {"title": "Every published row accounted for",
         "text": f"{published:,} rows were published in these files; {removed:,} "
                 f"{'was' if removed == 1 else 'were'} removed when reading (exact duplicates, "
                 f"repeated identifiers) and {analysed:,} "
                 f"{'statement was' if analysed == 1 else 'statements were'} analysed."},
    ]


# --------------------------------------------------------------------------------------------
# The report


def draw_figures(run: StudyRun, figures_dir: str | Path) -> list[Path]:
    """Draw a study's figures (:data:`FIGURES`) and save each as PNG, SVG and CSV.

    The estimates figure is drawn only when some test produced an estimate.

    Returns
    -------
    list of Path
        Every file written.
    """
    from analysis.plots import save_figure
    from analysis.studies import plots

    out = Path(figures_dir)
    results, cases = run.results, run.study.cases
    written: list[Path] = []
    drawers: dict[str, Callable[[], tuple[Any, Any]]] = {
        "data_audit": lambda: (plots.data_audit(results, cases=cases),
                               plots.data_audit_data(results, cases=cases)),
        "estimates": lambda: (plots.estimates(results["tests"]),
                              plots.estimates_data(results["tests"])),
        "caught_by_tier": lambda: (plots.caught_by_tier(run.data, results=results),
                                   plots.caught_by_tier_data(run.data)),
        "measures_by_account_type": lambda: (plots.measures_by_account_type(run.data),
                                             plots.measures_by_account_type_data(run.data)),
    }
    for name, _, _ in FIGURES[run.study.source]:
        if name == "estimates" and plots.estimates_data(results["tests"]).height == 0:
            continue
        figure, data = drawers[name]()
        written += save_figure(figure, data, out, name)
    return written


def build_case_report(run: StudyRun, out_dir: str | Path, *, notebooks_dir: str | Path,
                      progress: Callable[[str], None] | None = None) -> list[Path]:
    """Figures, the executed case-study notebook, HTML and PDF reports of a study run.

    ``out_dir/results.json`` must already be written: the notebook and the PDF read it, so every
    number in the reports is the number in results.json.

    Parameters
    ----------
    run : StudyRun
        From :func:`analysis.studies.run_case_study`.
    out_dir : str or Path
        The run folder.
    notebooks_dir : str or Path
        Folder holding the study's notebook (``run.study.notebook``).
    progress : callable, optional
        Called with a short description as each step starts.

    Returns
    -------
    list of Path
        Every file written: figures, the executed notebook, report.html, report.typ and
        report.pdf.

    Examples
    --------
    >>> from analysis.config import NOTEBOOKS_DIR
    >>> build_case_report(run, "reports/meta_ad_library",
    ...                   notebooks_dir=NOTEBOOKS_DIR)  # doctest: +SKIP
    """
    from analysis.report import execute_notebooks, relative_to_notebooks, render_html, render_pdf
    from analysis.results import build_manifest

    say = progress or (lambda _: None)
    folder = Path(out_dir).resolve()
    study = run.study

    say("drawing the figures")
    written = draw_figures(run, folder / "figures")

    say(f"running the notebook {study.notebook}")
    executed = execute_notebooks(
        [study.notebook], notebooks_dir=notebooks_dir, out_dir=folder,
        parameters={"data_dir": relative_to_notebooks(run.dataset.path, notebooks_dir),
                    "out_dir": relative_to_notebooks(folder, notebooks_dir)})
    written += executed

    say("rendering the HTML report")
    written.append(render_html(executed, folder / "report.html", title=study.title,
                               synthetic=bool(run.results.get("synthetic"))))

    say("typesetting the PDF report")
    # The run's manifest.json is written after the report, to record the report's checksum.
    manifest = build_manifest(run.dataset, parameters=run.parameters, command=[], outputs={})
    written.append(folder / "report.typ")
    written.append(render_pdf(folder, manifest=manifest, title=study.title,
                              subtitle=study.subtitle, figures=FIGURES[study.source],
                              caveats=caveats(run.results)))
    return written
