"""The notebooks: thin, parameterised, and executed end to end by ``levelfield run``.

The first tests read the notebooks as written: each has a ``parameters`` cell (``data_dir``,
``out_dir``), opens with a paragraph a reader without statistics can follow, keeps its setup in
cells tagged ``remove``, and otherwise only calls ``analysis`` and shows the result. The rest run
``levelfield run`` once on a small simulated world (built once per session, shared with
tests/report/test_browser.py) and check the executed notebooks, figures and HTML page.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from analysis.config import NOTEBOOKS, NOTEBOOKS_DIR

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("papermill")

#: Longest code cell allowed outside setup: a cell calls one function and shows its result.
MAX_LINES = 6
#: Names through which the thin cells reach the analysis (imported in the setup cells).
ANALYSIS_NAMES = {"audit", "findings", "plots", "kaplan_meier"}
#: Figures build_report saves, each as PNG, SVG and CSV.
FIGURES = ("forest", "enforcement_by_tier", "enforcement_over_time", "coverage_funnel",
           "crude_vs_adjusted", "kaplan_meier", "event_study", "mde_chart")


def _notebook(name: str):
    return nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)


def _tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def _thin_cells(notebook) -> list:
    setup = {"parameters", "injected-parameters", "remove"}  # papermill injects the second
    return [c for c in notebook.cells if c.cell_type == "code" and not _tags(c) & setup]


def test_config_lists_every_notebook_in_numbered_order() -> None:
    from analysis.studies import STUDIES

    case_studies = {study.notebook for study in STUDIES.values()}
    on_disk = sorted(path.stem for path in NOTEBOOKS_DIR.glob("*.ipynb"))
    assert sorted([*NOTEBOOKS, *case_studies]) == on_disk
    assert [name[:2] for name in NOTEBOOKS] == [f"{i:02d}" for i in range(len(NOTEBOOKS))]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_has_a_parameters_cell_with_data_and_out_dir(name: str) -> None:
    cells = [c for c in _notebook(name).cells if "parameters" in _tags(c)]
    assert len(cells) == 1
    assigned = {t.id for node in ast.parse(cells[0].source).body for t in node.targets}
    assert assigned == {"data_dir", "out_dir"}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_opens_with_a_title_and_a_paragraph(name: str) -> None:
    first = _notebook(name).cells[0]
    assert first.cell_type == "markdown"
    title, _, body = first.source.partition("\n\n")
    assert title.startswith("# ")
    assert len(body.split()) >= 40  # a paragraph, not a caption


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_code_cells_are_thin_and_setup_is_removed(name: str) -> None:
    notebook = _notebook(name)
    for cell in notebook.cells:
        if cell.cell_type != "code" or "parameters" in _tags(cell):
            continue
        tree = ast.parse(cell.source)
        imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        if imports:
            assert "remove" in _tags(cell), f"{name}: a cell with imports must be tagged remove"
    thin = _thin_cells(notebook)
    assert thin, f"{name} shows nothing"
    for cell in thin:
        lines = [line for line in cell.source.splitlines() if line.strip()]
        assert len(lines) <= MAX_LINES, f"{name}: cell too long:\n{cell.source}"
        tree = ast.parse(cell.source)
        logic = [n for n in ast.walk(tree) if isinstance(n, (ast.For, ast.While, ast.If, ast.FunctionDef,
                                                                ast.ClassDef, ast.Lambda, ast.ListComp))]
        assert not logic, f"{name}: logic belongs in analysis/, not in a cell:\n{cell.source}"
        called = {node.func.value.id if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                  else getattr(node.func, "id", None) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        assert called & ANALYSIS_NAMES, f"{name}: the cell calls nothing from analysis:\n{cell.source}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_markdown_types_no_results(name: str) -> None:
    # numbers in the text would go stale when the data change: results come from the cells
    for cell in _notebook(name).cells:
        if cell.cell_type == "markdown":
            assert not re.search(r"\d[.,]\d", cell.source), cell.source


# ---------------------------------------------------------------------------------------------
# A run of `levelfield run`, shared by the tests below and tests/report/test_browser.py
# ---------------------------------------------------------------------------------------------


def built_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder made by ``levelfield run`` on a small seed-case world, built once per session.

    The folder lives under the session's base temporary directory; a marker file written after a
    successful build lets every test module that asks reuse it.
    """
    from typer.testing import CliRunner

    from analysis.cli import app
    from analysis.simulate import simulate

    root = tmp_path_factory.getbasetemp() / "levelfield-run"
    run, done = root / "run", root / "complete"
    if done.is_file():
        return run
    root.mkdir(exist_ok=True)
    data = root / "data"
    if not data.exists():
        # big enough for every test of the battery to run (appeals of listed accounts included)
        simulate("seed-case", seed=7, out=data, n_cases=8000, n_accounts=900, n_advertisers=120)
    result = CliRunner().invoke(app, ["run", "--data", str(data), "--out", str(run)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    done.write_text("ok")
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return built_run(tmp_path_factory)


@pytest.fixture(scope="module")
def results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def test_every_notebook_ran_without_errors_or_warnings(run: Path) -> None:
    for name in NOTEBOOKS:
        executed = nbformat.read(run / "notebooks" / f"{name}.ipynb", as_version=4)
        for cell in executed.cells:
            if cell.cell_type != "code":
                continue
            kinds = [o.output_type for o in cell.outputs]
            assert "error" not in kinds, f"{name}: {cell.source}"
            stderr = [o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"]
            assert not stderr, f"{name}: {cell.source}\n{stderr}"
        for cell in _thin_cells(executed):
            shown = [o for o in cell.outputs if o.output_type in ("display_data", "execute_result")]
            assert shown, f"{name}: the cell shows nothing:\n{cell.source}"
            if cell.source.rstrip().endswith(";"):  # a figure
                assert any("image/png" in o.get("data", {}) for o in shown), cell.source


def test_html_report_has_every_notebook_and_every_test(run: Path, results: dict) -> None:
    page = (run / "report.html").read_text(encoding="utf-8")
    for name in NOTEBOOKS:
        title = _notebook(name).cells[0].source.splitlines()[0].lstrip("# ").strip()
        assert re.search(rf"<h1[^>]*>{re.escape(title)}</h1>", page), title
    for test in results["tests"]:
        assert test["id"] in page, test["id"]
    assert "Traceback" not in page
    # numbers come from results.json: each ratio estimate appears as the findings word it
    for test in results["tests"]:
        if test["status"] == "ok" and test["scale"] in ("OR", "HR") and test["id"] != "equal_treatment":
            assert f"{test['estimate']:.2f}" in page, test["id"]


def test_figures_and_pdf_are_written(run: Path) -> None:
    for name in FIGURES:
        for suffix in (".png", ".svg", ".csv"):
            path = run / "figures" / f"{name}{suffix}"
            assert path.is_file() and path.stat().st_size > 0, path.name
    assert (run / "report.pdf").read_bytes()[:5] == b"%PDF-"
    # the event study's table is results.json's, month by month
    import polars as pl

    rows = next(t for t in json.loads((run / "results.json").read_text())["tests"]
                if t["id"] == "directive_did")["details"]["event_study"]
    table = pl.read_csv(run / "figures" / "event_study.csv")
    assert table["event_time"].to_list() == [r["event_time"] for r in rows]
    assert table["estimate"].to_list() == pytest.approx([r["estimate"] for r in rows])
