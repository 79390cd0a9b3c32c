"""bench/bench_speed.py --compare: its input checks, and the module it extracts from a commit."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_speed as bs  # noqa: E402


def run(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "bench", "bench_speed.py"), *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def test_compare_refuses_bad_input_in_one_line(tmp_path):
    out = tmp_path / "c.json"
    for args, msg in ((["--compare", "no-such-commit", "HEAD"], "is not a commit"),
                      (["--compare", "HEAD", "HEAD", "--pairs", "3"], "at least 10")):
        r = run(*args, "--out", str(out))
        assert r.returncode == 2 and msg in r.stderr and r.stderr.strip().count("\n") == 2, r.stderr  # usage + error
        assert "Traceback" not in r.stderr
    assert not out.exists()


def test_module_at_writes_the_commits_module(tmp_path):
    sha = bs.commit_of("HEAD")
    assert sha and len(sha) == 40 and bs.commit_of("no-such-commit") is None
    bs.module_at(sha, str(tmp_path / "A"))
    got = (tmp_path / "A" / "timing_counting_spikes.py").read_bytes()
    want = subprocess.run(["git", "-C", ROOT, "show", f"{sha}:timing_counting_spikes.py"], capture_output=True,
                          check=True).stdout
    assert got == want and b"def forward(" in got
