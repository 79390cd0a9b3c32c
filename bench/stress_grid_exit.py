"""Stress: many small grids on a pool of 2 workers, each must exit. Run by hand, not in CI (minutes):

    python3 bench/stress_grid_exit.py --runs 200            # results/stress_grid_exit.json
    D=$(mktemp -d) && git show a1d565f:timing_counting_spikes.py > $D/timing_counting_spikes.py &&
        python3 bench/stress_grid_exit.py --runs 200 --module $D --out results/stress_grid_exit_a1d565f.json
                                                            # the same against the module before the fix

Each run trains 8 tiny BPTT jobs (the MSD variant at T = 40 in a 4-cell network, peephole and vanilla, 4 seeds, 20
iterations, one model a batch: jobs that end within milliseconds of each other, as at a grid's end) with 2 workers,
in a fresh subprocess with a deadline; a run that passes its deadline is a hang: its processes' Python stacks are
printed (with py-spy, when installed) and it is killed. Prints one line per 20 runs and a summary, writes them to
--out; exit 1 on any hang.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = ('{"base": {"T": 40, "D_min": 5, "D_max": 15, "iters": 20, "eval_every": 10, "n_test": 32}, '
        '"settings": [{"hidden": 4}], "cells": ["peephole", "vanilla"], "seeds": "0-3"}')


def stacks(pid):
    """The Python stacks of pid and its children, for a hang's report."""
    out = []
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for p in [str(pid)] + kids:
        spy = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
        text = subprocess.run([spy, "dump", "--pid", p], capture_output=True, text=True).stdout if spy else \
            "(py-spy not installed)"
        out.append(f"--- process {p}\n{text}")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--deadline", type=float, default=120.0, help="seconds a run may take (default 120)")
    ap.add_argument("--module", default=ROOT, help="the folder of the timing_counting_spikes.py to run (default: "
                    "this repository's)")
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "stress_grid_exit.json"))
    a = ap.parse_args()
    script = os.path.join(a.module, "timing_counting_spikes.py")
    if not os.path.isfile(script):
        ap.error(f"--module {a.module}: no timing_counting_spikes.py there")
    if a.runs < 1 or a.deadline <= 0:
        ap.error("--runs and --deadline must be positive")
    d = tempfile.mkdtemp()
    grid = os.path.join(d, "g.json")
    with open(grid, "w") as fh:
        fh.write(GRID)
    hangs, times, t0 = 0, [], time.perf_counter()
    for k in range(a.runs):
        out = os.path.join(d, f"o{k}.jsonl")
        t = time.perf_counter()
        p = subprocess.Popen([sys.executable, script, "--grid", grid,
                              "--out", out, "--workers", "2", "--models", "1", "--quiet"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            p.wait(timeout=a.deadline)
            times.append(time.perf_counter() - t)
            if p.returncode:
                print(f"run {k}: exit {p.returncode}: {p.stderr.read().strip()}")
        except subprocess.TimeoutExpired:
            hangs += 1
            with open(out) as fh:
                n = sum(1 for _ in fh) - 1
            print(f"run {k}: HANG after {a.deadline:.0f} s with {n} of 8 records\n{stacks(p.pid)}")
            subprocess.run(["pkill", "-KILL", "-P", str(p.pid)])
            p.kill()
            p.wait()
        if (k + 1) % 20 == 0:
            print(f"{k + 1} runs, {hangs} hangs, median {sorted(times)[len(times) // 2]:.1f} s a run, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    shutil.rmtree(d)
    print(f"{a.runs} runs of a 2-worker grid: {hangs} never exited")
    with open(script, "rb") as fh:
        code = hashlib.sha256(fh.read()).hexdigest()[:16]
    with open(a.out, "w") as fh:
        json.dump({"runs": a.runs, "hangs": hangs, "deadline_s": a.deadline, "median_run_s": sorted(times)[len(times)
                   // 2] if times else None, "grid": json.loads(GRID), "workers": 2, "code": code,
                   "date": time.strftime("%Y-%m-%d"), "python": sys.version.split()[0]}, fh, indent=1)
        fh.write("\n")
    sys.exit(1 if hangs else 0)


if __name__ == "__main__":
    main()
