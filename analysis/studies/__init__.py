"""Studies: analyses of particular real sources that the standard battery cannot run on.

The battery asks whether money buys leniency and needs ad spend joined to enforcement cases. Some
public sources lack one or the other but still bear on the question; each study here asks what
such a source can honestly answer, with the battery's statistics, the same result type
(:class:`~analysis.stats.result.TestResult`) and the same results contract:

* :mod:`analysis.studies.meta_ad_library` — Meta Ad Library Reports: are Pages that spend more on
  political ads less likely to be caught running them without a disclaimer?
* :mod:`analysis.studies.dsa_transparency` — EU DSA Transparency Database: are business accounts'
  statements of reasons milder, slower or differently detected than private accounts'?

:data:`STUDIES` maps a ``--source`` name to its study; ``levelfield analyze`` and ``levelfield
run`` with that source call :func:`run_case_study` instead of the battery, and ``levelfield
verify`` reruns it. :mod:`analysis.studies.case` builds a study's report and serves its notebook.

Examples
--------
>>> from analysis.config import REFERENCE_DATA_DIR
>>> run = run_case_study("meta-ad-library", REFERENCE_DATA_DIR / "meta_ad_library")
>>> run.ledger.analysed, [t.id for t in run.tests][:2]
(1940, ['spend_caught', 'spend_caught_low'])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.config import ALPHA

if TYPE_CHECKING:
    from analysis.attribute import CoverageLedger
    from analysis.load import Dataset
    from analysis.stats.result import TestResult

__all__ = ["STUDIES", "Study", "StudyRun", "read_study_data", "run_case_study"]


@dataclass(frozen=True)
class Study:
    """A source's case study: how it is read and run, its notebook and its report's title."""

    source: str  #: the ``--source`` name
    name: str  #: the study's module in :mod:`analysis.studies` (and its results' ``study``)
    notebook: str  #: the case-study notebook in ``notebooks/``
    title: str
    subtitle: str
    cases: str  #: what one case of the study is, in the reader's words (plural)
    #: ``read(path) -> data``, ``run(data, alpha) -> tests``, ``document(data, tests, alpha)``
    read: Callable[[Path], Any]
    run: Callable[[Any, float], list[TestResult]]
    document: Callable[[Any, list[TestResult], float], dict[str, Any]]


def _read_meta(path: Path) -> Any:
    # The study reads the reports themselves: it needs no exchange rates (every comparison is
    # within one report), which the canonical tables of several currencies would demand.
    from analysis.sources.meta_ad_library import read_reports

    return read_reports(path)


def _run_meta(reports: Any, alpha: float) -> list[TestResult]:
    from analysis.studies.meta_ad_library import run_study

    return run_study(reports, alpha=alpha)


def _document_meta(reports: Any, tests: list[TestResult], alpha: float) -> dict[str, Any]:
    from analysis.studies.meta_ad_library import results_document

    return results_document(reports, results=tests, alpha=alpha)


def _read_dsa(path: Path) -> Any:
    from analysis.sources.dsa_tdb import read

    return read(path)


def _run_dsa(dataset: Any, alpha: float) -> list[TestResult]:
    from analysis.studies.dsa_transparency import run_study

    return run_study(dataset, alpha=alpha)


def _document_dsa(dataset: Any, tests: list[TestResult], alpha: float) -> dict[str, Any]:
    from analysis.studies.dsa_transparency import results_document

    return results_document(dataset, tests, alpha=alpha)


STUDIES: dict[str, Study] = {
    "meta-ad-library": Study(
        source="meta-ad-library", name="meta_ad_library", notebook="10_case_meta_ad_library",
        title="Political ads without a disclaimer: are big spenders caught less?",
        subtitle="A case study of Meta Ad Library Reports",
        cases="Pages", read=_read_meta, run=_run_meta, document=_document_meta),
    "dsa-tdb": Study(
        source="dsa-tdb", name="dsa_transparency", notebook="11_case_dsa_transparency",
        title="Business and private accounts in the DSA Transparency Database",
        subtitle="A case study of the EU's statements of reasons",
        cases="statements", read=_read_dsa, run=_run_dsa, document=_document_dsa),
}


@dataclass
class StudyRun:
    """A finished case study, shaped like :class:`analysis.pipeline.Analysis` where they meet.

    ``results`` is the results.json document, ``tests`` the results, ``ledger`` the coverage
    ledger of the document, ``dataset`` the inputs (path, source, files) for the manifest,
    ``parameters`` what a rerun needs (the document's parameters), and ``data`` what the study
    read (the object its notebook and figures take).
    """

    study: Study
    data: Any
    tests: list[TestResult]
    results: dict[str, Any]
    dataset: Dataset
    ledger: CoverageLedger
    parameters: dict[str, Any]


def read_study_data(source: str, path: str | Path) -> Any:
    """What the study of ``source`` reads from ``path``: Meta's reports, or the DSA statements.

    Raises
    ------
    KeyError
        When ``source`` has no study (see :data:`STUDIES`).
    analysis.schema.DataError
        When the files are not what the source publishes (file, line, column, value).
    """
    return STUDIES[source].read(Path(path))


def run_case_study(source: str, data: str | Path, *, alpha: float = ALPHA) -> StudyRun:
    """Read ``data`` with the adapter of ``source`` and run that source's study.

    Parameters
    ----------
    source : str
        A key of :data:`STUDIES`: ``"meta-ad-library"`` or ``"dsa-tdb"``.
    data : str or Path
        A file, folder or zip of the source (see the source's reader).
    alpha : float, default 0.05
        Significance level of every test.

    Returns
    -------
    StudyRun
        The tests, the results.json document (built by the study's ``results_document``) and
        what the manifest and the report need.

    Raises
    ------
    KeyError
        When ``source`` has no study.
    analysis.schema.DataError
        When the data are not what the source publishes.
    """
    from analysis.attribute import CoverageLedger
    from analysis.load import Dataset, FileInfo

    study = STUDIES[source]
    read = study.read(Path(data))
    tests = study.run(read, alpha)
    document = study.document(read, tests, alpha)
    recorded = document["data"]
    dataset = Dataset(Path(data), {}, [FileInfo(**f) for f in recorded["files"]],
                      synthetic=bool(document["synthetic"]), source=recorded["source"])
    coverage = document["coverage"]
    ledger = CoverageLedger(enforcement_rows=coverage["enforcement_rows"],
                            analysed=coverage["analysed"], excluded=dict(coverage["excluded"]))
    return StudyRun(study, read, tests, document, dataset, ledger, dict(document["parameters"]))
