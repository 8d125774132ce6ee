"""The PDF report, typeset with typst from a run's results.json, manifest.json and figures.

The PDF is what editors and lawyers read: a title page with the data's provenance, the findings
in plain sentences (each naming the test behind it), a table of every test, the figures, the
coverage ledger, the caveats, and an appendix on methods with a glossary. Numbers are worded and
formatted here, in Python, and handed to the template ``templates/report.typ`` as JSON; typst
(a single Python wheel, no LaTeX, no browser) lays them out with its own embedded fonts, so the
same run folder gives the same PDF on every machine.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
import warnings
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["ReportError", "render_pdf", "report_content"]

TEMPLATE = "report.typ"
SYNTHETIC_NOTICE = "SYNTHETIC DATA \u2014 not a real platform"
TITLE = "Does money buy leniency?"
SUBTITLE = "Enforcement of content rules and advertising money: what the data show"

# Figures the report shows when the run folder has them, in reading order.
FIGURES: tuple[tuple[str, str, str], ...] = (
    (
        "forest",
        "Every test at a glance",
        "Each square is a test's estimate, each line its 95% confidence interval. Ratios are on a "
        "log scale with 1 meaning no difference; the difference-in-differences is in percentage "
        "points, 0 meaning no difference. Left of the dashed line points to leniency towards the "
        "group in question.",
    ),
    (
        "crude_vs_adjusted",
        "Crude and like-with-like comparisons",
        "Each comparison twice: crude (all cases as they come, grey circles) and adjusted (cases of "
        "the same policy and severity band only, blue squares), as odds ratios with 95% confidence "
        "intervals on a log scale. Where the two disagree, the groups were flagged for different "
        "mixes of violations, and the crude figure mistakes that mix for different treatment; the "
        "adjusted one answers the question.",
    ),
    (
        "enforcement_by_tier",
        "Enforcement rate by ad-spend tier",
        "Share of flagged cases that were removed or restricted, by the advertiser's ad spend in "
        "the window before the flag (tier 0: no ad spend; tiers 1\u20134: quartiles of spend). Cases "
        "of accounts on the watchlist at flag time are shown separately. Whiskers: Wilson 95% "
        "confidence intervals. Not adjusted for policy or severity.",
    ),
    (
        "enforcement_over_time",
        "Enforcement over time",
        "Monthly enforcement rate of accounts that were ever on the watchlist and of all other "
        "accounts, with Wilson 95% confidence bands; the dashed line marks the directive date, "
        "when there is one.",
    ),
    (
        "event_study",
        "The gap between listed and other accounts, month by month",
        "For each month, how much the enforcement rate of listed accounts moved relative to that of "
        "all other accounts since the month before the directive (hollow circle, set to 0), in "
        "percentage points, like with like, with 95% confidence intervals. Points near 0 before the "
        "directive support the assumption of parallel trends behind the difference-in-differences "
        "test; a drop from the directive on is the pattern a do-not-moderate list would leave.",
    ),
    (
        "kaplan_meier",
        "Time to a moderation decision",
        "Share of flagged cases still undecided, by time since the flag (log scale), for cases of "
        "listed accounts and of all other accounts (Kaplan\u2013Meier curves with pointwise 95% "
        "confidence bands). Cases still open when the data end count for as long as they were "
        "observed. Not adjusted for policy; the Cox model of the decision-speed test is.",
    ),
    (
        "mde_chart",
        "What each test could detect",
        "Each test's estimate and 95% confidence interval against its minimum detectable effect: "
        "the shaded bar runs from no difference to the effect the test had an 80% chance of "
        "detecting at the 5% level. Leniency inside the bar could have been missed.",
    ),
    (
        "coverage_funnel",
        "From enforcement records to analysed cases",
        "Every enforcement record is either analysed or excluded for the reason shown; none is "
        "dropped silently.",
    ),
)

_SCALE_WORDS = {
    "OR": "odds ratio",
    "HR": "hazard ratio",
    "RR": "risk ratio",
    "probability": "difference in enforcement probability",
    "coefficient": "coefficient",
    "chi2": "chi-squared statistic",
}
# English month names whatever the machine's locale, so the PDF does not depend on it
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_MISSING = "\u2013"  # an en dash stands for "no value" in tables
_MINUS = "\u2212"


class ReportError(RuntimeError):
    """The PDF could not be made: a run file is missing or typst failed. The message says which."""


def render_pdf(
    out_dir: str | Path,
    *,
    manifest: Mapping[str, Any] | None = None,
    title: str = TITLE,
    subtitle: str = SUBTITLE,
    figures: tuple[tuple[str, str, str], ...] = FIGURES,
    caveats: list[dict[str, str]] | None = None,
) -> Path:
    """Typeset the PDF report of a run folder.

    Parameters
    ----------
    out_dir : str or Path
        The run folder: it must hold ``results.json``; ``manifest.json`` and ``figures/`` (PNG or
        SVG of forest, enforcement_by_tier, enforcement_over_time, coverage_funnel) are used when
        present. The template is copied there as ``report.typ`` and compiled with the folder as
        typst's root, so the figures resolve.
    manifest : dict, optional
        The manifest to take the date and software versions from, instead of
        ``out_dir/manifest.json`` (for when the manifest is written after the report, to record
        the report's own checksum).
    title, subtitle : str
        The report's title (also in every page header) and the line under it on the title page;
        by default those of the battery's report. A case study of one source gives its own.
    figures : tuple of (name, title, caption)
        The figures to show, in reading order, when ``figures/<name>.svg`` (or ``.png``) exists;
        by default the battery's (:data:`FIGURES`).
    caveats : list of dict, optional
        What the findings can and cannot show (``title``, ``text``), replacing the battery's
        caveats; a case study states those of its own source.

    Returns
    -------
    Path
        ``out_dir/report.pdf``.

    Raises
    ------
    ReportError
        If results.json is missing or typst reports an error.

    Notes
    -----
    The report carries a date only if the manifest has a ``created`` timestamp, so rendering the
    same run twice gives byte-identical PDFs. On synthetic data every page says
    "SYNTHETIC DATA \u2014 not a real platform" in its header and footer. Typst warnings, if any,
    are re-issued as Python warnings.

    Examples
    --------
    >>> render_pdf("reports/sample")  # doctest: +SKIP
    PosixPath('reports/sample/report.pdf')
    """
    try:
        import typst
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError(
            "the PDF report needs the report extras: pip install 'levelfield[report]'"
        ) from error

    run = Path(out_dir).resolve()
    results_path = run / "results.json"
    if not results_path.is_file():
        raise ReportError(f"{results_path} not found: run `levelfield analyze` first")
    results = json.loads(results_path.read_text(encoding="utf-8"))
    manifest_path = run / "manifest.json"
    if manifest is None:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}

    template = run / TEMPLATE
    with resources.as_file(resources.files("analysis.report") / "templates" / TEMPLATE) as source:
        shutil.copyfile(source, template)

    content = report_content(results, manifest, figures=_existing_figures(run, figures),
                             title=title, subtitle=subtitle, catalogue=figures, caveats=caveats)
    pdf = run / "report.pdf"
    try:
        _, problems = typst.compile_with_warnings(
            str(template),
            output=str(pdf),
            root=str(run),
            sys_inputs={"report": json.dumps(content, ensure_ascii=False, sort_keys=True)},
            ignore_system_fonts=True,  # typst's embedded fonts only: the same PDF everywhere
        )
    except typst.TypstError as error:
        where = getattr(error, "diagnostic", "") or ""
        raise ReportError(f"typst could not typeset {template}: {error}\n{where}".rstrip()) from error
    for problem in problems:
        warnings.warn(f"typst: {getattr(problem, 'message', problem)}", stacklevel=2)
    return pdf


def _existing_figures(run: Path, catalogue: tuple[tuple[str, str, str], ...] = FIGURES) -> list[str]:
    """Paths (relative to the run folder) of the report's figures that exist; SVG preferred."""
    found = []
    for name, _, _ in catalogue:
        for suffix in (".svg", ".png"):
            if (run / "figures" / f"{name}{suffix}").is_file():
                found.append(f"figures/{name}{suffix}")
                break
    return found


# ---------------------------------------------------------------------------------------------
# Content: what the template shows, in words and formatted numbers
# ---------------------------------------------------------------------------------------------


def report_content(
    results: Mapping[str, Any],
    manifest: Mapping[str, Any] | None = None,
    *,
    figures: list[str] | None = None,
    title: str = TITLE,
    subtitle: str = SUBTITLE,
    catalogue: tuple[tuple[str, str, str], ...] = FIGURES,
    caveats: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Everything the PDF shows, worded and formatted, as a JSON-ready dict.

    Parameters
    ----------
    results : dict
        The content of results.json.
    manifest : dict, optional
        The content of manifest.json (for the date, the data files and software versions).
    figures : list of str, optional
        Figure paths relative to the run folder, e.g. ``["figures/forest.svg"]``.
    title, subtitle : str
        Title and subtitle of the report (see :func:`render_pdf`).
    catalogue : tuple of (name, title, caption)
        Titles and captions of the figures that may appear, in reading order.
    caveats : list of dict, optional
        ``title`` and ``text`` of each caveat, instead of the battery's; the synthetic-data
        caveat is still put first on synthetic data.

    Returns
    -------
    dict
        Strings, numbers and lists only; no value is None except the optional ``date`` and
        ``created``, so the template never prints "None" or "nan".

    Examples
    --------
    >>> content = report_content({"synthetic": True, "tests": [], "coverage": {}})
    >>> content["synthetic_notice"]
    'SYNTHETIC DATA — not a real platform'
    """
    manifest = manifest or {}
    tests = [dict(t) for t in results.get("tests", [])]
    ok = [t for t in tests if t.get("status") == "ok"]
    skipped = [t for t in tests if t.get("status") != "ok"]
    synthetic = bool(results.get("synthetic", False))
    created = _created(manifest.get("created"))
    parameters = {**(manifest.get("parameters") or {}), **(results.get("parameters") or {})}
    alpha = parameters.get("alpha", 0.05)

    return {
        "title": title,
        "subtitle": subtitle,
        "synthetic": synthetic,
        "synthetic_notice": SYNTHETIC_NOTICE,
        "synthetic_text": (
            "Every number in this report comes from simulated data, generated with planted "
            "effects to test the methods. It describes no real platform, account or advertiser "
            "and must not be quoted as evidence about one."
        ),
        "created": {"year": created.year, "month": created.month, "day": created.day} if created else None,
        "date": f"{created.day} {_MONTHS[created.month - 1]} {created.year}" if created else None,
        "version": str(results.get("levelfield_version") or manifest.get("levelfield_version") or _MISSING),
        "data_name": _data_name(results, manifest),
        "tests_summary": f"{len(ok)} run, {len(skipped)} not run" if skipped else f"{len(ok)} run",
        "provenance_text": (
            "The input files this report was computed from. Anyone holding the same files can "
            "check them against these fingerprints and rerun the analysis to get the same numbers."
        ),
        "files": _files(results, manifest),
        "parameters": [{"name": str(k), "value": _plain_value(v)} for k, v in sorted(parameters.items())],
        "reading_guide": (
            "Each finding is one sentence in plain words, followed in small type by the test "
            "behind it (its id, as in results.json and the methods appendix), the estimate and its "
            "95% confidence interval. Ratios below 1, and negative differences, mean the group in "
            "question was treated more leniently (for reversals on appeal, ratios above 1). The "
            "caveats section says what the data cannot show; the glossary explains the terms."
        ),
        "findings": [{"id": str(t.get("id")), "conclusion": _conclusion(t), "detail": _detail(t)} for t in ok],
        "skipped": [
            {
                "id": str(t.get("id")),
                "question": str(t.get("question") or ""),
                "reason": str(t.get("reason") or "no reason was recorded"),
            }
            for t in skipped
        ],
        "table_note": (
            f"Ratios: odds ratio (OR) or hazard ratio (HR); differences in percentage points. p: "
            f"two-sided p-value; adjusted p: corrected for the number of tests in the family. "
            f"A finding holds at the {_plain_value(alpha)} level when its adjusted p is below "
            f"{_plain_value(alpha)}. n: cases behind the estimate."
        ),
        "table": [_table_row(t) for t in tests],
        "caveats": _caveats(synthetic, caveats),
        "figures": _figures(figures or [], tests, catalogue),
        "coverage": _coverage(results.get("coverage") or {}),
        "methods_intro": (
            "Each test answers one question. The estimand is the quantity the test estimates; the "
            "method says how the estimate, its confidence interval and its p-value were computed."
        ),
        "methods": [
            {
                "id": str(t.get("id")),
                "question": str(t.get("question") or t.get("id")),
                "estimand": str(t.get("estimand") or _MISSING),
                "method": str(t.get("method") or _MISSING),
                "status": "" if t.get("status") == "ok"
                else f"not run: {t.get('reason') or 'no reason recorded'}",
            }
            for t in tests
        ],
        "glossary": _GLOSSARY,
        "software_text": "The versions that produced this report, from manifest.json.",
        "software": _software(manifest),
    }


def _created(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _data_name(results: Mapping[str, Any], manifest: Mapping[str, Any]) -> str:
    path = (results.get("data") or {}).get("path") or (manifest.get("data") or {}).get("path")
    if not path:
        return _MISSING
    # the folder's name only: a full path would publish the analyst's own directories
    name = Path(str(path)).name or str(path)
    return name


def _files(results: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[dict[str, str]]:
    files = (results.get("data") or {}).get("files") or (manifest.get("data") or {}).get("files") or []
    rows = []
    for f in sorted(files, key=lambda f: str(f.get("name"))):
        sha = str(f.get("sha256") or "")
        rows.append(
            {
                # a break opportunity after each "_" and "-": long report names fit the column
                "name": re.sub(r"([_-])", "\\1\u200b", str(f.get("name") or _MISSING)),
                "sha256": sha[:16] if sha else _MISSING,
                "rows": _count(f.get("rows")),
            }
        )
    return rows


def _software(manifest: Mapping[str, Any]) -> list[dict[str, str]]:
    rows = []
    if manifest.get("levelfield_version"):
        rows.append({"name": "levelfield", "version": str(manifest["levelfield_version"])})
    python = manifest.get("python") or manifest.get("python_version")
    if isinstance(python, Mapping):
        python = python.get("version")
    if python:
        rows.append({"name": "Python", "version": str(python).split()[0]})
    packages = manifest.get("packages") or manifest.get("package_versions") or {}
    if isinstance(packages, Mapping):
        rows += [{"name": str(k), "version": str(v)} for k, v in sorted(packages.items())]
    elif isinstance(packages, list):
        rows += [
            {"name": str(p.get("name")), "version": str(p.get("version"))}
            for p in packages
            if isinstance(p, Mapping) and p.get("name")
        ]
    return rows


# --- numbers ---------------------------------------------------------------------------------


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _minus(text: str) -> str:
    return text.replace("-", _MINUS)


def _number(value: Any, scale: str | None) -> str:
    """An estimate or interval bound on its scale: ratios to 2 decimals, differences in points."""
    if not _finite(value):
        return _MISSING
    if scale in ("OR", "HR", "RR"):
        text = f"{value:.2f}" if 0.1 <= value < 10 else f"{value:.3g}"
    elif scale == "probability":
        text = f"{value * 100:+.1f}"
    else:
        text = f"{value:.3g}"
    return _minus(text)


def _interval(test: Mapping[str, Any]) -> str:
    low, high = test.get("ci_low"), test.get("ci_high")
    if not (_finite(low) and _finite(high)):
        return _MISSING
    scale = test.get("scale")
    return f"{_number(low, scale)} to {_number(high, scale)}"


def _p(value: Any) -> str:
    """p-values to two significant figures; below 0.001 the exact size carries no meaning."""
    if not _finite(value):
        return _MISSING
    if value < 0.001:
        return "< 0.001"
    if value > 0.99:
        return "> 0.99"
    return f"{value:#.2g}"  # "#" keeps the trailing zero: 0.20, not 0.2


def _count(value: Any) -> str:
    return f"{int(value):,}" if _finite(value) else _MISSING


def _plain_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if _finite(value):
        return _minus(f"{value:g}") if isinstance(value, float) else f"{value}"
    if value is None:
        return _MISSING
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain_value(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k} = {_plain_value(v)}" for k, v in value.items())
    return str(value)


def _estimate_words(test: Mapping[str, Any]) -> str:
    scale = test.get("scale")
    words = _SCALE_WORDS.get(str(scale), str(scale or "estimate"))
    unit = " percentage points" if scale == "probability" else ""
    estimate = _number(test.get("estimate"), scale)
    interval = _interval(test)
    ci = f" (95% CI {interval}{unit})" if interval != _MISSING else ""
    return f"{words} {estimate}{unit if not ci else ''}{ci}"


def _detail(test: Mapping[str, Any]) -> str:
    parts = [_estimate_words(test)]
    p_values = f"p = {_p(test.get('p_value'))}"
    if _finite(test.get("p_adjusted")):  # a sensitivity analysis has none: not a hypothesis
        p_values += f", adjusted p = {_p(test.get('p_adjusted'))}"
    p_values = p_values.replace("= <", "<").replace("= >", ">")  # "p < 0.001", not "p = < 0.001"
    # no line break inside "p = 0.38" or "n = 60,000"
    parts.append(re.sub(r"(p|n) ([=<>]) ", "\\1\u00a0\\2\u00a0", p_values))
    n = f"n\u00a0=\u00a0{_count(test.get('n'))} cases"
    if _finite(test.get("n_clusters")):
        n += f" from {_count(test.get('n_clusters'))} accounts"
    parts.append(n)
    mde = test.get("mde")
    if _finite(mde):
        scale = test.get("scale")
        if scale == "probability":  # a size, not a direction
            parts.append(f"minimum detectable effect {abs(mde) * 100:.1f} percentage points")
        else:
            words = _SCALE_WORDS.get(str(scale), "estimate")
            parts.append(f"minimum detectable effect: {words} {_number(mde, scale)}")
    return " \u00b7 ".join(parts)


def _conclusion(test: Mapping[str, Any]) -> str:
    conclusion = str(test.get("conclusion") or "").strip()
    if conclusion:
        return conclusion
    question = str(test.get("question") or test.get("id"))
    return f"{question} The test gives the estimate below; no summary sentence was recorded."


def _table_row(test: Mapping[str, Any]) -> dict[str, str]:
    if test.get("status") != "ok":
        blank = dict.fromkeys(("ci", "p", "p_adjusted", "n"), _MISSING)
        return {"id": str(test.get("id")), "estimate": "not run", **blank}
    scale = test.get("scale")
    label = {"OR": "OR ", "HR": "HR ", "RR": "RR "}.get(str(scale), "")
    unit = " pts" if scale == "probability" else ""
    estimate = _number(test.get("estimate"), scale)
    return {
        "id": str(test.get("id")),
        "estimate": f"{label}{estimate}{unit}" if estimate != _MISSING else _MISSING,
        "ci": _interval(test),
        "p": _p(test.get("p_value")),
        "p_adjusted": _p(test.get("p_adjusted")),
        "n": _count(test.get("n")),
    }


def _share(value: float) -> str:
    if value == 0:
        return "0%"
    if value < 0.001:
        return "< 0.1%"
    if 0.999 < value < 1:
        return "> 99.9%"
    return f"{value:.1%}"


def _coverage(coverage: Mapping[str, Any]) -> dict[str, Any]:
    from analysis.plots import coverage_funnel_data  # one place turns the ledger into steps

    steps = coverage_funnel_data(coverage)
    total = int(coverage.get("enforcement_rows") or 0)
    analysed = int(coverage.get("analysed") or 0)
    rows = [
        {
            "step": ("Excluded: " + step) if kind == "excluded" else step,
            "kind": kind,
            "rows": _count(count),
            "share": _share(share) if share is not None else _MISSING,
        }
        for step, kind, count, share in steps.iter_rows()
    ]
    text = (
        f"Of {total:,} enforcement records, {analysed:,} were analysed"
        + (f" ({_share(analysed / total)})" if total else "")
        + ". Every record is accounted for: the others were excluded for the reasons below, and "
        "each exclusion is counted."
    )
    return {"text": text, "rows": rows}


def _figures(paths: list[str], tests: list[dict[str, Any]],
             catalogue: tuple[tuple[str, str, str], ...] = FIGURES) -> list[dict[str, str]]:
    by_name = {Path(p).stem: p for p in paths}
    figures = []
    for name, title, caption in catalogue:
        if name not in by_name:
            continue
        if name == "forest":
            from analysis.plots import forest_data

            if forest_data(tests)["higher_is_lenient"].any():
                caption += " For the tests marked \u2020, it is right of the line that points to leniency."
        figures.append({"path": by_name[name], "title": title, "caption": caption})
    return figures


def _caveats(synthetic: bool, own: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
    caveats = [dict(c) for c in own] if own is not None else [
        {
            "title": "Consistent with, not caused by",
            "text": (
                "These are observational records, not an experiment. A difference between groups is "
                "consistent with preferential treatment, but does not by itself show that money or a "
                "watchlist caused it: the accounts concerned may differ from others in ways the data "
                "do not record. The adjusted tests compare cases of the same policy and severity only."
            ),
        },
        {
            "title": "Leniency the records cannot see",
            "text": (
                "Enforcement data only contain cases that were flagged. If favoured accounts were "
                "flagged less often, or their content never reached review, that leniency leaves no "
                "trace here, and the tests understate it. An independent re-review of a sample of "
                "cases is the way to check."
            ),
        },
        {
            "title": "No difference found is not equal treatment shown",
            "text": (
                "A test without a significant result may simply lack the data to see a small effect. "
                "Its minimum detectable effect says how large an effect it would probably have "
                "caught; the equal-treatment test says whether equality can be shown within a margin."
            ),
        },
        {
            "title": "Many tests",
            "text": (
                "Several questions are asked of the same data, so one of them could look significant "
                "by chance. The adjusted p-values correct for this and are the ones to rely on."
            ),
        },
    ]
    if synthetic:
        caveats.insert(
            0,
            {
                "title": "Synthetic data",
                "text": (
                    "This report was computed from simulated data. Its findings show what the "
                    "methods detect in a world with known, planted effects; they say nothing about "
                    "any real platform."
                ),
            },
        )
    return caveats


_GLOSSARY: list[dict[str, str]] = [
    {
        "term": "Odds ratio",
        "text": (
            "The odds of enforcement are the number of cases enforced for every case not enforced "
            "(60% enforced is odds of 1.5). The odds ratio divides one group's odds by another's: 1 "
            "means no difference, 0.5 means the first group's odds were half the other's, 2 means "
            "double. Below 1, the group in question was enforced less often."
        ),
    },
    {
        "term": "Hazard ratio",
        "text": (
            "Compares how quickly two groups' cases reach a decision: at any moment, a hazard ratio "
            "of 0.5 means a pending case of the first group is half as likely to be decided next as "
            "a pending case of the other. Below 1 means slower decisions."
        ),
    },
    {
        "term": "Percentage points",
        "text": (
            "The difference between two percentages: from 60% to 40% is a fall of 20 percentage "
            "points (a third, in relative terms)."
        ),
    },
    {
        "term": "Confidence interval",
        "text": (
            "The range of values that are compatible with the data. Computed the same way on many "
            "repetitions of the study, 95% of such intervals would contain the true value. If a "
            "ratio's interval excludes 1, or a difference's interval excludes 0, the result is "
            "statistically significant at the 5% level."
        ),
    },
    {
        "term": "p-value",
        "text": (
            "How likely a difference at least as large as the one seen would be if there were in "
            "truth no difference. A small p-value means chance alone is a poor explanation; it does "
            "not say how large or important the difference is."
        ),
    },
    {
        "term": "Adjusted p-value",
        "text": (
            "The p-value corrected for the number of tests run on the same data, which otherwise "
            "raises the chance that one of them looks significant by luck. Use it to judge whether "
            "a finding holds up."
        ),
    },
    {
        "term": "Minimum detectable effect",
        "text": (
            "The smallest effect the test had an 80% chance of detecting at the 5% level with the "
            "data available. When a test finds nothing, effects at least this large would probably "
            "have been seen; smaller ones may have been missed."
        ),
    },
    {
        "term": "Adjusted (like with like)",
        "text": (
            "Compared within groups of cases that share a policy and a severity band, then "
            "combined, so that a group with more severe violations is not compared with one with "
            "milder ones. The crude (unadjusted) comparison is shown beside it."
        ),
    },
    {
        "term": "Clustered by account",
        "text": (
            "Cases of one account are not independent of each other; the confidence intervals allow "
            "for this, which makes them wider and more honest."
        ),
    },
]
