"""Time the README's commands, one after another from the repository root, each as its own process:
results/wallclock.json.

    python3 bench/bench_wallclock.py                     # headline runs, gradcheck, figures, GIF (~45 s)
    python3 bench/bench_wallclock.py --sweep             # and the 30-seed sweep first (~5 min more)
    python3 bench/bench_wallclock.py --update-results    # and keep what they write over the committed artifacts

What the commands write (headline results and models, figures, GIF, sweep) goes to a temporary folder unless
--update-results: their per-seed numbers depend on the CPU, and the committed ones name the CPU they came from.
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import timing_counting_spikes as tcs  # noqa: E402

PY = "python3"


def commands(res, viz, gif, sweep):
    """The README's commands, writing into the folders res (results), viz and the file gif."""
    return ([("30-seed sweep, both variants, 2 workers",
              f"{PY} timing_counting_spikes.py --seeds 0-29 --both --out {res}/msd_sweep.json")] if sweep else []) + [
        ("headline peephole", f"{PY} timing_counting_spikes.py --out {res}/headline_peephole.json "
                              f"--save-model {res}/model_peephole_seed4.npz"),
        ("headline vanilla", f"{PY} timing_counting_spikes.py --no-peep --out {res}/headline_vanilla.json "
                             f"--save-model {res}/model_vanilla_seed4.npz"),
        ("gradcheck", f"{PY} timing_counting_spikes.py --gradcheck"),
        ("visualize (saved models)", f"{PY} visualize_timing_counting_spikes.py --peep-model "
                                     f"{res}/model_peephole_seed4.npz --vanilla-model {res}/model_vanilla_seed4.npz "
                                     f"--outdir {viz}"),
        ("GIF", f"{PY} make_timing_counting_spikes_gif.py --quiet --out {gif}"),
    ]


def timed(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(cmd.split(), cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"failed: {cmd}\n{r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", action="store_true", help="also the 30-seed sweep")
    ap.add_argument("--update-results", action="store_true", help="write the commands' outputs over the committed "
                    "results/, viz/ and GIF (default: a temporary folder)")
    a = ap.parse_args()
    scratch = None if a.update_results else tempfile.mkdtemp(prefix="wallclock-")
    where = (lambda name: name) if a.update_results else (lambda name: os.path.join(scratch, name))
    rows = []
    for name, cmd in commands(where("results"), where("viz"), where("timing_counting_spikes.gif"), a.sweep):
        wall, cpu, out = timed(cmd)
        rows.append({"what": name, "command": cmd, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)})
        print(f"{name:42s} {wall:7.1f} s wall {cpu:7.1f} s cpu   {cmd}")
    artifacts = sum(r["wall_s"] for r in rows if not r["what"].startswith("30-seed") and r["what"] != "gradcheck")
    print(f"{'all artifacts (headline x2, visualize, GIF)':42s} {artifacts:7.1f} s wall")
    path = os.path.join(ROOT, "results", "wallclock.json")
    old = json.load(open(path)) if os.path.exists(path) else {}
    keep = [r for r in old.get("rows", []) if r["what"].startswith("30-seed")] if not a.sweep else []
    tcs.write_json(path, {"rows": keep + rows, "artifacts_wall_s": round(artifacts, 2),
                          "machine": {**tcs.versions(), "processor": platform.processor() or platform.machine()},
                          "date": time.strftime("%Y-%m-%d")})
    print(f"wrote {os.path.relpath(path, ROOT)}" + (f"; the commands' outputs are in {scratch}" if scratch else ""))


if __name__ == "__main__":
    main()
