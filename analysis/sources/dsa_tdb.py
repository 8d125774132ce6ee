"""Adapter for the EU DSA Transparency Database: statements of reasons, as the EU publishes them.

Under Article 17 of the Digital Services Act a platform that restricts a user's content or account
must give the user a *statement of reasons*, and under Article 24(5) it must send each one to the
Commission's Transparency Database. The database publishes them in daily dumps
(``sor-global-YYYY-MM-DD-full.zip`` and the smaller ``…-light.zip``): a zip of zips, each inner
zip holding CSV parts, one row per statement. The data are © European Union, CC BY 4.0; cite
doi:10.2906/134353607485211.

``read(path)`` takes a daily dump zip (zip of zips, or zip of CSV parts), a plain CSV part, a
Parquet file with the same columns, or a folder holding any of these (many days), and returns a
:class:`~analysis.load.Dataset` with ``source="dsa-tdb"``.

What the dataset holds, and why
-------------------------------
The statements do not fit the canonical contract whole: they have no ad spend, no account ids,
no flag time and, above all, no *denominator* — a statement exists only where a platform restricted
something, so content that was reported and left up is not in the data. The dataset therefore
holds the parsed statements themselves, and next to them the canonical-style rows that can
honestly be derived:

``statements``
    One row per statement, every published column typed (see :data:`STATEMENT_SCHEMA`): JSON-array
    cells (``decision_visibility``, ``category_addition``, ``category_specification``,
    ``content_type``, ``territorial_scope``) as lists of strings, ``Yes``/``No`` as booleans,
    timestamps (published as ``YYYY-MM-DD HH:MM:SS``, without offset) as UTC datetimes, and empty
    cells as nulls. Both schema versions are read: v1 (37 columns, dumps before 2025-07-01, 14
    categories) and v2 (38 columns: ``content_id_ean`` after ``content_date``; 16 categories), full
    or light (the light dumps leave out :data:`LIGHT_DROPPED`; those columns are null). Added
    columns: ``schema_version`` (1 or 2), ``dump_variant`` (``full``/``light``), ``source_file``
    (e.g. ``day.zip/day-00000.csv.zip/day-00000-00000.csv``) and ``source_row`` (the row in that
    file, from 1), so every statement can be traced to its place in the dump. This is the table the
    study :mod:`analysis.studies.dsa_transparency` uses.
``enforcement``
    The contract's enforcement columns, one row per statement that records a restriction:
    ``case_id`` = ``uuid``; ``account_id`` = a *synthetic* key, platform and account type
    (e.g. ``TikTok/business``, ``TikTok/private``, ``TikTok/not reported``) because the data
    identify no accounts — it groups statements, it is not an account and must not be used to
    cluster; ``flagged_at`` = ``content_date`` (when the content was posted — the data have no flag
    time; ``application_date``, then ``created_at``, where it is missing); ``decided_at`` =
    ``application_date`` (null where it lies before ``content_date``, a reporting error);
    ``policy`` = ``category``; ``severity`` null (the data have none); ``detection`` from
    ``automated_detection`` and ``source_type`` (see :func:`detection`); ``action`` from the
    measures (see :func:`measure`): ``removed`` when the statement records removal or disabling of
    the content, suspension or termination of the account, or total suspension or termination of
    the service, else ``restricted``. There is never ``no_action`` (no statement is issued for
    content left up), so an "enforcement rate" cannot be computed from these rows. ``appealed``
    and ``appeal_outcome`` are null (not published).
``accounts``
    One row per synthetic account key, ``advertiser_id`` null, ``account_name`` the platform,
    ``account_type`` ``business``/``private``/null.

There are no ``advertisers`` or ``ad_spend`` tables, so the spend battery cannot run on this
source; run :func:`analysis.studies.dsa_transparency.run_study` instead.

Reading in bounded memory
-------------------------
The full dumps run to terabytes, so nothing is ever held whole. Zip members are extracted one at a
time to a work folder (an inner zip, then its CSV parts one by one) and deleted after use. Each part
is streamed by polars into a Parquet file of raw cells with three 64-bit hashes (two of the uuid,
one of the whole row), checked, and later streamed again into a typed Parquet file; memory does not
grow with the number of days. Exact duplicate rows (the dumps contain some) are found across all
files: the row keys are hashed into buckets of about :data:`DEDUP_BUCKET_ROWS` rows, written to
disk, and each bucket is searched on its own. The first occurrence (in file order, then row order)
is kept; later copies are removed and counted in ``Dataset.excluded`` under :data:`DUPLICATE`.
A uuid repeated with *different* content keeps its first row and the others are counted under
:data:`UUID_CONFLICT`; statements recording no restriction at all stay in ``statements`` but are
left out of ``enforcement`` and counted under :data:`NO_RESTRICTION`.

The typed Parquet files live in ``cache_dir`` (by default a temporary folder removed when Python
exits). With a ``cache_dir`` given, they are kept in a sub-folder named after the inputs' SHA-256
checksums, and a later ``read`` of the same files reuses them.

Errors
------
Bad input raises :class:`~analysis.schema.DataError`. Reading stops at the first file (or zip
member) with problems and reports every problem in it: a truncated or half-written zip, or a
member failing its CRC, is named; a checksum that differs from a published ``.sha1`` beside the zip
is reported; a file whose columns are not those of a statements dump says which are missing and
which unexpected (and which schema version or variant its name promises); bad JSON in a list cell,
a ``Yes``/``No`` cell holding something else, an unreadable timestamp or an empty ``uuid`` is
located by file, line, column and value; a file that is not UTF-8 is reported with the line, the
column and the bytes that give it away.
"""

from __future__ import annotations

import atexit
import csv
import gzip
import hashlib
import json
import math
import re
import shutil
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from analysis.load import Dataset, FileInfo, parse_timestamp
from analysis.schema import CONTRACT, DataError, Problem

SOURCE = "dsa-tdb"
#: Bumped whenever the processed files change meaning, so that old caches are not reused.
READER_VERSION = 1

DUPLICATE = "exact duplicate row in the dump"
UUID_CONFLICT = "uuid repeated with different content (first row kept)"
NO_RESTRICTION = "statement records no restriction"

#: Columns of schema v1 (dumps before 2025-07-01), in published order.
V1_COLUMNS = (
    "uuid", "decision_visibility", "decision_visibility_other", "end_date_visibility_restriction",
    "decision_monetary", "decision_monetary_other", "end_date_monetary_restriction",
    "decision_provision", "end_date_service_restriction", "decision_account",
    "end_date_account_restriction", "account_type", "decision_ground",
    "decision_ground_reference_url", "illegal_content_legal_ground", "illegal_content_explanation",
    "incompatible_content_ground", "incompatible_content_explanation",
    "incompatible_content_illegal", "category", "category_addition", "category_specification",
    "category_specification_other", "content_type", "content_type_other", "content_language",
    "content_date", "territorial_scope", "application_date", "decision_facts", "source_type",
    "source_identity", "automated_detection", "automated_decision", "platform_name",
    "platform_uid", "created_at",
)
#: Schema v2 (from 2025-07-01) adds ``content_id_ean`` after ``content_date``.
V2_COLUMNS = (*V1_COLUMNS[:V1_COLUMNS.index("content_date") + 1], "content_id_ean",
              *V1_COLUMNS[V1_COLUMNS.index("content_date") + 1:])
#: The first day of schema v2 dumps.
V2_FROM = "2025-07-01"
#: Columns the light dumps leave out.
LIGHT_DROPPED = ("illegal_content_explanation", "incompatible_content_explanation",
                 "territorial_scope", "decision_facts")
#: (schema version, variant) -> columns.
LAYOUTS: dict[tuple[int, str], tuple[str, ...]] = {
    (version, variant): tuple(c for c in columns if variant == "full" or c not in LIGHT_DROPPED)
    for version, columns in ((2, V2_COLUMNS), (1, V1_COLUMNS))
    for variant in ("full", "light")
}

#: Cells holding a JSON array of strings.
LIST_COLUMNS = ("decision_visibility", "category_addition", "category_specification",
                "content_type", "territorial_scope")
YES_NO_COLUMNS = ("incompatible_content_illegal", "automated_detection")
TIMESTAMP_COLUMNS = ("end_date_visibility_restriction", "end_date_monetary_restriction",
                     "end_date_service_restriction", "end_date_account_restriction",
                     "content_date", "application_date", "created_at")
#: Set by the database itself, so never empty in a complete row.
NOT_NULL_COLUMNS = ("uuid", "created_at")

#: Statement categories of schema v1 (14) and v2 (16). Not enforced: dumps after the change
#: still carry some v1 categories, and the analysis only uses them as strata.
CATEGORIES_V1 = tuple(f"STATEMENT_CATEGORY_{c}" for c in (
    "ANIMAL_WELFARE", "DATA_PROTECTION_AND_PRIVACY_VIOLATIONS", "ILLEGAL_OR_HARMFUL_SPEECH",
    "INTELLECTUAL_PROPERTY_INFRINGEMENTS", "NEGATIVE_EFFECTS_ON_CIVIC_DISCOURSE_OR_ELECTIONS",
    "NON_CONSENSUAL_BEHAVIOUR", "PORNOGRAPHY_OR_SEXUALIZED_CONTENT", "PROTECTION_OF_MINORS",
    "RISK_FOR_PUBLIC_SECURITY", "SCAMS_AND_FRAUD", "SELF_HARM", "SCOPE_OF_PLATFORM_SERVICE",
    "UNSAFE_AND_ILLEGAL_PRODUCTS", "VIOLENCE"))
CATEGORIES_V2 = tuple(f"STATEMENT_CATEGORY_{c}" for c in (
    "ANIMAL_WELFARE", "CONSUMER_INFORMATION", "CYBER_VIOLENCE", "CYBER_VIOLENCE_AGAINST_WOMEN",
    "DATA_PROTECTION_AND_PRIVACY_VIOLATIONS", "ILLEGAL_OR_HARMFUL_SPEECH",
    "INTELLECTUAL_PROPERTY_INFRINGEMENTS", "NEGATIVE_EFFECTS_ON_CIVIC_DISCOURSE_OR_ELECTIONS",
    "NOT_SPECIFIED_NOTICE", "OTHER_VIOLATION_TC", "PROTECTION_OF_MINORS",
    "RISK_FOR_PUBLIC_SECURITY", "SCAMS_AND_FRAUD", "SELF_HARM", "UNSAFE_AND_PROHIBITED_PRODUCTS",
    "VIOLENCE"))

ACCOUNT_TYPES = {"ACCOUNT_TYPE_BUSINESS": "business", "ACCOUNT_TYPE_PRIVATE": "private"}
#: Visibility decisions that take the content away; every other one (demoted, age-restricted,
#: interaction-restricted, labelled, other) leaves it up in some form.
REMOVAL_VISIBILITY = ("DECISION_VISIBILITY_CONTENT_REMOVED", "DECISION_VISIBILITY_CONTENT_DISABLED")
TOTAL_PROVISION = ("DECISION_PROVISION_TOTAL_SUSPENSION", "DECISION_PROVISION_TOTAL_TERMINATION")
#: A statement's measure is the most severe it records, in this order (see :func:`measure`).
MEASURES = ("account", "service", "removal", "restriction", "monetary", "none")
#: Measures at least as severe as removing the content; ``action`` is ``removed`` for these.
SEVERE_MEASURES = ("account", "service", "removal")
DETECTIONS = {"SOURCE_ARTICLE_16": "user_report", "SOURCE_TRUSTED_FLAGGER": "trusted_flagger",
              "SOURCE_TYPE_OTHER_NOTIFICATION": "other_notice",
              "SOURCE_VOLUNTARY": "own_initiative"}

_UTC = pl.Datetime("us", "UTC")
_TEXT_LIST = pl.List(pl.String)
#: The parsed statements: every published column (v2 order), typed, then where each came from.
STATEMENT_SCHEMA = pl.Schema(
    {c: (_TEXT_LIST if c in LIST_COLUMNS else pl.Boolean if c in YES_NO_COLUMNS
         else _UTC if c in TIMESTAMP_COLUMNS else pl.String) for c in V2_COLUMNS}
    | {"schema_version": pl.Int8, "dump_variant": pl.String, "source_file": pl.String,
       "source_row": pl.Int64}
)

#: Rows of keys per deduplication bucket; bounds the memory of the duplicate search.
DEDUP_BUCKET_ROWS = 250_000
#: Rows per Parquet row group written. Statements are wide (up to about 1 kB each in the full
#: dumps), so small groups keep what a later scan holds per group small.
ROW_GROUP_ROWS = 50_000
MAX_PROBLEMS = 1000  # problems of one kind listed one by one

_ROW, _PART = "_row", "_part"
_UUID_A, _UUID_B, _ROW_HASH = "_uuid_a", "_uuid_b", "_row_hash"
_KEYS = (_PART, _ROW, _UUID_A, _UUID_B, _ROW_HASH)
_DATA_SUFFIXES = (".zip", ".csv", ".csv.gz", ".parquet")
_JSON_STRING = r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"'
_JSON_STRING_ARRAY = rf"^\s*\[\s*(?:{_JSON_STRING}\s*(?:,\s*{_JSON_STRING}\s*)*)?\]\s*$"
_DUMP_NAME = re.compile(r"sor-[a-z0-9]+-(\d{4}-\d{2}-\d{2})-(full|light)")


def read(path: str | Path, *, cache_dir: str | Path | None = None) -> Dataset:
    """Read DSA Transparency Database dumps into parsed statements and canonical-style tables.

    Parameters
    ----------
    path : str or Path
        A daily dump zip (zip of zips or zip of CSV parts, full or light), a CSV part (``.csv`` or
        ``.csv.gz``), a Parquet file with the dump's columns, or a folder holding any of these
        (searched recursively, in path order).
    cache_dir : str or Path, optional
        Where the processed Parquet files are kept (in a sub-folder named after the inputs'
        checksums, reused by later reads of the same files). By default a temporary folder,
        removed when Python exits.

    Returns
    -------
    Dataset
        ``source="dsa-tdb"``; tables ``statements``, ``enforcement`` and ``accounts`` as polars
        LazyFrames over the processed files (see the module docstring for what each holds and how
        statements map to enforcement rows); ``files``: each input file with its SHA-256 and its
        number of data rows as published (duplicates included); ``excluded``: rows removed before
        ``enforcement``, by reason (:data:`DUPLICATE`, :data:`UUID_CONFLICT`,
        :data:`NO_RESTRICTION`), so the coverage ledger still accounts for every published row.

    Raises
    ------
    DataError
        With file, line, column and value, for input that is not a complete, well-formed dump
        (see the module docstring).

    Examples
    --------
    >>> from analysis.config import REFERENCE_DATA_DIR
    >>> dataset = read(REFERENCE_DATA_DIR / "dsa_tdb" / "sor-global-2024-03-14-full_first12rows.csv")
    >>> dataset.files[0].rows, dataset.excluded
    (12, {'exact duplicate row in the dump': 1})
    >>> dataset["statements"].select(pl.len()).collect().item()
    11
    """
    root = Path(path)
    inputs = _input_files(root)
    checksums = [_checksums(file, name) for file, name in inputs]
    fingerprint = hashlib.sha256(json.dumps(
        {"reader": READER_VERSION, "inputs": [[name, sha] for (_, name), sha in
                                              zip(inputs, checksums, strict=True)]}
    ).encode()).hexdigest()
    if cache_dir is None:
        base = Path(tempfile.mkdtemp(prefix="levelfield-dsa-tdb-"))
        atexit.register(shutil.rmtree, base, ignore_errors=True)
    else:
        base = Path(cache_dir)
    folder = base / f"dsa_tdb-{fingerprint[:16]}"
    done = folder / "done.json"
    if not done.exists():
        if folder.exists():  # an earlier read stopped half-way
            shutil.rmtree(folder)
        try:
            summary = _process(inputs, checksums, folder, source=str(root))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        done.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    summary = json.loads(done.read_text(encoding="utf-8"))
    return _dataset(root, folder, summary)


# --------------------------------------------------------------------------------------------
# Canonical-style tables derived from the statements


def measure() -> pl.Expr:
    """The most severe measure a statement records, as one of :data:`MEASURES`.

    ``account``: the account was suspended or terminated (``decision_account``); ``service``: the
    provision of the service was suspended or terminated in total; ``removal``: the content was
    removed or disabled; ``restriction``: the content was kept but demoted, age-restricted,
    interaction-restricted, labelled or otherwise restricted (``DECISION_VISIBILITY_OTHER``, e.g.
    "not eligible for recommendation"), or the service was partly suspended or terminated;
    ``monetary``: only a monetary measure (e.g. demonetisation); ``none``: nothing recorded.

    Examples
    --------
    >>> frame = pl.DataFrame({
    ...     "decision_visibility": [["DECISION_VISIBILITY_CONTENT_DEMOTED"], None],
    ...     "decision_monetary": [None, None], "decision_provision": [None, None],
    ...     "decision_account": [None, "DECISION_ACCOUNT_SUSPENDED"],
    ... })
    >>> frame.select(measure()).to_series().to_list()
    ['restriction', 'account']
    """
    visibility = pl.col("decision_visibility")
    removal = visibility.list.eval(pl.element().is_in(REMOVAL_VISIBILITY)).list.any()
    other_visibility = visibility.list.len() > 0
    provision = pl.col("decision_provision")
    return (
        pl.when(pl.col("decision_account").is_not_null()).then(pl.lit("account"))
        .when(provision.is_in(TOTAL_PROVISION).fill_null(False)).then(pl.lit("service"))
        .when(removal.fill_null(False)).then(pl.lit("removal"))
        .when(other_visibility.fill_null(False) | provision.is_not_null())
        .then(pl.lit("restriction"))
        .when(pl.col("decision_monetary").is_not_null()).then(pl.lit("monetary"))
        .otherwise(pl.lit("none"))
        .alias("measure")
    )


def account_group() -> pl.Expr:
    """``business``, ``private`` or null (not reported, or a value outside the two)."""
    return pl.col("account_type").replace_strict(ACCOUNT_TYPES, default=None,
                                                 return_dtype=pl.String)


def account_key() -> pl.Expr:
    """The synthetic account key: platform and account type (``TikTok/business``)."""
    return pl.format("{}/{}", pl.col("platform_name").fill_null("platform not reported"),
                     account_group().fill_null("not reported")).alias("account_id")


def detection() -> pl.Expr:
    """How the content came to the platform's attention, in the contract's words.

    ``automated`` when ``automated_detection`` is Yes; otherwise from ``source_type``: a notice
    under Article 16 is a ``user_report``, then ``trusted_flagger``, ``other_notice`` and
    ``own_initiative`` (``SOURCE_VOLUNTARY``, found by the platform itself without automation).
    """
    source = pl.col("source_type").replace_strict(DETECTIONS, default=None, return_dtype=pl.String)
    return (pl.when(pl.col("automated_detection").fill_null(False)).then(pl.lit("automated"))
            .otherwise(source).alias("detection"))


def to_enforcement(statements: pl.LazyFrame) -> pl.LazyFrame:
    """Enforcement rows of the contract, one per statement recording a restriction.

    See the module docstring for the mapping; statements whose :func:`measure` is ``none`` are
    left out (``read`` counts them under :data:`NO_RESTRICTION`).
    """
    flagged = pl.coalesce("content_date", "application_date", "created_at")
    decided = pl.col("application_date")
    table = CONTRACT["enforcement"]
    return (
        statements.with_columns(measure())
        .filter(pl.col("measure") != "none")
        .select(
            pl.col("uuid").alias("case_id"),
            account_key(),
            flagged.alias("flagged_at"),
            pl.col("category").fill_null("category not reported").alias("policy"),
            pl.lit(None, pl.Float64).alias("severity"),
            detection(),
            pl.when(pl.col("measure").is_in(SEVERE_MEASURES)).then(pl.lit("removed"))
            .otherwise(pl.lit("restricted")).alias("action"),
            pl.when(decided >= flagged).then(decided).otherwise(None).alias("decided_at"),
            pl.lit(None, pl.Boolean).alias("appealed"),
            pl.lit(None, pl.String).alias("appeal_outcome"),
        )
        .cast(table.schema)  # type: ignore[arg-type]
    )


def to_accounts(statements: pl.LazyFrame) -> pl.LazyFrame:
    """One row per synthetic account key (platform × account type), without an advertiser."""
    return (
        statements.select(account_key(), pl.col("platform_name").alias("account_name"),
                          account_group().alias("account_type"))
        .unique()
        .sort("account_id")
        .select(
            "account_id",
            pl.lit(None, pl.String).alias("advertiser_id"),
            "account_name",
            "account_type",
            pl.lit(None, pl.String).alias("country"),
            pl.lit(None, pl.Int64).alias("followers"),
        )
    )


def _dataset(root: Path, folder: Path, summary: dict) -> Dataset:
    parts = sorted((folder / "statements").glob("part-*.parquet"))
    statements = pl.scan_parquet(parts, schema=STATEMENT_SCHEMA)
    files = [FileInfo(**f) for f in summary["files"]]
    return Dataset(
        path=root,
        tables={"statements": statements, "enforcement": to_enforcement(statements),
                "accounts": to_accounts(statements)},
        files=files,
        source=SOURCE,
        excluded={k: v for k, v in summary["excluded"].items() if v},
    )


# --------------------------------------------------------------------------------------------
# Finding the files


@dataclass(frozen=True)
class _Part:
    """One file of statements (CSV or Parquet) on disk, and its name as the user knows it."""

    label: str
    path: Path
    kind: str  # "csv" or "parquet"


def _is_data(name: str) -> bool:
    lower = name.lower()
    base = lower.rsplit("/", 1)[-1]
    return (lower.endswith(_DATA_SUFFIXES) and not base.startswith((".", "._"))
            and "__macosx/" not in lower)


def _input_files(root: Path) -> list[tuple[Path, str]]:
    if root.is_file():
        if not _is_data(root.name):
            raise DataError([Problem(root.name, "not a DSA dump file: expected a .zip, .csv, "
                                     ".csv.gz or .parquet file", check="input")], source=str(root))
        return [(root, root.name)]
    if not root.is_dir():
        raise DataError([Problem(str(root), "no such file or folder", check="input")],
                        source=str(root))
    files = sorted((p for p in root.rglob("*") if p.is_file() and
                    _is_data(p.relative_to(root).as_posix())),
                   key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise DataError([Problem(str(root), "no DSA dump files (.zip, .csv, .csv.gz or .parquet) "
                                 "in this folder", check="input")], source=str(root))
    return [(p, p.relative_to(root).as_posix()) for p in files]


def _checksums(file: Path, name: str) -> str:
    """SHA-256 of the file; also checked against a published ``<file>.sha1`` beside it."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()
    with file.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha256.update(chunk)
            sha1.update(chunk)
    published = file.with_name(file.name + ".sha1")
    if published.exists():
        words = published.read_text(encoding="ascii", errors="replace").split()
        expected = words[0].lower() if words else ""
        if expected != sha1.hexdigest():
            raise DataError([Problem(
                name, f"its SHA-1 checksum ({sha1.hexdigest()}) differs from the one published "
                f"in {published.name} ({expected or 'empty'}): the file is incomplete or corrupted "
                "(e.g. an interrupted download); download it again", value=None,
                check="checksum")], source=name)
    return sha256.hexdigest()


def _parts(file: Path, label: str, work: Path, depth: int = 0) -> Iterator[_Part]:
    """The statement files inside ``file``, extracting zip members one at a time."""
    lower = label.lower()
    if lower.endswith(".zip"):
        yield from _zip_parts(file, label, work, depth)
    elif lower.endswith(".csv.gz"):
        target = work / f"{depth}-{file.name[:-3]}"
        try:
            with gzip.open(file, "rb") as source, target.open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
        except (OSError, EOFError, zlib.error) as exc:
            target.unlink(missing_ok=True)
            raise DataError([Problem(label, f"not a complete gzip file ({exc}): it is truncated or "
                                     "corrupted; download it again", check="gzip")],
                            source=label) from None
        try:
            yield _Part(label, target, "csv")
        finally:
            target.unlink(missing_ok=True)
    elif lower.endswith(".csv"):
        yield _Part(label, file, "csv")
    else:
        yield _Part(label, file, "parquet")


def _zip_parts(file: Path, label: str, work: Path, depth: int) -> Iterator[_Part]:
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError([Problem(label, _TRUNCATED.format(what="zip archive", exc=exc),
                                 check="zip")], source=label) from None
    with archive:
        members = sorted((m for m in archive.infolist() if not m.is_dir() and _is_data(m.filename)),
                         key=lambda m: m.filename)
        if not members:
            raise DataError([Problem(label, "the zip holds no statements files (.zip, .csv, "
                                     ".csv.gz or .parquet)", check="zip")], source=label)
        for index, member in enumerate(members):
            member_label = f"{label}/{member.filename}"
            target = work / f"{depth}-{index:05d}-{Path(member.filename).name}"
            try:
                with archive.open(member) as source, target.open("wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                target.unlink(missing_ok=True)
                raise DataError([Problem(member_label, _TRUNCATED.format(
                    what="member of its zip", exc=exc), check="zip")], source=label) from None
            try:
                yield from _parts(target, member_label, work, depth + 1)
            finally:
                target.unlink(missing_ok=True)


_TRUNCATED = ("not a complete {what} ({exc}): the file is truncated or was only partly written "
              "(e.g. an interrupted download or copy); download it again and compare it with the "
              "published .sha1 checksum")


# --------------------------------------------------------------------------------------------
# Processing: raw Parquet per part, checks, duplicates, typed Parquet per part


def _process(inputs: list[tuple[Path, str]], checksums: list[str], folder: Path, *,
             source: str) -> dict:
    work, raw_dir, out_dir = folder / "work", folder / "raw", folder / "statements"
    for d in (work, raw_dir, out_dir):
        d.mkdir(parents=True, exist_ok=True)
    parts: list[dict] = []
    rows_per_input = [0] * len(inputs)
    for input_index, (file, name) in enumerate(inputs):
        for part in _parts(file, name, work):
            raw = raw_dir / f"part-{len(parts):05d}.parquet"
            version, variant, rows, other_formats = _stage_raw(part, len(parts), raw,
                                                               source=source)
            parts.append({"label": part.label, "raw": raw.name, "version": version,
                          "variant": variant, "rows": rows, "other_formats": other_formats})
            rows_per_input[input_index] += rows
    if not parts:
        raise DataError([Problem(source, "no statements files found", check="input")],
                        source=source)
    drops = _find_duplicates([raw_dir / p["raw"] for p in parts],
                             sum(p["rows"] for p in parts), folder / "dedup")
    excluded = {DUPLICATE: 0, UUID_CONFLICT: 0, NO_RESTRICTION: 0}
    if drops:
        counted = (pl.scan_parquet(drops).group_by("reason").agg(pl.len()).collect())
        for reason, n in counted.iter_rows():
            excluded[reason] += n
    for index, part in enumerate(parts):
        raw = raw_dir / part["raw"]
        frame = pl.scan_parquet(raw)
        if drops:
            dropped = pl.scan_parquet(drops).filter(pl.col(_PART) == index).select(_ROW)
            frame = frame.join(dropped, on=_ROW, how="anti", maintain_order="left")
        typed = frame.select(_typed(frame.collect_schema(), part))
        target = out_dir / f"part-{index:05d}.parquet"
        try:
            typed.sink_parquet(target, row_group_size=ROW_GROUP_ROWS)
        except pl.exceptions.PolarsError as exc:  # e.g. a JSON escape the decoder refuses
            raise DataError([Problem(part["label"], f"cannot be parsed: "
                                     f"{str(exc).splitlines()[0]}", check="unreadable")],
                            source=source) from None
        excluded[NO_RESTRICTION] += (pl.scan_parquet(target).select(measure())
                                     .filter(pl.col("measure") == "none")
                                     .select(pl.len()).collect().item())
        raw.unlink()
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(raw_dir, ignore_errors=True)
    shutil.rmtree(folder / "dedup", ignore_errors=True)
    files = [{"table": "statements", "name": name, "sha256": sha, "rows": rows}
             for (_, name), sha, rows in zip(inputs, checksums, rows_per_input, strict=True)]
    return {"reader_version": READER_VERSION, "files": files, "excluded": excluded,
            "parts": [{k: p[k] for k in ("label", "version", "variant", "rows", "other_formats")}
                      for p in parts]}


def _stage_raw(part: _Part, index: int, target: Path, *,
               source: str) -> tuple[int, str, int, list[str]]:
    """Stream one part into raw Parquet (cells as published, plus row keys); check it.

    Returns the schema version, the variant, the number of rows and the timestamp columns
    holding some other format than the dumps' ``YYYY-MM-DD HH:MM:SS``.
    """
    try:
        if part.kind == "csv":
            frame = pl.scan_csv(part.path, infer_schema=False, encoding="utf8",
                                row_index_name=_ROW, row_index_offset=1)
        else:
            frame = pl.scan_parquet(part.path, row_index_name=_ROW, row_index_offset=1)
        columns = [c for c in frame.collect_schema().names() if c != _ROW]
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(_unreadable(part, exc), source=source) from None
    layout, problems = _layout(columns, part)
    if problems:
        raise DataError(problems, source=source)
    version, variant = layout
    present = [c for c in LAYOUTS[layout] if c in columns]
    frame = frame.select(
        pl.lit(index, pl.UInt32).alias(_PART),
        pl.col(_ROW).cast(pl.UInt64),
        *[_raw_cell(c, frame.collect_schema()[c]) for c in present],
    ).with_columns(
        pl.col("uuid").hash(seed=11).alias(_UUID_A),
        pl.col("uuid").hash(seed=23).alias(_UUID_B),
        pl.struct(present).hash(seed=37).alias(_ROW_HASH),
    )
    try:
        frame.sink_parquet(target, row_group_size=ROW_GROUP_ROWS)
    except (pl.exceptions.PolarsError, OSError) as exc:
        target.unlink(missing_ok=True)
        raise DataError(_unreadable(part, exc), source=source) from None
    problems, other_formats = _check(pl.scan_parquet(target), part)
    if problems:
        raise DataError(problems, source=source)
    rows = pl.scan_parquet(target).select(pl.len()).collect().item()
    return version, variant, rows, other_formats


def _raw_cell(column: str, dtype: pl.DataType) -> pl.Expr:
    """A column as published; Parquet enums and categoricals become text."""
    if isinstance(dtype, (pl.Categorical, pl.Enum)):
        return pl.col(column).cast(pl.String)
    if isinstance(dtype, pl.List) and isinstance(dtype.inner, (pl.Categorical, pl.Enum)):
        return pl.col(column).cast(_TEXT_LIST)
    return pl.col(column)


def _layout(columns: list[str], part: _Part) -> tuple[tuple[int, str], list[Problem]]:
    """The (schema version, variant) the columns match, or problems saying what differs."""
    present = set(columns)

    def distance(item: tuple[tuple[int, str], tuple[str, ...]]) -> tuple[int, int]:
        (version, _), expected = item
        missing = len(set(expected) - present)
        unexpected = 0 if part.kind == "parquet" else len(present - set(expected))
        return missing + unexpected, -version

    layout, expected = min(LAYOUTS.items(), key=distance)
    missing = [c for c in expected if c not in present]
    unexpected = [] if part.kind == "parquet" else [c for c in columns if c not in expected]
    problems: list[Problem] = []
    version, variant = layout
    if len(present & set(expected)) < len(expected) // 2:
        shown = ", ".join(columns[:12]) + (", …" if len(columns) > 12 else "")
        return layout, [Problem(part.label, f"this is not a DSA statements-of-reasons file: only "
                                f"{len(present & set(V2_COLUMNS))} of its {len(columns)} columns "
                                f"are columns of a dump (its columns: {shown}); is this the right "
                                "--source?", check="columns")]
    name = f"schema v{version} {variant} dump ({len(expected)} columns)"
    for c in missing:
        problems.append(Problem(part.label, f"column {c} is missing (closest layout: {name})",
                                column=c, check="columns"))
    for c in unexpected:
        problems.append(Problem(part.label, f"unexpected column {c} (closest layout: {name})",
                                column=c, check="columns"))
    if problems:
        return layout, problems
    dated = _DUMP_NAME.findall(part.label.lower())
    if dated:
        day, named_variant = dated[-1]
        wanted = 2 if day >= V2_FROM else 1
        if wanted != version:
            change = ("column content_id_ean is missing" if wanted == 2
                      else "column content_id_ean is unexpected")
            problems.append(Problem(
                part.label, f"{change}: the file is named as a dump of {day}, and dumps "
                f"{'from' if wanted == 2 else 'before'} {V2_FROM} have schema v{wanted} "
                f"({len(LAYOUTS[(wanted, variant)])} columns in the {variant} variant), but its "
                f"columns are those of schema v{version}. Check that the file is the dump it is "
                "named after.", column="content_id_ean", check="schema version"))
        if named_variant != variant:
            differ = ", ".join(LIGHT_DROPPED)
            problems.append(Problem(
                part.label, f"the file is named as a {named_variant} dump but has the columns of "
                f"a {variant} dump (the light dumps leave out {differ}): columns "
                f"{'missing' if named_variant == 'full' else 'unexpected'}: {differ}",
                check="variant"))
    return layout, problems


def _check(raw: pl.LazyFrame, part: _Part) -> tuple[list[Problem], list[str]]:
    """Cells that cannot be parsed, located; all checks run in one pass over the file.

    Also returns the timestamp columns with cells in another format than the dumps' own, which
    then get the slower parser that accepts any ISO 8601 form.
    """
    schema = raw.collect_schema()
    queries: list[tuple[str, str, pl.LazyFrame]] = []
    other_format: dict[str, pl.LazyFrame] = {}

    def where(column: str, message: str, bad: pl.Expr, frame: pl.LazyFrame | None = None) -> None:
        base = raw if frame is None else frame
        queries.append((column, message, base.filter(bad).select(
            _ROW, pl.col(column).cast(pl.String).alias("value")).head(MAX_PROBLEMS + 1)))

    for column in NOT_NULL_COLUMNS:
        if column in schema:
            text = pl.col(column).cast(pl.String).str.strip_chars()
            where(column, f"{column} must not be empty: the database sets it on every statement "
                  "(a row with fewer fields than the header, e.g. at the end of a truncated "
                  "file, leaves it empty)", text.is_null() | (text == ""))
    for column, dtype in schema.items():
        if dtype != pl.String:
            continue
        text = _stripped(column)
        if column in LIST_COLUMNS:
            where(column, 'not a JSON array of strings (e.g. ["DECISION_VISIBILITY_CONTENT_'
                  'REMOVED"])', text.is_not_null() & ~text.str.contains(_JSON_STRING_ARRAY))
        elif column in YES_NO_COLUMNS:
            where(column, "must be Yes or No", text.is_not_null() & ~text.is_in(["Yes", "No"]))
        elif column in TIMESTAMP_COLUMNS:
            # The full parser tries several formats on every cell; it only sees the cells
            # that the dumps' own format does not fit.
            unusual = raw.filter(text.is_not_null() & _dump_timestamp(text).is_null())
            other_format[column] = unusual.select(pl.len())
            where(column, "not a timestamp (YYYY-MM-DD HH:MM:SS)",
                  parse_timestamp(text).is_null(), frame=unusual)
    if not queries:
        return [], []
    found = pl.collect_all([q for _, _, q in queries] + list(other_format.values()))
    counts = found[len(queries):]
    found = found[:len(queries)]
    other_formats = [c for c, n in zip(other_format, counts, strict=True) if n.item()]
    problems: list[Problem] = []
    for (column, message, _), bad in zip(queries, found, strict=True):
        for row, value in bad.head(MAX_PROBLEMS).iter_rows():
            problems.append(Problem(part.label, message, row=int(row), column=column,
                                    value=value, check=message))
        if bad.height > MAX_PROBLEMS:
            problems.append(Problem(part.label, f"and more rows: {message}", column=column,
                                    check=message))
    if problems and part.kind == "csv":
        problems = _with_record_lines(problems, part.path)
    return problems, other_formats


def _dump_timestamp(text: pl.Expr) -> pl.Expr:
    """The dumps' own timestamp format, without offset: UTC."""
    return (text.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False)
            .dt.replace_time_zone("UTC"))


def _stripped(column: str) -> pl.Expr:
    text = pl.col(column).str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)


def _typed(schema: pl.Schema, part: dict) -> list[pl.Expr]:
    """Expressions turning a raw part into :data:`STATEMENT_SCHEMA` (absent columns null)."""
    exprs = []
    for column, dtype in STATEMENT_SCHEMA.items():
        if column == "schema_version":
            expr = pl.lit(part["version"], pl.Int8)
        elif column == "dump_variant":
            expr = pl.lit(part["variant"])
        elif column == "source_file":
            expr = pl.lit(part["label"])
        elif column == "source_row":
            expr = pl.col(_ROW).cast(pl.Int64)
        elif column not in schema:
            expr = pl.lit(None, dtype)
        else:
            expr = _parse(column, schema[column],
                          any_format=column in part.get("other_formats", ()))
        exprs.append(expr.cast(dtype).alias(column))
    return exprs


def _parse(column: str, dtype: pl.DataType, *, any_format: bool) -> pl.Expr:
    source = pl.col(column)
    if dtype != pl.String:  # Parquet input that arrives typed
        if column in TIMESTAMP_COLUMNS and isinstance(dtype, pl.Datetime):
            return (source.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
                    if dtype.time_zone is None else source.dt.convert_time_zone("UTC"))
        if column in TIMESTAMP_COLUMNS and dtype == pl.Date:
            return source.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        return source
    text = _stripped(column)
    if column in LIST_COLUMNS:  # every cell was checked to be a JSON array of strings
        return text.str.json_decode(_TEXT_LIST)
    if column in YES_NO_COLUMNS:
        return pl.when(text == "Yes").then(True).when(text == "No").then(False)
    if column in TIMESTAMP_COLUMNS:
        return parse_timestamp(text) if any_format else _dump_timestamp(text)
    return pl.when(source == "").then(None).otherwise(source)


# --------------------------------------------------------------------------------------------
# Exact duplicates and repeated uuids, in buckets of bounded size


def _find_duplicates(raws: list[Path], total: int, work: Path) -> list[Path]:
    """Rows to drop (``_part``, ``_row``, ``reason``), written to Parquet files."""
    # Parts differ in columns (v1, v2, light), so each is scanned for its keys on its own.
    keys = pl.concat([pl.scan_parquet(raw).select(_KEYS) for raw in raws])
    work.mkdir(parents=True, exist_ok=True)
    buckets = max(1, math.ceil(total / DEDUP_BUCKET_ROWS))
    if buckets == 1:
        bucket_files = None
    else:
        bucket_files = _write_buckets(keys, buckets, work)
    outputs = []
    for bucket in range(buckets):
        frame = keys.collect() if bucket_files is None else (
            pl.read_parquet(bucket_files[bucket]) if bucket_files[bucket].exists() else None)
        if frame is None or frame.height == 0:
            continue
        dropped = (
            frame.sort([_UUID_A, _UUID_B, _PART, _ROW])
            .with_columns(
                exact=~pl.struct(_UUID_A, _UUID_B, _ROW_HASH).is_first_distinct(),
                repeated=~pl.struct(_UUID_A, _UUID_B).is_first_distinct(),
            )
            .filter(pl.col("repeated"))
            .select(_PART, _ROW, pl.when(pl.col("exact")).then(pl.lit(DUPLICATE))
                    .otherwise(pl.lit(UUID_CONFLICT)).alias("reason"))
        )
        if bucket_files is not None:
            bucket_files[bucket].unlink()
        if dropped.height:
            target = work / f"drops-{bucket:05d}.parquet"
            dropped.write_parquet(target)
            outputs.append(target)
    return outputs


def _write_buckets(keys: pl.LazyFrame, buckets: int, work: Path) -> list[Path]:
    """Split the row keys into ``buckets`` Parquet files by uuid hash, streaming."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [work / f"keys-{b:05d}.parquet" for b in range(buckets)]
    writers: dict[int, pq.ParquetWriter] = {}
    try:
        bucketed = keys.with_columns((pl.col(_UUID_A) % buckets).cast(pl.Int64).alias("_bucket"))
        for batch in bucketed.collect_batches(chunk_size=200_000):
            for (bucket,), rows in batch.partition_by("_bucket", as_dict=True).items():
                table = rows.drop("_bucket").to_arrow()
                if bucket not in writers:
                    writers[bucket] = pq.ParquetWriter(files[bucket], table.schema)
                writers[bucket].write_table(table)
    finally:
        for writer in writers.values():
            writer.close()
        # Arrow's allocator keeps freed pages for reuse; give them back, since nothing else
        # here allocates through it.
        pa.default_memory_pool().release_unused()
    return files


# --------------------------------------------------------------------------------------------
# Locating what polars could not read


def _unreadable(part: _Part, exc: Exception) -> list[Problem]:
    if part.kind == "csv":
        located = _locate_csv_problem(part)
        if located:
            return located
    what = "CSV" if part.kind == "csv" else "Parquet"
    return [Problem(part.label, f"cannot be read as {what}: {str(exc).splitlines()[0]}",
                    check="unreadable")]


def _locate_csv_problem(part: _Part) -> list[Problem]:
    """The first record that is not UTF-8, or that has the wrong number of fields."""
    limit = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with part.path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            if any(_has_bad_bytes(h) for h in header):
                return [_encoding_problem(part, 0, 1, None, next(h for h in header
                                                                if _has_bad_bytes(h)))]
            start = reader.line_num + 1
            for record, fields in enumerate(reader, start=1):
                for position, value in enumerate(fields):
                    if _has_bad_bytes(value):
                        column = header[position] if position < len(header) else None
                        return [_encoding_problem(part, record, start, column, value)]
                if len(fields) != len(header) and fields:
                    return [Problem(part.label, f"the row has {len(fields)} fields, the header "
                                    f"{len(header)}" + _line_note(record, start),
                                    row=record, check="fields")]
                start = reader.line_num + 1
    except csv.Error as exc:
        return [Problem(part.label, f"malformed CSV: {exc}", check="csv")]
    finally:
        csv.field_size_limit(limit)
    return []


def _has_bad_bytes(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _encoding_problem(part: _Part, record: int, line: int, column: str | None,
                      value: str) -> Problem:
    raw = value.encode("utf-8", errors="surrogateescape")
    bad = bytes(b for ch in value if "\udc80" <= ch <= "\udcff" for b in [ord(ch) - 0xDC00])
    guess = raw.decode("cp1252", errors="replace")
    snippet = guess if len(guess) <= 80 else guess[:77] + "…"
    where = "the cell has" if record else f"line {line} has"
    return Problem(
        part.label, f"the file is not UTF-8 (the dumps are): {where} the byte(s) {bad!r}, "
        f"which read as Latin-1/Windows-1252 give {snippet!r}. Re-encode the file as UTF-8 "
        "(e.g. iconv -f cp1252 -t utf-8) or download it again"
        + (_line_note(record, line) if record else ""),
        row=record if record else None, column=column, value=None, check="encoding")


def _line_note(record: int, start: int) -> str:
    # Problem prints line = row + 1; cells spanning several lines push the real line further.
    return "" if start == record + 1 else f" (the row starts on line {start} of the file)"


def _with_record_lines(problems: list[Problem], path: Path) -> list[Problem]:
    """Add the true starting line to problems whose row is not on line row + 1."""
    wanted = {p.row for p in problems if p.row is not None}
    if not wanted:
        return problems
    starts: dict[int, int] = {}
    limit = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            start = reader.line_num + 1
            last = max(wanted)
            for record, _ in enumerate(reader, start=1):
                if record in wanted:
                    starts[record] = start
                if record >= last:
                    break
                start = reader.line_num + 1
    except csv.Error:
        return problems
    finally:
        csv.field_size_limit(limit)
    return [p if p.row is None or p.row not in starts else
            Problem(p.file, p.message + _line_note(p.row, starts[p.row]), row=p.row,
                    column=p.column, value=p.value, check=p.check)
            for p in problems]
