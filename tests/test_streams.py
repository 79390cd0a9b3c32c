"""The paper's stream tasks: generators, the criterion scorer, the period measure, free runs in chunks, training."""
import json

import numpy as np
import pytest

import timing_counting_spikes as tcs
from test_train import cli


@pytest.mark.parametrize("F,I", [(10, (0, 1)), (49, (0, 1)), (10, (0, 1, 2)), (3, (0, 10))])
def test_delay_stream_invariants(F, I):
    s = tcs.delay_stream(np.random.default_rng(0), 50, 400, F, I)
    assert s.x.shape == (400, 50, 1) and s.y.shape == (400, 50) and s.ends.shape == (400, 50)
    assert np.array_equal(s.x[:, :, 0] > 0, s.ends)                 # an input spike ends every interval
    for b in range(50):
        t = np.flatnonzero(s.ends[:, b])
        gaps = np.diff(np.r_[-1, t])                                # interval k lasts F + I_k steps
        assert set(gaps - F) <= set(I)
        assert np.array_equal(s.y[t, b], gaps - F)                   # the target at the spike is I_k
        assert np.all(s.y[~s.ends[:, b], b] == 0)
    I_all = np.concatenate([np.diff(np.r_[-1, np.flatnonzero(s.ends[:, b])]) - F for b in range(50)])
    assert set(I_all) == set(I)                                     # every I is drawn


def test_delay_test_stream_has_exactly_the_units():
    cfg = tcs.Config(task="delays", F=49, I=(0, 1))
    s = tcs.test_set(cfg, 1000)
    assert s.ends.sum() == 1000 and s.ends[-1, 0]
    assert 49_000 <= s.y.shape[0] <= 50_000                        # the 49-vs-50 setting: about 50,000 steps
    assert np.array_equal(s.x, tcs.test_set(cfg, 1000).x)           # the test stream is fixed by its seed


def test_gts_and_pfg_targets_at_known_points():
    g = tcs.gts_stream(30, 10)
    assert np.flatnonzero(g.y[:, 0]).tolist() == [9, 19, 29] and np.all(g.x == 0)
    assert np.array_equal(g.ends[:, 0], g.y[:, 0] > 0)
    F = 10
    cos = tcs.pfg_stream(20, F, "cos").y[:, 0]
    assert cos[0] == 0 and cos[5] == pytest.approx(1) and cos[10] == 0
    assert cos[2] == pytest.approx((1 - np.cos(2 * np.pi * 0.2)) / 2)
    tri = tcs.pfg_stream(20, F, "tri").y[:, 0]
    assert tri[:11].tolist() == pytest.approx([0, .2, .4, .6, .8, 1, .8, .6, .4, .2, 0])
    rect = tcs.pfg_stream(20, F, "rect").y[:, 0]
    assert rect[:10].tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]     # 1 where (t mod F) > F/2
    tri25 = tcs.pfg_stream(25, 25, "tri").y[:, 0]
    assert tri25[12] == pytest.approx(24 / 25) and tri25[13] == pytest.approx(2 - 26 / 25)
    assert np.all(tcs.pfg_stream(40, F, "cos").ends[:, 0] == (np.arange(40) % F == F - 1))


def test_criterion_scorer_edges():
    s = tcs.gts_stream(50, 10)
    y = s.y[:, 0]
    pred = y.copy()
    m = tcs.stream_score(pred, s, 0.49, 5, False)
    assert m == {"run_units": 5, "run_steps": 50, "success": True, "rmse": 0.0}
    pred[23] = 0.49                              # |error| = 0.49 is wrong (>= tol) ...
    m = tcs.stream_score(pred, s, 0.49, 5, False)
    assert (m["run_steps"], m["run_units"], m["success"]) == (23, 2, False)
    pred[23] = 0.4899                            # ... just below it is right
    pred[39] = 1 - 0.49                          # a spike 0.49 short: wrong, on the last step of unit 4
    m = tcs.stream_score(pred, s, 0.49, 5, False)
    assert (m["run_steps"], m["run_units"]) == (39, 3)
    w = tcs.pfg_stream(30, 10, "cos")
    p = w.y[:, 0] + 0.2999
    assert tcs.stream_score(p, w, 0.3, 3, False)["run_units"] == 3
    p[0] += 0.0001
    assert tcs.stream_score(p, w, 0.3, 3, False)["run_steps"] == 0


def test_measured_period():
    t = np.arange(20000)
    assert tcs.measured_period((1 - np.cos(2 * np.pi * t / 10.02)) / 2) == pytest.approx(10.02, abs=1e-4)
    assert tcs.measured_period(tcs.gts_stream(5000, 25).y[:, 0]) == pytest.approx(25, abs=1e-9)
    wiggle = (1 - np.cos(2 * np.pi * t / 10)) / 2 + 0.02 * np.sin(2 * np.pi * t / 1.7)
    assert tcs.measured_period(wiggle) == pytest.approx(10, abs=1e-3)   # small wiggles are not periods
    assert tcs.measured_period(np.full(100, 0.5)) is None


@pytest.mark.parametrize("net", [tcs.Net(), tcs.Net(True, True, False, "sigmoid"), tcs.Net(False, False, True)])
def test_free_run_in_chunks_equals_one_forward(net):
    rng = np.random.default_rng(4)
    p = tcs.init_params(rng, 3, net.peep, forget=net.forget)
    s = tcs.delay_stream(rng, 1, 1000, 7, (0, 1, 2))
    whole = tcs.forward(p, s.x, tcs.buffers_for(p, s.x, net))[0][:, 0]
    for chunk in (1000, 128, 37):
        assert np.array_equal(tcs.free_run(p, net, s.x, chunk), whole)


def test_self_paced_training_learns_gts_and_reports_best():
    cfg = tcs.Config(task="gts", F=10, iters=600, eval_every=100, test_units=200, window=(10, 40))
    tr = tcs.train(cfg, seed=1)
    assert [h["iter"] for h in tr.history] == [0, 100, 200, 300, 400, 500, 600]
    assert tr.history[0]["run_units"] == 0
    assert tr.best["run_units"] == max(h["run_units"] for h in tr.history) == 200 and tr.best["success"]
    assert tr.best["period"] == pytest.approx(10, abs=1e-3)
    assert max(h["window"] for h in tr.history) == 40 and tr.history[0]["window"] == 10
    again = tcs.evaluate(tr.best_params, tcs.test_set(cfg), tcs.net_of(cfg), cfg)
    assert again == {k: v for k, v in tr.best.items() if k != "iter"}


def test_pfg_final_and_best_are_scored_over_the_long_run():
    cfg = tcs.Config(task="pfg", F=4, iters=20, eval_every=10, test_units=10, arch="paper")
    tr = tcs.train(cfg, seed=0)
    long_test = tcs.test_set(cfg, 100)
    assert long_test.ends.sum() == 100
    assert tr.final == tcs.evaluate(tr.params, long_test, tcs.net_of(cfg), cfg)


@pytest.mark.parametrize("args", [
    ["--task", "gts", "--F", "0"], ["--task", "pfg", "--period", "1"], ["--task", "pfg", "--wave", "saw"],
    ["--task", "delays", "--I", ""], ["--task", "delays", "--I", "1,,2"], ["--task", "delays", "--I", "2-0"],
    ["--task", "delays", "--I", "-1"], ["--task", "gts", "--window", "0"], ["--task", "gts", "--window", "9-3"],
    ["--task", "gts", "--window", "x"], ["--no-forget", "--forget-bias", "1"], ["--task", "gts", "--batch", "4"],
    ["--task", "gts", "--T", "100"], ["--F", "10"], ["--task", "gts", "--I", "0,1"], ["--task", "delays", "--wave", "cos"],
    ["--task", "pfg", "--n-test", "5"], ["--test-units", "10"], ["--arch", "big"], ["--init", "he"], ["--task", "nmsd"],
    ["--seeds", ""], ["--load-model", "x.npz", "--eval-only", "--checkpoint", "worst"],
    ["--peep-scale", "-1"], ["--init-noise", "-0.5"], ["--init-noise", "nan"],
])
def test_bad_stream_input_one_line_exit_2(args):
    r = cli(*args, "--iters", "1")
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_stream_cli_save_load_best_and_out(tmp_path):
    model, out = tmp_path / "m.npz", tmp_path / "r.json"
    r = cli("--task", "delays", "--F", "4", "--I", "0,1", "--arch", "paper", "--no-forget", "--no-peep", "--iters", "30",
            "--eval-every", "10", "--test-units", "50", "--window", "3", "--save-model", str(model), "--out", str(out))
    assert r.returncode == 0, r.stderr
    res = json.load(open(out))
    run = res["runs"][0]
    assert run["variant"] == "lstm1997" and run["task"] == "delays" and res["config"]["I"] == [0, 1]
    assert set(run["final"]) == {"run_units", "run_steps", "success", "rmse"} and "iter" in run["best"]
    assert res["cpu"] and "numpy_simd" in res
    for ckpt, want in (("final", run["final"]), ("best", run["best"])):
        r = cli("--load-model", str(model), "--eval-only", "--checkpoint", ckpt)
        assert r.returncode == 0, r.stderr
        assert f"run {want['run_units']:5d} units ({want['run_steps']} steps)  rmse {want['rmse']:.4f}" in r.stdout
    r = cli("--load-model", str(model), "--eval-only", "--task", "gts")
    assert r.returncode == 2 and "trained on --task delays" in r.stderr
