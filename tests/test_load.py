"""The data contract: loading CSV, CSV.gz and Parquet, and every validation rule, located."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from analysis.load import load
from analysis.schema import CONTRACT, DataError, contract_markdown
from tests.conftest import TINY, write_world


def problems_of(folder: Path) -> list:
    with pytest.raises(DataError) as caught:
        load(folder)
    return caught.value.problems


def forge_colliding_first_hashes(monkeypatch) -> None:
    """Make the first of the two hashes keys are compared by equal for every key, so that only
    the second tells keys apart."""
    import analysis.load as loading

    real = loading._key_hashes
    monkeypatch.setattr(loading, "_key_hashes", lambda column: [
        pl.lit(1, pl.UInt64).alias("_hash_first"), real(column)[1]])


def broken(tmp_path: Path, table: str, old: str, new: str) -> Path:
    tables = dict(TINY)
    assert old in tables[table], "fixture text to replace not found"
    tables[table] = tables[table].replace(old, new, 1)
    return write_world(tmp_path / "broken", tables)


def test_tiny_world_loads_with_types_and_counts(tiny_world: Path) -> None:
    dataset = load(tiny_world)
    enforcement = dataset["enforcement"].collect()
    assert enforcement.schema["flagged_at"] == pl.Datetime("us", "UTC")
    assert enforcement.schema["severity"] == pl.Float64
    assert enforcement.schema["appealed"] == pl.Boolean
    # 2023-02-15T23:30:00-02:00 is 2023-02-16 01:30 UTC: offsets are honoured.
    c5 = enforcement.filter(pl.col("case_id") == "c5")["flagged_at"].item()
    assert (c5.year, c5.month, c5.day, c5.hour, c5.minute) == (2023, 2, 16, 1, 30)
    assert {f.table: f.rows for f in dataset.files} == {
        "accounts": 4, "advertisers": 2, "ad_spend": 3, "enforcement": 5, "watchlist": 2}
    assert all(len(f.sha256) == 64 for f in dataset.files)
    assert not dataset.synthetic


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet"])
def test_formats_load_identically(tmp_path: Path, tiny_world: Path, fmt: str) -> None:
    folder = tmp_path / fmt
    folder.mkdir()
    for name in TINY:
        source = tiny_world / f"{name}.csv"
        if fmt == "csv":
            (folder / f"{name}.csv").write_bytes(source.read_bytes())
        elif fmt == "csv.gz":
            (folder / f"{name}.csv.gz").write_bytes(gzip.compress(source.read_bytes()))
        else:
            # Parquet with real types, as a user's pipeline would write it.
            typed = load(tiny_world)[name].collect()
            typed.write_parquet(folder / f"{name}.parquet")
    expected = load(tiny_world)
    got = load(folder)
    for name in TINY:
        assert got[name].collect().equals(expected[name].collect()), name


# Each broken input names its file, line, column and the offending value.
CASES = [
    ("enforcement", "c2,a2,2023-04-06T10:00:00Z", "c1,a2,2023-04-06T10:00:00Z",
     "enforcement.csv", 3, "case_id", "c1", "duplicate case_id"),
    ("enforcement", "c3,a3,", "c3,a9,", "enforcement.csv", 4, "account_id", "a9",
     "does not exist in accounts"),
    ("enforcement", "2023-04-01T00:00:00Z", "2023-04-31T00:00:00Z", "enforcement.csv", 4,
     "flagged_at", "2023-04-31T00:00:00Z", "ISO 8601"),
    ("enforcement", "removed,2023-03-07T10:00:00Z", "removed,2023-03-05T10:00:00Z",
     "enforcement.csv", 2, "decided_at", "decided 2023-03-05T10:00:00Z < flagged 2023-03-06T10:00:00Z", "before flagged_at"),
    ("enforcement", "restricted,2023-04-01T06:00:00Z,false,", "restricted,2023-04-01T06:00:00Z,false,upheld",
     "enforcement.csv", 4, "appeal_outcome", "upheld", "appealed is not true"),
    ("enforcement", "spam,,no_action", "spam,,deleted", "enforcement.csv", 3, "action", "deleted",
     "one of removed"),
    ("enforcement", "spam,0.2,", "spam,1.2,", "enforcement.csv", 2, "severity", "1.2", "<= 1"),
    ("enforcement", "spam,0.2,", ",0.2,", "enforcement.csv", 2, "policy", None, "must not be empty"),
    ("ad_spend", "2023-06-30,181", "2023-06-30,-181", "ad_spend.csv", 4, "spend", "-181", ">= 0"),
    ("ad_spend", "adv1,2023-03-01,2023-03-10", "adv1,2023-01-20,2023-03-10", "ad_spend.csv", 3,
     "period_start", "adv1 starts 2023-01-20, its previous period ends 2023-01-31", "overlap"),
    ("ad_spend", "adv1,2023-03-01,2023-03-10", "adv1,2023-03-11,2023-03-10", "ad_spend.csv", 3,
     "period_end", "2023-03-10", "before period_start"),
    ("ad_spend", "adv2,2023-01-01", "adv7,2023-01-01", "ad_spend.csv", 4, "advertiser_id", "adv7",
     "does not exist in advertisers"),
    ("accounts", "a3,adv2", "a3,adv3", "accounts.csv", 4, "advertiser_id", "adv3",
     "does not exist in advertisers"),
    ("watchlist", "a1,do-not-moderate,2023-03-01,", "a1,do-not-moderate,01/03/2023,",
     "watchlist.csv", 2, "listed_at", "01/03/2023", "not a date"),
]


@pytest.mark.parametrize("table,old,new,file,line,column,value,message", CASES,
                         ids=[c[7] + "-" + c[5] for c in CASES])
def test_broken_input_is_located(tmp_path, table, old, new, file, line, column, value, message):
    found = problems_of(broken(tmp_path, table, old, new))
    match = [p for p in found if p.file == file and p.column == column and message in p.message]
    assert match, f"no problem with {message!r} among {[str(p) for p in found]}"
    problem = match[0]
    assert problem.row + 1 == line  # CSV line = data row + 1 (header)
    if value is not None:
        assert problem.value == value


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    tables = dict(TINY)
    tables["enforcement"] = (tables["enforcement"]
                             .replace("c2,a2,", "c1,a2,").replace("c3,a3,", "c3,a9,")
                             .replace("spam,,no_action", "spam,,deleted"))
    tables["ad_spend"] = tables["ad_spend"].replace("2023-06-30,181", "2023-06-30,-181")
    found = problems_of(write_world(tmp_path / "many", tables))
    checks = {(p.file, p.check) for p in found}
    assert {("enforcement.csv", "duplicate"), ("enforcement.csv", "foreign key"),
            ("enforcement.csv", "vocabulary"), ("ad_spend.csv", "range")} <= checks


def test_missing_table_and_columns(tmp_path: Path) -> None:
    tables = dict(TINY)
    del tables["advertisers"]
    tables["enforcement"] = "case_id,account_id,policy\nc1,a1,spam\n"
    found = problems_of(write_world(tmp_path / "missing", tables))
    text = [str(p) for p in found]
    assert any("required table advertisers is missing" in t for t in text)
    assert any("column flagged_at" in t and "is missing" in t for t in text)
    assert any("column action" in t and "is missing" in t for t in text)


def test_mixed_currencies_need_rates(tmp_path: Path) -> None:
    tables = dict(TINY)
    tables["ad_spend"] = tables["ad_spend"].replace("181,USD", "181,EUR")
    found = problems_of(write_world(tmp_path / "fx", tables))
    assert any("mixes currencies (EUR, USD)" in p.message and "fx_rates" in p.message for p in found)
    tables["fx_rates"] = "currency,rate_to_usd\nEUR,1.1\nUSD,1.0\n"
    load(write_world(tmp_path / "fx_ok", tables))  # no error with rates


def test_contract_table_lists_every_column() -> None:
    text = contract_markdown()
    for table in CONTRACT.values():
        for column in table.columns:
            assert f"| {column.name} |" in text


def test_readme_shows_the_contract_as_declared() -> None:
    from tests.conftest import REPO

    assert contract_markdown() in (REPO / "README.md").read_text(encoding="utf-8")


def test_problems_beyond_the_examples_are_counted(tmp_path: Path) -> None:
    """1,005 rows with an unknown action: the first 1,000 are listed, the other 5 counted."""
    from analysis.load import MAX_EXAMPLES

    tables = dict(TINY)
    rows = [f"x{i},a2,2023-04-06T10:00:00Z,spam,,deleted,,," for i in range(MAX_EXAMPLES + 5)]
    tables["enforcement"] = TINY["enforcement"].rstrip() + "\n" + "\n".join(rows) + "\n"
    found = [p for p in problems_of(write_world(tmp_path / "many", tables))
             if p.check == "vocabulary"]
    listed = [p for p in found if p.row is not None]
    assert len(listed) == MAX_EXAMPLES
    assert [p.row for p in listed] == list(range(6, 6 + MAX_EXAMPLES))  # after c1..c5, in order
    assert all(p.value == "deleted" for p in listed)
    assert [p.message for p in found if p.row is None] == [
        "5 more rows: must be one of removed, restricted, no_action"]


def test_typed_parquet_problems_show_the_values(tmp_path: Path, tiny_world: Path) -> None:
    """Parquet columns arrive typed: the values shown are made from the typed values."""
    folder = tmp_path / "parquet"
    folder.mkdir()
    for name in TINY:
        typed = load(tiny_world)[name].collect()
        if name == "enforcement":
            typed = typed.with_columns(
                case_id=pl.when(pl.col("case_id") == "c3").then(pl.lit("c1"))
                .otherwise(pl.col("case_id")),
                account_id=pl.when(pl.col("case_id") == "c2").then(pl.lit("a9"))
                .otherwise(pl.col("account_id")),
                decided_at=pl.when(pl.col("case_id") == "c4")
                .then(pl.col("flagged_at") - pl.duration(hours=1)).otherwise(pl.col("decided_at")))
        typed.write_parquet(folder / f"{name}.parquet")
    found = {(p.check, p.row, p.value) for p in problems_of(folder)}
    assert found == {("duplicate", 3, "c1"), ("foreign key", 2, "a9"),
                     ("decision order", 4,
                      "decided 2023-01-04 23:00:00.000000+00:00 < flagged 2023-01-05 00:00:00.000000+00:00")}


def test_duplicate_keys_are_confirmed_on_the_keys_themselves() -> None:
    """Rows whose key hashes are equal are only candidates: here every hash is forged equal,
    and only the rows whose key really is on an earlier row are reported."""
    from analysis.load import ROW, _duplicate_rows

    frame = pl.LazyFrame({ROW: [1, 2, 3, 4, 5], "case_id": ["a", "b", "a", "c", "b"]},
                         schema_overrides={ROW: pl.UInt32})
    forged = pl.DataFrame({ROW: [1, 2, 3, 4, 5], "_hash": [7] * 5},
                          schema={ROW: pl.UInt32, "_hash": pl.UInt64})
    assert _duplicate_rows(frame, "case_id", forged)[ROW].to_list() == [3, 5]
    unique = pl.DataFrame({ROW: [1, 2], "_hash": [1, 2]}, schema=forged.schema)
    assert _duplicate_rows(frame, "case_id", unique).is_empty()


def test_keys_found_when_every_first_hash_collides(tmp_path: Path, monkeypatch) -> None:
    """Keys are compared by hashes: with the first hash forged to collide for every key, the
    missing account and the duplicate case are still found, and nothing else."""
    forge_colliding_first_hashes(monkeypatch)
    tables = dict(TINY)
    tables["enforcement"] = (tables["enforcement"].replace("c2,a2,", "c1,a2,")
                             .replace("c3,a3,", "c3,a9,"))
    found = {(p.check, p.row, p.value) for p in problems_of(write_world(tmp_path / "w", tables))}
    assert found == {("duplicate", 2, "c1"), ("foreign key", 3, "a9")}


@pytest.mark.parametrize("collide", [False, True], ids=["hashes", "first-hash-forged-equal"])
def test_duplicate_keys_of_a_parent_table(tmp_path: Path, monkeypatch, collide: bool) -> None:
    """A parent table's keys (accounts, advertisers) are read once for its children's foreign
    keys and its own duplicates: a repeated account and a repeated advertiser are found, at
    their rows; the cases of the repeated account are not unknown; the unknown one is."""
    if collide:
        forge_colliding_first_hashes(monkeypatch)
    tables = dict(TINY)
    tables["accounts"] = TINY["accounts"].rstrip() + "\na3,adv1"
    tables["advertisers"] = TINY["advertisers"].rstrip() + "\nadv1,Acme Again,"
    tables["enforcement"] = TINY["enforcement"].replace("c2,a2,", "c2,a9,")
    found = {(p.file, p.check, p.row, p.value) for p in problems_of(write_world(tmp_path / "w",
                                                                                 tables))}
    assert found == {("accounts.csv", "duplicate", 5, "a3"),
                     ("advertisers.csv", "duplicate", 3, "adv1"),
                     ("enforcement.csv", "foreign key", 2, "a9")}


def test_large_csv_parsed_once_gives_the_same_tables_and_problems(tmp_path: Path, tiny_world,
                                                                   monkeypatch) -> None:
    """CSV files above CSV_PARSED_ONCE_BYTES are parsed once into a scratch Parquet file; here
    every file counts as large, and the tables and the problems found are the same."""
    import analysis.load as loading

    tables = dict(TINY)
    tables["enforcement"] = (tables["enforcement"].replace("c2,a2,", "c1,a2,")
                             .replace("spam,0.2,", "spam,1.2,"))
    bad = write_world(tmp_path / "bad", tables)
    expected = load(tiny_world)
    expected_problems = [str(p) for p in problems_of(bad)]
    monkeypatch.setattr(loading, "CSV_PARSED_ONCE_BYTES", 0)
    before = len(loading._SCRATCH)
    got = load(tiny_world)
    assert len(loading._SCRATCH) == before + len(TINY)  # one scratch file per table
    assert "parquet" in got["enforcement"].explain().lower()
    for name in TINY:
        assert got[name].collect().equals(expected[name].collect()), name
    assert [str(p) for p in problems_of(bad)] == expected_problems
    assert len(expected_problems) == 2  # the duplicate case_id and the severity out of range


@pytest.mark.parametrize("large", [False, True], ids=["read-through", "parsed-once"])
@pytest.mark.parametrize("compressed", [False, True], ids=["csv", "csv.gz"])
def test_a_line_with_too_many_fields_is_located(tmp_path: Path, monkeypatch, large: bool,
                                                compressed: bool) -> None:
    import analysis.load as loading

    if large:
        monkeypatch.setattr(loading, "CSV_PARSED_ONCE_BYTES", 0)
    tables = dict(TINY)
    tables["enforcement"] = tables["enforcement"].replace(
        "c3,a3,2023-04-01T00:00:00Z,hate,0.9,restricted,2023-04-01T06:00:00Z,false,",
        "c3,a3,2023-04-01T00:00:00Z,hate,0.9,restricted,2023-04-01T06:00:00Z,false,,x,y")
    folder = write_world(tmp_path / "ragged", tables)
    if compressed:
        csv_file = folder / "enforcement.csv"
        (folder / "enforcement.csv.gz").write_bytes(gzip.compress(csv_file.read_bytes()))
        csv_file.unlink()
    found = problems_of(folder)
    assert [str(p) for p in found] == [
        f"enforcement.csv{'.gz' if compressed else ''}, line 4: 11 fields, but the header has 9 "
        "columns"]


def test_a_line_that_is_not_utf8_is_located(tmp_path: Path) -> None:
    folder = write_world(tmp_path / "latin1", TINY)
    csv_file = folder / "enforcement.csv"
    csv_file.write_bytes(csv_file.read_bytes().replace(b"c3,a3", "c3,a3-\u00e9".encode("latin-1")))
    assert [str(p) for p in problems_of(folder)] == [
        "enforcement.csv, line 4: not UTF-8 text (save the file as UTF-8)"]


@pytest.mark.parametrize("collide", [False, True], ids=["hashes", "first-hash-forged-equal"])
def test_foreign_keys_into_a_larger_parent(tmp_path: Path, monkeypatch, collide: bool) -> None:
    """The audit sample's cases must exist in the (much larger) enforcement table, which then
    streams past the sample's keys instead of being held: the missing case is still found,
    also when every key's first hash collides."""
    if collide:
        forge_colliding_first_hashes(monkeypatch)
    tables = dict(TINY)
    tables["audit_sample"] = "case_id,violates\nc1,true\nc7,false\nc3,false\n"
    found = problems_of(write_world(tmp_path / "audit", tables))
    assert [str(p) for p in found] == [
        "audit_sample.csv, line 3, column case_id: case_id does not exist in enforcement "
        "(value 'c7')"]
