"""The core stays importable without Qt and without onnxruntime (see STYLE.md's layering)."""

import subprocess
import sys


def test_core_and_cli_do_not_import_qt_or_onnxruntime():
    code = ("import sys, highlighter.cli, highlighter.core.inference, highlighter.core.formats, "
            "highlighter.commands.attention, highlighter.commands.mae, highlighter.weights, "
            "highlighter.commands.weights; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'onnxruntime')]; print(bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_help_lists_the_subcommands():
    r = subprocess.run([sys.executable, "-m", "highlighter", "--help"], capture_output=True, text=True, check=True)
    assert "attention" in r.stdout and "mae" in r.stdout


def test_ort_path_needs_no_torch():
    """The ONNX Runtime predictor and the per-frame pipeline run without torch (the app's ORT extra)."""
    code = ("import sys, highlighter.runtime.ort, highlighter.video.pipeline, highlighter.video.sources; "
            "print([m for m in sys.modules if m.split('.')[0] == 'torch'])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_import_contracts_hold():
    """pyproject.toml's import-linter contracts (every import, those inside functions too)."""
    import pytest

    pytest.importorskip("importlinter")
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"],
                       capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout and "Only gui imports Qt KEPT" in r.stdout
