"""README.md and docs/: every relative link and image resolves to a file of the repository, and every #anchor to a
heading of its file; lines stay readable."""
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation but - and _ dropped, spaces to -."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path):
    with open(path) as fh:
        text = re.sub(r"```.*?```", "", fh.read(), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def links(path):
    with open(path) as fh:
        text = re.sub(r"```.*?```", "", fh.read(), flags=re.S)
    return [m.group(1) for m in LINK.finditer(text)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_relative_links_resolve(page):
    bad = []
    for target in links(page):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        full = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(full) or not full.startswith(ROOT):
            bad.append(f"{target}: no such file")
        elif anchor and full.endswith(".md") and anchor not in anchors(full):
            bad.append(f"{target}: no heading #{anchor}")
    assert not bad, bad


def test_the_checker_catches_a_broken_link(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Title\n\n[ok](#title) [gone](missing.md) ![img](x.png)\n```\n[in code](nowhere.md)\n```\n")
    assert links(str(page)) == ["#title", "missing.md", "x.png"]
    assert anchors(str(page)) == {"title"}
    assert slug("The paper's claims, tested") == "the-papers-claims-tested"


def test_readme_is_short_and_lines_are_readable():
    with open(PAGES[0]) as fh:
        lines = fh.read().splitlines()
    assert len(lines) <= 300
    long = [i + 1 for i, line in enumerate(lines) if len(line) > 120]
    assert not long, f"README.md lines over 120 characters: {long}"


def test_the_readme_answer_is_the_claims_result():
    """The README's verdict table is what --claims prints from the committed results/claims.json, verbatim."""
    import json
    viz = pytest.importorskip("visualize_timing_counting_spikes")
    with open(os.path.join(ROOT, "results", "claims.json")) as fh:
        claims = json.load(fh)["claims"]
    with open(os.path.join(ROOT, "README.md")) as fh:
        assert viz.verdict_markdown(claims) in fh.read()


SOURCES = PAGES + sorted(glob.glob(os.path.join(ROOT, "*.py")) + glob.glob(os.path.join(ROOT, "bench", "*.py")))
UP = re.compile(r"(?:\.\./)+[\w.\-/]*")
ABSOLUTE = re.compile(r"(?<![\w.:/])/(?:work|home|root|opt|mnt|srv|Users)/[\w.\-/]*")


def outside(path, root=ROOT):
    """Paths in a file that point outside the repository: ../ paths that, from the file's folder, leave the
    repository or name nothing in it, and absolute paths into a machine's folders."""
    with open(path) as fh:
        text = fh.read()
    here, bad = os.path.dirname(path), []
    for m in UP.finditer(text):
        full = os.path.normpath(os.path.join(here, m.group(0).rstrip(".")))
        if not full.startswith(root + os.sep) or not os.path.exists(full):
            bad.append(m.group(0))
    return bad + ABSOLUTE.findall(text)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: os.path.relpath(p, ROOT))
def test_nothing_points_outside_the_repository(source):
    assert not outside(source), outside(source)


def test_the_outside_check_catches_a_path_out(tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "viz").mkdir()
    (root / "viz" / "a.png").write_bytes(b"")
    page = root / "docs" / "p.md"
    page.write_text("[fig](../viz/a.png) see `../shared/notes.md`, ../../elsewhere.md and /work/shared/data.json\n")
    assert outside(str(page), str(root)) == ["../shared/notes.md", "../../elsewhere.md", "/work/shared/data.json"]
