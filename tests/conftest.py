import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
ASSETS = ROOT / "assets"
sys.path.insert(0, str(TESTS))  # `import reference`

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    found = sorted(ASSETS.glob("*.jpg"))
    assert len(found) >= 5, "the demo photos must be bundled in assets/"
    return found


@pytest.fixture(scope="session")
def cat_path() -> Path:
    return ASSETS / "chelsea_cat.jpg"


@pytest.fixture
def cli(capsys):
    """Run ``highlighter ...`` in-process: returns (exit code, stdout, stderr)."""
    from highlighter.cli import main

    def run(*argv):
        code = main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="session")
def official_tree(tmp_path_factory) -> dict:
    """Random-weight files at the official download paths, for the loopback server (weights_server.py)."""
    from weights_server import write_official_tree

    return write_official_tree(tmp_path_factory.mktemp("official"))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache of our own (graphs, backend choices, weights) in the test's folder: HIGHLIGHTER_CACHE."""
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
