"""Issue 9's claims table and the GTS mechanism measure, on hand-made traces, a hand-set network and a hand-made
grid journal; the --claims command end to end on a tiny grid."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import timing_counting_spikes as tcs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
viz = pytest.importorskip("visualize_timing_counting_spikes")


def spike_trace(T=41, F=10):
    """Two cells: cell 0 ramps and resets the paper's way (i and f shut on the step after each spike, c back to 0)
    with its output gate open only at the spikes; cell 1 never resets and keeps its output gate half open."""
    spikes = np.arange(F - 1, T - 1, F)
    c = np.zeros((T, 2))
    for t in range(T):
        c[t, 0] = 0.0 if t - 1 in spikes else (c[t - 1, 0] if t else 0.0) + 1.0
    c[:, 1] = np.arange(T)
    i, f, o = np.full((T, 2), 0.9), np.full((T, 2), 0.95), np.full((T, 2), 0.6)
    o[:, 0] = 0.1
    o[spikes, 0] = 0.9
    i[spikes + 1, 0], f[spikes + 1, 0] = 0.1, 0.05
    return c, i, f, o, spikes


def test_gate_mechanism_on_a_hand_made_trace():
    c, i, f, o, spikes = spike_trace()
    m = viz.gate_mechanism(c, i, f, o, spikes)
    assert m["reset"] == [1.0, 0.0]
    assert m["open_at_spike"] == [1.0, 1.0] and m["closed_elsewhere"][0] == 1.0 and m["closed_elsewhere"][1] == 0.0
    assert m["resets"] and m["gates_at_spike"]
    f[spikes[1] + 1, 0] = 0.7                           # one of four spikes without the forget gate shut
    m = viz.gate_mechanism(c, i, f, o, spikes)
    assert m["reset"][0] == 0.75 and not m["resets"]
    assert not viz.gate_mechanism(c, i, None, o, spikes)["resets"]     # no forget gate: never a reset
    o[:, 0] = 0.9                                      # an output gate always open: not "only at the spike"
    assert not viz.gate_mechanism(c, i, f, o, spikes)["gates_at_spike"]


def hand_set_gts():
    """A one-cell peephole network that generates GTS F = 10 by hand: the cell state ramps by 1 a step, the output
    gate's peephole opens it at c >= 9.5, and the spike's h closes the forget gate on the next step."""
    cfg = tcs.Config(task="gts", arch="paper", init="paper")
    p = tcs.init_params(tcs.rng_for(tcs.STREAM_INIT, 0), 1, True, 1, -2.0, "float64", True, "paper")
    p = {k: np.zeros_like(v) for k, v in p.items()}
    p["b"][:] = [6.0, 6.0, 1.0, -95.0]
    p["p_o"][:] = 10.0
    p["Wh"][0, :] = [0.0, -3.0, 0.0, 0.0]
    p["Wy"][:], p["by"][:] = 2.0, -9.0
    return cfg, p


def test_a_one_cell_peephole_gts_solution_exists_and_its_gates_are_measured():
    cfg, p = hand_set_gts()
    s = tcs.stream_test(cfg, 1000)
    m = tcs.stream_score(tcs.free_run(p, tcs.net_of(cfg), s.x), s, 0.49, 1000, True)
    assert m["success"] and m["period"] == 10.0
    s = tcs.stream_test(cfg, 6)
    inner = viz.internals(p, s.x, tcs.net_of(cfg))
    k = slice(cfg.F, None)
    g = viz.gate_mechanism(inner["c"][k, :, 0], inner["i"][k, :, 0], inner["f"][k, :, 0], inner["o"][k, :, 0],
                           np.flatnonzero(s.ends[k, 0]))
    assert g["gates_at_spike"] and g["open_at_spike"] == [1.0]
    assert not g["resets"]          # its input gate stays open at the reset: c restarts at i g = 1, not at 0


def test_free_runs_draw_only_what_a_column_ran(tmp_path):
    """A column that ran GTS F = 10 alone (the hand-set peephole solution, trained online) gets one row of free
    runs, the cells it did not run marked; a column that ran no generation task gets no figure."""
    cfg, p = hand_set_gts()
    cfg = dataclasses.replace(cfg, learner="rtrl", lr=1e-5, momentum=0.999)
    run = {"best": {"success": True, "run_units": 1000, "rmse": 0.01}, "final": {"success": True}}
    rec = tcs.journal_record(cfg, 0, ("done", run, p, p, "hand-made"))
    runs = {("one-cell online", "gts F=10", "peephole"): [rec]}
    shown = viz.fig_free_runs(runs, "one-cell online", str(tmp_path / "one.png"))
    assert shown == {"gts F=10 | peephole": {"seed": 0, "run_units_best": 1000, "success": True}}
    one = np.asarray(Image.open(tmp_path / "one.png").convert("L"))
    four = viz.fig_free_runs({("x", s, "peephole"): [rec] for s in viz.FREE_RUN_SETTINGS}, "x",
                             str(tmp_path / "four.png"))
    assert len(four) == 4 and one.shape[0] < np.asarray(Image.open(tmp_path / "four.png")).shape[0] / 2
    assert one.std() > 10
    msd = {("one-cell online", "delays F=10 I=0,1", "peephole"): [rec]}
    assert viz.fig_free_runs(msd, "one-cell online", str(tmp_path / "none.png")) == {}
    assert not (tmp_path / "none.png").exists()
    assert viz.title_of("one-cell online") == "one-cell network, online learner (the paper's recipe; the paper's rule)"
    assert viz.title_of("one-cell online lr=0.0001 momentum=0.99 every-stream") == \
        "one-cell network, online learner (learning rate 0.0001, momentum 0.99; a test after every stream)"
    assert viz.title_of("one-cell online lr=0.0003 momentum=0.99", short=True) == "online lr 0.0003 m 0.99"
    assert viz.title_of("8-cell") == "8-cell network, BPTT + Adam"


def test_a_one_cell_msd_solution_without_peepholes_exists():
    """The MSD stream F = 10, I in {0,1} by hand, one cell, no peepholes: the cell counts the steps since the last
    spike, the input spike opens the output gate to read the count (11 -> 1, 10 -> 0), and the count's h shuts the
    forget gate on the next step."""
    cfg = tcs.Config(task="delays", arch="paper", init="paper", peep=False)
    p = tcs.init_params(tcs.rng_for(tcs.STREAM_INIT, 0), 1, False, 1, -2.0, "float64", True, "paper")
    p = {k: np.zeros_like(v) for k, v in p.items()}
    p["b"][:] = [10.0, 10.0, 1.0, -20.0]
    p["Wx"][0, 3] = 40.0
    p["Wh"][0, 1] = -5.0
    p["Wy"][:], p["by"][:] = 4.0, -42.0
    s = tcs.stream_test(cfg, 1000)
    m = tcs.stream_score(tcs.free_run(p, tcs.net_of(cfg), s.x), s, 0.49, 1000, False)
    assert m["success"] and m["run_units"] == 1000
    rec = {"kind": "run", "config": dataclasses.asdict(cfg), "run": {"best": {"success": True}},
           "best_params": {k: v.tolist() for k, v in p.items()}}
    assert viz.ramping_models([rec]) == [True]          # its counting cell ramps through every interval
    p["by"][:] = -38.0                                  # the threshold between 9 and 10: wrong at the first interval
    assert tcs.stream_score(tcs.free_run(p, tcs.net_of(cfg), s.x), s, 0.49, 1000, False)["run_units"] < 5
    p["b"][2] = 0.0                                     # g = 0: the cell state stays at 0, nothing ramps
    rec["best_params"] = {k: v.tolist() for k, v in p.items()}
    assert viz.ramping_models([rec]) == [False]


def record(net, task, cell, seed, success, steps=1000, first=None, run_units=None, max_error=0.1, **cfg):
    """A hand-made finished run as a grid journals it; a success's largest |error| over its test is max_error (as
    success_max_error() keeps it: hand-made runs have no weights to run)."""
    config = {"arch": "paper" if net == "one-cell" else "seed", "hidden": 1 if net == "one-cell" else 8,
              "task": task, "test_units": 1000, "wave": None, "I": None, **cfg}
    units = run_units if run_units is not None else (1000 if success else 3)
    hist = [{"steps": 0, "run_units": 0}, {"steps": steps, "run_units": 1000 if success else units}]
    if first is not None and success:
        hist.insert(1, {"steps": first, "run_units": 1000})
    run = {"best": {"success": success, "run_units": units, "rmse": 0.1}, "final": {"success": success},
           "steps": steps, "history": hist}
    key = json.dumps([config, cell, seed], sort_keys=True)
    return {"kind": "run", "key": key, "config": config, "cell": cell, "seed": seed, "run": run, "code": "hand-made",
            "params": {}, "best_params": {}, **({"max_error": max_error} if success else {})}


def test_claims_on_a_hand_made_grid_journal(tmp_path):
    recs = []
    for seed in range(4):
        for cell in tcs.CELLS:                          # GTS F=10: one-cell only peephole, 8-cell peephole and vanilla
            recs.append(record("one-cell", "gts", cell, seed, cell == "peephole" and seed < 2, F=10, first=500))
            recs.append(record("8-cell", "gts", cell, seed, cell in ("peephole", "vanilla"), F=10))
            recs.append(record("one-cell", "pfg", cell, seed, cell == "peephole", F=10, wave="cos",
                               run_units=None if cell == "peephole" else (2 if cell == "lstm1997" else 5)))
        for cell in ("peephole", "vanilla"):            # the MSD streams: F=10 learned, F=49 on 4x the steps not
            recs.append(record("8-cell", "delays", cell, seed, True, steps=100, F=10, I=[0, 1]))
            recs.append(record("8-cell", "delays", cell, seed, False, steps=400, F=49, I=[0, 1]))
    recs.append({"kind": "diverged", "key": "diverged", "config": recs[0]["config"], "cell": "vanilla", "seed": 9,
                 "message": "x", "code": "hand-made"})
    path = tmp_path / "g.jsonl"
    header = {"kind": "header", "grid_hash": "hand-made", "code": "hand-made", "n_jobs": len(recs)}
    path.write_text("\n".join(json.dumps(r) for r in [header, *recs]) + "\n")
    runs = viz.claims_runs([str(path)])
    stats = {k: viz.group_stats(v) for k, v in runs.items()}
    st = stats["one-cell", "gts F=10", "vanilla"]
    assert (st["n"], st["success_best"], st["diverged"]) == (5, 0, 1)        # a diverged run counts as a failure
    assert stats["one-cell", "gts F=10", "peephole"]["median_steps_to_first_success"] == 500
    table = {c["id"]: c for c in viz.claim_verdicts(stats, {})}
    gts = table["gts_no_peep"]["networks"]
    assert gts["one-cell"]["verdict"] == "yes" and gts["8-cell"]["verdict"] == "no"
    assert table["gts_no_peep"]["verdict"] == "partly"
    assert table["gts"]["networks"]["one-cell"]["measured"] == "F=10: 2/4 [0.15, 0.85] (2 below 0.15)"
    assert table["pfg_1997"]["networks"]["one-cell"]["verdict"] == "yes"     # the 1997 cell: 2 periods at most
    assert table["pfg_vanilla"]["networks"]["one-cell"]["verdict"] == "partly"  # vanilla learns nothing at all
    assert table["49v50"]["networks"]["8-cell"]["verdict"] == "not reproduced"     # no cell learned F=49 at all
    assert table["49v50"]["networks"]["one-cell"]["verdict"] == "not run"
    assert table["49v50"]["verdict"] == "not reproduced"
    assert table["gts_mechanism"]["verdict"] == "not run"
    assert table["gts_no_forget"]["networks"]["8-cell"]["verdict"] == "yes"
    longer = table["msd_longer"]["networks"]["8-cell"]
    assert longer["verdict"] == "yes" and "F=10 8/8, F=49 0/8" in longer["measured"]
    assert "4.0 times" in longer["measured"]
    assert table["msd_both"]["networks"]["8-cell"]["verdict"] == "yes"   # on the sets that ran: I=0,1,2 did not
    assert table["msd_longer"]["networks"]["one-cell"]["verdict"] == "not run"
    md = viz.claims_markdown(viz.claim_verdicts(stats, {}))
    assert md.count("\n") == 1 + len(table) and "**partly**" in md


def online_record(task, cell, seed, passed, lr=1e-5, first_steps=None, max_error=0.1, **cfg):
    """A finished online run as the grid journals it: the final model is the best, no history, the first pass."""
    cfg = {"max_steps": 10 ** 8, "max_streams": 10 ** 7, "protocol": "paper", **cfg}
    steps = cfg["max_steps"] if not passed else first_steps
    rec = record("one-cell", task, cell, seed, passed, steps=steps, learner="rtrl", lr=lr, max_error=max_error, **cfg)
    rec["run"]["history"] = []
    rec["run"]["online"] = {"outcome": "passed" if passed else "budget", "steps": steps, "streams": steps // 10,
                            "first_pass": {"streams": first_steps // 10, "steps": first_steps} if passed else None,
                            "test_max_error": rec.pop("max_error", None)}
    return rec


def test_one_column_per_learner_and_not_reproduced(tmp_path):
    """The one-cell network trained by BPTT, by the online learner at the paper's recipe and at another learning
    rate: three columns, never pooled; a learner that taught no cell a claim's settings says 'not reproduced'
    (no evidence), and the steps to the first pass are the online learner's."""
    recs = []
    for seed in range(4):
        for cell in ("peephole", "vanilla", "lstm1997", "peephole-nf"):
            recs.append(record("one-cell", "gts", cell, seed, False, F=10))              # BPTT: nothing
            recs.append(online_record("gts", cell, seed, cell == "peephole" and seed < 3, F=10,
                                      first_steps=(seed + 1) * 10 ** 6))
            recs.append(online_record("gts", cell, seed, cell == "vanilla", lr=1e-4, F=10, first_steps=5 * 10 ** 5))
    path = tmp_path / "g.jsonl"
    header = {"kind": "header", "grid_hash": "hand-made", "code": "hand-made", "n_jobs": len(recs)}
    path.write_text("\n".join(json.dumps(r) for r in [header, *recs]) + "\n")
    runs = viz.claims_runs([str(path)])
    stats = {k: viz.group_stats(v) for k, v in runs.items()}
    assert viz.networks_in(stats) == ["one-cell", "one-cell online", "one-cell online lr=0.0001"]
    assert stats["one-cell online", "gts F=10", "peephole"]["success_best"] == 3
    assert stats["one-cell online", "gts F=10", "peephole"]["median_steps_to_first_success"] == 2 * 10 ** 6
    table = {c["id"]: c for c in viz.claim_verdicts(stats, {})}
    gts = table["gts"]["networks"]
    assert gts["one-cell"]["verdict"] == "not reproduced" and "not reproduced by this training" in \
        gts["one-cell"]["measured"]
    assert gts["one-cell online"]["verdict"] == "yes" and gts["one-cell online lr=0.0001"]["verdict"] == "no"
    assert table["gts"]["verdict"] == "partly"         # yes at the paper's recipe, no at 10x: not "not reproduced"
    no_peep = table["gts_no_peep"]["networks"]
    assert no_peep["one-cell online"]["verdict"] == "yes" and no_peep["one-cell online lr=0.0001"]["verdict"] == "no"
    assert no_peep["one-cell"] == {"verdict": "not reproduced",                # 0 of both cells: no contrast
                                   "measured": "vanilla 0/4, peephole 0/4 over F = 10: neither cell learns it"}
    assert no_peep["one-cell online lr=0.0001"]["measured"].endswith("over F = 10 (peephole 0/4)")
    md = viz.claims_markdown(list(table.values()))
    assert "one-cell online lr=0.0001: measured" in md.splitlines()[0]
    short = viz.verdict_markdown(viz.robust_verdicts(stats, {})).splitlines()
    assert short[0] == "| claim [source] | one-cell, BPTT | online | online lr 0.0001 | reproduces | at 0.15 |"
    assert len(short) == 2 + len(table) and max(map(len, short)) <= 120          # the README's lines
    assert short[2 + list(table).index("gts")] == "| generates precisely timed spikes (GTS) [Q] | n.r. | yes | no | " \
                                                  "**partly** | partly |"
    st = stats["one-cell online", "gts F=10", "peephole"]
    assert st["steps_to_first_success_range"] == [10 ** 6, 3 * 10 ** 6] and st["median_streams_to_first_pass"] == 2e5
    first = viz.first_success_markdown(stats).splitlines()
    assert first[0] == "| setting | cell | one-cell | one-cell online | one-cell online lr=0.0001 |"
    assert first[2] == ("| gts F=10 | peephole | 0/4 | 3/4: steps 2.00 M [1.00 M–3.00 M], streams 200,000 "
                        "[100,000–300,000] | 0/4 |") and len(first) == 4       # peephole and vanilla rows
    only_bptt = {k: v for k, v in stats.items() if k[0] == "one-cell"}
    assert {c["id"]: c for c in viz.claim_verdicts(only_bptt, {})}["gts"]["verdict"] == "not reproduced"


def test_how_the_online_models_stopped():
    """Passed, at the step cap, at the stream budget, diverged: counted per group from the records and the recipe's
    budgets, summed over cells per setting, with the streams the step cap let a model see; BPTT groups have none."""
    recs = [online_record("gts", "peephole", 0, True, F=10, first_steps=10 ** 6)]
    for seed, (streams, steps) in enumerate(((10 ** 7, 5 * 10 ** 7), (3 * 10 ** 6, 10 ** 8)), 1):
        r = online_record("gts", "vanilla", seed, False, F=10)
        r["run"]["online"].update(streams=streams, steps=steps)
        recs.append(r)
    recs.append({"kind": "diverged", "key": "d", "config": recs[1]["config"], "cell": "vanilla", "seed": 9,
                 "message": "non-finite"})
    recs.append({"kind": "running", "key": "r", "config": recs[1]["config"], "cell": "vanilla", "seed": 8,
                 "streams": 5, "steps": 50})                  # still training (a checkpoint's model)
    runs = {}
    for r in recs:
        runs.setdefault(("one-cell online", "gts F=10", r["cell"]), []).append(r)
    stats = {k: viz.group_stats(v) for k, v in runs.items()}
    assert stats["one-cell online", "gts F=10", "vanilla"]["online_stops"] == {
        "passed": 0, "step_cap": 1, "stream_budget": 1, "diverged": 1, "running": 1, "step_cap_streams": [3 * 10 ** 6]}
    assert stats["one-cell online", "gts F=10", "vanilla"]["running"] == 1
    assert viz.stops_markdown(stats).splitlines()[2] == ("| one-cell online | gts F=10 | 5 | 1 | 1 | 1 | 1 | 1 | "
                                                         "3.00 M [3.00 M–3.00 M] |")
    bptt = {("one-cell", "gts F=10", "peephole"): viz.group_stats([record("one-cell", "gts", "peephole", 0, True)])}
    assert bptt["one-cell", "gts F=10", "peephole"]["online_stops"] is None and viz.stops_markdown(bptt) == ""


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=240, cwd=ROOT)


def test_claims_command_end_to_end(tmp_path):
    grid = tmp_path / "g.grid.json"
    grid.write_text(json.dumps({"base": {"arch": "paper", "init": "paper", "iters": 6, "eval_every": 3,
                                         "test_units": 20, "window": "2"},
                                "settings": [{"task": "gts", "F": 10}, {"task": "pfg", "wave": "cos", "F": 10}],
                                "cells": ["peephole", "vanilla"], "seeds": "0-1"}))
    journal = tmp_path / "g.jsonl"
    r = run("timing_counting_spikes.py", "--grid", str(grid), "--out", str(journal), "--quiet")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "viz"
    r = run("visualize_timing_counting_spikes.py", "--claims", str(journal), "--outdir", str(out),
            "--claims-out", str(tmp_path / "claims.json"))
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "claims.json").read_text())
    assert len(doc["claims"]) == 17
    assert {c["verdict"] for c in doc["claims"]} <= {"yes", "partly", "no", "not run", "not reproduced"}
    assert doc["stats"]["one-cell | gts F=10 | peephole"]["n"] == 2 and doc["cpu"]
    facts = json.loads((out / "facts.json").read_text())["claims"]
    assert set(facts["success"]) == {f"one-cell | {x} | {c}" for x in ("gts F=10", "pfg cos F=10")
                                     for c in ("peephole", "vanilla")}
    for name in ("claims_success", "free_runs_one_cell"):
        im = np.asarray(Image.open(out / f"{name}.png").convert("L"))
        assert im.shape[0] > 200 and im.std() > 10
    assert r.stdout.count("| ") > 15
    doc["cpu"], doc["numpy"] = "another CPU", "0.0"                  # another machine, the same table and numbers
    (tmp_path / "claims.json").write_text(json.dumps(doc))
    before = (tmp_path / "claims.json").read_text()
    r = run("visualize_timing_counting_spikes.py", "--claims", str(journal), "--outdir", str(out),
            "--claims-out", str(tmp_path / "claims.json"))
    assert r.returncode == 0 and "left as it is" in r.stdout and (tmp_path / "claims.json").read_text() == before
    assert viz.same_numbers({"a": [1.0, float("nan")]}, {"a": [1.0 + 1e-12, float("nan")]})
    assert not viz.same_numbers({"a": [1.0]}, {"a": [1.001]}) and not viz.same_numbers({"a": 1}, {"b": 1})
    bad = run("visualize_timing_counting_spikes.py", "--claims", str(tmp_path / "none.jsonl"))
    assert bad.returncode == 2 and "no such journal" in bad.stderr and "Traceback" not in bad.stderr
    other = json.loads(grid.read_text())
    other["base"]["iters"] = 9                          # the same settings, another budget: not to be pooled
    grid.write_text(json.dumps(other))
    r = run("timing_counting_spikes.py", "--grid", str(grid), "--out", str(tmp_path / "h.jsonl"), "--quiet")
    assert r.returncode == 0, r.stderr
    bad = run("visualize_timing_counting_spikes.py", "--claims", str(journal), str(tmp_path / "h.jsonl"),
              "--outdir", str(tmp_path / "viz2"), "--claims-out", str(tmp_path / "c2.json"))
    assert bad.returncode == 2 and "another recipe (iters)" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "c2.json").exists()


def test_grid_speed_from_journals(tmp_path):
    """Each online loop (the runs sharing one wall time share) is one row: its models, wall time, model-steps and
    their rate; the command draws the figure, and a journal without online runs is one line, exit 2."""
    recs = []
    for M, share, steps in ((3, 100.0, 10 ** 6), (2, 40.0, 5 * 10 ** 5)):
        for seed in range(M):
            r = online_record("gts", "peephole", seed + 10 * M, False, F=10, first_steps=None)
            r["run"]["models_per_process"], r["run"]["wall_time"] = M, share
            r["run"]["online"].update(steps=steps, test_steps=steps // 2)
            r["key"] = f"{M}-{seed}"
            recs.append(r)
    path = tmp_path / "g.jsonl"
    header = {"kind": "header", "grid_hash": "hand-made", "code": "hand-made", "n_jobs": len(recs)}
    path.write_text("\n".join(json.dumps(r) for r in [header, *recs]) + "\n")
    loops = viz.grid_loops([str(path)])
    assert [(r["models"], r["wall_s"], r["model_steps"]) for r in loops] == [(3, 300.0, 4_500_000),
                                                                              (2, 80.0, 1_500_000)]
    assert loops[0]["us_per_model_step"] == round(300 / 4.5e6 * 1e6, 3) and loops[1]["model_steps_per_s"] == 18750
    out = tmp_path / "viz"
    r = run("visualize_timing_counting_spikes.py", "--grid-speed", str(path), "--outdir", str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "facts.json").read_text())["grid_speed"]["loops"] == loops
    im = np.asarray(Image.open(out / "grid_speed.png").convert("L"))
    assert im.shape[0] > 200 and im.std() > 10
    bptt = tmp_path / "b.jsonl"
    bptt.write_text("\n".join(json.dumps(x) for x in [header, record("one-cell", "gts", "peephole", 0, True, F=10)])
                    + "\n")
    bad = run("visualize_timing_counting_spikes.py", "--grid-speed", str(bptt), "--outdir", str(tmp_path / "v2"))
    assert bad.returncode == 2 and "no finished online runs" in bad.stderr and bad.stderr.count("\n") == 1
    assert not (tmp_path / "v2").exists()


def test_the_recipe_search_table_picks_the_most_passes_then_the_recipe_nearest_the_papers(tmp_path):
    """Two recipes with two passes each: the one nearer the paper's (lr 1e-5, GTS momentum 0.999) is the searched
    recipe; margins count at 0.15 and within 0.01 of the tolerance; the figures are written."""
    recs = []
    for lr, mom, passing in ((1e-3, 0.9, 2), (1e-4, 0.99, 2), (1e-5, 0.999, 0)):
        for seed in range(4):
            for cell in ("peephole", "vanilla"):
                passed = cell == "vanilla" and seed < passing
                r = online_record("gts", cell, seed, passed, lr=lr, first_steps=(seed + 1) * 10 ** 6, F=10,
                                  momentum=mom, protocol="paper")
                r["run"]["online"].update(first_train_success=None, test_max_error=0.1 if seed == 0 else 0.485)
                recs.append(r)
    path = tmp_path / "s.jsonl"
    header = {"kind": "header", "grid_hash": "hand-made", "code": "hand-made", "n_jobs": len(recs)}
    path.write_text("\n".join(json.dumps(r) for r in [header, *recs]) + "\n")
    md = viz.recipe_search([str(path)], str(tmp_path), str(tmp_path / "rs.json"))
    res = json.loads((tmp_path / "rs.json").read_text())["families"]["gts F=10"]
    assert res["searched"] == {"lr": 1e-4, "momentum": 0.99, "passed": 2}
    row = next(r for r in res["rows"] if r["lr"] == 1e-4)
    assert row["vanilla"]["at_0.15"] == 1 and row["vanilla"]["within_0.01"] == 1 and row["peephole"]["passed"] == 0
    assert "Searched recipe: lr 0.0001, momentum 0.99 (2 passes)" in md and "| 0.0001 | 0.99 | vanilla | 2/4 |" in md
    for name in ("recipe_search", "pass_margins"):
        im = np.asarray(Image.open(tmp_path / f"{name}.png").convert("L"))
        assert im.shape[0] > 200 and im.std() > 10
    facts = json.loads((tmp_path / "facts.json").read_text())
    assert len(facts["pass_margins"]) == 4 and facts["recipe_search"]["searched"]["gts F=10"]["lr"] == 1e-4


def test_a_grid_in_flight_counts_its_stopped_models_and_its_running_ones(tmp_path):
    """A journal whose online job is still checkpointed: the model that stopped (the hand-set GTS solution passed)
    is a finished record scored as its job will score it, the one still training a "running" record; once the
    journal holds both, the checkpoint is stale and adds nothing."""
    cfg, p = hand_set_gts()
    cfg = dataclasses.replace(cfg, learner="rtrl", lr=1e-5, momentum=0.999, protocol="paper")
    ran = dataclasses.replace(cfg, peep=False)
    specs = [dataclasses.replace(tcs.spec_of(cfg, 0), params=p), tcs.spec_of(ran, 1)]
    eng = tcs.Online(1, specs)
    while len(eng.done) < 1:
        eng.run(2000)
        eng.look() if eng.looked else None
    journal = tmp_path / "g.jsonl"
    journal.write_text(json.dumps({"kind": "header", "grid_hash": "x", "code": "x", "n_jobs": 2}) + "\n")
    os.mkdir(str(journal) + ".ckpt")
    eng.save(str(journal) + ".ckpt/job.npz")
    recs = viz.checkpoint_records(str(journal))
    done, running = (next(r for r in recs if r["kind"] == k) for k in ("run", "running"))
    assert done["run"]["online"]["outcome"] == "passed" and done["run"]["best"]["success"] and viz.passed(done)
    assert done["run"]["online"]["test_max_error"] < 0.49 and done["config"] == json.loads(specs[0].key)[0]
    assert running["cell"] == "vanilla" and running["seed"] == 1 and running["steps"] == eng.a["steps"][0] > 0
    runs = viz.claims_runs([str(journal)])
    st = viz.group_stats(runs["one-cell online", "gts F=10", "vanilla"])
    assert (st["n"], st["success_best"], st["running"], st["diverged"]) == (1, 0, 1, 0)
    assert viz.group_stats(runs["one-cell online", "gts F=10", "peephole"])["success_best"] == 1
    with open(journal, "a") as fh:                      # both models journaled: the checkpoint is stale
        for r in (done, {**done, "key": running["key"], "seed": 1, "cell": "vanilla", "config": running["config"]}):
            fh.write(json.dumps({k: v for k, v in r.items() if k != "in_flight"}) + "\n")
    assert viz.checkpoint_records(str(journal)) == []


def test_the_papers_rule_column_and_verdicts_that_hold_whatever_the_running_models_do():
    """An every-stream group without a pass stands for the paper's rule where the paper's rule did not run it (a
    model that passed no test under every-stream passes none under the paper's rule); one with a pass does not. A
    verdict that the models still training could flip is "running"; "at 0.15" counts only the passes below it."""
    recs = [online_record("gts", "peephole", 0, True, F=10, first_steps=10 ** 6, max_error=0.3),
            online_record("gts", "peephole", 1, False, F=10), online_record("gts", "peephole", 2, False, F=10),
            {"kind": "running", "key": "r", "config": online_record("gts", "peephole", 3, False, F=10)["config"],
             "cell": "peephole", "seed": 3, "streams": 10, "steps": 100}]
    every = dict(protocol="every-stream", F=10)
    recs += [online_record("gts", c, s, False, **every) for c in ("vanilla", "lstm1997") for s in range(3)]
    recs += [online_record("gts", "peephole", s, s == 0, first_steps=10 ** 6, **every) for s in range(3)]
    recs += [online_record("pfg", "peephole", s, s == 0, first_steps=10 ** 6, wave="cos", **every)
             for s in range(3)]
    runs = {}
    for r in recs:
        runs.setdefault((viz.network_of(r["config"]), viz.setting_name(r["config"]), r["cell"]), []).append(r)
    assert ("one-cell online every-stream", "gts F=10", "vanilla") in runs
    filled_runs, filled = viz.fill_from_every_stream(runs)
    assert filled == {("one-cell online", "gts F=10", "vanilla"), ("one-cell online", "gts F=10", "lstm1997")}
    assert ("one-cell online", "pfg cos F=10", "peephole") not in filled_runs      # it passed under every-stream
    stats = {k: viz.group_stats(v) for k, v in filled_runs.items() if k[0] == "one-cell online"}
    st = stats["one-cell online", "gts F=10", "peephole"]
    assert (st["success_best"], st["success_strict"], st["running"], st["n"]) == (1, 0, 1, 4)
    assert st["within_001"] == 0 and st["success_max_errors"] == [0.3]
    table = {c["id"]: c for c in viz.robust_verdicts(stats, {})}
    gts = table["gts"]["networks"]["one-cell online"]
    assert gts["verdict"] == "yes"                       # one pass: learned, whatever the running model does
    assert gts["at_0.15"] == "running"                   # no pass below 0.15 yet: the running model decides
    assert "1/4 [0.05, 0.70] (0 below 0.15), 1 still training" in gts["measured"]
    no_peep = table["gts_no_peep"]["networks"]["one-cell online"]
    assert no_peep["verdict"] == "yes" and no_peep["measured"].startswith("vanilla 0/3")
    longer = table["gts_longer"]["networks"]["one-cell online"]["verdict"]
    assert longer == "not run"                           # one period ran: nothing to compare, running or not
    assert table["gts"]["verdict"] == "yes" and table["gts"]["verdict_at_0.15"] == "running"


def test_a_group_run_at_two_budgets_is_shown_at_the_larger(tmp_path):
    """The same online models at the 10^8-step cap and at the full budget: the group is the larger budget's, the
    smaller journal is named as giving way; any other difference of recipe is still refused."""
    paths = []
    for name, steps, passes in (("cap", 10 ** 8, 0), ("full", 10 ** 10, 2)):
        recs = [online_record("gts", "vanilla", s, s < passes, F=10, max_steps=steps, first_steps=10 ** 6)
                for s in range(3)]
        p = tmp_path / f"{name}.jsonl"
        p.write_text("\n".join(json.dumps(r) for r in [{"kind": "header", "grid_hash": name, "code": "x",
                                                          "n_jobs": 3}, *recs]) + "\n")
        paths.append(str(p))
    for order in (paths, paths[::-1]):
        runs = viz.claims_runs(order)
        (recs,) = runs.values()
        assert {r["journal"] for r in recs} == {"full.jsonl"} and sum(map(viz.passed, recs)) == 2
        assert list(viz.SUPERSEDED.values()) == ["one-cell online | gts F=10 | vanilla: cap.jsonl (its max_steps "
                                                 "10^8) gives way to full.jsonl"]
        assert viz.GAVE_WAY == {("cap.jsonl", ("one-cell online", "gts F=10", "vanilla"))}
    other = tmp_path / "lr.jsonl"
    other.write_text(open(paths[0]).read().replace('"task": "gts"', '"task": "gts", "test_seed": 7'))
    with pytest.raises(tcs.BadGrid, match="another recipe"):
        viz.claims_runs([paths[1], str(other)])
