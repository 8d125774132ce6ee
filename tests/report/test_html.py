"""Tests of analysis.report.html and analysis.report.notebooks: executed notebooks to one HTML page."""

from __future__ import annotations

import base64
import json
import re
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbconvert")
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output  # noqa: E402

from analysis.report import NotebookError, execute_notebooks, render_html  # noqa: E402

# a 1x1 PNG
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
KERNELSPEC = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def _executed_notebooks(folder):
    """Two notebooks as papermill leaves them: parameters, outputs, a cell tagged remove."""
    (folder / "chart.png").write_bytes(PIXEL)
    first = new_notebook(
        metadata=KERNELSPEC,
        cells=[
            new_code_cell("data_dir = 'PARAMETER_MARKER'", metadata={"tags": ["parameters"]}),
            new_markdown_cell("# Data and coverage\n\nWhere the cases come from.\n\n## Coverage ledger\n\n![a chart](chart.png)"),
            new_code_cell(
                "summary = 'INPUT_ONLY_MARKER'\nprint('visible output')",
                execution_count=1,
                outputs=[new_output("stream", name="stdout", text="visible output\n")],
            ),
            new_code_cell(
                "print('REMOVED_MARKER')",
                execution_count=2,
                metadata={"tags": ["remove"]},
                outputs=[new_output("stream", name="stdout", text="REMOVED_MARKER\n")],
            ),
            new_code_cell(
                "fig",
                execution_count=3,
                outputs=[
                    new_output(
                        "display_data",
                        data={"image/png": base64.b64encode(PIXEL).decode(), "text/plain": "<Figure>"},
                    )
                ],
            ),
        ],
    )
    second = new_notebook(
        metadata=KERNELSPEC,
        cells=[
            new_markdown_cell("# Tests\n\n## Coverage ledger\n\nA second heading with the same words."),
            new_code_cell(
                "table",
                execution_count=1,
                outputs=[
                    new_output(
                        "execute_result",
                        execution_count=1,
                        data={
                            "text/html": '<script src="https://cdn.example.org/x.js"></script>'
                            '<link rel="stylesheet" href="https://cdn.example.org/x.css">'
                            "<table><tr><th>id</th><th>OR</th></tr><tr><td>listed_adjusted</td><td>0.31</td></tr></table>",
                            "text/plain": "table",
                        },
                    )
                ],
            ),
        ],
    )
    paths = [folder / "01-data.ipynb", folder / "02-tests.ipynb"]
    nbformat.write(first, paths[0])
    nbformat.write(second, paths[1])
    return paths


@pytest.mark.parametrize("synthetic", [True, False])
def test_report_is_offline_with_code_hidden(tmp_path, synthetic):
    notebooks = _executed_notebooks(tmp_path)
    out = render_html(notebooks, tmp_path / "out" / "report.html", title="Does money buy leniency?", synthetic=synthetic)
    page = out.read_text(encoding="utf-8")

    # offline: no scripts, no external stylesheets, images embedded as data URIs
    assert "<script" not in page
    assert not re.search(r"<(script|link)[^>]*(src|href)=[\"']?https?:", page)
    assert "@import" not in page
    images = re.findall(r"<img[^>]*src=\"([^\"]*)\"", page)
    assert len(images) == 2  # the output figure and the picture in the markdown cell
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page

    # code hidden, tagged cells removed, outputs kept
    assert "INPUT_ONLY_MARKER" not in page and "PARAMETER_MARKER" not in page
    assert "REMOVED_MARKER" not in page
    assert "visible output" in page and "listed_adjusted" in page
    assert "In&nbsp;[" not in page and "In [" not in page

    # the banner iff synthetic
    assert ("SYNTHETIC DATA" in page) is synthetic

    # contents: every heading, linked to a unique id that exists
    toc = re.search(r'<nav class="toc".*?</nav>', page, flags=re.DOTALL).group(0)
    links = re.findall(r'<a href="#([^"]+)">([^<]+)</a>', toc)
    assert [text for _, text in links] == ["Data and coverage", "Coverage ledger", "Tests", "Coverage ledger"]
    anchors = [anchor for anchor, _ in links]
    assert len(set(anchors)) == 4
    for anchor in anchors:
        assert f'id="{anchor}"' in page


def test_rendering_is_deterministic(tmp_path):
    notebooks = _executed_notebooks(tmp_path)
    first = render_html(notebooks, tmp_path / "a.html", title="T", synthetic=True).read_bytes()
    second = render_html(notebooks, tmp_path / "b.html", title="T", synthetic=True).read_bytes()
    assert first == second


def test_execute_notebooks_runs_this_interpreter_with_parameters(tmp_path):
    source = tmp_path / "notebooks"
    source.mkdir()
    notebook = new_notebook(
        metadata=KERNELSPEC,
        cells=[
            new_code_cell("data_dir = 'default'\nalpha = 0.0", metadata={"tags": ["parameters"]}),
            new_markdown_cell("# Check"),
            new_code_cell("import os, sys\nprint(sys.executable)\nprint(os.getcwd())\nprint(data_dir, alpha)"),
            # figures are shown when their cell ends, the second one too (a style context that
            # restored every setting once switched the kernel's interactive mode off here)
            new_code_cell("from analysis import plots\nledger = {'enforcement_rows': 10, 'analysed': 9, 'excluded': {'x': 1}}"),
            new_code_cell("plots.coverage_funnel(ledger);"),
            new_code_cell("plots.coverage_funnel(ledger);"),
        ],
    )
    nbformat.write(notebook, source / "01-check.ipynb")
    seen = []
    executed = execute_notebooks(
        ["01-check"],
        notebooks_dir=source,
        out_dir=tmp_path / "run",
        parameters={"data_dir": tmp_path / "data", "alpha": 0.05},
        progress=lambda name, done, total: seen.append((name, done, total)),
    )
    assert executed == [(tmp_path / "run" / "notebooks" / "01-check.ipynb").resolve()]
    cells = nbformat.read(executed[0], as_version=4).cells
    assert "injected-parameters" in cells[1].metadata["tags"] and cells[1].id == "injected-parameters"
    printed = cells[3].outputs[0]["text"].splitlines()
    assert printed == [sys.executable, str(source.resolve()), f"{tmp_path / 'data'} 0.05"]
    for cell in cells[-2:]:
        assert [list(o.get("data", {})) for o in cell.outputs] == [["image/png", "text/plain"]]
    # no clock times: a rerun rewrites the same notebook
    assert "start_time" not in json.dumps(nbformat.read(executed[0], as_version=4))
    assert seen == [("01-check.ipynb", 1, 1)]
    # the executed copy renders
    page = render_html(executed, tmp_path / "run" / "report.html", title="Check", synthetic=False).read_text()
    assert '<a href="#check">Check</a>' in page
    assert page.count("<img") == 2


def test_failing_notebook_names_notebook_and_cell(tmp_path, monkeypatch):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = tmp_path / "notebooks"
    source.mkdir()
    for name in ("01-ok.ipynb", "02-broken.ipynb", "03-never.ipynb"):
        nbformat.write(new_notebook(metadata=KERNELSPEC, cells=[new_code_cell("x = 1")]), source / name)
    ran = []

    def fake_execute(input_path, output_path, **kwargs):
        ran.append(input_path.rsplit("/", 1)[-1])
        assert kwargs["kernel_name"] == "python3" and kwargs["cwd"] == str(source.resolve())
        if "broken" not in input_path:
            nbformat.write(nbformat.read(input_path, as_version=4), output_path)
            return
        if "broken" in input_path:
            # papermill saves the copy, with its injected-parameters cell at position 1, then raises
            copy = new_notebook(cells=[
                new_code_cell("", metadata={"tags": ["parameters"]}),
                new_code_cell("", metadata={"tags": ["injected-parameters"]}),
                new_code_cell("cases = load(data_dir)\nrun(cases)"),
            ])
            nbformat.write(copy, output_path)
            raise PapermillExecutionError(2, 1, "cases = load(data_dir)\nrun(cases)", "KeyError", "'spend_tier'", [])

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    with pytest.raises(NotebookError) as caught:
        execute_notebooks(["01-ok", "02-broken", "03-never"], notebooks_dir=source, out_dir=tmp_path / "run", parameters={})
    message = str(caught.value)
    assert "02-broken.ipynb" in message
    assert "cell 2 (counting from 1" in message  # the third cell of the copy, second of the notebook
    assert "cases = load(data_dir)" in message and "KeyError" in message
    assert caught.value.cell_index == 1
    assert ran == ["01-ok.ipynb", "02-broken.ipynb"]


def test_missing_notebook_is_reported_before_running(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ipynb"):
        execute_notebooks(["nope"], notebooks_dir=tmp_path, out_dir=tmp_path / "run", parameters={})
