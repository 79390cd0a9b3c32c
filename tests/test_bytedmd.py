"""The ByteDMD tracer against the definition's published values, its Fenwick replay against a plain list, and the
traced LSTM training step against the module's gradients."""
import math
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


def test_published_branches_divmod_and_indexing():
    """The rest of the definition's test file (cybertronai/ByteDMD-definition 3ae4dda70d97, test_bytedmd.py)."""
    def relu(a):
        if a > 0:
            return a * 2
        return a
    assert depths(relu, 5) == [1, 1, 1, 1] and depths(relu, -5) == [1, 1, 1]

    def my_divmod(a, b):
        q, r = divmod(a, b)
        return q + r + a
    assert depths(my_divmod, 10, 3) == [1, 2, 2, 1, 1, 2, 1] and bd.record(my_divmod, 10, 3).value.v == 14

    def implicit(a):
        if a:
            return a + 10
        return a

    def explicit(a):
        if a != 0:
            return a + 10
        return a
    assert depths(implicit, 0) == [1, 1] and depths(explicit, 0) == [1, 1, 1]
    assert bd.record(explicit, 0).value.v == 0 and bd.record(explicit, 2).value.v == 12
    t = bd.record(lambda n: [i for i in range(n)], 3)
    assert bd.replay(t) == [1] and t.value == [0, 1, 2]
    assert depths(lambda xs, i: xs[i], [10, 20, 30], 1) == [4, 2]
    t = bd.record(lambda a: not a, 0)
    assert bd.replay(t) == [1] and t.value is True


BINARY = ["+", "-", "*", "/", "//", "%", "**", "<<", ">>", "&", "|", "^", "==", "!=", "<", "<=", ">", ">="]


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize("a,b", [(7, 3), (3, 3), (-7, 2), (0, 5)])
def test_every_operator_computes_python_value_and_reads_its_operands(op, a, b):
    """Each binary operator, plain, reflected (a literal on the left) and between two traced values: Python's value,
    one tracked result, every traced operand read (== and != included: no fallback to identity)."""
    f = eval(f"lambda x, y: x {op} y")
    both = bd.record(f, a, b)
    assert both.value.v == f(a, b) and both.ops == [((0, 1), 2)]
    right = bd.record(lambda y: f(a, y), b)
    assert right.value.v == f(a, b) and right.ops == [((0,), 1)]
    left = bd.record(lambda x: f(x, b), a)
    assert left.value.v == f(a, b) and left.ops == [((0,), 1)]


@pytest.mark.parametrize("name,f", [("divmod", lambda x, y: divmod(x, y)), ("rdivmod", lambda x, y: divmod(7, y)),
                                    ("pow3", lambda x, y: pow(x, y, 5))])
def test_multi_operand_and_multi_result_operators(name, f):
    t = bd.record(f, 9, 4)
    plain = f(9, 4)
    got = tuple(e.v for e in t.value) if isinstance(t.value, tuple) else t.value.v
    assert got == plain
    if name == "divmod":
        assert t.ops == [((0, 1), 2), ((), 3)]          # quotient then remainder, both results of one read
    elif name == "rdivmod":
        assert t.ops == [((1,), 2), ((), 3)]
    else:
        assert t.ops == [((0, 1), 2)]


@pytest.mark.parametrize("name,f", [("neg", lambda x: -x), ("pos", lambda x: +x), ("abs", abs),
                                    ("round", round), ("round1", lambda x: round(x, 1)), ("trunc", math.trunc),
                                    ("floor", math.floor), ("ceil", math.ceil)])
@pytest.mark.parametrize("x", [2.45, -2.45, 3.0])
def test_unary_operators(name, f, x):
    t = bd.record(f, x)
    assert t.value.v == f(x) and t.ops == [((0,), 1)]


def test_invert_on_integers():
    t = bd.record(lambda x: ~x, 6)
    assert t.value.v == -7 and t.ops == [((0,), 1)]


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
