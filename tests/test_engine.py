"""The online learner's compiled engine (--engine numba) against the NumPy engine: the same models from the same
weights give the same streams, stops and records, and weights equal to rounding (numba's tanh is the C library's,
NumPy's its own, so bits may differ in the last place). CI installs requirements-fast.txt; without numba these skip."""
import dataclasses
import json

import numpy as np
import pytest

import timing_counting_spikes as tcs
from test_online import batch_results, journal_runs, straight_grid  # noqa: F401 (a fixture)
from test_train import cli

pytest.importorskip("numba")

SETTINGS = (("gts", {}), ("pfg", {}), ("delays", {}), ("delays", {"I": (0, 1, 2)}), ("delays", {"window": (1, 1)}))


def every_kind(lr, max_steps=10 ** 6):
    """One model of every task (GTS, PFG, the MSD stream with a sigmoid and a linear output unit, NMSD) x cell x
    protocol: 40 models of one loop."""
    specs = []
    for task, kw in SETTINGS:
        for cell, (peep, forget) in tcs.CELLS.items():
            for protocol in tcs.PROTOCOLS:
                cfg = tcs.Config(task=task, arch="paper", init="paper", learner="rtrl", protocol=protocol, peep=peep,
                                 forget=forget, max_steps=max_steps, lr=lr, **kw)
                specs.append(dataclasses.replace(tcs.spec_of(cfg, 3), key=f"{task}{kw}{cell}{protocol}"))
    return specs


def counters(eng):
    return {k: eng.a[k] for k in tcs.STATE if eng.a[k].dtype != eng.a["theta"].dtype}


@pytest.mark.parametrize("lr,steps,tol", [(1e-5, 10_000, 1e-12), (1e-2, 1_000, 1e-9)])
def test_both_engines_walk_the_same_streams_to_rounding(lr, steps, tol):
    """Step by step from the same weights: every counter, position and flag equal at every step; the weights
    within tol (at the paper's learning rate over 10^4 steps; at 1000 times it over 10^3)."""
    specs = every_kind(lr)
    a, b = tcs.Online(1, specs, engine="numpy"), tcs.Online(1, specs, engine="numba")
    for step in range(steps):
        a.run(1)
        b.run(1)
        for e in (a, b):
            e.look() if e.looked else None
        if step % 50 == 0 or step == steps - 1:
            ca, cb = counters(a), counters(b)
            assert all(np.array_equal(ca[k], cb[k]) for k in ca), (step, [k for k in ca if not np.array_equal(ca[k],
                                                                                                            cb[k])])
    assert a.t == b.t and np.abs(a.a["theta"] - b.a["theta"]).max() <= tol
    S, T = a.a["S"], b.a["S"]                          # the state: an unsquashed cell state may grow large
    assert np.all(np.abs(S - T) <= tol * np.maximum(1.0, np.abs(S)))


def test_a_pass_a_divergence_and_both_budgets_end_alike():
    """A pass (a criterion anything meets), a divergence (a huge learning rate), the stream budget and the step
    budget: the same outcome and record under both engines, weights to rounding; a model's engine is recorded."""
    pfg = tcs.Config(task="pfg", arch="paper", init="paper", learner="rtrl", max_steps=3000, lr=0.01)
    msd = tcs.Config(task="delays", arch="paper", init="paper", learner="rtrl", max_streams=40, lr=0.01)
    specs = [dataclasses.replace(tcs.spec_of(pfg, 9), key="passes", tol=10.0, test_units=1),
             dataclasses.replace(tcs.spec_of(pfg, 8), key="diverges", lr=100.0),
             dataclasses.replace(tcs.spec_of(pfg, 1), key="steps"),
             dataclasses.replace(tcs.spec_of(msd, 2), key="streams")]
    runs = {}
    for engine in tcs.ENGINES:
        res, _ = tcs.train_online([(pfg, sp.seed) for sp in specs], specs=specs, engine=engine)
        runs[engine] = {r["key"]: r for r in res}
    for key, outcome in (("passes", "passed"), ("diverges", "diverged"), ("steps", "budget"), ("streams", "budget")):
        a, b = runs["numpy"][key], runs["numba"][key]
        assert a["outcome"] == b["outcome"] == outcome
        assert a["engines"] == ["numpy"] and b["engines"] == ["numba"]
        rounded = ("params", "engines", "test_max_error", "margin", "state")   # floats: equal to rounding
        same = lambda r: {k: v for k, v in r.items() if k not in rounded}
        assert same(a) == same(b), key
        if outcome == "budget":                  # the kept state: the same counters and stream place, floats close
            sa, sb = a["state"]["arrays"], b["state"]["arrays"]
            floats = ("theta", "D", "S", "Sens", "err_max", "last_max")
            assert {k: v for k, v in sa.items() if k not in floats} == \
                {k: v for k, v in sb.items() if k not in floats}, key
            assert np.allclose(sa["theta"], sb["theta"], atol=1e-6) and b["state"]["engines"] == ["numba"]
        assert a["test_max_error"] == pytest.approx(b["test_max_error"], abs=1e-12) or outcome != "passed"
        if outcome != "diverged":
            assert max(np.abs(a["params"][k] - b["params"][k]).max() for k in a["params"]) < 1e-6   # lr 1000x
    assert runs["numba"]["streams"]["streams"] == 40 and runs["numba"]["steps"]["steps"] == 3000


def test_a_numba_grid_resumes_and_refuses_another_engine(tmp_path, straight_grid):  # noqa: F811
    """An online grid under --engine numba: its journal names the engine; a resume with --engine numpy is one
    line; its runs equal the NumPy grid's in everything but the weights' last digits."""
    grid, straight, _ = straight_grid
    out = str(tmp_path / "nb.jsonl")
    r = cli("--grid", str(grid), "--out", out, "--quiet", "--engine", "numba")
    assert r.returncode == 0, r.stderr
    head = json.loads(open(out).readline())
    assert head["engine"] == "numba"
    runs = journal_runs(out)
    assert runs.keys() == straight.keys()
    for k in runs:
        a, b = runs[k]["online"], straight[k]["online"]
        rounded = ("engines", "test_max_error", "margin", "state")       # the kept state's floats: to rounding
        assert {x: v for x, v in a.items() if x not in rounded} == {x: v for x, v in b.items() if x not in rounded}
        assert ("state" in a) == ("state" in b) == (a["outcome"] == "budget")
        if "state" in a:
            assert a["state"]["arrays"]["streams"] == b["state"]["arrays"]["streams"] == a["streams"]
    r = cli("--grid", str(grid), "--out", out, "--quiet", "--resume", "--engine", "numpy")
    assert r.returncode == 2 and "trained by the numba engine" in r.stderr and r.stderr.count("\n") == 1


def test_the_8_cell_network_too():
    """H > 1 with the tanh cell (the 8-cell network's architecture, H = 3 here): the same streams and counters, the
    weights to rounding, GTS and PFG, every cell."""
    specs = []
    for task in ("gts", "pfg"):
        for cell, (peep, forget) in tcs.CELLS.items():
            cfg = tcs.Config(task=task, learner="rtrl", hidden=3, peep=peep, forget=forget, max_steps=10 ** 6, lr=0.01)
            specs.append(dataclasses.replace(tcs.spec_of(cfg, 1), key=f"{task}{cell}"))
    a, b = tcs.Online(3, specs, engine="numpy"), tcs.Online(3, specs, engine="numba")
    for step in range(600):
        a.run(1)
        b.run(1)
        for e in (a, b):
            e.look() if e.looked else None
    ca, cb = counters(a), counters(b)
    assert all(np.array_equal(ca[k], cb[k]) for k in ca) and a.t == b.t == 600
    assert np.abs(a.a["theta"] - b.a["theta"]).max() < 1e-9
