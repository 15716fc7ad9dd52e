"""Every test that needs Qt or the shared data asks through tests/needs.py, so that CI=true turns a missing
requirement into a failure; a bare pytest.importorskip("PySide6") skipped even in CI (issue 20, item 14)."""

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_no_test_skips_around_the_needs_rule():
    bare = [f"{p.relative_to(TESTS)}:{n}" for p in sorted(TESTS.rglob("*.py"))
            if p.name not in ("needs.py", Path(__file__).name)
            for n, line in enumerate(p.read_text().splitlines(), 1)
            if re.search(r"importorskip\(\s*['\"](PySide6|pytestqt|pyqtgraph)", line)]
    assert not bare, f"use needs.qt() instead: {bare}"


def test_every_gui_test_module_asks_for_qt():
    modules = [p for p in sorted((TESTS / "gui").glob("test_*.py"))]
    assert modules
    missing = [p.name for p in modules if not re.search(r"^qt\(\)", p.read_text(), re.M)]
    assert not missing, f"these GUI test modules do not call needs.qt(): {missing}"
