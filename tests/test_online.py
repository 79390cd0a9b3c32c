"""The online learner (--learner rtrl): its gradient is truncated BPTT, its update the paper's, its protocol the
paper's; a model's bits do not depend on its companions; a job killed and resumed ends as one run straight."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import timing_counting_spikes as tcs
from test_claims import hand_set_gts
from test_grid import communicate
from test_train import ROOT, cli


def window(seed, L=30):
    rng = np.random.default_rng(seed)
    return (rng.random(L) < 0.3).astype(float), rng.random(L)


@pytest.mark.parametrize("net", tcs.GRADCHECK_NETS, ids=tcs.net_label)
def test_online_gradient_is_truncated_bptt(net):
    """With the weights held fixed, the sum of the per-step gradients over a window equals BPTT of the window
    with the paper's two cuts, for every cell and both architectures (H = 3: the sensitivities are per cell); the
    full gradient is another one."""
    assert max(tcs.online_check(net).values()) < tcs.ONLINE_TOL
    params = tcs.init_params(tcs.rng_for(tcs.STREAM_INIT, 1), 3, net.peep, forget=net.forget)
    x, y = window(1)
    s = tcs.Stream(x[:, None, None], y[:, None], None)
    full = tcs.loss_and_grads(params, s, tcs.make_buffers(len(x), 1, 3, net))[1]
    online = tcs.online_grads(params, net, x, y)
    assert max(np.max(np.abs(online[k] - full[k])) / np.max(np.abs(full[k])) for k in full) > 1e-3


def test_the_online_check_catches_a_wrong_gradient(monkeypatch):
    right = tcs.online_grads

    def wrong(params, net, x, y):
        g = right(params, net, x, y)
        g["p_f"][0] *= 1 + 1e-6                          # one entry, a millionth off
        return g

    monkeypatch.setattr(tcs, "online_grads", wrong)
    errs = tcs.online_check(tcs.Net())
    assert errs["p_f"] > tcs.ONLINE_TOL and all(e < tcs.ONLINE_TOL for k, e in errs.items() if k != "p_f")


@pytest.mark.parametrize("net", tcs.GRADCHECK_NETS, ids=tcs.net_label)
def test_without_recurrent_weights_and_peepholes_the_cuts_are_void(net):
    params = tcs.init_params(tcs.rng_for(tcs.STREAM_INIT, 2), 2, net.peep, forget=net.forget)
    params["Wh"][:] = 0.0
    for k in tcs.PEEPHOLES:
        if k in params:
            params[k][:] = 0.0
    x, y = window(2)
    online = tcs.online_grads(params, net, x, y)
    s = tcs.Stream(x[:, None, None], y[:, None], None)
    full = tcs.loss_and_grads(params, s, tcs.make_buffers(len(x), 1, 2, net))[1]
    for k in full:
        assert np.allclose(online[k], full[k], rtol=1e-10, atol=1e-14), k


def gts_spec(params=None, seed=0, **kw):
    cfg = tcs.Config(task="gts", arch="paper", init="paper", learner="rtrl", protocol="every-stream")
    sp = tcs.spec_of(cfg, seed)
    return cfg, dataclasses.replace(sp, params=params if params is not None else sp.params, **kw)


def test_the_update_is_momentum_sgd_at_every_step():
    """Two training streams of one step each (every step errs), with a test of one step after each: θ1 = θ0 -
    lr g1, θ2 = θ1 + momentum (-lr g1) - lr g2, g_k the gradient of a one-step window from the zero state."""
    cfg, sp = gts_spec(lr=0.05, momentum=0.7)
    p0 = {k: v.copy() for k, v in sp.params.items()}
    p0["by"][:] = 5.0                                   # pred ≈ 1 at t = 0 where the target is 0: every stream errs
    sp = dataclasses.replace(sp, params=p0)
    net = tcs.net_of(cfg)
    eng = tcs.Online(1, [sp])
    x, y = np.zeros(1), np.zeros(1)
    step = lambda p, g: {k: p[k] - 0.05 * g[k] for k in p}
    g1 = tcs.online_grads(p0, net, x, y)
    p1 = step(p0, g1)
    g2 = tcs.online_grads(p1, net, x, y)
    p2 = {k: p1[k] + 0.7 * (-0.05 * g1[k]) - 0.05 * g2[k] for k in p1}
    for _ in range(4):                                  # train, test, train, test
        eng.run(1)
    got = tcs.unpack(eng.a["theta"][:, 0], net, 1)
    assert eng.a["streams"][0] == 2 and eng.a["steps"][0] == 2
    for k in p2:
        assert np.allclose(got[k], p2[k], rtol=1e-13, atol=1e-15), k
    without_momentum = step(p1, g2)                     # the test would see a missing momentum term
    assert max(np.max(np.abs(without_momentum[k] - got[k])) for k in p2) > 1e-4


def test_a_hand_set_solution_passes_its_first_test_and_stops():
    cfg, p = hand_set_gts()
    _, sp = gts_spec(p)
    (r,), _ = tcs.train_online([(tcs.Config(task="gts", arch="paper", init="paper", learner="rtrl", protocol="every-stream"), 0)],
                               specs=[sp])
    assert r["outcome"] == "passed" and r["streams"] == 1 and r["steps"] == tcs.TRAIN_UNITS * cfg.F
    assert r["first_train_success"] == r["first_pass"] == {"streams": 1, "steps": 1000}
    assert r["test_steps"] == 1000 * cfg.F and r["longest_units"] == tcs.TRAIN_UNITS


def test_a_stream_ends_at_its_first_error_and_the_next_starts_at_the_next_interval():
    """A frozen network that always outputs 0 on the MSD stream errs at every interval with I = 1: each training
    stream runs from the start of an interval to the first such spike, and the next one starts right after it;
    each test ends at the test stream's first I = 1."""
    cfg = tcs.Config(task="delays", arch="paper", init="paper", learner="rtrl", protocol="every-stream", max_streams=40)
    sp = tcs.spec_of(cfg, 3)
    p = {k: np.zeros_like(v) for k, v in sp.params.items()}
    p["by"][:] = -20.0
    sp = dataclasses.replace(sp, params=p, lr=0.0)
    (r,), _ = tcs.train_online([(cfg, 3)], specs=[sp])
    y, ends, _ = tcs.delay_tape(tcs.rng_for(tcs.STREAM_TRAIN, 3), cfg)
    errs = np.flatnonzero(ends & (y == 1))
    starts = np.r_[0, errs[:39] + 1]
    lengths = errs[:40] - starts + 1
    assert r["outcome"] == "budget" and r["streams"] == 40 and r["steps"] == lengths.sum()
    first_test_error = np.flatnonzero(sp.ends & (sp.y == 1))[0] + 1
    assert r["test_steps"] == 40 * first_test_error
    units = [int(np.sum(ends[a:b + 1])) - 1 for a, b in zip(starts, errs[:40])]
    assert r["longest_units"] == max(units) and r["longest_length"] == max(lengths)
    bins = [slice(2 ** k - 1, 2 ** (k + 1) - 1) for k in range(6)]          # streams 2^k .. 2^(k+1) - 1
    assert r["curve"]["streams"] == [1, 2, 4, 8, 16, 9]
    assert r["curve"]["max_length"] == [int(lengths[b].max()) for b in bins]
    assert r["curve"]["mean_length"] == pytest.approx([lengths[b].mean() for b in bins], rel=1e-12)
    assert r["curve"]["max_units"] == [max(units[b]) for b in bins]


def batch_results(specs, cfg):
    rs, _ = tcs.train_online([(cfg, sp.seed) for sp in specs], specs=specs)
    return {r["key"]: r for r in rs}


def same(a, b):
    assert {k: v for k, v in a.items() if k != "params"} == {k: v for k, v in b.items() if k != "params"}
    for k in a["params"]:
        bits = lambda v: np.where(np.isnan(v), np.nan, v).tobytes()     # the same bits (a NaN's sign aside)
        assert bits(a["params"][k]) == bits(b["params"][k]), k


def test_a_models_bits_do_not_depend_on_its_companions():
    """Models of the four cells, of different tasks and output units (PFG and the MSD stream with I in {0,1,2}:
    linear; GTS: sigmoid) share a loop; one passes early (a criterion that anything meets), one diverges (a huge
    learning rate); every model's record and weights are the same alone and in batches of 3 and 11."""
    pfg = tcs.Config(task="pfg", arch="paper", init="paper", learner="rtrl", protocol="every-stream", max_steps=3000, lr=0.01)
    msd = tcs.Config(task="delays", I=(0, 1, 2), arch="paper", init="paper", learner="rtrl", protocol="every-stream", max_steps=3000, lr=0.01)
    specs = [dataclasses.replace(tcs.spec_of(pfg, s), key=f"pfg{s}") for s in range(4)]
    specs += [dataclasses.replace(tcs.spec_of(msd, s), key=f"msd{s}") for s in range(2)]
    specs.append(dataclasses.replace(tcs.spec_of(pfg, 9), key="passes", tol=10.0, test_units=1))
    specs.append(dataclasses.replace(tcs.spec_of(pfg, 8), key="diverges", lr=100.0))
    gts = tcs.Config(task="gts", arch="paper", init="paper", learner="rtrl", protocol="every-stream", max_steps=3000, lr=0.01)
    specs.append(dataclasses.replace(tcs.spec_of(gts, 1), key="gts1"))
    for key, peep, forget in (("vanilla", False, True), ("lstm1997", False, False), ("peephole-nf", True, False)):
        cfg = dataclasses.replace(pfg if forget else gts, peep=peep, forget=forget, forget_bias=None if not forget
                                  else -2.0)
        specs.append(dataclasses.replace(tcs.spec_of(cfg, 2), key=key))
    alone = {sp.key: batch_results([sp], pfg)[sp.key] for sp in specs}
    assert alone["passes"]["outcome"] == "passed" and alone["passes"]["steps"] == tcs.TRAIN_UNITS * 10
    assert alone["diverges"]["outcome"] == "diverged" and alone["diverges"]["steps"] < 1000
    assert {r["outcome"] for k, r in alone.items() if k[:3] in ("pfg", "msd")} == {"budget"}
    assert {r["outcome"] for k, r in alone.items() if k in ("vanilla", "lstm1997", "peephole-nf")} == {"budget"}
    assert alone["lstm1997"]["params"].keys() == {"Wx", "Wh", "b", "Wy", "by"}
    for group in ([specs[0], specs[6], specs[7]], [specs[9], specs[8], specs[5]], specs[::-1]):
        for k, r in batch_results(group, pfg).items():
            same(r, alone[k])


def test_a_checkpoint_resumes_to_the_same_bits(tmp_path):
    """Saved mid-run and restored (the delays tapes redrawn from their generators), a job ends as the job run
    straight through."""
    cfg = tcs.Config(task="delays", arch="paper", init="paper", learner="rtrl", protocol="every-stream", max_steps=20000, lr=0.01)
    jobs = [(cfg, s) for s in range(3)] + [(tcs.Config(task="gts", arch="paper", init="paper", learner="rtrl", protocol="every-stream",
                                                       max_steps=20000, lr=0.01), 5)]
    straight, _ = tcs.train_online(jobs)
    specs = [tcs.spec_of(c, s) for c, s in jobs]
    eng = tcs.Online(1, specs)
    for _ in range(3):
        eng.run(7000)
        eng.look() if eng.looked else None
    path = str(tmp_path / "job.npz")
    eng.save(path)
    assert os.path.getsize(path) < 3000 * len(jobs)          # a few hundred numbers a model, compressed
    with np.load(path) as z:
        arrays = dict(z)
    resumed, _ = tcs.train_online(jobs, ckpt=path)
    for a, b in zip(straight, resumed):
        same(a, b)
    meta = json.loads(str(arrays.pop("meta")))          # the same checkpoint, as another version wrote it
    meta["codes"] = ["0123456789abcdef"]
    np.savez_compressed(path, meta=json.dumps(meta), **arrays)
    with pytest.raises(tcs.BadGrid, match="written by code 0123456789abcdef.*--append"):
        tcs.train_online(jobs, ckpt=path)
    assert tcs.train_online(jobs, ckpt=path, other_code=True)[0][0]["codes"] == ["0123456789abcdef", tcs.CODE]


ONLINE_GRID = {"base": {"arch": "paper", "init": "paper", "learner": "rtrl", "max_steps": 60000, "lr": 0.003},
               "settings": [{"task": "gts"}, {"task": "delays"}], "cells": ["peephole", "vanilla"], "seeds": "0-1"}


def journal_runs(path):
    return {r["key"]: {k: v for k, v in r["run"].items() if k != "wall_time"} | {"params": r["params"]}
            for r in map(json.loads, open(path)) if r["kind"] == "run"}


@pytest.fixture(scope="module")
def straight_grid(tmp_path_factory):
    """The online grid run straight through: its grid file and its journal's runs."""
    d = tmp_path_factory.mktemp("straight")
    grid = d / "g.json"
    grid.write_text(json.dumps(ONLINE_GRID))
    r = cli("--grid", str(grid), "--out", str(d / "straight.jsonl"), "--workers", "1", "--quiet",
            "--engine", "numpy")
    assert r.returncode == 0, r.stderr
    return grid, journal_runs(str(d / "straight.jsonl")), str(d / "straight.jsonl")


def test_the_report_has_the_online_learners_table(straight_grid):
    _, runs, path = straight_grid
    out = cli("--report", path).stdout
    table = out[out.index("The online learner"):].split("\n\n")[1].splitlines()
    rows = [ln for ln in table if ln.startswith("| gts") or ln.startswith("| delays")]
    assert len(rows) == 4 and all(" | 2 | " in ln and " / 2 | " in ln for ln in rows)
    streams = sorted(r["online"]["streams"] for r in runs.values() if r["task"] == "gts" and r["variant"] == "vanilla")
    gts_vanilla = next(ln for ln in rows if ln.startswith("| gts") and "| vanilla |" in ln)
    assert f"| {np.median(streams):,.0f} |" in gts_vanilla


@pytest.mark.parametrize("sig,models", [(signal.SIGTERM, []), (signal.SIGKILL, ["--models", "3"])])
def test_a_killed_online_grid_resumes_to_the_same_bits(tmp_path, straight_grid, sig, models):
    """Killed mid-run and resumed (with another --models too: the checkpoint is resumed as the batch it holds),
    the grid ends as the grid run straight; a temporary file a kill left beside the checkpoint is no checkpoint."""
    grid, straight, _ = straight_grid
    out = str(tmp_path / "cut.jsonl")
    cmd = [sys.executable, os.path.join(ROOT, "timing_counting_spikes.py"), "--grid", str(grid), "--out", out,
           "--workers", "1", "--engine", "numpy", "--quiet", "--checkpoint-every", "0.5"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt_dir = out + ".ckpt"
    t0 = time.time()
    while not (os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir)) and time.time() - t0 < 60:
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(sig)
    _, err = communicate(p, 60)
    assert p.returncode == (128 + sig if sig == signal.SIGTERM else -sig), err
    if sig == signal.SIGTERM:
        assert "resume with the same command and --resume" in err
    (ckpt,) = os.listdir(ckpt_dir)                      # the first batch's, mid-run
    with np.load(os.path.join(ckpt_dir, ckpt)) as z:
        assert json.loads(str(z["meta"]))["t"] > 0
    with open(os.path.join(ckpt_dir, ".tmp-cut" + ckpt), "wb") as fh:
        fh.write(b"PK\x03\x04 a write cut short")
    r = cli("--report", out)                             # no run finished yet: what the checkpoint holds
    assert r.returncode == 0 and f"checkpoint {ckpt}: " in r.stdout and "models running" in r.stdout, r.stderr
    r = subprocess.run([c for c in cmd[:-2] if c != "--quiet"] + ["--resume", *models], capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0 and f"resuming {os.path.abspath(os.path.join(ckpt_dir, ckpt))}" in r.stdout, r.stderr
    assert journal_runs(out) == straight
    assert not os.listdir(ckpt_dir)                      # each batch's checkpoint goes once its runs are journaled


@pytest.mark.parametrize("args,msg", [
    (["--learner", "sgd"], "invalid choice"),
    (["--task", "gts", "--learner", "rtrl", "--momentum", "1"], "--momentum must be in [0, 1)"),
    (["--task", "gts", "--learner", "rtrl", "--momentum", "-0.1"], "--momentum must be in [0, 1)"),
    (["--task", "gts", "--learner", "rtrl", "--max-streams", "0"], "expected a positive integer"),
    (["--task", "gts", "--learner", "rtrl", "--max-steps", "-5"], "expected a positive integer"),
    (["--learner", "rtrl"], "not the seed's msd"),
    (["--task", "pfg", "--learner", "rtrl", "--iters", "100"], "--iters belongs to --learner bptt"),
    (["--task", "delays", "--learner", "rtrl", "--window", "5"], "--window belongs to --learner bptt"),
    (["--task", "gts", "--learner", "rtrl", "--clip", "2"], "--clip belongs to --learner bptt"),
    (["--task", "gts", "--momentum", "0.9"], "--momentum belongs to --learner rtrl"),
])
def test_bad_online_input_is_one_line_and_writes_nothing(tmp_path, args, msg):
    out = tmp_path / "o.json"
    r = cli(*args, "--out", str(out))
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()


def test_the_paper_recipe_is_the_default():
    for task, mom in (("delays", 0.9999), ("gts", 0.999), ("pfg", 0.99)):
        cfg = tcs.Config(task=task, arch="paper", init="paper", learner="rtrl", protocol="every-stream")
        assert (cfg.lr, cfg.momentum, cfg.max_streams, cfg.max_steps) == (1e-5, mom, 10 ** 7, 10 ** 8)
        assert cfg.iters is None and cfg.clip is None
    assert tcs.Config(task="delays", learner="rtrl", protocol="every-stream", window=(1, 1)).momentum == 0.99
    bptt = tcs.Config(task="gts")
    assert "learner" not in tcs.config_dict(bptt) and tcs.job_key(bptt, 0).count("momentum") == 0


def test_the_seeds_architecture_and_more_cells_learn_online_too():
    """The seed's architecture (tanh cell input and output, H = 3, a linear output unit) through the same loop:
    a model alone and beside another gives the same bits, and its weights move."""
    cfgs = [tcs.Config(task=t, learner="rtrl", protocol="every-stream", hidden=3, max_steps=2000, lr=0.01) for t in ("gts", "pfg")]
    alone = tcs.train_online([(cfgs[0], 0)])[0][0]
    pair = tcs.train_online([(cfgs[1], 1), (cfgs[0], 0)])[0][1]
    same(alone, pair)
    start = tcs.initial_params(cfgs[0], 0)
    assert alone["params"]["Wh"].shape == (3, 12) and not np.allclose(alone["params"]["Wh"], start["Wh"])


def test_the_online_curves_figure_shows_each_cells_longest_run(tmp_path, straight_grid):
    """One row per recipe (never pooled), each cell's run with the longest training stream in it."""
    from PIL import Image
    viz = pytest.importorskip("visualize_timing_counting_spikes")
    _, runs, path = straight_grid
    r = subprocess.run([sys.executable, os.path.join(ROOT, "visualize_timing_counting_spikes.py"), "--online-curves",
                        path, "--outdir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    shown = json.loads((tmp_path / "facts.json").read_text())["online_curves_straight"]["shown"]
    col = "one-cell online lr=0.003"                                          # the grid's recipe: its row
    assert set(shown) == {f"{col} | gts F=10 | peephole", f"{col} | gts F=10 | vanilla"}   # the grid has no PFG
    for cell in ("peephole", "vanilla"):
        mine = [x for x in runs.values() if x["task"] == "gts" and x["variant"] == cell]
        best = max(mine, key=lambda x: (x["online"]["longest_units"], x["online"]["longest_length"], -x["seed"]))
        assert shown[f"{col} | gts F=10 | {cell}"]["seed"] == best["seed"]
        assert shown[f"{col} | gts F=10 | {cell}"]["longest_length"] == best["online"]["longest_length"]
    assert f"wrote {tmp_path}/online_curves_straight.png" in r.stdout
    with Image.open(tmp_path / "online_curves_straight.png") as im:
        assert im.size[0] > 800 and len(np.unique(np.asarray(im.convert("L")))) > 20
        one_row = im.size[1]
    recs = [json.loads(line) for line in open(path)]      # seed 1 as if trained at the paper's rate: a row of its own
    for rec in recs[1:]:
        if rec["seed"] == 1:
            rec["config"]["lr"] = tcs.RTRL_DEFAULTS["lr"]
    two = tmp_path / "two.jsonl"
    two.write_text("".join(json.dumps(rec) + "\n" for rec in recs))
    fig, shown = viz.online_curves([str(two)], str(tmp_path))
    assert {k.split(" | ")[0] for k in shown} == {col, "one-cell online"}
    assert all(v["seed"] == (1 if k.startswith("one-cell online |") else 0) and v["runs"] == 1
               for k, v in shown.items())
    with Image.open(fig) as im:
        assert im.size[1] > 1.7 * one_row
    r = subprocess.run([sys.executable, os.path.join(ROOT, "visualize_timing_counting_spikes.py"), "--online-curves",
                        str(tmp_path / "none.jsonl")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no such journal" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_papers_protocol_tests_only_after_a_training_success_and_records_the_margin():
    """A hand-set GTS solution passes after its first training success under both protocols; the pass records
    the largest |error| of its 1000-spike test (the free run's, computed apart), its margin to 0.49 and whether it
    holds at the stricter 0.15."""
    cfg, p = hand_set_gts()
    for protocol in ("paper", "every-stream"):
        c = tcs.Config(task="gts", arch="paper", init="paper", learner="rtrl", protocol=protocol)
        sp = dataclasses.replace(tcs.spec_of(c, 0), params=p, lr=0.0)
        (r,), _ = tcs.train_online([(c, 0)], specs=[sp])
        s = tcs.stream_test(cfg, 1000)
        worst = float(np.max(np.abs(tcs.free_run(p, tcs.net_of(cfg), s.x) - s.y[:, 0])))
        assert r["outcome"] == "passed" and r["protocol"] == protocol and r["streams"] == 1
        assert r["test_max_error"] == pytest.approx(worst, abs=1e-12) and 0 < worst < 0.49
        assert r["margin"] == pytest.approx(0.49 - worst, abs=1e-12)
        assert r["strict_pass"] == (worst < tcs.STRICT_TOL)


def test_under_the_papers_protocol_a_stream_without_a_training_success_is_not_tested():
    """The always-0 network of the MSD stream never has a training success: under the paper's protocol it runs
    the same 40 training streams as under every-stream, and no test step."""
    runs = {}
    for protocol in ("paper", "every-stream"):
        cfg = tcs.Config(task="delays", arch="paper", init="paper", learner="rtrl", protocol=protocol, max_streams=40)
        sp = tcs.spec_of(cfg, 3)
        p = {k: np.zeros_like(v) for k, v in sp.params.items()}
        p["by"][:] = -20.0
        (runs[protocol],), _ = tcs.train_online([(cfg, 3)], specs=[dataclasses.replace(sp, params=p, lr=0.0)])
    paper, every = runs["paper"], runs["every-stream"]
    assert paper["outcome"] == every["outcome"] == "budget" and paper["streams"] == every["streams"] == 40
    assert paper["steps"] == every["steps"] and paper["test_steps"] == 0 < every["test_steps"]
    assert paper["test_max_error"] is None and paper["first_pass"] is None


def test_a_test_never_moves_the_weights_so_both_protocols_train_alike():
    """Until a model passes, the two protocols differ only in which frozen tests run: the same training streams,
    the same weights to the last bit (models of three tasks and two cells, in one loop with their companions)."""
    specs = []
    for task in ("gts", "pfg", "delays"):
        for peep in (True, False):
            for protocol in ("paper", "every-stream"):
                cfg = tcs.Config(task=task, arch="paper", init="paper", learner="rtrl", protocol=protocol,
                                 peep=peep, max_steps=4000, lr=0.01)
                specs.append(dataclasses.replace(tcs.spec_of(cfg, 1), key=f"{task}{peep}{protocol}"))
    rs = batch_results(specs, cfg)
    for task in ("gts", "pfg", "delays"):
        for peep in (True, False):
            a, b = rs[f"{task}{peep}paper"], rs[f"{task}{peep}every-stream"]
            assert a["outcome"] == b["outcome"] == "budget"
            assert (a["streams"], a["steps"], a["curve"]) == (b["streams"], b["steps"], b["curve"])
            for k in a["params"]:
                assert a["params"][k].tobytes() == b["params"][k].tobytes(), (task, peep, k)
            assert a["test_steps"] < b["test_steps"]


def test_a_damaged_checkpoint_is_refused_in_one_line(tmp_path):
    """A checkpoint read back must be whole and its own: a missing array, a wrong shape, two models' keys
    swapped, a model both running and stopped, or a file that is no archive are each one BadGrid line."""
    cfg = tcs.Config(task="gts", arch="paper", init="paper", learner="rtrl", max_steps=3000, lr=0.01)
    specs = [dataclasses.replace(tcs.spec_of(cfg, s), key=f"m{s}") for s in range(3)]
    eng = tcs.Online(1, specs)
    eng.run(500)
    eng.done["m9"] = {"outcome": "budget", "params": {"by": np.zeros(1)}}
    path = str(tmp_path / "c.npz")
    eng.save(path)
    meta, arrays = tcs.read_checkpoint(path, 1)
    assert meta["keys"] == ["m0", "m1", "m2"] and arrays["theta"].shape[1] == 3

    def damaged(edit):
        m, a = json.loads(json.dumps(meta)), {k: v.copy() for k, v in arrays.items()}
        edit(m, a)
        bad = str(tmp_path / "bad.npz")
        np.savez_compressed(bad, meta=json.dumps(m), **a)
        with pytest.raises(tcs.BadGrid) as e:
            tcs.read_checkpoint(bad, 1)
        assert "\n" not in str(e.value) and "delete it" in str(e.value)
        return str(e.value)

    assert "lacks the array err_max" in damaged(lambda m, a: a.pop("err_max"))
    assert "of shape" in damaged(lambda m, a: a.update(S=a["S"][:, :2]))
    assert "digest" in damaged(lambda m, a: m.update(keys=["m1", "m0", "m2"]))
    assert "both running and stopped" in damaged(lambda m, a: m["done"].update(m0=m["done"]["m9"]))
    assert "lacks fields" in damaged(lambda m, a: m.pop("digest"))
    (tmp_path / "bad.npz").write_bytes(b"not an archive")
    with pytest.raises(tcs.BadGrid, match="cannot be read"):
        tcs.read_checkpoint(str(tmp_path / "bad.npz"))


def test_a_stale_checkpoint_beside_a_finished_journal_is_not_reported_as_running(tmp_path, straight_grid):
    grid, _, journal = straight_grid
    out = tmp_path / "done.jsonl"
    out.write_text(open(journal).read())
    d = tmp_path / "done.jsonl.ckpt"
    d.mkdir()
    keys = [json.loads(ln)["key"] for ln in open(journal) if '"kind": "run"' in ln]
    cfgs = [(tcs.setting_of(json.loads(k)[0])[2], json.loads(k)[1]) for k in keys]
    specs = [dataclasses.replace(tcs.spec_of(c, s), key=k) for (c, s), k in zip(cfgs, keys)]
    tcs.Online(1, specs).save(str(d / "stale.npz"))
    (d / ".tmp-x.npz").write_bytes(b"cut")
    r = cli("--report", str(out))
    assert r.returncode == 0 and "running" not in r.stdout and "passed the test" in r.stdout, r.stderr
    r = cli("--grid", str(grid), "--out", str(out), "--quiet", "--resume", "--engine", "numpy")
    assert r.returncode == 0 and not os.listdir(d), r.stderr           # a finished grid cleans them away


def test_the_numba_engine_is_refused_in_one_line_where_it_cannot_run(monkeypatch, capsys, tmp_path):
    """Without numba, or in float32 (the kernel computes in float64), --engine numba is one line, exit 2."""
    args = ["--task", "gts", "--arch", "paper", "--learner", "rtrl", "--max-steps", "100", "--engine", "numba",
            "--out", str(tmp_path / "o.json")]
    monkeypatch.setattr(tcs, "HAVE_NUMBA", False)
    with pytest.raises(SystemExit) as e:
        tcs.main(args)
    assert e.value.code == 2 and "needs numba" in capsys.readouterr().err
    monkeypatch.setattr(tcs, "HAVE_NUMBA", True)
    with pytest.raises(SystemExit) as e:
        tcs.main(args + ["--dtype", "float32"])
    assert e.value.code == 2 and "computes in float64" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_a_larger_budget_goes_on_from_where_the_smaller_one_stopped(tmp_path):
    """A grid at 300 training streams a model, then the same grid at 900 continued from its journal
    (--continue-from): every model ends as the 900-stream grid run straight through, bit for bit (weights,
    counters, learning curve, margins); a model that passed within 300 streams is carried over, not retrained."""
    small = {**ONLINE_GRID, "base": {**ONLINE_GRID["base"], "max_streams": 300, "max_steps": 10 ** 6},
             "cells": ["vanilla"]}
    big = {**small, "base": {**small["base"], "max_streams": 900}}
    out = {}
    for name, grid, more in (("small", small, []), ("straight", big, []),
                             ("continued", big, ["--continue-from", str(tmp_path / "small.jsonl")])):
        (tmp_path / f"{name}.json").write_text(json.dumps(grid))
        r = cli("--grid", str(tmp_path / f"{name}.json"), "--out", str(tmp_path / f"{name}.jsonl"), "--workers", "1",
                "--quiet", "--engine", "numpy", *more)
        assert r.returncode == 0, r.stderr
        out[name] = {rec["key"]: rec for rec in map(json.loads, open(tmp_path / f"{name}.jsonl"))
                     if rec["kind"] == "run"}
    outcomes = {k: r["run"]["online"]["outcome"] for k, r in out["small"].items()}
    assert "budget" in outcomes.values() and all(r["run"]["online"].get("state") for r in out["small"].values()
                                                  if r["run"]["online"]["outcome"] == "budget")
    assert out["straight"].keys() == out["continued"].keys() and len(out["straight"]) == 4
    for k, a in out["straight"].items():
        b = out["continued"][k]
        strip = lambda r: {x: v for x, v in r["run"].items() if x not in ("wall_time", "models_per_process")}
        oa, ob = ({x: v for x, v in r["run"]["online"].items() if x not in ("codes", "engines", "state")}
                  for r in (a, b))
        assert oa == ob and a["params"] == b["params"], k
        assert {x: v for x, v in strip(a).items() if x != "online"} == {x: v for x, v in strip(b).items()
                                                                         if x != "online"}, k
        assert ("carried_from" in b) == (oa["outcome"] == "passed" and oa["streams"] <= 300)
        if oa["outcome"] == "budget":
            assert oa["streams"] == 900 and a["run"]["online"]["state"] == b["run"]["online"]["state"]
    lines = open(tmp_path / "small.jsonl").read().splitlines()   # one model passed there: it is carried over
    rec = json.loads(lines[1])
    rec["run"]["online"]["outcome"] = "passed"
    (tmp_path / "passed.jsonl").write_text("\n".join([lines[0], json.dumps(rec)]) + "\n")
    _, jobs = tcs.load_grid(str(tmp_path / "continued.json"))
    given = tcs.earlier_budget(str(tmp_path / "passed.jsonl"), jobs)
    assert [how for how, _ in given.values()] == ["carry"] and given[next(iter(given))][1] == rec
    with pytest.raises(tcs.BadGrid, match="ran a larger budget there"):
        tcs.earlier_budget(str(tmp_path / "straight.jsonl"), tcs.load_grid(str(tmp_path / "small.json"))[1])
    (carried,) = tcs.run_grid([jobs[next(iter(given))]], quiet=True, log=lambda s: None,
                              continue_from=str(tmp_path / "passed.jsonl"))
    assert carried["run"] == rec["run"] and carried["carried_from"] == "passed.jsonl"
    assert carried["config"]["max_streams"] == 900 and carried["key"] != rec["key"]


@pytest.mark.parametrize("more,msg", [(["--continue-from", "nope.jsonl"], "no such journal"),
                                      (["--continue-from", "SELF"], "--out must be another file")])
def test_bad_continue_from_is_one_line_and_writes_nothing(tmp_path, more, msg):
    (tmp_path / "g.json").write_text(json.dumps(ONLINE_GRID))
    more = [str(tmp_path / "g.jsonl") if m == "SELF" else str(tmp_path / m) if m.endswith(".jsonl") else m
            for m in more]
    r = cli("--grid", str(tmp_path / "g.json"), "--out", str(tmp_path / "g.jsonl"), *more)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and msg in r.stderr, r.stderr
    assert not (tmp_path / "g.jsonl").exists()
