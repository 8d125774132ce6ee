"""Tests of analysis.audit: the tables the notebooks show, checked against numbers known by hand."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from analysis import audit
from analysis.config import REFERENCE_DATA_DIR


@pytest.fixture(scope="module")
def berkeley_cases() -> pl.DataFrame:
    """UC Berkeley admissions 1973 as one row per applicant: department as "policy", men as the
    group, admission as the outcome (data/reference/MANIFEST.md)."""
    counts = pl.read_csv(REFERENCE_DATA_DIR / "berkeley" / "UCBAdmissions.csv")
    return counts.select(
        policy=pl.col("Dept"), male=pl.col("Gender") == "Male",
        enforced=pl.col("Admit") == "Admitted", n=pl.col("Freq"),
    ).select(pl.all().exclude("n").repeat_by(pl.col("n")).explode())


def test_rates_by_policy_shows_the_berkeley_paradox(berkeley_cases):
    table = audit.rates_by_policy(berkeley_cases, group="male")
    # Bickel, Hammel & O'Connell (1975): department A admitted 512 of 825 men (62.1%) and 89 of
    # 108 women (82.4%); over all six departments 1,198 of 2,691 men (44.5%), 557 of 1,835 women
    # (30.4%): women fare better in A but worse overall, because they applied to departments that
    # admit few.
    a = table.filter(pl.col("policy") == "A").row(0, named=True)
    assert (a["male: cases"], a["not male: cases"]) == (825, 108)
    assert a["male: enforced (%)"] == pytest.approx(100 * 512 / 825)
    assert a["not male: enforced (%)"] == pytest.approx(100 * 89 / 108)
    everyone = table.row(-1, named=True)
    assert everyone["policy"] == "all policies"
    assert (everyone["male: cases"], everyone["not male: cases"]) == (2691, 1835)
    assert everyone["male: enforced (%)"] == pytest.approx(100 * 1198 / 2691)
    assert everyone["not male: enforced (%)"] == pytest.approx(100 * 557 / 1835)
    assert everyone["male: share of its cases (%)"] == 100.0
    # each group's policy mix adds up to 100%
    per_policy = table.filter(pl.col("policy") != "all policies")
    assert per_policy["not male: share of its cases (%)"].sum() == pytest.approx(100.0)
    assert per_policy["policy"].to_list()[0] == "A"  # largest department first (933 applicants)


def test_side_by_side_reads_crude_and_adjusted():
    def row(name, crude, adjusted):
        return {"comparison": name, "crude": crude[0], "crude_ci_low": crude[1], "crude_ci_high": crude[2],
                "crude_test": "computed here", "adjusted": adjusted[0], "adjusted_ci_low": adjusted[1],
                "adjusted_ci_high": adjusted[2], "adjusted_test": name}

    table = pl.DataFrame([
        # Berkeley: crude OR 1.84 (1.62 to 2.09), Mantel-Haenszel 0.905 (0.773 to 1.059),
        # R mantelhaen.test(UCBAdmissions)
        row("berkeley", (1.84, 1.62, 2.09), (0.905, 0.773, 1.059)),
        row("hidden", (1.0, 0.9, 1.1), (0.5, 0.4, 0.6)),
        row("flipped", (1.8, 1.6, 2.0), (0.5, 0.4, 0.6)),
        row("smaller", (0.4, 0.3, 0.5), (0.6, 0.5, 0.7)),
        row("neither", (1.0, 0.9, 1.1), (1.0, 0.9, 1.1)),
        row("missing", (None, None, None), (1.0, 0.9, 1.1)),
    ])
    readings = audit.side_by_side(table)
    assert readings["crude OR (95% CI)"][0] == "1.84 (1.62 to 2.09)"
    assert readings["adjusted OR (95% CI)"][0] == "0.91 (0.77 to 1.06)"
    words = readings["reading"].to_list()
    assert words[0].startswith("The crude difference vanishes like with like")
    assert words[1].startswith("A difference appears only like with like")
    assert "Simpson's paradox" in words[2]
    assert words[3].endswith("like with like it is smaller.")
    assert words[4] == "Neither shows a clear difference."
    assert words[5] == "One of the two could not be estimated."


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from analysis.simulate import simulate

    folder = tmp_path_factory.mktemp("audit") / "data"
    simulate("null-confounded", seed=3, out=folder, n_cases=3000, n_accounts=600, n_advertisers=80)
    return folder


@pytest.fixture(scope="module")
def cases(world) -> pl.DataFrame:
    from analysis.attribute import attribute
    from analysis.load import load

    return attribute(load(world))[0].collect()


def test_crude_and_adjusted_computes_the_crude_odds_ratio_of_the_cases(cases):
    results = {"tests": [
        {"id": "listed_unadjusted", "status": "ok", "estimate": 0.5, "ci_low": 0.4, "ci_high": 0.6},
        {"id": "listed_adjusted", "status": "ok", "estimate": 0.9, "ci_low": 0.7, "ci_high": 1.1},
        {"id": "advertiser_adjusted", "status": "skipped", "reason": "no advertisers"},
    ]}
    table = audit.crude_and_adjusted(cases, results=results, tests=["listed_adjusted", "advertiser_adjusted"])
    listed, advertisers = table.rows(named=True)
    assert (listed["crude"], listed["crude_test"], listed["adjusted"]) == (0.5, "listed_unadjusted", 0.9)
    # the crude odds ratio, counted by hand from the cases' 2x2 table
    counts = {(advertiser, enforced): n
              for advertiser, enforced, n in cases.group_by("is_advertiser", "enforced").len().rows()}
    by_hand = (counts[(True, True)] * counts[(False, False)]) / (counts[(True, False)] * counts[(False, True)])
    assert advertisers["crude"] == pytest.approx(by_hand, rel=1e-9)
    assert advertisers["crude_ci_low"] < by_hand < advertisers["crude_ci_high"]
    assert advertisers["adjusted"] is None  # the test did not run
    with pytest.raises(ValueError, match="no crude counterpart"):
        audit.crude_and_adjusted(cases, results=results, tests=["decision_speed"])


def test_appeal_summary_counts_by_hand():
    cases = pl.DataFrame({
        "listed": [True, True, True, False, False, False, False],
        "enforced": [True, True, False, True, True, True, False],
        "appealed": [True, True, True, True, False, None, True],
        "reversed": [True, False, False, False, False, None, True],
    })
    table = audit.appeal_summary(cases)
    assert table.rows() == [
        ("cases of listed accounts", 2, 2, 100.0, 1, 50.0),
        ("cases of other accounts", 3, 1, pytest.approx(100 / 3), 0, 0.0),
    ]


def test_exclusions_explain_each_reason():
    table = audit.exclusions({"enforcement_rows": 200, "analysed": 180, "excluded": {
        "spend window outside spend coverage": 15, "duplicate record": 5}})
    assert table.select("reason", "rows", "share of input (%)").rows() == [
        ("spend window outside spend coverage", 15, 7.5), ("duplicate record", 5, 2.5)]
    assert "spend at flag time is unknown" in table["what it means"][0]
    nothing = audit.exclusions({"enforcement_rows": 10, "analysed": 10, "excluded": {}})
    assert nothing["reason"].to_list() == ["nothing excluded"]


RESULTS = {
    "parameters": {"alpha": 0.05},
    "tests": [
        {"id": "listed_adjusted", "status": "ok", "scale": "OR", "estimate": 0.41, "ci_low": 0.34,
         "ci_high": 0.50, "p_value": 1e-19, "p_adjusted": 5e-19, "mde": 0.758, "conclusion": "Less.",
         "details": {"e_value": {"point": 2.506, "ci": 2.194},
                     "randomization": {"p_value": 0.001, "permutations": 999}}},
        {"id": "spend_adjusted", "status": "ok", "scale": "OR", "estimate": 0.99, "ci_low": 0.93,
         "ci_high": 1.05, "p_value": 0.65, "p_adjusted": 0.97, "mde": 0.917,
         "details": {"e_value": {"point": 1.09, "ci": 1.0}}},
        {"id": "directive_did", "status": "ok", "scale": "probability", "estimate": -0.163,
         "ci_low": -0.203, "ci_high": -0.123, "p_value": 1e-15, "p_adjusted": 4e-15, "mde": -0.057,
         "details": {"group_means": {"treated_pre": 0.4626, "treated_post": 0.3012,
                                     "control_pre": 0.5676, "control_post": 0.5718},
                     "group_rows": {"treated_pre": 1044, "treated_post": 830, "control_pre": 25438,
                                    "control_post": 22638},
                     "randomization": {"p_value": 0.04, "permutations": 999},
                     "event_study": [
                         {"event_time": 0, "estimate": -0.27, "ci_low": -0.44, "ci_high": -0.11,
                          "p_value": 0.0014, "reference": False, "n_treated": 40, "n_control": 464},
                         {"event_time": -1, "estimate": 0.0, "ci_low": 0.0, "ci_high": 0.0,
                          "p_value": None, "reference": True, "n_treated": 57, "n_control": 503}]}},
        {"id": "appeal_reversal", "status": "skipped", "reason": "no enforced case was appealed"},
        {"id": "equal_treatment", "status": "ok", "scale": "OR", "estimate": 0.41, "ci_low": 0.35,
         "ci_high": 0.48, "p_value": 1.0, "p_adjusted": 1.0,
         "details": {"bounds": [0.8, 1.25], "equivalent": False, "reading": "different",
                     "margin_rationale": "conventional 80-125% bounds"}},
    ],
}


def test_did_table_is_the_difference_of_the_changes():
    table = audit.did_table(RESULTS)
    listed, others, difference = table.rows()
    assert listed[1:4] == pytest.approx((46.26, 30.12, -16.14))
    assert others[1:4] == pytest.approx((56.76, 57.18, 0.42))
    assert difference[3] == pytest.approx(-16.14 - 0.42)
    assert listed[4:] == (1044, 830)
    assert audit.did_table({"tests": []}).height == 0


def test_event_study_table_sorts_months_and_marks_the_reference():
    table = audit.event_study_table(RESULTS)
    assert table["month"].to_list() == ["\u22121 (reference)", "0"]
    assert table["gap (points)"].to_list() == pytest.approx([0.0, -27.0])
    assert table["p"].to_list() == ["\u2013", "0.001"]
    assert audit.event_study_rows({"tests": []}) == []


def test_power_table_reads_each_test():
    table = audit.power_table(RESULTS)
    assert table["test"].to_list() == ["listed_adjusted", "spend_adjusted", "directive_did", "appeal_reversal"]
    rows = {r["test"]: r for r in table.iter_rows(named=True)}
    assert rows["listed_adjusted"]["reading"].startswith("A difference was found")
    assert rows["spend_adjusted"]["MDE"] == "0.92"
    assert "0.92 or stronger would have been detected 4 times in 5" in rows["spend_adjusted"]["reading"]
    assert rows["directive_did"]["estimate"] == "\u221216.3 points"
    assert rows["directive_did"]["95% CI"] == "\u221220.3 to \u221212.3 points"
    assert rows["appeal_reversal"]["reading"] == "Not run: no enforced case was appealed."


def test_equivalence_e_values_and_randomization_tables():
    equivalence = dict(audit.equivalence_table(RESULTS).rows())
    assert equivalence["margin (odds ratio)"] == "0.80 to 1.25"
    assert equivalence["90% confidence interval"] == "0.35 to 0.48"
    assert equivalence["equivalence shown"] == "no"
    assert equivalence["why this margin"] == "conventional 80-125% bounds"
    assert equivalence["reading"].startswith("Equal treatment cannot be shown, and a difference was found")

    e_values = audit.e_value_table(RESULTS)
    assert e_values["test"].to_list() == ["listed_adjusted", "spend_adjusted"]
    assert e_values["E-value (estimate)"].to_list() == [2.506, 1.09]
    assert "risk ratio of 2.51 each" in e_values["reading"][0]
    assert e_values["reading"][1].startswith("The confidence interval already includes no difference")

    randomized = audit.randomization_table(RESULTS)
    assert randomized.select("test", "p (asymptotic)", "p (randomization)", "reshuffles").rows() == [
        ("listed_adjusted", "< 0.001", "0.001", 999), ("directive_did", "< 0.001", "0.040", 999)]
    assert randomized["smallest possible p"].to_list() == [0.001, 0.001]
    assert randomized["reading"][0].endswith("the smallest the reshuffles can show.")
    assert randomized["reading"][1].startswith("The two agree: both are below")


def test_conclusions_and_result_summary_name_their_test():
    text = audit.conclusions(RESULTS, tests=["listed_adjusted", "appeal_reversal", "nope"])
    assert text._repr_markdown_() == text
    assert text.splitlines() == [
        "- Less. *[test: `listed_adjusted`]*",
        "- Not tested: no enforced case was appealed. *[test: `appeal_reversal`]*",
        "- This test is not in the results. *[test: `nope`]*",
    ]
    summary = dict(audit.result_summary(RESULTS, test="directive_did").rows())
    assert summary["estimate"] == "difference in enforcement probability \u221216.3 points"
    assert summary["randomization-inference p (999 reshuffles)"] == "0.040"
    with pytest.raises(ValueError, match="no test 'nope'"):
        audit.result_summary(RESULTS, test="nope")


def test_tables_show_plainly():
    html = audit.table_html(pl.DataFrame({"group": ["a<b"], "cases": [12345], "rate": [61.4218],
                                          "delta": [-0.5], "missing": [None], "flag": [True]},
                                         schema_overrides={"missing": pl.Float64}))
    assert "<td style=\"text-align:left\">a&lt;b</td>" in html
    assert "<td>12,345</td><td>61.4</td><td>\u22120.5</td><td>\u2013</td><td>yes</td>" in html
    assert audit.show_tables_plainly() is False  # not inside IPython


def test_read_run_refuses_other_data_than_the_results_were_computed_from(world, tmp_path):
    from analysis.pipeline import analyze
    from analysis.results import write_json

    run = tmp_path / "run"
    run.mkdir()
    analysis = analyze(world)
    write_json(run / "results.json", analysis.results)
    read = audit.read_run(world, out_dir=run)
    # the same cases as the run analysed, row for row
    assert read.cases.equals(analysis.cases.collect())
    results = json.loads((run / "results.json").read_text())
    results["data"]["files"][0]["sha256"] = "0" * 64
    (run / "results.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match="not the data"):
        audit.read_run(world, out_dir=run)
    with pytest.raises(FileNotFoundError, match="levelfield analyze"):
        audit.read_results(tmp_path / "nowhere")
