"""The DSA Transparency Database adapter: real sample dumps, every container, every located error."""

from __future__ import annotations

import hashlib
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from analysis.schema import CONTRACT, DataError
from analysis.sources import dsa_tdb
from analysis.sources.dsa_tdb import DUPLICATE, UUID_CONFLICT, read

REFERENCE = Path(__file__).resolve().parents[2] / "data" / "reference" / "dsa_tdb"
# Official daily dumps (EU DSA Transparency Database, CC BY 4.0, doi:10.2906/134353607485211),
# first rows, as cut into test fixtures by apparebit/shantay; see data/reference/MANIFEST.md.
V1 = REFERENCE / "sor-global-2024-03-14-full_first12rows.csv"
V2 = REFERENCE / "sor-global-2025-07-01-full_first20rows.csv"
DUPLICATED_UUID = "03b1b1c9-a860-4bf6-afff-0d8f0d944871"  # rows 1 and 2 of V1, identical


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def statements(dataset) -> pl.DataFrame:
    return dataset["statements"].collect()


def comparable(dataset) -> pl.DataFrame:
    """Statements without the columns naming where each came from."""
    return statements(dataset).drop("source_file", "source_row")


def problems(path: Path, **options) -> list:
    with pytest.raises(DataError) as caught:
        read(path, **options)
    return caught.value.problems


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    target.write_text(text, encoding="utf-8")
    return target


def zip_of(target: Path, members: dict[str, Path | bytes]) -> Path:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            if isinstance(content, Path):
                archive.write(content, name)
            else:
                archive.writestr(name, content)
    return target


# --------------------------------------------------------------------------------------------
# The shipped samples


def test_v1_sample_loads_and_its_duplicate_is_removed_and_counted() -> None:
    dataset = read(V1)
    assert dataset.source == "dsa-tdb"
    # 12 published rows (rows 1 and 2 identical) -> 11 statements; the ledger says why.
    assert [(f.table, f.name, f.rows) for f in dataset.files] == [("statements", V1.name, 12)]
    assert dataset.files[0].sha256 == hashlib.sha256(V1.read_bytes()).hexdigest()
    assert dataset.excluded == {DUPLICATE: 1}
    table = statements(dataset)
    assert table.height == 11
    assert table["uuid"].n_unique() == 11
    assert table.filter(pl.col("uuid") == DUPLICATED_UUID)["source_row"].to_list() == [1]
    assert table.schema == dsa_tdb.STATEMENT_SCHEMA
    assert table["schema_version"].unique().to_list() == [1]
    assert table["content_id_ean"].null_count() == 11  # a v2 column, absent in v1
    assert dict(table["platform_name"].value_counts().iter_rows()) == {
        "TikTok": 4, "Google Shopping": 6, "Pinterest": 1}


def test_v1_sample_cells_are_parsed() -> None:
    first = statements(read(V1)).row(0, named=True)
    assert first["uuid"] == DUPLICATED_UUID
    assert first["decision_visibility"] == ["DECISION_VISIBILITY_OTHER"]
    assert first["content_type"] == ["CONTENT_TYPE_VIDEO"]
    # The EEA without Iceland: 29 countries, in published order.
    assert len(first["territorial_scope"]) == 29
    assert first["territorial_scope"][:3] == ["AT", "BE", "BG"]
    assert first["territorial_scope"][-1] == "SK" and "IS" not in first["territorial_scope"]
    assert first["automated_detection"] is True
    assert first["automated_decision"] == "AUTOMATED_DECISION_FULLY"
    assert first["content_date"] == utc(2024, 3, 12)
    assert first["application_date"] == utc(2024, 3, 12)
    assert first["created_at"] == utc(2024, 3, 14, 0, 0, 7)
    assert first["account_type"] is None and first["decision_monetary"] is None
    assert first["category_specification"] is None  # empty cell: null, not an empty list
    pinterest = statements(read(V1)).filter(pl.col("platform_name") == "Pinterest").row(
        0, named=True)
    assert pinterest["category_specification"] == ["KEYWORD_ADULT_SEXUAL_MATERIAL"]
    assert pinterest["automated_detection"] is False


def test_v2_sample_loads_all_twenty_rows() -> None:
    dataset = read(V2)
    assert [f.rows for f in dataset.files] == [20]
    assert dataset.excluded == {}
    table = statements(dataset)
    assert table.height == 20
    assert table["schema_version"].unique().to_list() == [2]
    assert table["dump_variant"].unique().to_list() == ["full"]
    assert "STATEMENT_CATEGORY_CYBER_VIOLENCE" in table["category"].to_list()
    assert sorted(table["territorial_scope"].list.len().to_list()) == [1, 27] + [30] * 18
    assert table["incompatible_content_illegal"].to_list().count(False) == 18
    assert table["incompatible_content_illegal"].null_count() == 2


def test_enforcement_rows_follow_the_documented_mapping() -> None:
    dataset = read(V1)
    enforcement = dataset["enforcement"].collect()
    assert enforcement.schema == pl.Schema(CONTRACT["enforcement"].schema)
    assert enforcement.height == 11  # every statement records a restriction
    # Google Shopping disabled 6 listings (removal); TikTok's "not eligible for the For You
    # feed" (DECISION_VISIBILITY_OTHER) and Pinterest's age restriction leave content up.
    counts = dict(enforcement.group_by("action").len().iter_rows())
    assert counts == {"removed": 6, "restricted": 5}
    assert set(enforcement["account_id"]) == {
        "TikTok/not reported", "Google Shopping/not reported", "Pinterest/not reported"}
    pinterest = enforcement.filter(pl.col("account_id").str.starts_with("Pinterest")).row(
        0, named=True)
    # Content posted 2020-08-13, restricted 2024-03-14: flagged_at is the content date.
    assert pinterest["flagged_at"] == utc(2020, 8, 13)
    assert pinterest["decided_at"] == utc(2024, 3, 14)
    assert pinterest["detection"] == "own_initiative"  # SOURCE_VOLUNTARY, not automated
    assert pinterest["policy"] == "STATEMENT_CATEGORY_PORNOGRAPHY_OR_SEXUALIZED_CONTENT"
    accounts = dataset["accounts"].collect()
    assert accounts.height == 3 and accounts["advertiser_id"].null_count() == 3
    # Ledger: enforcement rows plus exclusions give back every published row.
    assert enforcement.height + sum(dataset.excluded.values()) == dataset.files[0].rows


def test_measure_orders_severity() -> None:
    frame = pl.DataFrame({
        "decision_visibility": [["DECISION_VISIBILITY_CONTENT_LABELLED",
                                 "DECISION_VISIBILITY_CONTENT_REMOVED"], [], None, None, None],
        "decision_monetary": [None, "DECISION_MONETARY_SUSPENSION", None, None, None],
        "decision_provision": [None, None, "DECISION_PROVISION_PARTIAL_SUSPENSION",
                               "DECISION_PROVISION_TOTAL_TERMINATION", None],
        "decision_account": [None, None, None, None, None],
    }, schema_overrides={"decision_visibility": pl.List(pl.String)})
    assert frame.select(dsa_tdb.measure()).to_series().to_list() == [
        "removal", "monetary", "restriction", "service", "none"]


# --------------------------------------------------------------------------------------------
# Containers: zip of CSV parts, zip of zips, gzip, Parquet, folders of many days


def test_zip_of_csv_and_zip_of_zips_load_identically(tmp_path: Path) -> None:
    plain = comparable(read(V1))
    flat = zip_of(tmp_path / "sor-global-2024-03-14-full.zip",
                  {"sor-global-2024-03-14-full-00000-00000.csv": V1})
    inner = zip_of(tmp_path / "sor-global-2024-03-14-full-00000.csv.zip",
                   {"sor-global-2024-03-14-full-00000-00000.csv": V1})
    nested_folder = tmp_path / "nested"
    nested_folder.mkdir()
    nested = zip_of(nested_folder / "sor-global-2024-03-14-full.zip", {inner.name: inner})
    for path in (flat, nested):
        dataset = read(path)
        assert comparable(dataset).equals(plain)
        assert dataset.excluded == {DUPLICATE: 1}
        assert dataset.files[0].rows == 12
    source = statements(read(nested))["source_file"].unique().to_list()
    assert source == [("sor-global-2024-03-14-full.zip/sor-global-2024-03-14-full-00000.csv.zip/"
                       "sor-global-2024-03-14-full-00000-00000.csv")]


def test_gzip_and_parquet_load_like_the_csv(tmp_path: Path) -> None:
    import gzip

    plain = comparable(read(V1))
    gz = tmp_path / "part.csv.gz"
    gz.write_bytes(gzip.compress(V1.read_bytes()))
    assert comparable(read(gz)).equals(plain)
    parquet = tmp_path / "part.parquet"
    pl.read_csv(V1, infer_schema=False).write_parquet(parquet)
    assert comparable(read(parquet)).equals(plain)


def test_a_folder_of_days_reconciles_row_counts(tmp_path: Path) -> None:
    days = tmp_path / "dumps"
    for year in ("2024", "2025"):
        (days / year).mkdir(parents=True)
    zip_of(days / "2024" / "sor-global-2024-03-14-full.zip", {"part.csv": V1})
    zip_of(days / "2025" / "sor-global-2025-07-01-full.zip", {"part.csv": V2})
    (days / "notes.txt").write_text("not data")
    dataset = read(days)
    assert [(f.name, f.rows) for f in dataset.files] == [
        ("2024/sor-global-2024-03-14-full.zip", 12), ("2025/sor-global-2025-07-01-full.zip", 20)]
    assert statements(dataset).height == 31  # 12 + 20 published, less 1 duplicate
    assert dataset.excluded == {DUPLICATE: 1}
    assert sorted(statements(dataset)["schema_version"].value_counts().iter_rows()) == [
        (1, 11), (2, 20)]


@pytest.mark.parametrize("bucket_rows", [1_000_000, 5])
def test_duplicates_are_found_across_files_and_buckets(tmp_path: Path, monkeypatch,
                                                       bucket_rows: int) -> None:
    # The same 12 rows published twice: 11 distinct statements, 13 exact duplicates, whether
    # the keys fit one bucket or are split into many.
    monkeypatch.setattr(dsa_tdb, "DEDUP_BUCKET_ROWS", bucket_rows)
    folder = tmp_path / "twice"
    write(folder, "a.csv", text_of(V1))
    write(folder, "b.csv", text_of(V1))
    dataset = read(folder)
    assert dataset.excluded == {DUPLICATE: 13}
    table = statements(dataset)
    assert table.height == 11
    assert table["source_file"].unique().to_list() == ["a.csv"]  # first occurrence kept


def test_a_repeated_uuid_with_other_content_keeps_the_first_row(tmp_path: Path) -> None:
    lines = text_of(V1).splitlines(keepends=True)
    lines[2] = lines[2].replace("2024-03-14 00:00:07", "2024-03-14 00:00:08", 1)
    dataset = read(write(tmp_path, "changed.csv", "".join(lines)))
    assert dataset.excluded == {UUID_CONFLICT: 1}
    kept = statements(dataset).filter(pl.col("uuid") == DUPLICATED_UUID)
    assert kept["created_at"].to_list() == [utc(2024, 3, 14, 0, 0, 7)]


def test_cache_dir_is_reused(tmp_path: Path) -> None:
    first = read(V1, cache_dir=tmp_path / "cache")
    done = next((tmp_path / "cache").glob("dsa_tdb-*/done.json"))
    stamp = done.stat().st_mtime_ns
    second = read(V1, cache_dir=tmp_path / "cache")
    assert done.stat().st_mtime_ns == stamp
    assert statements(second).equals(statements(first))
    assert second.excluded == first.excluded and second.files == first.files


# --------------------------------------------------------------------------------------------
# Errors a user can act on


def test_truncated_zip_is_named(tmp_path: Path) -> None:
    whole = zip_of(tmp_path / "whole.zip", {"part.csv": V1}).read_bytes()
    truncated = tmp_path / "sor-global-2024-03-14-full.zip"
    truncated.write_bytes(whole[: len(whole) // 2])
    [problem] = problems(truncated)
    assert problem.file == "sor-global-2024-03-14-full.zip"
    assert "not a complete zip archive" in problem.message and "truncated" in problem.message


def test_truncated_inner_zip_is_named(tmp_path: Path) -> None:
    inner = zip_of(tmp_path / "day-00000.csv.zip", {"part.csv": V1}).read_bytes()
    outer = zip_of(tmp_path / "day.zip", {"day-00000.csv.zip": inner[:200]})
    [problem] = problems(outer)
    assert problem.file == "day.zip/day-00000.csv.zip"
    assert "not a complete zip archive" in problem.message


def test_checksum_differing_from_published_sha1_is_reported(tmp_path: Path) -> None:
    dump = zip_of(tmp_path / "day.zip", {"part.csv": V1})
    (tmp_path / "day.zip.sha1").write_text("0" * 40 + "  day.zip\n")
    [problem] = problems(dump)
    assert problem.check == "checksum" and "day.zip.sha1" in problem.message
    (tmp_path / "day.zip.sha1").write_text(
        hashlib.sha1(dump.read_bytes()).hexdigest() + "  day.zip\n")
    assert read(dump).files[0].rows == 12


def test_v1_file_with_a_column_removed_names_it(tmp_path: Path) -> None:
    frame = pl.read_csv(V1, infer_schema=False).drop("decision_facts")
    path = tmp_path / "sor-global-2024-03-14-full-00000-00000.csv"
    frame.write_csv(path)
    [problem] = problems(path)
    assert problem.column == "decision_facts"
    assert "column decision_facts is missing" in problem.message
    assert "schema v1 full dump (37 columns)" in problem.message


def test_unexpected_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "extra.csv"
    pl.read_csv(V2, infer_schema=False).with_columns(pl.lit("x").alias("notes")).write_csv(path)
    [problem] = problems(path)
    assert problem.column == "notes" and "unexpected column notes" in problem.message


def test_file_named_after_a_v2_day_without_content_id_ean_is_the_wrong_version(
        tmp_path: Path) -> None:
    path = tmp_path / "sor-global-2025-07-02-full-00000-00000.csv"
    path.write_text(text_of(V1), encoding="utf-8")  # 37 columns under a v2 date
    [problem] = problems(path)
    assert problem.column == "content_id_ean" and problem.check == "schema version"
    assert "content_id_ean is missing" in problem.message


def test_a_file_of_another_source_is_recognised(tmp_path: Path) -> None:
    path = write(tmp_path, "enforcement.csv", "case_id,account_id,flagged_at\nc1,a1,2023-01-01\n")
    [problem] = problems(path)
    assert "not a DSA statements-of-reasons file" in problem.message
    assert "--source" in problem.message


def test_bad_json_in_a_list_cell_is_located(tmp_path: Path) -> None:
    lines = text_of(V2).splitlines(keepends=True)
    assert '"[""DE""]"' in lines[2]  # data row 2 (Kleinanzeigen) is scoped to Germany
    lines[2] = lines[2].replace('"[""DE""]"', '"[""DE"""', 1)
    [problem] = problems(write(tmp_path, "bad.csv", "".join(lines)))
    assert (problem.row, problem.column, problem.value) == (2, "territorial_scope", '["DE"')
    assert "JSON array" in problem.message
    assert str(problem).startswith("bad.csv, line 3, column territorial_scope")


def test_yes_no_and_timestamp_cells_are_checked(tmp_path: Path) -> None:
    lines = text_of(V2).splitlines(keepends=True)
    lines[3] = lines[3].replace(",Yes,AUTOMATED_DECISION", ",Maybe,AUTOMATED_DECISION", 1)
    lines[4] = lines[4].replace('"2025-07-01 00:00:00"', '"01/07/2025"', 1)
    found = {(p.row, p.column, p.value) for p in problems(write(tmp_path, "x.csv", "".join(lines)))}
    assert found == {(3, "automated_detection", "Maybe"), (4, "content_date", "01/07/2025")}


def test_latin1_file_is_reported_with_line_and_column(tmp_path: Path) -> None:
    text = text_of(V1).replace("\u2019", "'").replace(
        "own-initiative investigations.", "own-initiative investigations é.", 1)
    path = tmp_path / "latin.csv"
    path.write_bytes(text.encode("latin-1"))
    [problem] = problems(path)
    assert problem.check == "encoding" and problem.column == "decision_facts"
    assert problem.row == 1  # the first data row holds the first "é"
    assert "not UTF-8" in problem.message and "b'\\xe9'" in problem.message


def test_a_row_cut_short_is_reported(tmp_path: Path) -> None:
    text = text_of(V2)
    cut = text[: text.rindex(',"Hotel Hideaway",')] + "\n"  # the last row loses its last fields
    found = problems(write(tmp_path, "cut.csv", cut))
    assert [(p.row, p.column) for p in found] == [(20, "created_at")]


def test_light_dump_loads_with_its_dropped_columns_null(tmp_path: Path) -> None:
    path = tmp_path / "sor-global-2024-03-14-light-00000-00000.csv"
    pl.read_csv(V1, infer_schema=False).drop(dsa_tdb.LIGHT_DROPPED).write_csv(path)
    dataset = read(path)
    table = statements(dataset)
    assert table.height == 11 and dataset.excluded == {DUPLICATE: 1}
    assert table["dump_variant"].unique().to_list() == ["light"]
    assert all(table[c].null_count() == 11 for c in dsa_tdb.LIGHT_DROPPED)
    full = comparable(read(V1)).drop(*dsa_tdb.LIGHT_DROPPED, "dump_variant")
    assert table.drop("source_file", "source_row", *dsa_tdb.LIGHT_DROPPED,
                      "dump_variant").equals(full)


def test_file_named_full_with_light_columns_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "sor-global-2024-03-14-full-00000-00000.csv"
    pl.read_csv(V1, infer_schema=False).drop(dsa_tdb.LIGHT_DROPPED).write_csv(path)
    [problem] = problems(path)
    assert problem.check == "variant" and "named as a full dump" in problem.message


def test_other_iso_timestamps_and_empty_lists_are_parsed(tmp_path: Path) -> None:
    text = text_of(V2).replace('"2025-07-01 00:03:33"', "2025-07-01T00:03:33.5+02:00", 1)
    text = text.replace('"[""DE""]"', '"[]"', 1)
    table = statements(read(write(tmp_path, "iso.csv", text)))
    assert table["created_at"].min() == utc(2025, 6, 30, 22, 3, 33, 500000)
    assert table["created_at"].null_count() == 0
    assert table.filter(pl.col("platform_name") == "Kleinanzeigen")["territorial_scope"].to_list() \
        == [[]]
