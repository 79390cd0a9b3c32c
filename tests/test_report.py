"""Statistics on data with known answers, and the sweep report on a small fake sweep file."""
import json
import math

import numpy as np
import pytest

import timing_counting_spikes as tcs
from test_train import cli


def test_wilcoxon_textbook_exact():
    # Darwin's Zea mays differences (Fisher, The Design of Experiments, 1935), the classic signed-rank example:
    # W- = 24, exact two-sided p = 0.041259765625 (= 1352 / 2^15).
    d = [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75]
    w_plus, w_minus, n, p = tcs.wilcoxon_signed_rank(d)
    assert (w_plus, w_minus, n) == (96.0, 24.0, 15)
    assert p == pytest.approx(1352 / 2 ** 15, abs=1e-15)


def test_wilcoxon_small_exact_by_enumeration():
    # n = 3, all positive: W+ = 6 is the largest of 8 equally likely sign patterns -> p = 2 * 1/8
    assert tcs.wilcoxon_signed_rank([1.0, 2.0, 3.0])[3] == pytest.approx(0.25)
    # zeros are dropped; all zero -> no evidence
    assert tcs.wilcoxon_signed_rank([0, 0, 1.0, 2.0, 3.0])[2:] == (3, pytest.approx(0.25))
    assert tcs.wilcoxon_signed_rank([0.0, 0.0]) == (0.0, 0.0, 0, 1.0)


def test_wilcoxon_ties_normal_approximation():
    # |d| = 1,1,2,2,3 -> average ranks 1.5,1.5,3.5,3.5,5; W+ = 13.5, W- = 1.5;
    # var = 5*6*11/24 - (6 + 6)/48 = 13.5; z = (13.5 - 7.5) / sqrt(13.5)
    w_plus, w_minus, n, p = tcs.wilcoxon_signed_rank([1, -1, 2, 2, 3])
    assert (w_plus, w_minus, n) == (13.5, 1.5, 5)
    assert p == pytest.approx(math.erfc(6 / math.sqrt(13.5) / math.sqrt(2)))


def test_bootstrap_interval_covers_the_true_mean():
    d = np.random.default_rng(11).normal(0.3, 1.0, size=30)
    lo, hi = tcs.bootstrap_mean_ci(d)
    assert lo < 0.3 < hi and lo < d.mean() < hi
    assert 0.5 < hi - lo < 0.9                      # about 2 * 1.96 / sqrt(30) = 0.72
    assert tcs.bootstrap_mean_ci(d) == (lo, hi)     # fixed seed: the same interval every time


def fake_sweep(tmp_path, finals):
    runs = [{"seed": s, "variant": v, "final": dict(zip(("mse", "solved", "within1"), f)), "seen": 96000,
             "wall_time": 10.0, "history": []} for (s, v), f in finals.items()]
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"runs": runs, "config": {}}))
    return path


FINALS = {(3, "peephole"): (0.001, 1.0, 1.0), (3, "vanilla"): (0.004, 0.5, 0.9),
          (4, "peephole"): (0.002, 0.96, 1.0), (4, "vanilla"): (0.003, 0.96, 0.99),
          (5, "peephole"): (0.005, 0.40, 0.8), (5, "vanilla"): (0.001, 0.99, 1.0)}


def test_report_tables_match_the_file(tmp_path):
    r = cli("--report", str(fake_sweep(tmp_path, FINALS)))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    head = [l for l in lines if l.startswith("| peephole | 0.00200")]
    assert head == ["| peephole | 0.00200 | 0.960 | 1.000 | 96,000 | 10.0 |"]   # headline: seed 4
    rows = {int(l.split("|")[1]): [float(x) for x in l.split("|")[2:8]]
            for l in lines if l.startswith("| ") and l.split("|")[1].strip().isdigit()}
    for s in (3, 4, 5):
        assert rows[s] == [*FINALS[(s, "peephole")], *FINALS[(s, "vanilla")]]
    summary = [l for l in lines if l.startswith("| peephole |") and "±" in l][0].split("|")
    e = np.array([1.0, 0.96, 0.40])
    assert summary[2].strip() == f"{e.mean():.3f} ± {e.std(ddof=1):.3f}"
    assert summary[5].strip() == "2 / 3" and summary[6].strip() == "1 / 3"
    solve = [l for l in lines if l.startswith("| exact solve rate")][0].split("|")
    assert [c.strip() for c in solve[2:5]] == ["1", "1", "1"]       # wins, ties, losses
    assert solve[5].strip() == f"{np.mean([0.5, 0.0, -0.59]):+.3f}"
    mse = [l for l in lines if l.startswith("| test MSE")][0].split("|")
    assert [c.strip() for c in mse[2:5]] == ["2", "0", "1"]          # lower MSE counts as better


@pytest.mark.parametrize("content,fragment", [
    ("{not json", "not JSON"), ("{}", "no 'runs' list"), ('{"runs": [{"seed": 1}]}', "lacks"),
    (None, "without both variants"), ("dup", "appears twice"), ("nan", "lacks")])
def test_report_rejects_bad_files(tmp_path, content, fragment):
    if content is None:
        path = fake_sweep(tmp_path, {k: v for k, v in FINALS.items() if k != (5, "vanilla")})
    elif content == "dup":
        path = fake_sweep(tmp_path, FINALS)
        d = json.loads(path.read_text())
        d["runs"].append(d["runs"][0])
        path.write_text(json.dumps(d))
    elif content == "nan":
        path = fake_sweep(tmp_path, {**FINALS, (3, "vanilla"): (float("nan"), 0.5, 0.9)})
    else:
        path = tmp_path / "bad.json"
        path.write_text(content)
    r = cli("--report", str(path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and fragment in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_wilson_interval_known_values():
    assert tcs.wilson_interval(10, 20) == pytest.approx((0.2993, 0.7007), abs=1e-4)
    lo, hi = tcs.wilson_interval(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-4)
    assert tcs.wilson_interval(20, 20)[1] == 1.0 and tcs.wilson_interval(20, 20)[0] == pytest.approx(0.8389, abs=1e-4)


def stream_run(seed, variant, best_units, final_units, need=1000, period=10.0):
    m = lambda u: {"run_units": u, "run_steps": 10 * u, "success": u >= need, "rmse": 0.1, "period": period}
    return {"seed": seed, "variant": variant, "task": "gts", "final": m(final_units), "steps": 250_000 * (seed + 1),
            "best": {"iter": 100, **m(best_units)}}


def test_stream_report_on_a_hand_made_file(tmp_path):
    runs = [stream_run(0, "peephole", 1000, 1000), stream_run(1, "peephole", 1000, 40, period=10.02),
            stream_run(2, "peephole", 5, 5, period=9.9), stream_run(0, "vanilla", 3, 0, period=None),
            stream_run(1, "vanilla", 1000, 0), stream_run(2, "vanilla", 2, 0)]
    f = tmp_path / "g.json"
    f.write_text(json.dumps({"config": {"task": "gts", "F": 10, "arch": "paper", "init": "seed", "hidden": 1,
                                        "window": [2, 200],
                                        "peep": True, "forget": True}, "runs": runs}))
    r = cli("--report", str(f))
    assert r.returncode == 0, r.stderr
    rows = [ln.split(" | ") for ln in r.stdout.splitlines() if ln.startswith("| gts")]
    lo, hi = tcs.wilson_interval(2, 3)
    assert rows[0] == ["| gts F=10 w=2-200 paper/seed H=1", "peephole", "3", f"2 / 3 [{lo:.2f}, {hi:.2f}]", "1 / 3",
                       "1000", "40", "0.0200", "0.50 M |"]
    lo1, hi1 = tcs.wilson_interval(1, 3)
    assert rows[1][1:] == ["vanilla", "3", f"1 / 3 [{lo1:.2f}, {hi1:.2f}]", "0 / 3", "3", "0", "0.0000", "0.50 M |"]
    # peephole vs vanilla on 3 paired seeds: successes 2 vs 1; discordant pairs: seed 0 (peephole only)
    assert rows[2][1:] == ["vanilla", "3", "2 / 1", f"{tcs.fisher_exact(2, 1, 1, 2):.2g}",
                           f"{tcs.mcnemar_exact(1, 0):.2g}", f"{tcs.wilcoxon_signed_rank([997, 0, 3])[3]:.2g} |"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"config": {"task": "gts"}, "runs": [{"seed": 0, "variant": "vanilla", "final": {}}]}))
    r = cli("--report", str(bad))
    assert r.returncode == 2 and "lacks a seed, a cell, or final and best metrics" in r.stderr
    assert r.stderr.count("\n") == 1


def test_fisher_and_mcnemar_known_values():
    assert tcs.fisher_exact(3, 1, 1, 3) == pytest.approx(0.4857142857, abs=1e-9)    # Fisher's tea tasting
    assert tcs.fisher_exact(8, 2, 1, 5) == pytest.approx(0.0349650349, abs=1e-9)
    assert tcs.fisher_exact(0, 20, 20, 0) == pytest.approx(2 / math.comb(40, 20))
    assert tcs.fisher_exact(5, 5, 5, 5) == 1.0
    assert tcs.mcnemar_exact(0, 6) == pytest.approx(2 / 64) and tcs.mcnemar_exact(3, 3) == 1.0
    assert tcs.mcnemar_exact(0, 0) == 1.0


def test_last_k_mean_and_the_steady_rows(tmp_path):
    h = [{"solved": v, "mse": 0.1} for v in [0.0] * 5 + [0.5] * 5 + [1.0] * 5]
    assert tcs.last_k_mean({"history": h}, "solved", 10) == 0.75 and tcs.last_k_mean({"history": h[:9]}, "solved") is None
    runs = [{"seed": s, "variant": v, "final": {"mse": 0.01, "solved": 0.5, "within1": 0.9},
             "history": [{"solved": 0.2 * (v == "peephole") + 0.05 * s, "mse": 0.01}] * tcs.LAST_K}
            for s in range(6) for v in ("peephole", "vanilla")]
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"config": {}, "runs": runs}))
    r = cli("--report", str(f))
    assert r.returncode == 0, r.stderr
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("| exact solve rate, mean of the last 10"))
    assert row.split(" | ")[1:4] == ["6", "0", "0"] and "+0.200" in row
