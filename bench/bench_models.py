"""Models per hour on this machine's cores: one model per process against a batch of models through one time loop.

    python3 bench/bench_models.py            # four settings, 32 models each, both ways on all cores, ~3 min

For each setting the same 32 jobs (seeds 0-31) run through the grid engine on all cores twice, in one run:
--models 1 (every process trains its models one after another) and --models 16 (each process trains 16 models
through one time loop). Also the peak resident memory of one process training 16 one-cell models together.
Writes results/bench_models.json.
"""
import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import timing_counting_spikes as tcs  # noqa: E402

# The one-cell rows keep the 8-cell network's initialisation, Adam step and self-paced windows, as when
# results/bench_models.json was measured (the one-cell network's own defaults now train on 3-unit windows).
OLD = {"init": "seed", "lr": 5e-3}
SHAPES = (  # (label, Config): one setting each, its recipe cut short so the whole benchmark takes minutes
    ("paper one-cell, PFG f_cos F=10, B=1", tcs.Config(task="pfg", arch="paper", iters=600, eval_every=200,
                                                       window=(10, 200), **OLD)),
    ("paper one-cell, delays F=10 I=0,1, B=1", tcs.Config(task="delays", arch="paper", batch=1, iters=600,
                                                          eval_every=200, **OLD)),
    ("seed 8-cell, GTS F=10, B=1", tcs.Config(task="gts", iters=300, eval_every=100, window=(10, 10))),
    ("seed 8-cell, the seed's MSD, B=32 (headline shape)", tcs.Config(iters=150, eval_every=50)),
)

PEAK = ("import sys, timing_counting_spikes as tcs\n"
        "tcs.train_many(tcs.Config(task='pfg', arch='paper', iters=300, eval_every=100, window=(10, 200),\n"
        "                          init='seed', lr=5e-3), list(range(16)))\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")


def wall(cfg, models, workers, n=32):
    jobs = [(cfg, s) for s in range(n)]
    t = time.perf_counter()
    tcs.run_grid(jobs, workers, log=lambda s: None, quiet=True, models=models)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "bench_models.json"))
    a = ap.parse_args()
    rows = []
    for label, cfg in SHAPES:
        one = wall(cfg, 1, a.workers)
        many = wall(cfg, 16, a.workers)
        rows.append({"shape": label, "config": tcs.config_dict(cfg), "models": 32, "workers": a.workers,
                     "one_per_process_s": one, "batched_16_s": many, "models_per_hour_one": 32 / one * 3600,
                     "models_per_hour_batched": 32 / many * 3600, "ratio": one / many,
                     "default_models_per_process": tcs.MODELS_PER_PROCESS(cfg)})
        print(f"{label:52s} one per process {one:6.1f} s  batches of 16 {many:6.1f} s  -> {one / many:4.1f}x "
              f"models/hour  (default --models {tcs.MODELS_PER_PROCESS(cfg)})")
    r = subprocess.run([sys.executable, "-c", PEAK], capture_output=True, text=True, check=True, cwd=ROOT)
    peak = int(r.stdout.split()[-1]) / 1024
    print(f"peak memory of one process training 16 one-cell PFG models together: {peak:.0f} MB")
    tcs.write_json(a.out, {"rows": rows, "peak_mb_16_one_cell": peak, **tcs.versions(),
                           "date": time.strftime("%Y-%m-%d")})
    print(f"wrote {os.path.relpath(a.out)}")


if __name__ == "__main__":
    main()
