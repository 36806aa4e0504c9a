"""Feedback-loop simulation: Ensign et al.'s urn, lock-in of a top-k policy, mitigations.

Ensign, Friedler, Neville, Scheidegger & Venkatasubramanian (2018), "Runaway feedback
loops in predictive policing", PMLR 81. Their qualitative results, reproduced with fixed
seeds: with discovered incidents only, the urn's allocation runs away to the area with the
higher rate (and, with equal rates, to a random split instead of 1/2); weighting each
discovered incident by the inverse probability of having patrolled there keeps the
allocation at the true ratio lambda_A / (lambda_A + lambda_B).
"""

from __future__ import annotations

import numpy as np
import pytest

from placecast.audit import (
    plot_feedback,
    select_top,
    simulate_feedback,
    simulate_urn,
    sum_refit,
    total_variation,
)
from placecast.exceptions import ParameterError

N_STEPS, N_RUNS, SEED = 10_000, 40, 2018


def test_urn_runaway_with_discovered_incidents_only():
    # true rates 0.3 and 0.15: the truth is a 2/3 share for A
    result = simulate_urn((0.3, 0.15), variant="discovered", n_steps=N_STEPS, n_runs=N_RUNS,
                          random_state=SEED)
    assert result.truth == pytest.approx(2 / 3)
    final = result.final
    # runaway: the allocation heads to 1, far beyond the truth, in (almost) every run
    assert final.mean() > 0.9
    assert (final > result.truth + 0.15).mean() >= 0.9
    # and it keeps moving away: later steps are further from the truth than earlier ones
    assert np.mean(result.share[:, N_STEPS // 10]) < final.mean()


def test_urn_correction_keeps_allocation_at_the_truth():
    weighted = simulate_urn((0.3, 0.15), variant="corrected", n_steps=N_STEPS, n_runs=N_RUNS,
                            random_state=SEED)
    distance = np.abs(weighted.final - 2 / 3)
    assert abs(np.median(weighted.final) - 2 / 3) < 0.01
    # 1/p weights have a heavy tail: a few runs wait long for the rarely-visited area
    assert (distance < 0.05).mean() >= 0.9
    thinned = simulate_urn((0.3, 0.15), variant="thinned", n_steps=N_STEPS, n_runs=N_RUNS,
                           random_state=SEED)
    assert abs(thinned.final.mean() - 2 / 3) < 0.01
    assert np.abs(thinned.final - 2 / 3).max() < 0.08


def test_urn_equal_rates_plain_urn_settles_anywhere_corrected_at_half():
    plain = simulate_urn((0.2, 0.2), variant="discovered", n_steps=N_STEPS, n_runs=N_RUNS,
                         random_state=SEED)
    fixed = simulate_urn((0.2, 0.2), variant="thinned", n_steps=N_STEPS, n_runs=N_RUNS,
                         random_state=SEED)
    # a Polya urn from (1, 1) converges to a uniform random limit: sd ~ 1/sqrt(12) = 0.29
    assert plain.final.std() > 0.2
    assert np.abs(fixed.final - 0.5).max() < 0.06


def test_urn_reported_incidents_learn_the_reporting_rates():
    result = simulate_urn((0.3, 0.15), variant="reported", n_steps=N_STEPS, n_runs=10,
                          random_state=SEED)
    assert np.abs(result.final - 2 / 3).max() < 0.03
    assert result.to_dict()["variant"] == "reported"
    assert len(result.to_frame()) == 10 * (N_STEPS + 1)


def test_urn_validates_parameters():
    with pytest.raises(ParameterError, match="urn variant"):
        simulate_urn((0.3, 0.1), variant="magic")
    with pytest.raises(ParameterError, match="two probabilities"):
        simulate_urn((1.3, 0.1))
    with pytest.raises(ParameterError, match="prior"):
        simulate_urn((0.3, 0.1), prior=(0, 1), n_steps=2)


def test_total_variation_and_select_top():
    assert total_variation([1, 0], [0, 1]) == pytest.approx(1.0)
    assert total_variation([2, 2], [1, 1]) == pytest.approx(0.0)
    assert total_variation([3, 1, 0], [1, 1, 2]) == pytest.approx(0.5)
    mask = select_top([0.1, 0.5, 0.4, 0.9], [1.0, 2.0, 1.0, 1.0], 3.0)
    assert mask.tolist() == [False, True, False, True]  # 0.9 (1) + 0.5 (2) fill 3


def lock_in_setup():
    """5 high-rate units (10 events/period) and 15 lower ones (6), the history favouring
    the lower ones: 30 recorded events each, none on the high ones."""
    truth = np.r_[np.full(5, 10.0), np.full(15, 6.0)]
    history = np.r_[np.zeros(5), np.full(15, 30.0)][None, :]
    return truth, history


def test_top_k_policy_locks_in_and_mitigations_learn_the_truth():
    truth, history = lock_in_setup()
    result = simulate_feedback(truth, np.ones(20), 5.0, history=history, n_periods=120,
                               uplift=1.0, detection=0.5, refit=sum_refit(), n_runs=2,
                               random_state=11)
    summary = result.summary().set_index("variant")
    # as configured: flagged low-rate units are recorded at 6/period, the unflagged high-rate
    # ones at 5/period - the policy never finds them (total-variation distance 1)
    assert summary.loc["policy", "tv_end"] == pytest.approx(1.0)
    assert summary.loc["policy", "turnover_mean"] < 0.01  # locked in
    # the same policy without detection uplift, on citizen reports only, or with inverse
    # detection-probability weights, moves to the true top units
    for variant in ("no_feedback", "citizen_only", "ipw"):
        assert summary.loc[variant, "tv_start"] > 0.9
        assert summary.loc[variant, "tv_end"] < 0.05, variant
    assert result.params["detection_flagged"] == pytest.approx(1.0)
    assert set(result.to_frame()["variant"]) == set(summary.index)


def test_uplift_biases_the_refitted_intensity_towards_flagged_units():
    # equal true rates: the policy's flagged 5 units are recorded twice as often, so their
    # share of the refitted intensity tends to 2/25 each instead of 1/20 (TV = 0.15)
    result = simulate_feedback(np.full(20, 5.0), np.ones(20), 5.0, n_periods=200, uplift=1.0,
                               detection=0.5, variants=("policy", "no_feedback", "ipw"),
                               random_state=3)
    summary = result.summary(n_edge=10).set_index("variant")
    assert summary.loc["policy", "intensity_tv_end"] == pytest.approx(0.15, abs=0.03)
    assert summary.loc["no_feedback", "intensity_tv_end"] < 0.05
    assert summary.loc["ipw", "intensity_tv_end"] < 0.05


def test_randomised_allocation_keeps_the_top_and_draws_the_rest():
    from placecast.audit._feedback import _randomised

    scores = np.arange(50, 0, -1, dtype=float)  # unit 0 scores highest
    rng = np.random.default_rng(0)
    draws = [_randomised(scores, np.ones(50), 10.0, 0.3, rng) for _ in range(20)]
    for flags in draws:
        assert flags.sum() == 10
        assert flags[:7].all()               # the top 7 of 10 stay
        assert flags[7:].sum() == 3          # 3 drawn from the other 43
    assert len({tuple(np.flatnonzero(f)) for f in draws}) > 1


def test_simulate_feedback_is_reproducible():
    truth = np.linspace(0.1, 1, 30)
    a = simulate_feedback(truth, np.ones(30), 5, n_periods=10, random_state=9)
    b = simulate_feedback(truth, np.ones(30), 5, n_periods=10, random_state=9)
    assert a.periods.equals(b.periods)
    assert a.to_dict()["params"]["n_units"] == 30


def test_simulate_feedback_validates_parameters():
    truth = np.ones(4)
    with pytest.raises(ParameterError, match="smaller than any unit"):
        simulate_feedback(truth, np.ones(4), 0.5)
    with pytest.raises(ParameterError, match="detection"):
        simulate_feedback(truth, np.ones(4), 1, detection=0)
    with pytest.raises(ParameterError, match="variants"):
        simulate_feedback(truth, np.ones(4), 1, variants=("policy", "oracle"))
    with pytest.raises(ParameterError, match="not all zero"):
        simulate_feedback(np.zeros(4), np.ones(4), 1)
    with pytest.raises(ParameterError, match="history"):
        simulate_feedback(truth, np.ones(4), 1, history=np.ones((2, 3)))


def test_plot_feedback_writes_a_figure(tmp_path):
    result = simulate_feedback(np.linspace(1, 2, 10), np.ones(10), 2, n_periods=5,
                               random_state=1)
    path = plot_feedback(result, tmp_path / "drift.svg")
    assert "<svg" in path.read_text()
