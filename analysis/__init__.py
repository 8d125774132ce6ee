"""levelfield: does money buy leniency?

The package composes five stages that a researcher can also call one by one::

    from analysis import attribute, load
    from analysis.battery import run_battery

    dataset = load.load("data/sample")                # validated canonical tables, lazily read
    cases, ledger = attribute.attribute(dataset)      # spend at flag time, listing status, outcomes
    tests = run_battery(cases.collect())              # the standard tests, as TestResults

or all at once: ``analysis.analyze("data/sample")``. The statistics are in :mod:`analysis.stats`,
one module per design, each returning an :class:`analysis.stats.Estimate`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("levelfield")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["DataError", "__version__", "analyze"]


def __getattr__(name: str):
    # Imported on first use, so that `import analysis` stays cheap (statsmodels loads slowly).
    if name == "analyze":
        from analysis.pipeline import analyze

        return analyze
    if name == "DataError":
        from analysis.schema import DataError

        return DataError
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
