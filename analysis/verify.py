"""Reproduce a published run: rerun the analysis from its manifest and compare every number.

``levelfield verify REPORT_DIR`` reads ``manifest.json``, checks that the input files are the
ones the report was computed from (same SHA-256), reruns the analysis with the recorded
parameters and compares the new results.json with the report's, byte for byte. When they differ
it lists the numbers that changed, so a journalist can see exactly what does not reproduce.

A report of a source's case study (``manifest.json`` names a source in
:data:`analysis.studies.STUDIES`) is rerun with that study rather than the battery; its inputs
are checked against the files the rerun read, which also works when the data are a single file
or a zip.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape

from analysis.load import sha256
from analysis.results import RECORDED_PACKAGES, _version, results_text
from analysis.schema import DataError, Problem


@dataclass
class Verification:
    """The outcome of a verification, as lines a person reads."""

    ok: bool
    lines: list[str] = field(default_factory=list)


def verify_report(report_dir: str | Path, *,
                  progress: Callable[[str], None] | None = None) -> Verification:
    """Rerun the analysis recorded in ``report_dir/manifest.json`` and compare results.json."""
    from analysis.pipeline import analyze
    from analysis.sources import read_source
    from analysis.studies import STUDIES, run_case_study

    say = progress or (lambda _: None)
    folder = Path(report_dir)
    manifest = _read_json(folder / "manifest.json")
    published = folder / "results.json"
    if not published.exists():
        raise DataError([Problem(str(published), "the report has no results.json to verify")])
    data = _data_path(manifest["data"]["path"], folder)
    lines = [f"Verifying {folder} against the data in {data}."]
    source = manifest["data"].get("source", "canonical")
    recorded_files = manifest["data"]["files"]
    parameters = manifest["parameters"]

    if source in STUDIES:
        # A study reads its files to fingerprint them (a zip's members, a folder's reports), so
        # the inputs are compared after the rerun has read them.
        say(f"rerunning the {STUDIES[source].name} study")
        rerun = run_case_study(source, data, alpha=parameters["alpha"])
        found = {(f.name, f.sha256) for f in rerun.dataset.files}
        changed = [f for f in recorded_files if (f["name"], f["sha256"]) not in found]
        changed += [{"name": name} for name, _ in sorted(found)
                    if name not in {f["name"] for f in recorded_files}]
    else:
        changed = [f for f in recorded_files
                   if not (data / f["name"]).exists() or sha256(data / f["name"]) != f["sha256"]]
    if changed:
        names = escape(", ".join(f["name"] for f in changed))
        return Verification(False, lines + [f"[red]Input files differ from the report's:[/] {names}"
                                             " (missing, added, or a different SHA-256)."])
    lines.append(f"Inputs: {len(recorded_files)} files, SHA-256 as recorded.")
    for name in RECORDED_PACKAGES:
        recorded, now = manifest.get("packages", {}).get(name), _version(name)
        if recorded != now:
            lines.append(f"[yellow]Note:[/] {name} {now} here, {recorded} in the report.")

    if source not in STUDIES:
        say("rerunning the analysis")
        dataset = read_source(data, source=source)
        rerun = analyze(dataset, window_days=parameters["window_days"], alpha=parameters["alpha"])
    fresh = results_text(rerun.results)
    if fresh.encode("utf-8") == published.read_bytes():
        tests = len(rerun.tests)
        return Verification(True, lines + [f"[green]Reproduced:[/] results.json matches byte for "
                                           f"byte ({tests} tests, every number)."])
    old = json.loads(published.read_text(encoding="utf-8"))
    differences = list(_differences(old, json.loads(fresh)))
    lines.append(f"[red]Does not reproduce:[/] {len(differences)} value(s) differ.")
    lines += [escape(f"  {path}: report {a!r}, rerun {b!r}") for path, a, b in differences[:25]]
    return Verification(False, lines)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise DataError([Problem(str(path), "not found: is this a levelfield run folder?")])
    return json.loads(path.read_text(encoding="utf-8"))


def _data_path(recorded: str, report_dir: Path) -> Path:
    """The data folder: as recorded (relative to here), else relative to the project of the report."""
    candidates = [Path(recorded)] + [parent / recorded for parent in report_dir.resolve().parents]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise DataError([Problem(recorded, "the report's data folder was not found (looked here and "
                             f"above {report_dir})")])


def _differences(a: Any, b: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from _differences(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            label = x.get("id", i) if isinstance(x, dict) else i
            yield from _differences(x, y, f"{path}[{label}]")
    elif a != b:
        yield path, a, b
