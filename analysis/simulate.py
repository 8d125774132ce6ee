"""Synthetic platforms with a planted truth, for checking levelfield end to end.

A simulated world is a set of canonical tables (``accounts``, ``advertisers``, ``ad_spend``,
``enforcement``, ``watchlist``, ``audit_sample``; see the data contract in DESIGN.md) generated
from a model whose effects we choose. Because the truth is known, the battery's estimates can be
checked against it, and a report on the bundled sample world shows what a finding looks like.
Every world is fictional: invented advertisers, invented accounts, no real company or person.

Data-generating model
---------------------
Advertisers and spend
    One advertiser group (``group_parent_name``, e.g. "Orbital Retail Group") owns several
    brands (``group_brands``), each an advertiser of its own. The other advertisers have a
    typical monthly spend drawn from a log-normal distribution (median ``spend_median_usd``,
    log-sd ``sd_spend_log``): a heavy tail of a few big spenders. The group spends
    ``group_spend_multiple`` times the largest of them per month, split evenly over its brands,
    so it is the platform's highest-paying advertiser. Each month an advertiser's spend varies
    around its level (log-sd ``sd_spend_month_log``); a share of advertisers
    (``share_advertisers_skipping``) skips some months (no row: it spent nothing). Spend rows
    are calendar months in USD, from the first of the month at least ``window_days`` before
    ``cases_start`` to the end of the month of ``cases_end``.
Accounts
    The group runs ``group_accounts`` brand accounts (spread over its brands); every other
    advertiser runs one account plus, on average, ``extra_accounts_per_advertiser`` more; all
    remaining accounts buy no ads. Accounts differ in how often they are flagged (log-normal
    activity with log-sd ``sd_activity``; advertisers' accounts ``advertiser_activity`` times
    more often).
Watchlist
    ``n_listed`` accounts (all or some of the group's accounts, or a random draw among all
    advertiser accounts, per ``listed_from``) go on the list ``watchlist_name`` at
    ``directive_date`` and stay on it (``delisted_at`` empty). Before that date they are treated
    like anyone else.
Cases
    Cases fall uniformly in time between ``cases_start`` and ``cases_end``, except a share
    ``share_cases_outside_coverage`` flagged so early (before ``cases_start``) that the trailing
    spend window starts before the first spend period: the analysis must exclude these from the
    spend tests and count them in its coverage ledger. The policy of a case is drawn from
    ``policy_mix_advertisers`` for advertiser accounts and from ``policy_mix_others`` for the
    rest. Severity is uniform on [0, 1] (three decimals), recorded as missing for a share
    ``share_severity_missing`` (the model still uses the true value). Detection channel from
    ``detection_mix``.
Enforcement
    For case *i* of account *a*::

        logit P(enforced) = alpha[policy] + beta_severity * (severity - 0.5) + u_a
                            + log_or_listed * listed_at_flag_time
                            + log_or_spend10 * log10(trailing_spend_usd)   (only when spend > 0)

    ``alpha[policy]`` is the logit of ``policy_rates[policy]`` (the enforcement rate of a
    mid-severity case of a typical account); ``u_a ~ N(0, sd_u)`` is a random effect of the
    account, which makes the cases of one account correlated. ``trailing_spend_usd`` follows
    DESIGN.md exactly: the spend of the account's advertiser on the days ``flag_date - window_days``
    to ``flag_date - 1``, each spend period's amount spread evenly over its days (for the few cases
    whose window starts before the spend table, only the covered days count). The spend term is
    zero at one dollar, so ``log_or_spend10`` is both the dose effect among advertisers and a gap
    between advertisers and accounts without spend.
    The outcome uses one uniform draw per case for two probabilities: the actual one and the *due*
    one (the same model without the listing and spend terms). A case is enforced when the draw falls
    below the actual probability and *due* when it falls below the due probability; the audit uses
    the latter, so cases spared by favouritism look like violations to an independent reviewer.
Action, timing, appeals, audit
    Enforced cases are ``removed`` (share ``share_removed``) or ``restricted``; the rest
    ``no_action``. ``decided_at`` is ``flagged_at`` plus a log-normal delay (median
    ``decision_median_hours``, log-sd ``sd_decision_log``, at most ``max_decision_days``); a share
    ``share_pending`` of all cases, drawn independently of everything else, has no ``decided_at``
    (its decision time is not logged), so the censoring it causes is uninformative and the
    planted hazard ratio of ``decision_speed`` is exactly 1.
    A share ``share_appealed`` of enforced cases is appealed, of which ``share_reversed`` is
    reversed.
    A share ``share_audited`` of all cases is independently re-reviewed: ``violates`` is true with
    probability ``audit_violates_if_due`` for due cases and ``audit_violates_otherwise`` otherwise.
    Delays, pending, appeals and detection carry no planted effect.

``truth.json`` records the scenario, the seed, every parameter, the planted estimands (conditional
and population-averaged odds ratios, the expected directive difference-in-differences) and counts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from scipy.special import expit, logit

__all__ = ["SCENARIOS", "Scenario", "simulate"]

#: Tables of the data contract, in the order they are generated and written.
TABLES = ("accounts", "advertisers", "ad_spend", "enforcement", "watchlist", "audit_sample")

_SECONDS_PER_DAY = 86_400
_EPOCH = dt.date(1970, 1, 1)
_GAUSS_HERMITE_NODES = 40
# Zeger, Liang & Albert (1988), Biometrics 44:1049-1060, eq. for the logistic-normal model:
# population-averaged coefficient ~ conditional coefficient / sqrt(1 + c^2 sd^2).
_ZLA_C = 16 * math.sqrt(3) / (15 * math.pi)

_POLICY_RATES = (
    ("spam", 0.85),
    ("violence", 0.75),
    ("nudity", 0.70),
    ("hate_speech", 0.60),
    ("harassment", 0.50),
    ("copyright", 0.40),
    ("misleading_claims", 0.15),
)
_MIX_ADVERTISERS = (
    ("spam", 0.10),
    ("violence", 0.10),
    ("nudity", 0.10),
    ("hate_speech", 0.10),
    ("harassment", 0.10),
    ("copyright", 0.20),
    ("misleading_claims", 0.30),
)
_MIX_OTHERS = (
    ("spam", 0.30),
    ("violence", 0.10),
    ("nudity", 0.10),
    ("hate_speech", 0.15),
    ("harassment", 0.15),
    ("copyright", 0.10),
    ("misleading_claims", 0.10),
)

_COUNTRIES = ("DE", "FR", "IT", "ES", "NL", "PL", "SE", "IE")
_PAIR_PARAMETERS = ("policy_rates", "policy_mix_advertisers", "policy_mix_others", "detection_mix")

Pairs = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Scenario:
    """All parameters of a synthetic world; the defaults are the ``seed-case`` world.

    Parameters
    ----------
    name : str
        Scenario name, written to ``truth.json``.
    description : str
        One plain sentence on what the world plants.
    n_accounts : int
        Number of accounts (advertiser accounts plus accounts that buy no ads).
    n_advertisers : int
        Number of advertisers, the group's brands included.
    extra_accounts_per_advertiser : float
        Mean number of accounts an ordinary advertiser runs beyond its first.
    n_cases : int
        Number of enforcement cases (flagged items), early ones included.
    cases_start, cases_end : datetime.date
        First and last flag date of the regular cases (inclusive).
    window_days : int
        Length of the trailing spend window before the flag date (DESIGN.md default 90).
    share_cases_outside_coverage : float
        Share of cases flagged so early that their spend window starts before the spend table.
    group_parent_name : str
        ``parent_name`` of the advertiser group whose accounts may be listed.
    group_brands : tuple of str
        The group's brands; each becomes an advertiser (``advertiser_name``).
    group_accounts : int
        Number of accounts the group runs, spread evenly over its brands.
    group_spend_multiple : float
        The group's monthly spend as a multiple of the largest other advertiser's typical spend.
    watchlist_name : str
        ``list_name`` of the watchlist.
    n_listed : int
        Number of listed accounts; 0 means no watchlist table.
    listed_from : {"group", "advertisers"}
        Draw the listed accounts among the group's accounts, or among all advertiser accounts.
    directive_date : datetime.date
        The date the list takes effect (``listed_at``).
    log_or_listed : float
        Planted conditional log odds ratio of enforcement for listed accounts at flag time.
    log_or_spend10 : float
        Planted conditional log odds ratio of enforcement per tenfold trailing spend (spend > 0).
    sd_u : float
        Standard deviation of the account random effect on the logit scale.
    beta_severity : float
        Log odds ratio of enforcement from severity 0 to severity 1.
    policy_rates : tuple of (policy, rate)
        Enforcement probability of a mid-severity case of a typical account, by policy.
    policy_mix_advertisers, policy_mix_others : tuple of (policy, weight)
        How often each policy is flagged for advertiser accounts and for all other accounts.
    advertiser_activity : float
        How many times more often an advertiser account is flagged than another account.
    sd_activity : float
        Log-sd of account activity (how unequally cases spread over accounts).
    spend_median_usd : float
        Median typical monthly spend of the ordinary advertisers, USD.
    sd_spend_log : float
        Log-sd of typical monthly spend across advertisers (the heavy tail).
    sd_spend_month_log : float
        Log-sd of month-to-month variation around an advertiser's typical spend.
    share_advertisers_skipping : float
        Share of ordinary advertisers that skip months.
    max_skip_probability : float
        Those advertisers skip each month with a probability drawn uniformly in [0.05, this].
    share_severity_missing : float
        Share of cases whose severity is not recorded.
    detection_mix : tuple of (channel, weight)
        Detection channels and their shares.
    share_removed : float
        Share of enforced cases that are removed (the rest restricted).
    decision_median_hours, sd_decision_log, max_decision_days : float
        Log-normal delay from flag to decision, capped.
    share_pending : float
        Share of cases, drawn at random, whose decision time is not logged (no ``decided_at``).
    share_appealed : float
        Share of enforced cases that are appealed.
    share_reversed : float
        Share of appealed cases that are reversed.
    share_audited : float
        Share of cases in ``audit_sample``.
    audit_violates_if_due, audit_violates_otherwise : float
        Probability the independent reviewer finds a violation, for cases that were due for
        enforcement (absent any favouritism) and for the others.

    Examples
    --------
    >>> small = dataclasses.replace(SCENARIOS["seed-case"], n_cases=5000)
    >>> small.n_listed
    64
    """

    name: str = "custom"
    description: str = ""
    n_accounts: int = 2500
    n_advertisers: int = 300
    extra_accounts_per_advertiser: float = 0.5
    n_cases: int = 50_000
    cases_start: dt.date = dt.date(2022, 10, 1)
    cases_end: dt.date = dt.date(2023, 12, 31)
    window_days: int = 90
    share_cases_outside_coverage: float = 0.001
    group_parent_name: str = "Orbital Retail Group"
    group_brands: tuple[str, ...] = (
        "Orbital Video",
        "Orbital Music",
        "Orbital Live",
        "Orbital Audiobooks",
    )
    group_accounts: int = 64
    group_spend_multiple: float = 5.0
    watchlist_name: str = "do-not-moderate"
    n_listed: int = 64
    listed_from: Literal["group", "advertisers"] = "group"
    directive_date: dt.date = dt.date(2023, 6, 1)
    log_or_listed: float = math.log(0.35)
    log_or_spend10: float = 0.0
    sd_u: float = 0.3
    beta_severity: float = 1.0
    policy_rates: Pairs = _POLICY_RATES
    policy_mix_advertisers: Pairs = _MIX_ADVERTISERS
    policy_mix_others: Pairs = _MIX_OTHERS
    advertiser_activity: float = 2.0
    sd_activity: float = 1.0
    spend_median_usd: float = 20_000.0
    sd_spend_log: float = 1.5
    sd_spend_month_log: float = 0.3
    share_advertisers_skipping: float = 0.3
    max_skip_probability: float = 0.5
    share_severity_missing: float = 0.05
    detection_mix: Pairs = (("automated", 0.5), ("user_report", 0.4), ("trusted_flagger", 0.1))
    share_removed: float = 0.7
    decision_median_hours: float = 18.0
    sd_decision_log: float = 1.2
    max_decision_days: float = 30.0
    share_pending: float = 0.02
    share_appealed: float = 0.10
    share_reversed: float = 0.20
    share_audited: float = 0.01
    audit_violates_if_due: float = 0.92
    audit_violates_otherwise: float = 0.12

    def __post_init__(self) -> None:
        # Accept dicts for the (name, value) parameters; store tuples so the scenario stays frozen.
        for name in _PAIR_PARAMETERS:
            value = getattr(self, name)
            pairs = tuple(value.items()) if isinstance(value, Mapping) else tuple(value)
            object.__setattr__(self, name, tuple((str(k), float(v)) for k, v in pairs))
        object.__setattr__(self, "group_brands", tuple(self.group_brands))
        problems = self._problems()
        if problems:
            raise ValueError(f"invalid scenario {self.name!r}: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        problems = []
        policies = {p for p, _ in self.policy_rates}
        for name in ("policy_mix_advertisers", "policy_mix_others"):
            mix = getattr(self, name)
            unknown = sorted({p for p, _ in mix} - policies)
            if unknown:
                problems.append(f"{name} names policies without a rate: {unknown}")
            if any(w < 0 for _, w in mix) or sum(w for _, w in mix) <= 0:
                problems.append(f"{name} needs non-negative weights with a positive sum")
        if any(not 0 < r < 1 for _, r in self.policy_rates):
            problems.append("policy_rates must lie strictly between 0 and 1")
        shares = [
            f.name for f in dataclasses.fields(self) if f.name.startswith(("share_", "audit_"))
        ]
        problems += [f"{s} must lie in [0, 1]" for s in shares if not 0 <= getattr(self, s) <= 1]
        if not self.group_brands:
            problems.append("group_brands must name at least one brand")
        if self.group_accounts < len(self.group_brands):
            problems.append("group_accounts must give every brand at least one account")
        if self.n_advertisers <= len(self.group_brands):
            problems.append("n_advertisers must exceed the number of group brands")
        if self.n_accounts <= self._n_advertiser_accounts():
            problems.append(
                f"n_accounts ({self.n_accounts}) must exceed the advertiser accounts "
                f"({self._n_advertiser_accounts()})"
            )
        pool = self.group_accounts if self.listed_from == "group" else self._n_advertiser_accounts()
        if self.listed_from not in ("group", "advertisers"):
            problems.append("listed_from must be 'group' or 'advertisers'")
        elif not 0 <= self.n_listed <= pool:
            problems.append(
                f"n_listed must lie in [0, {pool}] for listed_from={self.listed_from!r}"
            )
        if self.cases_end < self.cases_start:
            problems.append("cases_end must not precede cases_start")
        if self.n_listed and not self.cases_start < self.directive_date <= self.cases_end:
            problems.append("directive_date must fall after cases_start and by cases_end")
        if self.window_days < 1 or self.n_cases < 1:
            problems.append("window_days and n_cases must be positive")
        return problems

    def _n_advertiser_accounts(self) -> int:
        n_ordinary = self.n_advertisers - len(self.group_brands)
        n_extra = round(self.extra_accounts_per_advertiser * n_ordinary)
        return self.group_accounts + n_ordinary + n_extra


SCENARIOS: dict[str, Scenario] = {
    "seed-case": Scenario(
        name="seed-case",
        description=(
            "The highest-paying advertiser group's 64 brand accounts are put on a do-not-moderate "
            "list on 2023-06-01; from then on their flagged cases are enforced less "
            "(conditional OR 0.35). Spend itself has no effect."
        ),
    ),
    "null-confounded": Scenario(
        name="null-confounded",
        description=(
            "No preferential treatment at all, but advertisers (listed accounts among them) are "
            "flagged mostly under a rarely enforced policy and everyone else under a usually "
            "enforced one, so crude comparisons show a large false effect."
        ),
        listed_from="advertisers",
        log_or_listed=0.0,
        log_or_spend10=0.0,
        policy_mix_advertisers=(
            ("spam", 0.08),
            ("violence", 0.03),
            ("nudity", 0.03),
            ("hate_speech", 0.03),
            ("harassment", 0.05),
            ("copyright", 0.08),
            ("misleading_claims", 0.70),
        ),
        policy_mix_others=(
            ("spam", 0.70),
            ("violence", 0.03),
            ("nudity", 0.05),
            ("hate_speech", 0.05),
            ("harassment", 0.06),
            ("copyright", 0.03),
            ("misleading_claims", 0.08),
        ),
    ),
    "spend-dose": Scenario(
        name="spend-dose",
        description=(
            "Enforcement falls with an advertiser's trailing spend: conditional OR 0.7 per tenfold "
            "spend, policy and severity held fixed. No watchlist."
        ),
        n_listed=0,
        log_or_listed=0.0,
        log_or_spend10=math.log(0.7),
    ),
}


def simulate(
    scenario: str | Scenario = "seed-case",
    *,
    seed: int,
    out: Path | str | None = None,
    **overrides: Any,
) -> dict[str, pl.DataFrame]:
    """Generate a synthetic platform with a planted truth.

    Parameters
    ----------
    scenario : str or Scenario
        A name from :data:`SCENARIOS` (``"seed-case"``, ``"null-confounded"``, ``"spend-dose"``)
        or a :class:`Scenario`.
    seed : int
        Seed of the random generator. Required: the same seed gives the same world, byte for byte.
    out : path, optional
        Folder to write ``<table>.csv.gz`` and ``truth.json`` to. It is created; an existing
        non-empty folder is refused.
    **overrides
        Scenario parameters to change, e.g. ``n_cases=20000``.

    Returns
    -------
    dict of str to polars.DataFrame
        The canonical tables, keyed by table name. ``watchlist`` is absent when no account is
        listed and ``audit_sample`` when nothing is audited. Timestamps are UTC datetimes and
        dates are dates; the files hold them as ISO 8601 text (``2023-06-01T08:15:00Z``).

    Raises
    ------
    ValueError
        Unknown scenario name, invalid parameters, a negative seed, or ``out`` is a non-empty
        folder (nothing is overwritten).
    TypeError
        ``seed`` is not an integer, or an override names no scenario parameter.

    Notes
    -----
    The model is described in the module docstring. In short: each flagged case is enforced with
    a probability set by its policy and severity, a random effect of its account (cases of one
    account are alike), and the planted effects of being listed at flag time and of the
    advertiser's trailing spend. ``truth.json`` states the values a correct analysis should find.

    Examples
    --------
    >>> tables = simulate("seed-case", seed=1, n_cases=2000, n_accounts=800, n_advertisers=100)
    >>> tables["enforcement"].height
    2000
    >>> tables["watchlist"]["list_name"].unique().to_list()
    ['do-not-moderate']
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    base = _resolve(scenario)
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(Scenario)})
    if unknown:
        raise TypeError(f"unknown scenario parameters: {', '.join(unknown)}")
    if seed < 0:
        raise ValueError(f"seed must be zero or positive, got {seed}")
    chosen = dataclasses.replace(base, **overrides) if overrides else base
    if out is not None:
        _check_folder(Path(out))  # before the work, so a bad --out fails at once
    tables, truth = _simulate_world(chosen, int(seed))
    if out is not None:
        _write(Path(out), tables, truth)
    return tables


def _resolve(scenario: str | Scenario) -> Scenario:
    if isinstance(scenario, Scenario):
        return scenario
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    return SCENARIOS[scenario]


def _check_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} exists and is not a folder; choose another output folder.")
    if folder.is_dir() and any(folder.iterdir()):
        raise ValueError(
            f"{folder} is not empty; refusing to overwrite it. Remove it or choose another folder."
        )


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def _simulate_world(sc: Scenario, seed: int) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
    # One independent stream per stage, so changing e.g. the audit share leaves the cases alone.
    stages = ("spend", "accounts", "cases", "outcomes", "audit")
    rng = dict(zip(stages, np.random.default_rng(seed).spawn(len(stages)), strict=True))

    spend = _spend(sc, rng["spend"])
    accounts = _accounts(sc, rng["accounts"])
    cases = _cases(sc, rng["cases"], accounts, spend)
    outcomes = _outcomes(sc, rng["outcomes"], cases, accounts["u"])
    audit = _audit(sc, rng["audit"], outcomes)

    tables = {
        "accounts": _accounts_table(sc, accounts, spend),
        "advertisers": _advertisers_table(sc, spend),
        "ad_spend": _ad_spend_table(spend),
        "enforcement": _enforcement_table(accounts, cases, outcomes),
    }
    if sc.n_listed:
        tables["watchlist"] = _watchlist_table(sc, accounts)
    if audit["index"].size:
        tables["audit_sample"] = pl.DataFrame(
            {"case_id": _ids("case", audit["index"] + 1, 7), "violates": audit["violates"]}
        )
    truth = _truth(sc, seed, spend, accounts, cases, outcomes, tables)
    return tables, truth


def _day(d: dt.date) -> int:
    return (d - _EPOCH).days


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    """IDs like ``acc_00042``; the width grows when a large world needs more digits."""
    if numbers.size:
        width = max(width, len(str(int(numbers.max()))))
    digits = pl.Series(numbers.astype(np.int64)).cast(pl.String).str.zfill(width)
    return pl.select(pl.concat_str([pl.lit(f"{prefix}_"), pl.lit(digits)])).to_series()


def _month_starts(first: dt.date, last: dt.date) -> list[dt.date]:
    months, current = [], first.replace(day=1)
    while current <= last:
        months.append(current)
        current = (current + dt.timedelta(days=32)).replace(day=1)
    return months


# Invented syllables and sectors give fictional advertiser names such as "Velmora Foods".
_SYLLABLES = (
    "ba", "ve", "lo", "ri", "ta", "mon", "qui", "zel", "dor", "fen",
    "ka", "mi", "sor", "tul", "vin", "ash", "bri", "cal", "dax", "nel",
)  # fmt: skip
_SECTORS = (
    "Foods", "Apparel", "Games", "Travel", "Home", "Outdoor", "Beauty", "Finance",
    "Motors", "Pets", "Tools", "Media", "Health", "Garden", "Sports", "Kitchen",
)  # fmt: skip


def _fictional_name(k: int) -> str:
    n = len(_SYLLABLES)
    # A fixed odd multiplier scatters consecutive numbers over the name space.
    code = (k * 2_654_435_761) % n**3
    word = "".join(_SYLLABLES[(code // n**i) % n] for i in range(3))
    return f"{word.capitalize()} {_SECTORS[k % len(_SECTORS)]}"


def _spend(sc: Scenario, rng: np.random.Generator) -> dict[str, Any]:
    """Advertisers and their monthly spend; the group's brands come first (index 0..B-1)."""
    n_brands = len(sc.group_brands)
    n_ordinary = sc.n_advertisers - n_brands
    ordinary_level = sc.spend_median_usd * np.exp(rng.normal(0.0, sc.sd_spend_log, n_ordinary))
    brand_level = np.full(n_brands, sc.group_spend_multiple * ordinary_level.max() / n_brands)
    level = np.concatenate([brand_level, ordinary_level])

    months = _month_starts(sc.cases_start - dt.timedelta(days=sc.window_days), sc.cases_end)
    month_end = [(m + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1) for m in months]
    month_len = np.array([(e - s).days + 1 for s, e in zip(months, month_end, strict=True)])

    skips = rng.random(n_ordinary) < sc.share_advertisers_skipping
    skip_p = np.where(skips, rng.uniform(0.05, max(sc.max_skip_probability, 0.05), n_ordinary), 0.0)
    # The group never skips, which also pins the spend coverage to the first and last month.
    skip_p = np.concatenate([np.zeros(n_brands), skip_p])
    present = rng.random((sc.n_advertisers, len(months))) >= skip_p[:, None]
    noise = np.exp(rng.normal(0.0, sc.sd_spend_month_log, (sc.n_advertisers, len(months))))
    amount = np.round(level[:, None] * noise, 2)

    # Daily spend from the rounded amounts as written, so trailing spend matches the files exactly.
    daily = np.repeat(np.where(present, amount, 0.0) / month_len[None, :], month_len, axis=1)
    cumulative = np.concatenate([np.zeros((sc.n_advertisers, 1)), np.cumsum(daily, axis=1)], axis=1)
    return {
        "number": rng.permutation(sc.n_advertisers) + 1,
        "months": months,
        "month_end": month_end,
        "present": present,
        "amount": amount,
        "cumulative": cumulative,
        "first_day": _day(months[0]),
        "last_day": _day(month_end[-1]),
    }


def _accounts(sc: Scenario, rng: np.random.Generator) -> dict[str, Any]:
    """Accounts: the group's first, then ordinary advertisers' accounts, then everyone else."""
    n_brands = len(sc.group_brands)
    n_ordinary = sc.n_advertisers - n_brands
    group_adv = np.arange(sc.group_accounts) % n_brands
    n_extra = round(sc.extra_accounts_per_advertiser * n_ordinary)
    extra = rng.multinomial(n_extra, np.full(n_ordinary, 1 / n_ordinary))
    ordinary_adv = np.repeat(np.arange(n_ordinary), 1 + extra) + n_brands
    n_no_ads = sc.n_accounts - sc.group_accounts - ordinary_adv.size
    advertiser = np.concatenate([group_adv, ordinary_adv, np.full(n_no_ads, -1)])
    has_advertiser = advertiser >= 0

    pool = np.arange(sc.group_accounts if sc.listed_from == "group" else int(has_advertiser.sum()))
    listed = np.zeros(sc.n_accounts, dtype=bool)
    listed[rng.choice(pool, size=sc.n_listed, replace=False)] = True

    activity = np.exp(rng.normal(0.0, sc.sd_activity, sc.n_accounts))
    activity *= np.where(has_advertiser, sc.advertiser_activity, 1.0)
    followers = np.exp(rng.normal(7.0, 2.0, sc.n_accounts)) * np.where(has_advertiser, 20, 1)
    return {
        "number": rng.permutation(sc.n_accounts) + 1,
        "advertiser": advertiser,
        "has_advertiser": has_advertiser,
        "listed": listed,
        "activity": activity / activity.sum(),
        "u": rng.normal(0.0, sc.sd_u, sc.n_accounts),
        "followers": np.round(followers).astype(np.int64),
        "country": rng.choice(np.array(_COUNTRIES), sc.n_accounts),
    }


def _mix(pairs: Pairs, names: list[str]) -> np.ndarray:
    weights = dict(pairs)
    w = np.array([weights.get(name, 0.0) for name in names])
    return w / w.sum()


def _cases(
    sc: Scenario, rng: np.random.Generator, acc: dict[str, Any], spend: dict[str, Any]
) -> dict[str, Any]:
    n = sc.n_cases
    n_early = min(round(sc.share_cases_outside_coverage * n), n)
    account = rng.choice(sc.n_accounts, size=n, p=acc["activity"])
    span = (_day(sc.cases_end) - _day(sc.cases_start) + 1) * _SECONDS_PER_DAY
    regular = _day(sc.cases_start) * _SECONDS_PER_DAY + rng.integers(0, span, n - n_early)
    # Early cases: flag dates whose window [flag - window_days, flag - 1] starts before the spend
    # table, so the analysis has to exclude them from the spend tests.
    early_span = sc.window_days * _SECONDS_PER_DAY
    early = spend["first_day"] * _SECONDS_PER_DAY + rng.integers(0, early_span, n_early)
    flagged = np.concatenate([early, regular])
    order = np.lexsort((account, flagged))
    account, flagged = account[order], flagged[order]
    flag_day = flagged // _SECONDS_PER_DAY

    policies = [p for p, _ in sc.policy_rates]
    is_adv = acc["has_advertiser"][account]
    policy = np.empty(n, dtype=np.int64)
    for mask, mix in ((is_adv, sc.policy_mix_advertisers), (~is_adv, sc.policy_mix_others)):
        policy[mask] = rng.choice(len(policies), size=int(mask.sum()), p=_mix(mix, policies))
    severity = np.round(rng.random(n), 3)
    severity_missing = rng.random(n) < sc.share_severity_missing
    channels = [c for c, _ in sc.detection_mix]
    detection = rng.choice(len(channels), size=n, p=_mix(sc.detection_mix, channels))

    advertiser = acc["advertiser"][account]
    has = advertiser >= 0
    n_days = spend["cumulative"].shape[1] - 1
    hi = np.clip(flag_day - spend["first_day"], 0, n_days)
    lo = np.clip(flag_day - spend["first_day"] - sc.window_days, 0, n_days)
    trailing = np.zeros(n)
    cumulative = spend["cumulative"]
    trailing[has] = cumulative[advertiser[has], hi[has]] - cumulative[advertiser[has], lo[has]]
    outside = (flag_day - sc.window_days < spend["first_day"]) | (flag_day - 1 > spend["last_day"])
    listed_now = acc["listed"][account] & (flag_day >= _day(sc.directive_date))
    return {
        "account": account,
        "flagged": flagged,
        "flag_day": flag_day,
        "policy": policy,
        "policies": policies,
        "severity": severity,
        "severity_missing": severity_missing,
        "detection": detection,
        "channels": channels,
        "trailing": trailing,
        "outside": outside,
        "listed_now": listed_now,
        "is_adv_account": is_adv,
    }


def _linear_predictor(sc: Scenario, cases: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The due part (policy, severity) and the favouritism part (listing, spend), without u."""
    alpha = logit(np.array([r for _, r in sc.policy_rates]))
    due = alpha[cases["policy"]] + sc.beta_severity * (cases["severity"] - 0.5)
    spent = cases["trailing"] > 0
    log10_spend = np.log10(np.where(spent, cases["trailing"], 1.0))
    spend_term = np.where(spent, sc.log_or_spend10 * log10_spend, 0.0)
    favour = sc.log_or_listed * cases["listed_now"] + spend_term
    return due, favour


def _outcomes(
    sc: Scenario, rng: np.random.Generator, cases: dict[str, Any], u: np.ndarray
) -> dict[str, Any]:
    n = cases["account"].size
    due_eta, favour = _linear_predictor(sc, cases)
    due_eta = due_eta + u[cases["account"]]
    p = expit(due_eta + favour)
    p_due = expit(due_eta)
    draw = rng.random(n)
    enforced = draw < p
    removed = enforced & (rng.random(n) < sc.share_removed)
    hours = np.minimum(
        np.exp(math.log(sc.decision_median_hours) + sc.sd_decision_log * rng.normal(size=n)),
        sc.max_decision_days * 24,
    )
    decided = cases["flagged"] + np.round(hours * 3600).astype(np.int64)
    pending = rng.random(n) < sc.share_pending
    appealed = enforced & (rng.random(n) < sc.share_appealed)
    reversed_ = appealed & (rng.random(n) < sc.share_reversed)
    return {
        "p": p,
        "p_due": p_due,
        "p_without_listing": expit(due_eta + favour - sc.log_or_listed * cases["listed_now"]),
        "enforced": enforced,
        "due": draw < p_due,
        "removed": removed,
        "decided": decided,
        "pending": pending,
        "appealed": appealed,
        "reversed": reversed_,
    }


def _audit(
    sc: Scenario, rng: np.random.Generator, outcomes: dict[str, Any]
) -> dict[str, np.ndarray]:
    n = outcomes["enforced"].size
    index = np.sort(rng.choice(n, size=round(sc.share_audited * n), replace=False))
    q = np.where(outcomes["due"][index], sc.audit_violates_if_due, sc.audit_violates_otherwise)
    return {"index": index, "violates": rng.random(index.size) < q}


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _advertiser_ids(spend: dict[str, Any]) -> pl.Series:
    return _ids("adv", spend["number"], 4)


def _account_ids(acc: dict[str, Any]) -> pl.Series:
    return _ids("acc", acc["number"], 5)


def _advertiser_names(sc: Scenario) -> list[str]:
    n_ordinary = sc.n_advertisers - len(sc.group_brands)
    return list(sc.group_brands) + [_fictional_name(k) for k in range(n_ordinary)]


def _advertisers_table(sc: Scenario, spend: dict[str, Any]) -> pl.DataFrame:
    n_brands = len(sc.group_brands)
    parent = [sc.group_parent_name] * n_brands + [None] * (sc.n_advertisers - n_brands)
    return pl.DataFrame(
        {
            "advertiser_id": _advertiser_ids(spend),
            "advertiser_name": _advertiser_names(sc),
            "parent_name": pl.Series(parent, dtype=pl.String),
        }
    ).sort("advertiser_id")


def _ad_spend_table(spend: dict[str, Any]) -> pl.DataFrame:
    adv, month = np.nonzero(spend["present"])
    return pl.DataFrame(
        {
            "advertiser_id": _advertiser_ids(spend).gather(adv),
            "period_start": pl.Series([spend["months"][m] for m in month], dtype=pl.Date),
            "period_end": pl.Series([spend["month_end"][m] for m in month], dtype=pl.Date),
            "spend": spend["amount"][adv, month],
            "currency": "USD",
        }
    ).sort("advertiser_id", "period_start")


def _accounts_table(sc: Scenario, acc: dict[str, Any], spend: dict[str, Any]) -> pl.DataFrame:
    advertiser = acc["advertiser"]
    has = acc["has_advertiser"]
    names = np.array(_advertiser_names(sc), dtype=object)
    # Number the accounts of each advertiser (1, 2, ...) to give them distinct display names.
    order = np.argsort(advertiser, kind="stable")
    rank = np.empty_like(advertiser)
    sorted_adv = advertiser[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_adv)) + 1]
    group_sizes = np.diff(np.r_[starts, advertiser.size])
    rank[order] = np.arange(advertiser.size) - np.repeat(starts, group_sizes)
    display = [
        f"{names[a]} {r + 1:02d}" if a >= 0 else f"member {num:05d}"
        for a, r, num in zip(
            advertiser.tolist(), rank.tolist(), acc["number"].tolist(), strict=True
        )
    ]
    advertiser_id = _advertiser_ids(spend).gather(np.where(has, advertiser, 0)).zip_with(
        pl.Series(has), pl.Series([None], dtype=pl.String)
    )
    return pl.DataFrame(
        {
            "account_id": _account_ids(acc),
            "advertiser_id": advertiser_id,
            "account_name": display,
            "account_type": np.where(has, "business", "personal"),
            "country": acc["country"],
            "followers": acc["followers"],
        }
    ).sort("account_id")


def _timestamps(seconds: np.ndarray) -> pl.Series:
    naive = pl.from_epoch(pl.Series(seconds, dtype=pl.Int64), time_unit="s")
    return naive.dt.replace_time_zone("UTC")


def _enforcement_table(
    acc: dict[str, Any], cases: dict[str, Any], out: dict[str, Any]
) -> pl.DataFrame:
    n = cases["account"].size
    restricted_or_none = np.where(out["enforced"], "restricted", "no_action")
    action = np.where(out["removed"], "removed", restricted_or_none)
    outcome = np.where(out["reversed"], "reversed", "upheld")
    return pl.DataFrame(
        {
            "case_id": _ids("case", np.arange(1, n + 1), 7),
            "account_id": _account_ids(acc).gather(cases["account"]),
            "flagged_at": _timestamps(cases["flagged"]),
            "policy": np.array(cases["policies"])[cases["policy"]],
            "severity": np.where(cases["severity_missing"], np.nan, cases["severity"]),
            "detection": np.array(cases["channels"])[cases["detection"]],
            "action": action,
            "decided_at": _timestamps(out["decided"]),
            "appealed": out["appealed"],
            "appeal_outcome": outcome,
        }
    ).with_columns(
        pl.col("severity").fill_nan(None),
        pl.when(~pl.Series(out["pending"])).then(pl.col("decided_at")).alias("decided_at"),
        pl.when(pl.col("appealed")).then(pl.col("appeal_outcome")).alias("appeal_outcome"),
    )


def _watchlist_table(sc: Scenario, acc: dict[str, Any]) -> pl.DataFrame:
    listed = np.flatnonzero(acc["listed"])
    return pl.DataFrame(
        {
            "account_id": _account_ids(acc).gather(listed),
            "list_name": sc.watchlist_name,
            "listed_at": sc.directive_date,
            "delisted_at": pl.Series([None] * listed.size, dtype=pl.Date),
        }
    ).sort("account_id")


# --------------------------------------------------------------------------------------------
# Truth
# --------------------------------------------------------------------------------------------


def _severity_band(cases: dict[str, Any]) -> np.ndarray:
    """Band codes as the analysis sees them: 0 low, 1 medium, 2 high, 3 unknown (not recorded)."""
    sev = cases["severity"]
    band = np.where(sev < 1 / 3, 0, np.where(sev < 2 / 3, 1, 2))
    return np.where(cases["severity_missing"], 3, band)


def _expected_mh_or(
    sc: Scenario,
    cases: dict[str, Any],
    mask: np.ndarray,
    eta_without: np.ndarray,
    effect: np.ndarray,
) -> float | None:
    """Expected Mantel-Haenszel OR of the cases in ``mask`` against their own counterfactual.

    Probabilities are integrated over the account random effect (Gauss-Hermite), averaged within
    strata of policy x severity band, and combined with MH weights.
    """
    if not mask.any():
        return None
    nodes, weights = np.polynomial.hermite.hermgauss(_GAUSS_HERMITE_NODES)
    shift = math.sqrt(2.0) * sc.sd_u * nodes
    w = weights / math.sqrt(math.pi)
    base = eta_without[mask][:, None] + shift[None, :]
    p0 = expit(base) @ w
    p1 = expit(base + effect[mask][:, None]) @ w
    key = cases["policy"][mask] * 4 + _severity_band(cases)[mask]
    _, stratum = np.unique(key, return_inverse=True)
    n_k = np.bincount(stratum).astype(float)
    p1_k = np.bincount(stratum, weights=p1) / n_k
    p0_k = np.bincount(stratum, weights=p0) / n_k
    return float(np.sum(n_k * p1_k * (1 - p0_k)) / np.sum(n_k * (1 - p1_k) * p0_k))


def _estimands(sc: Scenario, cases: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    due_eta, favour = _linear_predictor(sc, cases)
    listed_now = cases["listed_now"]
    listing_effect = sc.log_or_listed * listed_now.astype(float)
    quadrature = (
        f"Gauss-Hermite quadrature ({_GAUSS_HERMITE_NODES} nodes) over the account random effect "
        f"u ~ N(0, {sc.sd_u})"
    )
    estimands: dict[str, Any] = {}
    if sc.n_listed:
        without_listing = due_eta + favour - listing_effect
        marginal = _expected_mh_or(sc, cases, listed_now, without_listing, listing_effect)
        listed = {
            "conditional_or": round(math.exp(sc.log_or_listed), 12),
            "marginal_or": marginal,
            "how": (
                "conditional_or is the planted odds ratio for a listed account at flag time, "
                "given policy, severity and the account's random effect. marginal_or is the "
                "expected Mantel-Haenszel OR within strata of policy x severity band (unknown "
                "when severity is not recorded): for every case of a listed account after the "
                "directive, the enforcement probability with and without the listing effect is "
                f"integrated over u by {quadrature}; these are averaged within each stratum and "
                "combined with MH weights, taking the comparison cases of a stratum to have the "
                "listed cases' own probability without listing."
            ),
        }
        estimands["listed_adjusted"] = listed
        estimands["equal_treatment"] = {**listed, "how": "as listed_adjusted (TOST on that OR)"}
        did = out["p"][listed_now] - out["p_without_listing"][listed_now]
        estimands["directive_did"] = {
            "difference": float(did.mean()) if did.size else None,
            "how": (
                "mean over the cases of listed accounts after the directive of the latent "
                "enforcement probability with the listing effect minus without it, each with the "
                "case's own policy, severity, spend and account random effect; the model has no "
                "time trend, so this is what a difference-in-differences in enforcement "
                "probability estimates."
            ),
        }
    else:
        reason = "no watchlist in this scenario"
        for test in ("listed_adjusted", "equal_treatment", "directive_did"):
            estimands[test] = {"skipped": reason}

    spender = (cases["trailing"] > 0) & ~cases["outside"]
    attenuation = 1 / math.sqrt(1 + _ZLA_C**2 * sc.sd_u**2)
    estimands["spend_adjusted"] = {
        "conditional_or_per_10x": round(math.exp(sc.log_or_spend10), 12),
        "marginal_or_per_10x_approx": math.exp(sc.log_or_spend10 * attenuation),
        "how": (
            "conditional_or_per_10x is the planted odds ratio per tenfold trailing spend among "
            "cases with spend, given policy, severity, listing and the account's random effect. "
            "marginal_or_per_10x_approx is its population-averaged counterpart by the "
            "approximation of Zeger, Liang & Albert (1988): log OR / sqrt(1 + c^2 sd_u^2), "
            "c = 16 sqrt(3) / (15 pi)."
        ),
    }
    estimands["advertiser_adjusted"] = {
        "marginal_or": _expected_mh_or(sc, cases, spender, due_eta, favour),
        "how": (
            "expected Mantel-Haenszel OR within policy x severity band of cases with trailing "
            "spend (inside the spend coverage) against their own probability without listing and "
            f"spend effects, integrated over u by {quadrature}. It is 1 when nothing is planted "
            "and mixes the listing and spend effects otherwise."
        ),
    }
    estimands["decision_speed"] = {
        "hazard_ratio": 1.0,
        "how": "no planted effect on decision delay; cases without a logged decision time are drawn at random, so their censoring is uninformative",
    }
    estimands["appeal_reversal"] = {
        "odds_ratio": 1.0,
        "how": "no planted effect on appeal outcomes",
    }
    return estimands


def _parameters(sc: Scenario) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for f in dataclasses.fields(sc):
        value = getattr(sc, f.name)
        if isinstance(value, dt.date):
            value = value.isoformat()
        elif f.name in _PAIR_PARAMETERS:
            value = dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        params[f.name] = value
    return params


def _rate(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _truth(
    sc: Scenario,
    seed: int,
    spend: dict[str, Any],
    acc: dict[str, Any],
    cases: dict[str, Any],
    out: dict[str, Any],
    tables: dict[str, pl.DataFrame],
) -> dict[str, Any]:
    covered = ~cases["outside"]
    enforced = out["enforced"]
    ever_listed = acc["listed"][cases["account"]]
    after = cases["flag_day"] >= _day(sc.directive_date)
    adv = cases["is_adv_account"]
    return {
        "scenario": sc.name,
        "description": sc.description,
        "seed": seed,
        "synthetic": True,
        "parameters": _parameters(sc),
        "model": (
            "logit P(enforced) = alpha[policy] + beta_severity * (severity - 0.5) + u_account "
            "+ log_or_listed * listed_at_flag_time + log_or_spend10 * log10(trailing_spend_usd) "
            "[spend > 0]; u_account ~ N(0, sd_u); alpha[policy] = logit(policy_rates[policy])"
        ),
        "estimands": _estimands(sc, cases, out),
        "counts": {
            "accounts": sc.n_accounts,
            "advertisers": sc.n_advertisers,
            "advertiser_accounts": int(acc["has_advertiser"].sum()),
            "ad_spend_rows": tables["ad_spend"].height,
            "cases": int(enforced.size),
            "cases_enforced": int(enforced.sum()),
            "cases_pending": int(out["pending"].sum()),
            "cases_appealed": int(out["appealed"].sum()),
            "listed_accounts": int(acc["listed"].sum()),
            "cases_listed_at_flag_time": int(cases["listed_now"].sum()),
            "cases_spend_window_outside_coverage": int(cases["outside"].sum()),
            "audit_sample": tables["audit_sample"].height if "audit_sample" in tables else 0,
        },
        "observed": {
            "enforcement_rate": _rate(enforced),
            "enforcement_rate_advertiser_accounts": _rate(enforced[adv]),
            "enforcement_rate_other_accounts": _rate(enforced[~adv]),
            "enforcement_rate_listed_before_directive": _rate(enforced[ever_listed & ~after]),
            "enforcement_rate_listed_after_directive": _rate(enforced[ever_listed & after]),
        },
        "checks": {
            "spend_coverage": [
                spend["months"][0].isoformat(),
                spend["month_end"][-1].isoformat(),
            ],
            "window_days": sc.window_days,
            "trailing_spend_sum_usd_covered_cases": round(
                float(cases["trailing"][covered].sum()), 2
            ),
            "cases_with_trailing_spend_covered": int(((cases["trailing"] > 0) & covered).sum()),
        },
    }


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _write(folder: Path, tables: dict[str, pl.DataFrame], truth: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        if name not in tables:
            continue
        frame = tables[name].with_columns(
            pl.col(pl.Datetime).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        # mtime=0 and no file name in the gzip header: the same world gives the same bytes.
        with (folder / f"{name}.csv.gz").open("wb") as raw, gzip.GzipFile(
            fileobj=raw, mode="wb", filename="", mtime=0
        ) as compressed:
            frame.write_csv(compressed)
    text = json.dumps(truth, sort_keys=True, indent=2, allow_nan=False, ensure_ascii=False)
    (folder / "truth.json").write_text(text + "\n", encoding="utf-8")
