"""Speed and memory of timing_counting_spikes on this machine, against a straightforward NumPy LSTM in the same run.

    python3 bench/bench_speed.py                 # per-step timings, ~1 min
    python3 bench/bench_speed.py --full          # + whole headline runs, peak memory, 7-seed sweep, ~4 min
    python3 bench/bench_speed.py --compare A B   # only: the headline of two commits' module, 10 pairs, ~6 min

Prints a table and writes results/bench.json. Timings on a shared 2-core machine are noisy: every number is a
median of repeats, and the straightforward implementation is timed in the same process for a ratio.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import numpy as np  # noqa: E402

import timing_counting_spikes as tcs  # noqa: E402


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def straightforward_step_costs(params, batch):
    """The yardstick: a batch-major LSTM as one would first write it (a dict cache per step, one NumPy call per
    operation). Returns (forward seconds, backward seconds) for one sequence batch."""
    p = params
    H = p["Wh"].shape[0]
    T, B, _ = batch.x.shape
    peep = "p_i" in p
    t0 = time.perf_counter()
    h, c = np.zeros((B, H)), np.zeros((B, H))
    cache, preds = [], []
    for t in range(T):
        x = batch.x[t]
        z = x @ p["Wx"] + h @ p["Wh"] + p["b"]
        zi, zf, zg, zo = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]
        if peep:
            zi = zi + p["p_i"] * c
            zf = zf + p["p_f"] * c
        i, f, g = sigmoid(zi), sigmoid(zf), np.tanh(zg)
        c_new = f * c + i * g
        if peep:
            zo = zo + p["p_o"] * c_new
        o = sigmoid(zo)
        tc = np.tanh(c_new)
        h_new = o * tc
        cache.append({"x": x, "h": h, "c": c, "i": i, "f": f, "g": g, "o": o, "tc": tc, "c_new": c_new})
        h, c = h_new, c_new
        preds.append(h @ p["Wy"] + p["by"])
    pred = np.stack(preds)
    t1 = time.perf_counter()
    dpred = (pred - batch.y) / B
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    dh_next, dc_next = np.zeros((B, H)), np.zeros((B, H))
    for t in reversed(range(T)):
        s = cache[t]
        h_t = s["o"] * s["tc"]
        grads["Wy"] += h_t.T @ dpred[t]
        grads["by"] += dpred[t].sum()
        dh = np.outer(dpred[t], p["Wy"]) + dh_next
        do = dh * s["tc"]
        dzo = do * s["o"] * (1 - s["o"])
        dc = dc_next + dh * s["o"] * (1 - s["tc"] ** 2)
        if peep:
            dc = dc + dzo * p["p_o"]
            grads["p_o"] += (dzo * s["c_new"]).sum(0)
        dzi = dc * s["g"] * s["i"] * (1 - s["i"])
        dzf = dc * s["c"] * s["f"] * (1 - s["f"])
        dzg = dc * s["i"] * (1 - s["g"] ** 2)
        dz = np.concatenate([dzi, dzf, dzg, dzo], axis=1)
        grads["Wx"] += s["x"].T @ dz
        grads["Wh"] += s["h"].T @ dz
        grads["b"] += dz.sum(0)
        dh_next = dz @ p["Wh"].T
        dc_next = dc * s["f"]
        if peep:
            dc_next = dc_next + dzi * p["p_i"] + dzf * p["p_f"]
            grads["p_i"] += (dzi * s["c"]).sum(0)
            grads["p_f"] += (dzf * s["c"]).sum(0)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, grads


def median_time(fn, repeats):
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def step_costs(peep, dtype, repeats):
    cfg = tcs.Config(peep=peep, dtype=dtype)
    params = tcs.init_params(tcs.rng_for(tcs.STREAM_INIT, 4), cfg.hidden, peep, dtype=dtype)
    params = tcs.train(tcs.replace(cfg, iters=200, eval_every=200), 4).params   # trained weights: realistic tanh
    batch = tcs.msd_batch(np.random.default_rng(0), cfg.batch, cfg.T, cfg.D_min, cfg.D_max, dtype)
    buf = tcs.make_buffers(cfg.T, cfg.batch, cfg.hidden, tcs.Net(peep), 1, dtype)
    pred, _ = tcs.forward(params, batch.x, buf)
    dpred = (pred - batch.y) / cfg.batch
    fwd = median_time(lambda: tcs.forward(params, batch.x, buf), repeats)
    bwd = median_time(lambda: tcs.backward(params, buf, dpred), repeats)
    # 100 iterations and one evaluation, as in the headline: the difference of a 300- and a 100-iteration run, / 2
    t100 = median_time(lambda: tcs.train(tcs.replace(cfg, iters=100), 0), 3)
    t300 = median_time(lambda: tcs.train(tcs.replace(cfg, iters=300), 0), 3)
    per100 = (t300 - t100) / 2
    row = {"variant": tcs.cell_name(peep), "dtype": dtype, "fwd_us_per_step": fwd / cfg.T * 1e6,
           "bwd_us_per_step": bwd / cfg.T * 1e6, "s_per_100_iters": per100,
           "headline_s_extrapolated": t100 + per100 * (cfg.iters - 100) / 100}
    if dtype == "float64":
        p64 = {k: v.astype(np.float64) for k, v in params.items()}
        sf = [straightforward_step_costs(p64, batch)[:2] for _ in range(max(3, repeats // 10))]
        row["straightforward_fwd_us_per_step"] = statistics.median(s[0] for s in sf) / cfg.T * 1e6
        row["straightforward_bwd_us_per_step"] = statistics.median(s[1] for s in sf) / cfg.T * 1e6
    return row


SHAPES = (  # (label, Net, H, B): the stream tasks' model shapes, and the seed's headline shape for reference
    ("paper one-cell, peephole, B=1", tcs.Net(True, True, False, "sigmoid"), 1, 1),
    ("paper one-cell, no peepholes, B=1", tcs.Net(False, True, False, "sigmoid"), 1, 1),
    ("seed 8-cell, peephole, B=1", tcs.Net(), 8, 1),
    ("seed 8-cell, peephole, B=32", tcs.Net(), 8, 32),
)


def shape_costs(label, net, H, B, repeats, L=1000):
    """µs per time step of forward+backward (training) and of a free run (inference), over an L-step window."""
    rng = np.random.default_rng(0)
    params = tcs.init_params(rng, H, net.peep, forget=net.forget)
    s = tcs.delay_stream(rng, B, L, 10, (0, 1))
    buf = tcs.buffers_for(params, s.x, net)
    train = median_time(lambda: tcs.loss_and_grads(params, s, buf), repeats)
    run = median_time(lambda: tcs.free_run(params, net, s.x[:, :1]), repeats)
    return {"shape": label, "H": H, "B": B, "train_us_per_step": train / L * 1e6, "free_run_us_per_step": run / L * 1e6}


# Runs the module as __main__ and reports VmHWM, the peak resident set of this process since its exec (ru_maxrss
# would carry over the parent's peak).
RSS = "import runpy,sys;sys.argv=sys.argv[1:];" \
      "exec('try:\\n runpy.run_path(sys.argv[0], run_name=\"__main__\")\\nexcept SystemExit: pass');" \
      "hwm=[l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1];" \
      "print('maxrss_kb', hwm, file=sys.stderr)"


def one_run(args, root=ROOT, cpu=False):
    """Wall time and peak RSS (MB) of `python3 ROOT/timing_counting_spikes.py args` as a separate process; with
    cpu=True also its CPU time (user + system, s), which other tenants of the machine disturb less than wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", RSS, os.path.join(root, "timing_counting_spikes.py"), *args],
                       capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss = int(r.stderr.split("maxrss_kb")[-1]) / 1024
    if not cpu:
        return wall, rss
    return wall, rss, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def whole_run(args, repeats):
    """Median wall time and peak RSS of `python3 timing_counting_spikes.py args` as a separate process."""
    runs = [one_run(args) for _ in range(repeats)]
    return statistics.median(w for w, _ in runs), max(m for _, m in runs)


def commit_of(rev):
    """The commit id `rev` names in this repository, or None."""
    r = subprocess.run(["git", "-C", ROOT, "rev-parse", "--verify", "--quiet", rev + "^{commit}"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def module_at(sha, into):
    """`timing_counting_spikes.py` as commit `sha` has it, written into the directory `into`."""
    src = subprocess.run(["git", "-C", ROOT, "show", f"{sha}:timing_counting_spikes.py"], capture_output=True,
                         check=True)
    os.makedirs(into, exist_ok=True)
    with open(os.path.join(into, "timing_counting_spikes.py"), "wb") as f:
        f.write(src.stdout)


def run_pinned(args, root, core):
    """Start `python3 ROOT/timing_counting_spikes.py args` on one core; returns the Popen."""
    return subprocess.Popen([sys.executable, os.path.join(root, "timing_counting_spikes.py"), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: os.sched_setaffinity(0, {core}))


def side_by_side(args, dirs, pairs):
    """A and B at the same time, each pinned to its own core, the cores swapped every pair: whatever else the machine
    does at that moment falls on both. Returns {"A": [s], "B": [s]} of wall times."""
    times = {"A": [], "B": []}
    cores = sorted(os.sched_getaffinity(0))[:2]
    for p in range(pairs):
        t0 = time.perf_counter()
        procs = {k: run_pinned(args, dirs[k], cores[(j + p) % 2]) for j, k in enumerate("AB")}
        left = dict(procs)
        while left:                                 # each side's wall time, as it finishes
            for k, pr in list(left.items()):
                if pr.poll() is not None:
                    if pr.returncode:
                        raise SystemExit(f"bench_speed.py: error: the {k} side exited with {pr.returncode}")
                    times[k].append(time.perf_counter() - t0)
                    del left[k]
            time.sleep(0.01)
        print(f"side by side {p + 1}/{pairs}: A {times['A'][-1]:6.2f} s  B {times['B'][-1]:6.2f} s  "
              f"B/A {times['B'][-1] / times['A'][-1]:.3f}", flush=True)
    return times


def alternating(args, dirs, pairs):
    """A and B one after the other, the order alternating (A B, B A, ...). Returns wall and CPU times."""
    times, cpu = {"A": [], "B": []}, {"A": [], "B": []}
    for p in range(pairs):
        for k in ("AB" if p % 2 == 0 else "BA"):
            wall, _, c = one_run(args, dirs[k], cpu=True)
            times[k].append(wall)
            cpu[k].append(c)
        print(f"alternating {p + 1}/{pairs}: A {times['A'][-1]:6.2f} s  B {times['B'][-1]:6.2f} s  "
              f"B/A {times['B'][-1] / times['A'][-1]:.3f}", flush=True)
    return times, cpu


def compare_commits(rev_a, rev_b, pairs, args):
    """The headline (`args`) of two commits' module, as separate processes, in `pairs` pairs twice: side by side on
    the two cores, and alternating on an otherwise idle machine. Each pair gives the ratio B / A of two runs under
    the same conditions; the result is the median ratio, its quartiles and range over the pairs, and the ratio of
    each side's fastest run (the machine's noise only ever adds time)."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {k: os.path.join(tmp, k) for k in "AB"}
        shas = {"A": commit_of(rev_a), "B": commit_of(rev_b)}
        for k in "AB":
            module_at(shas[k], dirs[k])
        together = side_by_side(args, dirs, pairs)
        apart, cpu = alternating(args, dirs, pairs)
    out = {"A": rev_a, "B": rev_b, "A_commit": shas["A"], "B_commit": shas["B"], "args": args, "pairs": pairs}
    for name, t in (("side_by_side", together), ("alternating", apart), ("alternating_cpu", cpu)):
        ratios = sorted(b / a for a, b in zip(t["A"], t["B"]))
        q = statistics.quantiles(ratios, n=4)
        out[name] = {"A_s": t["A"], "B_s": t["B"], "ratio_median": statistics.median(ratios),
                     "ratio_quartiles": [q[0], q[2]], "ratio_range": [ratios[0], ratios[-1]],
                     "A_median_s": statistics.median(t["A"]), "B_median_s": statistics.median(t["B"]),
                     "ratio_of_minima": min(t["B"]) / min(t["A"])}
        print(f"{name:16s} B/A median {statistics.median(ratios):.3f}, quartiles {q[0]:.3f}-{q[2]:.3f}, range "
              f"{ratios[0]:.3f}-{ratios[-1]:.3f} over {len(ratios)} pairs (medians A {out[name]['A_median_s']:.2f} s, "
              f"B {out[name]['B_median_s']:.2f} s); fastest runs {out[name]['ratio_of_minima']:.3f}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="also whole headline runs, memory and a 7-seed sweep")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "bench.json"))
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"),
                    help="only time the peephole headline of commit A's module against commit B's (ratio B/A)")
    ap.add_argument("--pairs", type=int, default=10, help="--compare: pairs of runs (at least 10; default 10)")
    a = ap.parse_args()
    if a.compare:
        if a.pairs < 10:
            ap.error("--pairs must be at least 10")
        if len(os.sched_getaffinity(0)) < 2:
            ap.error("--compare runs the two sides at once and needs two cores")
        for rev in a.compare:
            if commit_of(rev) is None:
                ap.error(f"--compare: {rev!r} is not a commit of this repository")
        out = a.out if a.out != ap.get_default("out") else os.path.join(ROOT, "results", "bench_compare.json")
        result = {"compare": compare_commits(*a.compare, a.pairs, ["--quiet"]), **tcs.versions(),
                  "date": time.strftime("%Y-%m-%d")}
        tcs.write_json(out, result)
        print(f"wrote {os.path.relpath(out)}")
        return
    rows = [step_costs(peep, dt, a.repeats) for peep in (True, False) for dt in ("float64", "float32")]
    print(f"{'variant':9s} {'dtype':8s} {'fwd us/step':>12s} {'bwd us/step':>12s} {'s/100 it':>9s} "
          f"{'headline s':>11s} {'straightforward fwd+bwd us/step':>32s}")
    for r in rows:
        sf = (f"{r['straightforward_fwd_us_per_step'] + r['straightforward_bwd_us_per_step']:9.1f}"
              f"  ({(r['straightforward_fwd_us_per_step'] + r['straightforward_bwd_us_per_step']) / (r['fwd_us_per_step'] + r['bwd_us_per_step']):.1f}x)"
              if "straightforward_fwd_us_per_step" in r else "")
        print(f"{r['variant']:9s} {r['dtype']:8s} {r['fwd_us_per_step']:12.1f} {r['bwd_us_per_step']:12.1f} "
              f"{r['s_per_100_iters']:9.3f} {r['headline_s_extrapolated']:11.1f} {sf:>32s}")
    shapes = [shape_costs(*sh, max(5, a.repeats // 3)) for sh in SHAPES]
    print(f"\n{'stream shape':36s} {'train us/step':>14s} {'free run us/step':>17s}")
    for r in shapes:
        print(f"{r['shape']:36s} {r['train_us_per_step']:14.1f} {r['free_run_us_per_step']:17.1f}")
    result = {"steps": rows, "shapes": shapes, **tcs.versions(), "date": time.strftime("%Y-%m-%d")}
    if a.full:
        whole = {}
        for name, args in (("peephole headline", []), ("vanilla headline", ["--no-peep"]),
                           ("peephole headline float32", ["--dtype", "float32"]), ("gradcheck", ["--gradcheck"])):
            wall, rss = whole_run(args + ([] if name == "gradcheck" else ["--quiet"]), 3 if name != "gradcheck" else 5)
            whole[name] = {"wall_s": wall, "peak_rss_mb": rss}
            print(f"{name:28s} wall {wall:6.2f} s (median)   peak RSS {rss:5.1f} MB")
        seeds = ["--seeds", "0-6", "--quiet"]
        par, _ = whole_run(seeds + ["--workers", "2"], 1)
        ser, _ = whole_run(seeds + ["--workers", "1"], 1)
        whole["7 seeds, 2 workers"] = {"wall_s": par}
        whole["7 seeds, 1 worker"] = {"wall_s": ser}
        print(f"7-seed sweep: 2 workers {par:.1f} s, 1 worker {ser:.1f} s, ratio {par / ser:.2f}")
        result["whole"] = whole
    tcs.write_json(a.out, result)
    print(f"wrote {os.path.relpath(a.out)}")


if __name__ == "__main__":
    main()
