"""The exported graphs a quick start streams on: the index finds a graph only for the file content it was exported
from and the size asked for; fp16 storage of fp16-exact weights changes no output; the shipped graph is the
shipped model's."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from highlighter.core.build import build_attention_model
from highlighter.core.formats import load_checkpoint
from highlighter.core.save import export_safetensors
from highlighter.postprocess import mass_mask
from highlighter.preprocess import fast as to_blob
from highlighter.runtime import graphs
from highlighter.runtime.export import export_onnx, live_model, store_fp16_where_exact
from highlighter.runtime.predictor import onnx_for

ROOT = Path(__file__).resolve().parents[2]


def run(path, blob):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["attention"], {"image": blob})[0]


@pytest.fixture
def half_model(tmp_path, monkeypatch):
    """A random ViT-Ti/16 saved in fp16, as the shipped models are, and loaded back from its file."""
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(tmp_path / "cache"))
    path = export_safetensors(load_checkpoint("random:vit_tiny/16"), tmp_path / "tiny.safetensors", half=True)
    return load_checkpoint(str(path))


def test_fp16_storage_of_fp16_exact_weights_changes_no_output_and_halves_the_file(half_model, tmp_path):
    live = live_model(build_attention_model(half_model).vit, half_model.vit, (64, 96))
    full = tmp_path / "full.onnx"
    torch.onnx.export(live.eval(), (torch.rand(1, 3, 64, 96) * 255,), str(full), input_names=["image"],
                      output_names=["attention"], opset_version=20, dynamo=True, external_data=False)
    small = tmp_path / "small.onnx"
    small.write_bytes(full.read_bytes())
    converted = store_fp16_where_exact(small)
    assert converted >= 3 * 12  # the blocks' weight matrices (qkv, proj, fc1, fc2: most come as one tensor each)
    assert small.stat().st_size < 0.6 * full.stat().st_size
    kinds = {i.name: i.data_type for i in onnx.load(str(small)).graph.initializer}
    assert kinds.get("pos") == onnx.TensorProto.FLOAT  # interpolated: fp16 would round it, so kept
    blob = np.random.default_rng(0).uniform(0, 255, (1, 3, 64, 96)).astype(np.float32)
    assert np.array_equal(run(full, blob), run(small, blob))  # the very same numbers
    with torch.no_grad():
        np.testing.assert_allclose(run(small, blob), live(torch.from_numpy(blob)).numpy(), atol=1e-5)


def test_fp32_weights_stay_fp32(tmp_path):
    ck = load_checkpoint("random:vit_tiny/16")
    path = export_onnx(live_model(build_attention_model(ck).vit, ck.vit, (32, 32)), tmp_path / "g.onnx")
    big = [i for i in onnx.load(str(path)).graph.initializer if int(np.prod(i.dims)) >= 1024]
    assert big and all(i.data_type == onnx.TensorProto.FLOAT for i in big)


def test_a_graph_is_found_only_for_its_file_content_and_size(half_model, tmp_path):
    model = Path(half_model.path)
    assert not graphs.known(model)
    graph = onnx_for(half_model, (112, 192))  # the live export records it in the cache's index
    assert graphs.known(model)
    found = graphs.find(model, 112, (180, 320))  # the bundled clip's frames at the shorter side 112
    assert found == graphs.Graph(graph, (112, 192), 16, 3)
    assert graphs.find(model, 224, (180, 320)) is None  # no graph at that size
    assert graphs.find(model, 112, (480, 640)) is None  # nor for 4:3 frames
    index = json.loads((tmp_path / "cache" / graphs.INDEX).read_text())
    assert list(index.values())[0]["graphs"] == {"112x192": graph.name}  # relative: the cache folder may move
    copy = tmp_path / "copy.safetensors"  # the same content elsewhere: the same graph
    copy.write_bytes(model.read_bytes())
    assert graphs.find(copy, 112, (180, 320)) == found
    data = bytearray(model.read_bytes())  # a model changed in place: another content, no graph
    data[-1] ^= 1
    model.write_bytes(bytes(data))
    assert not graphs.known(model) and graphs.find(model, 112, (180, 320)) is None
    graph.unlink()  # a graph deleted from the cache is not offered
    assert graphs.find(copy, 112, (180, 320)) is None


def test_a_cache_entry_at_another_size_does_not_hide_the_shipped_graph(tmp_path, monkeypatch):
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(tmp_path / "cache"))
    model = ROOT / "models" / "dino_default.safetensors"
    other = tmp_path / "cache" / "webcam.onnx"  # as a webcam's 4:3 stream leaves it in the cache
    other.parent.mkdir()
    other.write_bytes(b"not read")
    graphs.record(model, other, (224, 296), 8, 3)
    assert graphs.find(model, 224, (480, 640)).onnx == other
    assert graphs.find(model, 224, (180, 320)).onnx.parent == ROOT / "models"  # the shipped one, still found


def test_the_shipped_graph_is_the_shipped_models(tmp_path, monkeypatch):
    """scripts/ship_graph.py must be run again when models/dino_default.safetensors changes."""
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(tmp_path / "cache"))  # only the models folder's index
    import cv2

    model = ROOT / "models" / "dino_default.safetensors"
    cap = cv2.VideoCapture(str(ROOT / "assets" / "cockatoo_320x180_5s.mp4"))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    found = graphs.find(model, 224, frame.shape[:2])
    assert found is not None, "no shipped graph for the shipped model: run scripts/ship_graph.py"
    assert found.onnx.parent == ROOT / "models"
    ck = load_checkpoint(str(model))
    assert (found.patch_size, found.num_heads) == (ck.vit.patch_size, ck.vit.num_heads)
    blob = to_blob(frame, found.image_size)
    got = run(found.onnx, blob)[0]
    with torch.no_grad():
        want = live_model(build_attention_model(ck).vit, ck.vit, found.image_size)(torch.from_numpy(blob))[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6)
    assert np.array_equal(mass_mask(got.mean(0), 0.6), mass_mask(want.mean(0), 0.6))
