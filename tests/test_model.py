"""The cell against a plain reference, the manual BPTT against finite differences, and the inference path."""
import numpy as np
import pytest

import timing_counting_spikes as tcs


def sigmoid(a):
    return 0.5 * (1 + np.tanh(0.5 * a))    # σ, without overflow for large |a|


def reference_forward(p, x, net=None, state=None):
    """The equations of the module docstring, batch-major, one line each: an independent check of forward()."""
    T, B, _ = x.shape
    H = p["Wh"].shape[0]
    net = net or tcs.Net("p_i" in p)
    h, c = (np.zeros((B, H)), np.zeros((B, H))) if state is None else (state[0].T, state[1].T)
    zero = np.zeros(H)
    p_i, p_f, p_o = (p.get(k, zero) for k in ("p_i", "p_f", "p_o"))
    n_sig = 2 * H if net.forget else H
    act = (lambda a: np.tanh(a)) if net.squash else (lambda a: a)
    out = []
    for t in range(T):
        z = x[t] @ p["Wx"] + h @ p["Wh"] + p["b"]
        i = sigmoid(z[:, :H] + p_i * c)
        f = sigmoid(z[:, H:2 * H] + p_f * c) if net.forget else 1.0
        g = act(z[:, n_sig:n_sig + H])
        c = f * c + i * g
        o = sigmoid(z[:, n_sig + H:] + p_o * c)
        h = o * act(c)
        a = h @ p["Wy"] + p["by"][0]
        out.append(sigmoid(a) if net.out == "sigmoid" else a)
    return np.array(out), (h.T, c.T)


NETS = tcs.GRADCHECK_NETS + [tcs.Net(True, True, False, "linear")]


@pytest.mark.parametrize("net", NETS, ids=tcs.net_label)
def test_forward_matches_reference(net):
    rng = np.random.default_rng(3)
    p = tcs.init_params(rng, 5, net.peep, forget=net.forget)
    for k in p:                       # non-trivial values everywhere, biases and peepholes included
        p[k] = p[k] + rng.standard_normal(p[k].shape) * 0.5
    batch = tcs.msd_batch(rng, 6, 30, 3, 9)
    state = (rng.standard_normal((5, 6)) * 0.5, rng.standard_normal((5, 6)))
    for st in (None, state):
        ref, (h_ref, c_ref) = reference_forward(p, batch.x, net, st)
        pred, (h, c) = tcs.forward(p, batch.x, tcs.buffers_for(p, batch.x, net), st)
        assert np.allclose(pred, ref, rtol=1e-12, atol=1e-12)
        assert np.allclose(h, h_ref, rtol=1e-12, atol=1e-12) and np.allclose(c, c_ref, rtol=1e-12, atol=1e-12)
    assert np.allclose(tcs.predict(p, batch.x, chunk=4, net=net), reference_forward(p, batch.x, net)[0],
                       rtol=1e-12, atol=1e-12)  # inference path, 2 chunks


def test_forward_on_a_prefix_of_longer_buffers():
    """A window shorter than the buffers (self-paced training) gives the same forward and gradients."""
    rng = np.random.default_rng(5)
    net = tcs.Net(True, False, False, "sigmoid")
    p = tcs.init_params(rng, 3, True, forget=False)
    batch = tcs.msd_batch(rng, 4, 20, 2, 5)
    exact = tcs.loss_and_grads(p, batch, tcs.buffers_for(p, batch.x, net))
    longer = tcs.loss_and_grads(p, batch, tcs.make_buffers(33, 4, 3, net))
    assert exact[0] == longer[0] and np.array_equal(exact[2], longer[2])
    for k in p:
        assert np.array_equal(exact[1][k], longer[1][k])


def test_init_pairs_the_variants():
    a = tcs.init_params(tcs.rng_for(tcs.STREAM_INIT, 9), 8, True)
    b = tcs.init_params(tcs.rng_for(tcs.STREAM_INIT, 9), 8, False)
    assert set(a) - set(b) == {"p_i", "p_f", "p_o"}
    for k in b:
        assert np.array_equal(a[k], b[k])
    assert np.all(a["b"][8:16] == 1.0) and np.all(a["b"][:8] == 0) and np.all(a["b"][16:] == 0)


@pytest.mark.parametrize("init", ["seed", "paper"])
def test_init_without_forget_gate_drops_the_f_block(init):
    a = tcs.init_params(tcs.rng_for(tcs.STREAM_INIT, 2), 3, True, forget_bias=-2.0, init=init)
    b = tcs.init_params(tcs.rng_for(tcs.STREAM_INIT, 2), 3, True, forget=False, init=init)
    keep = np.r_[0:3, 6:12]                   # i, g, o of the same draw
    assert set(a) - set(b) == {"p_f"} and b["Wh"].shape == (3, 9)
    for k in ("Wx", "Wh"):
        assert np.array_equal(a[k][:, keep], b[k])
    assert np.array_equal(a["b"][keep], b["b"]) and np.array_equal(a["p_o"], b["p_o"])


def test_paper_init():
    p = tcs.init_params(tcs.rng_for(tcs.STREAM_INIT, 0), 1, True, forget_bias=-2.0, init="paper")
    assert sum(v.size for v in p.values()) == 17          # the paper's 17 weights, 3 of them peepholes
    assert list(p["b"][[0, 1, 3]]) == [0.0, -2.0, 2.0]    # gate biases: input 0, forget -2, output +2
    rest = np.concatenate([p[k].ravel() for k in ("Wx", "Wh", "p_i", "p_f", "p_o", "Wy", "by")] + [p["b"][2:3]])
    assert np.all(np.abs(rest) <= 0.1) and rest.std() > 0.01
    assert tcs.Config(init="paper").forget_bias == -2.0 and tcs.Config(arch="paper").hidden == 1
    assert tcs.Config(forget=False).forget_bias is None


@pytest.mark.parametrize("net", tcs.GRADCHECK_NETS, ids=tcs.net_label)
def test_gradcheck_passes(net):
    errors = tcs.gradcheck(net)
    assert set(errors) == set(tcs.init_params(np.random.default_rng(0), 2, net.peep, forget=net.forget))
    assert max(errors.values()) < tcs.GRADCHECK_TOL


@pytest.mark.parametrize("name,net", [("Wh", tcs.Net()), ("p_f", tcs.Net()), ("p_o", tcs.Net()), ("b", tcs.Net()),
                                      ("p_i", tcs.Net(True, False, False, "sigmoid")),
                                      ("Wx", tcs.Net(False, False, False, "sigmoid"))])
def test_gradcheck_catches_a_wrong_gradient(monkeypatch, name, net):
    right = tcs.backward

    def wrong(params, buf, dpred, lengths=None, truncate=False):
        grads = right(params, buf, dpred, lengths, truncate)
        grads[name].flat[1] += 1e-6 + 1e-3 * abs(grads[name].flat[1])   # 0.1% off, one entry
        return grads

    monkeypatch.setattr(tcs, "backward", wrong)
    errors = tcs.gradcheck(net)
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
    theta, views = tcs.flatten([p])
    assert theta.shape == (1, sum(v.size for v in p.values()))
    theta += 1.0
    for k in p:
        assert np.array_equal(views[k], p[k] + 1.0)
    q = tcs.init_params(np.random.default_rng(1), 3, True)
    theta, views = tcs.flatten([p, q])                       # two models: a row each, views with a model axis
    theta[1] -= 1.0
    for k in p:
        assert np.array_equal(views[k][0], p[k]) and np.array_equal(views[k][1], q[k] - 1.0)


def test_peep_scale_and_init_noise_change_only_what_they_name():
    a = tcs.init_params(tcs.rng_for(tcs.STREAM_INIT, 7), 4, True)
    z = tcs.init_params(tcs.rng_for(tcs.STREAM_INIT, 7), 4, True, peep_scale=0.0)
    for k in a:
        assert np.array_equal(a[k], z[k]) if k not in tcs.PEEPHOLES else not np.any(z[k])
    cfg = tcs.Config(T=40, D_min=5, D_max=15, iters=1, eval_every=1, n_test=8)
    plain = tcs.train(cfg, 3).history[0]
    noisy = tcs.train(tcs.replace(cfg, init_noise=0.05), 3).history[0]
    assert plain["mse"] != noisy["mse"]                      # the init moved ...
    again = tcs.train(tcs.replace(cfg, init_noise=0.05), 3).history[0]
    assert {k: v for k, v in noisy.items() if k != "elapsed"} == {k: v for k, v in again.items() if k != "elapsed"}
