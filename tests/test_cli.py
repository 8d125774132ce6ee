"""The command line end to end: exit codes, messages, outputs, determinism."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.cli import app
from tests.conftest import TINY, REPO, write_world

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def small_world(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("world") / "seed"
    result = invoke("simulate", "--out", folder, "--scenario", "seed-case", "--seed", "7")
    assert result.exit_code == 0, result.output
    return folder


def test_validate_ok(small_world: Path) -> None:
    result = invoke("validate", "--data", small_world)
    assert result.exit_code == 0
    assert "meets the data contract" in result.output
    assert "enforcement.csv.gz: 50,000 rows" in result.output


def test_bad_data_exit_code_2_with_location_and_no_traceback(tmp_path: Path) -> None:
    tables = dict(TINY)
    tables["enforcement"] = tables["enforcement"].replace("c3,a3,", "c3,a9,")
    folder = write_world(tmp_path / "bad", tables)
    # A real subprocess, as a user would run it: stderr must hold the message, not a traceback.
    proc = subprocess.run([sys.executable, "-m", "analysis.cli", "analyze", "--data", str(folder),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "enforcement.csv, line 4, column account_id: account_id does not exist in accounts" \
        in proc.stderr.replace("\n", " ")
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "out" / "results.json").exists()


def test_missing_folder_and_bad_arguments_exit_2(tmp_path: Path) -> None:
    assert invoke("validate", "--data", tmp_path / "nope").exit_code == 2
    assert invoke("simulate", "--out", tmp_path / "w", "--scenario", "nonsense").exit_code == 2
    assert invoke("analyze", "--data", tmp_path, "--out", tmp_path / "o",
                  "--window-days", "0").exit_code == 2


def test_analyze_writes_contract_and_is_byte_identical(small_world: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    assert invoke("analyze", "--data", small_world, "--out", first).exit_code == 0
    assert invoke("analyze", "--data", small_world, "--out", second).exit_code == 0
    assert (first / "results.json").read_bytes() == (second / "results.json").read_bytes()

    results = json.loads((first / "results.json").read_text())
    assert results["schema_version"] == 1 and results["synthetic"] is True
    assert results["parameters"] == {"window_days": 90, "alpha": 0.05}
    coverage = results["coverage"]
    assert coverage["analysed"] + sum(coverage["excluded"].values()) == coverage["enforcement_rows"]
    assert coverage["enforcement_rows"] == 50_000
    ids = [t["id"] for t in results["tests"]]
    # The battery of DESIGN.md, in its order.
    assert ids == ["listed_unadjusted", "listed_adjusted", "advertiser_adjusted",
                   "spend_adjusted", "spend_trend", "decision_speed", "appeal_reversal",
                   "directive_did", "equal_treatment"]
    for test in results["tests"]:
        for key in ("question", "estimand", "estimate", "ci_low", "ci_high", "p_value",
                    "p_adjusted", "n", "mde", "method", "conclusion"):
            assert test[key] is not None, (test["id"], key)

    manifest = json.loads((first / "manifest.json").read_text())
    files = {f["name"]: f for f in manifest["data"]["files"]}
    assert files["enforcement.csv.gz"]["rows"] == 50_000
    assert len(files["enforcement.csv.gz"]["sha256"]) == 64
    assert manifest["packages"]["polars"] and manifest["packages"]["statsmodels"]
    assert "results.json" in manifest["outputs"]


def test_sample_data_is_the_documented_simulation(tmp_path: Path) -> None:
    # data/sample must be exactly what `make sample` regenerates (seed 20230601), byte for byte.
    folder = tmp_path / "sample"
    assert invoke("simulate", "--out", folder, "--scenario", "seed-case",
                  "--seed", "20230601").exit_code == 0
    committed = REPO / "data" / "sample"
    for file in sorted(folder.iterdir()):
        assert file.read_bytes() == (committed / file.name).read_bytes(), file.name


def test_verify_confirms_a_run_and_names_a_changed_number(small_world: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert invoke("analyze", "--data", small_world, "--out", run).exit_code == 0
    result = invoke("verify", run)
    assert result.exit_code == 0, result.output
    assert "Reproduced" in result.output and "9 tests" in result.output

    published = json.loads((run / "results.json").read_text())
    published["tests"][1]["estimate"] += 0.01  # a number edited by hand after the run
    (run / "results.json").write_text(json.dumps(published, indent=2) + "\n")
    result = invoke("verify", run)
    assert result.exit_code == 1
    assert "tests[listed_adjusted].estimate" in result.output


@pytest.mark.parametrize("report", ["sample", "meta_ad_library", "dsa_transparency"])
def test_committed_example_reports_are_reproduced(report: str, monkeypatch) -> None:
    # The reports under reports/ are what `make report` writes; verify reruns each from its
    # manifest (from the repository root, as the manifest's data path is relative to it).
    monkeypatch.chdir(REPO)
    result = invoke("verify", REPO / "reports" / report)
    assert result.exit_code == 0, result.output
    assert "Reproduced" in result.output
