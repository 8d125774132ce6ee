"""Tests of analysis.report.pdf: the PDF report typeset with typst from a run folder."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import warnings

import pytest

from analysis import plots
from analysis.report import ReportError, render_pdf, report_content

pytest.importorskip("typst")

TESTS = [
    {"id": "listed_unadjusted", "status": "ok", "scale": "OR", "question": "Are flagged cases of listed accounts enforced less often? (crude)",
     "estimand": "odds ratio of enforcement, listed vs not", "estimate": 0.42, "ci_low": 0.36, "ci_high": 0.49,
     "p_value": 2.1e-25, "p_adjusted": 1.7e-24, "n": 60000, "n_clusters": 4210, "mde": 0.86,
     "method": "Wald interval, SEs clustered by account",
     "conclusion": "Cases of listed accounts were enforced less often than other cases.", "reason": None, "details": {}},
    {"id": "listed_adjusted", "status": "ok", "scale": "OR", "question": "Are flagged cases of listed accounts enforced less often, like with like?",
     "estimand": "Mantel-Haenszel common odds ratio", "estimate": 0.31, "ci_low": 0.27, "ci_high": 0.36,
     "p_value": 1e-30, "p_adjusted": 9e-30, "n": 60000, "n_clusters": 4210, "mde": 0.85, "method": "Mantel-Haenszel",
     "conclusion": "Comparing like with like, listed accounts' cases had a third of the odds of enforcement.", "reason": None, "details": {}},
    {"id": "spend_adjusted", "status": "ok", "scale": "OR", "question": "Does enforcement fall as an advertiser's spend rises?",
     "estimand": "OR per 10x trailing spend", "estimate": 0.93, "ci_low": 0.86, "ci_high": 1.005, "p_value": 0.067,
     "p_adjusted": 0.2, "n": 31000, "n_clusters": 1500, "mde": 0.9, "method": "Grouped binomial GLM",
     "conclusion": "There is weak evidence that enforcement falls as spend rises.", "reason": None, "details": {}},
    {"id": "decision_speed", "status": "ok", "scale": "HR", "question": "Are listed accounts' cases decided more slowly?",
     "estimand": "hazard ratio", "estimate": 0.74, "ci_low": 0.66, "ci_high": 0.83, "p_value": 3e-7, "p_adjusted": 1.8e-6,
     "n": 60000, "n_clusters": 4210, "mde": 0.88, "method": "Cox model stratified by policy",
     "conclusion": "Listed accounts' cases were decided more slowly.", "reason": None, "details": {}},
    {"id": "appeal_reversal", "status": "skipped", "scale": "OR", "question": "Are listed accounts' enforced cases reversed on appeal more often?",
     "estimand": "OR of reversal", "estimate": None, "ci_low": None, "ci_high": None, "p_value": None, "p_adjusted": None,
     "n": None, "n_clusters": None, "mde": None, "method": "", "conclusion": "", "reason": "no appeals recorded in the data", "details": {}},
    {"id": "directive_did", "status": "ok", "scale": "probability", "question": "Did enforcement of listed accounts drop after the listing date?",
     "estimand": "difference-in-differences in enforcement probability", "estimate": -0.21, "ci_low": -0.27, "ci_high": -0.15,
     "p_value": 4e-12, "p_adjusted": 2.8e-11, "n": 60000, "n_clusters": 4210, "mde": 0.05, "method": "Linear probability model",
     "conclusion": "After the directive, enforcement of listed accounts fell by about 21 percentage points more than for others.",
     "reason": None, "details": {}},
]
FILES = [
    {"name": "accounts.csv", "sha256": "3f1a9c0d2b4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708", "rows": 4210},
    {"name": "enforcement.csv", "sha256": "aa11bb22cc33dd44ee55ff6677889900aabbccddeeff00112233445566778899", "rows": 60000},
]
COVERAGE = {"enforcement_rows": 60000, "analysed": 59990, "excluded": {"spend window outside spend coverage": 10}}


def _results(synthetic: bool) -> dict:
    return {
        "schema_version": 1, "levelfield_version": "0.1.0", "synthetic": synthetic,
        "data": {"path": "/home/someone/data/sample", "files": FILES},
        "parameters": {"window_days": 90, "alpha": 0.05},
        "coverage": COVERAGE, "tests": copy.deepcopy(TESTS),
    }


def _manifest(created: str | None = "2025-11-24T10:00:00Z") -> dict:
    manifest = {"levelfield_version": "0.1.0", "python": "3.11.7", "packages": {"polars": "2.1.0", "typst": "0.15.2"},
                "data": {"files": FILES}, "parameters": {"window_days": 90, "alpha": 0.05}}
    if created:
        manifest["created"] = created
    return manifest


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """Two real figures, drawn once for all tests."""
    folder = tmp_path_factory.mktemp("figures")
    plots.save_figure(plots.forest(TESTS), plots.forest_data(TESTS), folder, "forest")
    plots.save_figure(plots.coverage_funnel(COVERAGE), plots.coverage_funnel_data(COVERAGE), folder, "coverage_funnel")
    return folder


def _run(path, figures, *, synthetic: bool, created: str | None = "2025-11-24T10:00:00Z"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps(_results(synthetic)))
    (path / "manifest.json").write_text(json.dumps(_manifest(created)))
    shutil.copytree(figures, path / "figures")
    return path


def _pdf_text(pdf) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize("synthetic", [True, False])
def test_pdf_compiles_without_warnings(tmp_path, figures, synthetic):
    run = _run(tmp_path / "run", figures, synthetic=synthetic)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # typst warnings are re-issued as Python warnings
        pdf = render_pdf(run)
    assert pdf == run / "report.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert (run / "report.typ").is_file()


@pytest.mark.parametrize("synthetic", [True, False])
def test_pdf_text_names_every_test_and_labels_synthetic_data(tmp_path, figures, synthetic):
    run = _run(tmp_path / "run", figures, synthetic=synthetic)
    text = _pdf_text(render_pdf(run))
    for test in TESTS:
        assert test["id"] in text
    pages = text.count("\f")  # pdftotext ends every page with a form feed
    assert pages >= 4
    assert f"page 1 of {pages}" in text and f"page {pages} of {pages}" in text
    if synthetic:
        # in the header and the footer of every page, plus the notice on the title page
        assert text.count("SYNTHETIC DATA") >= 2 * pages + 1
        assert all("SYNTHETIC DATA" in page for page in text.split("\f")[:pages])
    else:
        assert "SYNTHETIC" not in text
    assert not re.search(r"\bnan\b", text, flags=re.IGNORECASE)
    assert not re.search(r"\bNone\b", text)
    # findings in plain words, numbers in small type, skipped test with its reason
    assert "Listed accounts' cases were decided more slowly." in text
    assert "odds ratio 0.31 (95% CI 0.27 to 0.36)" in text
    assert "\u221221.0 (95% CI \u221227.0 to \u221215.0 percentage points)" in text
    assert "no appeals recorded in the data" in text
    # provenance: file names and the first 16 hex digits of their SHA-256, but not the full path
    assert "3f1a9c0d2b4e6f80" in text and "3f1a9c0d2b4e6f809" not in text
    assert "/home/someone" not in text
    assert "24 November 2025" in text
    for heading in ("Findings", "All tests", "Figures", "Coverage ledger", "Appendix A: Methods", "Appendix B: Glossary"):
        assert heading in text
    assert "Figure 1." in text and "Figure 2." in text  # forest and coverage funnel, nothing else


def test_rendering_twice_gives_identical_pdf(tmp_path, figures):
    first = render_pdf(_run(tmp_path / "a", figures, synthetic=True)).read_bytes()
    second = render_pdf(_run(tmp_path / "b", figures, synthetic=True)).read_bytes()
    assert first == second


def test_missing_results_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="results.json"):
        render_pdf(tmp_path)


def _strings(value):
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in ("date", "created"):
                yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    else:
        yield value


def test_content_is_worded_and_has_no_missing_values():
    content = report_content(_results(True), _manifest(created=None), figures=["figures/forest.svg", "figures/other.png"])
    assert content["date"] is None and content["created"] is None  # no creation time: no date
    assert None not in list(_strings(content))
    assert not any(isinstance(s, str) and re.search(r"\b(nan|None)\b", s) for s in _strings(content))
    rows = {row["id"]: row for row in content["table"]}
    assert rows["listed_adjusted"] == {"id": "listed_adjusted", "estimate": "OR 0.31", "ci": "0.27 to 0.36",
                                       "p": "< 0.001", "p_adjusted": "< 0.001", "n": "60,000"}
    assert rows["spend_adjusted"]["p"] == "0.067" and rows["spend_adjusted"]["ci"] == "0.86 to 1.00"
    assert rows["directive_did"]["estimate"] == "\u221221.0 pts"
    assert rows["appeal_reversal"]["estimate"] == "not run"
    assert [f["path"] for f in content["figures"]] == ["figures/forest.svg"]
    assert content["files"][0]["sha256"] == "3f1a9c0d2b4e6f80"
    assert content["data_name"] == "sample"
    assert [c["title"] for c in content["caveats"]][:3] == [
        "Synthetic data", "Consistent with, not caused by", "Leniency the records cannot see"]
    terms = {g["term"] for g in content["glossary"]}
    assert {"Odds ratio", "Confidence interval", "p-value", "Adjusted p-value", "Minimum detectable effect"} <= terms
