"""The data contract: the canonical tables, declared once as data, and the error users see.

Everything else reads these declarations: the loader parses columns with them, the validator
checks them, and the README's table of the contract is written from them
(:func:`contract_markdown`). A folder in the contract holds ``<table>.csv``, ``<table>.csv.gz`` or
``<table>.parquet`` per table; see DESIGN.md for the meaning of each column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

#: Column types of the contract and the polars dtype each is parsed to.
DTYPES: dict[str, pl.DataType] = {
    "str": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "timestamp": pl.Datetime("us", "UTC"),
}

ACTIONS = ("removed", "restricted", "no_action")
APPEAL_OUTCOMES = ("upheld", "reversed")


@dataclass(frozen=True)
class Column:
    """One column of a canonical table.

    ``required`` means the column must be present in the file; ``nullable`` whether its cells may
    be empty. ``values`` closes the vocabulary; ``minimum``/``maximum`` bound numbers (inclusive).
    """

    name: str
    type: str
    required: bool = True
    nullable: bool = False
    values: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    doc: str = ""

    @property
    def dtype(self) -> pl.DataType:
        return DTYPES[self.type]


@dataclass(frozen=True)
class Table:
    """One canonical table: its columns and its unique key (if any)."""

    name: str
    required: bool
    columns: tuple[Column, ...]
    key: str | None = None
    doc: str = ""

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.dtype for c in self.columns}


CONTRACT: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "accounts",
            required=True,
            key="account_id",
            doc="Accounts whose content can be flagged.",
            columns=(
                Column("account_id", "str", doc="unique, not null"),
                Column("advertiser_id", "str", nullable=True,
                       doc="null: the account buys no ads; must exist in advertisers"),
                Column("account_name", "str", required=False, nullable=True),
                Column("account_type", "str", required=False, nullable=True),
                Column("country", "str", required=False, nullable=True),
                Column("followers", "int", required=False, nullable=True, minimum=0),
            ),
        ),
        Table(
            "advertisers",
            required=True,
            key="advertiser_id",
            doc="Advertisers (the paying side); brands of one owner share parent_name.",
            columns=(
                Column("advertiser_id", "str", doc="unique, not null"),
                Column("advertiser_name", "str"),
                Column("parent_name", "str", required=False, nullable=True,
                       doc="groups brands under one owner"),
            ),
        ),
        Table(
            "ad_spend",
            required=True,
            doc="Spend per advertiser and period; periods of one advertiser may not overlap.",
            columns=(
                Column("advertiser_id", "str", doc="must exist in advertisers"),
                Column("period_start", "date"),
                Column("period_end", "date", doc=">= period_start, inclusive"),
                Column("spend", "float", minimum=0),
                Column("currency", "str", doc="ISO 4217; several need an fx_rates table"),
            ),
        ),
        Table(
            "enforcement",
            required=True,
            key="case_id",
            doc="One row per flagged piece of content and what the platform did.",
            columns=(
                Column("case_id", "str", doc="unique, not null"),
                Column("account_id", "str", doc="must exist in accounts"),
                Column("flagged_at", "timestamp"),
                Column("policy", "str", doc="the violation category"),
                Column("severity", "float", required=False, nullable=True, minimum=0, maximum=1),
                Column("detection", "str", required=False, nullable=True),
                Column("action", "str", values=ACTIONS),
                Column("decided_at", "timestamp", required=False, nullable=True,
                       doc=">= flagged_at"),
                Column("appealed", "bool", required=False, nullable=True),
                Column("appeal_outcome", "str", required=False, nullable=True,
                       values=APPEAL_OUTCOMES, doc="only where appealed"),
            ),
        ),
        Table(
            "watchlist",
            required=False,
            doc="Accounts on a list (e.g. do-not-moderate) and when the list applied to them.",
            columns=(
                Column("account_id", "str", doc="must exist in accounts"),
                Column("list_name", "str"),
                Column("listed_at", "date", doc="the date the list took effect"),
                Column("delisted_at", "date", required=False, nullable=True),
            ),
        ),
        Table(
            "audit_sample",
            required=False,
            key="case_id",
            doc="Independent re-review of a sample of cases.",
            columns=(
                Column("case_id", "str", doc="must exist in enforcement"),
                Column("violates", "bool", doc="the reviewer's verdict"),
            ),
        ),
        Table(
            "fx_rates",
            required=False,
            key="currency",
            doc="Exchange rates, needed when ad_spend has more than one currency.",
            columns=(
                Column("currency", "str"),
                Column("rate_to_usd", "float", minimum=0),
            ),
        ),
    )
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, located as precisely as possible.

    ``row`` counts data rows from 1 (in a CSV file, line = row + 1 because of the header).
    """

    file: str
    message: str
    row: int | None = None
    column: str | None = None
    value: str | None = None
    check: str = ""

    def __str__(self) -> str:
        where = [self.file]
        if self.row is not None:
            line = f"line {self.row + 1}" if ".csv" in self.file else f"row {self.row}"
            where.append(line)
        if self.column is not None:
            where.append(f"column {self.column}")
        text = ", ".join(where) + ": " + self.message
        if self.value is not None:
            text += f" (value {self.value!r})"
        return text


@dataclass
class DataError(Exception):
    """The user's data break the contract. Carries every problem found, not only the first."""

    problems: list[Problem] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        super().__init__(self.summary())

    def summary(self, *, per_check: int = 10) -> str:
        """Readable text: problems grouped by check, the first ``per_check`` of each shown."""
        lines = [f"{len(self.problems)} problem(s) in {self.source or 'the input'}:"]
        groups: dict[tuple[str, str], list[Problem]] = {}
        for p in self.problems:
            groups.setdefault((p.file, p.check or p.message), []).append(p)
        for (_, _), items in groups.items():
            for p in items[:per_check]:
                lines.append(f"  - {p}")
            if len(items) > per_check:
                lines.append(f"    ... and {len(items) - per_check} more like this")
        return "\n".join(lines)


def contract_markdown() -> str:
    """The contract as a Markdown table (for the README and the report's appendix)."""
    lines = ["| table | column | type | rule |", "|---|---|---|---|"]
    for table in CONTRACT.values():
        first = True
        for c in table.columns:
            rule = []
            if not c.required:
                rule.append("optional")
            elif not c.nullable:
                rule.append("not null")
            if c.nullable and c.required:
                rule.append("nullable")
            if c.values:
                rule.append("one of " + ", ".join(c.values))
            if c.minimum is not None:
                rule.append(f">= {c.minimum:g}")
            if c.maximum is not None:
                rule.append(f"<= {c.maximum:g}")
            if c.doc:
                rule.append(c.doc)
            label = f"{table.name} ({'required' if table.required else 'optional'})" if first else ""
            lines.append(f"| {label} | {c.name} | {c.type} | {'; '.join(rule)} |")
            first = False
    return "\n".join(lines)


def find_table_file(folder: Path, table: str) -> Path | None:
    """The file holding ``table`` in ``folder``; raises DataError if there are several."""
    candidates = [folder / f"{table}{ext}" for ext in (".csv", ".csv.gz", ".parquet")]
    present = [p for p in candidates if p.exists()]
    if len(present) > 1:
        raise DataError(
            [Problem(str(folder), f"table {table} is given twice: "
                     + ", ".join(p.name for p in present) + "; keep one", check="duplicate file")],
            source=str(folder),
        )
    return present[0] if present else None
