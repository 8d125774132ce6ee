"""Attribution: what each enforcement case looked like at the moment it was flagged.

For every case this stage adds the trailing ad spend of the advertiser behind its account, its
spend tier, whether its account was on a watchlist at flag time, and its outcome flags. It also
keeps the **coverage ledger**: every enforcement row is either analysed or excluded with a reason;
nothing is dropped silently.

Trailing spend (DESIGN.md): the spend of the account's advertiser in the ``window_days`` days
before the flag date — days ``flag_date - window_days`` to ``flag_date - 1`` — with each spend
period's amount spread evenly over its days. Trailing spend is the same for every case of one
advertiser on one day, so it is computed once per advertiser and flag date (a small table: a few
thousand advertisers times the days of the data, whatever the number of cases), from each
advertiser's cumulative spend curve with two as-of lookups; the spend tiers and the coverage ledger
come from the same small table. The cases then get their spend, tier and listing status through
hash joins on small tables, in a lazy query that streams: no cross join, no sort of the cases.
The spend table covers the days from its first ``period_start`` to its last ``period_end``; a case
whose window leaves that span has unknown spend and is excluded (reason
``spend window outside spend coverage``), never treated as zero.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from analysis.config import SEVERITY_BANDS, SPEND_TIERS, WINDOW_DAYS
from analysis.load import KEY_HASH_SEEDS, Dataset, few_row_groups_ahead
from analysis.schema import DataError, Problem

OUTSIDE_COVERAGE = "spend window outside spend coverage"


@dataclass(frozen=True)
class CoverageLedger:
    """Where every enforcement row went: analysed, or excluded with a reason."""

    enforcement_rows: int
    analysed: int
    excluded: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        accounted = self.analysed + sum(self.excluded.values())
        if accounted != self.enforcement_rows:  # an internal invariant, not a user error
            raise AssertionError(f"coverage ledger does not add up: {accounted} != "
                                 f"{self.enforcement_rows}")

    def to_dict(self) -> dict:
        return {"enforcement_rows": self.enforcement_rows, "analysed": self.analysed,
                "excluded": dict(sorted(self.excluded.items()))}


@dataclass(frozen=True)
class SpendCoverage:
    """The days the spend table speaks for, and the unit its amounts are in."""

    first_day: date | None
    last_day: date | None
    currency: str


def spend_in_usd(dataset: Dataset) -> tuple[pl.LazyFrame, str]:
    """Ad spend with one amount column ``spend_amount`` in a single currency.

    With an ``fx_rates`` table every row is converted to USD; with one currency and no rates the
    amounts stay in that currency (the report says which).
    """
    spend = dataset["ad_spend"]
    if "fx_rates" in dataset:
        rates = dataset["fx_rates"].select("currency", "rate_to_usd")
        return (spend.join(rates, on="currency", how="left")
                .with_columns(spend_amount=pl.col("spend") * pl.col("rate_to_usd"))), "USD"
    currencies = spend.select(pl.col("currency").unique().sort()).collect().to_series().to_list()
    currency = currencies[0] if currencies else "USD"
    return spend.with_columns(spend_amount=pl.col("spend")), currency


def cumulative_spend_curve(spend: pl.LazyFrame) -> pl.LazyFrame:
    """Per advertiser and period: spend before the period starts, daily rate, length in days.

    The cumulative spend strictly before day ``q`` is then, for the last period starting before
    ``q``: ``spend_before + daily_rate * min(q - period_start, days)`` — an as-of join away.
    """
    days = (pl.col("period_end") - pl.col("period_start")).dt.total_days() + 1
    return (
        spend.select("advertiser_id", "period_start", "period_end", "spend_amount")
        .sort("advertiser_id", "period_start")
        .with_columns(days=days.cast(pl.Int64))
        .with_columns(
            daily_rate=pl.col("spend_amount") / pl.col("days"),
            spend_before=(pl.col("spend_amount").cum_sum() - pl.col("spend_amount"))
            .over("advertiser_id", order_by="period_start"),
        )
        .select("advertiser_id", "period_start", "days", "daily_rate", "spend_before")
    )


def spend_before(queries: pl.LazyFrame, curve: pl.LazyFrame, *, day: str, out: str) -> pl.LazyFrame:
    """Add column ``out``: each query row's advertiser's total spend on days strictly before ``day``."""
    last_day = pl.col(day) - pl.duration(days=1)
    joined = queries.with_columns(_asof_key=last_day).sort("_asof_key").join_asof(
        curve.sort("period_start"), left_on="_asof_key", right_on="period_start",
        by="advertiser_id", strategy="backward", check_sortedness=False,
    )
    elapsed = (pl.col(day) - pl.col("period_start")).dt.total_days()
    amount = pl.col("spend_before") + pl.col("daily_rate") * pl.min_horizontal(elapsed, pl.col("days"))
    return joined.with_columns(pl.when(pl.col("period_start").is_null()).then(0.0)
                               .otherwise(amount).alias(out)
                               ).drop("_asof_key", "period_start", "days", "daily_rate",
                                      "spend_before")


def trailing_spend(cases: pl.LazyFrame, spend: pl.LazyFrame, *,
                   window_days: int = WINDOW_DAYS) -> pl.LazyFrame:
    """Add ``trailing_spend`` to rows with ``advertiser_id`` and ``flag_date``.

    Rows without an advertiser get 0 (the account buys no ads). Spend on day ``d`` counts when
    ``flag_date - window_days <= d < flag_date``.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import date
    >>> spend = pl.LazyFrame({"advertiser_id": ["a"], "period_start": [date(2023, 1, 1)],
    ...                       "period_end": [date(2023, 1, 10)], "spend_amount": [100.0]})
    >>> cases = pl.LazyFrame({"advertiser_id": ["a"], "flag_date": [date(2023, 1, 6)]})
    >>> trailing_spend(cases, spend, window_days=3).collect()["trailing_spend"].item()
    30.0
    """
    curve = cumulative_spend_curve(spend)
    queries = (cases.select("advertiser_id", "flag_date").unique()
               .filter(pl.col("advertiser_id").is_not_null())
               .with_columns(_window_start=pl.col("flag_date") - pl.duration(days=window_days)))
    queries = spend_before(queries, curve, day="flag_date", out="_through_flag")
    queries = spend_before(queries, curve, day="_window_start", out="_through_start")
    queries = queries.select(
        "advertiser_id", "flag_date",
        (pl.col("_through_flag") - pl.col("_through_start")).clip(lower_bound=0.0)
        .alias("trailing_spend"),
    )
    return (cases.join(queries, on=["advertiser_id", "flag_date"], how="left",
                       nulls_equal=False, maintain_order="left")
            .with_columns(pl.col("trailing_spend").fill_null(0.0)))


def spend_coverage(spend: pl.LazyFrame, currency: str) -> SpendCoverage:
    span = spend.select(pl.col("period_start").min(), pl.col("period_end").max()).collect()
    return SpendCoverage(span["period_start"].item(), span["period_end"].item(), currency)


#: The severity bands' names, "unknown" (no severity) included.
SEVERITY_BAND_NAMES = (*(label for _, label in SEVERITY_BANDS), "unknown")


def severity_band(severity: pl.Expr) -> pl.Expr:
    """low / medium / high by thirds of the severity scale; ``unknown`` where severity is missing."""
    expr = pl.when(severity.is_null()).then(pl.lit("unknown"))
    for upper, label in SEVERITY_BANDS:
        expr = expr.when(severity < upper).then(pl.lit(label))
    return expr.otherwise(pl.lit(SEVERITY_BANDS[-1][1]))


def _severity_band_enum(severity: pl.Expr) -> pl.Expr:
    """:func:`severity_band` as a sorted ``pl.Enum``, chosen by position (no text is hashed)."""
    names = sorted(SEVERITY_BAND_NAMES)
    position = pl.when(severity.is_null()).then(pl.lit(names.index("unknown"), pl.UInt32))
    for upper, label in SEVERITY_BANDS:
        position = position.when(severity < upper).then(pl.lit(names.index(label), pl.UInt32))
    position = position.otherwise(pl.lit(names.index(SEVERITY_BANDS[-1][1]), pl.UInt32))
    return pl.lit(pl.Series(names, dtype=pl.Enum(names))).gather(position)


def attribute(dataset: Dataset, *, window_days: int = WINDOW_DAYS, sort_by_case: bool = True,
              categorical: bool = False) -> tuple[pl.LazyFrame, CoverageLedger]:
    """Attribute spend, listing status and outcomes to every enforcement case.

    The cases are returned as a lazy query, so that what comes next (the cells, a plot) reads
    only the columns it needs and never holds all cases in memory at once. Before returning,
    two small tables are computed eagerly: the number of cases per advertiser and flag date (one
    pass over two columns of the enforcement table), and from it the trailing spend of every
    advertiser on every day it has cases, the coverage ledger and the spend-tier cut points.
    The lazy query then attaches these with hash joins on small tables; no step sorts, or
    joins on, the cases themselves (unless ``sort_by_case``).

    Parameters
    ----------
    dataset : Dataset
        Loaded canonical tables (:func:`analysis.load.load`).
    window_days : int, default 90
        Length of the trailing-spend window, in days before the flag date.
    sort_by_case : bool, default True
        Sort the cases by ``case_id`` (a stable order for anyone reading them). Aggregations do
        not need it and pass ``False``, which keeps the query streamable.
    categorical : bool, default False
        Return ``account_id``, ``policy`` and ``severity_band`` as ``pl.Enum`` whose categories
        are sorted, so that grouping and sorting on them are integer operations with the same
        order as on the text (:mod:`analysis.cells` uses this). Every case's account must then
        be in the accounts table (the contract's rule), else :class:`DataError`.

    Returns
    -------
    cases : polars.LazyFrame
        One row per analysed case, columns :data:`CASE_COLUMNS` (see :data:`CASE_DOCS`),
        sorted by ``case_id`` unless ``sort_by_case`` is false.
    ledger : CoverageLedger
        Rows analysed and rows excluded, by reason.

    Examples
    --------
    >>> from analysis.config import SAMPLE_DATA_DIR
    >>> from analysis.load import load
    >>> cases, ledger = attribute(load(SAMPLE_DATA_DIR))
    >>> ledger.enforcement_rows == ledger.analysed + sum(ledger.excluded.values())
    True
    """
    cases, ledger, _ = _attribute(dataset, window_days=window_days, sort_by_case=sort_by_case,
                                  categorical=categorical)
    return cases, ledger


def attribute_with_account_codes(dataset: Dataset, *, window_days: int = WINDOW_DAYS
                                 ) -> tuple[pl.LazyFrame, CoverageLedger, pl.Series]:
    """:func:`attribute` with ``categorical=True`` and ``sort_by_case=False``, except that
    ``account_id`` is left as a number (UInt32): the account's position in the sorted account
    ids, which are returned third. ``levelfield cells`` uses it.

    An Enum of millions of accounts is costly in polars: each time its type passes between
    Python and polars, the categories are converted again (about 3 s for 5 million accounts,
    and 1 s back), so a 10M-case world with 5M accounts spent a fifth of ``levelfield cells``
    on it. The cell tables need only each case's number and the ids, once
    (:func:`analysis.cells.sink_cells` takes them as ``accounts``).

    Examples
    --------
    >>> from analysis.config import SAMPLE_DATA_DIR
    >>> from analysis.load import load
    >>> cases, _, ids = attribute_with_account_codes(load(SAMPLE_DATA_DIR))
    >>> first = cases.select("account_id").head(1).collect().item()
    >>> ids[first] == attribute(load(SAMPLE_DATA_DIR), sort_by_case=False)[0].select(
    ...     pl.col("account_id").cast(pl.String)).head(1).collect().item()
    True
    """
    return _attribute(dataset, window_days=window_days, sort_by_case=False, categorical=True,
                      account_codes=True)


def _attribute(dataset: Dataset, *, window_days: int, sort_by_case: bool, categorical: bool,
               account_codes: bool = False
               ) -> tuple[pl.LazyFrame, CoverageLedger, pl.Series | None]:
    """:func:`attribute`, or with ``account_codes`` :func:`attribute_with_account_codes`."""
    if window_days < 1:
        raise DataError([Problem("parameters", "window_days must be at least 1",
                                 column="window_days", value=str(window_days))])
    with few_row_groups_ahead():
        return _attribute_passes(dataset, window_days=window_days, sort_by_case=sort_by_case,
                                 categorical=categorical, account_codes=account_codes)


def _attribute_passes(dataset: Dataset, *, window_days: int, sort_by_case: bool,
                      categorical: bool, account_codes: bool
                      ) -> tuple[pl.LazyFrame, CoverageLedger, pl.Series | None]:
    """:func:`_attribute` (its passes over the enforcement table run here)."""
    spend, currency = spend_in_usd(dataset)
    coverage = spend_coverage(spend, currency)
    enforcement = dataset["enforcement"].with_columns(flag_date=pl.col("flagged_at").dt.date())
    # Small reads of the enforcement table run beside the day table's (polars alone keeps
    # about 1.6 of 2 cores busy): the end of the data and, for the Enum, the policies.
    with ThreadPoolExecutor(max_workers=1) as other:
        small = other.submit(lambda: (
            enforcement.select(pl.max_horizontal(pl.col("flagged_at").max(),
                                                 pl.col("decided_at").max())).collect().item(),
            enforcement.select(pl.col("policy").drop_nulls().unique()).collect()
            .to_series().sort() if categorical else None))
        if categorical:
            accounts = _account_table(dataset["accounts"])
            by_day = _advertiser_days(enforcement, accounts)
        else:
            by_day = advertiser_days(enforcement, dataset["accounts"])
        days, ledger, unknown = spend_by_day(by_day, spend, coverage, window_days=window_days,
                                             excluded_before=dataset.excluded)
        end_of_data, policies = small.result()
    inside = _inside_coverage(pl.col("flag_date"), coverage, window_days=window_days)
    if categorical and unknown:
        raise DataError([Problem("enforcement", f"{unknown:,} rows have an account_id that does "
                                 "not exist in accounts", column="account_id",
                                 check="foreign key")])

    if categorical:
        policy = pl.Enum(policies)
        cases = _cases_by_account_code(enforcement.filter(inside), dataset, accounts, days,
                                       policy, as_enum=not account_codes)
    else:
        cases = (
            enforcement.filter(inside)
            .join(account_attributes(dataset), on="account_id", how="left")
            .join(days.lazy(), on=["advertiser_id", "flag_date"], how="left", nulls_equal=False)
        )
    listed = pl.any_horizontal(
        [(pl.col("flagged_at") >= pl.col(start)) & (pl.col(end).is_null()
                                                    | (pl.col("flagged_at") < pl.col(end)))
         for start, end in _listing_columns(dataset)] or [pl.lit(False)])
    decided = pl.col("decided_at").is_not_null()
    directive_date = _directive_date(dataset)
    cases = cases.with_columns(
        trailing_spend=pl.col("trailing_spend").fill_null(0.0),
        spend_tier=pl.col("spend_tier").fill_null(0).cast(pl.Int8),
        listed=listed.fill_null(False),
        ever_listed=pl.col("listed_at").is_not_null(),
        directive_date=pl.lit(directive_date, pl.Date),
        severity_band=(_severity_band_enum if categorical else severity_band)(pl.col("severity")),
        enforced=pl.col("action") != "no_action",
        decided=decided,
        decision_hours=(pl.when(decided).then(pl.col("decided_at")).otherwise(pl.lit(end_of_data))
                        - pl.col("flagged_at")).dt.total_seconds(fractional=True) / 3600.0,
        appealed=pl.col("appealed").fill_null(False),
        reversed=pl.col("appeal_outcome").fill_null("") == "reversed",
        advertiser_account=(pl.col("_advertiser_account") if categorical
                            else pl.col("advertiser_id").is_not_null()),
    ).with_columns(is_advertiser=pl.col("trailing_spend") > 0)
    cases = cases.select(CASE_COLUMNS)
    return (cases.sort("case_id") if sort_by_case else cases), ledger, (
        accounts.ids if account_codes else None)


@dataclass(frozen=True)
class _AccountTable:
    """The accounts as ``attribute(categorical=True)`` needs them, kept small at millions of
    accounts: the sorted ids (the Enum's categories; an account's code is its position) and,
    in that order, the number of each account's advertiser among the sorted distinct
    ``advertisers`` (null: none). ``key`` and ``lookup`` find a case's account
    (:func:`account_lookup`), giving its ``_code`` and ``_advertiser``."""

    ids: pl.Series
    advertiser: pl.Series
    advertisers: pl.Series
    key: str
    lookup: pl.DataFrame


def _account_table(accounts: pl.LazyFrame) -> _AccountTable:
    """:class:`_AccountTable` of the accounts table: two columns read, one sort of the ids.

    (Sorting the whole joined account table, with its advertiser's owner and listings, took
    1.4 GB at 5 million accounts; this takes about a third.)
    """
    table = accounts.select("account_id", "advertiser_id").collect()
    order = table["account_id"].arg_sort()
    ids = table["account_id"].gather(order)
    # Sorted, so unique if each id is greater than the one before it.
    if ids.null_count() or not (ids.slice(1) > ids.slice(0, max(ids.len() - 1, 0))).all():
        raise DataError([Problem("accounts", "account_id must be given and unique",
                                 column="account_id", check="unique")])
    advertisers = table["advertiser_id"].drop_nulls().unique().sort()
    advertiser = table["advertiser_id"].gather(order).replace_strict(
        advertisers, pl.int_range(advertisers.len(), dtype=pl.UInt32, eager=True),
        default=None).alias("_advertiser")
    del table, order
    key, lookup = account_lookup(pl.DataFrame(
        [ids, pl.int_range(ids.len(), dtype=pl.UInt32, eager=True).alias("_code"), advertiser]))
    return _AccountTable(ids, advertiser, advertisers, key, lookup)


def _cases_by_account_code(enforcement: pl.LazyFrame, dataset: Dataset, accounts: _AccountTable,
                           days: pl.DataFrame, policy: pl.Enum, *, as_enum: bool = True
                           ) -> pl.LazyFrame:
    """The cases of ``attribute(categorical=True)``: ``enforcement`` with every column the
    joins on accounts and on the day table would add, and ``account_id`` as a sorted Enum
    (``as_enum``) or as its code, the account's position in ``accounts.ids``.

    Joining ten million cases on a text key hashes every case's text, and a join on
    (advertiser, day) does so again. Here each case's account is found once, by a join on a
    64-bit hash of its id (:func:`account_lookup`; exact, since :func:`attribute` has already
    found every case's account in the accounts table), which gives its position in the sorted
    accounts: its Enum code. Everything else is gathered by position from small arrays: the
    account's advertiser and listing periods (through the account's row in a table of
    advertisers and in a table of listed accounts), and the spend and tier of its advertiser on
    the flag date from the day table laid out flat, each advertiser's days from its first to its
    last. ``policy`` becomes the Enum ``policy``.
    """
    ids = accounts.ids
    code = pl.col("_code")

    # The day table flat: advertiser a's day d sits at base[a] + d (days since 1970).
    days = days.with_columns(_day=pl.col("flag_date").cast(pl.Int32).cast(pl.Int64))
    spans = (days.group_by("advertiser_id")
             .agg(_first=pl.col("_day").min(), _last=pl.col("_day").max())
             .with_columns(_length=pl.col("_last") - pl.col("_first") + 1))
    spans = spans.with_columns(
        _base=pl.col("_length").cum_sum() - pl.col("_length") - pl.col("_first"))
    size = int(spans["_length"].sum() or 0)
    placed = days.join(spans.select("advertiser_id", "_base"), on="advertiser_id")
    at_day = (placed["_base"] + placed["_day"]).to_numpy()
    occupied = np.zeros(size, dtype=bool)
    occupied[at_day] = True
    if np.count_nonzero(occupied) != len(at_day):
        raise ValueError("the day table has more than one row for an advertiser and day")
    del occupied
    # Days without cases hold 0, as a case without trailing spend does after attribution.
    flat = {column: np.zeros(size, dtype=placed[column].to_numpy().dtype)
            for column in ("trailing_spend", "spend_tier")}
    for column, values in flat.items():
        values[at_day] = placed[column].to_numpy()
    del placed, at_day

    # Per account, besides its hash and its Enum code, only two row numbers: its advertiser's
    # row in a table of advertisers (with the day table's span of each) and its row in a table
    # of listed accounts (null: none). Everything else is gathered through them from those
    # small tables, so that at millions of accounts the per-account arrays stay small.
    owners = dataset["advertisers"].select("advertiser_id", "parent_name").collect()
    advertisers = (accounts.advertisers.to_frame("advertiser_id")
                   .join(owners.unique("advertiser_id", keep="first", maintain_order=True),
                         on="advertiser_id", how="left", maintain_order="left")
                   .join(spans.select("advertiser_id", "_base", "_first", "_last"),
                         on="advertiser_id", how="left", maintain_order="left"))
    listings, listing_row = _listings(dataset, ids)
    listing = [c for c in listings.columns if c != "account_id"]
    rows = pl.DataFrame([accounts.advertiser.alias("_advertiser_row"), listing_row])

    def gather(table: pl.DataFrame, column: str, row: str) -> pl.Expr:
        return pl.lit(table[column]).gather(pl.col(row)).alias(column)

    day = pl.col("flag_date").cast(pl.Int32).cast(pl.Int64)
    in_span = (day >= pl.col("_first")) & (day <= pl.col("_last"))
    at = pl.when(in_span).then(pl.col("_base") + day)
    key, lookup = accounts.key, accounts.lookup
    case_keys = _case_keys(key)
    if key == "_h":
        # Every case's account is known (attribute() checked it, on both hashes) and no two
        # accounts share the first hash: the first alone finds the account. Joining on it
        # alone, the second hash is neither computed per case nor held in the join's table.
        case_keys, lookup = case_keys[:1], lookup.select("_h", "_code")
    else:
        lookup = lookup.select(key, "_code")
    return (
        enforcement.with_columns(case_keys)
        .join(lookup.lazy(), on=key, how="left", maintain_order="left")
        .with_columns(pl.lit(rows[c]).gather(code).alias(c) for c in rows.columns)
        .with_columns(
            *[gather(advertisers, c, "_advertiser_row")
              for c in ("advertiser_id", "parent_name", "_base", "_first", "_last")],
            *[gather(listings, c, "_listing_row") for c in listing],
            account_id=(pl.lit(pl.Series(ids, dtype=pl.Enum(ids))).gather(code) if as_enum
                        else code),
            # A Boolean per case, so that the cells need not read the advertiser's id.
            _advertiser_account=pl.col("_advertiser_row").is_not_null(),
            policy=pl.col("policy").cast(policy),
        )
        .with_columns(
            trailing_spend=pl.lit(pl.Series(flat["trailing_spend"])).gather(at),
            spend_tier=pl.lit(pl.Series(flat["spend_tier"])).gather(at),
        )
    )


def _listings(dataset: Dataset, ids: pl.Series) -> tuple[pl.DataFrame, pl.Series]:
    """The listing columns of :func:`account_attributes` for the listed accounts among the
    sorted ``ids``, in their order, and each account's row among them (``_listing_row``, null:
    never listed)."""
    listing_row = pl.repeat(None, ids.len(), dtype=pl.UInt32, eager=True).alias("_listing_row")
    if "watchlist" not in dataset:
        return pl.DataFrame({"account_id": [], "listed_at": []},
                            schema={"account_id": pl.String, "listed_at": pl.Date}), listing_row
    wide = (listing_by_account(dataset["watchlist"])[0]
            .filter(pl.col("account_id").is_not_null()).collect())
    position = ids.search_sorted(wide["account_id"]).cast(pl.Int64)
    known = position < ids.len()
    known = known & (ids.gather(position.clip(upper_bound=max(ids.len() - 1, 0)))
                     == wide["account_id"]) if ids.len() else known
    wide = wide.with_columns(_position=position).filter(known).sort("_position")
    listing_row = listing_row.scatter(wide["_position"],
                                      pl.int_range(wide.height, dtype=pl.UInt32, eager=True))
    return wide.drop("_position"), listing_row


def advertiser_days(enforcement: pl.LazyFrame, accounts: pl.LazyFrame) -> pl.LazyFrame:
    """Cases per advertiser and flag date (``advertiser_id`` null: accounts buying no ads).

    Trailing spend is the same for every case of one advertiser on one day, so it is computed
    once per row of this table: a few thousand advertisers times the days of the data, however
    many cases there are. Each case's account is found by a join on a 64-bit hash of its id
    and confirmed by a second, independent hash (:func:`account_lookup`): hashing and joining
    integers is several times faster than joining on the text; the counts are grouped by an
    advertiser number, and the advertiser's id put back on the small result. An account id
    missing or repeated in ``accounts`` is a :class:`DataError`: its cases would otherwise be
    lost or counted twice.
    """
    return _advertiser_days(enforcement, _account_table(accounts))


def _advertiser_days(enforcement: pl.LazyFrame, accounts: _AccountTable) -> pl.LazyFrame:
    """:func:`advertiser_days`, given the accounts' :class:`_AccountTable`."""
    key, names = accounts.key, accounts.advertisers
    lookup = accounts.lookup.select(key, "_advertiser",
                                    *(["_h2"] if key == "_h" else ["_known"]))
    found = (enforcement.select("flag_date", *_case_keys(key))
             .join(lookup.lazy(), on=key, how="left", maintain_order="left"))
    known = _confirmed(key)
    counts = (found.group_by(pl.when(known).then(pl.col("_advertiser")).alias("_advertiser"),
                             "flag_date", known_account=known)
              .agg(pl.len().alias("cases")))
    return counts.select(pl.lit(names).gather(pl.col("_advertiser")).alias("advertiser_id"),
                         "flag_date", "known_account", "cases")


def account_lookup(table: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """How to find a case's row of ``table`` (one row per ``account_id``): the join key and the
    table to join, keyed by it.

    The key is ``_h``, a 64-bit hash of the account id, when no two accounts share one (checked
    here); the table then also carries ``_h2``, a second hash with another seed, which a case
    must match too (:func:`_confirmed`), so that a case whose account is missing from the table
    is not taken for another account unless its id collides with that account's in 128 bits.
    If two accounts do share a hash (or an id), the key is the text itself.
    """
    ids = pl.col("account_id")
    hashed = table.with_columns(_h=ids.hash(KEY_HASH_SEEDS[0]), _h2=ids.hash(KEY_HASH_SEEDS[1]))
    if table["account_id"].null_count() == 0 and hashed["_h"].n_unique() == table.height:
        return "_h", hashed.drop("account_id")
    return "account_id", table.with_columns(_known=pl.lit(True))


def _case_keys(key: str) -> list[pl.Expr]:
    """The columns of the cases that :func:`account_lookup`'s table is joined on."""
    ids = pl.col("account_id")
    if key == "_h":
        return [ids.hash(KEY_HASH_SEEDS[0]).alias("_h"),
                ids.hash(KEY_HASH_SEEDS[1]).alias("_h2_case"),
                ids.is_not_null().alias("_id_given")]
    return [ids]


def _confirmed(key: str) -> pl.Expr:
    """The case's account was found in the table (after the join of :func:`account_lookup`)."""
    if key == "_h":
        return ((pl.col("_h2") == pl.col("_h2_case")) & pl.col("_id_given")).fill_null(False)
    return pl.col("_known").fill_null(False)


def spend_by_day(days: pl.DataFrame | pl.LazyFrame, spend: pl.LazyFrame, coverage: SpendCoverage,
                 *, window_days: int = WINDOW_DAYS, excluded_before: dict[str, int] | None = None
                 ) -> tuple[pl.DataFrame, CoverageLedger, int]:
    """Trailing spend and spend tier per advertiser and day, and the coverage ledger.

    Parameters
    ----------
    days : polars DataFrame or LazyFrame
        :func:`advertiser_days`: ``advertiser_id``, ``flag_date``, ``known_account`` and
        ``cases`` (how many enforcement rows), one row per advertiser, flag date and
        ``known_account``.
    spend : polars.LazyFrame
        Spend periods with ``spend_amount`` in one currency (:func:`spend_in_usd`).
    coverage : SpendCoverage
        The days the spend table covers (:func:`spend_coverage`).
    window_days : int, default 90
        The trailing-spend window.
    excluded_before : dict, optional
        Rows a source adapter removed before attribution, by reason (for the ledger).

    Returns
    -------
    days : polars.DataFrame
        One row per advertiser and flag date of analysed cases: ``advertiser_id``,
        ``flag_date``, ``trailing_spend`` and ``spend_tier`` (cases of accounts without an
        advertiser have spend 0 and tier 0 and need no row).
    ledger : CoverageLedger
        Rows analysed and excluded.
    unknown_accounts : int
        Enforcement rows whose account is not in the accounts table.
    """
    inside = _inside_coverage(pl.col("flag_date"), coverage, window_days=window_days)
    days = days.lazy().collect()
    days = days.with_columns(trailing_spend=_trailing_spend_by_day(days, spend,
                                                                   window_days=window_days),
                             inside=inside)
    ledger = _ledger(days, excluded_before or {})
    unknown = int(days.filter(~pl.col("known_account"))["cases"].sum())
    # An advertiser's accounts are known accounts, so these rows are one per advertiser and day.
    # Tiers are quantiles over analysed advertiser *cases*: each advertiser-day counts as often
    # as it has cases, which gives exactly the quantiles of the case-level column.
    days = days.filter(pl.col("inside") & pl.col("advertiser_id").is_not_null())
    days = _spend_tiers(days).select("advertiser_id", "flag_date", "trailing_spend", "spend_tier")
    return days, ledger, unknown


def _trailing_spend_by_day(days: pl.DataFrame, spend: pl.LazyFrame, *,
                           window_days: int) -> pl.Series:
    """:func:`trailing_spend` of each (``advertiser_id``, ``flag_date``) row, bit for bit, with
    the as-of lookups done by binary search in numpy (much faster on a table this small)."""
    curve = cumulative_spend_curve(spend).collect()  # sorted by advertiser, period start
    codes = curve.select(pl.col("advertiser_id").unique(maintain_order=True)).with_columns(
        _code=pl.int_range(pl.len(), dtype=pl.Int64))
    day = days.select("advertiser_id", _day=pl.col("flag_date").cast(pl.Int32).cast(pl.Int64)
                      ).join(codes, on="advertiser_id", how="left", maintain_order="left")
    curve = curve.join(codes, on="advertiser_id", how="left", maintain_order="left")
    shift = np.int64(1 << 32)
    offset = np.int64(1 << 31)  # day numbers may be negative
    curve_code = curve["_code"].to_numpy()
    start = curve["period_start"].cast(pl.Int32).cast(pl.Int64).to_numpy()
    length = curve["days"].to_numpy()
    rate = curve["daily_rate"].to_numpy()
    before = curve["spend_before"].to_numpy()
    keys = curve_code * shift + start + offset
    code = day["_code"].fill_null(-1).to_numpy()
    flag = day["_day"].to_numpy()

    def through(q: np.ndarray, code: np.ndarray) -> np.ndarray:
        """Spend strictly before day ``q``: the last period starting on or before ``q - 1``."""
        wanted = code * shift + (q - 1) + offset
        order = np.argsort(wanted)  # sorted queries make the binary searches cache-friendly
        i = np.empty(len(wanted), dtype=np.int64)
        i[order] = np.searchsorted(keys, wanted[order], side="right") - 1
        i_safe = np.clip(i, 0, None)
        found = (i >= 0) & (code >= 0) & (curve_code[i_safe] == code)
        elapsed = np.minimum(q - start[i_safe], length[i_safe]).astype(np.float64)
        return np.where(found, before[i_safe] + rate[i_safe] * elapsed, 0.0)

    spent = np.zeros(days.height)
    if len(keys) == 0:
        return pl.Series("trailing_spend", spent)
    step = 1 << 18  # in slices, so that the temporary arrays stay small
    for low in range(0, days.height, step):
        rows = slice(low, low + step)
        spent[rows] = (through(flag[rows], code[rows])
                       - through(flag[rows] - window_days, code[rows]))
    return pl.Series("trailing_spend", np.where(spent < 0.0, 0.0, spent))


def account_attributes(dataset: Dataset) -> pl.LazyFrame:
    """One row per account: advertiser, owner, first listing date and every listing period.

    The listing periods are spread over columns (see :func:`listing_by_account`) so that a
    case's listing status is a comparison within its row after one join on ``account_id``.
    """
    accounts = dataset["accounts"].select("account_id", "advertiser_id").join(
        dataset["advertisers"].select("advertiser_id", "parent_name"), on="advertiser_id",
        how="left", maintain_order="left")
    if "watchlist" not in dataset:
        return accounts.with_columns(listed_at=pl.lit(None, pl.Date))
    listing, _ = listing_by_account(dataset["watchlist"])
    return accounts.join(listing, on="account_id", how="left", maintain_order="left")


def listing_by_account(watchlist: pl.LazyFrame) -> tuple[pl.LazyFrame, list[tuple[str, str]]]:
    """Per listed account, its first ``listed_at`` and its listing periods side by side.

    Returns the table (``account_id``, ``listed_at``, ``_listed_from_1``, ``_listed_until_1``,
    ``_listed_from_2``, …: UTC midnight of ``listed_at`` and ``delisted_at``, as many pairs as
    the account with the most listings has) and the names of the (from, until) pairs. A case is
    listed when its flag time lies in any pair's ``[from, until)``.
    """
    utc = pl.Datetime("us", "UTC")

    def midnight(column: str) -> pl.Expr:
        return pl.col(column).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").cast(utc)

    periods = (watchlist.select("account_id", "listed_at", "delisted_at")
               .sort("account_id", "listed_at", "delisted_at", nulls_last=True)
               .with_columns(_listed_from=midnight("listed_at"),
                             _listed_until=midnight("delisted_at")))
    most = periods.group_by("account_id").len().select(pl.col("len").max()).collect().item() or 0
    pairs = [(f"_listed_from_{k}", f"_listed_until_{k}") for k in range(1, most + 1)]
    wide = periods.group_by("account_id").agg(
        pl.col("listed_at").min(),
        *[pl.col(c).get(k, null_on_oob=True).alias(name)
          for k, pair in enumerate(pairs)
          for c, name in zip(("_listed_from", "_listed_until"), pair, strict=True)])
    return wide, pairs


def _listing_columns(dataset: Dataset) -> list[tuple[str, str]]:
    """Names of the (from, until) column pairs of :func:`account_attributes`."""
    if "watchlist" not in dataset:
        return []
    return listing_by_account(dataset["watchlist"])[1]


def _directive_date(dataset: Dataset) -> date | None:
    if "watchlist" not in dataset:
        return None
    return dataset["watchlist"].select(pl.col("listed_at").min()).collect().item()


def _inside_coverage(flag_date: pl.Expr, coverage: SpendCoverage, *, window_days: int) -> pl.Expr:
    """The whole trailing window of a case lies within the days the spend table covers."""
    if coverage.first_day is None:
        return pl.lit(False)
    return ((flag_date - pl.duration(days=window_days) >= pl.lit(coverage.first_day))
            & (flag_date - pl.duration(days=1) <= pl.lit(coverage.last_day)))


def _ledger(days: pl.DataFrame, excluded_before: dict[str, int]) -> CoverageLedger:
    analysed = int(days.filter(pl.col("inside"))["cases"].sum())
    outside = int(days.filter(~pl.col("inside"))["cases"].sum())
    excluded = {OUTSIDE_COVERAGE: outside} if outside else {}
    for reason, n in excluded_before.items():  # removed by the source adapter, before us
        excluded[reason] = excluded.get(reason, 0) + n
    return CoverageLedger(enforcement_rows=analysed + outside + sum(excluded_before.values()),
                          analysed=analysed, excluded=excluded)


#: The columns of the attributed "cases" frame and what each means.
CASE_DOCS = {
    "case_id": "the enforcement case",
    "account_id": "the account whose content was flagged",
    "advertiser_id": "the advertiser behind the account (null: buys no ads)",
    "parent_name": "the advertiser's owner, if given",
    "advertiser_account": "the account has an advertiser (whether or not it spent in the window)",
    "policy": "the violation category",
    "severity": "severity in [0, 1], if given",
    "severity_band": "low (< 1/3), medium (< 2/3), high, or unknown",
    "detection": "how the content was flagged, if given",
    "flagged_at": "when it was flagged (UTC)",
    "flag_date": "the UTC date of flagged_at",
    "action": "removed, restricted or no_action",
    "enforced": "action is not no_action",
    "decided": "decided_at is known",
    "decision_hours": "hours to the decision; if undecided, hours to the end of the data (censored)",
    "appealed": "the decision was appealed",
    "reversed": "the appeal reversed the decision",
    "trailing_spend": "advertiser's spend in the window before the flag date (0: no advertiser)",
    "is_advertiser": "trailing_spend > 0",
    "spend_tier": "0 no spend; 1..4 quartiles of trailing spend among advertiser cases",
    "listed": "the account was on a watchlist at flag time",
    "ever_listed": "the account appears on the watchlist",
    "listed_at": "the account's first listing date",
    "directive_date": "the earliest listing date of the watchlist (when the list took effect)",
}
CASE_COLUMNS = list(CASE_DOCS)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float | None:
    """The ``q`` quantile (linear interpolation) of ``values`` each repeated ``weights`` times.

    Bit for bit what polars' ``quantile(q, interpolation="linear")`` gives on the repeated
    values, without repeating them: the two order statistics either side of position
    ``(n - 1) * q`` are found in the cumulative weights.
    """
    return weighted_quantiles(values, weights, [q])[0]


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, qs: list[float]
                       ) -> list[float | None]:
    """:func:`weighted_quantile` for each of ``qs``, sorting the values once."""
    order = np.argsort(values)
    values, weights = values[order], weights[order]
    n = int(weights.sum())
    if n == 0:
        return [None] * len(qs)
    ends = np.cumsum(weights)  # the value at sorted rank r is the first whose end exceeds r
    found: list[float | None] = []
    for q in qs:
        position = (n - 1) * q
        lower_rank, upper_rank = math.floor(position), math.ceil(position)
        lower = float(values[np.searchsorted(ends, lower_rank, side="right")])
        upper = float(values[np.searchsorted(ends, upper_rank, side="right")])
        found.append(lower if lower == upper
                     else (position - lower_rank) * (upper - lower) + lower)
    return found


def _spend_tiers(days: pl.DataFrame, tiers: int = SPEND_TIERS) -> pl.DataFrame:
    """Tier 0: no trailing spend; tiers 1..``tiers``: quantiles of spend among advertiser cases.

    ``days`` holds one row per advertiser and day with its number of ``cases``.
    """
    spending = days.select("trailing_spend", "cases").filter(pl.col("trailing_spend") > 0)
    values = spending["trailing_spend"].to_numpy()
    weights = spending["cases"].to_numpy()
    spend = pl.col("trailing_spend")
    tier = pl.lit(1, pl.Int8)
    for cut in weighted_quantiles(values, weights, [i / tiers for i in range(1, tiers)]):
        if cut is not None:
            tier = tier + (spend > cut).cast(pl.Int8)
    return days.with_columns(
        spend_tier=pl.when(spend > 0).then(tier).otherwise(pl.lit(0, pl.Int8)).cast(pl.Int8))
