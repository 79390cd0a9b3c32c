"""The MSD generator's invariants, its validation, and the scoring on hand-made predictions."""
import numpy as np
import pytest

import timing_counting_spikes as tcs


@pytest.mark.parametrize("T,D_min,D_max", [(150, 30, 60), (25, 1, 12), (9, 4, 4)])
def test_generator_invariants(T, D_min, D_max):
    b = tcs.msd_batch(np.random.default_rng(0), 4000, T, D_min, D_max)
    n = 4000
    assert b.x.shape == (T, n, 1) and b.y.shape == (T, n)
    D = b.t2 - b.t1
    assert D.min() >= D_min and D.max() <= D_max
    assert set(np.unique(D)) == set(range(D_min, D_max + 1))        # the whole D range is drawn
    assert b.t1.min() == 0 and np.all(b.t_target == b.t1 + 2 * D)
    assert b.t_target.max() <= T - 1
    # exactly two input spikes, at t1 and t2, and one target spike at t1 + 2D
    assert np.all(b.x.sum(axis=(0, 2)) == 2) and np.all(b.y.sum(axis=0) == 1)
    cols = np.arange(n)
    assert np.all(b.x[b.t1, cols, 0] == 1) and np.all(b.x[b.t2, cols, 0] == 1)
    assert np.all(b.y[b.t_target, cols] == 1)
    assert set(np.unique(b.x)) == {0.0, 1.0}


def test_t1_covers_its_range():
    # for the longest gap t1 can only be 0..T-1-2D; for the shortest it must reach T-1-2*D_min
    b = tcs.msd_batch(np.random.default_rng(1), 20000, 150, 30, 60)
    D = b.t2 - b.t1
    assert b.t1[D == 30].max() == 150 - 1 - 60
    assert b.t1[D == 60].max() <= 150 - 1 - 120


def test_generator_is_seeded():
    a = tcs.msd_batch(np.random.default_rng(7), 64)
    b = tcs.msd_batch(np.random.default_rng(7), 64)
    c = tcs.msd_batch(np.random.default_rng(8), 64)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.t1, b.t1)
    assert not np.array_equal(a.t1, c.t1)


@pytest.mark.parametrize("T,D_min,D_max,fragment", [
    (120, 30, 60, "2*D_max + 1 = 121"), (150, 0, 60, "--D-min must be >= 1"), (150, 40, 30, "must not exceed")])
def test_check_task_rejects(T, D_min, D_max, fragment):
    errors = tcs.check_task(T, D_min, D_max)
    assert errors and fragment in errors[0]


def test_check_task_accepts_tightest():
    assert tcs.check_task(121, 30, 60) == []


def hand_batch():
    # three sequences of length 12: t1, t2, target = (0, 3, 6), (1, 4, 7), (2, 5, 8)
    t1 = np.array([0, 1, 2])
    T, n = 12, 3
    x = np.zeros((T, n, 1))
    y = np.zeros((T, n))
    x[t1, range(n), 0] = 1
    x[t1 + 3, range(n), 0] = 1
    y[t1 + 6, range(n)] = 1
    return tcs.Batch(x, y, t1, t1 + 3, t1 + 6)


def test_score_exact_off_by_one_and_ties():
    b = hand_batch()
    pred = np.zeros((12, 3))
    pred[6, 0] = 0.9                  # exact
    pred[8, 1] = 0.9                  # one late
    pred[3, 2] = 5.0                  # a peak at or before t2 does not count ...
    pred[7, 2] = pred[9, 2] = 0.4     # ... ties go to the first maximum after t2: 7, one early
    s = tcs.score(pred, b)
    assert s["solved"] == pytest.approx(1 / 3)
    assert s["within1"] == pytest.approx(1.0)
    assert s["mse"] == pytest.approx(np.mean((pred - b.y) ** 2))


def test_score_far_miss_and_perfect():
    b = hand_batch()
    assert tcs.score(b.y.copy(), b) == {"mse": 0.0, "solved": 1.0, "within1": 1.0}
    pred = np.zeros((12, 3))
    pred[11] = 1.0                    # far from every target
    s = tcs.score(pred, b)
    assert s["solved"] == 0.0 and s["within1"] == 0.0
