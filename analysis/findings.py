"""Findings in words: one plain sentence per test, worded so that it never overclaims.

Rules the wording follows:

* Observational data: a difference is "consistent with" preferential treatment, never "caused".
* A difference counts as found only when its p-value *adjusted for the number of tests* is below
  alpha; otherwise the sentence says no clear difference was found.
* A null result says what it cannot rule out: effects smaller than the minimum detectable effect
  (the effect the test would find 4 times in 5) may exist.
"""

from __future__ import annotations

from analysis.stats.result import TestResult

#: Who is compared with whom, per test: (subject, comparison, like-with-like clause).
SUBJECTS = {
    "listed_unadjusted": ("flagged cases of listed accounts", "cases of other accounts",
                          "In a crude comparison (not like with like), "),
    "listed_adjusted": ("flagged cases of listed accounts", "cases of other accounts",
                        "Comparing like with like (same policy, same severity band), "),
    "advertiser_adjusted": ("flagged cases of advertisers' accounts",
                            "cases of accounts without ad spend",
                            "Comparing like with like (same policy, same severity band), "),
}


def fmt(x: float, digits: int = 2) -> str:
    """A number for prose: 2 significant decimals for ratios, no scientific notation."""
    if x is None:
        return "n/a"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def significant(result: TestResult, alpha: float) -> bool:
    p = result.p_adjusted if result.p_adjusted is not None else result.p_value
    return p is not None and p < alpha


def conclusion(result: TestResult, *, alpha: float) -> str:
    """The sentence for one test result (ok results only; skipped ones carry their reason)."""
    if result.status != "ok":
        return f"Not tested: {result.reason}"
    if result.id == "spend_adjusted":
        return _spend_sentence(result, alpha)
    if result.id == "directive_did":
        return _did_sentence(result, alpha)
    if result.id in _OTHER_SENTENCES:
        return _OTHER_SENTENCES[result.id](result, alpha)
    subject, comparison, clause = SUBJECTS.get(
        result.id, ("the first group", "the second group", ""))
    ci = f"odds ratio {fmt(result.estimate)}, 95% CI {fmt(result.ci_low)} to {fmt(result.ci_high)}"
    p = f"adjusted p {fmt_p(result.p_adjusted)}"
    if significant(result, alpha):
        direction = "less" if result.estimate < 1 else "more"
        change = abs(1 - result.estimate) * 100
        text = (f"{clause}{subject} were enforced {direction} often than {comparison}: the odds "
                f"of enforcement were {change:.0f}% {'lower' if result.estimate < 1 else 'higher'}"
                f" ({ci}; {p}).")
        if result.estimate < 1:
            text += (" This is consistent with preferential treatment; observational data cannot "
                     "by themselves show why.")
        return text[0].upper() + text[1:]
    text = (f"{clause}no clear difference was found between {subject} and {comparison} "
            f"({ci}; {p}).")
    if result.mde is not None:
        text += (f" The data cannot rule out leniency smaller than an odds ratio of "
                 f"{fmt(result.mde)}, the smallest effect this test would detect 4 times in 5.")
    return text[0].upper() + text[1:]


def _spend_sentence(result: TestResult, alpha: float) -> str:
    ci = (f"odds ratio per tenfold spend {fmt(result.estimate)}, 95% CI {fmt(result.ci_low)} to "
          f"{fmt(result.ci_high)}; adjusted p {fmt_p(result.p_adjusted)}")
    if significant(result, alpha):
        lower = result.estimate < 1
        text = (f"Among advertisers, cases of those spending ten times more were "
                f"{abs(1 - result.estimate) * 100:.0f}% {'less' if lower else 'more'} likely, in "
                f"odds, to be enforced, for the same policy and severity ({ci}).")
        if lower:
            text += " This is consistent with money buying leniency, though it does not prove it."
        return text
    text = f"Among advertisers, enforcement showed no clear relation to how much they spent ({ci})."
    if result.mde is not None:
        text += (f" A drop smaller than an odds ratio of {fmt(result.mde)} per tenfold spend cannot "
                 "be ruled out.")
    return text


def _did_sentence(result: TestResult, alpha: float) -> str:
    points = result.estimate * 100
    ci = (f"{fmt(points, 1)} percentage points, 95% CI {fmt(result.ci_low * 100, 1)} to "
          f"{fmt(result.ci_high * 100, 1)}; adjusted p {fmt_p(result.p_adjusted)}")
    if significant(result, alpha):
        direction = "fell" if points < 0 else "rose"
        text = (f"After the listing date, the share of listed accounts' flagged cases that were "
                f"enforced {direction} by {abs(points):.1f} percentage points more than for other "
                f"accounts over the same period ({ci}).")
        if points < 0:
            text += (" This is consistent with the list changing how those accounts were "
                     "moderated, if both groups would otherwise have moved in parallel.")
        return text
    text = (f"No clear change in the enforcement of listed accounts after the listing date, "
            f"relative to other accounts ({ci}).")
    if result.mde is not None:
        text += f" A drop smaller than {abs(result.mde) * 100:.1f} points cannot be ruled out."
    return text


def _trend_sentence(result: TestResult, alpha: float) -> str:
    ci = (f"odds ratio per tier {fmt(result.estimate)}, 95% CI {fmt(result.ci_low)} to "
          f"{fmt(result.ci_high)}; adjusted p {fmt_p(result.p_adjusted)}")
    if significant(result, alpha):
        lower = result.estimate < 1
        return (f"Across spend tiers (no spend, then four bands of rising spend), enforcement "
                f"{'fell' if lower else 'rose'} steadily with each step up, for the same policy "
                f"and severity ({ci})."
                + (" This is consistent with leniency growing with spend." if lower else ""))
    return (f"Across spend tiers, enforcement showed no steady trend with spend ({ci}). A drop "
            f"smaller than an odds ratio of {fmt(result.mde)} per tier cannot be ruled out.")


def _speed_sentence(result: TestResult, alpha: float) -> str:
    ci = (f"hazard ratio {fmt(result.estimate)}, 95% CI {fmt(result.ci_low)} to "
          f"{fmt(result.ci_high)}; adjusted p {fmt_p(result.p_adjusted)}")
    if significant(result, alpha):
        slower = result.estimate < 1
        return (f"Flagged cases of listed accounts were decided {'more slowly' if slower else 'faster'}"
                f" than those of other accounts under the same policy ({ci}): at any moment a "
                f"pending case of a listed account was {abs(1 - result.estimate) * 100:.0f}% "
                f"{'less' if slower else 'more'} likely to be decided.")
    return (f"No clear difference in how fast cases of listed and other accounts were decided "
            f"({ci}).")


def _appeal_sentence(result: TestResult, alpha: float) -> str:
    ci = (f"odds ratio {fmt(result.estimate)}, 95% CI {fmt(result.ci_low)} to "
          f"{fmt(result.ci_high)}; adjusted p {fmt_p(result.p_adjusted)}")
    if significant(result, alpha):
        more = result.estimate > 1
        return (f"On appeal, enforcement decisions against listed accounts were reversed "
                f"{'more' if more else 'less'} often than those against other accounts under the "
                f"same policy ({ci})."
                + (" This is consistent with leniency at the appeal stage." if more else ""))
    return (f"No clear difference in how often appeals reversed decisions against listed and "
            f"other accounts ({ci}).")


def _equivalence_sentence(result: TestResult, alpha: float) -> str:
    bounds = result.details.get("bounds", [None, None])
    ci90 = f"90% CI {fmt(result.ci_low)} to {fmt(result.ci_high)}"
    if result.details.get("equivalent"):
        return (f"Equal treatment can be shown within the stated margin: like with like, the "
                f"odds of enforcement for listed accounts were between {fmt(bounds[0])} and "
                f"{fmt(bounds[1])} times those of other accounts ({ci90}; p {fmt_p(result.p_value)}"
                "). Differences smaller than that margin are not ruled out.")
    return (f"Equal treatment cannot be shown: the adjusted odds ratio ({ci90}) is not confined "
            f"to the margin of {fmt(bounds[0])} to {fmt(bounds[1])}.")


_OTHER_SENTENCES = {
    "spend_trend": _trend_sentence,
    "decision_speed": _speed_sentence,
    "appeal_reversal": _appeal_sentence,
    "equal_treatment": _equivalence_sentence,
}


def findings_markdown(results: dict) -> str:
    """The findings of a results.json document as Markdown: one paragraph per test, id cited."""
    lines = []
    if results.get("synthetic"):
        lines.append("> **SYNTHETIC DATA.** These findings describe a simulated platform with a "
                     "planted truth, not a real one.\n")
    coverage = results["coverage"]
    lines.append(f"{coverage['analysed']:,} of {coverage['enforcement_rows']:,} enforcement cases "
                 "were analysed" + "".join(f"; {n:,} were excluded ({reason})"
                                          for reason, n in coverage["excluded"].items()) + ".\n")
    for test in results["tests"]:
        lines.append(f"- {test['conclusion']} *[test: `{test['id']}`]*")
    return "\n".join(lines)


def tests_table(results: dict):
    """The battery as a table (pandas, for display): estimate, CI, p, adjusted p, n."""
    import pandas as pd

    rows = []
    for t in results["tests"]:
        ok = t["status"] == "ok"
        rows.append({
            "test": t["id"],
            "scale": t["scale"],
            "estimate": t["estimate"] if ok else None,
            "95% CI": f"{fmt(t['ci_low'], 3)} to {fmt(t['ci_high'], 3)}" if ok else "",
            "p": fmt_p(t["p_value"]) if ok else "",
            "adjusted p": fmt_p(t["p_adjusted"]) if ok else "",
            "n cases": t["n"] if ok else None,
            "accounts": t.get("n_clusters") if ok else None,
            "status": t["status"] if ok else f"skipped: {t['reason']}",
        })
    table = pd.DataFrame(rows).set_index("test")
    return table.astype({"n cases": "Int64", "accounts": "Int64"})
