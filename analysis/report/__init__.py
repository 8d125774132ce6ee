"""Reports of a levelfield run: figures, executed notebooks, an HTML page and a PDF.

:func:`build_report` does everything for a finished analysis (it is what ``levelfield run``
calls); the steps are also usable one by one::

    from analysis.report import execute_notebooks, render_html, render_pdf

    executed = execute_notebooks(["00_findings"], notebooks_dir="notebooks", out_dir=run,
                                 parameters={"data_dir": "data/sample", "out_dir": run})
    render_html(executed, run / "report.html", title="Does money buy leniency?", synthetic=True)
    render_pdf(run)   # from run/results.json, run/manifest.json and run/figures/

The notebook and HTML steps need the ``report`` extras (papermill, nbconvert); the PDF needs the
``typst`` wheel only. Those packages are imported when a step runs, not when this module loads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from analysis.report.html import render_html
from analysis.report.notebooks import NotebookError, execute_notebooks, relative_to_notebooks
from analysis.report.pdf import TITLE, ReportError, render_pdf, report_content

__all__ = [
    "NotebookError",
    "ReportError",
    "build_report",
    "execute_notebooks",
    "render_html",
    "render_pdf",
    "report_content",
]


def build_report(
    analysis: Any,
    out_dir: str | Path,
    *,
    notebooks: Sequence[str],
    notebooks_dir: str | Path,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Figures, executed notebooks, HTML and PDF reports of an analysis, written to ``out_dir``.

    ``out_dir/results.json`` must already be written: the notebooks and the PDF read it, so every
    number in the reports is the number in results.json.

    Parameters
    ----------
    analysis : analysis.pipeline.Analysis
        The finished analysis (its ``cases``, ``results``, ``dataset`` and ``parameters``).
    out_dir : str or Path
        The run folder.
    notebooks : list of str
        Notebook names, in reading order (e.g. ``analysis.config.NOTEBOOKS``).
    notebooks_dir : str or Path
        Folder holding the notebooks.
    progress : callable, optional
        Called with a short description as each step starts.

    Returns
    -------
    list of Path
        Every file written: figures (PNG, SVG, CSV), executed notebooks, report.html,
        report.typ and report.pdf.

    Examples
    --------
    >>> from analysis.config import NOTEBOOKS, NOTEBOOKS_DIR
    >>> build_report(analysis, run, notebooks=NOTEBOOKS, notebooks_dir=NOTEBOOKS_DIR)  # doctest: +SKIP
    """
    from analysis import audit, plots
    from analysis.stats import kaplan_meier

    say = progress or (lambda _: None)
    run = Path(out_dir).resolve()
    results = analysis.results
    written: list[Path] = []

    say("drawing the figures")
    figures = run / "figures"
    tests, coverage, cases = results["tests"], results["coverage"], analysis.cases
    written += plots.save_figure(plots.forest(tests), plots.forest_data(tests), figures, "forest")
    written += plots.save_figure(
        plots.enforcement_by_tier(cases), plots.enforcement_by_tier_data(cases), figures, "enforcement_by_tier"
    )
    written += plots.save_figure(
        plots.enforcement_over_time(cases), plots.enforcement_over_time_data(cases), figures, "enforcement_over_time"
    )
    written += plots.save_figure(
        plots.coverage_funnel(coverage), plots.coverage_funnel_data(coverage), figures, "coverage_funnel"
    )
    comparisons = audit.crude_and_adjusted(cases, results=results)
    written += plots.save_figure(
        plots.crude_vs_adjusted(comparisons), plots.crude_vs_adjusted_data(comparisons), figures, "crude_vs_adjusted"
    )
    curves = kaplan_meier(cases, duration="decision_hours", event="decided", group="listed")
    written += plots.save_figure(
        plots.kaplan_meier(curves), plots.kaplan_meier_data(curves), figures, "kaplan_meier"
    )
    event_rows = audit.event_study_rows(results)
    written += plots.save_figure(
        plots.event_study(event_rows), plots.event_study_data(event_rows), figures, "event_study"
    )
    written += plots.save_figure(plots.mde_chart(tests), plots.mde_chart_data(tests), figures, "mde_chart")

    say(f"running {len(notebooks)} notebooks")
    executed = execute_notebooks(
        notebooks,
        notebooks_dir=notebooks_dir,
        out_dir=run,
        parameters={"data_dir": relative_to_notebooks(analysis.dataset.path, notebooks_dir),
                    "out_dir": relative_to_notebooks(run, notebooks_dir)},
        progress=lambda name, done, total: say(f"notebook {done} of {total} done: {name}"),
    )
    written += executed

    say("rendering the HTML report")
    synthetic = bool(results.get("synthetic"))
    written.append(render_html(executed, run / "report.html", title=TITLE, synthetic=synthetic))

    say("typesetting the PDF report")
    written.append(run / "report.typ")
    written.append(render_pdf(run, manifest=_manifest_for_report(analysis)))
    return written


def _manifest_for_report(analysis: Any) -> dict[str, Any]:
    """The manifest as the PDF shows it (software, data), before the outputs' checksums exist.

    The run's manifest.json is written after the report, to record the report's checksum; a
    manifest.json left from an earlier run must not leak into this one.
    """
    from analysis.results import build_manifest

    return build_manifest(analysis.dataset, parameters=analysis.parameters, command=[], outputs={})
