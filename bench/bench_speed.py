"""Speed and memory of timing_counting_spikes on this machine, against a straightforward NumPy LSTM in the same run.

    python3 bench/bench_speed.py                 # per-step timings, ~1 min
    python3 bench/bench_speed.py --full          # + whole headline runs, peak memory, 7-seed sweep, ~4 min

Prints a table and writes results/bench.json. Timings on a shared 2-core machine are noisy: every number is a
median of repeats, and the straightforward implementation is timed in the same process for a ratio.
"""
import argparse
import os
import platform
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


# Runs the module as __main__ and reports VmHWM, the peak resident set of this process since its exec (ru_maxrss
# would carry over the parent's peak).
RSS = "import runpy,sys;sys.argv=sys.argv[1:];" \
      "exec('try:\\n runpy.run_path(sys.argv[0], run_name=\"__main__\")\\nexcept SystemExit: pass');" \
      "hwm=[l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1];" \
      "print('maxrss_kb', hwm, file=sys.stderr)"


def whole_run(args, repeats):
    """Median wall time and peak RSS of `python3 timing_counting_spikes.py args` as a separate process."""
    walls, rss = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", RSS, os.path.join(ROOT, "timing_counting_spikes.py"), *args],
                           capture_output=True, text=True, check=True)
        walls.append(time.perf_counter() - t)
        rss.append(int(r.stderr.split("maxrss_kb")[-1]) / 1024)
    return statistics.median(walls), max(rss)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="also whole headline runs, memory and a 7-seed sweep")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "bench.json"))
    a = ap.parse_args()
    rows = [step_costs(peep, dt, a.repeats) for peep in (True, False) for dt in ("float64", "float32")]
    print(f"{'variant':9s} {'dtype':8s} {'fwd us/step':>12s} {'bwd us/step':>12s} {'s/100 it':>9s} "
          f"{'headline s':>11s} {'straightforward fwd+bwd us/step':>32s}")
    for r in rows:
        sf = (f"{r['straightforward_fwd_us_per_step'] + r['straightforward_bwd_us_per_step']:9.1f}"
              f"  ({(r['straightforward_fwd_us_per_step'] + r['straightforward_bwd_us_per_step']) / (r['fwd_us_per_step'] + r['bwd_us_per_step']):.1f}x)"
              if "straightforward_fwd_us_per_step" in r else "")
        print(f"{r['variant']:9s} {r['dtype']:8s} {r['fwd_us_per_step']:12.1f} {r['bwd_us_per_step']:12.1f} "
              f"{r['s_per_100_iters']:9.3f} {r['headline_s_extrapolated']:11.1f} {sf:>32s}")
    result = {"steps": rows, "python": platform.python_version(), "numpy": np.__version__,
              "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
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
