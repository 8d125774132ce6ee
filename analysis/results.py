"""The results contract (results.json) and the manifest (manifest.json), written deterministically.

Same inputs, same parameters, same package versions: byte-identical results.json. Floats are
rounded to 10 significant digits so that the file is stable and readable; keys keep the order of
the contract.
"""

from __future__ import annotations

import json
import math
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from analysis import __version__
from analysis.attribute import CoverageLedger
from analysis.load import Dataset
from analysis.stats.result import TestResult

SCHEMA_VERSION = 1
#: Packages whose versions can change a number; recorded in the manifest.
RECORDED_PACKAGES = ("polars", "pyarrow", "numpy", "scipy", "pandas", "statsmodels", "matplotlib",
                     "seaborn", "papermill", "nbconvert", "typst")


def build_results(dataset: Dataset, ledger: CoverageLedger, tests: list[TestResult], *,
                  parameters: dict[str, Any]) -> dict[str, Any]:
    """The results.json document of DESIGN.md."""
    return _rounded({
        "schema_version": SCHEMA_VERSION,
        "levelfield_version": __version__,
        "synthetic": dataset.synthetic,
        "data": {"path": _display_path(dataset.path), "source": dataset.source,
                 "files": [{"table": f.table, "name": f.name, "sha256": f.sha256, "rows": f.rows}
                           for f in dataset.files]},
        "parameters": parameters,
        "coverage": ledger.to_dict(),
        "tests": [t.to_dict() for t in tests],
    })


def build_manifest(dataset: Dataset, *, parameters: dict[str, Any], command: list[str],
                   outputs: dict[str, str]) -> dict[str, Any]:
    """What a rerun needs to reproduce the report: inputs, parameters, software, outputs' hashes."""
    return {
        "levelfield_version": __version__,
        "command": command,
        "data": {"path": _display_path(dataset.path), "source": dataset.source,
                 "synthetic": dataset.synthetic,
                 "files": [{"table": f.table, "name": f.name, "sha256": f.sha256, "rows": f.rows}
                           for f in dataset.files]},
        "parameters": parameters,
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in RECORDED_PACKAGES},
        "outputs": outputs,
    }


def results_text(document: dict[str, Any]) -> str:
    """The exact text written for a JSON document: indented, UTF-8, no NaN, trailing newline."""
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: Path, document: dict[str, Any]) -> Path:
    """Write a JSON document as :func:`results_text` gives it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(results_text(document), encoding="utf-8")
    return path


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.10g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _display_path(path: Path) -> str:
    """The data path relative to the working directory when inside it (stable across clones)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
