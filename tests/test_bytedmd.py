"""The ByteDMD tracer against the definition's published values, its Fenwick replay against a plain list, and the
traced LSTM training step against the module's gradients."""
import os
import random
import sys

import numpy as np
import pytest

import timing_counting_spikes as tcs

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import bytedmd as bd  # noqa: E402
import bench_bytedmd as bb  # noqa: E402


def depths(f, *args):
    t = bd.record(f, *args)
    d = bd.replay(t)
    assert d == bd.replay_lists(t)
    return d


def test_published_traces_and_costs():
    assert depths(lambda a, b, c: (a + b) + c, 1, 2, 3) == [1, 2, 1, 3, 1]
    assert bd.bytedmd(lambda a, b, c: (a + b) + c, 1, 2, 3) == 7
    assert bd.bytedmd(lambda a, b, c: (a + b) + c, 1, 2, 3, B=2) == 19
    assert depths(lambda a: a + a, 1) == [1, 1, 1]

    def cmp(a, b, c, d):
        e = b + c
        f = a + d
        return e > f
    assert depths(cmp, 1, 2, 3, 4) == [2, 3, 1, 4, 2, 1, 1] and bd.bytedmd(cmp, 1, 2, 3, 4) == 11
    dot = lambda a, b: a[0] * b[0] + a[1] * b[1]
    assert depths(dot, [0, 1], [2, 3]) == [1, 3, 2, 4, 2, 1, 1] and bd.bytedmd(dot, [0, 1], [2, 3]) == 11
    f5 = lambda a, b, c, d, e: a * b + c * d + e
    assert depths(f5, 1, 2, 3, 4, 5) == [1, 2, 3, 4, 2, 1, 1, 5, 1] and bd.bytedmd(f5, 1, 2, 3, 4, 5) == 15
    transpose = lambda A: [[A[j][i] for j in range(2)] for i in range(2)]
    assert depths(transpose, [[1, 2], [3, 4]]) == [1, 3, 2, 4]
    assert depths(lambda a: 10 - a * 10, 3) == [1, 1, 1]


def matvec(A, x):
    n = len(x)
    y = [None] * n
    for i in range(n):
        s = A[i][0] * x[0]
        for j in range(1, n):
            s = s + A[i][j] * x[j]
        y[i] = s
    return y


@pytest.mark.parametrize("n,want", list(zip(range(2, 9), [26, 71, 147, 253, 394, 574, 839])))
def test_published_matvec(n, want):
    assert bd.bytedmd(matvec, np.ones((n, n)).tolist(), np.ones(n).tolist()) == want


def test_conversions_and_math_are_charged_reads():
    t = bd.record(lambda a, b: bd.tanh(a) + (1.0 if b > 0 else 0.0), 0.5, 2.0)
    # tanh reads a; b > 0 reads b and makes a bool; bool() reads that bool; the sum reads tanh(a)
    assert [len(r) for r, _ in t.ops] == [1, 1, 1, 1] and t.ops[2][1] is None
    assert t.value.v == pytest.approx(np.tanh(0.5) + 1.0)
    assert bd.cost([1, 2, 3, 4, 5], B=1) == 1 + 2 + 2 + 2 + 3


def test_fenwick_replay_equals_lists_on_random_programs():
    rng = random.Random(0)
    for _ in range(30):
        n_args = rng.randint(1, 6)

        def prog(*xs):
            pool = list(xs)
            for _ in range(rng.randint(1, 40)):
                a, b = rng.choice(pool), rng.choice(pool)
                pool.append(a * b + 1 if rng.random() < 0.5 else bd.tanh(a - b))
            return pool[-rng.randint(1, 3):]
        t = bd.record(prog, *[rng.random() for _ in range(n_args)])
        assert bd.replay(t) == bd.replay_lists(t)


@pytest.mark.parametrize("net", tcs.GRADCHECK_NETS, ids=tcs.net_label)
def test_traced_step_equals_the_module(net):
    """The scalar Python step the tracer follows computes the module's loss and gradients (batch 1)."""
    H, T = (3 if net.squash else 2), 12
    rng = np.random.default_rng(1)
    p = tcs.init_params(rng, H, net.peep, forget=net.forget)
    for k in p:
        p[k] = p[k] + rng.standard_normal(p[k].shape) * 0.3
    batch = tcs.msd_batch(rng, 1, T, 2, 5)
    loss, grads, _ = tcs.loss_and_grads(p, batch, tcs.buffers_for(p, batch.x, net))
    args = bb.step_args(p, batch.x[:, 0, 0], batch.y[:, 0])
    s_loss, s_grads = bb.lstm_step(net)(*args)
    assert s_loss == pytest.approx(loss, rel=1e-12, abs=1e-12)
    for k, g in zip(p, s_grads):
        assert np.allclose(np.array(g).reshape(p[k].shape), grads[k], rtol=1e-12, atol=1e-12), k
    traced = bd.record(bb.lstm_step(net), *args)      # the traced run computes the same numbers
    assert traced.value[0].v == s_loss
