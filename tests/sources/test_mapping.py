"""Mapped exports: the example mapping against a hand-written canonical twin, and every error."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import polars as pl
import pytest

from analysis.load import load
from analysis.schema import CONTRACT, DataError
from analysis.sources.mapping import read, read_mapping
from tests.conftest import REPO, write_world

EXPORT = REPO / "tests" / "fixtures" / "mapped_export"
EXAMPLE = REPO / "docs" / "mapping-example.toml"

# The same 20 cases written by hand in the contract. Berlin is UTC+1 in winter and UTC+2 from
# 2023-03-26 02:00 to 2023-10-29 03:00 local time (EU summer time), so e.g. F-0004 reported
# 10.02.2023 00:20 is 2023-02-09 23:20 UTC, F-0013 at 26.03.2023 03:30 (just after the change) is
# 01:30 UTC, and F-0019 at 29.10.2023 02:30 (a time that happens twice) is read as the first,
# summer-time one: 00:30 UTC; its decision at 09:00 is winter time again: 08:00 UTC.
CANONICAL = {
    "enforcement": """
        case_id,account_id,flagged_at,policy,severity,detection,action,decided_at,appealed,appeal_outcome
        F-0001,k-01,2023-02-03T08:15:00Z,hate_speech,0.9,user_report,no_action,2023-02-03T16:40:00Z,false,
        F-0002,k-05,2023-02-05T21:05:00Z,spam,0.2,automated,removed,2023-02-05T21:06:00Z,true,upheld
        F-0003,k-02,2023-02-07T10:30:00Z,copyright,0.5,user_report,restricted,2023-02-08T09:00:00Z,true,reversed
        F-0004,k-06,2023-02-09T23:20:00Z,hate_speech,0.9,user_report,removed,2023-02-10T07:00:00Z,false,
        F-0005,k-03,2023-02-14T15:45:00Z,spam,0.2,automated,no_action,,,
        F-0006,k-04,2023-02-18T07:00:00Z,spam,0.2,automated,removed,2023-02-18T07:01:00Z,false,
        F-0007,k-01,2023-02-21T18:10:00Z,copyright,0.5,user_report,no_action,2023-02-22T08:30:00Z,false,
        F-0008,k-05,2023-02-25T12:00:00Z,hate_speech,0.5,user_report,restricted,2023-02-25T14:15:00Z,false,
        F-0009,k-02,2023-03-01T09:00:00Z,hate_speech,0.9,automated,no_action,2023-03-01T11:00:00Z,false,
        F-0010,k-06,2023-03-04T22:59:00Z,spam,0.2,automated,removed,2023-03-04T23:30:00Z,true,upheld
        F-0011,k-03,2023-03-09T06:45:00Z,copyright,0.5,user_report,removed,2023-03-09T13:00:00Z,true,reversed
        F-0012,k-04,2023-03-15T11:30:00Z,hate_speech,0.2,user_report,no_action,2023-03-16T11:30:00Z,false,
        F-0013,k-01,2023-03-26T01:30:00Z,spam,0.2,automated,restricted,2023-03-26T02:00:00Z,false,
        F-0014,k-05,2023-04-02T16:20:00Z,hate_speech,0.9,user_report,removed,2023-04-03T07:00:00Z,false,
        F-0015,k-02,2023-05-17T07:05:00Z,copyright,0.5,automated,no_action,,,
        F-0016,k-06,2023-06-12T12:00:00Z,spam,0.2,automated,removed,2023-06-12T12:02:00Z,false,
        F-0017,k-03,2023-07-30T19:40:00Z,hate_speech,0.5,user_report,no_action,2023-07-31T06:15:00Z,false,
        F-0018,k-04,2023-09-15T08:10:00Z,copyright,0.9,user_report,restricted,2023-09-15T14:00:00Z,true,upheld
        F-0019,k-01,2023-10-29T00:30:00Z,hate_speech,0.9,user_report,no_action,2023-10-29T08:00:00Z,false,
        F-0020,k-05,2023-11-05T10:11:00Z,spam,0.2,automated,removed,2023-11-05T10:12:00Z,false,
    """,
    "accounts": """
        account_id,advertiser_id,account_name,account_type
        k-01,W-100,klangwerk_official,brand
        k-02,W-100,klangwerk_live,brand
        k-03,W-200,hoerbuchhaus,brand
        k-04,W-300,sonnenschein_baeckerei,business
        k-05,,lisa_m,private
        k-06,,tom_r,private
    """,
    "advertisers": """
        advertiser_id,advertiser_name,parent_name
        W-100,Klangwerk Musik,Nordlicht Medien
        W-200,Hörbuchhaus,Nordlicht Medien
        W-300,Bäckerei Sonnenschein,
    """,
    "ad_spend": """
        advertiser_id,period_start,period_end,spend,currency
        W-100,2023-01-01,2023-01-31,12000.50,EUR
        W-100,2023-02-01,2023-02-28,9000,EUR
        W-200,2023-01-01,2023-02-28,3000,EUR
        W-300,2023-01-01,2023-02-28,150,EUR
    """,
}


def collected(dataset) -> dict[str, pl.DataFrame]:
    return {name: frame.collect() for name, frame in dataset.tables.items()}


def problems(path: Path, mapping: Path) -> list:
    with pytest.raises(DataError) as caught:
        read(path, mapping=mapping)
    return caught.value.problems


@pytest.fixture()
def export(tmp_path: Path) -> Path:
    """A writable copy of the example export."""
    return Path(shutil.copytree(EXPORT, tmp_path / "export"))


def edit(file: Path, old: str, new: str) -> None:
    text = file.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {file.name}"
    file.write_text(text.replace(old, new, 1), encoding="utf-8")


def mapping_with(tmp_path: Path, old: str, new: str) -> Path:
    target = tmp_path / "mapping.toml"
    target.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    edit(target, old, new)
    return target


def test_example_mapping_equals_the_hand_written_canonical_tables(tmp_path: Path) -> None:
    mapped = read(EXPORT, mapping=EXAMPLE)
    canonical = load(write_world(tmp_path / "canonical", CANONICAL))
    assert mapped.source == "mapping"
    got, want = collected(mapped), collected(canonical)
    assert set(got) == set(want) == {"accounts", "advertisers", "ad_spend", "enforcement"}
    for name in want:
        assert got[name].schema == want[name].schema, name
        assert got[name].equals(want[name]), name


def test_files_are_the_source_files_with_checksums_and_rows() -> None:
    mapped = read(EXPORT, mapping=EXAMPLE)
    rows = {(f.table, f.name): f.rows for f in mapped.files}
    assert rows == {("accounts", "konten.csv"): 6, ("ad_spend", "werbeausgaben.csv"): 4,
                    ("advertisers", "werbekunden.csv"): 3, ("enforcement", "faelle.csv"): 20}
    import hashlib
    digest = hashlib.sha256((EXPORT / "faelle.csv").read_bytes()).hexdigest()
    assert next(f.sha256 for f in mapped.files if f.name == "faelle.csv") == digest


def test_a_zip_of_the_export_reads_the_same(tmp_path: Path) -> None:
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for file in sorted(EXPORT.iterdir()):
            handle.write(file, file.name)
    assert collected(read(archive, mapping=EXAMPLE))["enforcement"].equals(
        collected(read(EXPORT, mapping=EXAMPLE))["enforcement"])


@pytest.mark.parametrize("typed", [False, True], ids=["parquet-text", "parquet-typed"])
def test_parquet_sources_map_like_csv(export: Path, tmp_path: Path, typed: bool) -> None:
    cases = pl.read_csv(export / "faelle.csv", separator=";", infer_schema=False)
    if typed:  # a naive timestamp column is local time in the table's time zone
        cases = cases.with_columns(pl.col("gemeldet_am").str.strptime(pl.Datetime("us"),
                                                                      "%d.%m.%Y %H:%M"))
    cases.write_parquet(export / "faelle.parquet")
    (export / "faelle.csv").unlink()
    mapping = mapping_with(tmp_path, 'files = "faelle.csv"', 'files = "faelle.parquet"')
    flagged = collected(read(export, mapping=mapping))["enforcement"]["flagged_at"]
    want = collected(read(EXPORT, mapping=EXAMPLE))["enforcement"]["flagged_at"]
    assert flagged.equals(want)


def test_accounts_can_come_from_the_case_file_with_distinct(export: Path, tmp_path: Path) -> None:
    mapping = mapping_with(tmp_path, """[tables.accounts]
files = "konten.csv"
separator = ";"
null_values = ["-"]

[tables.accounts.columns]
account_id = "Konto"
account_name = "Kontoname"
advertiser_id = "Werbekunde"
account_type = "Typ"

[tables.accounts.values.account_type]
"Marke" = "brand"
"Unternehmen" = "business"
"privat" = "private"
""", """[tables.accounts]
files = "faelle.csv"
separator = ";"
distinct = true

[tables.accounts.columns]
account_id = "Konto"

[tables.accounts.defaults]
advertiser_id = ""   # empty: these accounts buy no ads
""")
    accounts = collected(read(export, mapping=mapping))["accounts"]
    # faelle.csv names six accounts, in this order of first appearance.
    assert accounts["account_id"].to_list() == ["k-01", "k-05", "k-02", "k-06", "k-03", "k-04"]
    assert accounts["advertiser_id"].null_count() == 6


def test_several_files_matching_the_pattern_are_one_table(export: Path, tmp_path: Path) -> None:
    lines = (export / "faelle.csv").read_text(encoding="utf-8").splitlines()
    (export / "faelle.csv").unlink()
    (export / "faelle-1.csv").write_text("\n".join(lines[:11]) + "\n", encoding="utf-8")
    (export / "faelle-2.csv").write_text("\n".join([lines[0], *lines[11:]]) + "\n",
                                         encoding="utf-8")
    mapping = mapping_with(tmp_path, 'files = "faelle.csv"', 'files = "faelle-*.csv"')
    dataset = read(export, mapping=mapping)
    assert dataset["enforcement"].collect().height == 20
    assert [(f.name, f.rows) for f in dataset.files if f.table == "enforcement"] == [
        ("faelle-1.csv", 10), ("faelle-2.csv", 10)]


# --------------------------------------------------------------------------------------------
# Errors: each names the mapping file, table, column or value, and the source file and line


def test_unknown_key_is_named_with_its_place_in_the_mapping(export: Path, tmp_path: Path) -> None:
    mapping = mapping_with(tmp_path, 'files = "konten.csv"', 'files = "konten.csv"\ncolums = 1')
    [problem] = problems(export, mapping)
    assert problem.file == "mapping.toml"
    assert "[tables.accounts.colums]: unknown key" in problem.message


def test_unknown_table_column_and_time_zone_all_at_once(export: Path, tmp_path: Path) -> None:
    mapping = mapping_with(tmp_path, 'time_zone = "Europe/Berlin"',
                           'time_zone = "Europe/Berlln"\n[tables.cases]\nfiles = "x.csv"')
    edit(mapping, 'case_id = "Fall-ID"', 'case_id = "Fall-ID"\ncase_number = "Nr"')
    found = problems(export, mapping)
    messages = [p.message for p in found]
    assert any(m.startswith("time_zone: unknown time zone") for m in messages)
    assert any(m.startswith("[tables.cases]: unknown table") for m in messages)
    assert any(m.startswith("[tables.enforcement.columns.case_number]: enforcement has no "
                            "column case_number") for m in messages)
    assert all(p.file == "mapping.toml" for p in found)


def test_a_value_map_outside_the_vocabulary(export: Path, tmp_path: Path) -> None:
    mapping = mapping_with(tmp_path, '"gelöscht" = "removed"', '"gelöscht" = "deleted"')
    [problem] = problems(export, mapping)
    assert (problem.file, problem.value) == ("mapping.toml", "deleted")
    assert problem.message.startswith("[tables.enforcement.values.action]: 'gelöscht' maps to "
                                      "'deleted', which is not one of removed, restricted, "
                                      "no_action")


def test_invalid_toml_and_missing_required_table(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("version = \n", encoding="utf-8")
    with pytest.raises(DataError, match="not valid TOML"):
        read_mapping(bad)
    partial = tmp_path / "partial.toml"
    partial.write_text('[tables.enforcement]\nfiles = "faelle.csv"\n', encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_mapping(partial)
    assert sorted(p.message for p in caught.value.problems) == [
        f"[tables.{t}]: required table is not mapped"
        for t in sorted(("accounts", "advertisers", "ad_spend"))]


def test_mapped_column_missing_from_the_source(export: Path, tmp_path: Path) -> None:
    mapping = mapping_with(tmp_path, 'severity = "Schwere"', 'severity = "Schweregrad"')
    [problem] = problems(export, mapping)
    assert (problem.file, problem.column) == ("faelle.csv", "Schweregrad")
    assert "mapped to enforcement.severity in mapping.toml" in problem.message
    assert "Schwere" in problem.message  # the columns the file does have


def test_required_column_not_mapped(export: Path, tmp_path: Path) -> None:
    mapping = mapping_with(tmp_path, 'policy = "Kategorie"\n', "")
    edit(mapping, "[tables.enforcement.values.policy]", "[tables.enforcement.values.detection2]")
    found = problems(export, mapping)
    assert any("enforcement has no column detection2" in p.message for p in found)
    mapping = mapping_with(tmp_path, 'policy = "Kategorie"\n', "")
    edit(mapping, '[tables.enforcement.values.policy]\n"Hassrede" = "hate_speech"\n"Spam" = '
         '"spam"\n"Urheberrecht" = "copyright"\n', "")
    [problem] = problems(export, mapping)
    assert problem.column == "policy"
    assert "required column policy is not mapped" in problem.message


def test_value_without_mapping_and_bad_timestamp_are_located(export: Path) -> None:
    edit(export / "faelle.csv", "F-0005;k-03;14.02.2023 16:45;Spam", "F-0005;k-03;14.02.2023 16:45;Werbung")
    edit(export / "faelle.csv", "F-0007;k-01;21.02.2023 19:10", "F-0007;k-01;21.02.2023 19.10")
    # 26.03.2023 02:30 does not exist in Berlin: clocks jumped from 02:00 to 03:00.
    edit(export / "faelle.csv", "26.03.2023 03:30", "26.03.2023 02:30")
    found = {(p.file, p.row, p.column, p.value, p.check) for p in problems(export, EXAMPLE)}
    assert found == {
        ("faelle.csv", 5, "Kategorie (-> policy)", "Werbung", "value map"),  # line 6
        ("faelle.csv", 7, "gemeldet_am (-> flagged_at)", "21.02.2023 19.10", "format"),
        ("faelle.csv", 13, "gemeldet_am (-> flagged_at)", "26.03.2023 02:30", "format"),
    }
    shown = str(next(p for p in problems(export, EXAMPLE) if p.check == "value map"))
    assert shown.startswith("faelle.csv, line 6, column Kategorie (-> policy): value has no "
                            "mapping under [tables.enforcement.values.policy]")


def test_contract_problems_are_located_in_the_source(export: Path) -> None:
    edit(export / "faelle.csv", "F-0009;k-02", "F-0008;k-02")  # a repeated case id, line 10
    edit(export / "faelle.csv", "F-0012;k-04", "F-0012;k-99")  # an unknown account, line 13
    edit(export / "werbeausgaben.csv", "W-100;01.02.2023", "W-100;15.01.2023")  # overlap
    found = problems(export, EXAMPLE)
    located = {(p.file, p.row, p.column, p.value) for p in found if p.check != "overlap"}
    assert located == {("faelle.csv", 9, "Fall-ID (-> case_id)", "F-0008"),
                       ("faelle.csv", 12, "Konto (-> account_id)", "k-99")}
    [overlap] = [p for p in found if p.check == "overlap"]
    assert (overlap.file, overlap.row, overlap.column) == ("werbeausgaben.csv", 2,
                                                           "von (-> period_start)")
    assert overlap.value == "W-100 starts 2023-01-15, its previous period ends 2023-01-31"


def test_no_file_matching_the_pattern(export: Path, tmp_path: Path) -> None:
    mapping = mapping_with(tmp_path, 'files = "werbekunden.csv"', 'files = "kunden-*.csv"')
    [problem] = problems(export, mapping)
    assert problem.file == "mapping.toml"
    assert "[tables.advertisers] files = 'kunden-*.csv' matches no file" in problem.message


def test_the_contract_tables_are_all_known_to_the_mapping() -> None:
    spec = read_mapping(EXAMPLE)
    assert set(spec.tables) <= set(CONTRACT)
    assert spec.tables["enforcement"].time_zone == "Europe/Berlin"
    assert spec.tables["enforcement"].values["severity"] == {"niedrig": "0.2", "mittel": "0.5",
                                                             "hoch": "0.9"}
