"""levelfield: does money buy leniency?

The package composes five stages that a researcher can also call one by one::

    tables = analysis.load("data/sample")          # canonical tables, as polars LazyFrames
    analysis.validate(tables)                       # raises DataError listing every problem
    cases, ledger = analysis.attribute(tables)      # spend at flag time, listing status, outcomes
    results = analysis.run_battery(cases)           # the standard tests, as TestResults
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("levelfield")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
