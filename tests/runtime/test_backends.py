"""Every live backend against torch fp32 on a random-weight model; the ONNX graph's attention output."""

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from highlighter.core.checkpoint import build_attention_model, load_checkpoint
from highlighter.core.transforms import to_normalised_tensor
from highlighter.evaluation import iou as mask_iou
from highlighter.postprocess import mass_mask as mass_mask_np
from highlighter.preprocess import fast as to_blob
from highlighter.runtime.predictor import choose_backend, make_predictor

COCKATOO = "assets/cockatoo_320x180_5s.mp4"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import os

    os.environ["HIGHLIGHTER_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    ck = load_checkpoint("random:vit_tiny/16")
    cap = cv2.VideoCapture(COCKATOO)
    frames = []
    for i in range(40):
        ok, f = cap.read()
        if ok and i % 8 == 0:
            frames.append(f)
    assert len(frames) == 5
    return ck, frames


def fused_mask(pred, frame):
    return mass_mask_np(pred(frame).attention.mean(0), 0.6)


@pytest.mark.parametrize("backend,agreement", [("ort-fp32", 0.999), ("torch-bf16", 0.95), ("ort-int8", 0.95)])
def test_backends_agree_with_fp32(setup, backend, agreement):
    ck, frames = setup
    ref = make_predictor("torch-fp32", ck, (224, 224))
    pred = make_predictor(backend, ck, (224, 224))
    assert pred.num_heads == 3 and pred.image_size == (224, 224)
    ious = [mask_iou(fused_mask(pred, f), fused_mask(ref, f)) for f in frames]
    assert np.mean(ious) >= agreement, ious


def test_live_model_equals_the_engine_on_the_same_pixels(setup):
    """Folding the normalisation into the patch embedding changes nothing but rounding."""
    ck, frames = setup
    pred = make_predictor("torch-fp32", ck, (224, 288))
    blob = to_blob(frames[0], (224, 288))
    rgb = np.ascontiguousarray(blob[0].transpose(1, 2, 0)).astype(np.uint8)  # integer-valued already
    model = build_attention_model(ck)
    from PIL import Image

    with torch.no_grad():
        want = model(to_normalised_tensor(Image.fromarray(rgb))[None])[0].numpy()
    np.testing.assert_allclose(pred.run(blob), want, atol=1e-6)


def test_exported_graph_attention_matches_torch(tmp_path, cli):
    code, _, err = cli("export", "--checkpoint", "random:vit_tiny/16", "--out", tmp_path / "m.onnx",
                       "--image-size", 160, 224, "--features")
    assert code == 0, err
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["attention", "features"]
    x = (np.random.default_rng(0).random((1, 3, 160, 224)) * 255).astype(np.float32)
    attn, feats = sess.run(None, {"image": x})
    assert attn.shape == (1, 3, 10, 14) and feats.shape == (1, 192)
    ck = load_checkpoint("random:vit_tiny/16")
    model = build_attention_model(ck)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        want_attn, want_feats = model((torch.from_numpy(x) / 255 - mean) / std, with_features=True)
    np.testing.assert_allclose(attn, want_attn.numpy(), atol=1e-4)
    np.testing.assert_allclose(feats, want_feats.numpy(), atol=1e-3)


def test_auto_picks_an_agreeing_backend_and_reports_all(setup):
    ck, frames = setup
    pred, report = choose_backend(ck, (224, 224), frames[:2], repeats=1, log=lambda m: None)
    assert report["chosen"] in report and report[report["chosen"]]["mean_iou"] >= 0.98
    measured = {k: v for k, v in report.items() if isinstance(v, dict) and "ms" in v}
    assert {"torch-fp32", "ort-fp32", "ort-int8"} <= set(measured)
    agreeing = [k for k, v in measured.items() if v["mean_iou"] >= 0.98]
    assert report["chosen"] == min(agreeing, key=lambda k: measured[k]["ms"])  # the fastest that agrees
