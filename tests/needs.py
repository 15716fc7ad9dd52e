"""What a test needs from outside the repository: the shared data beside it, and Qt.

On a developer's machine a missing one skips the test (pytest -ra names it). In CI (the CI variable set,
as .ci/run and CI services do) it is a failure: a CI run must not pass by skipping what it was meant to run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(reason: str) -> None:
    """Skip, or fail under CI. Works inside a test or fixture and at module level."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set: a missing requirement fails the run instead of skipping)",
                    pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def shared_data(*parts: str) -> Path:
    """A folder of ../shared/data (see its README), or skip / fail when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.is_dir():
        missing(f"{path} is not there (the shared data sits beside the repository)")
    return path


def qt() -> None:
    """PySide6 (the gui extra) and pytest-qt (the dev extra), or skip / fail."""
    try:
        import PySide6.QtWidgets  # noqa: F401
        import pytestqt  # noqa: F401
    except ImportError as e:
        missing(f"the GUI tests need PySide6 and pytest-qt (pip install -e '.[gui,dev]'): {e}")
