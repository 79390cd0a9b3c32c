"""Grids: validated before training, a durable journal that survives SIGKILL and SIGTERM, resume, dask."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import timing_counting_spikes as tcs
from test_train import ROOT, cli

TINY = {"base": {"T": 40, "D_min": 5, "D_max": 15, "iters": 150, "eval_every": 50, "n_test": 32},
        "settings": [{"hidden": [4, 6]}], "cells": ["peephole", "vanilla"], "seeds": "0-2"}


def write(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def runs_of(journal):
    return [json.loads(ln) for ln in open(journal) if '"kind": "run"' in ln]


def test_grid_file_expands_and_matches_single_runs(tmp_path):
    grid, jobs = tcs.load_grid(write(tmp_path / "g.json", TINY))
    assert len(jobs) == 2 * 2 * 3
    assert [(c.hidden, s, tcs.cell_name(c.peep, c.forget)) for c, s in jobs[:4]] == \
        [(4, 0, "peephole"), (4, 0, "vanilla"), (4, 1, "peephole"), (4, 1, "vanilla")]
    out = str(tmp_path / "g.jsonl")
    r = cli("--grid", str(tmp_path / "g.json"), "--out", out, "--workers", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    recs = runs_of(out)
    assert len(recs) == 12 and len({r["key"] for r in recs}) == 12
    rec = next(r for r in recs if r["config"]["hidden"] == 6 and r["seed"] == 2 and r["cell"] == "vanilla")
    run, params, _ = tcs.run_one(jobs[-1][0], 2)            # the same job trained here, alone
    assert rec["run"]["final"] == run["final"]
    assert all(np.array_equal(np.array(rec["params"][k]), params[k]) for k in params)
    assert "| msd T=40 D=5-15 seed/seed H=6 iters=150 | vanilla | 3 |" in r.stdout


def test_a_setting_may_name_its_own_cells(tmp_path):
    """A setting's own "cells" replace the grid's for it alone: the jobs are those cells of that setting."""
    grid = {**TINY, "settings": [{"hidden": 4}, {"hidden": 6, "cells": ["lstm1997"]}]}
    _, jobs = tcs.load_grid(write(tmp_path / "g.json", grid))
    got = sorted({(c.hidden, tcs.cell_name(c.peep, c.forget)) for c, _ in jobs})
    assert got == [(4, "peephole"), (4, "vanilla"), (6, "lstm1997")] and len(jobs) == 3 * 3


@pytest.mark.parametrize("grid,fragment", [
    ("{nope", "not JSON"), ({"settings": []}, "an object with settings"),
    ({**TINY, "cells": ["peephole", "lstm"]}, "malformed --cells"), ({**TINY, "seeds": ""}, "malformed --seeds"),
    ({**TINY, "settings": [{"hidden": 0}]}, "settings[0]: argument --hidden"),
    ({**TINY, "settings": [{"task": "gts", "T": 50}]}, "--T applies to --task msd"),
    ({**TINY, "base": {}, "settings": [{"task": "pfg", "period": [10, 1]}]}, "--period must be >= 2"),
    ({**TINY, "settings": [{"bogus": 1}]}, "unrecognized arguments"),
    ({**TINY, "settings": [{"no_forget": True}]}, "cells set the peepholes"),
    ({**TINY, "settings": [{"hidden": []}]}, "an empty list"),
    ({**TINY, "settings": [{"hidden": 4}, {"hidden": [4]}]}, "the same job"),
    ({**TINY, "cells": ["lstm1997"], "base": {**TINY["base"], "forget_bias": 1}}, "cell lstm1997: --forget-bias"),
    ({**TINY, "settings": [{"hidden": 4, "cells": ["lstm"]}]}, "settings[0]: malformed --cells"),
    ({**TINY, "settings": [{"hidden": 4, "cells": "vanilla"}]}, "settings[0]: cells is a list of names"),
])
def test_bad_grid_files_one_line_exit_2(tmp_path, grid, fragment):
    path = tmp_path / "g.json"
    path.write_text(grid if isinstance(grid, str) else json.dumps(grid))
    r = cli("--grid", str(path), "--out", str(tmp_path / "g.jsonl"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and fragment in r.stderr, r.stderr
    assert not (tmp_path / "g.jsonl").exists() and r.stdout == ""


@pytest.mark.parametrize("args", [
    ["--grid", "g.json", "--out", "g.json"], ["--resume", "--out", "r.json"], ["--append"], ["--out", "r.txt"],
    ["--grid", "g.json", "--out", "g.jsonl", "--seeds", "0-3"], ["--grid", "g.json", "--out", "g.jsonl", "--hidden", "3"],
    ["--cells", "peephole", "--both"], ["--cells", "peephole,peephole"], ["--cells", "vanilla", "--no-forget"],
    ["--scheduler", "tcp://127.0.0.1:1", "--seeds", ""],
])
def test_bad_grid_flags_one_line_exit_2(args):
    r = cli(*args, "--iters", "1") if "--grid" not in args else cli(*args)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "error:" in r.stderr, (args, r.stderr)


def start(tmp_path, *extra):
    gpath = write(tmp_path / "g.json", {**TINY, "base": {**TINY["base"], "iters": 600}})
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "timing_counting_spikes.py"), "--grid", gpath,
                             "--out", str(tmp_path / "g.jsonl"), "--workers", "2", "--quiet", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def communicate(p, timeout):
    """p.communicate(timeout), but a process still running at the timeout is killed (its workers die with it)
    before the test fails: a hung grid never outlives its test."""
    try:
        return p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise AssertionError(f"the process did not exit within {timeout} s: killed") from None


def wait_for_runs(journal, n, timeout=120):
    t = time.time()
    while time.time() - t < timeout:
        if os.path.exists(journal) and len(runs_of(journal)) >= n:
            return
        time.sleep(0.05)
    raise AssertionError("the grid did not get going")


def children(pid):
    out = subprocess.run(["ps", "-eo", "pid,ppid"], capture_output=True, text=True).stdout.split("\n")[1:]
    return [int(p) for p, pp in (ln.split() for ln in out if ln.strip()) if int(pp) == pid]


def gone(pids, timeout=10):
    t = time.time()
    while time.time() - t < timeout:
        alive = [p for p in pids if os.path.exists(f"/proc/{p}") and
                 open(f"/proc/{p}/stat").read().split()[2] != "Z"]
        if not alive:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_grid_resumes_and_leaves_no_orphans(tmp_path, sig):
    journal = str(tmp_path / "g.jsonl")
    p = start(tmp_path)
    wait_for_runs(journal, 2)
    workers = children(p.pid)
    assert workers
    p.send_signal(sig)
    _, err = communicate(p, 60)
    assert gone(workers), "worker processes outlived the grid"
    if sig == signal.SIGTERM:
        assert p.returncode == 128 + signal.SIGTERM
        assert "resume with the same command and --resume" in err and "Traceback" not in err
    before = runs_of(journal)
    assert 2 <= len(before) < 12
    with open(journal, "a") as fh:                             # a run cut off mid-write
        fh.write('{"kind": "run", "key": "[{\\"T\\": 40')
    r = start(tmp_path, "--resume")
    out, err = communicate(r, 240)
    assert r.returncode == 0, err
    assert f"resuming {journal}: {len(before)} of 12 runs done; dropped a truncated last record" in out
    after = runs_of(journal)
    assert len(after) == 12 and len({x["key"] for x in after}) == 12
    assert [x["run"]["final"] for x in after[:len(before)]] == [x["run"]["final"] for x in before]


def test_mismatched_resume_is_refused_unless_appending(tmp_path):
    gpath = write(tmp_path / "g.json", {**TINY, "seeds": "0"})
    journal = str(tmp_path / "g.jsonl")
    assert cli("--grid", gpath, "--out", journal, "--quiet").returncode == 0
    r = cli("--grid", gpath, "--out", journal, "--quiet")
    assert r.returncode == 2 and "exists: --resume" in r.stderr
    other = write(tmp_path / "h.json", {**TINY, "seeds": "1"})
    r = cli("--grid", other, "--out", journal, "--resume", "--quiet")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "holds another grid or code version" in r.stderr
    lines = open(journal).read().splitlines()
    head = json.loads(lines[0])
    head["code"] = "0123456789abcdef"                          # the same grid, written by other code
    (tmp_path / "c.jsonl").write_text("\n".join([json.dumps(head)] + lines[1:]) + "\n")
    r = cli("--grid", gpath, "--out", str(tmp_path / "c.jsonl"), "--resume", "--quiet")
    assert r.returncode == 2 and "code 0123456789abcdef" in r.stderr
    r = cli("--grid", other, "--out", journal, "--append", "--quiet")
    assert r.returncode == 0, r.stderr
    assert len(runs_of(journal)) == 8 and sum('"kind": "header"' in ln for ln in open(journal)) == 2


def test_a_diverged_run_is_recorded_and_the_grid_goes_on(tmp_path, monkeypatch):
    real = tcs.loss_and_grads

    def blows_up(params, batch, buf=None, state=None):
        loss, grads, pred = real(params, batch, buf, state)
        if params["Wh"].shape[0] == 4 and "p_i" not in params:
            grads["Wh"][0, 0] = np.nan
        return loss, grads, pred

    monkeypatch.setattr(tcs, "loss_and_grads", blows_up)
    _, jobs = tcs.load_grid(write(tmp_path / "g.json", {**TINY, "seeds": "0"}))
    journal = str(tmp_path / "g.jsonl")
    res = tcs.run_grid(jobs, 1, journal, log=lambda s: None)
    assert [r["kind"] for r in res] == ["run", "diverged", "run", "run"]
    assert "non-finite gradient at iteration 1" in res[1]["message"]
    r = cli("--report", journal)
    assert r.returncode == 0 and "| msd T=40 D=5-15 seed/seed H=4 iters=150 | vanilla | 0 (+1 diverged) |" in r.stdout


def test_dask_cluster_gives_the_local_pool_bits(tmp_path):
    distributed = pytest.importorskip("distributed")
    msd = {k: v for k, v in TINY["base"].items() if k not in ("iters", "eval_every")}
    bptt = {"iters": 150, "eval_every": 50}
    online = {"task": "gts", "arch": "paper", "init": "paper", "learner": "rtrl", "lr": 0.01, "max_steps": 3000}
    gpath = write(tmp_path / "g.json", {**TINY, "seeds": "0-1", "base": {}, "settings": [
        {**msd, **bptt, "hidden": 3}, {**bptt, "task": "gts", "F": 5, "arch": "paper", "window": "2-20",
                                       "test_units": 20}, online]})
    local = str(tmp_path / "local.jsonl")
    assert cli("--grid", gpath, "--out", local, "--workers", "2", "--quiet").returncode == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        remote = str(tmp_path / "dask.jsonl")
        r = cli("--grid", gpath, "--out", remote, "--scheduler", c.scheduler_address, "--quiet")
        assert r.returncode == 0, r.stderr
    key = lambda recs: {x["key"]: (x["run"]["final"], x["run"]["best"], x["run"].get("online"), x["params"])
                        for x in recs}
    a, b = key(runs_of(local)), key(runs_of(remote))
    assert len(a) == 12 and a == b and sum(v[2] is not None for v in a.values()) == 4   # 4 online runs


@pytest.mark.parametrize("cfg", [
    tcs.Config(task="gts", F=10, iters=600, eval_every=100, window=(10, 40), test_units=100),   # windows diverge
    tcs.Config(task="pfg", F=4, arch="paper", iters=60, eval_every=20, window=(2, 20), test_units=10),
    tcs.Config(task="delays", F=4, I=(0, 1, 2), arch="paper", init="paper", peep=False, forget=False, iters=40,
               eval_every=20, window=(3, 3), test_units=30, batch=3),
    tcs.Config(T=40, D_min=5, D_max=15, iters=40, eval_every=20, n_test=32, peep=True, forget=False),
], ids=["gts-self-paced", "pfg-paper", "delays-1997", "msd-nf"])
def test_a_model_trains_the_same_alone_and_in_any_batch(cfg):
    strip = lambda h: [{k: v for k, v in x.items() if k != "elapsed"} for x in h]
    alone = tcs.train(cfg, 5)
    for seeds in ([5, 1, 2], [9, 8, 7, 6, 5, 4, 3, 0]):        # batches of 3 and 8 with other companions
        batch = tcs.train_many(cfg, seeds)
        tr = batch[seeds.index(5)]
        assert tr.final == alone.final and tr.best == alone.best and strip(tr.history) == strip(alone.history)
        for k in alone.params:
            assert np.array_equal(tr.params[k], alone.params[k]) and np.array_equal(tr.best_params[k],
                                                                                    alone.best_params[k])
    if cfg.task == "gts":                                    # the batch's windows differed between models
        assert len({tuple(h["window"] for h in b.history) for b in batch}) > 1


def test_a_diverging_model_does_not_disturb_its_batch(monkeypatch):
    cfg = tcs.Config(T=40, D_min=5, D_max=15, iters=30, eval_every=10, n_test=32, hidden=2, batch=4)
    clean = tcs.train_many(cfg, [0, 1, 2])
    real = tcs.backward

    def poisons(params, buf, dpred, lengths=None, truncate=False):
        grads = real(params, buf, dpred, lengths, truncate)
        if buf.M == 3:
            grads["Wh"][1, 0, 0] = np.inf                     # model 1 of the batch, every step
        return grads

    monkeypatch.setattr(tcs, "backward", poisons)
    out = tcs.train_many(cfg, [0, 1, 2])
    assert out[1] == "seed 1: non-finite gradient at iteration 1"
    for m in (0, 2):
        assert out[m].final == clean[m].final and all(np.array_equal(out[m].params[k], clean[m].params[k])
                                                      for k in clean[m].params)


@pytest.mark.parametrize("bad,msg", [
    ('{"kind": "run"}', "line 3 is a 'run' record without"),
    ('{"kind": "run", "key": "x"}', "line 3 is a 'run' record without"),
    ('{"kind": "holiday"}', "line 3 is a record of unknown kind 'holiday'"),
    (None, "line 3 records the job of line 2 again"),
])
def test_a_journal_with_a_bad_record_is_refused_and_left_as_it_is(tmp_path, bad, msg):
    gpath = write(tmp_path / "g.json", {**TINY, "seeds": "0", "settings": [{"hidden": 4}], "cells": ["peephole"]})
    journal = tmp_path / "g.jsonl"
    assert cli("--grid", gpath, "--out", str(journal), "--quiet").returncode == 0
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines + [bad or lines[1]]) + "\n")      # a bad third line, or the run again
    before = journal.read_bytes()
    for args in (("--report", str(journal)), ("--grid", gpath, "--out", str(journal), "--resume", "--quiet")):
        r = cli(*args)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert journal.read_bytes() == before


def test_a_directory_as_out_and_flags_beside_gradcheck_are_one_line(tmp_path):
    (tmp_path / "dir.jsonl").mkdir()
    gpath = write(tmp_path / "g.json", TINY)
    r = cli("--grid", gpath, "--out", str(tmp_path / "dir.jsonl"), "--resume")
    assert r.returncode == 2 and "is a directory" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("--gradcheck", "--task", "gts")
    assert r.returncode == 2 and "drop --task" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:18799", "127.0.0.1:notaport"])
def test_a_scheduler_that_does_not_answer_is_one_line_before_anything_is_written(tmp_path, address):
    pytest.importorskip("distributed")
    out = tmp_path / "g.jsonl"
    r = cli("--grid", write(tmp_path / "g.json", TINY), "--out", str(out), "--scheduler", address)
    assert r.returncode == 2 and "cannot reach a scheduler there" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("module", ["other version", "missing", "missing on the worker"])
def test_a_dask_worker_with_another_module_or_none_is_refused(tmp_path, module):
    """Workers run the module they import themselves: one with another version of it is refused, and the process
    without it (the scheduler, which unpickles the jobs, or a worker) is named; one line, exit 2, nothing written."""
    distributed = pytest.importorskip("distributed")
    other = tmp_path / "other"
    other.mkdir()
    if module == "other version":
        src = open(os.path.join(ROOT, "timing_counting_spikes.py")).read()
        (other / "timing_counting_spikes.py").write_text(src + "\n# another version\n")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(other), "OPENBLAS_NUM_THREADS": "1"}
    run = lambda *a, cwd=other: subprocess.Popen([sys.executable, "-m", *a], cwd=cwd, env=env,
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [run("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                 "--dashboard-address", ":0", cwd=ROOT if module == "missing on the worker" else other)]
    try:
        client = None
        for _ in range(60):                              # the scheduler up, then one worker registered with it
            try:
                client = distributed.Client(f"tcp://127.0.0.1:{port}", timeout="2s")
                break
            except OSError:
                time.sleep(0.5)
        procs.append(run("distributed.cli.dask_worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                         "--nworkers", "1", "--no-dashboard"))
        client.wait_for_workers(1, timeout=60)
        client.close()
        out = tmp_path / "g.jsonl"
        r = cli("--grid", write(tmp_path / "g.json", {**TINY, "seeds": "0", "cells": ["peephole"],
                                                      "settings": [{"hidden": 4}]}),
                "--out", str(out), "--scheduler", f"tcp://127.0.0.1:{port}", "--quiet")
        want = {"other version": "runs timing_counting_spikes", "missing": "the dask scheduler at",
                "missing on the worker": "dask worker tcp://"}[module]
        assert r.returncode == 2 and want in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "cannot import" in r.stderr or module == "other version"
        assert not out.exists()
    finally:
        for p in procs[::-1]:
            p.terminate()
            communicate(p, 30)


def test_a_dask_cluster_without_workers_stops_the_grid_with_one_line(monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(tcs, "NO_WORKER_WAIT", 2.0)
    cfg = tcs.Config(T=40, D_min=5, D_max=15, iters=5, eval_every=5, n_test=8)
    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=None) as c:
        t0 = time.monotonic()
        with pytest.raises(tcs.BadGrid, match="no dask worker for 2 s: start workers and run the same command"):
            list(tcs.execute([([0], cfg, [0], None)], scheduler=c.scheduler_address))
        assert time.monotonic() - t0 < 30


def test_the_worker_pool_returns_every_result_and_an_error_and_leaves_no_process():
    """_pool(): every batch's result once (in any order), a job's exception raised in the main process, and no
    worker left behind either way."""
    import multiprocessing
    cfg = tcs.Config(task="pfg", arch="paper", init="paper", iters=2, window=(3, 3))
    batches = [([f"k{s}"], cfg, [s], None) for s in range(5)]
    got = sorted(ks[0] for ks, _ in tcs._pool(batches, 2))
    assert got == [f"k{s}" for s in range(5)] and not multiprocessing.active_children()
    with pytest.raises(AttributeError):
        list(tcs._pool(batches[:2] + [(["bad"], "not a config", [0], None)], 2))
    assert not multiprocessing.active_children()
