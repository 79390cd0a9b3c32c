"""The figure scripts on a tiny recipe: real pictures, aligned panels, a GIF that plays at its fps, true facts."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import timing_counting_spikes as tcs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--T", "40", "--D-min", "5", "--D-max", "15", "--iters", "120", "--eval-every", "20", "--n-test", "64"]
FIGURES = ("training_curves", "sample_predictions", "cell_state", "gates", "peephole_weights", "weights")


def run(script, *args):
    r = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                       timeout=240, cwd=ROOT)
    return r


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    paths = {}
    for flag, name in (("--peep", "peephole"), ("--no-peep", "vanilla")):
        paths[name] = str(d / f"{name}.npz")
        r = run("timing_counting_spikes.py", *TINY, flag, "--seed", "3", "--quiet", "--save-model", paths[name])
        assert r.returncode == 0, r.stderr
    return paths


@pytest.fixture(scope="module")
def viz(saved_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("viz")
    r = run("visualize_timing_counting_spikes.py", "--peep-model", saved_models["peephole"],
            "--vanilla-model", saved_models["vanilla"], "--outdir", str(out))
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_a_real_picture(viz, name):
    im = Image.open(viz / f"{name}.png")
    assert im.format == "PNG" and im.size[0] >= 700 and im.size[1] >= 300
    a = np.asarray(im.convert("L"), dtype=float)
    assert a.std() > 10                                   # not blank
    assert (a < 128).mean() > 0.01                        # has ink: axes, lines, text


def test_facts_agree_with_the_saved_model(viz, saved_models):
    facts = json.load(open(viz / "facts.json"))
    params, meta = tcs.load_model(saved_models["peephole"])
    assert facts["cells_by_abs_p_o"] == list(np.argsort(-np.abs(params["p_o"]), kind="stable"))
    assert facts["p_o"] == [round(float(v), 4) for v in params["p_o"]]
    assert facts["final"]["peephole"] == meta["final"]          # re-scored: the same held-out numbers
    assert 0 <= facts["timer_cell"] < params["Wh"].shape[0]
    assert facts["timer_cell"] == int(np.argmax(facts["timer_score_per_cell"]))
    seq = facts["long_sequence"]
    assert seq["D"] == 15 and seq["target"] == seq["t1"] + 2 * seq["D"]
    assert sorted(s["D"] for s in facts["shown_sequences"]) == [5, 5, 15, 15]
    late = [h["solved"] for h in meta["history"] if h["iter"] > 60]
    assert facts["curves"]["peephole"]["solved_max_second_half"] == round(max(late), 4)
    test = tcs.test_set(tcs.Config(**meta["config"]))
    pred = tcs.predict(params, test.x)
    for peak in facts["shown_peaks"]["peephole"]:
        k = peak["index"]
        assert peak["peak_t"] == test.t2[k] + 1 + np.argmax(pred[test.t2[k] + 1:, k])
        assert peak["miss"] == peak["peak_t"] - test.t_target[k]


def test_cell_state_panels_share_one_time_axis(saved_models):
    import matplotlib
    matplotlib.use("Agg")
    import visualize_timing_counting_spikes as viz
    params, meta = tcs.load_model(saved_models["peephole"])
    cfg = tcs.Config(**meta["config"])
    test = tcs.test_set(cfg)
    _, k = viz.pick_sequences(test)
    inner = viz.internals(params, test.x[:, [k]])
    fig = viz.fig_cell_state(test, k, inner, {"timer_cell": 0})
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.get_xlim()[1] > 1]
    assert len(panels) == 3
    extents = [ax.get_window_extent() for ax in panels]
    for e in extents[1:]:
        assert abs(e.x0 - extents[0].x0) < 0.5 and abs(e.x1 - extents[0].x1) < 0.5   # pixels
    assert len({ax.get_xlim() for ax in panels}) == 1
    # every panel marks t1, t2 and the target
    for ax in panels:
        xs = {round(l.get_xdata()[0], 3) for l in ax.lines if len(l.get_xdata()) == 2 and
              l.get_xdata()[0] == l.get_xdata()[1]}
        assert {test.t1[k], test.t2[k], test.t_target[k]} <= xs


def test_gif_plays_at_its_fps(tmp_path):
    out = tmp_path / "t.gif"
    r = run("make_timing_counting_spikes_gif.py", *TINY, "--snapshot-every", "40", "--fps", "4", "--out", str(out),
            "--quiet")
    assert r.returncode == 0, r.stderr
    im = Image.open(out)
    assert im.n_frames == 120 // 40 + 1 and im.info.get("loop") == 0
    durations = []
    for n in range(im.n_frames):
        im.seek(n)
        durations.append(im.info["duration"])
    assert durations == [250] * (im.n_frames - 1) + [2000]
    assert out.stat().st_size < 1_000_000


@pytest.mark.parametrize("args,fragment", [
    (["--snapshot-every", "30"], "multiple of --eval-every"), (["--fps", "0"], "--fps"), (["--T", "10"], "--T")])
def test_gif_bad_input(args, fragment, tmp_path):
    r = run("make_timing_counting_spikes_gif.py", *TINY, *args, "--out", str(tmp_path / "x.gif"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and fragment in r.stderr
    assert not (tmp_path / "x.gif").exists()


def test_visualize_rejects_mismatched_models(saved_models, tmp_path):
    r = run("visualize_timing_counting_spikes.py", "--peep-model", saved_models["vanilla"],
            "--vanilla-model", saved_models["peephole"], "--outdir", str(tmp_path))
    assert r.returncode == 2 and "not peephole" in r.stderr and r.stderr.count("\n") == 1
    r = run("visualize_timing_counting_spikes.py", "--peep-model", saved_models["peephole"], "--outdir", str(tmp_path))
    assert r.returncode == 2 and "go together" in r.stderr
    assert not os.listdir(tmp_path)


def test_figure_scripts_take_the_recipe_defaults_and_only_the_msd_variants_flags(tmp_path):
    r = run("make_timing_counting_spikes_gif.py", "--snapshot-every", "150", "--out", str(tmp_path / "x.gif"))
    assert r.returncode == 2 and "multiple of --eval-every (100)" in r.stderr   # the headline's default, 100
    for script in ("make_timing_counting_spikes_gif.py", "visualize_timing_counting_spikes.py"):
        where = ["--out", str(tmp_path / "x.gif")] if "gif" in script else ["--outdir", str(tmp_path)]
        flags = [["--task", "gts"], ["--window", "3"]] if "gif" in script else [["--learner", "rtrl"], ["--F", "5"]]
        for flag in flags:                                  # (the --help check below covers the rest)
            r = run(script, *flag, *where)
            assert r.returncode == 2 and "unrecognized arguments" in r.stderr and r.stderr.count("\n") == 1, flag
        usage = run(script, "--help").stdout
        assert "--T T" in usage and "--lr LR" in usage
        assert not any(f in usage for f in ("--task", "--window", "--learner", "--momentum", "--test-units", "--wave"))
    assert not os.listdir(tmp_path)


def test_timer_measure_on_hand_made_traces():
    from visualize_timing_counting_spikes import timer_cells
    rng = np.random.default_rng(0)
    T, N = 60, 40
    t2 = rng.integers(5, 20, N)
    tt = t2 + rng.integers(10, 30, N)
    c = np.zeros((T, 3, N))
    t = np.arange(T)
    for n in range(N):
        ramp = np.clip(t - t2[n], 0, None) * 0.05
        c[:, 0, n] = ramp                                    # a clean ramp from t2: a timer
        c[:, 1, n] = rng.standard_normal(T)                  # noise: not a timer
        c[:, 2, n] = -ramp + (rng.random(T) < 0.3) * 0.2     # a ramp broken on ~30% of its steps: not a timer
    timer, share = timer_cells(c, t2, tt)
    assert timer.tolist() == [True, False, False] and share[0] == 1.0 and share[1] < 0.2


@pytest.mark.parametrize("args,msg", [
    (["--failing", "missing.jsonl"], "--failing: no such journal: missing.jsonl"),
    (["--questions", "missing.jsonl"], "--questions: no such journal: missing.jsonl"),
    (["--questions", "results/msd_sweep.jsonl", "--tscale", "missing.jsonl"], "--tscale: no such journal"),
    (["--tscale", "results/tscale.jsonl"], "--tscale goes with --questions"),
    (["--peep-model", "missing.npz", "--vanilla-model", "missing2.npz"], "--peep-model missing.npz: no such file"),
])
def test_visualize_bad_input_is_one_line(tmp_path, args, msg):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "visualize_timing_counting_spikes.py"), *args,
                        "--outdir", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not os.listdir(tmp_path)


def test_the_failing_table_runs_outside_the_repository(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "visualize_timing_counting_spikes.py"), "--failing",
                        os.path.join(ROOT, "results", "msd_failing.jsonl"), "--outdir", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "twice the budget" in r.stdout and json.loads((tmp_path / "facts.json").read_text())["failing_seeds"]


@pytest.mark.parametrize("script,args,msg", [
    ("visualize_timing_counting_spikes.py", ["--seed", "-1"], "--seed: expected a seed"),
    ("make_timing_counting_spikes_gif.py", ["--seed", "-1"], "--seed: expected a seed"),
    ("visualize_timing_counting_spikes.py", ["--sweep", "results/msd_sweep.json"], "--sweep goes with --failing"),
    ("visualize_timing_counting_spikes.py", ["--bench", "x.json"], "--bench goes with --grid-speed"),
    ("visualize_timing_counting_spikes.py", ["--claims-out", "x.json"], "--claims-out goes with --claims"),
    ("visualize_timing_counting_spikes.py", ["--outdir", "README.md"], "README.md is a file"),
    ("visualize_timing_counting_spikes.py", ["--outdir", "README.md/viz"], "README.md is a file"),
    ("visualize_timing_counting_spikes.py", ["--failing", "README.md"], "--failing README.md: not JSON"),
    ("make_timing_counting_spikes_gif.py", ["--out", "README.md"], "the GIF goes to a .gif file"),
])
def test_the_figure_scripts_refuse_bad_input_in_one_line(script, args, msg):
    before = {p: os.path.getmtime(os.path.join(ROOT, p)) for p in ("README.md", "viz")}
    r = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert before == {p: os.path.getmtime(os.path.join(ROOT, p)) for p in before}


def test_the_gif_never_overwrites_a_file_that_is_not_a_gif(tmp_path):
    import make_timing_counting_spikes_gif as gif
    notes = tmp_path / "notes.gif"
    notes.write_text("my notes")
    assert "is not a GIF" in gif.gif_path_problem(str(notes))
    real = tmp_path / "real.gif"
    real.write_bytes(b"GIF89a...")
    assert gif.gif_path_problem(str(real)) is None and gif.gif_path_problem(str(tmp_path)).endswith("a .gif file")
