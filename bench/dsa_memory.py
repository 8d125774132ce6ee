"""Benchmark: does the DSA Transparency Database reader stay in bounded memory as days are added?

Generates synthetic daily dumps shaped like the official ones (a zip per day holding zipped CSV
parts, ``sor-global-YYYY-MM-DD-full.zip``) by replicating and perturbing the 20 rows of the shipped
v2 sample (new uuids, platforms, account types, dates; about 0.1% of rows published twice, as
happens in real dumps). Then, for 1, 2 and 4 days (by default), it runs
:func:`analysis.sources.dsa_tdb.read` in a fresh Python process, forces the whole read (every row
parsed, checked, deduplicated and counted) and reports the child's peak resident memory
(``VmHWM`` from /proc/self/status, read in the child once the read is done, and again after the
study with ``--with-study``). A reader that streams shows a flat peak while the
rows grow.

Each size is read twice: with polars' allocator (jemalloc) as configured by default, which keeps
freed pages for a few seconds and so shows more resident memory than is in use, and with
``_RJEM_MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0``, which hands freed pages back at once and
so shows the memory actually in use (at some cost in speed).

Run on demand (not part of the tests)::

    python bench/dsa_memory.py                      # 1,000,000 rows per day, 1, 2, 4 days
    python bench/dsa_memory.py --rows-per-day 200000 --days 1 2 4 --with-study
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "reference" / "dsa_tdb" / "sor-global-2025-07-01-full_first20rows.csv"
PLATFORMS = ("Marketplace A", "Marketplace B", "Video C", "Photos D", "Social E", "Social F",
             "Classifieds G", "Games H")
FIRST_DAY = date(2025, 7, 1)  # the v2 sample's day; every generated day is v2
DECAY_NOW = "dirty_decay_ms:0,muzzy_decay_ms:0"


def generate(folder: Path, *, days: int, rows_per_day: int, parts_per_day: int) -> list[Path]:
    """Write ``days`` daily dump zips into ``folder``; return their paths in day order."""
    import polars as pl

    base = pl.read_csv(SAMPLE, infer_schema=False)
    folder.mkdir(parents=True, exist_ok=True)
    zips = []
    per_part = -(-rows_per_day // parts_per_day)
    for d in range(days):
        day = FIRST_DAY + timedelta(days=d)
        stem = f"sor-global-{day.isoformat()}-full"
        outer = folder / f"{stem}.zip"
        with zipfile.ZipFile(outer, "w", compression=zipfile.ZIP_STORED) as archive:
            for p in range(parts_per_day):
                start = p * per_part
                n = min(per_part, rows_per_day - start)
                if n <= 0:
                    break
                part = _part(base, day=day, day_index=d, start=start, n=n)
                csv_name = f"{stem}-{p:05d}-00000.csv"
                inner = folder / f"{stem}-{p:05d}.csv.zip"
                with zipfile.ZipFile(inner, "w", compression=zipfile.ZIP_DEFLATED,
                                     compresslevel=1) as inner_zip:
                    inner_zip.writestr(csv_name, part.write_csv())
                archive.write(inner, inner.name)
                inner.unlink()
        zips.append(outer)
    return zips


def _part(base, *, day: date, day_index: int, start: int, n: int):
    import polars as pl

    i = pl.int_range(start, start + n, eager=False, dtype=pl.Int64)
    # Every 1000th row repeats the row before it exactly (same uuid, same cells).
    serial = (pl.when(i % 1000 == 999).then(i - 1).otherwise(i)).alias("_serial")
    frame = pl.LazyFrame().select(serial).with_columns(
        (pl.col("_serial") % base.height).alias("_template"))
    rows = frame.join(base.with_row_index("_template").with_columns(
        pl.col("_template").cast(pl.Int64)).lazy(), on="_template", how="left",
        maintain_order="left")
    h = pl.col("_serial").hash(seed=day_index)
    uuid = pl.format("{}-{}-4{}-8{}-{}",
                     pl.lit(f"{day_index:08x}"),
                     (pl.col("_serial") // 65536 % 65536).cast(pl.String).str.zfill(4),
                     (pl.col("_serial") % 4096).cast(pl.String).str.zfill(3),
                     (pl.col("_serial") // 4096 % 4096).cast(pl.String).str.zfill(3),
                     pl.col("_serial").cast(pl.String).str.zfill(12))
    account = (pl.when(h % 10 < 3).then(pl.lit("ACCOUNT_TYPE_BUSINESS"))
               .when(h % 10 < 8).then(pl.lit("ACCOUNT_TYPE_PRIVATE"))
               .otherwise(pl.lit(None, pl.String)))
    platform = pl.lit(pl.Series(PLATFORMS)).gather((h // 10 % len(PLATFORMS)).cast(pl.Int64))
    content = (pl.lit(day) - pl.duration(days=(h // 100 % 30).cast(pl.Int64))).dt.strftime(
        "%Y-%m-%d 00:00:00")
    created = (pl.lit(day).cast(pl.Datetime) + pl.duration(seconds=(h % 86400).cast(pl.Int64))
               ).dt.strftime("%Y-%m-%d %H:%M:%S")
    # Some statements demote instead of removing, and some were found without automation, so
    # that the study has both outcomes to compare.
    demoted = pl.lit('["DECISION_VISIBILITY_CONTENT_DEMOTED"]')
    visibility = pl.when(h // 1000 % 7 == 0).then(demoted).otherwise(pl.col("decision_visibility"))
    automated = pl.when(h // 7000 % 5 == 0).then(pl.lit("No")).otherwise(
        pl.col("automated_detection"))
    return rows.with_columns(
        decision_visibility=visibility, automated_detection=automated,
        uuid=uuid, account_type=account, platform_name=platform, content_date=content,
        application_date=pl.lit(f"{day.isoformat()} 00:00:00"), created_at=created,
    ).select(base.columns).collect()


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB.

    On Linux ``VmHWM`` from /proc: ``ru_maxrss`` would not do, because Linux carries it over
    ``exec`` from the forking parent, so a child of a large parent reports the parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    # Elsewhere ru_maxrss: kilobytes on Linux, bytes on macOS.
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def child(folder: Path, cache: Path, with_study: bool) -> None:
    """Read every day in ``folder`` and print rows, time and this process's peak memory."""
    import polars as pl

    from analysis.sources.dsa_tdb import read

    started = time.perf_counter()
    dataset = read(folder, cache_dir=cache)
    statements = dataset["statements"].select(pl.len()).collect().item()
    enforcement = dataset["enforcement"].select(pl.len()).collect().item()
    report = {"published": sum(f.rows for f in dataset.files), "statements": statements,
              "enforcement": enforcement, "excluded": dataset.excluded,
              "read_seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}
    if with_study:
        from analysis.studies.dsa_transparency import run_study

        started = time.perf_counter()
        results = run_study(dataset)
        report["study_seconds"] = time.perf_counter() - started
        report["study_status"] = [r.status for r in results]
        report["peak_rss_mb_study"] = peak_rss_mb()
    print(json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-day", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--parts-per-day", type=int, default=4)
    parser.add_argument("--with-study", action="store_true",
                        help="also run the DSA study in the child and time it")
    parser.add_argument("--work", type=Path, help="folder for the dumps (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated dumps")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.cache, args.with_study)
        return

    work = args.work or Path(tempfile.mkdtemp(prefix="levelfield-dsa-bench-"))
    try:
        started = time.perf_counter()
        zips = generate(work / "dumps", days=max(args.days), rows_per_day=args.rows_per_day,
                        parts_per_day=args.parts_per_day)
        print(f"generated {max(args.days)} day(s) x {args.rows_per_day:,} rows in "
              f"{time.perf_counter() - started:.0f} s under {work}", flush=True)
        rows = []
        for days in args.days:
            folder = work / f"days-{days}"
            folder.mkdir()
            for z in zips[:days]:
                (folder / z.name).symlink_to(z)
            report: dict = {}
            for setting, env in (("default", {}), ("decay0", {"_RJEM_MALLOC_CONF": DECAY_NOW})):
                cache = work / f"cache-{days}-{setting}"
                command = [sys.executable, str(Path(__file__).resolve()), "--child", str(folder),
                           "--cache", str(cache)] + (["--with-study"] if args.with_study else [])
                done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                                      check=False, env={**os.environ, **env})
                shutil.rmtree(cache, ignore_errors=True)
                if done.returncode != 0:
                    sys.exit(f"the reader failed on {days} day(s):\n{done.stderr}")
                child_report = json.loads(done.stdout.strip().splitlines()[-1])
                if setting == "default":
                    report = child_report
                else:
                    report["peak_rss_mb_decay0"] = child_report["peak_rss_mb"]
                    report["read_seconds_decay0"] = child_report["read_seconds"]
            report["days"] = days
            report["input_mb"] = sum(z.stat().st_size for z in zips[:days]) / 2**20
            rows.append(report)
            print(json.dumps(report), flush=True)
        _print_table(rows, with_study=args.with_study)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def _print_table(rows: list[dict], *, with_study: bool) -> None:
    header = ["days", "rows published", "statements", "duplicates", "zips MB", "read s",
              "peak RSS MB", "read s*", "peak RSS MB*"] + (
        ["study s", "peak RSS MB, read + study"] if with_study else [])
    lines = [header]
    for r in rows:
        line = [str(r["days"]), f"{r['published']:,}", f"{r['statements']:,}",
                f"{sum(r['excluded'].values()):,}", f"{r['input_mb']:.1f}",
                f"{r['read_seconds']:.1f}", f"{r['peak_rss_mb']:.0f}",
                f"{r['read_seconds_decay0']:.1f}", f"{r['peak_rss_mb_decay0']:.0f}"]
        if with_study:
            line += [f"{r['study_seconds']:.1f}", f"{r['peak_rss_mb_study']:.0f}"]
        lines.append(line)
    widths = [max(len(line[k]) for line in lines) for k in range(len(header))]
    for k, line in enumerate(lines):
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))
        if k == 0:
            print("  ".join("-" * w for w in widths))
    print("* freed pages returned to the system at once (_RJEM_MALLOC_CONF=" + DECAY_NOW + ")")


if __name__ == "__main__":
    main()
