"""Animated training of the peephole LSTM on the MSD variant: timing_counting_spikes.gif.

    python3 make_timing_counting_spikes_gif.py               # headline recipe, seed 4, a frame every 200 iterations

Trains once, taking a snapshot at every --snapshot-every iterations through the core's evaluation callback, and draws
one frame per snapshot: a fixed held-out sequence (input, target, prediction) above the held-out MSE and solve rate
so far. Axes stay fixed across frames.
"""
import io
import os
import sys

import matplotlib

matplotlib.use("Agg")
import imageio.v3 as iio  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import timing_counting_spikes as tcs  # noqa: E402
from visualize_timing_counting_spikes import COLORS, pick_sequences  # noqa: E402

HOLD_LAST_MS = 2000


def train_with_snapshots(cfg, seed, every, x_seq, log=None):
    """Train; at iteration 0, every `every` iterations and the last, keep (iteration, prediction on x_seq)."""
    snaps = []

    def on_eval(record, params):
        if record["iter"] % every == 0 or record["iter"] == cfg.iters:
            snaps.append((record["iter"], tcs.predict(params, x_seq)[:, 0]))

    tr = tcs.train(cfg, seed, on_eval=on_eval, log=log)
    history, final = tr.history, tr.final
    return snaps, history, final


def render(snaps, history, test, k, cfg):
    """One RGB frame per snapshot; the figure is drawn once and only its data change between frames."""
    T = cfg.T
    t = np.arange(T)
    fig, (a_seq, a_mse) = plt.subplots(2, 1, figsize=(6.4, 4.8), dpi=100,
                                       gridspec_kw={"height_ratios": [1.1, 1], "hspace": 0.45})
    a_seq.vlines(t[test.x[:, k, 0] > 0], 0, 1, color="0.5", lw=2, label="input spikes")
    a_seq.plot([test.t_target[k]], [1.0], "v", color="tab:red", ms=7, label="target step", zorder=5)
    pred_line, = a_seq.plot([], [], color=COLORS["peephole"], lw=1.4, label="prediction")
    a_seq.set_xlim(-1, T)
    a_seq.set_ylim(-0.35, 1.6)  # headroom: the legend sits above every spike
    a_seq.set_xlabel("time step t", fontsize=9)
    a_seq.set_ylabel("output", fontsize=9)
    a_seq.legend(loc="upper left", fontsize=7.5, ncol=3, frameon=False)
    a_seq.set_title(f"held-out sequence {k}: D = {test.t2[k] - test.t1[k]}", fontsize=9, loc="left")
    title = a_seq.set_title("", fontsize=9, loc="right")

    it = np.array([h["iter"] for h in history])
    mse = np.array([h["mse"] for h in history])
    solved = np.array([h["solved"] for h in history])
    mse_line, = a_mse.semilogy([], [], color="k", lw=1.3, label="held-out MSE (left)")
    a_mse.set_xlim(0, cfg.iters)
    lo, hi = mse.min(), mse.max()
    a_mse.set_ylim(10 ** np.floor(np.log10(lo)), 10 ** np.ceil(np.log10(hi)))
    a_mse.set_xlabel("training iteration", fontsize=9)
    a_mse.set_ylabel("held-out MSE", fontsize=9)
    a_sol = a_mse.twinx()
    sol_line, = a_sol.plot([], [], color="tab:green", lw=1.3, label="exact solve rate (right)")
    a_sol.set_ylim(-0.02, 1.02)
    a_sol.set_ylabel("solve rate", fontsize=9)
    a_mse.legend(handles=[mse_line, sol_line], loc="upper center", bbox_to_anchor=(0.5, 1.22), ncol=2,
                 fontsize=7.5, frameon=False)
    for ax in (a_seq, a_mse, a_sol):
        ax.tick_params(labelsize=8)
    fig.subplots_adjust(left=0.12, right=0.88, top=0.92, bottom=0.1)

    frames = []
    for n, pred in snaps:
        pred_line.set_data(t, pred)
        upto = it <= n
        mse_line.set_data(it[upto], mse[upto])
        sol_line.set_data(it[upto], solved[upto])
        title.set_text(f"iteration {n}: solved {solved[upto][-1]:.2f}")
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return frames


def write_gif(path, frames, fps):
    """Every frame shown 1000/fps ms, the last held HOLD_LAST_MS; loops forever. Atomic."""
    durations = [1000 / fps] * (len(frames) - 1) + [HOLD_LAST_MS]
    buf = io.BytesIO()
    iio.imwrite(buf, np.stack(frames), extension=".gif", duration=durations, loop=0)
    tcs.write_atomic(path, lambda fh: fh.write(buf.getvalue()))


def gif_path_problem(path):
    """Why --out cannot take the GIF (one line), or None: it must be a .gif, and a file already there a GIF."""
    if not path.lower().endswith(".gif"):
        return f"--out {path}: the GIF goes to a .gif file"
    if os.path.isdir(path):
        return f"--out {path} is a folder: name a .gif file"
    if os.path.exists(path):
        with open(path, "rb") as fh:
            if fh.read(4) != b"GIF8":
                return f"--out {path} exists and is not a GIF: it is left alone"
    return None


def main(argv=None):
    ap = tcs.recipe_parser(__doc__, msd_only=True)
    ap.add_argument("--seed", type=tcs.seed_int, default=4, help="the model's seed (default 4)")
    ap.add_argument("--snapshot-every", type=tcs.positive_int, default=200, help="iterations between frames")
    ap.add_argument("--fps", type=tcs.finite_float, default=5.0, help="frames per second")
    ap.add_argument("--out", default="timing_counting_spikes.gif", help="(default timing_counting_spikes.gif)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    a = ap.parse_args(argv)
    problem = tcs.check_recipe(a) or gif_path_problem(a.out)
    cfg = None if problem else tcs.config_from_args(a, True)
    if not problem and a.snapshot_every % cfg.eval_every:
        problem = f"--snapshot-every ({a.snapshot_every}) must be a multiple of --eval-every ({cfg.eval_every})"
    if not problem and not 0.5 <= a.fps <= 50:
        problem = f"--fps must be in [0.5, 50] (got {a.fps})"
    if problem:
        ap.error(problem)
    test = tcs.test_set(cfg)
    _, k = pick_sequences(test)
    try:
        snaps, history, final = train_with_snapshots(cfg, a.seed, a.snapshot_every, test.x[:, [k]],
                                                     log=None if a.quiet else print)
    except tcs.Diverged as e:
        print(f"error: {e}; no GIF written", file=sys.stderr)
        return 1
    frames = render(snaps, history, test, k, cfg)
    write_gif(a.out, frames, a.fps)
    print(f"wrote {a.out}: {len(frames)} frames at {a.fps:g} fps, final solved {final['solved']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
