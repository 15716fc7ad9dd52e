"""One default per concept: the mass threshold and the input size are written once (highlighter/defaults.py), every
road reads them there, and each CLI flag means one thing in every command, with its default in its help."""

import argparse
import ast
from pathlib import Path

import pytest

from highlighter import defaults as D
from highlighter.cli import IMAGE_SIZE_HELP, build_parser

PACKAGE = Path(__file__).resolve().parents[1] / "highlighter"
# parameters that hold the mask threshold or the model's input size, wherever they are defaulted or passed
THRESHOLD_NAMES = {"threshold", "mass", "default_threshold"}
SIZE_NAMES = {"image_size", "short", "size"}


def literal_defaults(tree: ast.AST):
    """(line, name, value) for each numeric literal given to a threshold- or size-named parameter: a default in a
    signature, a keyword in a call, or the threshold of ``threshold_maps(maps, rule, T)`` / ``mass_mask(maps, T)``."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args
            pairs = list(zip(args[len(args) - len(node.args.defaults):], node.args.defaults))
            pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None]
            for arg, default in pairs:
                yield node.lineno, arg.arg, default
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg:
                    yield node.lineno, kw.arg, kw.value
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name == "threshold_maps" and len(node.args) >= 3:
                yield node.lineno, "threshold", node.args[2]
            if name == "mass_mask" and len(node.args) >= 2:
                yield node.lineno, "threshold", node.args[1]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            yield node.lineno, node.target.id, node.value  # dataclass fields


def offending_literals(source: str) -> list[str]:
    found = []
    for line, name, value in literal_defaults(ast.parse(source)):
        if not (isinstance(value, ast.Constant) and isinstance(value.value, (int, float))
                and not isinstance(value.value, bool)):
            continue
        if (name in THRESHOLD_NAMES and value.value == D.MASS) or (name in SIZE_NAMES and value.value == D.IMAGE_SIZE):
            found.append(f"line {line}: {name}={value.value}")
    return found


# 224 there is another concept: the official releases' position-embedding grid, and MAE's training crop
OTHER_224 = {"config.py": ["image_size=224"], "train/augment.py": ["size=224"]}


def test_the_mass_threshold_and_the_input_size_are_written_once():
    bad = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "defaults.py":
            continue
        rel = str(path.relative_to(PACKAGE))
        found = [f for f in offending_literals(path.read_text()) if f.split(": ", 1)[1] not in OTHER_224.get(rel, [])]
        if found:
            bad[rel] = found
    assert not bad, bad


def test_the_scan_finds_a_literal_default():
    src = ("def f(x, threshold=0.6): pass\n"
           "g(x, threshold=0.6)\nthreshold_maps(m, 'mass', 0.6)\n"
           "class S:\n    threshold: float = 0.6\n    short: int = 224\n"
           "def ok(x, threshold=MASS, alpha=0.6): pass\n")
    assert [s.split(":")[0] for s in offending_literals(src)] == ["line 1", "line 2", "line 3", "line 5", "line 6"]


def test_the_roads_start_from_the_same_defaults():
    from highlighter.app_state import AppState
    from highlighter.postprocess import threshold_maps
    from highlighter.video.pipeline import Settings

    state = AppState()
    assert (state.threshold, state.image_size, state.overlay) == (D.MASS, D.IMAGE_SIZE, D.OVERLAY)
    assert (Settings().threshold, Settings().overlay) == (D.MASS, D.OVERLAY)
    import numpy as np

    maps = np.random.default_rng(0).random((3, 5, 7))
    assert (threshold_maps(maps, "mass") == threshold_maps(maps, "mass", D.MASS)).all()


def subcommand_actions():
    def walk(parser, name):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for n, sp in a.choices.items():
                    yield from walk(sp, f"{name} {n}".strip())
            elif a.option_strings and not isinstance(a, (argparse._HelpAction, argparse._VersionAction)):
                yield name, a
    return list(walk(build_parser(), ""))


def test_every_flag_with_a_default_says_it():
    missing = [f"{cmd} {a.option_strings[-1]}" for cmd, a in subcommand_actions()
               if a.default not in (None, False) and "default" not in (a.help or "").lower()]
    assert not missing, missing


@pytest.mark.parametrize("flag", ["--image-size", "--device", "--heads", "--checkpoint-key", "--threshold"])
def test_a_flag_means_one_thing_in_every_command(flag):
    helps = {cmd: a for cmd, a in subcommand_actions() if flag in a.option_strings}
    assert len(helps) >= 2, helps
    if flag == "--image-size":
        exact = {cmd for cmd, a in helps.items() if not a.help.startswith(IMAGE_SIZE_HELP)}
        assert exact == {"export"}  # a graph has one input size: H W only, refused otherwise
        assert helps["export"].nargs == 2
    elif flag == "--threshold":
        assert all(str(D.MASS) in a.help.replace("0.6 ", "0.6") or f"mass {D.MASS:g}" in a.help
                   for a in helps.values())
    else:
        assert len({a.help for a in helps.values()}) == 1, {c: a.help for c, a in helps.items()}
    names = {o for _, a in subcommand_actions() for o in a.option_strings}
    assert "--head" not in names and "--size" not in names  # one spelling each: --heads, --image-size


def test_image_size_s_is_the_shorter_side_in_video_and_bench(cli, tmp_path):
    """`--image-size S` keeps the picture's aspect in `video` (and `bench live` shares its code); `eval` and `track`
    refuse H W before any model loads."""
    from highlighter.commands.video import model_size

    frame = __import__("numpy").zeros((480, 854, 3), "uint8")
    assert model_size(224, frame, 16) == (224, 400) and model_size(None, frame, 16) == (224, 400)
    assert model_size((224, 224), frame, 16) == (224, 224)
    code, _, err = cli("eval", "--images", tmp_path, "--masks", tmp_path, "--image-size", 224, 224)
    assert code == 2 and "--image-size: eval takes one S" in err
