"""Post-processing, sources, latest-frame-wins, and `highlighter video`."""

import json
import time

import cv2
import numpy as np
import pytest
from needs import shared_data

from highlighter.postprocess import mass_mask as mass_mask_np
from highlighter.render import OVERLAYS
from highlighter.runtime.base import Predictor
from highlighter.video.pipeline import FramePipeline, LatestSlot, LiveRunner, Settings
from highlighter.video.smoothing import Smoother
from highlighter.video.sources import SourceError, open_source

from reference import mass_rule


def test_numpy_mass_rule_equals_the_torch_one():
    rng = np.random.default_rng(0)
    a = rng.dirichlet(np.ones(150) * 0.5, size=4).reshape(4, 10, 15).astype(np.float32)
    np.testing.assert_array_equal(mass_mask_np(a, 0.6), mass_rule(a, 0.6))


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


class WatchedSlot(LatestSlot):
    """The runner's slot, watched under its own lock: how many frames it held after each put, and for each
    frame the model took, the newest frame read by then."""

    def __init__(self):
        super().__init__()
        self.held, self.taken, self.newest = [], [], None

    def put(self, item) -> None:
        with self._cond:  # re-entrant: the parent takes it again
            super().put(item)
            self.newest = item.index
            self.held.append(len(self))

    def get(self, timeout=None):
        with self._cond:
            item = super().get(timeout)
            if item is not None:
                self.taken.append((item.index, self.newest))
            return item


def test_latest_frame_wins_under_a_slow_model():
    """A source much faster than the model: frames are dropped, never queued, and the model always takes the
    newest frame. Structural: nothing here depends on how fast a loaded machine is."""
    frames = [frame_with_square() for _ in range(300)]

    class FastSource:
        status = "done"

        def __iter__(self):
            for i, f in enumerate(frames):
                time.sleep(0.001)
                yield type("F", (), {"index": i, "image": f, "name": str(i), "t": time.perf_counter()})()

        def close(self):
            pass

    results = []
    pipe = FramePipeline(FakePredictor(delay=0.03))
    runner = LiveRunner(FastSource(), pipe, results.append)
    runner.slot = slot = WatchedSlot()
    runner.start()
    runner.join(timeout=60)
    assert runner.frames_read == 300 and len(slot.held) == 300
    assert max(slot.held) == 1  # at most one frame waits, whatever the model's speed
    assert [i for i, _ in slot.taken] == [r.index for r in results]  # the model ran on what it took, in order
    stale = [(i, newest) for i, newest in slot.taken if i != newest]
    assert not stale, f"the model took older frames than the newest read (taken, newest): {stale[:5]}"
    assert results[-1].index == 299  # the last frame is not lost
    assert len(results) < 100 and slot.dropped > 150  # most frames were dropped, not queued
    assert len(results) + slot.dropped == 300  # each frame either shown or counted as dropped


def test_latest_slot_semantics():
    s = LatestSlot()
    s.put(1)
    s.put(2)
    assert len(s) == 1 and s.get(0.1) == 2 and s.dropped == 1 and s.get(0.01) is None


def write_clip(path, n=12, size=(96, 64), fourcc="mp4v"):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, size)
    for i in range(n):
        f = np.full((size[1], size[0], 3), 20 * i % 255, np.uint8)
        cv2.rectangle(f, (10 + i, 10), (40 + i, 40), (255, 255, 255), -1)
        w.write(f)
    w.release()


def decoded_frames(path) -> list[np.ndarray]:
    """Every frame OpenCV decodes from a file, read directly (not through our sources)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    return frames


def avi_frame_chunks(data: bytes) -> list[int]:
    """Byte offsets of the frame chunks in an AVI's 'movi' list (RIFF: id, little-endian size, data, pad)."""
    assert data[:4] == b"RIFF" and data[8:12] == b"AVI "
    pos = 12
    while pos < len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if cid == b"LIST" and data[pos + 8:pos + 12] == b"movi":
            chunks, q, end = [], pos + 12, pos + 8 + size
            while q < end:
                if data[q + 2:q + 4] in (b"dc", b"db"):  # a video frame (compressed or not)
                    chunks.append(q)
                n = int.from_bytes(data[q + 4:q + 8], "little")
                q += 8 + n + (n & 1)
            return chunks
        pos += 8 + size + (size & 1)
    raise AssertionError("no movi list")


def fp32_masks(frames, size, checkpoint="random:vit_tiny/16") -> list[np.ndarray]:
    """The torch-fp32 pipeline on each frame (BGR as OpenCV decodes it; the pipeline takes RGB), its patch-grid
    mask upsampled to the frame's size here (nearest: pixel (y, x) takes cell (y h // H, x w // W)), 0/255."""
    from highlighter.core.formats import load_checkpoint
    from highlighter.runtime.predictor import make_predictor

    pipe = FramePipeline(make_predictor("torch-fp32", load_checkpoint(checkpoint), size, device="cpu"))
    out = []
    for f in frames:
        grid = pipe.process(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)).mask
        (h, w), (H, W) = grid.shape, f.shape[:2]
        full = grid[(np.arange(H) * h) // H][:, (np.arange(W) * w) // W]
        assert 0 < full.mean() < 1  # a real mask: a wrong frame or a wrong size would show
        out.append(full.astype(np.uint8) * 255)
    return out


def test_video_command_writes_one_mask_per_frame_at_frame_size(tmp_path, cli):
    write_clip(tmp_path / "clip.mp4")
    code, out, err = cli("video", tmp_path / "clip.mp4", "--checkpoint", "random:vit_tiny/16", "--backend",
                         "torch-fp32", "--image-size", 64, "--out", tmp_path / "o")
    assert code == 0, err
    masks = sorted((tmp_path / "o" / "masks").glob("*.png"))
    assert [m.name for m in masks] == [f"clip_{i:06d}.png" for i in range(12)]
    m = cv2.imread(str(masks[0]), cv2.IMREAD_GRAYSCALE)
    assert m.shape == (64, 96) and set(np.unique(m)) <= {0, 255}
    # the first and the last mask are the torch-fp32 pipeline's on those frames, at full size
    frames = decoded_frames(tmp_path / "clip.mp4")
    assert len(frames) == 12 and "model input 64x96" in out
    for i, want in zip((0, 11), fp32_masks([frames[0], frames[11]], (64, 96))):
        np.testing.assert_array_equal(cv2.imread(str(masks[i]), cv2.IMREAD_GRAYSCALE), want)
    cap = cv2.VideoCapture(str(tmp_path / "o" / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12


def test_video_backend_auto_reuses_the_choice_of_an_earlier_run(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(tmp_path / "cache"))
    write_clip(tmp_path / "clip.mp4")
    args = ("video", tmp_path / "clip.mp4", "--checkpoint", "random:vit_tiny/16", "--image-size", 64)
    code, out, err = cli(*args, "--out", tmp_path / "a")
    assert code == 0, err
    assert "measured now, kept" in out and len(list((tmp_path / "cache" / "choices").glob("*.json"))) == 1
    code, out, err = cli(*args, "--out", tmp_path / "b")
    assert code == 0, err
    assert "chosen on an earlier run" in out and "measured now" not in out
    code, out, err = cli(*args, "--threshold", 0.5, "--out", tmp_path / "c")  # the choice depends on the threshold
    assert code == 0, err
    assert "measured now, kept" in out


def test_video_command_writes_boxes_json(tmp_path, cli):
    write_clip(tmp_path / "clip.mp4")
    code, out, err = cli("video", tmp_path / "clip.mp4", "--checkpoint", "random:vit_tiny/16", "--backend",
                         "torch-fp32", "--image-size", 64, "--out", tmp_path / "o")
    assert code == 0, err
    assert "boxes.json" in out
    masks = sorted((tmp_path / "o" / "masks").glob("*.png"))
    # boxes.json: every frame's stem, the largest component of its mask in the frame's pixels (or null)
    boxes = json.loads((tmp_path / "o" / "boxes.json").read_text())
    assert list(boxes) == [m.stem for m in masks] and any(b is not None for b in boxes.values())
    for m in masks:
        n, _, stats, _ = cv2.connectedComponentsWithStats(cv2.imread(str(m), cv2.IMREAD_GRAYSCALE), connectivity=8)
        if n <= 1:
            assert boxes[m.stem] is None
            continue
        x, y, w, h = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])), :4]
        assert np.abs(np.array(boxes[m.stem]) - [x, y, x + w, y + h]).max() <= 1, m.stem


def test_video_on_stills_of_mixed_sizes(tmp_path, cli, photos):
    folder = tmp_path / "stills"
    folder.mkdir()
    for p in photos[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    code, out, err = cli("video", folder, "--checkpoint", "random:vit_tiny/16", "--backend", "torch-fp32",
                         "--out", tmp_path / "o")
    assert code == 0, err
    assert "model input 224x224" in out  # the default size, for every still
    stills = [cv2.imread(str(p)) for p in photos[:3]]
    assert len({s.shape for s in stills}) == 3  # mixed sizes
    for p, want in zip(photos[:3], fp32_masks(stills, (224, 224))):
        m = cv2.imread(str(tmp_path / "o" / "masks" / f"{p.stem}.png"), cv2.IMREAD_GRAYSCALE)
        assert m.shape == want.shape  # each mask at its own photo's size...
        np.testing.assert_array_equal(m, want)  # ... and the torch-fp32 pipeline's on that photo


def test_truncated_video_ends_with_a_clear_status(tmp_path, cli):
    """A file that opens and then fails partway: 16 MJPG frames in an AVI, cut after the 5th frame's chunk.
    The header still says 16 frames (the index at the end is gone), so the file opens; the 5 whole frames
    are delivered, then the source says it ended early, and `highlighter video` writes their 5 masks,
    warns, and exits 0 (README: a source that stops early ends with a warning)."""
    write_clip(tmp_path / "clip.avi", n=16, size=(160, 120), fourcc="MJPG")
    data = (tmp_path / "clip.avi").read_bytes()
    chunks = avi_frame_chunks(data)
    assert len(chunks) == 16
    (tmp_path / "cut.avi").write_bytes(data[:chunks[5]])
    want = decoded_frames(tmp_path / "clip.avi")[:5]

    src = open_source(str(tmp_path / "cut.avi"))
    assert src.total == 16  # it opened, and believes its header
    got = list(src)
    src.close()
    assert [f.index for f in got] == list(range(5)) and [f.name for f in got] == [f"cut_{i:06d}" for i in range(5)]
    for f, w in zip(got, want):
        np.testing.assert_array_equal(f.image, w)  # the delivered frames are the file's first five
    assert src.status == "cut.avi: the video ended early at frame 5 of 16 (truncated or corrupt?)"

    code, out, err = cli("video", tmp_path / "cut.avi", "--checkpoint", "random:vit_tiny/16", "--backend",
                         "torch-fp32", "--image-size", 64, "--out", tmp_path / "o")
    assert code == 0, err
    assert "warning: cut.avi: the video ended early at frame 5 of 16 (truncated or corrupt?)" in err
    assert "Traceback" not in err and f"wrote 5 masks to {tmp_path / 'o' / 'masks'}" in out
    masks = sorted((tmp_path / "o" / "masks").glob("*.png"))
    assert [m.name for m in masks] == [f"cut_{i:06d}.png" for i in range(5)]
    assert len(decoded_frames(tmp_path / "o" / "overlay.mp4")) == 5
    assert "model input 64x80" in out  # the shorter side 64, the 4:3 frame's aspect on the 16 px grid
    for m, w in zip(masks, fp32_masks(want, (64, 80))):  # each mask is its own frame's
        np.testing.assert_array_equal(cv2.imread(str(m), cv2.IMREAD_GRAYSCALE), w)


def test_missing_camera_and_file_are_clear_errors(tmp_path, cli):
    with pytest.raises(SourceError, match="camera 7 cannot be opened"):
        open_source("7")
    code, _, err = cli("video", tmp_path / "nope.mp4", "--checkpoint", "random:vit_tiny/16", "--out", tmp_path)
    assert code == 2 and "no such file" in err


def test_bench_live_json(tmp_path, cli, monkeypatch):
    frames = shared_data("video", "blackswan", "frames")
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(tmp_path / "cache"))  # the exported graph goes here
    code, out, err = cli("bench", "live", "--source", frames, "--arch", "vit_tiny", "--frames", 6,
                         "--backend", "ort-fp32", "--json", tmp_path / "b.json")
    assert code == 0, err
    import json

    from highlighter.runtime.predictor import AGREEMENT

    r = json.loads((tmp_path / "b.json").read_text())
    # --image-size defaults to the shorter side at 224 with the frames' aspect (854 x 480 -> 224 x 400), as `video`
    assert r["backend"] == "ort-fp32" and r["frames"] == 6 and r["image_size"] == [224, 400]
    assert r["fps"] > 0 and r["reference_fps"] > 0 and r["model_ms"] > 0
    assert r["speedup"] == r["fps"] / r["reference_fps"]  # JSON keeps floats exactly
    assert 0 < r["latency_ms_p50"] <= r["latency_ms_p95"]
    # ONNX Runtime's masks agree with torch fp32's on the same frames (the bar `--backend auto` uses)
    assert AGREEMENT <= r["mean_iou_vs_fp32"] <= 1.0


@pytest.mark.parametrize("kind", ["file", "camera", "broken source", "broken model"])
def test_the_runner_says_why_a_stream_stopped_as_a_type(kind):
    """The Live tab branched on the status text ("camera" and "stopped" in it) to retry a lost camera; the runner
    now sets ``end`` before it reports, whatever the text says."""
    from highlighter.video.pipeline import StreamEnd

    class Source:
        is_camera = kind == "camera"
        status = "the device went away"  # neither "camera" nor "stopped": the text decides nothing

        def __iter__(self):
            for i in range(3):
                yield type("F", (), {"index": i, "image": frame_with_square(), "name": str(i), "t": 0.0})()
            if kind == "broken source":
                raise OSError("read error")

        def close(self):
            pass

    class Broken(FakePredictor):
        def run(self, blob):
            raise RuntimeError("out of memory")

    statuses = []
    runner = LiveRunner(Source(), FramePipeline(Broken() if kind == "broken model" else FakePredictor()),
                        lambda r: None, statuses.append)
    assert runner.end is None
    runner.start()
    runner.join(timeout=60)
    expected = {"file": StreamEnd.ENDED, "camera": StreamEnd.CAMERA_LOST, "broken source": StreamEnd.SOURCE_FAILED,
                "broken model": StreamEnd.INFERENCE_FAILED}[kind]
    assert runner.end is expected and statuses
