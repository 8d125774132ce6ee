"""Shared test helpers: small canonical worlds written by hand, so expected values can be checked."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[1]


def write_world(folder: Path, tables: dict[str, str]) -> Path:
    """Write each table's CSV text (dedented, stripped) to ``folder/<table>.csv``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in tables.items():
        lines = [line.strip() for line in text.strip().splitlines()]
        (folder / f"{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


#: A tiny valid world whose trailing spends can be computed by hand (see test_attribute.py).
TINY = {
    "accounts": """
        account_id,advertiser_id
        a1,adv1
        a2,
        a3,adv2
        a4,adv1
    """,
    "advertisers": """
        advertiser_id,advertiser_name,parent_name
        adv1,Acme Video,Acme Group
        adv2,Beta Books,
    """,
    "ad_spend": """
        advertiser_id,period_start,period_end,spend,currency
        adv1,2023-01-01,2023-01-31,310,USD
        adv1,2023-03-01,2023-03-10,100,USD
        adv2,2023-01-01,2023-06-30,181,USD
    """,
    "enforcement": """
        case_id,account_id,flagged_at,policy,severity,action,decided_at,appealed,appeal_outcome
        c1,a1,2023-03-06T10:00:00Z,spam,0.2,removed,2023-03-07T10:00:00Z,true,reversed
        c2,a2,2023-04-06T10:00:00Z,spam,,no_action,,,
        c3,a3,2023-04-01T00:00:00Z,hate,0.9,restricted,2023-04-01T06:00:00Z,false,
        c4,a1,2023-01-05T00:00:00Z,hate,0.5,no_action,2023-04-01T06:00:00Z,,
        c5,a4,2023-02-15T23:30:00-02:00,spam,0.5,no_action,2023-02-16T12:00:00Z,,
    """,
    "watchlist": """
        account_id,list_name,listed_at,delisted_at
        a1,do-not-moderate,2023-03-01,
        a4,do-not-moderate,2023-03-01,2023-03-05
    """,
}


@pytest.fixture
def tiny_world(tmp_path: Path) -> Path:
    return write_world(tmp_path / "tiny", TINY)


def frame(text: str) -> pl.DataFrame:
    """A small polars frame from CSV text (for readable expected tables)."""
    import io

    lines = "\n".join(line.strip() for line in text.strip().splitlines())
    return pl.read_csv(io.StringIO(lines))
