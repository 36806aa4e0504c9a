"""Exposure audit: concentration, persistence and over/under-flagging on hand-made cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from placecast.audit import exposure_audit, gini, persistence, run_lengths, top_share
from placecast.exceptions import ParameterError


def gini_pairs(values: np.ndarray) -> float:
    """The definition: mean absolute difference over all ordered pairs / (2 mean)."""
    x = np.asarray(values, dtype=float)
    n = x.size
    total = sum(abs(a - b) for a, b in itertools.product(x, x))
    return total / (2 * n * n * x.mean())


@pytest.mark.parametrize(("values", "expected"), [
    ([1, 1, 1, 1], 0.0),
    ([0, 0, 0, 1], 0.75),          # one of n holds all: (n - 1) / n
    ([0, 0, 0, 0, 0, 0, 0, 0, 0, 5], 0.9),
    ([1, 2, 3, 4], 0.25),          # sum |xi - xj| = 20 over 16 pairs; 20 / (2*16*2.5)
])
def test_gini_known_values(values, expected):
    assert gini(values) == pytest.approx(expected, abs=1e-12)


def test_gini_matches_pairwise_definition():
    rng = np.random.default_rng(4)
    for _ in range(5):
        x = rng.poisson(2.0, size=37).astype(float)
        assert gini(x) == pytest.approx(gini_pairs(x), rel=1e-10)


def test_gini_of_zeros_is_nan_and_negative_values_raise():
    assert np.isnan(gini([0, 0, 0]))
    with pytest.raises(ParameterError, match="non-negative"):
        gini([1, -1])


def test_top_share_counts_ceil_of_fraction():
    values = [10, 5, 3, 2] + [0] * 96  # 100 units, total 20
    assert top_share(values, 0.01) == pytest.approx(0.5)   # 1 unit
    assert top_share(values, 0.05) == pytest.approx(1.0)   # 5 units
    assert top_share([4, 3, 2, 1], 0.10) == pytest.approx(0.4)  # ceil(0.4) = 1 unit
    with pytest.raises(ParameterError, match="fraction"):
        top_share(values, 0)


def brute_runs(flags: np.ndarray) -> list[tuple[int, int]]:
    runs = []
    for u in range(flags.shape[1]):
        length = 0
        for t in range(flags.shape[0]):
            if flags[t, u]:
                length += 1
            elif length:
                runs.append((u, length))
                length = 0
        if length:
            runs.append((u, length))
    return runs


def test_run_lengths_match_a_loop():
    rng = np.random.default_rng(7)
    flags = rng.random((30, 12)) < 0.4
    unit, length = run_lengths(flags)
    assert list(zip(unit.tolist(), length.tolist(), strict=True)) == brute_runs(flags)
    assert length.sum() == flags.sum()


def test_persistence_hand_made():
    flags = np.array([[1, 0], [1, 1], [0, 1], [1, 1]], dtype=bool)
    # flagged before the last period: (0,u0) (1,u0) (1,u1) (2,u1) -> next flagged: 1, 0, 1, 1
    assert persistence(flags) == pytest.approx(3 / 4)
    assert np.isnan(persistence(np.zeros((3, 2), dtype=bool)))


def test_exposure_audit_hand_made_case():
    # 4 periods x 5 units. Unit 0 flagged always but has 1 event; unit 1 flagged twice
    # with 2 events; unit 2 never flagged with 5 events; units 3, 4 quiet.
    flags = np.zeros((4, 5), dtype=bool)
    flags[:, 0] = True
    flags[[0, 1], 1] = True
    observed = np.zeros((4, 5))
    observed[0, 0] = 1
    observed[[1, 2], 1] = 1
    observed[:, 2] = [2, 1, 1, 1]
    result = exposure_audit(flags, observed, unit_id=np.array(list("abcde")), factor=2.0,
                            min_count=2)
    table = result.units.set_index("unit_id")
    assert table.loc["a", "n_flagged"] == 4
    assert table.loc["a", "flag_share"] == pytest.approx(4 / 6)
    assert table.loc["a", "event_share"] == pytest.approx(1 / 8)
    assert table.loc["a", "expected_flags"] == pytest.approx(6 / 8)
    assert table.loc["a", "status"] == "over"
    assert table.loc["b", "ratio"] == pytest.approx((2 / 6) / (2 / 8))
    assert table.loc["b", "status"] == ""          # 1.33x: within the factor
    assert table.loc["c", "status"] == "under"     # 5/8 of events, no flag
    assert table.loc["d", "status"] == ""          # nothing at all
    assert table.loc["a", "longest_run"] == 4 and table.loc["b", "longest_run"] == 2
    s = result.summary
    assert s["n_flags"] == 6 and s["n_units_ever_flagged"] == 2
    assert s["n_over"] == 1 and s["n_under"] == 1
    assert s["top_10pct_share_flags"] == pytest.approx(4 / 6)  # ceil(0.5) = 1 unit
    assert s["gini_flags"] == pytest.approx(gini([4, 2, 0, 0, 0]))
    assert s["persistence"] == pytest.approx(4 / 5)  # u0: 3 of 3 continue, u1: 1 of 2
    assert s["mean_run_length"] == pytest.approx(3.0)
    assert s["share_flags_on_units_without_events"] == pytest.approx(0.0)
    assert result.to_dict()["summary"]["n_flags"] == 6
    assert len(result.to_frame()) == 5


def test_exposure_audit_rejects_bad_shapes_and_values():
    with pytest.raises(ParameterError, match="must match the flags"):
        exposure_audit(np.zeros((3, 4), dtype=bool), np.zeros((3, 5)))
    with pytest.raises(ParameterError, match="boolean"):
        exposure_audit(np.full((2, 2), 2), np.zeros((2, 2)))
    with pytest.raises(ParameterError, match="non-negative"):
        exposure_audit(np.zeros((2, 2), dtype=bool), -np.ones((2, 2)))
    with pytest.raises(ParameterError, match="n_periods, n_units"):
        exposure_audit(np.zeros(3, dtype=bool), np.zeros(3))
    with pytest.raises(ParameterError, match="factor"):
        exposure_audit(np.zeros((2, 2), dtype=bool), np.zeros((2, 2)), factor=1.0)
