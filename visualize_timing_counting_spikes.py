"""Figures of the trained peephole and vanilla LSTMs on MSD: viz/*.png, and viz/facts.json with every number the
README's captions quote, computed here from the models.

    python3 visualize_timing_counting_spikes.py \\
        --peep-model results/model_peephole_seed4.npz --vanilla-model results/model_vanilla_seed4.npz
    python3 visualize_timing_counting_spikes.py          # no saved models: trains both (seed 4) first, in parallel

Without saved models the recipe flags (defaults: the headline recipe) say what to train; with them, the task and
held-out set are the ones the models were trained and scored on (their saved config).
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import matplotlib.ticker  # noqa: E402
from matplotlib.gridspec import GridSpec  # noqa: E402

import timing_counting_spikes as tcs  # noqa: E402

COLORS = {"peephole": "tab:blue", "vanilla": "tab:orange"}
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
        for want, path in (("peephole", a.peep_model), ("vanilla", a.vanilla_model)):
            params, meta = tcs.load_model(path)
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


def internals(params, x):
    """Everything the cell computes for the sequences x (T, N, 1): c, i, f, g, o (T, H, N) and pred (T, N)."""
    buf = tcs.buffers_for(params, x)
    pred, _ = tcs.forward(params, x, buf)
    H = buf.H
    G = buf.G[:, 0]                                  # one model: drop the buffers' model axis
    return {"c": buf.C[1:, 0].copy(), "i": G[:, :H].copy(), "f": G[:, H:2 * H].copy(),
            "g": G[:, 2 * H:3 * H].copy(), "o": G[:, 3 * H:].copy(), "pred": pred}


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
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7.5, 5.2), sharex=True)
    for v, (_, hist, _) in models.items():
        it = [h["iter"] for h in hist]
        a1.semilogy(it, [h["mse"] for h in hist], color=COLORS[v])
        a2.plot(it, [h["solved"] for h in hist], color=COLORS[v], label=f"{v}, exact")
        a2.plot(it, [h["within1"] for h in hist], color=COLORS[v], ls=":", label=f"{v}, within one step")
    a1.set_ylabel("held-out MSE")
    a2.set_ylabel("solve rate")
    a2.set_ylim(-0.02, 1.02)
    a2.set_xlabel("training iteration")
    a1.grid(alpha=0.3, which="both")
    a2.grid(alpha=0.3)
    fig.legend(*a2.get_legend_handles_labels(), loc="upper center", ncol=2, frameon=False, fontsize=8.5)
    hist = next(iter(models.values()))[1]
    seeds = ", ".join(f"{v} seed {m[2]}" for v, m in models.items())
    a1.set_title(f"{n_test} held-out sequences, scored every {hist[1]['iter'] - hist[0]['iter']} iterations "
                 f"({seeds})", fontsize=9, loc="left")
    fig.tight_layout(rect=(0, 0, 1, 0.9))
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
    a_out.plot(t, inner["pred"][:, 0], color=COLORS["peephole"], label="peephole prediction")
    a_out.plot(t, test.y[:, k], color="k", lw=0.8, alpha=0.6, label="target y_t")
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
            rec = [k for k, r in zip(kinds, got) if r and b["final"]["solved"] < 0.6 and tcs.last_k_mean(r, "solved") >= 0.9]
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
    colors = {"peephole": "tab:blue", "vanilla": "tab:orange", "lstm1997": "tab:green"}
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


def msd_questions(sweep_journal, tscale_journal, outdir):
    """The timer census of a 30-seed sweep's models (results/timers.json, viz/timer_cells.png) and the solve rate
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
    tcs.write_json(os.path.join("results", "timers.json"), {"rule": {"steps": TIMER_STEPS, "sequences": TIMER_SEQS},
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
    facts_path = os.path.join(outdir, "facts.json")
    facts = json.load(open(facts_path)) if os.path.exists(facts_path) else {}
    facts["timers"] = {"summary": summary, "shown": [[cell, seed, k] for cell, (seed, k, _) in panels]}
    if tscale_journal and os.path.exists(tscale_journal):
        facts["tscale"] = fig_tscale(tscale_journal, os.path.join(outdir, "tscale.png"))
    tcs.write_json(facts_path, facts)
    print(f"wrote results/timers.json, {outdir}/timer_cells.png" + (", tscale.png" if "tscale" in facts else "")
          + f" and facts: {summary}")


def main(argv=None):
    ap = tcs.recipe_parser(__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=4, help="seed of the models trained here (default 4)")
    ap.add_argument("--peep-model", help="a peephole model saved by timing_counting_spikes.py --save-model")
    ap.add_argument("--vanilla-model", help="the vanilla model of the same recipe")
    ap.add_argument("--outdir", default="viz")
    ap.add_argument("--questions", metavar="SWEEP_JSONL", help="instead: the timer census of a --seeds 0-29 --both "
                    "journal and, with --tscale, the solve rate against T")
    ap.add_argument("--tscale", metavar="TSCALE_JSONL", help="the T-scale grid journal, with --questions")
    ap.add_argument("--failing", metavar="FAILING_JSONL", help="print the failing seeds' reruns against "
                    "results/msd_sweep.json, and keep them in facts.json")
    a = ap.parse_args(argv)
    if a.failing:
        table, facts = failing_table(os.path.join("results", "msd_sweep.json"), a.failing)
        print(table)
        path = os.path.join(a.outdir, "facts.json")
        all_facts = json.load(open(path)) if os.path.exists(path) else {}
        all_facts["failing_seeds"] = facts
        tcs.write_json(path, all_facts)
        return 0
    if a.questions:
        msd_questions(a.questions, a.tscale, a.outdir)
        return 0
    problem = tcs.check_recipe(a)
    if not problem and a.task not in (None, "msd"):
        problem = "these figures show the seed's MSD: drop --task"
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
    tcs.write_json(out("facts.json"), facts)
    print(f"wrote 6 figures and facts.json to {a.outdir}/: timer cell {facts['timer_cell']}, "
          f"ramp monotonic {facts['timer_ramp_monotonic']}, cells by |p_o| {facts['cells_by_abs_p_o'][:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
