"""Stress: many small grids on a pool of 2 workers, each must exit. Run by hand, not in CI (minutes):

    python3 bench/stress_grid_exit.py --runs 200

Each run trains 8 tiny BPTT jobs (PFG, 10 iterations, one model a batch) through execute() with 2 workers, in a
fresh subprocess with a deadline; a run that passes its deadline is a hang: its processes' Python stacks are
printed (with py-spy, when installed) and it is killed. Prints one line per 20 runs and a summary; exit 1 on any hang.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = ('{"settings": [{"task": "pfg", "arch": "paper", "init": "paper", "iters": 10, "window": "3"}], '
        '"cells": ["peephole", "vanilla"], "seeds": "0-3"}')


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
    a = ap.parse_args()
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
        p = subprocess.Popen([sys.executable, os.path.join(ROOT, "timing_counting_spikes.py"), "--grid", grid,
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
    sys.exit(1 if hangs else 0)


if __name__ == "__main__":
    main()
