"""Every relative link in the README, docs/ and the model card leads somewhere: the file exists, and an anchor
names a heading of that file (GitHub's heading ids). The README stays a page a newcomer reads at once."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "models" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text outside fenced code blocks (a '# comment' in a shell block is no heading)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def heading_ids(path: Path) -> set[str]:
    ids, seen = set(), {}
    for line in prose(path.read_text()).splitlines():
        m = re.match(r"#{1,6} (.*)", line)
        if not m:
            continue
        base = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(base, 0)
        seen[base] = n + 1
        ids.add(base if n == 0 else f"{base}-{n}")
    return ids


def links(path: Path) -> list[str]:
    return [m.group(1) for m in LINK.finditer(prose(path.read_text()))]


def test_the_pages_exist_and_link_to_each_other():
    names = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert {"app.md", "cli.md", "training.md", "performance.md", "architecture.md"} <= names
    readme_links = set(links(ROOT / "README.md"))
    for name in names:
        assert f"docs/{name}" in readme_links, f"README does not link docs/{name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    bad = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not followed (no network)
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in heading_ids(dest):
            bad.append(f"{target}: no heading #{anchor}")
    assert not bad, bad


def test_the_readme_fits_on_a_screen_and_tells_no_history():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 200
    for page in PAGES:
        body = page.read_text()
        assert not re.search(r"\bissues? \d+\b", body, re.I), page  # no change history (upstream "#N" refs are fine)
        assert not re.search(r"\(([0-9a-f]{7,40})\)", body), page  # nor commit ids


def test_the_checker_catches_a_broken_link(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Title\n\n[ok](#title) [gone](missing.md) [bad anchor](#nope)\n```\n# not a heading\n```\n")
    assert heading_ids(page) == {"title"}
    assert links(page) == ["#title", "missing.md", "#nope"]
