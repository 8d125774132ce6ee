"""The case studies end to end: ``levelfield analyze``, ``run`` and ``verify`` on real sources.

``--source meta-ad-library`` and ``--source dsa-tdb`` dispatch to the sources' studies
(analysis/studies); the shipped reference data (data/reference/, provenance in its MANIFEST.md)
must reconcile row for row with the published files, reproduce byte for byte, and give a
report naming every test.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.cli import app
from analysis.studies import STUDIES
from tests.conftest import REPO

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("papermill")

runner = CliRunner()
META = REPO / "data" / "reference" / "meta_ad_library"
DSA = REPO / "data" / "reference" / "dsa_tdb"
BE = META / "FacebookAdLibraryReport_2025-07-12_BE_last_30_days_advertisers.csv"
META_TESTS = ["spend_caught", "spend_caught_low", "spend_caught_high", "spend_tier_trend",
              "declared_spend_caught"]
DSA_TESTS = ["business_severe_crude", "business_severe_adjusted", "business_decision_speed",
             "business_automated_detection", "business_equal_treatment"]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def meta_analysed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("meta") / "run"
    result = invoke("analyze", "--source", "meta-ad-library", "--data", META, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def dsa_analysed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dsa") / "run"
    # --window-days does not apply to a study: accepted and ignored
    result = invoke("analyze", "--source", "dsa-tdb", "--data", DSA, "--out", out,
                    "--window-days", "30")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def meta_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("meta_report") / "run"
    result = invoke("run", "--source", "meta-ad-library", "--data", META, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_meta_analyze_reconciles_with_the_reports(meta_analysed: Path) -> None:
    results = read_json(meta_analysed / "results.json")
    assert results["data"]["source"] == "meta-ad-library" and results["synthetic"] is False
    rows = {f["name"]: f["rows"] for f in results["data"]["files"]}
    # data rows of each report, data/reference/MANIFEST.md: BE 1,036, BD 959, AD 66
    assert rows == {BE.name: 1036, "FacebookAdLibraryReport_2025-07-10_BD_last_30_days_advertisers"
                    ".csv": 959, "FacebookAdLibraryReport_2025-07-13_AD_last_30_days_advertisers"
                    ".csv": 66}
    coverage = results["coverage"]
    assert coverage["report_rows"] == 1036 + 959 + 66
    # Pages (one case per Page and report): BE 1,002, BD 938, AD 66 (every AD row is its own
    # Page), as tests/studies/test_meta_ad_library.py rebuilds them with the csv module
    assert coverage["enforcement_rows"] == 1002 + 938 + 66
    # Andorra cannot inform the tests (every amount is ≤100): BE and BD are analysed
    assert coverage["analysed"] == 1002 + 938
    assert list(coverage["excluded"].values()) == [66]
    assert next(iter(coverage["excluded"])).startswith("spend does not vary")
    tests = {t["id"]: t for t in results["tests"]}
    assert list(tests) == META_TESTS
    assert tests["spend_caught"]["n"] == coverage["analysed"]
    # pooled BE and BD, tests/studies/test_meta_ad_library.py: OR 0.062 per tenfold spend
    assert round(tests["spend_caught"]["estimate"], 3) == 0.062
    manifest = read_json(meta_analysed / "manifest.json")
    assert manifest["data"]["source"] == "meta-ad-library"
    assert manifest["parameters"]["alpha"] == 0.05
    assert set(manifest["outputs"]) == {"results.json"}


def test_dsa_analyze_reconciles_with_the_dumps(dsa_analysed: Path) -> None:
    results = read_json(dsa_analysed / "results.json")
    assert results["data"]["source"] == "dsa-tdb"
    # data/reference/MANIFEST.md: 12 + 20 published rows; rows 1 and 2 of the 2024 file are an
    # exact duplicate; account_type is empty in every row
    assert sorted(f["rows"] for f in results["data"]["files"]) == [12, 20]
    assert results["coverage"] == {
        "enforcement_rows": 32, "analysed": 0,
        "excluded": {"account_type not reported": 31, "exact duplicate row in the dump": 1}}
    assert [t["id"] for t in results["tests"]] == DSA_TESTS
    assert {t["status"] for t in results["tests"]} == {"skipped"}
    assert results["tests"][1]["reason"] == "no statement gives a business or private account type"
    assert "window_days" not in results["parameters"]


@pytest.mark.parametrize("fixture", ["meta_analysed", "dsa_analysed"])
def test_verify_reproduces_a_study(fixture: str, request) -> None:
    result = invoke("verify", request.getfixturevalue(fixture))
    assert result.exit_code == 0, result.output
    assert "Reproduced: results.json matches byte for byte (5 tests" in result.output


def test_verify_reruns_a_single_report_file_and_sees_a_changed_input(tmp_path: Path) -> None:
    report = shutil.copy(BE, tmp_path / BE.name)
    out = tmp_path / "run"
    assert invoke("analyze", "--source", "meta-ad-library", "--data", report, "--out",
                  out).exit_code == 0
    assert read_json(out / "results.json")["coverage"]["analysed"] == 1002
    assert invoke("verify", out).exit_code == 0
    text = Path(report).read_text(encoding="utf-8")
    Path(report).write_text(text.replace(",≤100,", ",150,", 1), encoding="utf-8")
    changed = invoke("verify", out)
    assert changed.exit_code == 1
    assert "Input files differ from the report's" in changed.output
    assert BE.name in changed.output.replace("\n", "")


def test_mapping_cannot_be_combined_with_a_study(tmp_path: Path) -> None:
    result = invoke("analyze", "--source", "dsa-tdb", "--data", DSA, "--out", tmp_path,
                    "--mapping", tmp_path / "map.toml")
    assert result.exit_code == 2
    assert not (tmp_path / "results.json").exists()


def test_run_writes_a_report_naming_every_test(meta_report: Path) -> None:
    results = read_json(meta_report / "results.json")
    assert [t["id"] for t in results["tests"]] == META_TESTS
    html = (meta_report / "report.html").read_text(encoding="utf-8")
    assert STUDIES["meta-ad-library"].title in html
    assert "SYNTHETIC" not in html
    assert all(test_id in html for test_id in META_TESTS)
    pdf = meta_report / "report.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    for name in ("caught_by_tier", "estimates", "data_audit"):
        assert (meta_report / "figures" / f"{name}.svg").is_file()
        assert (meta_report / "figures" / f"{name}.csv").is_file()
    assert (meta_report / "notebooks" / "10_case_meta_ad_library.ipynb").is_file()
    manifest = read_json(meta_report / "manifest.json")
    assert {"report.pdf", "report.html", "results.json"} <= set(manifest["outputs"])
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    text = subprocess.run(["pdftotext", str(pdf), "-"], check=True, capture_output=True,
                          text=True).stdout
    flat = " ".join(text.split()).replace("\u200b", "")
    assert all(test_id in flat for test_id in META_TESTS)
    assert "Political ads without a disclaimer" in flat
    # the numbers of the caveats are those of the Pages analysed, as in the conclusions
    assert "Of the 1,179 caught Pages analysed, 1,140 ran no declared ads" in flat


@pytest.mark.parametrize("study", list(STUDIES.values()), ids=list(STUDIES))
def test_case_notebooks_are_thin_and_parameterised(study) -> None:
    notebook = nbformat.read(REPO / "notebooks" / f"{study.notebook}.ipynb", as_version=4)
    title, _, body = notebook.cells[0].source.partition("\n\n")
    assert title.startswith("# ") and len(body.split()) >= 40
    tags = [set(c.metadata.get("tags", [])) for c in notebook.cells]
    parameters = [c for c, t in zip(notebook.cells, tags, strict=True) if "parameters" in t]
    assert len(parameters) == 1
    assigned = {t.id for node in ast.parse(parameters[0].source).body for t in node.targets}
    assert assigned == {"data_dir", "out_dir"}
    for cell, tag in zip(notebook.cells, tags, strict=True):
        if cell.cell_type != "code" or tag & {"parameters", "remove"}:
            continue
        tree = ast.parse(cell.source)
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert len(cell.source.splitlines()) <= 6


def test_statements_by_platform_of_the_2024_sample() -> None:
    from analysis.sources.dsa_tdb import read
    from analysis.studies.case import statements_by_platform

    table = statements_by_platform(read(DSA / "sor-global-2024-03-14-full_first12rows.csv"))
    # data/reference/MANIFEST.md: 11 distinct statements, Google Shopping 6, TikTok 4,
    # Pinterest 1; account_type empty in every row
    assert table.select("platform", "statements").rows() == [
        ("Google Shopping", 6), ("TikTok", 4), ("Pinterest", 1)]
    assert table["no account type"].to_list() == [6, 4, 1]
