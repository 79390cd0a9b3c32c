"""The figures: viz/*.png, and viz/facts.json with every number their captions quote.

By default the headline's: the peephole and vanilla LSTMs trained on the MSD variant (training curves, sample
predictions, cell states, gates, weights), computed here from the two saved models or trained here first:

    python3 visualize_timing_counting_spikes.py \\
        --peep-model results/model_peephole_seed4.npz --vanilla-model results/model_vanilla_seed4.npz
    python3 visualize_timing_counting_spikes.py          # no saved models: trains both (seed 4) first, in parallel

Without saved models the recipe flags (defaults: the headline recipe) say what to train; with them, the held-out
set is the one the models were trained and scored on (their saved config). The other modes draw from results files:
--questions (and --tscale) the MSD variant's open questions, --failing its failing seeds, --claims the paper's claims
table and figures, --online-curves the online learner's learning curves, --grid-speed its grids' speed.
"""
import json
import math
import os
import re
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import matplotlib.ticker  # noqa: E402
from matplotlib.gridspec import GridSpec  # noqa: E402

import timing_counting_spikes as tcs  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))

COLORS = {"peephole": "tab:blue", "vanilla": "tab:orange", "lstm1997": "tab:green", "peephole-nf": "tab:purple"}
MARKS = (("t1", "first input spike", "0.45", ":"), ("t2", "second input spike", "0.25", "--"),
         ("target", "target step t1 + 2D", "tab:red", "-"))
DPI = 110


# ----------------------------------------------------------------------------------------------------------------
# Models and what they compute
# ----------------------------------------------------------------------------------------------------------------

def models_from_args(a):
    """{"peephole": (params, history, seed), "vanilla": ...} and the Config of the task they were scored on."""
    if a.peep_model or a.vanilla_model:
        if not (a.peep_model and a.vanilla_model):
            raise tcs.BadModel("--peep-model and --vanilla-model go together")
        models = {}
        for want, path, flag in (("peephole", a.peep_model, "--peep-model"),
                                 ("vanilla", a.vanilla_model, "--vanilla-model")):
            try:
                params, meta = tcs.load_model(path)
            except tcs.BadModel as e:                  # load_model names the main CLI's flag
                raise tcs.BadModel(str(e).replace("--load-model", flag, 1)) from None
            if tcs.cell_name(tcs.is_peep(params)) != want:
                raise tcs.BadModel(f"{path} holds a {tcs.cell_name(tcs.is_peep(params))} model, not {want}")
            if not meta.get("history") or "config" not in meta:
                raise tcs.BadModel(f"{path} has no training history; save it with --save-model")
            models[want] = (params, meta["history"], meta["seed"], meta["config"])
        configs = [{k: v for k, v in m[3].items() if k != "peep"} for m in models.values()]
        if configs[0] != configs[1]:
            raise tcs.BadModel("the two models were trained on different recipes")
        cfg = tcs.Config(**models["peephole"][3])
        return {k: m[:3] for k, m in models.items()}, cfg
    cfg = tcs.config_from_args(a, True)
    jobs = [(cfg, a.seed), (tcs.replace(cfg, peep=False), a.seed)]
    results = tcs.run_many(jobs, min(2, os.cpu_count() or 1), log=print)
    return {run["variant"]: (params, run["history"], run["seed"]) for run, params, _ in results}, cfg


def internals(params, x, net=None, state=None):
    """Everything the cell computes for the sequences x (T, N, 1) from state (zero if None): c, i, f, g, o
    (T, H, N; f is None without a forget gate) and pred (T, N). net: the seed's architecture if None."""
    buf = tcs.buffers_for(params, x, net)
    pred, _ = tcs.forward(params, x, buf, state)
    H, G = buf.H, buf.G[:, 0]                        # one model: drop the buffers' model axis
    gates = dict(zip("ifgo" if buf.net.forget else "igo", np.split(G, G.shape[1] // H, axis=1)))
    return {"c": buf.C[1:, 0].copy(), "f": None, **{k: v.copy() for k, v in gates.items()}, "pred": pred}


def pick_sequences(test):
    """Indices of held-out sequences to show: the two shortest and the two longest gaps D, and the long-D one."""
    D = test.t2 - test.t1
    order = np.argsort(D, kind="stable")
    short, long_ = [int(k) for k in order[:2]], [int(k) for k in order[::-1][:2]]
    return short + long_, long_[0]


def timer_scores(c, test):
    """Per cell: mean over held-out sequences of |corr(c_t, t)| for t from t2 to the target (the reproduce phase)."""
    T, H, N = c.shape
    t = np.arange(T)
    scores = np.zeros(H)
    for n in range(N):
        span = slice(test.t2[n], test.t_target[n] + 1)
        tt = t[span] - t[span].mean()
        cc = c[span, :, n] - c[span, :, n].mean(axis=0)
        denom = np.sqrt((tt ** 2).sum() * (cc ** 2).sum(axis=0))
        scores += np.abs(tt @ cc) / np.where(denom > 0, denom, np.inf)
    return scores / N


TIMER_STEPS, TIMER_SEQS = 0.9, 0.9


def timer_cells(c, t2, tt):
    """Which cells carry an interval timer. c: (T, H, N) cell states on N held-out sequences; t2, tt: (N,) the
    second input spike and the target step. A cell is a timer when, on at least TIMER_SEQS of the sequences, its
    c_t moves in one direction (the same direction on every such sequence) on at least TIMER_STEPS of the steps from
    t2 to the target: a ramp that runs through the whole reproduce phase. Returns (is_timer (H,) bool, share (H,):
    the fraction of sequences on which the cell ramps in its majority direction)."""
    T, H, N = c.shape
    up = np.zeros((H, N))
    down = np.zeros((H, N))
    for n in range(N):
        dc = np.diff(c[t2[n]:tt[n] + 1, :, n], axis=0)            # the steps t2 -> t2+1 ... target-1 -> target
        up[:, n] = (dc > 0).mean(axis=0) >= TIMER_STEPS
        down[:, n] = (dc < 0).mean(axis=0) >= TIMER_STEPS
    share = np.maximum(up.mean(axis=1), down.mean(axis=1))
    return share >= TIMER_SEQS, share


def curve_facts(history, iters):
    """From a training history: the first evaluation with exact solve >= 0.95, and the range of the exact solve
    rate over the evaluations in the second half of training."""
    late = [h["solved"] for h in history if h["iter"] > iters / 2]
    first = next((h["iter"] for h in history if h["solved"] >= 0.95), None)
    return {"first_iter_solved_ge_0.95": first, "solved_min_second_half": round(min(late), 4),
            "solved_max_second_half": round(max(late), 4)}


def peak_facts(pred, test, k):
    """Where the output peaks after t2 on sequence k, its value, and the miss against the target (steps); and the
    largest output strictly between the two input spikes."""
    t1, t2 = int(test.t1[k]), int(test.t2[k])
    peak = t2 + 1 + int(np.argmax(pred[t2 + 1:, k]))
    return {"index": k, "peak_t": peak, "peak_value": round(float(pred[peak, k]), 3),
            "miss": peak - int(test.t_target[k]), "max_between_spikes": round(float(pred[t1 + 1:t2, k].max()), 3)}


def compute_facts(models, cfg, test, shown, long_k, inner_peep, inner_all, preds):
    """The numbers the captions quote, from the models and the held-out set."""
    pp = models["peephole"][0]
    scores = timer_scores(inner_all["c"], test)
    timer = int(np.argmax(scores))
    t1, t2, tt = int(test.t1[long_k]), int(test.t2[long_k]), int(test.t_target[long_k])
    ramp = np.diff(inner_peep["c"][t2:tt + 1, timer, 0])
    sign = np.sign(ramp.sum())
    o = inner_peep["o"][:, timer, 0]
    between = o[t2 + 1:tt - 1]
    p_o = np.abs(pp["p_o"])
    finals = {v: tcs.score(preds[v], test) for v in models}
    f = inner_peep["f"][:, timer, 0]
    return {
        "seeds": {v: m[2] for v, m in models.items()},
        "task": {"T": cfg.T, "D_min": cfg.D_min, "D_max": cfg.D_max, "n_test": cfg.n_test,
                 "test_seed": cfg.test_seed},
        "final": finals,
        "shown_sequences": [{"index": k, "t1": int(test.t1[k]), "t2": int(test.t2[k]),
                             "target": int(test.t_target[k]), "D": int(test.t2[k] - test.t1[k])} for k in shown],
        "long_sequence": {"index": long_k, "t1": t1, "t2": t2, "target": tt, "D": t2 - t1},
        "timer_cell": timer,
        "timer_score_per_cell": [round(float(s), 4) for s in scores],
        "timer_score_definition": "mean over held-out sequences of |corr(c_t, t)|, t from t2 to the target",
        "timer_ramp_monotonic": bool(np.all(np.sign(ramp) == sign)) if sign != 0 else False,
        "timer_ramp_steps_with_main_sign": round(float(np.mean(np.sign(ramp) == sign)), 4),
        "timer_ramp_direction": "rising" if sign > 0 else "falling" if sign < 0 else "flat",
        "timer_o_at_target": round(float(o[tt]), 4),
        "timer_o_median_between_t2_and_target": round(float(np.median(between)), 4) if between.size else None,
        "timer_o_argmax_after_t2": int(t2 + 1 + np.argmax(o[t2 + 1:])),
        "timer_f_at_t1_t2": [round(float(f[t1]), 4), round(float(f[t2]), 4)],
        "timer_f_median": round(float(np.median(f)), 4),
        "curves": {v: curve_facts(m[1], cfg.iters) for v, m in models.items()},
        "shown_peaks": {v: [peak_facts(preds[v], test, k) for k in shown] for v in models},
        "cells_by_abs_p_o": [int(k) for k in np.argsort(-p_o, kind="stable")],
        "p_o": [round(float(v), 4) for v in pp["p_o"]],
        "p_i": [round(float(v), 4) for v in pp["p_i"]],
        "p_f": [round(float(v), 4) for v in pp["p_f"]],
    }


# ----------------------------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------------------------

def mark_events(axes, t1, t2, tt):
    for ax in axes:
        for (key, label, color, style), t in zip(MARKS, (t1, t2, tt)):
            ax.axvline(t, color=color, ls=style, lw=1.0, label=label, zorder=0)


def event_legend(fig, ax, extra=(), ncol=5):
    """One legend for the whole figure, above the panels, never over the data."""
    handles, labels = [], []
    for a in [ax, *extra]:
        for h, l in zip(*a.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.965), ncol=ncol, frameon=False,
               fontsize=8.5)


def fig_training_curves(models, n_test):
    """Held-out MSE (top) and solve rates (bottom) against iterations: colour is the model, line style the rate."""
    from matplotlib.lines import Line2D
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9.5, 5.2), sharex=True)
    for v, (_, hist, _) in models.items():
        it = [h["iter"] for h in hist]
        a1.semilogy(it, [h["mse"] for h in hist], color=COLORS[v], label=v)
        a2.plot(it, [h["solved"] for h in hist], color=COLORS[v])
        a2.plot(it, [h["within1"] for h in hist], color=COLORS[v], ls=":")
    a1.set_ylabel("held-out MSE")
    a2.set_ylabel("solve rate")
    a2.set_ylim(-0.02, 1.02)
    a2.set_xlabel("training iteration")
    a1.grid(alpha=0.3, which="both")
    a2.grid(alpha=0.3)
    beside = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "frameon": False, "fontsize": 8.5,
              "title_fontsize": 8.5, "alignment": "left"}                     # beside the axes, not on the data
    a1.legend(title="model", **beside)
    a2.legend(handles=[Line2D([], [], color="0.3", label="exact (argmax\non the target step)"),
                       Line2D([], [], color="0.3", ls=":", label="within one step")],
              title="solve rate", **beside)
    hist = next(iter(models.values()))[1]
    seeds = ", ".join(f"{v} seed {m[2]}" for v, m in models.items())
    a1.set_title(f"{n_test} held-out sequences, scored every {hist[1]['iter'] - hist[0]['iter']} iterations "
                 f"({seeds})", fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def fig_sample_predictions(models, test, shown, preds):
    fig, axes = plt.subplots(len(shown), 1, figsize=(8, 1.7 * len(shown) + 0.8), sharex=True, sharey=True)
    T = test.x.shape[0]
    t = np.arange(T)
    for ax, k in zip(axes, shown):
        x = test.x[:, k, 0]
        spikes = t[x > 0]
        ax.vlines(spikes, 0, 1, color="0.5", lw=2, label="input spikes")
        ax.plot([test.t_target[k]], [1.0], "v", color="tab:red", ms=7, label="target step", zorder=5)
        for v in models:
            ax.plot(t, preds[v][:, k], color=COLORS[v], lw=1.2, label=f"{v} prediction")
        ax.set_title(f"held-out sequence {k}: D = {test.t2[k] - test.t1[k]}, t1 = {test.t1[k]}", loc="left",
                     fontsize=9)
        ax.grid(alpha=0.3)
        ax.set_ylabel("output")
    axes[-1].set_xlabel("time step t")
    axes[-1].set_xlim(-1, T)
    axes[-1].set_ylim(-0.12, 1.22)                     # room for the target's triangle above 1
    event_legend(fig, axes[0], ncol=4)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    return fig


def fig_cell_state(test, k, inner, facts):
    T = test.x.shape[0]
    t = np.arange(T)
    c = inner["c"][:, :, 0]
    H = c.shape[1]
    fig = plt.figure(figsize=(8.5, 6.2))
    gs = GridSpec(3, 2, figure=fig, width_ratios=[1, 0.022], height_ratios=[1, 2.4, 1.4], hspace=0.25,
                  wspace=0.03, left=0.1, right=0.9, top=0.86, bottom=0.09)
    a_in = fig.add_subplot(gs[0, 0])
    a_c = fig.add_subplot(gs[1, 0], sharex=a_in)
    a_out = fig.add_subplot(gs[2, 0], sharex=a_in)
    cax = fig.add_subplot(gs[1, 1])
    a_in.vlines(t[test.x[:, k, 0] > 0], 0, 1, color="0.3", lw=2)
    a_in.set_ylabel("input x_t")
    a_in.set_ylim(0, 1.1)
    lim = float(np.abs(c).max()) or 1.0
    im = a_c.imshow(c.T, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest",
                    extent=(-0.5, T - 0.5, H - 0.5, -0.5))
    a_c.set_yticks(range(H))
    a_c.set_yticklabels([f"{j}*" if j == facts["timer_cell"] else str(j) for j in range(H)])
    a_c.set_ylabel("cell (* timer)")
    fig.colorbar(im, cax=cax, label="cell state c_t")
    a_out.plot(t, inner["pred"][:, 0], color=COLORS["peephole"], lw=1.6, label="peephole prediction")
    a_out.plot(t, test.y[:, k], color="k", lw=0.9, ls=(0, (3, 2)), zorder=3, label="target y_t")
    a_out.plot([test.t_target[k]], [1.0], "v", color="k", ms=6, zorder=4)   # the target spike, above both lines
    a_out.set_ylim(-0.12, 1.25)
    a_out.set_ylabel("output")
    a_out.set_xlabel("time step t")
    a_out.set_xlim(-0.5, T - 0.5)
    for ax in (a_in, a_c):
        plt.setp(ax.get_xticklabels(), visible=False)
    mark_events((a_in, a_c, a_out), test.t1[k], test.t2[k], test.t_target[k])
    event_legend(fig, a_in, (a_out,))
    fig.suptitle(f"peephole LSTM, held-out sequence {k} (D = {test.t2[k] - test.t1[k]})", y=0.995, fontsize=10)
    return fig


def fig_gates(test, k, inner, facts):
    T = test.x.shape[0]
    t = np.arange(T)
    j = facts["timer_cell"]
    rows = (("c", f"c_t, cell {j}"), ("i", "input gate i"), ("f", "forget gate f"), ("o", "output gate o"))
    fig, axes = plt.subplots(len(rows), 1, figsize=(8.5, 6.4), sharex=True)
    for ax, (key, label) in zip(axes, rows):
        ax.plot(t, inner[key][:, j, 0], color="k" if key == "c" else COLORS["peephole"], lw=1.3)
        ax.set_ylabel(label, fontsize=9)
        if key != "c":
            ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    mark_events(axes, test.t1[k], test.t2[k], test.t_target[k])
    axes[-1].set_xlabel("time step t")
    axes[-1].set_xlim(-0.5, T - 0.5)
    event_legend(fig, axes[0])
    fig.suptitle(f"timer cell {j} of the peephole LSTM, held-out sequence {k}", y=0.995, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig


def fig_peephole_weights(params, facts):
    H = params["p_o"].size
    x = np.arange(H)
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    for n, (name, color) in enumerate((("p_i", "tab:green"), ("p_f", "tab:purple"), ("p_o", "tab:red"))):
        ax.bar(x + (n - 1) * 0.27, params[name], width=0.27, color=color, label=name)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{j}*" if j == facts["timer_cell"] else str(j) for j in range(H)])
    ax.set_xlabel("cell (* timer)")
    ax.set_ylabel("peephole weight")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def fig_weights(params):
    Wx, Wh = params["Wx"], params["Wh"]
    H = Wh.shape[0]
    lim = float(max(np.abs(Wx).max(), np.abs(Wh).max()))
    fig = plt.figure(figsize=(8.5, 4.6))
    gs = GridSpec(2, 2, figure=fig, width_ratios=[1, 0.025], height_ratios=[1.4, H], hspace=0.12, wspace=0.04,
                  left=0.1, right=0.9, top=0.9, bottom=0.12)
    a_x = fig.add_subplot(gs[0, 0])
    a_h = fig.add_subplot(gs[1, 0], sharex=a_x)
    cax = fig.add_subplot(gs[:, 1])
    for ax, W in ((a_x, Wx), (a_h, Wh)):
        im = ax.imshow(W, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        for b in range(1, 4):
            ax.axvline(b * H - 0.5, color="k", lw=1.2)
    a_x.set_yticks([0])
    a_x.set_yticklabels(["x_t"])
    a_x.set_title("input -> gates (Wx)", fontsize=9, loc="left")
    a_h.set_yticks(range(H))
    a_h.set_yticklabels([f"h_{j}" for j in range(H)])
    a_h.set_title("recurrent h(t-1) -> gates (Wh)", fontsize=9, loc="left")
    a_h.set_xticks([b * H + (H - 1) / 2 for b in range(4)])
    a_h.set_xticklabels([f"{g}  (cells 0-{H - 1})" for g in "ifgo"])
    a_h.set_xlabel("gate pre-activation z (gate, cell)")
    plt.setp(a_x.get_xticklabels(), visible=False)
    fig.colorbar(im, cax=cax, label="weight")
    fig.suptitle("peephole LSTM weights", fontsize=10)
    return fig


def save(fig, path):
    tcs.write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI))
    plt.close(fig)


def add_facts(outdir, **sections):
    """Write these sections into outdir/facts.json, keeping the other modes' sections."""
    path = os.path.join(outdir, "facts.json")
    facts = json.load(open(path)) if os.path.exists(path) else {}
    tcs.write_json(path, {**facts, **sections})


def journal_models(path):
    """{(cell, seed): (params, run)} of a grid journal's finished runs."""
    _, records, _ = tcs.read_journal(path)
    return {(r["cell"], r["seed"]): ({k: np.array(v) for k, v in r["params"].items()}, r["run"])
            for r in records if r["kind"] == "run"}


def failing_table(sweep_json, failing_journal):
    """The seeds on which either cell of the 30-seed sweep ends below 0.6 exact solve, against their reruns with the
    decay off, twice the budget, and a perturbed init: Markdown, and the numbers for facts.json."""
    base = {(r["variant"], r["seed"]): r for r in tcs.read_results(sweep_json)["runs"]}
    reruns = {}
    for config, r in tcs.entries_of(tcs.read_results(failing_journal), failing_journal):
        kind = ("decay off" if config["lr_decay_factor"] == 1 else "init perturbed" if config["init_noise"] else
                "twice the budget")
        reruns[r["variant"], r["seed"], kind] = r
    kinds = ("decay off", "twice the budget", "init perturbed")
    rows = ["| seed | cell | sweep: exact (last 10) | " + " | ".join(f"{k}: exact (last 10)" for k in kinds)
            + " | recovered by |", "|---:|---|---:|" + "---:|" * len(kinds) + "---|"]
    facts = []
    cell_of = lambda r: f"{r['final']['solved']:.3f} ({tcs.last_k_mean(r, 'solved'):.3f})"
    for seed in sorted({s for (_, s, _) in reruns}):
        for cell in ("peephole", "vanilla"):
            if (cell, seed, kinds[0]) not in reruns:
                continue
            b = base[cell, seed]
            got = [reruns.get((cell, seed, k)) for k in kinds]
            rec = [k for k, r in zip(kinds, got)
                   if r and b["final"]["solved"] < 0.6 and tcs.last_k_mean(r, "solved") >= 0.9]
            failing = b["final"]["solved"] < 0.6
            rows.append(f"| {seed} | {cell}{' (failed)' if failing else ''} | {cell_of(b)} | "
                        + " | ".join(cell_of(r) if r else "-" for r in got)
                        + f" | {', '.join(rec) if rec else ('none' if failing else '')} |")
            facts.append({"seed": seed, "cell": cell, "failed": failing, "sweep": b["final"]["solved"],
                          **{k: (r["final"]["solved"] if r else None) for k, r in zip(kinds, got)},
                          "recovered_by": rec})
    return "\n".join(rows), facts


def fig_tscale(journal, path):
    """Exact solve rate against T, one line per cell (the mean) over its seeds (dots); a journal beside this one
    named *_long.jsonl adds its runs as open markers (the same T with a longer budget). Returns the numbers shown."""
    def solved_by(path):
        by = {}
        for config, r in tcs.entries_of(tcs.read_results(path), path):
            if "diverged" not in r:
                by.setdefault((r["variant"], config["T"]), []).append(r["final"]["solved"])
        return by
    by = solved_by(journal)
    longer = journal.replace(".jsonl", "_long.jsonl")
    by_long = solved_by(longer) if os.path.exists(longer) else {}
    Ts = sorted({T for _, T in by})
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    colors = {c: COLORS[c] for c in ("peephole", "vanilla", "lstm1997")}
    shown = {}
    for j, (cell, col) in enumerate(colors.items()):
        pts = [(T, by[cell, T]) for T in Ts if (cell, T) in by]
        for T, v in pts:
            ax.plot(np.full(len(v), T * (1 + 0.03 * (j - 1))), v, ".", color=col, alpha=0.35, ms=5)
        ax.plot([T for T, _ in pts], [np.mean(v) for _, v in pts], "o-", color=col, label=f"{cell}: mean over seeds")
        shown[cell] = {str(T): {"n": len(v), "mean": round(float(np.mean(v)), 3)} for T, v in pts}
        for (c, T), v in by_long.items():
            if c == cell:
                ax.plot([T * (1 + 0.03 * (j - 1))], [np.mean(v)], "o", mfc="none", mec=col, ms=9, mew=1.6)
                shown[cell + ", twice the budget"] = {str(T): {"n": len(v), "mean": round(float(np.mean(v)), 3)}}
    ax.plot([], [], ".", color="0.5", label="one seed")
    if by_long:
        ax.plot([], [], "o", mfc="none", mec="0.3", ms=9, mew=1.6, label="mean, twice the training sequences")
    ax.set_xscale("log")
    ax.set_xticks(Ts, [str(T) for T in Ts])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("sequence length T (gap D in [T/5, 2T/5]; 96,000 training sequences)", fontsize=9)
    ax.set_ylabel("exact solve rate, final", fontsize=9)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    save(fig, path)
    return shown


def msd_questions(sweep_journal, tscale_journal, outdir, timers_out):
    """The timer census of a 30-seed sweep's models (timers_out, viz/timer_cells.png) and the solve rate
    against T (viz/tscale.png, fig_tscale); their numbers go into viz/facts.json under "timers" and "tscale"."""
    models = journal_models(sweep_journal)
    cfg = tcs.Config()
    test = tcs.test_set(cfg)
    rows, examples = [], {}
    for (cell, seed), (params, run) in sorted(models.items()):
        c = np.concatenate([internals(params, test.x[:, s:s + 128])["c"] for s in range(0, test.x.shape[1], 128)],
                           axis=2)
        timer, share = timer_cells(c, test.t2, test.t_target)
        rows.append({"cell": cell, "seed": seed, "timers": [int(k) for k in np.flatnonzero(timer)],
                     "share": [round(float(x), 3) for x in share], "solved": run["final"]["solved"]})
        if timer.any() and len(examples.get(cell, [])) < 2:
            examples.setdefault(cell, []).append((seed, int(np.argmax(np.where(timer, share, -1))), c))
    summary = {}
    for cell in ("peephole", "vanilla"):
        rs = [r for r in rows if r["cell"] == cell]
        with_t = [r["solved"] for r in rs if r["timers"]]
        without = [r["solved"] for r in rs if not r["timers"]]
        summary[cell] = {"models": len(rs), "models_with_a_timer": len(with_t),
                         "timer_cells": sum(len(r["timers"]) for r in rs), "cells": 8 * len(rs),
                         "solved_mean_with_timer": round(float(np.mean(with_t)), 3) if with_t else None,
                         "solved_mean_without": round(float(np.mean(without)), 3) if without else None}
    tcs.write_json(timers_out, {"rule": {"steps": TIMER_STEPS, "sequences": TIMER_SEQS},
                                                            "models": rows, "summary": summary})
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4), layout="constrained")
    shown = np.argsort(test.t2 - test.t1)[::64]                      # eight held-out sequences, D spread out
    cmap = plt.get_cmap("viridis")
    D_all = test.t2 - test.t1
    norm = matplotlib.colors.Normalize(D_all.min(), D_all.max())
    panels = [(cell, e) for cell in ("peephole", "vanilla") for e in examples.get(cell, [])][:4]
    for ax, (cell, (seed, k, c)) in zip(axes, panels):
        for n in shown:
            span = np.arange(test.t2[n], test.t_target[n] + 1)
            ax.plot(span - test.t2[n], c[span, k, n], color=cmap(norm(D_all[n])), lw=1.2)
        ax.set_title(f"{cell}, seed {seed}, cell {k}", fontsize=9)
        ax.set_xlabel("steps since t2 (to the target)", fontsize=8)
    axes[0].set_ylabel("cell state c_t", fontsize=8.5)
    for ax in axes[len(panels):]:
        ax.axis("off")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="gap D", fraction=0.02)
    save(fig, os.path.join(outdir, "timer_cells.png"))
    facts = {"timers": {"summary": summary, "shown": [[cell, seed, k] for cell, (seed, k, _) in panels]}}
    if tscale_journal and os.path.exists(tscale_journal):
        facts["tscale"] = fig_tscale(tscale_journal, os.path.join(outdir, "tscale.png"))
    add_facts(outdir, **facts)
    print(f"wrote {timers_out}, {outdir}/timer_cells.png" + (", tscale.png" if "tscale" in facts else "")
          + f" and facts: {summary}")


# ----------------------------------------------------------------------------------------------------------------
# The paper's claims: grid journals -> results/claims.json, viz/claims_*.png and facts.json["claims"]
# ----------------------------------------------------------------------------------------------------------------

CELL_ORDER = tuple(tcs.CELLS)                 # peephole, vanilla, lstm1997, peephole-nf
NETWORKS = ("one-cell", "8-cell")
RESET_C = 0.1       # a reset leaves |c| at most this fraction of the cell's largest |c| over the trace
GATE_SHARE = 0.9    # a mechanism holds for a cell when it holds at this share of the spikes (steps)


def network_of(config):
    """A claims column: the network, and for the online learner its recipe where it is not the paper's and its
    success rule where it is not the paper's: 'one-cell online' (the paper's recipe and rule), 'one-cell online
    lr=0.0003 momentum=0.99' (another recipe), 'one-cell online lr=0.0001 every-stream' (any test after any training
    stream passes: --protocol every-stream)."""
    net = "one-cell" if config["arch"] == "paper" else f"{config['hidden']}-cell"
    if config.get("learner", "bptt") == "bptt":
        return net
    cfg = config_of(config)
    paper_m = tcs.RTRL_MOMENTUM["nmsd" if tcs.nmsd(cfg) else cfg.task]
    return (f"{net} online" + (f" lr={cfg.lr:g}" if cfg.lr != tcs.RTRL_DEFAULTS["lr"] else "")
            + (f" momentum={cfg.momentum:g}" if cfg.momentum != paper_m else "")
            + ("" if cfg.protocol == "paper" else f" {cfg.protocol}"))


def column_parts(net):
    """A claims column's parts: (network, learner 'BPTT' or 'online', {'lr', 'momentum'} off the paper's recipe,
    the protocol)."""
    name, *rest = net.split()
    recipe = dict(w.split("=") for w in rest if "=" in w)
    protocol = "every-stream" if "every-stream" in rest else "paper"
    return name, ("online" if rest else "BPTT"), recipe, protocol


def title_of(net, short=False):
    """A claims column in words: for figure titles 'one-cell network, online learner (the paper's recipe and
    rule)', short (table headers: the one-cell network's online columns by their learner alone) 'online'; 'online lr
    0.0003 m 0.99'; 'online lr 0.0001, every stream'; 'one-cell, BPTT'."""
    name, learner, recipe, protocol = column_parts(net)
    if learner == "BPTT":
        return f"{name}, BPTT" if short else f"{name} network, BPTT + Adam"
    if short:                                    # the online learner ran the paper's network: no name needed
        return (("" if name == "one-cell" else f"{name}, ") + "online"
                + "".join(f" {'m' if k == 'momentum' else k} {v}" for k, v in recipe.items())
                + (", every stream" if protocol == "every-stream" else ""))
    how = (", ".join(f"{'learning rate' if k == 'lr' else k} {v}" for k, v in recipe.items())
           or "the paper's recipe")
    rule = "a test after every stream" if protocol == "every-stream" else "the paper's rule"
    return f"{name} network, online learner ({how}; {rule})"


def slug(net):
    """A claims column as a file name part: 'one-cell online lr=0.0001' -> 'one_cell_online_lr_0_0001'."""
    return re.sub(r"[^0-9a-z]+", "_", net)


def networks_in(keys):
    """The claims columns among keys (network, ...), in order: the one-cell network by BPTT, then by the online
    learner (the paper's rule first, the paper's recipe first), then the 8-cell network."""
    return sorted({key[0] for key in keys}, key=column_order)


def column_order(net):
    return (NETWORKS.index(net.split()[0]) if net.split()[0] in NETWORKS else len(NETWORKS), "online" in net,
            "every-stream" in net, "=" in net, net)


def setting_name(config):
    """A grid setting by its task alone: 'gts F=10', 'pfg cos F=25', 'delays F=49 I=0,1'."""
    if config["task"] == "delays":
        return f"delays F={config['F']} I={','.join(map(str, config['I']))}"
    return f"{config['task']}{' ' + config['wave'] if config['task'] == 'pfg' else ''} F={config['F']}"


def setting_order(name):
    """GTS, PFG (cos, tri, rect), delays; each by period, then the interval set."""
    task, *rest = name.split()
    wave = ("cos", "tri", "rect").index(rest[0]) if task == "pfg" else 0
    F = int(next(w for w in rest if w.startswith("F=")).split("=")[1])
    return ("gts", "pfg", "delays").index(task), wave, F, name


def checkpoint_records(journal):
    """The records of a journal's online jobs still in flight (its checkpoints, X.jsonl.ckpt/): each stopped model
    as the journal record its job will write (scored as online_job() scores it), each running model as a record of
    kind "running" with its training streams and steps so far. Checkpoints whose models are all in the journal are
    stale and skipped."""
    d = journal + ".ckpt"
    names = tcs.checkpoint_names(d)
    stamp = lambda f: (f, os.stat(f).st_mtime_ns, os.stat(f).st_size)
    key = (stamp(journal), *(stamp(os.path.join(d, n)) for n in names))
    if key not in IN_FLIGHT:                      # each job is scored once, however many tables read it
        IN_FLIGHT[key] = _checkpoint_records(journal, d, names)
    return [dict(r) for r in IN_FLIGHT[key]]


IN_FLIGHT = {}   # checkpoint_records() by the journal and checkpoints as they were on disk when read


def _checkpoint_records(journal, d, names):
    out = []
    finished = tcs.journal_keys(journal)
    for name in names:
        meta, z = tcs.read_checkpoint(os.path.join(d, name))
        if set(meta["keys"]) | set(meta["done"]) <= finished:
            continue
        n = len(meta["keys"]) + len(meta["done"])
        for key, r in meta["done"].items():
            config, seed = json.loads(key)
            cfg = config_of(config)
            r = {**r, "params": {k: np.array(v) for k, v in r["params"].items()}}
            res = tcs.online_result(cfg, seed, r, meta["elapsed"] / n, n)
            out.append({**json.loads(json.dumps(tcs.journal_record(cfg, seed, res))), "in_flight": name})
        for m, key in enumerate(meta["keys"]):
            config, seed = json.loads(key)
            out.append({"kind": "running", "key": key, "config": config, "seed": seed,
                        "cell": tcs.cell_name(config["peep"], config["forget"]), "in_flight": name,
                        "streams": int(z["streams"][m]), "steps": int(z["steps"][m])})
    return out


def claims_runs(journals):
    """{(network, setting, cell): [record]} of the runs in grid journals, finished or (online) still in flight
    (checkpoint_records(): a running model is a record of kind "running"); a diverged run is a record with
    "message" and counts as a failure. A group holds one recipe: runs of the same setting and cell trained another
    way (another window, learning rate, ...) are a BadGrid, not silently pooled; an online group run at two budgets
    (max_streams, max_steps) is the larger one's, and the smaller is named in SUPERSEDED."""
    runs, recipe = {}, {}
    SUPERSEDED.clear()
    GAVE_WAY.clear()
    budget = lambda c: tuple(c.get(b, 0) for b in tcs.BUDGET)
    for path in journals:
        for r in tcs.read_journal(path)[1] + checkpoint_records(path):
            key = group_of(r)
            first = recipe.setdefault(key, (r["config"], path))
            changed = sorted(k for k in {*r["config"], *first[0]} if r["config"].get(k) != first[0].get(k))
            if changed and set(changed) <= set(tcs.BUDGET):       # the same models at another budget
                small, large = sorted(((r["config"], path), first), key=lambda cp: budget(cp[0]))
                GAVE_WAY.add((os.path.basename(small[1]), key))
                SUPERSEDED[key] = (f"{' | '.join(key)}: {os.path.basename(small[1])} (its "
                                   f"{', '.join(f'{b} {power(small[0][b])}' for b in changed)}) gives way to "
                                   f"{os.path.basename(large[1])}")
                if large[1] == first[1]:
                    continue
                recipe[key], runs[key] = (r["config"], path), []
            elif changed:
                raise tcs.BadGrid(f"{path}: {' '.join(key)} also in {first[1]} with another recipe "
                                  f"({', '.join(changed)}): give --claims one recipe per setting")
            runs.setdefault(key, []).append({**r, "journal": os.path.basename(path)})
    return runs


SUPERSEDED = {}   # claims_runs()'s groups run at two budgets: {group: which journal gave way to which}
GAVE_WAY = set()  # and (the smaller budget's journal, group) of each: its records count nowhere


def passed(record):
    """A finished run's success: the online learner's pass, or BPTT's best checkpoint's success."""
    if record["kind"] != "run":
        return False
    o = record["run"].get("online")
    return o["outcome"] == "passed" if o else bool(record["run"]["best"]["success"])


def fill_from_every_stream(runs):
    """Under the paper's rule a test runs only after a training success and a test never changes the weights, so a
    model that passed no test under --protocol every-stream passes none under the paper's rule within the same
    budget (and engine). Each group of an every-stream column without a pass stands for the same group of the
    column with the same recipe under the paper's rule, where that column did not run it. Returns the filled
    runs and the set of keys so filled."""
    out, filled = dict(runs), set()
    cols = {key[0] for key in runs}
    for (net, x, cell), recs in runs.items():
        base = net[:-len(" every-stream")] if net.endswith(" every-stream") else None
        if base in cols and (base, x, cell) not in runs and not any(map(passed, recs)):
            out[(base, x, cell)] = recs
            filled.add((base, x, cell))
    return out, filled


def first_success_steps(run, need):
    """Training time steps at the first evaluation whose free run was error-free for `need` units (the online
    learner: at its first passed test); None if never."""
    if "online" in run:
        return run["online"]["first_pass"]["steps"] if run["online"]["first_pass"] else None
    return next((h["steps"] for h in run["history"] if h["run_units"] >= need), None)


def group_stats(records):
    """Successes (passed()) and those below the paper's stricter tolerance STRICT_TOL (by their test's largest
    |error|, success_max_error()), the Wilson interval, the models still training (their successes unknown: a
    verdict must hold whatever they do), the median error-free run, the runs' longest, the steps to the first
    success and the successes' RMSE. Diverged runs count as failures."""
    ok = [r["run"] for r in records if r["kind"] == "run"]
    running = [r for r in records if r["kind"] == "running"]
    n, kb = len(records), sum(map(passed, records))
    lo, hi = tcs.wilson_interval(kb, n)
    need = records[0]["config"]["test_units"]
    first = [s for s in (first_success_steps(r, need) for r in ok) if s is not None]
    streams = [r["online"]["first_pass"]["streams"] for r in ok if "online" in r and r["online"]["first_pass"]]
    rmse = [r["best"]["rmse"] for r in ok if r["best"]["success"]]
    worst = sorted(attach_max_errors(records))
    tol = tcs.TASKS[records[0]["config"]["task"]].tol
    return {"n": n, "success_best": kb, "success_final": sum(r["final"]["success"] for r in ok),
            "ci": [round(lo, 3), round(hi, 3)], "diverged": n - len(ok) - len(running), "running": len(running),
            "running_streams": [min(r["streams"] for r in running), max(r["streams"] for r in running)]
            if running else None,
            "success_strict": sum(w < tcs.STRICT_TOL for w in worst),
            "within_001": sum(tol - w < 0.01 for w in worst),
            "success_max_errors": [round(w, 4) for w in worst],
            "median_run_best": float(np.median([r["best"]["run_units"] for r in ok])) if ok else 0.0,
            "max_run_best": max((r["best"]["run_units"] for r in ok), default=0),
            "steps_per_run": ok[0]["steps"] if ok else None,
            "median_steps_to_first_success": float(np.median(first)) if first else None,
            "steps_to_first_success_range": [min(first), max(first)] if first else None,
            "median_streams_to_first_pass": float(np.median(streams)) if streams else None,
            "streams_to_first_pass_range": [min(streams), max(streams)] if streams else None,
            "median_rmse_of_successes": round(float(np.median(rmse)), 4) if rmse else None,
            "online_stops": online_stops(records)}


def online_stops(records):
    """How the online learner's models of a group stopped: passed, at the step cap (max_steps training steps),
    at the stream budget (max_streams training streams), diverged, still running, and the training streams each
    model stopped at the step cap had seen (what the cap cut off); None for BPTT runs."""
    if records[0]["config"].get("learner", "bptt") != "rtrl":
        return None
    out = {"passed": 0, "step_cap": 0, "stream_budget": 0, "diverged": 0, "running": 0, "step_cap_streams": []}
    for r in records:
        if r["kind"] != "run":
            out["running" if r["kind"] == "running" else "diverged"] += 1
            continue
        o, cfg = r["run"]["online"], r["config"]
        how = ("passed" if o["outcome"] == "passed" else "step_cap" if o["steps"] >= cfg["max_steps"]
               else "stream_budget")
        out[how] += 1
        if how == "step_cap":
            out["step_cap_streams"].append(o["streams"])
    return out


def gate_mechanism(c, i, f, o, spikes):
    """The paper's GTS mechanism, per cell of one trace. c, i, f, o: (T, H) (f None: no forget gate, never closes);
    spikes: the target's spike steps. reset: the share of spikes at which, on the spike's step or the next, input
    and forget gates are both below 0.5 and |c| falls to at most RESET_C of the cell's largest |c|; open_at_spike:
    the share of spikes with o > 0.5; closed_elsewhere: the share of other steps with o < 0.5. A cell resets (gates
    only at the spike) when its shares reach GATE_SHARE."""
    T, H = c.shape
    spikes = np.asarray(spikes)
    spikes = spikes[spikes + 1 < T]
    shut = (i < 0.5) & ((f < 0.5) if f is not None else False)
    low = np.abs(c) <= RESET_C * np.abs(c).max(axis=0)
    reset_step = shut & low
    reset = (reset_step[spikes] | reset_step[spikes + 1]).mean(axis=0)
    rest = np.ones(T, bool)
    rest[spikes] = False
    open_at = (o[spikes] > 0.5).mean(axis=0)
    closed = (o[rest] < 0.5).mean(axis=0)
    return {"reset": [round(float(x), 3) for x in reset], "open_at_spike": [round(float(x), 3) for x in open_at],
            "closed_elsewhere": [round(float(x), 3) for x in closed],
            "resets": bool((reset >= GATE_SHARE).any()),
            "gates_at_spike": bool(((open_at >= GATE_SHARE) & (closed >= GATE_SHARE)).any())}


def config_of(config):
    """The Config of a journal record's config."""
    return tcs.setting_of(config)[2]


def best_params(record):
    return {k: np.array(v) for k, v in record["best_params"].items()}


def solutions(records, units):
    """(record, cfg, held-out stream of `units` units, internals on it) of each run that succeeded at its best
    checkpoint, run from the zero state with that checkpoint."""
    for r in records:
        if r["kind"] == "run" and r["run"]["best"]["success"]:
            cfg = config_of(r["config"])
            s = tcs.stream_test(cfg, units)
            yield r, cfg, s, internals(best_params(r), s.x, tcs.net_of(cfg))


def gts_mechanisms(records, periods=50):
    """gate_mechanism over periods 2 to periods + 1 of the free run of every successful model (best checkpoint)."""
    out = []
    for r, cfg, s, inner in solutions(records, periods + 1):
        k = slice(cfg.F, None)
        f = inner["f"][k, :, 0] if inner["f"] is not None else None
        out.append({"seed": r["seed"], **gate_mechanism(inner["c"][k, :, 0], inner["i"][k, :, 0], f,
                                                         inner["o"][k, :, 0], np.flatnonzero(s.ends[k, 0]))})
    return out


def ramping_models(records, units=100):
    """For each successful model: whether one of its cells ramps through the intervals of its held-out stream, by
    the MSD timer census's rule (timer_cells: one direction on TIMER_STEPS of the steps, on TIMER_SEQS of the
    intervals) over the steps strictly between two input spikes: a cell that resets at a spike (on its step and the
    next) and ramps in between is a timer."""
    out = []
    for r, cfg, s, inner in solutions(records, units):
        spikes = np.flatnonzero(s.ends[:, 0])
        c = inner["c"][:, :, :1]
        N = len(spikes) - 1
        timer, _ = timer_cells(np.broadcast_to(c, (*c.shape[:2], N)), spikes[:-1] + 1, spikes[1:] - 1)
        out.append(bool(timer.any()))
    return out


def mean_output_gate(records, units=100):
    """Each successful model's mean output gate over its held-out stream's first `units` intervals."""
    return [float(inner["o"].mean()) for *_, inner in solutions(records, units)]


def _judge_all(results):
    """'yes' if every network's verdict is yes, 'no' if every one is no, else 'partly'; networks not run, and
    learners that taught no cell the claim's settings ('not reproduced'), are no evidence either way and skipped."""
    got = [v for v, _ in results.values() if v not in ("not run", "not reproduced")]
    if not got:
        return "not reproduced" if any(v == "not reproduced" for v, _ in results.values()) else "not run"
    return "yes" if all(v == "yes" for v in got) else "no" if all(v == "no" for v in got) else "partly"


def _k(st, ci=True):
    """'k/n [lo, hi]': successes at the best checkpoint and their 95% Wilson interval."""
    if not st:
        return "-"
    k = f"{st['success_best']}/{st['n']}" + (f" [{st['ci'][0]:.2f}, {st['ci'][1]:.2f}]" if ci else "")
    if ci and st["success_best"]:
        k += f" ({st['success_strict']} below {tcs.STRICT_TOL})"
    return k + (f", {st['running']} still training" if st["running"] else "")


def claim_verdicts(stats, mech):
    """The claims table: [{id, source, claim, holds_if, networks: {network: {verdict, measured}}, verdict}] from stats
    {(network, setting, cell): group_stats} and mechanism numbers {network: {...}}; a network is a claims column
    (network_of: the network and its learner). Each rule is one function: what must be measured for the claim to
    hold in a network. A "no" where the learner taught no cell any of the claim's settings is "not reproduced":
    that training's failure, not evidence against the claim."""
    nets = networks_in(stats) or list(NETWORKS)
    S = lambda net, setting, cell: stats.get((net, setting, cell))
    k = lambda net, setting, cell: (S(net, setting, cell) or {}).get("success_best", 0)
    ran = lambda net, setting: any(S(net, setting, c) for c in CELL_ORDER)
    gts = ("gts F=10", "gts F=25", "gts F=50")
    pfg = tuple(f"pfg {w} F={F}" for w in ("cos", "tri", "rect") for F in (10, 25))
    msd = ("delays F=10 I=0,1", "delays F=10 I=0,1,2")
    msd49 = (*msd, "delays F=49 I=0,1")

    def share(net, settings, cell):
        done = [st for st in (S(net, x, cell) for x in settings) if st]
        return sum(st["success_best"] for st in done), sum(st["n"] for st in done)

    def learns(net, settings, cell):
        """yes: >= 1 success in every setting; partly: in some; no: in none."""
        done = [x for x in settings if S(net, x, cell)]
        if not done:
            return "not run", "not run"
        hit = [x for x in done if k(net, x, cell)]
        v = "yes" if len(hit) == len(done) else "partly" if hit else "no"
        return v, "; ".join(f"{x.split(' ', 1)[1] if x.startswith(('gts', 'delays')) else x[4:]}: "
                            f"{_k(S(net, x, cell))}" for x in done)

    def c49(net):
        p, v = S(net, "delays F=49 I=0,1", "peephole"), S(net, "delays F=49 I=0,1", "vanilla")
        if not p:
            return "not run", "not run"
        return ("yes" if p["success_best"] else "no"), f"peephole {_k(p)}, vanilla {_k(v)}"

    def c_msd_both(net):
        vs = [learns(net, msd, c) for c in ("peephole", "vanilla")]
        if vs[0][0] == "not run":
            return vs[0]
        v = "yes" if all(x == "yes" for x, _ in vs) else "no" if all(x == "no" for x, _ in vs) else "partly"
        return v, f"peephole {vs[0][1]}; vanilla {vs[1][1]}"

    def c_msd_outperforms(net):
        sets = [x for x in (*msd, "delays F=49 I=0,1") if S(net, x, "peephole") and S(net, x, "vanilla")]
        if not sets:
            return "not run", "not run"
        best = None
        for x in sets:
            p, v = S(net, x, "peephole"), S(net, x, "vanilla")
            pv = tcs.fisher_exact(p["success_best"], p["n"] - p["success_best"], v["success_best"],
                                  v["n"] - v["success_best"])
            if p["success_best"] > v["success_best"] and (best is None or pv < best[1]):
                best = (x, pv, p, v)
        vanilla_solves = any(k(net, x, "vanilla") for x in sets)
        counts = "; ".join(f"{x[7:]}: {_k(S(net, x, 'peephole'), False)} vs {_k(S(net, x, 'vanilla'), False)}"
                           for x in sets)
        if best is None:
            return "no", f"peephole ahead on no set (peephole vs vanilla, {counts})"
        x, pv, p, v = best
        verdict = "yes" if pv < 0.05 and vanilla_solves else "partly"
        return verdict, f"peephole vs vanilla, {counts}; best lead {x[7:]} (Fisher p = {pv:.2g})"

    def c_msd_longer(net):
        short, long_ = "delays F=10 I=0,1", "delays F=49 I=0,1"
        got = {c: (S(net, short, c), S(net, long_, c)) for c in ("peephole", "vanilla")
               if S(net, short, c) and S(net, long_, c)}
        if not got or not any(a["success_best"] for a, _ in got.values()):
            return "not run", "no peephole or vanilla run learned F = 10 to compare with"
        k10, n10 = (sum(a[x] for a, _ in got.values()) for x in ("success_best", "n"))
        k49, n49 = (sum(b[x] for _, b in got.values()) for x in ("success_best", "n"))
        pv = tcs.fisher_exact(k10, n10 - k10, k49, n49 - k49)
        v = "yes" if k49 < k10 and pv < 0.05 else "partly" if k49 < k10 else "no"
        a, b = next(iter(got.values()))
        longer = (f", F=49 on {b['steps_per_run'] / a['steps_per_run']:.1f} times the time steps"
                  if " online" not in net else "")             # an online model stops at its pass: no fixed length
        return v, f"peephole and vanilla: F=10 {k10}/{n10}, F=49 {k49}/{n49} (Fisher p = {pv:.2g}){longer}"

    def c_faster(net, setting, fast, slow):
        a, b = S(net, setting, fast), S(net, setting, slow)
        if not (a and b):
            return "not run", "not run"
        fa, fb = a["median_steps_to_first_success"], b["median_steps_to_first_success"]
        if a["success_best"] < 3 or b["success_best"] < 3:
            return "not run", f"too few successes to compare ({fast} {_k(a)}, {slow} {_k(b)})"
        if fa is None or fb is None:                 # successes counted before they happen (robust_verdicts())
            return "running", "running"
        tests = "a test after every training stream" if "online" in net else "a test every 250 iterations"
        return ("yes" if fa < fb else "no"), (f"median steps to the first success: {fast} {fa / 1e6:.2f} M, "
                                              f"{slow} {fb / 1e6:.2f} M{' (equal)' if fa == fb else ''} ({setting}; "
                                              f"{tests})")

    def c_msd_gate(net):
        m = mech.get(net, {}).get("msd_output_gate", {})
        p, v = m.get("peephole"), m.get("vanilla")
        if not p or not v:
            return "not run", "no solutions of both cells to measure"
        mp, mv = float(np.median(p)), float(np.median(v))
        verdict = "yes" if mv > 0.5 > mp else "partly" if mv > 0.5 or mp < 0.5 else "no"
        return verdict, (f"median over solutions of the mean output gate: vanilla {mv:.2f} ({len(v)} models), "
                         f"peephole {mp:.2f} ({len(p)}) (F=10 I=0,1,2; open: > 0.5)")

    def c_msd_ramp(net):
        m = mech.get(net, {}).get("msd_ramps", {})
        v, p = m.get("vanilla"), m.get("peephole")
        if not v:
            return "not run", "no vanilla solution to measure"
        kv = sum(v)
        return ("partly" if kv else "no"), (f"{kv}/{len(v)} vanilla solutions have a cell that ramps through the "
                                            f"intervals (90/90 rule; peephole {sum(p or [])}/{len(p or [])}); "
                                            "oscillating and counting: not measured")

    def c_gts_no_peep(net):
        if not ran(net, "gts F=10"):
            return "not run", "not run"
        kv, nv = share(net, gts, "vanilla")
        kp, npp = share(net, gts, "peephole")
        over = "over F = " + ", ".join(x.split("=")[1] for x in gts if ran(net, x))
        if kv:
            return "no", f"vanilla {kv}/{nv} {over} (peephole {kp}/{npp})"
        if not kp:                                   # neither learns it: no contrast, no evidence either way
            return "not reproduced", f"vanilla 0/{nv}, peephole 0/{npp} {over}: neither cell learns it"
        return "yes", f"vanilla 0/{nv}, peephole {kp}/{npp} {over}"

    def c_gts_no_forget(net):
        if not ran(net, "gts F=10"):
            return "not run", "not run"
        got = {c: share(net, gts, c) for c in ("lstm1997", "peephole-nf")}
        fails = [c for c, (kk, _) in got.items() if kk == 0]
        kp, npp = share(net, gts, "peephole")
        v = "yes" if len(fails) == 2 else "partly" if fails else "no"
        if v == "yes" and not kp:
            v = "partly"
        return v, "; ".join(f"{c} {kk}/{nn}" for c, (kk, nn) in got.items()) + f" (peephole {kp}/{npp})"

    def c_mechanism(net):
        ms = mech.get(net, {}).get("gts_peephole", [])
        if not ms:
            return "not run", "no peephole GTS solution to measure"
        r = sum(m["resets"] for m in ms)
        g = sum(m["gates_at_spike"] for m in ms)
        half = len(ms) / 2
        v = "yes" if r >= half and g >= half else "partly" if r >= half or g >= half else "no"
        vs = mech.get(net, {}).get("gts_vanilla", [])
        rv = sum(m["resets"] for m in vs)
        other = (f" (vanilla solutions: {rv}/{len(vs)} and {sum(m['gates_at_spike'] for m in vs)}/{len(vs)}; resets, "
                 f"Fisher p = {tcs.fisher_exact(r, len(ms) - r, rv, len(vs) - rv):.2g})") if vs else ""
        return v, (f"{r}/{len(ms)} peephole solutions have a cell that resets at the spikes, {g}/{len(ms)} an output "
                   f"gate open only at them{other}")

    def c_longer(net):
        got = [(x, S(net, x, "peephole")) for x in gts if S(net, x, "peephole")]
        med = [(x, st["median_steps_to_first_success"]) for x, st in got if st["success_best"] >= 3]
        if any(m is None for _, m in med):           # successes counted before they happen (robust_verdicts())
            return "running", "running"
        if len(med) < 2:
            return "not run", "fewer than two periods with 3 or more peephole successes: " + \
                "; ".join(f"{x[4:]} {_k(st)}" for x, st in got)
        rising = all(b[1] > a[1] for a, b in zip(med, med[1:]))
        return ("yes" if rising else "no"), "peephole median steps to the first success: " + \
            ", ".join(f"{x[4:]} {m / 1e6:.2f} M" for x, m in med)

    def c_pfg_vanilla(net):
        if not ran(net, "pfg cos F=10"):
            return "not run", "not run"
        V = [x for x in pfg if k(net, x, "vanilla")]
        P = [x for x in pfg if k(net, x, "peephole")]
        v = "yes" if V == ["pfg cos F=10"] else "partly" if len(V) < len(P) else "no"
        name = lambda xs: ", ".join(x[4:] for x in xs) or "none"
        return v, f"vanilla learns {name(V)}; peephole {name(P)}"

    def c_1997(net):
        got = [S(net, x, "lstm1997") for x in pfg if S(net, x, "lstm1997")]
        if not got:
            return "not run", "not run"
        mx = max(st["max_run_best"] for st in got)
        kk = sum(st["success_best"] for st in got)
        v = "yes" if mx <= 2 else "partly" if kk == 0 else "no"
        return v, (f"longest error-free run of any 1997 cell: {mx} periods; successes {kk}/"
                   f"{sum(st['n'] for st in got)} over the six settings")

    def c_pfg_more(net):
        if not ran(net, "pfg cos F=10"):
            return "not run", "not run"
        (kp, n1), (kv, n2) = share(net, pfg, "peephole"), share(net, pfg, "vanilla")
        pv = tcs.fisher_exact(kp, n1 - kp, kv, n2 - kv)
        v = "yes" if kp > kv and pv < 0.05 else "partly" if kp > kv else "no"
        return v, f"peephole {kp}/{n1} vs vanilla {kv}/{n2} over the six settings (Fisher p = {pv:.2g})"

    def c_rmse(net):
        st = S(net, "pfg cos F=25", "peephole")
        if not st:
            return "not run", "not run"
        r, n = st["median_rmse_of_successes"], st["success_best"]
        if r is None:
            return ("running" if n else "not run"), f"no peephole success ({_k(st)})"
        if r > 0.17 + 2 * 0.019:
            return "no", f"median RMSE of its {n} successes {r:.3f}"
        return ("yes" if n >= 3 else "partly"), (f"median RMSE of its {n} successes {r:.3f}" if n >= 3 else
                                                 f"RMSE {r:.3f}, but only {n} of {st['n']} runs succeed")

    rows = [
        ("49v50", "Q", "Peephole LSTM learns 50 vs 49 steps apart without short training exemplars",
         "learned", c49, ("delays F=49 I=0,1",)),
        ("gts", "Q", "Peephole LSTM generates stable streams of precisely timed spikes (GTS)",
         "learned", lambda net: learns(net, gts, "peephole"), gts),
        ("pfg", "Q", "... and other highly nonlinear periodic patterns (PFG)",
         "learned", lambda net: learns(net, pfg, "peephole"), pfg),
        ("msd_both", "Q", "MSD F = 10, I in {0,1} or {0,1,2}, is solved with or without peepholes",
         "both solve it", c_msd_both, msd),
        ("msd_outperforms", "Q", "On MSD peephole LSTM outperforms LSTM for some sets; peepholes not mandatory",
         "peephole ahead on some sets", c_msd_outperforms, msd49),
        ("msd_longer", "Q", "On MSD longer intervals need finer tuning of the weights, which requires more training",
         "fewer successes at F = 49", c_msd_longer, msd49),
        ("msd_faster", "N", "On MSD with a linear output unit, LSTM without peepholes learns faster",
         "vanilla faster", lambda net: c_faster(net, "delays F=10 I=0,1,2", "vanilla", "peephole"), msd),
        ("msd_ramp", "N", "On MSD LSTM solves it by ramping its cell state, or by oscillating and counting",
         "ramping cells (partly: the other half is not measured)", c_msd_ramp, msd),
        ("msd_gate", "N", "On MSD LSTM keeps its output gate open; peephole LSTM keeps it mostly closed",
         "vanilla open, peephole closed", c_msd_gate, msd),
        ("gts_no_peep", "N", "GTS: LSTM without peepholes cannot learn it", "0 successes", c_gts_no_peep, gts),
        ("gts_no_forget", "N", "GTS: without the forget gate training fails", "0 successes", c_gts_no_forget, gts),
        ("gts_mechanism", "N", "GTS solution: input and forget gates close together at each spike (c reset to 0), "
         "the output gate opens only at the spike", "this mechanism", c_mechanism, gts),
        ("gts_longer", "N", "GTS: longer periods take longer to learn", "slower with F", c_longer, gts),
        ("pfg_vanilla", "N", "PFG: LSTM without peepholes learns only f_cos at F = 10", "only cos F=10",
         c_pfg_vanilla, pfg),
        ("pfg_1997", "N", "PFG: the 1997 LSTM generates at most about two periods", "<= 2 periods (partly: more, "
         "but never 1000)", c_1997, pfg),
        ("pfg_more", "N", "PFG: peephole LSTM learns more of the functions", "more", c_pfg_more, pfg),
        ("pfg_rmse", "N", "PFG f_cos F = 25: peephole RMSE 0.17 ± 0.019 under the 0.3 criterion (0.086 ± 0.002 "
         "with a stricter one, not run here)", "RMSE <= 0.208", c_rmse, ("pfg cos F=25",)),
    ]
    def taught_nothing(net, settings):
        return any(ran(net, x) for x in settings) and not any(k(net, x, c) for x in settings for c in CELL_ORDER)

    out = []
    for cid, src, claim, expect, rule, settings in rows:
        per = {net: rule(net) for net in nets}
        per = {net: ("not reproduced", f"{m}: not reproduced by this training (it taught no cell these settings)")
               if v == "no" and taught_nothing(net, settings) else (v, m) for net, (v, m) in per.items()}
        out.append({"id": cid, "source": src, "claim": claim, "holds_if": expect,
                    "networks": {net: {"verdict": v, "measured": m} for net, (v, m) in per.items()},
                    "verdict": _judge_all(per)})
    return out


# Each claim in a few words, for the verdict table (verdict_markdown): the README's answer
SHORT_CLAIMS = {
    "49v50": "learns 50 vs 49 steps apart",
    "gts": "generates precisely timed spikes (GTS)",
    "pfg": "... and periodic patterns (PFG)",
    "msd_both": "MSD `F = 10` solved with or without peepholes",
    "msd_outperforms": "MSD: peepholes ahead on some sets",
    "msd_longer": "MSD: longer intervals need more training",
    "msd_faster": "MSD, linear output: vanilla learns faster",
    "msd_ramp": "MSD: cells ramp, or oscillate and count",
    "msd_gate": "MSD: output gate open (vanilla), shut (peephole)",
    "gts_no_peep": "GTS: not learned without peepholes",
    "gts_no_forget": "GTS: not learned without forget gate",
    "gts_mechanism": "GTS: gates reset `c` at spikes, output gate opens there",
    "gts_longer": "GTS: longer periods take longer",
    "pfg_vanilla": "PFG: vanilla learns only `f_cos` `F = 10`",
    "pfg_1997": "PFG: the 1997 cell runs about 2 periods",
    "pfg_more": "PFG: peepholes learn more functions",
    "pfg_rmse": "PFG `f_cos` `F = 25`: RMSE 0.17 ± 0.019"}
SHORT_VERDICTS = {"not reproduced": "n.r.", "not run": "–"}


def verdict_markdown(claims, overall=True):
    """The verdicts alone, a column per network and learner, and (overall) the row's verdict and the same at the
    paper's stricter tolerance, each claim in a few words (SHORT_CLAIMS; n.r.: not reproduced by that training, –:
    not run): the README's answer table."""
    nets = list(claims[0]["networks"])
    v = lambda x: SHORT_VERDICTS.get(x, x)
    more = f" reproduces | at {tcs.STRICT_TOL} |" if overall else ""
    rows = ["| claim [source] | " + " | ".join(title_of(n, short=True) for n in nets) + " |" + more,
            "|---|" + "---|" * (len(nets) + 2 * overall)]
    for c in claims:
        rows.append(f"| {SHORT_CLAIMS[c['id']]} [{c['source']}] | "
                    + " | ".join(v(c["networks"][n]["verdict"]) for n in nets) + " |"
                    + (f" **{v(c['verdict'])}** | {v(c['verdict_at_0.15'])} |" if overall else ""))
    return "\n".join(rows)


def claims_markdown(claims):
    nets = list(claims[0]["networks"])
    rows = ["| claim | source | " + " | ".join(f"{net}: measured" for net in nets) + " | reproduces |",
            "|---|---|" + "---|" * len(nets) + "---|"]
    for c in claims:
        cells = [f"**{c['networks'][net]['verdict']}**: {c['networks'][net]['measured']}" for net in nets]
        by = {}
        for net in nets:
            by.setdefault(c["networks"][net]["verdict"], []).append(net)
        why = "; ".join(f"{v}: {', '.join(nets)}" for v, nets in by.items())
        rows.append(f"| {c['claim']} | [{c['source']}] | " + " | ".join(cells) + f" | **{c['verdict']}** ({why}) |")
    return "\n".join(rows)


def millions(v):
    """A count of steps or streams in millions: 2500000 -> '2.50 M'."""
    return f"{v / 1e6:.2f} M"


def first_success_markdown(stats):
    """Per setting and cell that any column taught: each column's successes and the median [range] of the training
    time steps (and, for the online learner, training streams) to the first success, as a Markdown table."""
    nets = networks_in(stats)
    taught = sorted({key[1:] for key, st in stats.items() if st["success_best"]},
                    key=lambda xc: (setting_order(xc[0]), CELL_ORDER.index(xc[1])))
    if not taught:
        return ""

    def cell(st):
        if not st:
            return "-"
        if not st["success_best"]:
            return f"{_k(st, False)}"
        lo, hi = st["steps_to_first_success_range"]
        out = (f"{_k(st, False)}: steps {millions(st['median_steps_to_first_success'])} "
               f"[{millions(lo)}–{millions(hi)}]")
        if st["median_streams_to_first_pass"] is not None:
            a, b = st["streams_to_first_pass_range"]
            out += f", streams {st['median_streams_to_first_pass']:,.0f} [{a:,}–{b:,}]"
        return out
    rows = ["| setting | cell | " + " | ".join(nets) + " |", "|---|---|" + "---|" * len(nets)]
    for x, c in taught:
        rows.append(f"| {x.replace('pfg ', 'pfg f_')} | {c} | " + " | ".join(cell(stats.get((n, x, c))) for n in nets)
                    + " |")
    return "\n".join(rows)


def stops_markdown(stats):
    """How the online learner's models stopped, per column and setting (all four cells): passed, at the step cap,
    at the stream budget, diverged, and the median [range] of the training streams seen by the models the step cap
    stopped; '' without online runs."""
    rows = ["| column | setting | models | passed | step cap | stream budget | diverged | running | "
            "streams seen at the step cap, median [range] |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for net in networks_in(stats):
        for x in sorted({key[1] for key in stats if key[0] == net}, key=setting_order):
            got = [st["online_stops"] for (n, xx, _), st in stats.items()
                   if n == net and xx == x and st["online_stops"]]
            if got:
                tot = {k: sum(g[k] for g in got) for k in ("passed", "step_cap", "stream_budget", "diverged",
                                                           "running")}
                seen = sorted(v for g in got for v in g["step_cap_streams"])
                rows.append(f"| {net} | {x.replace('pfg ', 'pfg f_')} | {sum(tot.values())} | {tot['passed']} | "
                            f"{tot['step_cap']} | {tot['stream_budget']} | {tot['diverged']} | {tot['running']} | "
                            + (f"{millions(np.median(seen))} [{millions(seen[0])}–{millions(seen[-1])}]" if seen
                               else "-") + " |")
    return "\n".join(rows) if len(rows) > 2 else ""


def fig_claims_success(stats, path):
    """Successes (BPTT: at the best checkpoint; online: passes) per task setting and cell, one panel per network and
    learner, with the models still training. Returns the numbers shown."""
    nets = networks_in(stats)
    settings = sorted({key[1] for key in stats}, key=setting_order)
    fig, axes = plt.subplots(1, len(nets), figsize=(3.2 + 2.6 * len(nets), 0.42 * len(settings) + 1.6),
                             layout="constrained", sharey=True, squeeze=False)
    cmap, shown = plt.get_cmap("Greens"), {}
    for ax, net in zip(axes[0], nets):
        rate = np.full((len(settings), len(CELL_ORDER)), np.nan)
        for a, x in enumerate(settings):
            for b, cell in enumerate(CELL_ORDER):
                st = stats.get((net, x, cell))
                if st:
                    rate[a, b] = st["success_best"] / st["n"]
                    label = f"{st['success_best']}/{st['n']}" + (f"\n{st['running']} running" if st["running"] else "")
                    shown[f"{net} | {x} | {cell}"] = label.replace("\n", ", ")
                    ax.text(b, a, label, ha="center", va="center", fontsize=7.5 if not st["running"] else 6.5,
                            color="white" if rate[a, b] > 0.6 else "black")
                else:
                    ax.text(b, a, "not run", ha="center", va="center", fontsize=7, color="0.4")
        ax.set_facecolor("0.85")                        # not run: grey
        im = ax.imshow(rate, cmap=cmap, vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(CELL_ORDER)), CELL_ORDER, fontsize=8, rotation=20)
        ax.set_yticks(range(len(settings)), [x.replace("pfg ", "pfg f_") for x in settings], fontsize=8)
        ax.set_title(textwrap.fill(title_of(net), 28), fontsize=8.5)     # wrapped: the panels' titles fit
    fig.colorbar(im, ax=axes[0].tolist(), label="success rate (BPTT: best checkpoint; online: passes)", fraction=0.04)
    save(fig, path)
    return shown


def pick_best(records):
    """The run with the longest error-free run at its best checkpoint, then the lowest RMSE; None if none ran."""
    ok = [r for r in records if r["kind"] == "run"]
    return max(ok, key=lambda r: (r["run"]["best"]["run_units"], -r["run"]["best"]["rmse"]), default=None)


FREE_RUN_SETTINGS = ("gts F=10", "pfg cos F=10", "pfg tri F=10", "pfg rect F=10")
FREE_RUN_AT = 1000      # the second column starts after this many periods
FREE_RUN_SHOW = 3       # periods shown in each column


CLIP = (-0.3, 1.3)   # a free-run strip's range: outputs beyond it are drawn at its edge, with a marker


def fig_free_runs(runs, net, path):
    """Each generation task at F = 10 that column `net` ran: each cell's best model (best checkpoint) over a free
    run from the zero state, one strip per cell over the target, for its first periods and again after FREE_RUN_AT
    periods; a cell the column did not run says so. Returns the models shown ({} and no figure if it ran none)."""
    settings = [x for x in FREE_RUN_SETTINGS if any(runs.get((net, x, c)) for c in CELL_ORDER)]
    if not settings:
        return {}
    fig, axes = plt.subplots(len(settings), 2, figsize=(11, 2.3 * len(settings) + 0.9), layout="constrained",
                             sharey=True, squeeze=False)
    shown, step = {}, 1.8                               # strips: cell j's output around -step * j
    for row, x in zip(axes, settings):
        F = int(x.rsplit("=", 1)[1])
        for ax, start in zip(row, (0, FREE_RUN_AT * F)):
            ax.set_xlim(start, start + FREE_RUN_SHOW * F - 1)
        for j, cell in enumerate(CELL_ORDER):
            r = pick_best(runs.get((net, x, cell), []))
            if r is None:
                for ax in row:
                    ax.text(0.5, (len(CELL_ORDER) - 1 - j + 0.5) / len(CELL_ORDER), "not run", fontsize=7.5,
                            color="0.45", ha="center", va="center", transform=ax.transAxes)
                continue
            cfg = config_of(r["config"])
            s = tcs.stream_test(cfg, FREE_RUN_AT + FREE_RUN_SHOW)
            pred = tcs.free_run(best_params(r), tcs.net_of(cfg), s.x)
            shown[f"{x} | {cell}"] = {"seed": r["seed"], "run_units_best": r["run"]["best"]["run_units"],
                                      "success": r["run"]["best"]["success"]}
            for ax, start in zip(row, (0, FREE_RUN_AT * F)):
                t = np.arange(start, start + FREE_RUN_SHOW * F)
                ax.plot(t, s.y[t, 0] - step * j, color="black", lw=4.5, alpha=0.2, label="target")
                ax.plot(t, np.clip(pred[t], *CLIP) - step * j, color=COLORS[cell], lw=1.2,
                        label=f"{cell} (best run)")
                for side, edge, marker, what in ((pred[t] > CLIP[1], CLIP[1], "^", "clipped: above the strip"),
                                                 (pred[t] < CLIP[0], CLIP[0], "v", "clipped: below the strip"),
                                                 (np.isnan(pred[t]), 0.5, "x", "not a number (overflow)")):
                    if side.any():                     # an output the strip cannot show: a marker, never nothing
                        ax.plot(t[side], np.full(int(side.sum()), edge) - step * j, marker, color=COLORS[cell],
                                ms=3.5, ls="none", label=what)
        seeds = ", ".join(f"{c} {v['seed']}" for c in CELL_ORDER for k, v in shown.items() if k == f"{x} | {c}")
        for ax, start in zip(row, ("the first periods", f"after {FREE_RUN_AT} periods")):
            ax.set_title(f"{x}: {start}" + (f" (seeds: {seeds})" if start == "the first periods" else ""),
                         fontsize=8.5)
    axes[0][0].set_ylim(-step * (len(CELL_ORDER) - 1) - 0.55, 1.35)
    axes[0][0].set_yticks([-step * j + 0.5 for j in range(len(CELL_ORDER))], CELL_ORDER)
    for ax in axes.ravel():
        ax.tick_params(labelsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("time step of the free run (from the zero state)", fontsize=8)
    legend = {}                                         # every panel's lines, each label once, cells in order
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(lab, h)
    order = lambda lab: -1 if lab == "target" else CELL_ORDER.index(lab.split()[0]) if lab.split()[0] in CELL_ORDER \
        else len(CELL_ORDER) + len(lab)
    labels = sorted(legend, key=order)
    fig.legend([legend[lab] for lab in labels], labels, loc="outside lower center", ncol=len(labels), fontsize=8,
               frameon=False)
    fig.suptitle(f"{title_of(net)}: free runs of each cell's best model\none strip per cell, the output clipped to "
                 f"[{CLIP[0]}, {CLIP[1]}]", fontsize=9.5)
    save(fig, path)
    return shown


def fig_gts_mechanism(record, mech, path, periods=3):
    """One peephole GTS solution over `periods` periods after the first: its output, and the cell state and gates
    of the cell that resets best (the highest reset share, then output-gate share)."""
    cfg = config_of(record["config"])
    F = cfg.F
    s = tcs.stream_test(cfg, periods + 1)
    inner = internals(best_params(record), s.x, tcs.net_of(cfg))
    score = np.array(mech["reset"]) + 1e-3 * np.array(mech["open_at_spike"])
    k = int(np.argmax(score))
    t = np.arange(F, (periods + 1) * F)
    fig, axes = plt.subplots(3, 1, figsize=(8.5, 5.6), layout="constrained", sharex=True)
    axes[0].plot(t, inner["pred"][t, 0], color="tab:blue", lw=1.2, label="output")
    axes[0].set_ylabel("output", fontsize=8)
    axes[1].plot(t, inner["c"][t, k, 0], color="tab:red", lw=1.3, label=f"cell state c (cell {k})")
    axes[1].axhline(0, color="0.6", lw=0.6)
    axes[1].set_ylabel("c", fontsize=8)
    for name, col in (("i", "tab:green"), ("f", "tab:purple"), ("o", "tab:orange")):
        if inner[name] is not None:
            axes[2].plot(t, inner[name][t, k, 0], color=col, lw=1.2, label=f"{name} gate")
    axes[2].set_ylim(-0.05, 1.05)
    axes[2].set_ylabel("gate", fontsize=8)
    axes[2].set_xlabel("time step of the free run", fontsize=8)
    for ax in axes:
        for spike in t[s.ends[t, 0]]:
            ax.axvline(spike, color="0.8", lw=0.8, zorder=0)
        ax.legend(fontsize=7.5, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))   # beside, not on, the data
    axes[0].set_title(textwrap.fill(f"{title_of(network_of(record['config']))}: peephole cell, GTS F={F}, seed "
                                    f"{record['seed']}, cell {k}; grey lines: the target's spikes", 100) +
                      f"\nover periods 2-51 of the free run: the cell resets "
                      f"(i and f shut, |c| drops) at {mech['reset'][k]:.0%} of the spikes;\nits output gate is open "
                      f"(o > 0.5) at {mech['open_at_spike'][k]:.0%} of the spikes and shut (o < 0.5) at "
                      f"{mech['closed_elsewhere'][k]:.0%} of the other steps", fontsize=8.5)
    save(fig, path)
    spikes = t[s.ends[t, 0]]
    spikes = spikes[spikes + 1 <= t[-1]]
    at = lambda name, shift: round(float(np.median(inner[name][spikes + shift, k, 0])), 3)
    return {"seed": record["seed"], "F": F, "network": network_of(record["config"]), "cell": k,
            "reset": mech["reset"][k], "open_at_spike": mech["open_at_spike"][k],
            "closed_elsewhere": mech["closed_elsewhere"][k],
            "median_over_the_shown_spikes": {"f_at_spike": at("f", 0), "f_after": at("f", 1), "i_at_spike": at("i", 0),
                                             "i_after": at("i", 1), "c_at_spike": at("c", 0), "c_after": at("c", 1),
                                             "o_at_spike": at("o", 0)},
            "o_min_shown": round(float(inner["o"][t, k, 0].min()), 3),
            "c_max_shown": round(float(np.abs(inner["c"][t, k, 0]).max()), 3)}


# ----------------------------------------------------------------------------------------------------------------
# The online learner's recipe search: learning rate x momentum per task family -> results/recipe_search.json,
# viz/recipe_search.png, and every pass's margin to the tolerance -> viz/pass_margins.png
# ----------------------------------------------------------------------------------------------------------------

def recipe_key(config):
    """A search record's recipe: (learning rate, momentum)."""
    return float(config["lr"]), float(config["momentum"])


def paper_distance(lr, momentum, task):
    """How far a recipe is from the paper's (lr 1e-5 and the task's momentum): decades of the learning rate plus
    decades of 1 - momentum, the momentum's time scale (momentum 0 counts as 1 - momentum = 1)."""
    paper_m = tcs.RTRL_MOMENTUM[task]
    return abs(math.log10(lr / tcs.RTRL_DEFAULTS["lr"])) + abs(math.log10((1 - momentum) / (1 - paper_m)))


def recipe_search(journals, outdir, out_json):
    """The recipe search's table per task family (GTS, PFG, the MSD stream): per recipe and cell the models that
    passed, their steps to the first pass and their margins, and the searched recipe: the most passes over both
    cells, ties to the recipe nearest the paper's. Writes out_json, viz/recipe_search.png and pass_margins.png;
    returns the Markdown."""
    groups = {}
    for path in journals:
        for r in tcs.read_journal(path)[1]:
            if r["config"].get("learner") != "rtrl":
                continue
            fam = setting_name(r["config"])
            groups.setdefault(fam, {}).setdefault(recipe_key(r["config"]), {}).setdefault(r["cell"], []).append(r)
    if not groups:
        raise tcs.BadGrid(f"no online runs in {', '.join(journals)}")
    out, md = {"journals": list(journals), "families": {}}, []
    for fam in sorted(groups, key=setting_order):
        recipes, task = groups[fam], fam.split()[0]
        tol = tcs.TASKS[task].tol
        rows = []
        for (lr, mom), cells in sorted(recipes.items()):
            row = {"lr": lr, "momentum": mom, "distance_to_paper": round(paper_distance(lr, mom, task), 3)}
            for cell, recs in sorted(cells.items(), key=lambda kv: CELL_ORDER.index(kv[0])):
                on = [x["run"]["online"] for x in recs if x["kind"] == "run"]
                passes = [o for o in on if o["outcome"] == "passed"]
                worst = [o["test_max_error"] for o in passes]
                row[cell] = {"models": len(recs), "diverged": len(recs) - len(on), "passed": len(passes),
                             "training_successes": sum(o["first_train_success"] is not None for o in on),
                             "steps_to_first_pass": sorted(o["first_pass"]["steps"] for o in passes),
                             "test_max_error": sorted(worst), "at_0.15": sum(w < tcs.STRICT_TOL for w in worst),
                             "within_0.01": sum(tol - w < 0.01 for w in worst),
                             "second_stream": sum(o["second_test"]["passed"] for o in passes if "second_test" in o)}
            rows.append(row)
        cells = [c for c in CELL_ORDER if any(c in r for r in rows)]
        total = lambda r: sum(r[c]["passed"] for c in cells if c in r)
        best = min(rows, key=lambda r: (-total(r), r["distance_to_paper"]))
        out["families"][fam] = {"tolerance": tol, "rows": rows, "searched": {"lr": best["lr"],
                                "momentum": best["momentum"], "passed": total(best)} if total(best) else None}
        moms = sorted({r["momentum"] for r in rows})
        md += [f"{fam} (tolerance {tol}): models passed of those run, {' / '.join(cells)}; a diverged model "
               "counts as not passed", "",
               "| lr \\ momentum | " + " | ".join(f"{m:g}" for m in moms) + " |",
               "|---:|" + "---:|" * len(moms)]
        for lr in sorted({r["lr"] for r in rows}):
            cellv = []
            for m in moms:
                r = next((x for x in rows if x["lr"] == lr and x["momentum"] == m), None)
                v = " / ".join(f"{r[c]['passed']}/{r[c]['models']}" for c in cells) if r else "–"
                cellv.append(f"**{v}**" if r is best and total(best) else v)
            md.append(f"| {lr:g} | " + " | ".join(cellv) + " |")
        md.append("")
        md.append(f"Searched recipe: lr {best['lr']:g}, momentum {best['momentum']:g} ({total(best)} passes)"
                  if total(best) else "Searched recipe: none (no recipe passed a model)")
        md.append("")
    for fam, f in out["families"].items():
        passes = [(r["lr"], r["momentum"], c, r[c]) for r in f["rows"] for c in CELL_ORDER if c in r and r[c]["passed"]]
        if passes:
            md += [f"{fam}, the recipes that passed: per cell the passes, at 0.15 / within 0.01 of the tolerance"
                   + (" / on the second stream" if fam.startswith("delays") else "") + ", steps to the first pass "
                   "(median [range]) and the passes' largest |error|", "",
                   "| lr | momentum | cell | passed | of them | steps to the first pass | largest \\|error\\| |",
                   "|---:|---:|---|---:|---:|---:|---:|"]
            for lr, m, c, x in passes:
                st, w = x["steps_to_first_pass"], x["test_max_error"]
                extra = f" / {x['second_stream']}" if fam.startswith("delays") else ""
                md.append(f"| {lr:g} | {m:g} | {c} | {x['passed']}/{x['models']} | {x['at_0.15']} / {x['within_0.01']}"
                          f"{extra} | {np.median(st) / 1e6:.2f} M [{st[0] / 1e6:.2f}–{st[-1] / 1e6:.2f}] "
                          f"| {np.median(w):.3f} [{w[0]:.3f}–{w[-1]:.3f}] |")
            md.append("")
    tcs.write_json(out_json, out)
    fig_recipe_search(out, os.path.join(outdir, "recipe_search.png"))
    margins = fig_pass_margins(journals, os.path.join(outdir, "pass_margins.png"))
    add_facts(outdir, recipe_search={"journals": list(journals), "searched": {f: v["searched"] for f, v in
                                                                            out["families"].items()}},
              pass_margins=margins)
    return "\n".join(md).rstrip()


def fig_recipe_search(res, path):
    """One panel per task family and cell: the models passed per learning rate (rows) and momentum (columns)."""
    fams = list(res["families"])
    cells = [c for c in CELL_ORDER if any(c in r for f in fams for r in res["families"][f]["rows"])]
    fig, axes = plt.subplots(len(fams), len(cells), figsize=(3.6 * len(cells) + 1.2, 2.7 * len(fams) + 0.8),
                             layout="constrained", squeeze=False)
    top = max([r[c]["models"] for f in fams for r in res["families"][f]["rows"] for c in cells if c in r] or [1])
    for row, fam in zip(axes, fams):
        rows = res["families"][fam]["rows"]
        lrs, moms = sorted({r["lr"] for r in rows}), sorted({r["momentum"] for r in rows})
        for ax, cell in zip(row, cells):
            grid = np.full((len(lrs), len(moms)), np.nan)
            for r in rows:
                if cell in r:
                    grid[lrs.index(r["lr"]), moms.index(r["momentum"])] = r[cell]["passed"]
            im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=top, origin="lower", aspect="auto")
            for (a, b), v in np.ndenumerate(grid):
                if v == v:
                    ax.text(b, a, f"{int(v)}", ha="center", va="center", fontsize=8,
                            color="white" if v < 0.6 * top else "black")
            ax.set_xticks(range(len(moms)), [f"{m:g}" for m in moms], fontsize=7.5)
            ax.set_yticks(range(len(lrs)), [f"{x:g}" for x in lrs], fontsize=7.5)
            ax.set_title(f"{fam}, {cell}", fontsize=9)
            ax.set_xlabel("momentum", fontsize=8)
            ax.set_ylabel("learning rate", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.8, label=f"models that passed (of {top})")
    fig.suptitle("The online learner's recipe search under the paper's success rule: passes per recipe",
                 fontsize=10)
    save(fig, path)


def pass_margin(record):
    """A passed online record's largest |pred - y| over its passing test, and how it is known: "recorded" by the
    learner, or "re-scored" (a journal from before margins: the passing weights' free run over the same test
    stream, by the BPTT learner's forward pass, which may differ from the learner's in the last digits)."""
    o = record["run"]["online"]
    if o.get("test_max_error") is not None:
        return o["test_max_error"], "recorded"
    return free_run_max_errors([record])[0], "re-scored"


def free_run_max_errors(records):
    """The largest |pred - y| of each run's best weights run free over its test stream's first test_units units:
    records of one setting and network (one test stream), their free runs batched into one (a model axis)."""
    cfg = config_of(records[0]["config"])
    s = tcs.stream_test(cfg, cfg.test_units)
    P = [best_params(r) for r in records]
    params = {k: np.stack([p[k] for p in P]) for k in P[0]} if len(P) > 1 else P[0]
    pred = tcs.free_run(params, tcs.net_of(cfg), s.x, M=len(P))
    return np.abs(pred.reshape(len(s.x), len(P)) - s.y[:, :1]).max(axis=0).tolist()


def success_max_error(record):
    """A success's largest |error| over its test: an online pass's margin (pass_margin()), a BPTT success's free
    run of its best checkpoint (free_run_max_errors()); kept in the record ("max_error") once known."""
    if "max_error" not in record:
        record["max_error"] = (pass_margin(record)[0] if "online" in record["run"] else
                               free_run_max_errors([record])[0])
    return record["max_error"]


def attach_max_errors(records):
    """success_max_error() of a group's successes, the free runs they need batched into one."""
    todo = [r for r in records if passed(r) and "max_error" not in r and not (
        "online" in r["run"] and r["run"]["online"].get("test_max_error") is not None)]
    for r, w in zip(todo, free_run_max_errors(todo) if todo else []):
        r["max_error"] = w
    return [success_max_error(r) for r in records if passed(r)]


def all_records(journal):
    """A journal's finished records and those of its jobs in flight (checkpoint_records())."""
    return tcs.read_journal(journal)[1] + checkpoint_records(journal)


def group_of(record):
    return network_of(record["config"]), setting_name(record["config"]), record["cell"]


def online_passes(journals, skip=frozenset()):
    """Every passed online model of the journals (finished or in flight) with its margin (pass_margin()),
    setting, cell and recipe; skip: (journal name, group) pairs left out (GAVE_WAY)."""
    pts = []
    for p in journals:
        for r in all_records(p):
            if (os.path.basename(p), group_of(r)) in skip:
                continue
            o = r["run"].get("online") if r["kind"] == "run" else None
            if o and o["outcome"] == "passed":
                worst, how = pass_margin(r)
                pts.append({"journal": os.path.basename(p), "setting": setting_name(r["config"]), "cell": r["cell"],
                            "seed": r["seed"], "lr": r["config"]["lr"], "momentum": r["config"]["momentum"],
                            "protocol": r["config"].get("protocol", "every-stream"), "test_max_error": worst,
                            "margin_is": how, "tolerance": tcs.TASKS[r["config"]["task"]].tol})
    return pts


def margins_markdown(journals, skip=frozenset()):
    """Per online claims column, setting and cell with passes: the passes, how many had a training success before
    them, how many lie within 0.01 of the tolerance and below 0.15, how many (MSD streams) also pass a second test
    stream, and their largest |error|; skip: (journal name, group) pairs left out (GAVE_WAY)."""
    rows, by = [], {}
    for p in journals:
        for r in all_records(p):
            o = r["run"].get("online") if r["kind"] == "run" else None
            if o and o["outcome"] == "passed" and (os.path.basename(p), group_of(r)) not in skip:
                by.setdefault(group_of(r), []).append((r, pass_margin(r)[0]))
    for (net, x, c), got in sorted(by.items(), key=lambda kv: (column_order(kv[0][0]), setting_order(kv[0][1]),
                                                                  CELL_ORDER.index(kv[0][2]))):
        tol = tcs.TASKS[x.split()[0]].tol
        ws = sorted(w for _, w in got)
        trained = sum(r["run"]["online"]["first_train_success"] is not None for r, _ in got)
        second = [r["run"]["online"].get("second_test") for r, _ in got]
        both = f"{sum(t['passed'] for t in second if t)}" if all(second) else "–"
        rows.append(f"| {net} | {x} | {c} | {len(got)} | {trained} | {sum(tol - w < 0.01 for w in ws)} "
                    f"| {sum(w < tcs.STRICT_TOL for w in ws)} | {both} "
                    f"| {np.median(ws):.3f} [{ws[0]:.3f}–{ws[-1]:.3f}] |")
    if not rows:
        return ""
    head = ("| column | setting | cell | passes | of them with a training success before | within 0.01 of the "
            "tolerance | below 0.15 | also on a second test stream | largest \\|error\\|, median [range] |")
    return "\n".join([head, "|---|---|---|---:|---:|---:|---:|---:|---:|", *rows])


def fig_pass_margins(journals, path, skip=frozenset()):
    """Every passed online model's largest |error| over its passing test, against its task's tolerance (and the
    stricter 0.15), a row per setting, cell and recipe (online_passes()). Returns the numbers shown."""
    pts = online_passes(journals, skip)
    row = lambda p: (p["setting"], p["cell"], f"lr {p['lr']:g}, momentum {p['momentum']:g}")
    labels = sorted({row(p) for p in pts}, key=lambda k: (setting_order(k[0]), CELL_ORDER.index(k[1]), k[2]))
    fig, ax = plt.subplots(figsize=(9.5, 1.6 + 0.45 * len(labels)), layout="constrained")
    for y, (s, c, recipe) in enumerate(labels):
        mine = [p for p in pts if row(p) == (s, c, recipe)]
        for protocol, face in (("paper", COLORS[c]), ("every-stream", "none")):
            xs = sorted(p["test_max_error"] for p in mine if p["protocol"] == protocol)
            if xs:                                     # filled: the paper's rule; open: a test after every stream
                k = np.arange(len(xs)) % 5                  # spread a little around the row, so equal values show
                ys = y + 0.15 * (k - (min(len(xs), 5) - 1) / 2)
                ax.plot(xs, ys, "o", mec=COLORS[c], mfc=face, ms=5, alpha=0.8, label=f"{c}, --protocol {protocol}")
        ax.plot([mine[0]["tolerance"]] * 2, [y - 0.4, y + 0.4], color="black", lw=1.5,
                label="the task's tolerance")
    ax.axvline(tcs.STRICT_TOL, color="0.5", ls="--", lw=1, label=f"the paper's stricter {tcs.STRICT_TOL}")
    ax.set_yticks(range(len(labels)), [f"{s}, {c}, {r}" for s, c, r in labels], fontsize=8)
    ax.set_xlim(0, 0.55)
    ax.set_xlabel("largest |pred − y| over the passing 1000-unit test")
    handles = {}
    for h, lab in zip(*ax.get_legend_handles_labels()):
        handles.setdefault(lab, h)
    ax.legend(handles.values(), handles.keys(), fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False)
    ax.set_title(f"Every passed model's margin: {len(pts)} passes" if pts else "No pass recorded a margin",
                 fontsize=9.5)
    if not labels:
        ax.set_yticks([])
    save(fig, path)
    return pts



def same_numbers(a, b, rel=1e-9):
    """a and b (JSON values) equal, their floats to a relative rel: what another CPU's last digits leave alone."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_numbers(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_numbers(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and (
            math.isclose(a, b, rel_tol=rel) or (math.isnan(a) and math.isnan(b)))
    return a == b


def robust_verdicts(stats, mech):
    """claim_verdicts() that says only what holds whatever the models still training do: each verdict is computed
    with them all failing and all succeeding, and is "running" where the two differ. Each network's verdict and the
    claim's also get "at_0.15": the same, counting only successes whose test's largest |error| is below the paper's
    stricter STRICT_TOL."""
    def counted(running, strict):
        return {k: {**st, "success_best": st["success_strict" if strict else "success_best"]
                    + (st["running"] if running else 0)} for k, st in stats.items()}
    low, high, slow, shigh = (claim_verdicts(counted(r, x), mech) for x in (False, True) for r in (False, True))
    for c, h, sl, sh in zip(low, high, slow, shigh):
        for net, v in c["networks"].items():
            if v["verdict"] != h["networks"][net]["verdict"]:
                v["verdict"], v["measured"] = "running", v["measured"] + "; models still training decide it"
            a, b = sl["networks"][net]["verdict"], sh["networks"][net]["verdict"]
            v["at_0.15"] = a if a == b else "running"
        c["verdict"] = c["verdict"] if c["verdict"] == h["verdict"] else "running"
        c["verdict_at_0.15"] = sl["verdict"] if sl["verdict"] == sh["verdict"] else "running"
    return low


def power(n):
    """10000000 -> '10^7'; other numbers as they are."""
    e = round(math.log10(n)) if n > 0 else 0
    return f"10^{e}" if 10 ** e == n else f"{n:,}"


def budgets_markdown(runs, filled, nets):
    """What the online groups of the columns nets rest on: their rule, budget a model (training streams, step
    cap), journal, the models finished and still training; groups filled from an every-stream column
    (fill_from_every_stream()) say so. Settings that rest on the same alike are one row."""
    rows = {}
    for (net, x, cell), recs in sorted(runs.items(), key=lambda kv: (setting_order(kv[0][1]),
                                                                      CELL_ORDER.index(kv[0][2]))):
        if net not in nets or " online" not in net:
            continue
        cfg = recs[0]["config"]
        rule = ("every-stream, no pass (so none under the paper's rule)" if (net, x, cell) in filled else
                cfg.get("protocol", "every-stream"))
        key = (net, rule, f"{power(cfg['max_streams'])} streams, {power(cfg['max_steps'])} steps",
               ", ".join(sorted({r["journal"] for r in recs})))
        rows.setdefault(key, {}).setdefault(x, []).append((cell, recs))
    out = []
    for (net, rule, budget, journal), by in sorted(rows.items(), key=lambda kv: column_order(kv[0][0])):
        shapes = {}
        for x, got in by.items():                       # settings with the same cells: one row
            shapes.setdefault(tuple(c for c, _ in got), []).append(x)
        for cells, xs in shapes.items():
            recs = [r for x in xs for c, rr in by[x] for r in rr]
            run = [r["streams"] for r in recs if r["kind"] == "running"]
            left = f"{len(run)} ({min(run) / 1e6:.2f}–{max(run) / 1e6:.2f} M streams so far)" if run else "0"
            out.append(f"| {net} | {'; '.join(x.replace('pfg ', 'pfg f_') for x in xs)} | {', '.join(cells)} | "
                       f"{rule} | {budget} | {len(recs) - len(run)} | {left} | {journal} |")
    head = ("| column | settings | cells | rule | budget a model | finished | still training | journal |\n"
            "|---|---|---|---|---|---:|---|---|")
    return head + "\n" + "\n".join(out) if out else ""


PAPER_MECHANISM = {   # what the paper [N] says a solution of each task family does, and how it is checked here
    "gts": ("input and forget gates shut together at each spike (c reset to 0); output gate open only at the spike",
            lambda m: m["resets"] and m["gates_at_spike"]),
    "delays": ("vanilla: output gate open (ramping, or oscillating and counting); peephole: output gate mostly shut",
               lambda m: (m["mean_o"] > 0.5) == (m["cell"] == "vanilla") if m["cell"] in ("peephole", "vanilla")
               else None),
    "pfg": ("none described", None)}


def best_margin_mechanisms(runs, nets):
    """Per setting that a one-cell column of nets solved (the paper's network: its one cell is the mechanism):
    its success with the smallest largest |error| over the test (success_max_error()), its gates and cell state
    over periods 2 to 51 (GTS, PFG) or intervals 2 to 51 (MSD streams) of a free run (means at the target's unit
    ends and elsewhere; GTS: the reset shares of gate_mechanism(); MSD: whether c ramps through the intervals), and
    whether that is what the paper describes (PAPER_MECHANISM)."""
    out = {}
    for x in sorted({key[1] for key in runs}, key=setting_order):
        cands = [r for (net, xx, _), recs in runs.items() if xx == x and net in nets and net.startswith("one-cell")
                 for r in recs if passed(r)]
        if not cands:
            continue
        r = min(cands, key=lambda r: (success_max_error(r), r["seed"]))
        cfg = config_of(r["config"])
        s = tcs.stream_test(cfg, 51)
        inner = internals(best_params(r), s.x, tcs.net_of(cfg))
        first = int(np.flatnonzero(s.ends[:, 0])[0]) + 1             # after the first unit's end
        k = slice(first, None)
        ends = np.flatnonzero(s.ends[k, 0])
        rest = np.ones(len(s.ends[k]), bool)
        rest[ends] = False
        f = inner["f"][k, 0, 0] if inner["f"] is not None else None
        gates = {g: inner[g][k, 0, 0] for g in ("i", "o")}
        if f is not None:
            gates["f"] = f
        m = {"column": network_of(r["config"]), "cell": r["cell"], "seed": r["seed"], "journal": r["journal"],
             "max_error": round(success_max_error(r), 4), "tolerance": tcs.TASKS[cfg.task].tol,
             **{f"mean_{g}_at_unit_end": round(float(v[ends].mean()), 3) for g, v in gates.items()},
             **{f"mean_{g}_elsewhere": round(float(v[rest].mean()), 3) for g, v in gates.items()},
             "mean_g_at_unit_end": round(float(inner["g"][k, 0, 0][ends].mean()), 3),
             "mean_g_elsewhere": round(float(inner["g"][k, 0, 0][rest].mean()), 3),
             "mean_o": round(float(gates["o"].mean()), 3),
             "c_range": [round(float(inner["c"][k, 0, 0].min()), 3), round(float(inner["c"][k, 0, 0].max()), 3)]}
        if cfg.task == "gts":
            g = gate_mechanism(inner["c"][k, :, 0], inner["i"][k, :, 0], f[:, None] if f is not None else None,
                               inner["o"][k, :, 0], ends)
            m.update(reset=g["reset"][0], open_at_spike=g["open_at_spike"][0], closed_elsewhere=g["closed_elsewhere"][0],
                     resets=g["resets"], gates_at_spike=g["gates_at_spike"])
        if cfg.task == "delays":
            m["ramps"] = bool(ramping_models([r])[0])
        text, check = PAPER_MECHANISM[cfg.task]
        m["paper"], m["as_the_paper"] = text, (check(m) if check else None)
        m["as_the_paper"] = None if m["as_the_paper"] is None else bool(m["as_the_paper"])
        out[x] = m
    return out


def mechanism_markdown(mechs):
    rows = ["| setting | best-margin solution | largest \\|error\\| (tolerance) | gates at the target's unit ends: "
            "i, f, o | elsewhere: i, f, o | cell input g: at the ends, elsewhere | cell state c | the paper's "
            "description | as described |", "|---|---|---|---|---|---|---|---|---|"]
    for x, m in mechs.items():
        g = lambda where: ", ".join(f"{m[f'mean_{q}_{where}']:.2f}" if f"mean_{q}_{where}" in m else "–"
                                    for q in "ifo")
        c = f"{m['c_range'][0]:.2f} to {m['c_range'][1]:.2f}"
        if "reset" in m:
            c += (f"; i and f shut with c near 0 at {m['reset']:.0%} of the spikes; o open at "
                  f"{m['open_at_spike']:.0%} of them, shut at {m['closed_elsewhere']:.0%} of the other steps")
        if "ramps" in m:
            c += "; ramps through the intervals" if m["ramps"] else "; no ramp through the intervals"
        yes = {True: "yes", False: "no", None: "–"}[m["as_the_paper"]]
        rows.append(f"| {x.replace('pfg ', 'pfg f_')} | {m['column']}, {m['cell']}, seed {m['seed']} | "
                    f"{m['max_error']:.3f} ({m['tolerance']}) | {g('at_unit_end')} | {g('elsewhere')} | "
                    f"{m['mean_g_at_unit_end']:.2f}, {m['mean_g_elsewhere']:.2f} | {c} | "
                    f"{m['paper']} | {yes} |")
    return "\n".join(rows)


def fig_best_margins(runs, mechs, path, units=3):
    """Each setting's best-margin solution (best_margin_mechanisms()) over `units` units after the first: a row per
    setting, its output against the target, its cell state, its gates."""
    fig, axes = plt.subplots(len(mechs), 3, figsize=(11, 1.9 * len(mechs) + 0.8), layout="constrained",
                             squeeze=False)
    for row, (x, m) in zip(axes, mechs.items()):
        r = next(r for (net, xx, c), recs in runs.items() if xx == x and net == m["column"] and c == m["cell"]
                 for r in recs if r["kind"] == "run" and r["seed"] == m["seed"])
        cfg = config_of(r["config"])
        s = tcs.stream_test(cfg, units + 1)
        inner = internals(best_params(r), s.x, tcs.net_of(cfg))
        t = np.arange(int(np.flatnonzero(s.ends[:, 0])[0]) + 1, len(s.ends))
        row[0].plot(t, s.y[t, 0], color="0.55", lw=2.2, label="target")
        row[0].plot(t, inner["pred"][t, 0], color="black", lw=1.0, label="output")
        row[1].plot(t, inner["c"][t, 0, 0], color="tab:red", lw=1.2, label="cell state c")
        row[1].axhline(0, color="0.7", lw=0.6, zorder=0)
        for g, col in (("i", "tab:green"), ("f", "tab:purple"), ("o", "tab:orange")):
            if inner[g] is not None:
                row[2].plot(t, inner[g][t, 0, 0], color=col, lw=1.1, label=f"{g} gate")
        row[2].set_ylim(-0.05, 1.05)
        row[0].set_ylabel(x.replace("pfg ", "pfg f_").replace("delays", "MSD stream"), fontsize=8)
        for ax in row:
            for e in t[s.ends[t, 0]]:
                ax.axvline(e, color="0.85", lw=0.8, zorder=0)
            ax.tick_params(labelsize=7)
        row[0].set_title(f"{title_of(m['column'], short=True)}, {m['cell']}, seed {m['seed']}: largest |error| "
                         f"{m['max_error']:.3f} (tol {m['tolerance']})", fontsize=7.5, loc="left")
    for ax, what in zip(axes[0], ("output", "cell state", "gates")):
        ax.legend(fontsize=7, frameon=False, loc="lower left", bbox_to_anchor=(0, 1.12), ncol=3)
    for ax in axes[-1]:
        ax.set_xlabel("time step of the free run (grey: the target's unit ends)", fontsize=7.5)
    save(fig, path)


def claims(journals, outdir, out_json):
    """The claims table (printed, and in out_json), the success heatmap, the free runs, the GTS mechanism figure
    and the best-margin solutions' mechanisms from the claims grids' journals, finished or in flight: a column per
    network and learner, the online learner under the paper's rule (its every-stream columns: the sensitivity table;
    their groups without a pass stand for the paper's rule where it was not run, fill_from_every_stream()). Their
    numbers in facts.json under "claims"."""
    runs, filled = fill_from_every_stream(claims_runs(journals))
    nets = networks_in(runs)
    main = [n for n in nets if "every-stream" not in n]
    online = [n for n in nets if " online" in n]
    stats = {key: group_stats(recs) for key, recs in sorted(runs.items())}
    gts_runs = lambda net, cell: [r for x in ("gts F=10", "gts F=25", "gts F=50") for r in runs.get((net, x, cell), [])]
    mech = {net: {**{f"gts_{cell}": gts_mechanisms(gts_runs(net, cell)) for cell in ("peephole", "vanilla")},
                  "msd_output_gate": {cell: mean_output_gate(runs.get((net, "delays F=10 I=0,1,2", cell), []))
                                      for cell in ("peephole", "vanilla")},
                  "msd_ramps": {cell: ramping_models(runs.get((net, "delays F=10 I=0,1,2", cell), []))
                                for cell in ("peephole", "vanilla")}}
            for net in nets}
    table = robust_verdicts({k: st for k, st in stats.items() if k[0] in main}, mech)
    sensitivity = robust_verdicts({k: st for k, st in stats.items() if k[0] in online}, mech) \
        if any("every-stream" in n for n in online) else None
    mechs = best_margin_mechanisms(runs, main)
    os.makedirs(outdir, exist_ok=True)
    facts = {"success": fig_claims_success({k: st for k, st in stats.items() if k[0] in main},
                                           os.path.join(outdir, "claims_success.png"))}
    for net in main:
        name = f"free_runs_{slug(net)}"
        shown = fig_free_runs(runs, net, os.path.join(outdir, name + ".png"))
        if shown:
            facts[name] = shown
    facts["mechanism"] = {net: {cell: {"solutions": len(m), "resets": sum(x["resets"] for x in m),
                                       "gates_at_spike": sum(x["gates_at_spike"] for x in m)}
                                for cell in ("peephole", "vanilla") for m in [mech[net][f"gts_{cell}"]]}
                          for net in nets}
    facts["mechanism_shown"] = {}
    for net in (n for n in main if mech[n]["gts_peephole"]):          # each column with a peephole GTS solution
        ms = mech[net]["gts_peephole"]
        solved = [r for r, *_ in solutions(gts_runs(net, "peephole"), 1)]  # the same runs, in the same order
        j = max(range(len(ms)), key=lambda j: (ms[j]["resets"] + ms[j]["gates_at_spike"], max(ms[j]["reset"])))
        facts["mechanism_shown"][net] = fig_gts_mechanism(solved[j], ms[j],
                                                          os.path.join(outdir, f"gts_mechanism_{slug(net)}.png"))
    if mechs:
        fig_best_margins(runs, mechs, os.path.join(outdir, "best_margin_mechanisms.png"))
    facts["best_margin_mechanisms"] = mechs
    add_facts(outdir, claims=facts)
    new = {"journals": list(journals), **tcs.versions(), "stats": {" | ".join(key): st for key, st in stats.items()},
           "filled_from_every_stream": [" | ".join(k) for k in sorted(filled)],
           "superseded": list(SUPERSEDED.values()), "mechanism": mech,
           "best_margin_mechanisms": mechs, "claims": table, "sensitivity": sensitivity}
    try:
        with open(out_json) as fh:
            old = json.load(fh)
    except (OSError, ValueError):
        old = None
    if old is not None and all(same_numbers(old.get(k), json.loads(json.dumps(new[k]))) for k in
                               ("journals", "stats", "mechanism", "claims", "sensitivity", "best_margin_mechanisms")):
        print(f"{out_json}: the same table and numbers (to 9 digits): left as it is")   # another CPU's last digits
    else:
        tcs.write_json(out_json, new)
    print("The verdicts (n.r.: not reproduced by that training; –: not run; running: models still training decide "
          f"it; at {tcs.STRICT_TOL}: counting only successes whose test's largest |error| is below "
          f"{tcs.STRICT_TOL}):\n\n" + verdict_markdown(table) + "\n\nThe claims table:\n\n" + claims_markdown(table))
    if sensitivity:
        print("\nThe online learner's verdicts under each success rule (every-stream: any test after any training "
              "stream passes):\n\n" + verdict_markdown(sensitivity, overall=False))
    budgets = budgets_markdown(runs, filled, main)
    if budgets:
        print("\nWhat each online group under the paper's rule rests on:\n\n" + budgets)
    if SUPERSEDED:
        print("\nGroups run at two budgets, shown at the larger:\n\n" + "\n".join(f"- {v}" for v in
                                                                               SUPERSEDED.values()))
    if mechs:
        print("\nEach setting's best-margin solution (the success with the smallest largest |error| over its test, "
              "any column under the paper's rule) over units 2 to 51 of a free run:\n\n" + mechanism_markdown(mechs))
    first = first_success_markdown({k: st for k, st in stats.items() if k not in filled})
    if first:
        print("\nTo the first success (successes of the runs, then the median [range] over the successful runs of the "
              "training time steps, and for the online learner the training streams, before the first passed "
              "test):\n\n" + first)
    margins = margins_markdown(journals, GAVE_WAY)
    if margins:                                  # and the figure of every pass's margin
        add_facts(outdir, pass_margins_claims=fig_pass_margins(journals, os.path.join(outdir,
                                                                                     "pass_margins_claims.png"),
                                                               GAVE_WAY))
        print("\nThe online learner's passes: how many had a training success before them (the paper's rule needs "
              "one right before), and how far inside the tolerance they are (their test's largest |error|; a pass "
              "from before margins were recorded is re-scored by its free run):\n\n" + margins)
    stops = stops_markdown({k: st for k, st in stats.items() if k not in filled})
    if stops:
        print("\nHow the online learner's models stopped (at the step cap: their recipe's max_steps training "
              "steps; at the stream budget: its max_streams training streams; running: still training):\n\n" + stops)


# ----------------------------------------------------------------------------------------------------------------
# The online learner (--learner rtrl): learning curves from journals -> viz/online_curves_NAME.png and its facts
# ----------------------------------------------------------------------------------------------------------------

def online_curves(journals, outdir, settings=("gts F=10", "pfg cos F=10"), cells=("peephole", "vanilla")):
    """One row per online learner's recipe (claims column) in the journals, one panel per setting: for each cell,
    the run with the longest training stream (most units, then the longest length, then the lowest seed), its
    training streams' mean and longest length per bin of streams against the streams seen, log axes. Writes
    viz/online_curves_<first journal's name>.png; returns (its path, the facts of the models shown)."""
    runs = {}
    for path in journals:
        for rec in tcs.read_journal(path)[1]:
            if rec["kind"] == "run" and "online" in rec["run"]:
                runs.setdefault((network_of(rec["config"]), setting_name(rec["config"]), rec["cell"]), []).append(rec)
    nets = networks_in(key for key in runs if key[1] in settings and key[2] in cells)
    if not nets:
        raise tcs.BadGrid(f"no online runs of {', '.join(settings)} in {', '.join(journals)}")
    fig, axes = plt.subplots(len(nets), len(settings), figsize=(5.2 * len(settings), 0.6 + 3.5 * len(nets)),
                             sharex=True, sharey=True, squeeze=False, layout="constrained")
    facts = {}
    for row, net in zip(axes, nets):
        for ax, x in zip(row, settings):
            F = int(x.rsplit("=", 1)[1])
            unit = {"gts": "spikes", "pfg": "periods", "delays": "intervals"}[x.split()[0]]
            ax.axhline(tcs.TRAIN_UNITS * F, color="0.5", lw=0.8, ls=":",
                       label=f"a training success ({tcs.TRAIN_UNITS} {unit})")
            for cell in cells[::-1]:
                recs = runs.get((net, x, cell))
                if not recs:
                    ax.text(0.5, 0.3 + 0.1 * cells.index(cell), f"{cell}: not run", transform=ax.transAxes,
                            ha="center", fontsize=8, color="0.45")
                    continue
                rec = max(recs, key=lambda r: (r["run"]["online"]["longest_units"],
                                               r["run"]["online"]["longest_length"], -r["seed"]))
                o = rec["run"]["online"]
                c = o["curve"]
                first = np.cumsum([0] + c["streams"][:-1]) + 1          # each bin's first stream: 1, 2, 4, ...
                mid = np.sqrt(first * (first + np.array(c["streams"]) - 1))
                wide = cell != cells[0]                     # drawn first and wider: the first cell's lines on top
                ax.plot(mid, c["mean_length"], color=COLORS[cell], lw=3.2 if wide else 1.4,
                        alpha=0.55 if wide else 1, zorder=1 if wide else 2, label=f"{cell} (seed {rec['seed']}): mean")
                ax.plot(mid, c["max_length"], color=COLORS[cell], lw=2.4 if wide else 1.0, ls="--",
                        alpha=0.55 if wide else 1, zorder=1 if wide else 2, label=f"{cell}: longest")
                facts[f"{net} | {x} | {cell}"] = {
                    "seed": rec["seed"], "runs": len(recs), "outcome": o["outcome"], "streams": o["streams"],
                    "steps": o["steps"], "longest_units": o["longest_units"], "longest_length": o["longest_length"],
                    "mean_length_first_bin": c["mean_length"][0], "mean_length_last_bin": c["mean_length"][-1],
                    "passed": sum(r["run"]["online"]["outcome"] == "passed" for r in recs)}
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_title(f"{x.replace('pfg cos', 'PFG f_cos').replace('gts', 'GTS')}: "
                         f"{title_of(net).split(', ', 1)[1]}", fontsize=9.5)
            ax.legend(fontsize=7, loc="upper left")
        row[0].set_ylabel("training stream length (steps)")
    for ax in axes[-1]:
        ax.set_xlabel("training streams seen")
    fig.suptitle("The online learner, one-cell network: each training stream's length (to its first error), per bin "
                 "of streams")
    name = "online_curves_" + os.path.basename(journals[0]).rsplit(".", 1)[0]
    os.makedirs(outdir, exist_ok=True)
    save(fig, os.path.join(outdir, name + ".png"))
    add_facts(outdir, **{name: {"journals": list(journals), "shown": facts}})
    return os.path.join(outdir, name + ".png"), facts


def grid_loops(journals):
    """The online learner's loops in grid journals: the runs that shared one time loop (one journal, one number of
    models, one wall time share), each loop's models, wall time (s, resumes included, stops not), model-steps
    (training and test steps of all its finished models) and their rate."""
    loops = {}
    for path in journals:
        for rec in tcs.read_journal(path)[1]:
            if rec["kind"] == "run" and "online" in rec["run"]:
                run = rec["run"]
                loops.setdefault((path, run["models_per_process"], run["wall_time"]), []).append(rec)
    out = []
    for (path, M, share), recs in loops.items():
        steps = sum(r["run"]["online"]["steps"] + r["run"]["online"]["test_steps"] for r in recs)
        wall = share * M
        out.append({"journal": os.path.basename(path), "models": M, "finished": len(recs), "wall_s": round(wall, 1),
                    "model_steps": steps, "model_steps_per_s": round(steps / wall), "us_per_model_step":
                    round(wall / steps * 1e6, 3), "settings": sorted({setting_name(r["config"]) for r in recs},
                                                                      key=setting_order)})
    return sorted(out, key=lambda r: (r["journal"], -r["models"]))


def grid_speed(journals, outdir, bench):
    """viz/grid_speed.png: each online loop's wall time (left) and µs per model-step against its number of models
    (right), beside the benchmark's (results/bench_online.json, one cell); facts["grid_speed"]."""
    loops = grid_loops(journals)
    if not loops:
        raise tcs.BadGrid(f"no finished online runs in {', '.join(journals)}")
    with open(bench) as fh:
        ref = [r for r in json.load(fh)["rows"] if r["H"] == 1]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 0.45 * len(loops) + 2.6), layout="constrained",
                                 gridspec_kw={"width_ratios": [3, 2]})
    names = [f"{r['journal'].removesuffix('.jsonl')}: {r['models']} models" for r in loops]
    y = np.arange(len(loops))[::-1]
    a1.barh(y, [r["wall_s"] / 3600 for r in loops], color="tab:blue")
    top = max(r["wall_s"] for r in loops) / 3600
    for yy, r in zip(y, loops):                       # the numbers inside a long bar, after a short one
        h, inside = r["wall_s"] / 3600, r["wall_s"] / 3600 >= 0.5 * top
        a1.text(0.02 * top if inside else h, yy, f" {h:.2f} h, {r['model_steps'] / 1e9:.1f} G model-steps",
                va="center", fontsize=7.5, color="white" if inside else "black")
    a1.set_yticks(y, names, fontsize=8)
    a1.set_xlabel("wall time of the loop (hours, one core)")
    a1.set_xlim(0, top * (1.05 if all(r["wall_s"] / 3600 >= 0.5 * top for r in loops) else 1.6))
    for engine, style in (("numpy", "o-"), ("numba", "s--")):
        rows = [r for r in ref if r.get("engine", "numpy") == engine]
        if rows:
            a2.loglog([r["M"] for r in rows], [r["us_per_model_step"] for r in rows], style, color="0.6", ms=4,
                      label=f"benchmark, {engine} engine (bench_online.py)")
    a2.loglog([r["models"] for r in loops], [r["us_per_model_step"] for r in loops], "D", color="tab:blue",
              label="grid loops (journals)")
    a2.set_xlabel("models in the loop")
    a2.set_ylabel("µs per model-step")
    a2.legend(fontsize=7.5, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2))   # below, off the data
    a2.grid(True, which="major", lw=0.4, alpha=0.5)
    fig.suptitle("The online learner's grids: wall time and cost per model-step (a model-step: one time step of one "
                 "model, training or test)", fontsize=9)
    os.makedirs(outdir, exist_ok=True)
    save(fig, os.path.join(outdir, "grid_speed.png"))
    add_facts(outdir, grid_speed={"journals": list(journals), "loops": loops})
    return loops


def main(argv=None):
    ap = tcs.recipe_parser(__doc__, msd_only=True)
    ap.add_argument("--seed", type=tcs.seed_int, default=4, help="seed of the models trained here (default 4)")
    ap.add_argument("--peep-model", help="a peephole model saved by timing_counting_spikes.py --save-model")
    ap.add_argument("--vanilla-model", help="the vanilla model of the same recipe")
    ap.add_argument("--outdir", default="viz")
    ap.add_argument("--questions", metavar="SWEEP_JSONL", help="instead: the timer census of a --seeds 0-29 --both "
                    "journal and, with --tscale, the solve rate against T")
    ap.add_argument("--tscale", metavar="TSCALE_JSONL", help="the T-scale grid journal, with --questions")
    ap.add_argument("--timers-out", default=os.path.join("results", "timers.json"), help="with --questions: where "
                    "every model's timers go (default results/timers.json)")
    ap.add_argument("--failing", metavar="FAILING_JSONL", help="print the failing seeds' reruns against the "
                    "30-seed sweep (--sweep), and keep them in facts.json")
    ap.add_argument("--sweep", default=os.path.join(ROOT, "results", "msd_sweep.json"), help="with --failing: the "
                    "30-seed sweep's results (default: results/msd_sweep.json of this repository)")
    ap.add_argument("--claims", metavar="JOURNAL", nargs="+", help="instead: the paper's claims table "
                    "(results/claims.json), viz/claims_success.png, free_runs_*.png, gts_mechanism_*.png and "
                    "pass_margins_claims.png from the claims grid's journals")
    ap.add_argument("--claims-out", default=os.path.join("results", "claims.json"), help="with --claims: where the "
                    "table's JSON goes (default results/claims.json)")
    ap.add_argument("--online-curves", metavar="JOURNAL", nargs="+", help="instead: "
                    "viz/online_curves_<first journal's name>.png, the online learner's training streams against "
                    "streams seen (GTS and PFG f_cos at F = 10, peephole and vanilla; a row per recipe), from grid "
                    "journals of the online learner")
    ap.add_argument("--grid-speed", metavar="JOURNAL", nargs="+", help="instead: viz/grid_speed.png, the wall time "
                    "and µs per model-step of every loop of the online learner in grid journals, beside --bench")
    ap.add_argument("--recipe-search", metavar="JOURNAL", nargs="+", help="instead: the online learner's recipe "
                    "search (learning rate x momentum per task family): its tables, results/recipe_search.json, "
                    "viz/recipe_search.png and viz/pass_margins.png")
    ap.add_argument("--search-out", default=os.path.join("results", "recipe_search.json"), help="with "
                    "--recipe-search: where its JSON goes (default results/recipe_search.json)")
    ap.add_argument("--bench", default=os.path.join(ROOT, "results", "bench_online.json"), help="with --grid-speed: "
                    "the benchmark to compare with (default: results/bench_online.json of this repository)")
    a = ap.parse_args(argv)
    for option, mode in (("sweep", "failing"), ("bench", "grid_speed"), ("claims_out", "claims"),
                         ("timers_out", "questions"), ("search_out", "recipe_search")):
        # an option of a mode, given without it, is a mistake
        if getattr(a, option) != ap.get_default(option) and not getattr(a, mode):
            flag = lambda dest: "--" + dest.replace("_", "-")
            ap.error(f"{flag(option)} goes with {flag(mode)}")
    there = os.path.abspath(a.outdir)                  # the folder, or the nearest one that exists above it
    while not os.path.exists(there):
        there = os.path.dirname(there)
    if not os.path.isdir(there):
        ap.error(f"--outdir {a.outdir}: {there} is a file, not a folder")
    if not os.access(there, os.W_OK):
        ap.error(f"--outdir {a.outdir}: cannot write in {there}")

    def from_journals(flag, journals, make):
        """make(), after checking the journals exist; a missing one or a BadGrid is one line and exit 2."""
        missing = [p for p in journals if not os.path.exists(p)]
        if missing:
            ap.error(f"{flag}: no such journal: {missing[0]}")
        try:
            return make()
        except tcs.BadGrid as e:
            ap.error(str(e))

    if a.grid_speed:
        if not os.path.exists(a.bench):
            ap.error(f"--bench: no such file: {a.bench}")
        loops = from_journals("--grid-speed", a.grid_speed, lambda: grid_speed(a.grid_speed, a.outdir, a.bench))
        for r in loops:
            rest = r["models"] - r["finished"]              # a loop's records are written when all its models stop
            print(f"{r['journal']}: {r['models']} models ({r['finished']} ran to a pass or their budget"
                  + (f", the other {rest} diverged" if rest else "") + f"), {r['wall_s'] / 3600:.2f} h, "
                  f"{r['model_steps']:,} model-steps, {r['us_per_model_step']:.3f} µs per model-step")
        return 0
    if a.recipe_search:
        print(from_journals("--recipe-search", a.recipe_search,
                            lambda: recipe_search(a.recipe_search, a.outdir, a.search_out)))
        return 0
    if a.online_curves:
        path, shown = from_journals("--online-curves", a.online_curves,
                                    lambda: online_curves(a.online_curves, a.outdir))
        print(f"wrote {path}: " + "; ".join(
            f"{k} seed {v['seed']} ({v['outcome']}, longest {v['longest_units']} units)" for k, v in shown.items()))
        return 0
    if a.claims:
        from_journals("--claims", a.claims, lambda: claims(a.claims, a.outdir, a.claims_out))
        return 0
    given = [(flag, path) for flag, path in (("--failing", a.failing), ("--questions", a.questions),
                                             ("--tscale", a.tscale), ("--sweep", a.failing and a.sweep)) if path]
    for flag, path in given:
        if not os.path.exists(path):
            ap.error(f"{flag}: no such journal: {path}")
    if a.tscale and not a.questions:
        ap.error("--tscale goes with --questions")
    if a.failing:
        for flag, path in (("--sweep", a.sweep), ("--failing", a.failing)):
            try:
                tcs.read_results(path)
            except tcs.BadSweep as e:
                ap.error(f"{flag} {e}")
        try:
            table, facts = failing_table(a.sweep, a.failing)
        except tcs.BadSweep as e:
            ap.error(f"--failing {e}")
        print(table)
        add_facts(a.outdir, failing_seeds=facts)
        return 0
    if a.questions:
        msd_questions(a.questions, a.tscale, a.outdir, a.timers_out)
        return 0
    problem = tcs.check_recipe(a)
    if problem:
        ap.error(problem)
    try:
        models, cfg = models_from_args(a)
    except tcs.BadModel as e:
        ap.error(str(e))
    except tcs.Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    test = tcs.test_set(cfg)
    shown, long_k = pick_sequences(test)
    pp = models["peephole"][0]
    inner_all = {"c": np.concatenate([internals(pp, test.x[:, s:s + 128])["c"]
                                      for s in range(0, test.x.shape[1], 128)], axis=2)}
    inner = internals(pp, test.x[:, [long_k]])
    preds = {v: tcs.predict(m[0], test.x) for v, m in models.items()}
    facts = compute_facts(models, cfg, test, shown, long_k, inner, inner_all, preds)
    os.makedirs(a.outdir, exist_ok=True)
    out = lambda name: os.path.join(a.outdir, name)
    save(fig_training_curves(models, cfg.n_test), out("training_curves.png"))
    save(fig_sample_predictions(models, test, shown, preds), out("sample_predictions.png"))
    save(fig_cell_state(test, long_k, inner, facts), out("cell_state.png"))
    save(fig_gates(test, long_k, inner, facts), out("gates.png"))
    save(fig_peephole_weights(pp, facts), out("peephole_weights.png"))
    save(fig_weights(pp), out("weights.png"))
    add_facts(a.outdir, **facts)
    print(f"wrote 6 figures and facts.json to {a.outdir}/: timer cell {facts['timer_cell']}, "
          f"ramp monotonic {facts['timer_ramp_monotonic']}, cells by |p_o| {facts['cells_by_abs_p_o'][:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
