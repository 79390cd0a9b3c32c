"""The cell against a plain reference, the manual BPTT against finite differences, and the inference path."""
import numpy as np
import pytest

import timing_counting_spikes as tcs


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def reference_forward(p, x):
    """The equations of the module docstring, batch-major, one line each: an independent check of forward()."""
    T, B, _ = x.shape
    H = p["Wh"].shape[0]
    h, c = np.zeros((B, H)), np.zeros((B, H))
    peep = "p_i" in p
    zero = np.zeros(H)
    p_i, p_f, p_o = (p["p_i"], p["p_f"], p["p_o"]) if peep else (zero, zero, zero)
    out = []
    for t in range(T):
        z = x[t] @ p["Wx"] + h @ p["Wh"] + p["b"]
        i = sigmoid(z[:, :H] + p_i * c)
        f = sigmoid(z[:, H:2 * H] + p_f * c)
        g = np.tanh(z[:, 2 * H:3 * H])
        c = f * c + i * g
        o = sigmoid(z[:, 3 * H:] + p_o * c)
        h = o * np.tanh(c)
        out.append(h @ p["Wy"] + p["by"][0])
    return np.array(out)


@pytest.mark.parametrize("peep", [True, False])
def test_forward_matches_reference(peep):
    rng = np.random.default_rng(3)
    p = tcs.init_params(rng, 5, peep)
    for k in p:                       # non-trivial values everywhere, biases and peepholes included
        p[k] = p[k] + rng.standard_normal(p[k].shape) * 0.5
    batch = tcs.msd_batch(rng, 6, 30, 3, 9)
    ref = reference_forward(p, batch.x)
    assert np.allclose(tcs.forward(p, batch.x), ref, rtol=1e-12, atol=1e-12)
    assert np.allclose(tcs.predict(p, batch.x, chunk=4), ref, rtol=1e-12, atol=1e-12)  # inference path, 2 chunks


def test_init_pairs_the_variants():
    a = tcs.init_params(tcs.rng_for(tcs.STREAM_INIT, 9), 8, True)
    b = tcs.init_params(tcs.rng_for(tcs.STREAM_INIT, 9), 8, False)
    assert set(a) - set(b) == {"p_i", "p_f", "p_o"}
    for k in b:
        assert np.array_equal(a[k], b[k])
    assert np.all(a["b"][8:16] == 1.0) and np.all(a["b"][:8] == 0) and np.all(a["b"][16:] == 0)


@pytest.mark.parametrize("peep", [True, False])
def test_gradcheck_passes(peep):
    errors = tcs.gradcheck(peep)
    assert set(errors) == set(tcs.init_params(np.random.default_rng(0), 2, peep))
    assert max(errors.values()) < tcs.GRADCHECK_TOL


@pytest.mark.parametrize("name", ["Wh", "p_f", "p_o", "b"])
def test_gradcheck_catches_a_wrong_gradient(monkeypatch, name):
    right = tcs.backward

    def wrong(params, buf, dpred):
        grads = right(params, buf, dpred)
        grads[name].flat[1] += 1e-6 + 1e-3 * abs(grads[name].flat[1])   # 0.1% off, one entry
        return grads

    monkeypatch.setattr(tcs, "backward", wrong)
    errors = tcs.gradcheck(True)
    assert errors[name] > tcs.GRADCHECK_TOL
    assert all(e < tcs.GRADCHECK_TOL for k, e in errors.items() if k != name)


def test_float32_gradient_is_close_to_float64():
    p64 = tcs.init_params(tcs.rng_for(0, 1), 8, True)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    b64 = tcs.msd_batch(np.random.default_rng(2), 16, 60, 10, 25)
    b32 = tcs.Batch(b64.x.astype(np.float32), b64.y.astype(np.float32), b64.t1, b64.t2, b64.t_target)
    _, g64, _ = tcs.loss_and_grads(p64, b64)
    _, g32, _ = tcs.loss_and_grads(p32, b32)
    for k in g64:
        assert g32[k].dtype == np.float32
        assert np.allclose(g32[k], g64[k], rtol=1e-3, atol=1e-5 * np.abs(g64[k]).max())


def test_clip_and_adam():
    g = np.array([3.0, 4.0])
    assert tcs.clip_global(g, 1.0) == 5.0 and np.allclose(g, [0.6, 0.8])
    g = np.array([0.3, 0.4])
    assert tcs.clip_global(g, 1.0) == pytest.approx(0.5) and np.allclose(g, [0.3, 0.4])
    theta = np.array([1.0, -1.0])
    st = tcs.adam_init(theta)
    tcs.adam_step(theta, np.array([2.0, -0.5]), st, lr=0.1)
    assert np.allclose(theta, [0.9, -0.9])      # the first bias-corrected Adam step moves lr * sign(g)


def test_flatten_views_share_memory():
    p = tcs.init_params(np.random.default_rng(0), 3, True)
    theta, views = tcs.flatten(p)
    assert theta.size == sum(v.size for v in p.values())
    theta += 1.0
    for k in p:
        assert np.array_equal(views[k], p[k] + 1.0)
