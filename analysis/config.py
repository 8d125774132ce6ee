"""Paths and defaults, in one place."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJECT_ROOT / "data"
SAMPLE_DATA_DIR = DATA_DIR / "sample"
REFERENCE_DATA_DIR = DATA_DIR / "reference"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
REPORTS_DIR = PROJECT_ROOT / "reports"

#: Days of ad spend before a flag that count as the advertiser's "trailing spend".
WINDOW_DAYS = 90
#: Significance level of every test; confidence intervals are 1 - ALPHA.
ALPHA = 0.05
#: Power at which the minimum detectable effect is stated.
POWER = 0.80
#: Severity bands: [0, 1/3) low, [1/3, 2/3) medium, [2/3, 1] high; missing severity is its own band.
SEVERITY_BANDS = ((1 / 3, "low"), (2 / 3, "medium"), (float("inf"), "high"))
#: Number of spend tiers among advertisers (quantiles of trailing spend); tier 0 is "no ad spend".
SPEND_TIERS = 4
#: Seed of every randomised procedure (randomization inference, bootstrap), so reruns match.
SEED = 20230601

#: The notebooks that `levelfield run` executes, in order.
NOTEBOOKS = ("00_findings", "01_data_audit", "02_spend_and_enforcement", "03_preferential_treatment",
             "04_speed_and_appeals", "05_directive", "06_robustness")
#: Equivalence margin on the odds-ratio scale: equal treatment is shown when the 90% CI of the
#: adjusted odds ratio lies within 1/1.25 = 0.8 and 1.25 (the conventional 80-125% bounds).
EQUIVALENCE_MARGIN = 1.25
EQUIVALENCE_RATIONALE = (
    "the conventional 80-125% equivalence bounds: an odds ratio of 0.8 is a 20% cut in the odds "
    "of enforcement, about the smallest difference a newsroom would call preferential treatment")
#: Permutations of the randomization inference for the listed-account tests.
PERMUTATIONS = 999
#: Spend-tier scores of the trend test (tier 0 = no spend, then quartiles), fixed in advance.
TIER_SCORES = "tier index 0, 1, 2, 3, 4 (equally spaced)"
