"""The ``levelfield`` command line.

Exit codes: 0 ok; 2 the user's data or arguments are wrong (a clear message, no traceback);
1 a bug in levelfield (with a traceback, so it can be reported).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from analysis.config import ALPHA, NOTEBOOKS, NOTEBOOKS_DIR, WINDOW_DAYS
from analysis.schema import DataError

app = typer.Typer(
    help="levelfield: does money buy leniency? Tests for preferential moderation of big "
         "advertisers, with reproducible reports.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()

DataOption = Annotated[Path, typer.Option("--data", help="Data folder in the canonical contract.")]
OutOption = Annotated[Path, typer.Option("--out", help="Output folder (created if missing).")]
WindowOption = Annotated[int, typer.Option(help="Trailing-spend window, days before the flag.",
                                           min=1)]
AlphaOption = Annotated[float, typer.Option(help="Significance level of every test.", min=1e-6,
                                            max=0.5)]
SourceOption = Annotated[str, typer.Option(
    help="How to read --data: canonical, dsa-tdb, meta-ad-library or google-political-ads.")]
MappingOption = Annotated[Path | None, typer.Option(
    help="A TOML file mapping another export's columns and values to the contract.")]


def _read(data: Path, source: str, mapping: Path | None):
    from analysis.sources import SOURCES, read_source

    if source not in SOURCES:
        raise UsageError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if mapping is not None and source != "canonical":
        raise UsageError(f"--mapping maps an export onto the canonical contract; it cannot be "
                         f"combined with --source {source}")
    return read_source(data, source=source, mapping=mapping)


class UsageError(Exception):
    """The command was asked for something that cannot be done (exit code 2)."""


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the user's bad input into a readable message and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DataError as problem:
            err.print(f"[bold red]The data do not meet the contract.[/]\n{problem.summary()}",
                      highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        except UsageError as problem:
            err.print(f"[bold red]Error:[/] {problem}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


class Stages:
    """Progress on long work: one line per stage, with its elapsed time."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.perf_counter()
        self.last = self.started

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.console.print(f"[dim]{now - self.started:6.1f}s[/] {stage} …", highlight=False)
        self.last = now


@app.command()
@user_errors
def simulate(
    out_dir: OutOption,
    scenario: Annotated[str, typer.Option(help="seed-case, null-confounded or spend-dose.")]
    = "seed-case",
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same files.")] = 1,
) -> None:
    """Write a synthetic platform with a planted truth (and truth.json) to --out."""
    from analysis.simulate import SCENARIOS, simulate as make_world

    if scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    try:
        tables = make_world(scenario, seed=seed, out=out_dir)
    except (ValueError, FileExistsError) as problem:  # e.g. the folder is not empty
        raise UsageError(str(problem)) from None
    rows = ", ".join(f"{name} {frame.height:,}" for name, frame in tables.items())
    out.print(f"Wrote scenario [bold]{scenario}[/] (seed {seed}) to {out_dir}: {rows}")


@app.command()
@user_errors
def validate(data: DataOption, source: SourceOption = "canonical",
             mapping: MappingOption = None) -> None:
    """Check a data folder against the contract; list every problem found."""
    dataset = _read(data, source, mapping)
    for f in dataset.files:
        out.print(f"  {f.name}: {f.rows:,} rows, sha256 {f.sha256[:16]}")
    out.print(f"[green]OK[/]: {data} meets the data contract.")


@app.command()
@user_errors
def analyze(data: DataOption, out_dir: OutOption, window_days: WindowOption = WINDOW_DAYS,
            alpha: AlphaOption = ALPHA, source: SourceOption = "canonical",
            mapping: MappingOption = None) -> None:
    """Run the battery; write results.json and manifest.json (no notebooks, no report).

    --source meta-ad-library or dsa-tdb runs that source's case study (--window-days ignored).
    """
    from analysis.pipeline import analyze as run_analysis
    from analysis.studies import STUDIES, run_case_study

    stages = Stages(err)
    if source in STUDIES:
        if mapping is not None:
            raise UsageError(f"--mapping cannot be combined with --source {source}")
        stages(f"reading the data and running the {STUDIES[source].name} study")
        analysis = run_case_study(source, data, alpha=alpha)
    else:
        stages("reading and validating the data")
        analysis = run_analysis(_read(data, source, mapping), window_days=window_days,
                                alpha=alpha, progress=stages)
    written = _write_results(analysis, out_dir)
    _summary(analysis, written)


@app.command()
@user_errors
def run(data: DataOption, out_dir: OutOption, window_days: WindowOption = WINDOW_DAYS,
        alpha: AlphaOption = ALPHA, source: SourceOption = "canonical",
        mapping: MappingOption = None) -> None:
    """Everything: results, figures, notebooks, HTML and PDF reports, manifest.

    --source meta-ad-library or dsa-tdb: that source's case study (--window-days ignored).
    """
    from analysis.pipeline import analyze as run_analysis
    from analysis.report import build_report
    from analysis.studies import STUDIES, run_case_study
    from analysis.studies.case import build_case_report

    stages = Stages(err)
    if source in STUDIES:
        if mapping is not None:
            raise UsageError(f"--mapping cannot be combined with --source {source}")
        stages(f"reading the data and running the {STUDIES[source].name} study")
        analysis = run_case_study(source, data, alpha=alpha)
        written = _write_results(analysis, out_dir, manifest=False)
        written += build_case_report(analysis, out_dir, notebooks_dir=NOTEBOOKS_DIR,
                                     progress=stages)
    else:
        stages("reading and validating the data")
        analysis = run_analysis(_read(data, source, mapping), window_days=window_days,
                                alpha=alpha, progress=stages)
        written = _write_results(analysis, out_dir, manifest=False)
        written += build_report(analysis, out_dir, notebooks=NOTEBOOKS,
                                notebooks_dir=NOTEBOOKS_DIR, progress=stages)
    written.append(_write_manifest(analysis, out_dir, written))
    _summary(analysis, written)


@app.command()
@user_errors
def verify(report_dir: Annotated[Path, typer.Argument(help="A run folder with manifest.json.")]
           ) -> None:
    """Rerun a report's analysis from its manifest and confirm every number, byte for byte."""
    from analysis.verify import verify_report

    outcome = verify_report(report_dir, progress=Stages(err))
    for line in outcome.lines:
        out.print(line, highlight=False)
    if not outcome.ok:
        raise typer.Exit(1)


@app.command()
@user_errors
def cells(
    data: DataOption,
    out_dir: Annotated[Path, typer.Option(
        "--out", help="Folder for the cell tables: account_cells.parquet, spend_cells.parquet, "
                      "appeal_cells.parquet, event_cells.parquet and coverage.json.")],
    engine: Annotated[str, typer.Option(help="polars (one machine, streaming) or spark.")]
    = "polars",
    window_days: WindowOption = WINDOW_DAYS,
    check: Annotated[bool, typer.Option(
        "--check/--no-check", help="Check the data contract first (reads every row once more).")]
    = True,
    master: Annotated[str | None, typer.Option(
        help="Spark master with --engine spark (default local[*]; or spark://HOST:7077, yarn; "
             "SPARK_REMOTE=sc://HOST uses Spark Connect).")] = None,
    parts: Annotated[int | None, typer.Option(
        help="polars: aggregate the accounts in this many ranges, one after the other, to bound "
             "memory (default: one per 10 million cases).", min=1)] = None,
) -> None:
    """Attribute every case and write only the cells (the tests' sufficient statistics)."""
    import json

    from analysis.cells import write_cells

    stages = Stages(err)
    if engine == "polars":
        from analysis.attribute import attribute_with_account_codes
        from analysis.cells import CASES_PER_PART, sink_cells
        from analysis.load import load

        stages("reading" + (" and validating" if check else "") + " the data")
        dataset = load(data, check_contract=check)
        stages("attributing spend and listing status to every case")
        cases, ledger, accounts = attribute_with_account_codes(dataset, window_days=window_days)
        parts = parts or max(1, -(-ledger.analysed // CASES_PER_PART))
        stages(f"aggregating {ledger.analysed:,} cases to cells (streaming, "
               f"{parts} part{'s' if parts > 1 else ''})")
        written = sink_cells(cases, out_dir, parts=parts, rows=ledger.analysed,
                             accounts=accounts)
    elif engine == "spark":
        try:
            from analysis.engines.spark import spark_cells
        except ImportError as missing:
            raise UsageError(f"--engine spark needs pyspark ({missing}); install it with "
                             "`make install-spark` or `pip install levelfield[spark]`") from None
        if check:
            from analysis.load import load

            stages("validating the data")
            load(data)
        stages("attributing and aggregating in Spark")
        tables, ledger = spark_cells(data, window_days=window_days, master=master)
        written = write_cells(tables, out_dir)
    else:
        raise UsageError(f"unknown engine {engine!r}; choose polars or spark")
    coverage = out_dir / "coverage.json"
    coverage.write_text(json.dumps({"window_days": window_days, "engine": engine,
                                    "coverage": ledger.to_dict()}, indent=2) + "\n",
                        encoding="utf-8")
    for path in [*written, coverage]:
        out.print(f"  wrote {path}", highlight=False)
    import pyarrow.parquet as pq

    rows = ", ".join(f"{path.name.removesuffix('_cells.parquet')} "
                     f"{pq.ParquetFile(path).metadata.num_rows:,}" for path in written)
    out.print(f"{ledger.analysed:,} of {ledger.enforcement_rows:,} enforcement rows aggregated "
              f"to cells: {rows}", highlight=False)


def _write_results(analysis: Any, out_dir: Path, *, manifest: bool = True) -> list[Path]:
    from analysis.results import write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_json(out_dir / "results.json", analysis.results)]
    if manifest:
        written.append(_write_manifest(analysis, out_dir, written))
    return written


def _write_manifest(analysis: Any, out_dir: Path, written: list[Path]) -> Path:
    from analysis.load import sha256
    from analysis.results import build_manifest, write_json

    base = out_dir.resolve()
    outputs = {str(p.resolve().relative_to(base)): sha256(p) for p in sorted(written)
               if p.is_file()}
    command = ["levelfield", *sys.argv[1:]]
    return write_json(out_dir / "manifest.json",
                      build_manifest(analysis.dataset, parameters=analysis.parameters,
                                     command=command, outputs=outputs))


def _summary(analysis: Any, written: list[Path]) -> None:
    from rich.table import Table

    from analysis.findings import fmt, fmt_p

    ledger = analysis.ledger
    out.print(f"[bold]{ledger.analysed:,}[/] of {ledger.enforcement_rows:,} enforcement rows "
              f"analysed" + "".join(f"; {n:,} excluded: {reason}"
                                    for reason, n in ledger.excluded.items()))
    table = Table("test", "estimate", "95% CI", "adj. p", "n")
    for t in analysis.tests:
        if t.status == "ok":
            table.add_row(t.id, f"{t.scale} {fmt(t.estimate, 3)}",
                          f"{fmt(t.ci_low, 3)} to {fmt(t.ci_high, 3)}", fmt_p(t.p_adjusted),
                          f"{t.n:,}")
        else:
            table.add_row(t.id, "skipped", t.reason or "", "", "")
    out.print(table)
    for path in written:
        out.print(f"  wrote {path}")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
