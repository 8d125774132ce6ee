"""Studies: analyses of particular real sources that the standard battery cannot run on.

The battery asks whether money buys leniency and needs ad spend. Some public sources carry no
spend but still bear on the question; each study here asks what such a source can honestly
answer, with the battery's statistics and the same result types (:class:`~analysis.stats.result.
TestResult`) and results contract.

* :mod:`analysis.studies.dsa_transparency` — EU DSA Transparency Database: are business accounts'
  statements of reasons milder, slower or differently detected than private accounts'?
"""

from analysis.studies.dsa_transparency import results_document, run_study, study_coverage

__all__ = ["results_document", "run_study", "study_coverage"]
