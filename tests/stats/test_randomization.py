"""Tests of analysis.stats.randomization: exactness under the null, power, and bookkeeping.

There is no published value for a permutation p-value on these data, so the checks are of the
properties that make the test valid: under a simulated null world the p-value is uniform (its
rejection rate at 0.05 is 0.05), it finds a planted effect, its values lie on the lattice
k / (1 + n_permutations), it is reproducible from the seed, and the vectorised statistic equals the
reference estimators (mantel_haenszel, did) recomputed one reshuffle at a time.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from analysis.stats.randomization import _label_batches, permutation_test
from analysis.stats.regression import did
from analysis.stats.stratified import mantel_haenszel


def null_world(
    rng: np.random.Generator,
    *,
    effect: float = 0.0,
    n_accounts: int = 40,
    n_treated: int = 10,
    cases_per_account: int = 12,
    account_sd: float = 1.0,
) -> pl.DataFrame:
    """Cases of accounts with their own leniency (random effect), a random few of them treated.

    The log-odds of enforcement is a stratum effect + the account's random effect + ``effect`` for
    treated accounts. The account effect makes cases of one account alike, which is what makes
    case-level tests too quick to reject.
    """
    account = np.repeat(np.arange(n_accounts), cases_per_account)
    treated_accounts = rng.permutation(n_accounts) < n_treated
    treated = treated_accounts[account]
    account_effect = rng.normal(0.0, account_sd, n_accounts)[account]
    policy = rng.integers(0, 3, account.size)
    log_odds = -0.3 + 0.5 * policy + account_effect + effect * treated
    enforced = rng.random(account.size) < 1 / (1 + np.exp(-log_odds))
    return pl.DataFrame(
        {
            "account_id": [f"acc{a:03d}" for a in account],
            "listed": treated,
            "policy": policy,
            "enforced": enforced,
        }
    )


def did_world(rng: np.random.Generator, *, effect: float = 0.0) -> pl.DataFrame:
    """Like :func:`null_world` with a before/after split; treated accounts change by ``effect``."""
    frame = null_world(rng, n_accounts=80, n_treated=20, cases_per_account=20)
    post = rng.random(frame.height) < 0.5
    drop = rng.random(frame.height) < abs(effect)
    enforced = frame.get_column("enforced").to_numpy()
    # A planted drop: a share `effect` of treated cases after the event become not enforced.
    enforced = np.where(frame.get_column("listed").to_numpy() & post & drop, False, enforced)
    return frame.with_columns(post=pl.Series(post), enforced=pl.Series(enforced))


MH = dict(outcome="enforced", treated="listed", strata="policy", cluster="account_id")


# ------------------------------------------------------------------------------------------
# Validity and power
# ------------------------------------------------------------------------------------------


def test_p_value_is_uniform_under_the_null_while_case_level_cmh_is_not():
    rng = np.random.default_rng(2)
    results = [
        permutation_test(null_world(rng), **MH, n_permutations=199, seed=1000 + i)
        for i in range(200)
    ]
    p = np.array([r.p_value for r in results])
    # Exact test: P(p <= 0.05) = 10/200 = 0.05; with 200 worlds the Monte Carlo SE is 0.015.
    assert 0.02 <= (p <= 0.05).mean() <= 0.09
    assert 0.05 <= (p <= 0.10).mean() <= 0.15
    assert 0.45 <= p.mean() <= 0.56  # uniform on (0, 1] has mean ~0.5
    # The same worlds show why the test is needed: the CMH test, which treats cases as
    # independent, rejects far more often than 5%.
    cmh = np.array([r.details["asymptotic"]["cmh_p_value"] for r in results])
    assert (cmh <= 0.05).mean() > 0.12


def test_detects_a_planted_effect():
    rng = np.random.default_rng(11)
    world = null_world(rng, effect=-1.5, n_accounts=60, n_treated=15)
    result = permutation_test(world, **MH, seed=3)
    assert result.p_value == pytest.approx(1 / 1000)  # no reshuffle is as extreme
    assert result.estimate < 0.5
    assert result.scale == "OR"
    assert result.n_clusters == 60


def test_did_statistic_detects_a_planted_drop_and_matches_did():
    rng = np.random.default_rng(5)
    world = did_world(rng, effect=0.6)
    result = permutation_test(
        world, outcome="enforced", treated="listed", strata=(), cluster="account_id",
        exposed="post", statistic="did", seed=9,
    )
    reference = did(world, outcome="enforced", treated="listed", post="post", cluster="account_id")
    assert result.estimate == pytest.approx(reference.estimate, rel=1e-12)
    assert result.ci_low == pytest.approx(reference.ci_low, rel=1e-12)
    assert result.details["observed_statistic"] == pytest.approx(
        reference.details["raw_did"], rel=1e-12
    )
    assert result.scale == "probability"
    assert result.estimate < -0.2
    assert result.p_value <= 0.002


# ------------------------------------------------------------------------------------------
# The vectorised statistic equals the reference estimators, reshuffle by reshuffle
# ------------------------------------------------------------------------------------------


def brute_force_p(world: pl.DataFrame, statistic, *, within: str | None, seed: int, n: int):
    """The permutation p-value recomputed with one reference-estimator call per reshuffle."""
    accounts = (
        world.group_by("account_id")
        .agg(pl.col("listed").first(), pl.col(within).first() if within else pl.lit(0))
        .sort("account_id")
    )
    labels = accounts.get_column("listed").to_numpy()
    levels = (
        accounts.get_column(within).rank("dense").to_numpy() if within else np.zeros(labels.size)
    )
    observed = statistic(world)
    ids = accounts.get_column("account_id")
    extreme = 0
    blocks = _label_batches(labels, levels, rng=np.random.default_rng(seed), n_permutations=n)
    for block in blocks:
        for row in block.toarray():
            relabelled = world.drop("listed").join(
                pl.DataFrame({"account_id": ids, "listed": row.astype(bool)}), on="account_id"
            )
            extreme += abs(statistic(relabelled)) >= abs(observed) - 1e-9
    return observed, (1 + extreme) / (1 + n)


def test_mh_permutations_match_mantel_haenszel_one_by_one():
    rng = np.random.default_rng(21)
    world = null_world(rng, effect=-0.4, n_accounts=24, n_treated=8).with_columns(
        advertiser=pl.col("account_id").str.slice(-1).cast(pl.Int64) % 2 == 0
    )

    def log_mh(frame):
        est = mantel_haenszel(frame, outcome="enforced", group="listed", strata="policy")
        return math.log(est.estimate)

    observed, expected_p = brute_force_p(world, log_mh, within="advertiser", seed=4, n=39)
    result = permutation_test(world, **MH, within="advertiser", n_permutations=39, seed=4)
    assert result.details["observed_statistic"] == pytest.approx(observed, rel=1e-12)
    assert result.p_value == pytest.approx(expected_p, abs=1e-12)
    # Estimate and interval are mantel_haenszel's, with the account jackknife.
    reference = mantel_haenszel(world, outcome="enforced", group="listed", strata="policy",
                                cluster="account_id")
    assert result.estimate == pytest.approx(reference.estimate, rel=1e-12)
    assert (result.ci_low, result.ci_high) == pytest.approx((reference.ci_low, reference.ci_high))
    assert result.se == pytest.approx(reference.se, rel=1e-12)
    assert result.details["asymptotic"]["p_value"] == pytest.approx(reference.p_value, rel=1e-12)


def test_did_permutations_match_raw_did_one_by_one():
    rng = np.random.default_rng(8)
    world = did_world(rng, effect=0.2)

    def raw_did(frame):
        rates = frame.group_by("listed", "post").agg(pl.col("enforced").mean())
        rate = {(t, p): r for t, p, r in rates.iter_rows()}
        return (rate[True, True] - rate[True, False]) - (rate[False, True] - rate[False, False])

    observed, expected_p = brute_force_p(world, raw_did, within=None, seed=12, n=29)
    result = permutation_test(
        world, outcome="enforced", treated="listed", strata=[], cluster="account_id",
        exposed="post", statistic="did", n_permutations=29, seed=12,
    )
    assert result.details["observed_statistic"] == pytest.approx(observed, rel=1e-12)
    assert result.p_value == pytest.approx(expected_p, abs=1e-12)


def test_exposed_restricts_the_group_to_exposed_cases_of_treated_accounts():
    rng = np.random.default_rng(3)
    world = did_world(rng, effect=0.5)
    result = permutation_test(world, **MH, exposed="post", n_permutations=99, seed=1)
    reference = mantel_haenszel(
        world.with_columns(group=pl.col("listed") & pl.col("post")),
        outcome="enforced", group="group", strata="policy", cluster="account_id",
    )
    assert result.estimate == pytest.approx(reference.estimate, rel=1e-12)
    assert result.p_value <= 0.03  # the planted drop is among the most extreme of 100


def test_without_strata_the_statistic_is_the_crude_odds_ratio():
    rng = np.random.default_rng(4)
    world = null_world(rng)
    result = permutation_test(world, **{**MH, "strata": []}, n_permutations=49, seed=2)
    crude = world.group_by("listed").agg(
        pl.col("enforced").sum().alias("yes"), (~pl.col("enforced")).sum().alias("no")
    )
    cells = {listed: (yes, no) for listed, yes, no in crude.iter_rows()}
    odds = (cells[True][0] / cells[True][1]) / (cells[False][0] / cells[False][1])
    assert result.estimate == pytest.approx(odds, rel=1e-12)
    assert "jackknife" in result.method


# ------------------------------------------------------------------------------------------
# Bookkeeping: lattice, seed, within, inputs, errors
# ------------------------------------------------------------------------------------------


def test_p_values_lie_on_the_lattice_of_one_over_n_plus_one():
    rng = np.random.default_rng(6)
    for i in range(10):
        result = permutation_test(null_world(rng), **MH, n_permutations=19, seed=i)
        k = result.p_value * 20
        assert k == pytest.approx(round(k), abs=1e-12)
        assert 1 <= round(k) <= 20
        assert result.details["n_at_least_as_extreme"] == round(k) - 1


def test_same_seed_gives_the_same_result_and_seed_is_required():
    world = null_world(np.random.default_rng(12))
    first = permutation_test(world, **MH, n_permutations=199, seed=77)
    again = permutation_test(world, **MH, n_permutations=199, seed=77)
    assert first == again
    other = permutation_test(world, **MH, n_permutations=199, seed=78)
    assert other.details["permutation_quantiles"] != first.details["permutation_quantiles"]
    with pytest.raises(TypeError):
        permutation_test(world, **MH)  # no seed
    with pytest.raises(ValueError, match="needs a seed"):
        permutation_test(world, **MH, seed=None)


@pytest.mark.parametrize("kind", ["polars", "pandas", "lazy", "cells"])
def test_every_input_form_gives_the_same_answer(kind):
    world = null_world(np.random.default_rng(13), effect=-0.5)
    expected = permutation_test(world, **MH, n_permutations=99, seed=5)
    count = None
    if kind == "pandas":
        frame = world.to_pandas()
    elif kind == "lazy":
        frame = world.lazy()
    elif kind == "cells":
        frame = world.group_by(world.columns).len("n").sort(world.columns)
        count = "n"
    else:
        frame = world.sample(fraction=1.0, shuffle=True, seed=1)  # order must not matter
    result = permutation_test(frame, **MH, count=count, n_permutations=99, seed=5)
    assert result.p_value == expected.p_value
    assert result.estimate == pytest.approx(expected.estimate, rel=1e-12)
    assert result.details["permutation_quantiles"] == pytest.approx(
        expected.details["permutation_quantiles"], rel=1e-12
    )


def test_label_batches_keep_the_number_treated_in_every_level():
    labels = np.array([1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1], dtype=bool)
    levels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2])
    blocks = list(_label_batches(labels, levels, rng=np.random.default_rng(0), n_permutations=250))
    assert [b.shape for b in blocks] == [(100, 12), (100, 12), (50, 12)]
    rows = np.vstack([block.toarray() for block in blocks])
    for level, treated in ((0, 2), (1, 1), (2, 2)):
        assert (rows[:, levels == level].sum(axis=1) == treated).all()
    # The labels do move: level 0 has C(4, 2) = 6 assignments and all of them occur.
    assert len({tuple(r) for r in rows[:, levels == 0]}) == 6


def test_treatment_confounded_with_within_gives_p_one():
    world = null_world(np.random.default_rng(14), effect=-2.0).with_columns(
        advertiser=pl.col("listed")
    )
    result = permutation_test(world, **MH, within="advertiser", n_permutations=99, seed=1)
    assert result.p_value == 1.0
    assert result.details["treated_per_level"] == {"False": [0, 30], "True": [10, 10]}
    assert result.details["log10_assignments"] == pytest.approx(0.0, abs=1e-12)
    # Without the restriction the same world is clearly significant.
    assert permutation_test(world, **MH, n_permutations=99, seed=1).p_value <= 0.02


def test_treated_must_be_constant_within_cluster():
    world = null_world(np.random.default_rng(15))
    flipped = world.with_columns(
        listed=pl.when(pl.int_range(pl.len()) == 5).then(~pl.col("listed")).otherwise("listed")
    )
    with pytest.raises(ValueError, match="constant within each cluster.*acc000"):
        permutation_test(flipped, **MH, seed=1)
    mixed_within = world.with_columns(advertiser=pl.int_range(pl.len()) % 2 == 0)
    with pytest.raises(ValueError, match="within column 'advertiser'"):
        permutation_test(mixed_within, **MH, within="advertiser", seed=1)


def test_argument_errors():
    world = did_world(np.random.default_rng(16))
    with pytest.raises(ValueError, match="exposed"):
        permutation_test(world, **{**MH, "strata": ()}, statistic="did", seed=1)
    with pytest.raises(ValueError, match="takes no strata"):
        permutation_test(world, **MH, exposed="post", statistic="did", seed=1)
    with pytest.raises(ValueError, match="'mh' or 'did'"):
        permutation_test(world, **MH, statistic="logit", seed=1)
    with pytest.raises(ValueError, match="at least 1"):
        permutation_test(world, **MH, n_permutations=0, seed=1)
    with pytest.raises(ValueError, match="never true"):
        permutation_test(world.with_columns(listed=False), **MH, seed=1)
