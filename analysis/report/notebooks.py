"""Run the analysis notebooks with papermill, as the report's first step.

Each notebook in ``notebooks/`` has a cell tagged ``parameters``; papermill injects the run's
parameters after it, executes every cell in a fresh Python kernel started from this very
interpreter, and saves the executed copy (outputs included) under ``<out_dir>/notebooks/``. The
executed copies are what :func:`analysis.report.render_html` turns into the HTML report.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["NotebookError", "execute_notebooks"]

KERNEL_NAME = "python3"
"""Jupyter's name for the native Python kernel; always resolved to the running interpreter here."""


class NotebookError(RuntimeError):
    """A notebook failed while running; says which notebook, which cell and what went wrong.

    Attributes
    ----------
    notebook : str
        File name of the notebook.
    cell_index : int or None
        Position of the failing cell in the notebook as written (without the cell papermill
        injects), counted from 0; None when no cell is to blame (e.g. the kernel did not start).
    output_path : Path
        The executed copy, saved with the error shown in place, for inspection.
    """

    def __init__(self, message: str, *, notebook: str, cell_index: int | None, output_path: Path) -> None:
        super().__init__(message)
        self.notebook = notebook
        self.cell_index = cell_index
        self.output_path = output_path


def execute_notebooks(
    names: Sequence[str],
    *,
    notebooks_dir: str | Path,
    out_dir: str | Path,
    parameters: Mapping[str, Any],
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Path]:
    """Execute notebooks in order with papermill and save the executed copies.

    Parameters
    ----------
    names : list of str
        Notebook file names in ``notebooks_dir``, run in the order given ("01-data.ipynb"; the
        ".ipynb" may be left off).
    notebooks_dir : str or Path
        Folder holding the notebooks; also the working directory of each run, so relative paths
        inside a notebook mean the same as when it is opened in JupyterLab.
    out_dir : str or Path
        Run folder; executed copies go to ``out_dir/notebooks/<name>.ipynb``.
    parameters : dict
        Values injected after each notebook's ``parameters`` cell (e.g. ``data_dir``, ``out_dir``).
        Paths are passed as strings; values must otherwise be plain JSON-like Python values.
    progress : callable, optional
        Called as ``progress(name, done, total)`` after each notebook has finished, e.g. to
        advance a progress bar.

    Returns
    -------
    list of Path
        The executed notebooks, in the order run.

    Raises
    ------
    NotebookError
        When a cell raises: the message names the notebook, the cell (its position and first
        line), and the error; the partly executed copy is saved for inspection. Later notebooks
        are not run.
    FileNotFoundError
        When a notebook does not exist.

    Examples
    --------
    >>> execute_notebooks(["01-data", "02-tests"], notebooks_dir="notebooks",
    ...                   out_dir="reports/sample",
    ...                   parameters={"data_dir": "data/sample"})  # doctest: +SKIP
    [PosixPath('reports/sample/notebooks/01-data.ipynb'), PosixPath('reports/sample/notebooks/02-tests.ipynb')]
    """
    try:
        import papermill
        from papermill.exceptions import PapermillExecutionError
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError(
            "running notebooks needs the report extras: pip install 'levelfield[report]'"
        ) from error

    source_dir = Path(notebooks_dir).resolve()
    target_dir = Path(out_dir).resolve() / "notebooks"
    files = [source_dir / (name if name.endswith(".ipynb") else f"{name}.ipynb") for name in names]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"notebook(s) not found: {', '.join(missing)}")
    target_dir.mkdir(parents=True, exist_ok=True)
    injected = {key: _plain(value) for key, value in parameters.items()}
    kernel_manager = _this_interpreter_kernel_manager()

    executed: list[Path] = []
    for done, source in enumerate(files, start=1):
        target = target_dir / source.name
        try:
            papermill.execute_notebook(
                str(source),
                str(target),
                parameters=injected,
                kernel_name=KERNEL_NAME,
                language="python",
                cwd=str(source_dir),
                progress_bar=False,
                log_output=False,
                request_save_on_cell_execute=False,
                kernel_manager_class=kernel_manager,
            )
        except PapermillExecutionError as error:
            cell_index = _source_cell_index(target, error.cell_index)
            raise NotebookError(
                _describe_failure(source.name, error, cell_index, target),
                notebook=source.name,
                cell_index=cell_index,
                output_path=target,
            ) from error
        except Exception as error:  # the kernel died or did not start: no cell to blame
            raise NotebookError(
                f"notebook {source.name} could not be run: {type(error).__name__}: {error}",
                notebook=source.name,
                cell_index=None,
                output_path=target,
            ) from error
        _make_reproducible(target)
        executed.append(target)
        if progress is not None:
            progress(source.name, done, len(files))
    return executed


def relative_to_notebooks(path: str | Path, notebooks_dir: str | Path) -> str:
    """``path`` as the notebooks (run from ``notebooks_dir``) see it: relative, so the executed
    notebooks are the same in every clone."""
    import os

    return os.path.relpath(Path(path).resolve(), Path(notebooks_dir).resolve())


def _make_reproducible(path: Path) -> None:
    """Remove what changes from one run to the next, so that a rerun rewrites the same notebook:
    the clock times papermill records, the absolute paths of this checkout, and the random id of
    the cell it injects."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for key in ("start_time", "end_time", "duration", "exception", "input_path", "output_path"):
        notebook.metadata.get("papermill", {}).pop(key, None)
    for cell in notebook.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = "injected-parameters"
        cell.metadata.pop("execution", None)
        for key in ("start_time", "end_time", "duration", "exception", "status"):
            cell.metadata.get("papermill", {}).pop(key, None)
        if cell.metadata.get("papermill") == {}:
            del cell.metadata["papermill"]
    nbformat.write(notebook, path)


def _source_cell_index(executed: Path, cell_index: int) -> int:
    """Position of a cell in the notebook as written, before papermill injected its parameters."""
    try:
        import nbformat

        cells = nbformat.read(executed, as_version=4).cells
    except Exception:  # the copy could not be read back; the executed position is still useful
        return cell_index
    injected = sum(
        "injected-parameters" in cell.get("metadata", {}).get("tags", []) for cell in cells[:cell_index]
    )
    return cell_index - injected


def _describe_failure(notebook: str, error: Any, cell_index: int, saved: Path) -> str:
    lines = [line for line in (error.source or "").splitlines() if line.strip()]
    first = lines[0].strip() if lines else "(empty cell)"
    if len(first) > 80:
        first = first[:77] + "..."
    return (
        f"notebook {notebook} failed in cell {cell_index + 1} (counting from 1; the cell starting "
        f"`{first}`): {error.ename}: {error.evalue}\n"
        f"The executed copy, with the full traceback, is at {saved}"
    )


def _plain(value: Any) -> Any:
    """Parameters as papermill can write them into a cell: paths become strings."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _this_interpreter_kernel_manager() -> type:
    """A kernel manager whose "python3" kernel is always ipykernel under ``sys.executable``.

    Jupyter looks kernels up by name, and a "python3" kernelspec in the user's own Jupyter folder
    (e.g. from ``ipykernel install --user`` in another environment) would take precedence over
    this environment's and run the notebooks with a different Python, where levelfield may not be
    installed. Building the spec from ipykernel itself pins the kernel to this interpreter, and
    needs no kernelspec to be installed at all.
    """
    import zmq
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class ThisInterpreterSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str):
            if kernel_name.lower() == KERNEL_NAME:
                return self.kernel_spec_class(resource_dir=RESOURCES, **get_kernel_dict())
            return super().get_kernel_spec(kernel_name)

    class ThisInterpreterKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("kernel_spec_manager", ThisInterpreterSpecs())
            if zmq.has("curve"):
                # encrypt the kernel's local sockets; an unencrypted kernel also warns on stderr
                kwargs.setdefault("transport_encryption", "auto")
            super().__init__(**kwargs)

    return ThisInterpreterKernelManager
