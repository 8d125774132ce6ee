"""How fast and how lean is ``levelfield cells`` against DuckDB SQL and plain pandas?

Each implementation does the same work on the same files of a world written by
``bench/generate.py``: attribute every enforcement case (trailing spend of its advertiser in the
90 days before the flag date from the spend periods' cumulative curve, listing status at flag
time, spend tier by quartiles among advertisers' cases, the coverage exclusion) and aggregate the
cases to the four cell tables (account, spend, appeal and event cells; see ``analysis.cells``).

* ``levelfield``: ``levelfield cells --no-check`` (polars, streaming), the command itself;
* ``levelfield-checked``: the same with the data contract checked first (the default);
* ``duckdb``: one SQL script: an ASOF join on the cumulative spend curve, the cases in a
  temporary table, then four ``COPY (SELECT … GROUP BY … ORDER BY …)`` to Parquet;
* ``pandas``: what one would otherwise write: ``read_parquet``, ``merge``, two ``merge_asof``,
  ``groupby().size()``;
* ``floor``: polars reading the columns the attribution needs and nothing else.

Every implementation runs in its own child process, one after the other; the parent measures the
wall time and reads the child's peak resident memory from ``os.wait4``. Afterwards the cells of
every implementation are compared with levelfield's: counts must be equal, spend equal to 1e-9
(relative; the engines add floating-point numbers in different orders).

Usage::

    python bench/compare.py --data /tmp/worlds/10M --work /tmp/bench-10M \
        --only levelfield,duckdb,pandas,floor

Prints a Markdown table (and writes it to ``WORK/results.md``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

WINDOW_DAYS = 90
TABLES = ("account", "spend", "appeal", "event")
KEYS = {
    "account": ["account_id", "advertiser_account", "policy", "severity_band", "listed",
                "ever_listed", "post", "is_advertiser", "spend_tier", "enforced"],
    "spend": ["account_id", "flag_date", "policy", "severity_band", "listed", "enforced"],
    "appeal": ["account_id", "policy", "listed", "reversed"],
    "event": ["account_id", "ever_listed", "event_month", "policy", "severity_band", "enforced"],
}
#: Enforcement columns the attribution reads.
NEEDED = ["account_id", "flagged_at", "policy", "severity", "action", "appealed",
          "appeal_outcome"]
IMPLEMENTATIONS = ("levelfield", "levelfield-checked", "duckdb", "pandas", "floor")
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# DuckDB


DUCKDB_SQL = """
SET TimeZone = 'UTC';
CREATE TEMP TABLE cases AS
WITH spend AS (
    SELECT advertiser_id, period_start, period_end, spend AS amount,
           CAST(period_end - period_start + 1 AS BIGINT) AS days
    FROM read_parquet('{data}/ad_spend.parquet')
), curve AS (
    SELECT advertiser_id, period_start, days, amount / days AS daily_rate,
           SUM(amount) OVER (PARTITION BY advertiser_id ORDER BY period_start
                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) - amount
               AS spend_before
    FROM spend
), coverage AS (
    SELECT MIN(period_start) AS first_day, MAX(period_end) AS last_day FROM spend
), enforcement AS (
    SELECT e.account_id, e.flagged_at, CAST(e.flagged_at AS DATE) AS flag_date, e.policy,
           e.severity, e.action, e.appealed, e.appeal_outcome, a.advertiser_id
    FROM read_parquet('{data}/enforcement.parquet') e
    LEFT JOIN read_parquet('{data}/accounts.parquet') a USING (account_id)
), analysed AS (
    SELECT e.* FROM enforcement e, coverage c
    WHERE e.flag_date - INTERVAL {window} DAY >= c.first_day
      AND e.flag_date - INTERVAL 1 DAY <= c.last_day
), queries AS (
    SELECT DISTINCT advertiser_id, flag_date, CAST(flag_date - INTERVAL {window} DAY AS DATE)
           AS window_start
    FROM analysed WHERE advertiser_id IS NOT NULL
), through_flag AS (
    SELECT q.advertiser_id, q.flag_date, q.window_start,
           COALESCE(c.spend_before + c.daily_rate
                    * LEAST(CAST(q.flag_date - c.period_start AS BIGINT), c.days), 0.0) AS s
    FROM queries q ASOF LEFT JOIN curve c
      ON q.advertiser_id = c.advertiser_id
     AND CAST(q.flag_date - INTERVAL 1 DAY AS DATE) >= c.period_start
), trailing_spends AS (
    SELECT q.advertiser_id, q.flag_date,
           GREATEST(q.s - COALESCE(c.spend_before + c.daily_rate
                    * LEAST(CAST(q.window_start - c.period_start AS BIGINT), c.days), 0.0), 0.0)
               AS trailing_spend
    FROM through_flag q ASOF LEFT JOIN curve c
      ON q.advertiser_id = c.advertiser_id
     AND CAST(q.window_start - INTERVAL 1 DAY AS DATE) >= c.period_start
), watchlist AS (
    SELECT account_id, CAST(listed_at AS TIMESTAMPTZ) AS listed_from,
           CAST(delisted_at AS TIMESTAMPTZ) AS listed_until, listed_at
    FROM read_parquet('{data}/watchlist.parquet')
), first_listing AS (
    SELECT account_id, MIN(listed_at) AS listed_at FROM watchlist GROUP BY account_id
), listed_cases AS (
    SELECT e.account_id, e.flagged_at,
           EXISTS (SELECT 1 FROM watchlist w WHERE w.account_id = e.account_id
                   AND e.flagged_at >= w.listed_from
                   AND (w.listed_until IS NULL OR e.flagged_at < w.listed_until)) AS listed,
           e.flag_date, e.policy, e.severity, e.action, e.appealed, e.appeal_outcome,
           e.advertiser_id
    FROM analysed e
)
SELECT e.account_id, e.advertiser_id IS NOT NULL AS advertiser_account, e.policy,
       CASE WHEN e.severity IS NULL THEN 'unknown' WHEN e.severity < 1.0 / 3 THEN 'low'
            WHEN e.severity < 2.0 / 3 THEN 'medium' ELSE 'high' END AS severity_band,
       e.listed, f.listed_at IS NOT NULL AS ever_listed,
       e.flag_date, (SELECT MIN(listed_at) FROM watchlist) AS directive_date,
       COALESCE(t.trailing_spend, 0.0) AS trailing_spend,
       e.action <> 'no_action' AS enforced, COALESCE(e.appealed, false) AS appealed,
       COALESCE(e.appeal_outcome, '') = 'reversed' AS reversed
FROM listed_cases e
LEFT JOIN trailing_spends t ON t.advertiser_id = e.advertiser_id AND t.flag_date = e.flag_date
LEFT JOIN first_listing f ON f.account_id = e.account_id;

CREATE TEMP TABLE cuts AS
SELECT quantile_cont(trailing_spend, 0.25) AS q1, quantile_cont(trailing_spend, 0.5) AS q2,
       quantile_cont(trailing_spend, 0.75) AS q3
FROM cases WHERE trailing_spend > 0;

CREATE TEMP VIEW tiered AS
SELECT c.*, trailing_spend > 0 AS is_advertiser,
       CAST(CASE WHEN trailing_spend > 0 THEN 1 + CAST(trailing_spend > q1 AS INT)
            + CAST(trailing_spend > q2 AS INT) + CAST(trailing_spend > q3 AS INT) ELSE 0 END
            AS TINYINT) AS spend_tier,
       COALESCE(flag_date >= directive_date, false) AS post,
       CAST((year(flag_date) * 12 + month(flag_date))
            - (year(directive_date) * 12 + month(directive_date)) AS INTEGER) AS event_month
FROM cases c, cuts;

COPY (SELECT {account}, COUNT(*) AS n FROM tiered GROUP BY ALL ORDER BY ALL)
  TO '{out}/account_cells.parquet' (FORMAT parquet);
COPY (SELECT {spend}, COUNT(*) AS n, FIRST(trailing_spend) AS trailing_spend,
             log10(FIRST(trailing_spend)) AS log10_spend
      FROM tiered WHERE is_advertiser GROUP BY {spend} ORDER BY {spend})
  TO '{out}/spend_cells.parquet' (FORMAT parquet);
COPY (SELECT {appeal}, COUNT(*) AS n FROM tiered WHERE enforced AND appealed
      GROUP BY ALL ORDER BY ALL) TO '{out}/appeal_cells.parquet' (FORMAT parquet);
COPY (SELECT {event}, COUNT(*) AS n FROM tiered WHERE directive_date IS NOT NULL
      GROUP BY ALL ORDER BY ALL) TO '{out}/event_cells.parquet' (FORMAT parquet);
"""


def run_duckdb(data: Path, out: Path) -> None:
    import duckdb

    sql = DUCKDB_SQL.format(data=data, out=out, window=WINDOW_DAYS,
                            **{t: ", ".join(KEYS[t]) for t in TABLES})
    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count()}; SET temp_directory = '{out}/duckdb.tmp';")
    con.execute(sql)
    con.close()
    shutil.rmtree(out / "duckdb.tmp", ignore_errors=True)


# --------------------------------------------------------------------------------------------
# pandas


def run_pandas(data: Path, out: Path) -> None:
    import numpy as np
    import pandas as pd

    enf = pd.read_parquet(data / "enforcement.parquet", columns=NEEDED)
    accounts = pd.read_parquet(data / "accounts.parquet", columns=["account_id", "advertiser_id"])
    spend = pd.read_parquet(data / "ad_spend.parquet")
    watch = pd.read_parquet(data / "watchlist.parquet")

    enf["flag_date"] = (enf["flagged_at"].dt.tz_convert("UTC").dt.tz_localize(None).dt.floor("D")
                        .astype("datetime64[us]"))
    first_day = pd.Timestamp(spend["period_start"].min())
    last_day = pd.Timestamp(spend["period_end"].max())
    day = pd.Timedelta(days=1)
    window = pd.Timedelta(days=WINDOW_DAYS)
    enf = enf[(enf["flag_date"] - window >= first_day) & (enf["flag_date"] - day <= last_day)]
    enf = enf.merge(accounts, on="account_id", how="left")

    spend["period_start"] = pd.to_datetime(spend["period_start"]).astype("datetime64[us]")
    spend["period_end"] = pd.to_datetime(spend["period_end"]).astype("datetime64[us]")
    spend = spend.sort_values(["advertiser_id", "period_start"])
    spend["days"] = (spend["period_end"] - spend["period_start"]).dt.days + 1
    spend["daily_rate"] = spend["spend"] / spend["days"]
    spend["spend_before"] = spend.groupby("advertiser_id")["spend"].cumsum() - spend["spend"]
    curve = spend[["advertiser_id", "period_start", "days", "daily_rate", "spend_before"]]
    curve = curve.sort_values("period_start")

    def before(queries: pd.DataFrame, column: str) -> np.ndarray:
        q = queries.assign(_key=queries[column] - day).sort_values("_key")
        joined = pd.merge_asof(q, curve, left_on="_key", right_on="period_start",
                               by="advertiser_id", direction="backward")
        elapsed = (joined[column] - joined["period_start"]).dt.days
        amount = joined["spend_before"] + joined["daily_rate"] * np.minimum(elapsed,
                                                                            joined["days"])
        joined["_amount"] = amount.fillna(0.0)
        return joined

    queries = (enf.loc[enf["advertiser_id"].notna(), ["advertiser_id", "flag_date"]]
               .drop_duplicates().reset_index(drop=True))
    queries["window_start"] = queries["flag_date"] - window
    at_flag = before(queries, "flag_date")[["advertiser_id", "flag_date", "window_start",
                                             "_amount"]]
    at_start = before(at_flag.rename(columns={"_amount": "_through_flag"}), "window_start")
    at_start["trailing_spend"] = (at_start["_through_flag"] - at_start["_amount"]).clip(lower=0)
    enf = enf.merge(at_start[["advertiser_id", "flag_date", "trailing_spend"]],
                    on=["advertiser_id", "flag_date"], how="left")
    enf["trailing_spend"] = enf["trailing_spend"].fillna(0.0)

    watch["listed_from"] = (pd.to_datetime(watch["listed_at"]).astype("datetime64[us]")
                            .dt.tz_localize("UTC"))
    watch["listed_until"] = (pd.to_datetime(watch["delisted_at"]).astype("datetime64[us]")
                             .dt.tz_localize("UTC"))
    enf = enf.reset_index(drop=True)
    hits = enf[["account_id", "flagged_at"]].reset_index().merge(watch, on="account_id")
    on_list = (hits["flagged_at"] >= hits["listed_from"]) & (
        hits["listed_until"].isna() | (hits["flagged_at"] < hits["listed_until"]))
    enf["listed"] = enf.index.isin(hits.loc[on_list, "index"])
    first = watch.groupby("account_id")["listed_at"].min()
    enf["ever_listed"] = enf["account_id"].isin(first.index)
    directive = pd.Timestamp(watch["listed_at"].min())

    severity = enf["severity"]
    enf["severity_band"] = np.select(
        [severity.isna(), severity < 1 / 3, severity < 2 / 3], ["unknown", "low", "medium"],
        "high")
    enf["enforced"] = enf["action"] != "no_action"
    enf["appealed"] = enf["appealed"].fillna(False).astype(bool)
    enf["reversed"] = enf["appeal_outcome"].fillna("") == "reversed"
    enf["advertiser_account"] = enf["advertiser_id"].notna()
    enf["is_advertiser"] = enf["trailing_spend"] > 0
    cuts = enf.loc[enf["is_advertiser"], "trailing_spend"].quantile([0.25, 0.5, 0.75]).to_numpy()
    tier = 1 + sum((enf["trailing_spend"] > c).astype("int8") for c in cuts)
    enf["spend_tier"] = np.where(enf["is_advertiser"], tier, 0).astype("int8")
    enf["post"] = enf["flag_date"] >= directive
    enf["event_month"] = ((enf["flag_date"].dt.year * 12 + enf["flag_date"].dt.month)
                          - (directive.year * 12 + directive.month)).astype("int32")
    enf["flag_date"] = enf["flag_date"].dt.date

    def count(frame: pd.DataFrame, key: list[str], name: str, **extra) -> None:
        cells = frame.groupby(key, sort=True, dropna=False).agg(
            n=("account_id", "size"), **extra).reset_index()
        if "trailing_spend" in cells:
            cells["log10_spend"] = np.log10(cells["trailing_spend"])
        cells.to_parquet(out / f"{name}_cells.parquet", index=False)

    count(enf, KEYS["account"], "account")
    spenders = enf[enf["is_advertiser"]]
    count(spenders, KEYS["spend"], "spend", trailing_spend=("trailing_spend", "first"))
    count(enf[enf["enforced"] & enf["appealed"]], KEYS["appeal"], "appeal")
    count(enf, KEYS["event"], "event")


# --------------------------------------------------------------------------------------------
# The floor, and levelfield


def run_floor(data: Path, out: Path) -> None:
    # Aggregates that need every value decoded (a plain max could come from Parquet statistics).
    scan = pl.scan_parquet(data / "enforcement.parquet")
    schema = scan.collect_schema()
    work = []
    for c in NEEDED:
        column = pl.col(c)
        if schema[c] == pl.String:
            work.append(column.str.len_bytes().sum().alias(c))
        elif isinstance(schema[c], pl.Datetime):
            work.append(column.dt.day().cast(pl.Int64).sum().alias(c))
        else:
            work.append(column.cast(pl.Float64).sum().alias(c))
    scan.select(work).collect(engine="streaming").write_parquet(out / "floor.parquet")


def command(name: str, data: Path, out: Path) -> list[str]:
    if name.startswith("levelfield"):
        levelfield = [sys.executable, "-m", "analysis.cli"]
        return [*levelfield, "cells", "--data", str(data), "--out", str(out),
                *(["--no-check"] if name == "levelfield" else [])]
    return [sys.executable, __file__, "--child", name, "--data", str(data), "--work", str(out)]


def measure(name: str, data: Path, out: Path) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (GB) and CPU seconds (user + system) of one implementation, run
    in a child process. On a machine shared with other work the CPU time varies less than the
    wall time, so it helps to read the ratios."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.perf_counter()
    with (out.parent / f"{name}.log").open("w") as log:
        child = subprocess.Popen(command(name, data, out), cwd=ROOT, stdout=log, stderr=log)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed (exit {os.waitstatus_to_exitcode(status)})")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss / 1024 / 1024, cpu  # ru_maxrss is in KiB on Linux


def same_cells(reference: Path, other: Path) -> str:
    """'yes' if every table matches levelfield's (counts exact, spend to 1e-9), else what differs."""
    for table in TABLES:
        a = pl.read_parquet(reference / f"{table}_cells.parquet")
        b = pl.read_parquet(other / f"{table}_cells.parquet").select(a.columns)
        b = b.cast(a.schema)
        if a.height != b.height:
            return f"{table}: {b.height:,} rows, levelfield {a.height:,}"
        exact = [c for c in a.columns if a.schema[c] != pl.Float64]
        if not a.select(exact).equals(b.select(exact)):
            return f"{table}: keys or counts differ"
        for c in (c for c in a.columns if a.schema[c] == pl.Float64):
            gap = ((a[c] - b[c]).abs() / a[c].abs().clip(lower_bound=1e-300)).max()
            if gap is not None and gap > 1e-9:
                return f"{table}.{c}: relative difference {gap:.1e}"
    return "yes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--work", required=True, type=Path, help="scratch folder for outputs")
    parser.add_argument("--only", default="levelfield,levelfield-checked,duckdb,pandas,floor",
                        help=f"comma-separated, from {', '.join(IMPLEMENTATIONS)}")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = args.data.resolve()
    if args.child:
        {"duckdb": run_duckdb, "pandas": run_pandas, "floor": run_floor}[args.child](
            data, args.work.resolve())
        return

    names = [n for n in args.only.split(",") if n]
    rows = {}
    for name in names:
        wall, rss, cpu = measure(name, data, args.work / name)
        rows[name] = (wall, rss, cpu)
        print(f"{name}: {wall:.1f} s, peak RSS {rss:.2f} GB, CPU {cpu:.1f} s", file=sys.stderr,
              flush=True)
    cases = pl.scan_parquet(data / "enforcement.parquet").select(pl.len()).collect().item()
    lines = [f"World {data.name}: {cases:,} cases; {os.cpu_count()} cores.", "",
             ("| implementation | wall s | peak RSS GB | CPU s | wall / DuckDB | RSS / DuckDB "
              "| CPU / DuckDB | same cells |"),
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    base = rows.get("duckdb")
    for name, (wall, rss, cpu) in rows.items():
        ratio = ((f"{wall / base[0]:.2f}", f"{rss / base[1]:.2f}", f"{cpu / base[2]:.2f}")
                 if base else ("", "", ""))
        same = ("" if name == "floor" or "levelfield" not in rows or name == "levelfield"
                else same_cells(args.work / "levelfield", args.work / name))
        lines.append(f"| {name} | {wall:.1f} | {rss:.2f} | {cpu:.1f} | {ratio[0]} | {ratio[1]} "
                     f"| {ratio[2]} | {same} |")
    text = "\n".join(lines) + "\n"
    (args.work / "results.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
