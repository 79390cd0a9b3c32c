"""The command line: bad input gets one line and exit 2; files are written whole and read back."""
import json
import os

import numpy as np
import pytest

import timing_counting_spikes as tcs
from test_train import SMALL_FLAGS, cli


@pytest.mark.parametrize("args", [
    ["--T", "100"],                                  # T < 2 D_max + 1
    ["--D-min", "0"], ["--D-min", "50", "--D-max", "40"],
    ["--hidden", "0"], ["--batch", "-3"], ["--iters", "0"], ["--n-test", "0"], ["--eval-every", "0"],
    ["--lr", "0"], ["--lr", "-1e-3"], ["--lr", "nan"], ["--clip", "inf"], ["--lr-decay-factor", "nan"],
    ["--hidden", "eight"], ["--seeds", "3-1"], ["--seeds", "1,,2"], ["--seeds", "a-b"], ["--seeds", "1,1"],
    ["--peep", "--no-peep"], ["--seed", "1", "--seeds", "0-2"], ["--dtype", "float16"],
    ["--eval-only"], ["--load-model", "/nonexistent/m.npz", "--eval-only"],
    ["--seeds", "0-1", "--save-model", "m.npz"], ["--bogus-flag"],
    ["--seed", "-1"], ["--test-seed", "-1"], ["--scheduler", ""], ["--scheduler", "  "],
    ["--task", "gts", "--learner", "rtrl", "--max-steps", str(2 ** 63)],
    ["--task", "gts", "--learner", "rtrl", "--max-streams", str(10 ** 16)],
    ["--task", "gts", "--test-units", str(10 ** 20)],
])
def test_bad_input_one_line_exit_2(args, tmp_path):
    r = cli(*args, "--iters", "1") if "--iters" not in args else cli(*args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_bad_model_files(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    model = tmp_path / "m.npz"
    r = cli(*SMALL_FLAGS, "--save-model", str(model), "--quiet")
    assert r.returncode == 0, r.stderr
    with np.load(model) as z:
        arrays = {k: z[k] for k in z.files}
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **{**arrays, "Wh": arrays["Wh"][:, :5]})
    missing = tmp_path / "missing.npz"
    np.savez(missing, **{k: v for k, v in arrays.items() if k != "Wy"})
    for path, fragment in ((junk, "not a saved model"), (wrong, "Wh has shape"), (missing, "missing arrays Wy")):
        r = cli("--load-model", str(path), "--eval-only", "--n-test", "16")
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and fragment in r.stderr, r.stderr


def test_save_load_round_trip_and_out_json(tmp_path):
    model, out = tmp_path / "m.npz", tmp_path / "r.json"
    r = cli(*SMALL_FLAGS, "--no-peep", "--seed", "7", "--save-model", str(model), "--out", str(out))
    assert r.returncode == 0, r.stderr
    final_line = [l for l in r.stdout.splitlines() if l.startswith("final")]
    assert len(final_line) == 1 and "seed 7 vanilla" in final_line[0]
    progress = [l for l in r.stdout.splitlines() if l.startswith("seed 7 it")]
    assert len(progress) == 4 and all("eta" in l and "test mse" in l for l in progress)
    res = json.load(open(out))
    run, = res["runs"]
    assert res["config"]["peep"] is False and res["config"]["iters"] == 60 and res["args"]["seed"] == 7
    assert [h["iter"] for h in run["history"]] == [0, 20, 40, 60]
    assert run["final"] == {k: run["history"][-1][k] for k in ("mse", "solved", "within1")}
    assert "numpy" in res and res["wall_time"] > 0
    params, meta = tcs.load_model(str(model))
    assert set(params) == {"Wx", "Wh", "b", "Wy", "by"} and meta["seed"] == 7
    # re-scoring the saved model on the same held-out set prints the same final line
    r2 = cli("--T", "40", "--D-min", "5", "--D-max", "15", "--n-test", "64", "--load-model", str(model), "--eval-only")
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.strip().splitlines()[-1] == final_line[0]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]   # no temporary files left


def test_gradcheck_cli():
    r = cli("--gradcheck")
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and any(ln.startswith("gradcheck passed") for ln in lines)
    assert lines[-1].startswith("online learner's gradient = truncated BPTT passed")
    assert sum(ln.startswith("online ") for ln in lines) == 8 + 1
    assert "peephole" in r.stdout and "vanilla" in r.stdout and "p_o" in r.stdout


def test_parse_seeds():
    assert tcs.parse_seeds("0-6") == list(range(7))
    assert tcs.parse_seeds("0,3,5") == [0, 3, 5]
    assert tcs.parse_seeds("2-4,9") == [2, 3, 4, 9]
    for bad in ("", "-1", "1-", "2-1", "1,1", "x"):
        with pytest.raises(ValueError):
            tcs.parse_seeds(bad)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "f.json"
    tcs.write_json(str(path), {"a": 1})

    def fails(fh):
        fh.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        tcs.write_atomic(str(path), fails)
    assert json.load(open(path)) == {"a": 1} and os.listdir(tmp_path) == ["f.json"]


def test_the_one_cell_network_defaults_to_the_claims_grids_recipe():
    """--arch paper alone is the recipe the claims grid trained the one-cell network with; the 8-cell network and
    the online learner keep theirs, and a flag given still wins."""
    _, jobs = tcs.load_grid(os.path.join(os.path.dirname(__file__), "..", "results", "claims_one_cell.grid.json"))
    for cfg, _ in jobs:
        bare = tcs.Config(task=cfg.task, F=cfg.F, I=cfg.I, wave=cfg.wave, arch="paper", peep=cfg.peep,
                          forget=cfg.forget)
        assert bare == cfg, (bare, cfg)
    seed_arch = tcs.Config(task="gts")
    assert (seed_arch.init, seed_arch.lr, seed_arch.iters, seed_arch.window) == ("seed", 5e-3, 3000, (10, 200))
    online = tcs.Config(task="gts", arch="paper", learner="rtrl")
    assert (online.init, online.lr, online.iters, online.window) == ("paper", 1e-5, None, None)
    mine = tcs.Config(task="pfg", arch="paper", init="seed", lr=0.03, window=(10, 200))
    assert (mine.init, mine.lr, mine.window, mine.forget_bias) == ("seed", 0.03, (10, 200), 1.0)


def test_multi_seed_summary_labels_best_and_final():
    run = lambda variant, seed, best_units, final_units: {
        "variant": variant, "seed": seed,
        "final": {"run_units": final_units, "run_steps": 10 * final_units, "success": final_units >= 1000,
                  "rmse": 0.2, "period": 10.0},
        "best": {"iter": 250, "run_units": best_units, "run_steps": 10 * best_units, "success": best_units >= 1000,
                 "rmse": 0.1, "period": 10.0}}
    text = tcs.summary_table([run("peephole", 0, 1000, 3), run("peephole", 1, 7, 2)])
    rows = [line.split() for line in text.splitlines()[1:]]
    assert ["peephole", "final", "0", "3", "0"] == rows[0][:5]
    assert ["peephole", "best", "0", "1000", "1"] == [r for r in rows if r[1] == "best"][0][:5]
    assert [r[3] for r in rows if r[1] == "best" and r[2] == "median"] == ["503.5"]
    assert tcs.models_line(run("vanilla", 0, 12, 5)).startswith("final run     5 units")
    assert "| best run    12 units" in tcs.models_line(run("vanilla", 0, 12, 5))
