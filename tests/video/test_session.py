"""The live stream's decisions without Qt (video/session.py): keys, the first predictor, the choice as data."""

import threading
import time
from pathlib import Path

import pytest

from highlighter.core.formats import load_checkpoint
from highlighter.runtime.predictor import remember_choice
from highlighter.video.session import (
    Choice,
    Origin,
    StreamKey,
    choose,
    clip_frames,
    first_predictor,
    open_stream,
)

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "assets" / "cockatoo_320x180_5s.mp4"
TINY = "random:vit_tiny/16"


def test_keys_are_values_and_say_whether_they_are_a_graphs():
    ck = load_checkpoint(TINY)
    a, b = StreamKey.for_model(ck, [112, 192]), StreamKey.for_model(ck, (112, 192))
    assert a == b and hash(a) == hash(b) and {a: 1}[b] == 1 and not a.on_graph
    g = StreamKey.for_graph((112, 192))
    assert g.on_graph and g != a and g.size == a.size


def test_open_stream_gives_the_frames_size_and_refuses_nothing_to_stream(tmp_path):
    source, shape = open_stream(str(CLIP))
    source.close()
    assert shape == (180, 320)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no images|no frames"):
        open_stream(str(tmp_path / "empty"))


def test_a_stream_starts_on_torch_fp32_and_reads_a_kept_choice(cache):
    ck = load_checkpoint(TINY)
    from highlighter.core.build import build_attention_model

    model = build_attention_model(ck)
    key, pred, kept = first_predictor(ck, model, (180, 320), 112, {})
    assert key == StreamKey.for_model(ck, (112, 192)) and pred.name == "torch-fp32" and kept is None
    remember_choice(ck, (112, 192), {"chosen": "ort-fp32", "ort-fp32": {"ms": 3.0, "mean_iou": 1.0}})
    _, _, kept = first_predictor(ck, model, (180, 320), 112, {})
    assert kept["chosen"] == "ort-fp32"
    mine = object()
    assert first_predictor(ck, model, (180, 320), 112, {key: mine})[1] is mine  # chosen before: reused


def test_choose_measures_once_then_reads_the_choice_back(cache):
    ck = load_checkpoint(TINY)
    key = StreamKey.for_model(ck, (64, 112))
    frames = clip_frames(str(CLIP), 2)
    assert len(frames) == 2 and frames[0].shape == (180, 320, 3)
    _, pred, choice = choose(ck, key, lambda: frames, threading.Event())
    assert choice.origin is Origin.MEASURED and choice.backend == pred.name and choice.size == (64, 112)
    assert "measured now" in choice.line("clip")
    _, pred2, again = choose(ck, key, lambda: pytest.fail("a kept choice measures nothing"))
    assert again.origin is Origin.CACHED and again.backend == pred.name
    assert again.line("clip").startswith(f"clip: backend {pred.name} at 64x112 (")
    assert "chosen on an earlier start, " in again.line("clip") and "s old)" in again.line("clip")


def test_the_choice_line_says_which_test_let_the_backend_in():
    maps = {"chosen": "ort-int8", "ort-int8": {"agrees": "maps", "map_r": 0.9995, "mean_iou": 0.9},
            "measured_at": time.time() - 7200}
    line = Choice("ort-int8", (224, 400), Origin.CACHED, maps).line("blackswan", earlier="an earlier run")
    assert line == ("blackswan: backend ort-int8 at 224x400 (the fastest whose maps agree with fp32, r 0.9995; its "
                    "masks differ on near-flat maps, IoU 0.900; chosen on an earlier run, 2 h old)")
    masks = {"chosen": "torch-fp32", "torch-fp32": {"agrees": "masks", "mean_iou": 1.0}}
    assert "whose masks agree with fp32, IoU 1.000; measured now" in Choice(
        "torch-fp32", (8, 8), Origin.MEASURED, masks).line("x")


def test_a_choice_for_a_rewritten_file_says_it_was_not_kept(cache, tmp_path):
    """A run still training rewrites its checkpoint: a choice measured on the loaded weights is not kept under the
    new content's name, and the line says so instead of "kept"."""
    import os

    from highlighter.core.save import save_model

    ck = load_checkpoint(TINY)
    path = save_model(tmp_path / "run.safetensors", "dino", ck.vit, ck.state)
    loaded = load_checkpoint(str(path))
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # rewritten after it was loaded
    assert remember_choice(loaded, (64, 112), {"chosen": "torch-fp32"}) is None
    _, _, choice = choose(loaded, StreamKey.for_model(loaded, (64, 112)), lambda: clip_frames(str(CLIP), 1))
    assert choice.origin is Origin.MEASURED and choice.report["kept"] is False
    assert choice.line("clip").endswith("measured now, not kept: the model file changed after it was loaded)")
    assert not list((cache / "choices").glob("*.json"))  # nothing kept


def test_the_second_model_and_the_tokens_swap_keep_the_streams_preprocessing():
    """A second model and the torch predictor swapped in for patch tokens resize frames as the stream does (and
    share the loaded backbone); an unknown preprocessing is refused before anything is exported or measured."""
    from highlighter.runtime.predictor import auto_predictor, make_predictor, photo_predictor
    from highlighter.video.pipeline import Settings
    from highlighter.video.session import second_pipeline, tokens_predictor

    ck = load_checkpoint(TINY)
    engine = photo_predictor(ck, "cpu")
    first = make_predictor("torch-fp32", ck, (64, 112), "cpu", preprocessing="official")
    second = second_pipeline(engine, (64, 112), 64, Settings(), first.preprocessing)
    assert second.predictor.preprocessing == "official" and second.predictor.image_size == (64, 112)
    assert second.predictor.model.vit is engine.model.vit  # shared, not copied
    swapped = tokens_predictor(ck, first, engine.model)
    assert (swapped.preprocessing, swapped.image_size) == ("official", (64, 112))
    for make in (lambda: make_predictor("ort-fp32", ck, (64, 112), "cpu", preprocessing="nearest"),
                 lambda: auto_predictor(ck, (64, 112), lambda: pytest.fail("measured"), "cpu",
                                        preprocessing="nearest")):
        with pytest.raises(ValueError, match="unknown preprocessing 'nearest'; choose from official, fast"):
            make()
