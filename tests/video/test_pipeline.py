"""Post-processing, sources, latest-frame-wins, and `highlighter video`."""

import threading
import time

import cv2
import numpy as np
import pytest
import torch
from needs import shared_data

from highlighter.core.attention import mass_mask
from highlighter.runtime.base import Predictor
from highlighter.video.pipeline import FramePipeline, LatestSlot, LiveRunner, Settings
from highlighter.video.postprocess import OVERLAYS, Smoother, mass_mask_np
from highlighter.video.sources import SourceError, open_source


def test_numpy_mass_rule_equals_the_torch_one():
    rng = np.random.default_rng(0)
    a = rng.dirichlet(np.ones(150) * 0.5, size=4).reshape(4, 10, 15).astype(np.float32)
    want = mass_mask(torch.from_numpy(a.reshape(4, -1)), 0.6).numpy().reshape(4, 10, 15)
    np.testing.assert_array_equal(mass_mask_np(a, 0.6), want)


class FakePredictor(Predictor):
    """A predictor whose attention peaks on the bright part of the frame; optionally slow."""

    name, image_size, patch_size, num_heads = "fake", (64, 64), 16, 2

    def __init__(self, delay: float = 0.0):
        self.delay, self.calls = delay, 0

    def run(self, blob):
        self.calls += 1
        time.sleep(self.delay)
        g = cv2.resize(blob[0].mean(0), (4, 4), interpolation=cv2.INTER_AREA) + 1.0
        return np.stack([g / g.sum(), g / g.sum()]).astype(np.float32)


def frame_with_square():
    f = np.zeros((120, 160, 3), np.uint8)
    f[:60, :80] = 255
    return f


@pytest.mark.parametrize("mode", OVERLAYS)
def test_overlays_differ_from_the_frame_where_the_mask_is(mode):
    f = frame_with_square()
    res = FramePipeline(FakePredictor(), Settings(overlay=mode)).process(f)
    assert res.mask[:2, :2].sum() >= 3 and res.mask[2:, :].sum() == 0 and res.mask[:, 2:].sum() == 0
    ov = res.overlay
    assert ov.shape[0] == 120 and ov.shape[1] == (320 if mode == "side" else 160)
    assert not np.array_equal(ov[:, :160], f)
    if mode == "cutout":  # background dimmed, object kept
        assert ov[100, 150].max() == 0 and np.array_equal(ov[45, 60], f[45, 60])  # cell (1, 1) is kept


def test_smoothing_holds_a_mask_through_a_one_frame_blip():
    sm = Smoother(alpha=0.5, margin=0.15)
    steady = np.ones((4, 4), np.float32)
    steady[0, 0] = 10
    _, m1 = sm(steady, 0.6)
    blip = np.ones((4, 4), np.float32)
    blip[3, 3] = 10
    _, m2 = sm(blip, 0.6)
    assert m1[0, 0] and m2[0, 0]  # hysteresis: the object does not vanish on one odd frame
    raw = mass_mask_np(blip, 0.6)
    assert not raw[0, 0]


def test_latest_frame_wins_under_a_slow_model():
    """A source much faster than the model: frames are dropped, never queued."""
    frames = [frame_with_square() for _ in range(300)]

    class FastSource:
        status = "done"

        def __iter__(self):
            for i, f in enumerate(frames):
                time.sleep(0.001)
                yield type("F", (), {"index": i, "image": f, "name": str(i), "t": time.perf_counter()})()

        def close(self):
            pass

    results, lengths = [], []
    pipe = FramePipeline(FakePredictor(delay=0.03))
    runner = LiveRunner(FastSource(), pipe, results.append)
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            lengths.append(len(runner.slot))
            time.sleep(0.001)

    w = threading.Thread(target=watch)
    w.start()
    runner.start()
    runner.join(timeout=30)
    stop.set()
    w.join()
    assert max(lengths) <= 1 and runner.slot.max_len <= 1
    assert runner.frames_read == 300
    assert len(results) < 100 and runner.slot.dropped > 150  # most frames were dropped, not queued
    assert len(results) + runner.slot.dropped >= 299
    # each result is recent: latency about one model step, not a growing queue's worth
    assert max(r.timings["latency_ms"] for r in results) < 200


def test_latest_slot_semantics():
    s = LatestSlot()
    s.put(1)
    s.put(2)
    assert len(s) == 1 and s.get(0.1) == 2 and s.dropped == 1 and s.get(0.01) is None


def write_clip(path, n=12, size=(96, 64)):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    for i in range(n):
        f = np.full((size[1], size[0], 3), 20 * i % 255, np.uint8)
        cv2.rectangle(f, (10 + i, 10), (40 + i, 40), (255, 255, 255), -1)
        w.write(f)
    w.release()


def test_video_command_writes_one_mask_per_frame_at_frame_size(tmp_path, cli):
    write_clip(tmp_path / "clip.mp4")
    code, out, err = cli("video", tmp_path / "clip.mp4", "--checkpoint", "random:vit_tiny/16", "--backend",
                         "torch-fp32", "--image-size", 64, "--out", tmp_path / "o")
    assert code == 0, err
    masks = sorted((tmp_path / "o" / "masks").glob("*.png"))
    assert len(masks) == 12
    m = cv2.imread(str(masks[0]), cv2.IMREAD_GRAYSCALE)
    assert m.shape == (64, 96) and set(np.unique(m)) <= {0, 255}
    cap = cv2.VideoCapture(str(tmp_path / "o" / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12


def test_video_on_stills_of_mixed_sizes(tmp_path, cli, photos):
    folder = tmp_path / "stills"
    folder.mkdir()
    for p in photos[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    code, _, err = cli("video", folder, "--checkpoint", "random:vit_tiny/16", "--backend", "torch-fp32",
                       "--out", tmp_path / "o")
    assert code == 0, err
    for p in photos[:3]:
        m = cv2.imread(str(tmp_path / "o" / "masks" / f"{p.stem}.png"), cv2.IMREAD_GRAYSCALE)
        assert m.shape == cv2.imread(str(p)).shape[:2]  # each mask at its own photo's size


def test_truncated_video_ends_with_a_clear_status(tmp_path, cli):
    write_clip(tmp_path / "clip.mp4", n=40, size=(160, 120))
    data = (tmp_path / "clip.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    try:
        src = open_source(str(tmp_path / "cut.mp4"))
    except SourceError as e:  # some builds refuse the file outright: that is a clear status too
        assert "cannot open" in str(e)
        return
    n = sum(1 for _ in src)
    assert n < 40 and src.status  # stopped, and says why
    code, out, err = cli("video", tmp_path / "cut.mp4", "--checkpoint", "random:vit_tiny/16", "--backend",
                         "torch-fp32", "--image-size", 64, "--out", tmp_path / "o")
    assert code == 0 and "Traceback" not in err


def test_missing_camera_and_file_are_clear_errors(tmp_path, cli):
    with pytest.raises(SourceError, match="camera 7 cannot be opened"):
        open_source("7")
    code, _, err = cli("video", tmp_path / "nope.mp4", "--checkpoint", "random:vit_tiny/16", "--out", tmp_path)
    assert code == 2 and "no such file" in err


def test_bench_live_json(tmp_path, cli):
    frames = shared_data("video", "blackswan", "frames")
    code, out, err = cli("bench", "live", "--source", frames, "--arch", "vit_tiny", "--frames", 6,
                         "--backend", "torch-fp32", "--json", tmp_path / "b.json")
    assert code == 0, err
    import json

    r = json.loads((tmp_path / "b.json").read_text())
    for key in ("fps", "model_ms", "latency_ms_p50", "latency_ms_p95", "backend", "reference_fps", "speedup"):
        assert key in r
    assert r["fps"] > 0 and r["reference_fps"] > 0 and r["mean_iou_vs_fp32"] == 1.0
