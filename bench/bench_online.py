"""Speed of the online learner (--learner rtrl): microseconds per model-step by batch size M and engine, one core.

    python3 bench/bench_online.py          # M = 1 ... 1024 for the one-cell network, and H = 8; both engines; ~4 min

Each row builds an online job of M one-cell peephole models on GTS F = 10 with the paper's recipe (the paper's
initialisation, lr 1e-5, momentum 0.999), runs 500 steps to warm up, then times `steps` steps of the loop (the
models' training and test streams, every end of a stream and the Python looks included): the median of 7 repeats,
the batch sizes and engines interleaved (numba's compiled engine, when numba imports, is compiled before the first
repeat). A model-step is one step of one model, training or test.
These first steps are the paper's plateau, where training streams end after one period: the costliest phase per
step (a stream ends somewhere in the batch at almost every step). The row at M = 1 is the cost of one pass through
the loop's NumPy calls; `calls` counts them (np.* calls per step at M = 1, the three reads of the streams (array
methods) left out). Writes results/bench_online.json.
"""
import argparse
import importlib.metadata
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import timing_counting_spikes as tcs  # noqa: E402


STEPS = lambda M: max(300, min(3000, 300000 // M))   # timed steps of a batch of M models


def job(M, H, engine="numpy"):
    cfg = tcs.Config(task="gts", arch="paper", init="paper", learner="rtrl", hidden=H)
    return tcs.Online(H, [tcs.spec_of(cfg, s) for s in range(M)], engine=engine)


def advance(eng, steps):
    n = 0
    while n < steps and eng.specs:
        n += eng.run(steps - n)
        if eng.looked:
            eng.look()
    return n


class Counter:
    """The numpy module as the loop sees it, its functions counting their calls."""

    def __init__(self, np):
        self.np, self.n = np, 0

    def __getattr__(self, name):
        f = getattr(self.np, name)
        if isinstance(f, type) or not callable(f):
            return f

        def counted(*args, **kw):
            self.n += 1
            return f(*args, **kw)
        return counted


def calls_per_step(H, steps=200):
    eng = job(1, H)
    advance(eng, 500)
    real, tcs.np = tcs.np, Counter(tcs.np)
    try:
        n = advance(eng, steps)
        return tcs.np.n / n
    finally:
        tcs.np = real


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "bench_online.json"))
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    engines = ("numpy", "numba") if tcs.HAVE_NUMBA else ("numpy",)
    if tcs.HAVE_NUMBA:
        advance(job(2, 1, "numba"), 10)                # compiled (or loaded from numba's cache) before timing
    rows = []
    for H, Ms in ((1, (1, 16, 64, 256, 1024)), (8, (1, 64, 256))):
        calls = calls_per_step(H)
        times = {(M, e): [] for M in Ms for e in engines}
        for _ in range(a.repeats):                     # batch sizes and engines interleaved: drift hits them alike
            for M in Ms:
                for e in engines:
                    eng = job(M, H, e)
                    advance(eng, 500)
                    steps = STEPS(M) * (10 if e == "numba" else 1)
                    t = time.perf_counter()
                    n = advance(eng, steps)
                    times[M, e].append((time.perf_counter() - t) / n * 1e6)
        for M in Ms:
            for e in engines:
                us = statistics.median(times[M, e])
                lo, hi = min(times[M, e]) / M, max(times[M, e]) / M
                rows.append({"H": H, "M": M, "engine": e, "steps": STEPS(M) * (10 if e == "numba" else 1),
                             "repeats": a.repeats, "us_per_step": us, "us_per_model_step": us / M,
                             "range_us_per_model_step": [lo, hi], "calls_per_step": calls if e == "numpy" else None,
                             "speedup": statistics.median(times[M, "numpy"]) / us})
                print(f"H={H} M={M:5d} {e:5s}  {us:8.1f} us/step  {us / M:7.3f} us/model-step  (range {lo:.3f}-"
                      f"{hi:.3f})  {rows[-1]['speedup']:6.1f}x numpy")
    numba = importlib.metadata.version("numba") if tcs.HAVE_NUMBA else None
    tcs.write_json(a.out, {"rows": rows, **tcs.versions(), "numba": numba,
                           "code": tcs.CODE, "date": time.strftime("%Y-%m-%d")})
    print(f"wrote {os.path.relpath(a.out)}")


if __name__ == "__main__":
    main()
