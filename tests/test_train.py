"""Training: it learns, it is reproducible to the bit, sweeps equal single runs, divergence stops cleanly."""
import json
import os
import subprocess
import sys

import numpy as np

import timing_counting_spikes as tcs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = tcs.Config(T=40, D_min=5, D_max=15, iters=300, eval_every=100, n_test=256)
SMALL_FLAGS = ["--T", "40", "--D-min", "5", "--D-max", "15", "--iters", "60", "--eval-every", "20", "--n-test", "64"]


def cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "timing_counting_spikes.py"), *args],
                          capture_output=True, text=True, timeout=240)


def test_short_run_learns():
    params, history, final, _, _ = tcs.train(SMALL, seed=3)
    untrained = history[0]
    assert [h["iter"] for h in history] == [0, 100, 200, 300]
    assert final["mse"] < 0.75 * untrained["mse"]
    assert untrained["solved"] < 0.1
    assert final["solved"] > 0.5 and final["solved"] > 5 * untrained["solved"]
    assert final == {k: tcs.evaluate(params, tcs.test_set(SMALL))[k] for k in final}


def test_same_args_same_bits():
    a = tcs.train(SMALL, seed=1)
    b = tcs.train(SMALL, seed=1)
    for k in a[0]:
        assert np.array_equal(a[0][k], b[0][k])
    strip = lambda hist: [{k: v for k, v in h.items() if k != "elapsed"} for h in hist]
    assert strip(a[1]) == strip(b[1]) and a[2] == b[2]
    c = tcs.train(SMALL, seed=2)
    assert not np.array_equal(a[0]["Wh"], c[0]["Wh"])


def test_variants_see_the_same_batches(monkeypatch):
    cfg = tcs.Config(T=40, D_min=5, D_max=15, iters=5, eval_every=5, n_test=8)
    real = tcs.msd_batch
    drawn = []
    monkeypatch.setattr(tcs, "msd_batch", lambda *a, **k: drawn.append(real(*a, **k)) or drawn[-1])
    seen = {}
    for peep in (True, False):
        drawn.clear()
        tcs.train(tcs.replace(cfg, peep=peep), seed=6)
        seen[peep] = [b.x for b in drawn if b.x.shape[1] == cfg.batch]
    assert len(seen[True]) == cfg.iters
    assert all(np.array_equal(a, b) for a, b in zip(seen[True], seen[False]))


def test_sweep_is_bit_identical_to_single_runs(tmp_path):
    sweep = tmp_path / "sweep.json"
    r = cli(*SMALL_FLAGS, "--seeds", "0-2", "--both", "--workers", "2", "--out", str(sweep))
    assert r.returncode == 0, r.stderr
    runs = json.load(open(sweep))["runs"]
    assert [(x["seed"], x["variant"]) for x in runs] == [(s, v) for s in range(3) for v in ("peephole", "vanilla")]
    one = tmp_path / "one.json"
    r = cli(*SMALL_FLAGS, "--seed", "1", "--no-peep", "--quiet", "--out", str(one))
    assert r.returncode == 0, r.stderr
    alone = json.load(open(one))["runs"][0]
    in_sweep = runs[3]
    assert alone["final"] == in_sweep["final"]
    drop = lambda h: [{k: v for k, v in x.items() if k != "elapsed"} for x in h]
    assert drop(alone["history"]) == drop(in_sweep["history"])
    # and the sweep on one worker, in this process, gives the same numbers again
    cfgs = [(tcs.Config(T=40, D_min=5, D_max=15, iters=60, eval_every=20, n_test=64, peep=False), 1)]
    (run, params, _), = tcs.run_many(cfgs, workers=1, log=lambda s: None)
    assert run["final"] == alone["final"]


def test_divergence_stops_with_one_line_and_no_file(tmp_path, monkeypatch, capsys):
    real = tcs.loss_and_grads

    def blows_up(params, batch, buf=None):
        loss, grads, pred = real(params, batch, buf)
        if blows_up.calls == 3:
            grads["Wh"][0, 0] = np.nan
        blows_up.calls += 1
        return loss, grads, pred

    blows_up.calls = 0
    monkeypatch.setattr(tcs, "loss_and_grads", blows_up)
    out = tmp_path / "r.json"
    code = tcs.main([*SMALL_FLAGS, "--seed", "5", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and not out.exists()
    assert len(err) == 1 and "seed 5" in err[0] and "iteration 4" in err[0] and "gradient" in err[0]


def test_lr_schedule():
    cfg = tcs.Config()
    assert tcs.lr_at(cfg, 1) == 5e-3 and tcs.lr_at(cfg, 1500) == 5e-3
    assert tcs.lr_at(cfg, 1501) == 2.5e-3 and tcs.lr_at(cfg, 3000) == 2.5e-3
