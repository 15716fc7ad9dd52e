"""A kept backend choice carries its time, says how old it is, and is measured again when the backend it picked
runs far from the time it was chosen with (a choice measured under load must not stick forever)."""

import json
import time
from pathlib import Path

from highlighter.core.formats import load_checkpoint
from highlighter.runtime.predictor import (
    STALE_FRAMES,
    ChoiceWatch,
    cached_choice,
    choice_age,
    forget_choice,
    remember_choice,
)

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "assets" / "cockatoo_320x180_5s.mp4"
TINY = "random:vit_tiny/16"


def test_age_in_words():
    t0 = 1_000_000.0
    assert choice_age({"measured_at": t0}, now=t0 + 40) == "40 s old"
    assert choice_age({"measured_at": t0}, now=t0 + 5 * 60) == "5 min old"
    assert choice_age({"measured_at": t0}, now=t0 + 3 * 3600) == "3 h old"
    assert choice_age({"measured_at": t0}, now=t0 + 4 * 86400) == "4 days old"
    assert choice_age({"chosen": "torch-fp32"}) == "of unknown age"  # written before choices had a time


def test_the_watch_speaks_once_when_the_backend_is_far_from_its_recorded_time():
    report = {"chosen": "ort-int8", "ort-int8": {"ms": 10.0, "mean_iou": 1.0}}
    slow = ChoiceWatch(report)
    assert all(slow.add(50.0) is None for _ in range(STALE_FRAMES - 1))  # not before enough frames
    line = slow.add(50.0)
    assert line is not None and "ort-int8 runs at 50.0 ms" in line and "5.0x slower" in line and "10.0 ms" in line
    assert slow.add(50.0) is None  # once
    fast = ChoiceWatch(report)  # measured under load: everything ran slow then
    assert [fast.add(2.5) for _ in range(STALE_FRAMES)][-1].endswith("measuring the backends again")
    steady = ChoiceWatch(report)  # within a factor of 2 either way: noise, kept
    assert all(steady.add(t) is None for t in [12.0, 18.0, 7.0, 19.0] * STALE_FRAMES)
    assert ChoiceWatch({"chosen": "torch-fp32"}).add(1e6) is None  # no recorded time: nothing to compare


def test_a_kept_choice_has_its_time_and_can_be_forgotten(cache):
    ck = load_checkpoint(TINY)
    before = time.time()
    remember_choice(ck, (64, 112), {"chosen": "torch-fp32", "torch-fp32": {"ms": 3.0, "mean_iou": 1.0}})
    kept = cached_choice(ck, (64, 112))
    assert before <= kept["measured_at"] <= time.time()
    forget_choice(ck, (64, 112))
    assert cached_choice(ck, (64, 112)) is None
    forget_choice(ck, (64, 112))  # nothing kept: no error


def test_video_measures_a_stale_choice_again_and_keeps_the_new_one(cache, tmp_path, cli):
    ck = load_checkpoint(TINY)
    size = (64, 112)  # --image-size 64 on the 320x180 clip, patch 16
    # a choice kept long ago that recorded torch fp32 at 0.001 ms: the stream runs far slower than that
    remember_choice(ck, size, {"chosen": "torch-fp32", "torch-fp32": {"ms": 0.001, "mean_iou": 1.0},
                               "measured_at": time.time() - 3 * 86400})
    code, out, err = cli("video", CLIP, "--checkpoint", TINY, "--image-size", "64", "--out", tmp_path / "v")
    assert code == 0, err
    assert "chosen on an earlier run for this model, size and machine, 3 days old" in out
    assert "runs at" in out and "slower than the 0.0 ms it was chosen with: measuring the backends again" in out
    assert "(measured again, kept)" in out
    kept = json.loads(next((cache / "choices").glob("*.json")).read_text())
    assert kept["torch-fp32"]["ms"] > 0.001 and time.time() - kept["measured_at"] < 600
    assert len(list((tmp_path / "v" / "masks").glob("*.png"))) == 100  # every frame still written
