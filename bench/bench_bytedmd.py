"""Data movement of one LSTM training step, measured with the ByteDMD tracer (bench/bytedmd.py).

    python3 bench/bench_bytedmd.py                   # every cell x network x T: results/bytedmd.json, ~2 min
    python3 bench/bench_bytedmd.py --plot            # viz/bytedmd.png from results/bytedmd.json
    python3 bench/bench_bytedmd.py --compare-lists   # + the plain-list replay of one T=150 trace, timed (minutes)

The step is the module's, written as plain Python on scalars so the tracer can follow every read: forward over T
steps from the zero state, the loss ½ Σ_t (pred_t - y_t)², and BPTT, for one sequence (batch 1). Its loss and
gradients equal timing_counting_spikes.loss_and_grads to 1e-12 (tests/test_bytedmd.py). The arguments, in order, are
the parameters (in the module's order, each flattened row-major), the inputs x_0..x_{T-1} and the targets.
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

import bytedmd as bd  # noqa: E402
import timing_counting_spikes as tcs  # noqa: E402

NETS = {  # (network, cell) -> Net: the seed's 8-cell network and the paper's one-cell network
    ("seed", "peephole"): tcs.Net(True, True, True, "linear"), ("seed", "vanilla"): tcs.Net(False, True, True, "linear"),
    ("seed", "lstm1997"): tcs.Net(False, False, True, "linear"),
    ("paper", "peephole"): tcs.Net(True, True, False, "sigmoid"),
    ("paper", "vanilla"): tcs.Net(False, True, False, "sigmoid"),
    ("paper", "lstm1997"): tcs.Net(False, False, False, "sigmoid"),
}
TS = (1, 10, 50, 150)


def step_args(params, x, y):
    """The traced step's arguments: the parameters as nested lists in the module's order, x (T,), y (T,)."""
    return [params[k].tolist() for k in params], [float(v) for v in x], [float(v) for v in y]


def lstm_step(net):
    """The training step of a Net as scalar Python: f(params, x, y) -> (loss, grads as nested lists)."""
    peep, forget, squash, sig_out = net.peep, net.forget, net.squash, net.out == "sigmoid"
    act = bd.tanh if squash else (lambda a: a)

    def acc(total, term):
        return term if total is None else total + term

    def step(params, x, y):
        names = [k for k in tcs.PARAM_NAMES if (peep or k not in tcs.PEEPHOLES) and (forget or k != "p_f")]
        P = dict(zip(names, params))
        Wx, Wh, b, Wy, by = P["Wx"], P["Wh"], P["b"], P["Wy"], P["by"]
        H = len(Wh)
        nH = len(b)
        n_sig = 2 * H if forget else H
        T = len(x)
        h, c = [0.0] * H, [0.0] * H
        cache, loss = [], None
        for t in range(T):                                            # forward
            z = [x[t] * Wx[0][j] for j in range(nH)]
            for k in range(H):
                z = [z[j] + h[k] * Wh[k][j] for j in range(nH)]
            z = [z[j] + b[j] for j in range(nH)]
            i = [bd.sigmoid(z[k] + P["p_i"][k] * c[k] if peep else z[k]) for k in range(H)]
            f = [bd.sigmoid(z[H + k] + P["p_f"][k] * c[k] if peep else z[H + k]) for k in range(H)] if forget else None
            g = [act(z[n_sig + k]) for k in range(H)]
            c_new = [(f[k] * c[k] if forget else c[k]) + i[k] * g[k] for k in range(H)]
            o = [bd.sigmoid(z[n_sig + H + k] + P["p_o"][k] * c_new[k] if peep else z[n_sig + H + k]) for k in range(H)]
            tc = [act(c_new[k]) for k in range(H)]
            h_new = [o[k] * tc[k] for k in range(H)]
            a = None
            for k in range(H):
                a = acc(a, Wy[k] * h_new[k])
            a = a + by[0]
            pred = bd.sigmoid(a) if sig_out else a
            err = pred - y[t]
            loss = acc(loss, 0.5 * (err * err))
            dpre = err * (pred * (1 - pred)) if sig_out else err
            cache.append((h, c, i, f, g, c_new, o, tc, h_new, dpre))
            h, c = h_new, c_new
        G = {k: None for k in names}
        gWx, gWh, gb = [None] * nH, [[None] * nH for _ in range(H)], [None] * nH
        gp = {k: [None] * H for k in tcs.PEEPHOLES}
        gWy, gby = [None] * H, None
        dh_next, dc_next = [0.0] * H, [0.0] * H
        for t in reversed(range(T)):                                  # backward, mirroring the forward
            h_prev, c_prev, i, f, g, c_t, o, tc, h_t, dpre = cache[t]
            dh = [Wy[k] * dpre + dh_next[k] for k in range(H)]
            dz_o = [dh[k] * tc[k] * (o[k] * (1 - o[k])) for k in range(H)]
            dc = [dc_next[k] + (dh[k] * o[k] * (1 - tc[k] * tc[k]) if squash else dh[k] * o[k]) for k in range(H)]
            if peep:
                dc = [dc[k] + P["p_o"][k] * dz_o[k] for k in range(H)]
            dz_i = [dc[k] * g[k] * (i[k] * (1 - i[k])) for k in range(H)]
            dz_f = [dc[k] * c_prev[k] * (f[k] * (1 - f[k])) for k in range(H)] if forget else []
            dz_g = [dc[k] * i[k] * (1 - g[k] * g[k]) if squash else dc[k] * i[k] for k in range(H)]
            dz = dz_i + dz_f + dz_g + dz_o
            gWx = [acc(gWx[j], x[t] * dz[j]) for j in range(nH)]
            for k in range(H):
                gWh[k] = [acc(gWh[k][j], h_prev[k] * dz[j]) for j in range(nH)]
            gb = [acc(gb[j], dz[j]) for j in range(nH)]
            if peep:
                gp["p_i"] = [acc(gp["p_i"][k], dz_i[k] * c_prev[k]) for k in range(H)]
                if forget:
                    gp["p_f"] = [acc(gp["p_f"][k], dz_f[k] * c_prev[k]) for k in range(H)]
                gp["p_o"] = [acc(gp["p_o"][k], dz_o[k] * c_t[k]) for k in range(H)]
            gWy = [acc(gWy[k], h_t[k] * dpre) for k in range(H)]
            gby = acc(gby, dpre)
            dh_next = []
            for k in range(H):
                s = None
                for j in range(nH):
                    s = acc(s, Wh[k][j] * dz[j])
                dh_next.append(s)
            dc_next = [(f[k] * dc[k] if forget else dc[k]) for k in range(H)]
            if peep:
                dc_next = [dc_next[k] + P["p_i"][k] * dz_i[k] for k in range(H)]
                if forget:
                    dc_next = [dc_next[k] + P["p_f"][k] * dz_f[k] for k in range(H)]
        G.update({"Wx": [gWx], "Wh": gWh, "b": gb, "Wy": gWy, "by": [gby]})
        for k in tcs.PEEPHOLES:
            if k in G:
                G[k] = gp[k]
        return loss, [G[k] for k in names]

    return step


def measure(arch, cell, T, seed=0):
    net = NETS[arch, cell]
    H = 8 if arch == "seed" else 1
    rng = tcs.rng_for(tcs.STREAM_INIT, seed)
    params = tcs.init_params(rng, H, net.peep, forget=net.forget)
    data = np.random.default_rng(seed)
    x, y = (data.random(T) < 0.1).astype(float), data.random(T)
    t0 = time.perf_counter()
    trace = bd.record(lstm_step(net), *step_args(params, x, y))
    t1 = time.perf_counter()
    depths = bd.replay(trace)
    t2 = time.perf_counter()
    return {"arch": arch, "cell": cell, "H": H, "T": T, "ops": len(trace.ops), "reads": len(depths),
            "args": trace.n_args, "cost_B1": bd.cost(depths, 1), "cost_B8": bd.cost(depths, 8),
            "max_depth": max(depths), "trace_s": t1 - t0, "replay_s": t2 - t1}, trace


def plot(res, path):
    """Top: the cost per time step (ByteDMD of one training step / T, 8 bytes per element) against T; bottom: each
    cell's cost over the vanilla cell's at the same T. Left the 8-cell network, right the one-cell network."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), sharex=True, sharey="row", dpi=110,
                             gridspec_kw={"height_ratios": [3, 2]})
    colors = {"peephole": "tab:blue", "vanilla": "tab:orange", "lstm1997": "tab:green"}
    for col, (arch, title) in enumerate((("seed", "the 8-cell network"), ("paper", "the one-cell network"))):
        top, bottom = axes[0, col], axes[1, col]
        cost = {cell: sorted((r["T"], r["cost_B8"]) for r in res["rows"] if r["arch"] == arch and r["cell"] == cell)
                for cell in colors}
        for cell, c in colors.items():
            T = [t for t, _ in cost[cell]]
            top.semilogx(T, [v / t for t, v in cost[cell]], "o-", color=c, label=cell, lw=1.4, ms=4)
            bottom.semilogx(T, [v / w for (_, v), (_, w) in zip(cost[cell], cost["vanilla"])], "o-", color=c,
                            lw=1.4, ms=4)
        top.set_title(title, fontsize=10)
        top.set_yscale("log")
        bottom.set_xlabel("sequence length T of the training step", fontsize=9)
        for ax in (top, bottom):
            ax.grid(True, which="major", lw=0.4, alpha=0.5)
    axes[0, 0].set_ylabel("ByteDMD per time step\n(8 bytes per element)", fontsize=9)
    axes[1, 0].set_ylabel("÷ the vanilla cell's", fontsize=9)
    axes[0, 0].legend(fontsize=8.5, frameon=False, loc="center right")
    fig.suptitle("ByteDMD of one training step (forward, loss, BPTT) of one sequence (batch size 1), "
                 "each element 8 bytes (B = 8)", fontsize=9.5)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plot", action="store_true", help="draw viz/bytedmd.png from the results file")
    ap.add_argument("--compare-lists", action="store_true", help="also time the plain-list replay of one T=150 trace")
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "bytedmd.json"))
    a = ap.parse_args()
    if a.plot:
        import json
        with open(a.out) as fh:
            plot(json.load(fh), os.path.join(ROOT, "viz", "bytedmd.png"))
        print("wrote viz/bytedmd.png")
        return
    rows, t_start = [], time.perf_counter()
    for arch, cell in NETS:
        for T in TS:
            r, trace = measure(arch, cell, T)
            rows.append(r)
            print(f"{arch:5s} {cell:9s} T={T:3d}  ops {r['ops']:8,d}  reads {r['reads']:8,d}  ByteDMD B=1 "
                  f"{r['cost_B1']:14,d}  B=8 {r['cost_B8']:15,d}  trace {r['trace_s']:5.1f}s replay {r['replay_s']:5.1f}s"
                  f"  ({time.perf_counter() - t_start:.0f}s elapsed)")
    res = {"rows": rows, **tcs.versions(), "date": time.strftime("%Y-%m-%d")}
    if a.compare_lists:
        r, trace = measure("seed", "peephole", 150)
        t = time.perf_counter()
        assert bd.replay_lists(trace) == bd.replay(trace)
        lists = time.perf_counter() - t
        res["compare_lists"] = {"trace": "seed peephole T=150", "reads": r["reads"], "fenwick_s": r["replay_s"],
                                "lists_s": lists, "speedup": lists / r["replay_s"]}
        print(f"plain-list replay of the same trace: {lists:.1f} s against {r['replay_s']:.1f} s "
              f"({lists / r['replay_s']:.0f}x)")
    tcs.write_json(a.out, res)
    print(f"wrote {os.path.relpath(a.out)}")


if __name__ == "__main__":
    main()
