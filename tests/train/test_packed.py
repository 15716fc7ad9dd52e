"""The GPU data path on the CPU: packing, reading a pack, the decoded bank, and batched augmentation checked
against torchvision's own tensor operations."""

import zipfile

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from highlighter.train.packed import (
    ImageBank,
    PackedImages,
    TensorMultiCrop,
    _hsv_to_rgb,
    _rgb_to_hsv,
    color_jitter,
    find_training_images,
    load_source,
    pack_images,
)

from .test_runs import events, train


@pytest.fixture(scope="module")
def pack(real_photos, tmp_path_factory):
    big = tmp_path_factory.mktemp("big")
    Image.new("RGB", (400, 200), (200, 30, 30)).save(big / "wide.png")  # re-encoded to <= 128 px
    (big / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path_factory.mktemp("pack") / "photos.zip"
    summary = pack_images([real_photos, big], out, max_side=128)
    return out, summary


def test_pack_round_trips_the_photos(pack, real_photos):
    out, summary = pack
    originals = find_training_images([real_photos])
    assert summary["images"] == len(originals) + 1 and summary["unreadable"] == 1
    assert summary["kept"] == len(originals) and summary["resized"] == 1  # the 64-px JPEGs keep their bytes
    with zipfile.ZipFile(out) as z:
        assert len(z.namelist()) == summary["images"] and z.infolist()[0].compress_type == zipfile.ZIP_STORED
    refs = find_training_images([out])
    assert len(refs) == summary["images"]
    for ref, path in zip(refs, originals):  # same order, same pixels
        assert np.array_equal(np.asarray(load_source(ref)), np.asarray(load_source(path)))
    wide = load_source(refs[-1])
    assert wide.size == (128, 64) and abs(int(np.asarray(wide)[..., 0].mean()) - 200) < 3


def test_bank_decodes_once_to_centred_squares(pack):
    out, _ = pack
    refs = PackedImages.refs(str(out))
    bank = ImageBank(refs, 36, workers=1)
    assert bank.images.shape == (len(refs), 3, 36, 36) and bank.images.dtype == torch.uint8 and bank.skipped == 0
    ref = load_source(refs[0]).resize((36, 36), Image.BICUBIC)  # 64x64 photos: a plain resize
    assert np.array_equal(bank.images[0].permute(1, 2, 0).numpy(), np.asarray(ref))


def test_color_jitter_matches_torchvision_op_by_op():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16)
    b, c, s, h = (torch.tensor(v) for v in ([1.3, 0.7, 1.0, 1.1], [0.6, 1.4, 1.2, 0.9], [0.8, 1.2, 1.0, 1.1],
                                             [0.05, -0.1, 0.0, 0.08]))
    order = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]])
    got = color_jitter(x, [b, c, s, h], order)
    for i in range(4):
        want = x[i]
        for op in order[i].tolist():
            fn = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)[op]
            want = fn(want, float((b, c, s, h)[op][i]))
        torch.testing.assert_close(got[i], want, atol=2e-6, rtol=0)
    hsv = _rgb_to_hsv(x)
    torch.testing.assert_close(_hsv_to_rgb(hsv), x, atol=1e-6, rtol=0)


def test_crops_blur_and_solarize():
    aug = TensorMultiCrop(16, 8, (1.0, 1.0), (0.1, 0.3), 2)
    x = torch.rand(3, 3, 16, 16)
    gen = torch.Generator().manual_seed(0)
    boxes = aug.boxes(1000, 64, (0.05, 0.4), gen)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / 64**2
    aspect = (boxes[:, 2] - boxes[:, 0]) / (boxes[:, 3] - boxes[:, 1])
    assert area.min() >= 0.05 - 1e-4 and area.max() <= 0.4 + 1e-4 and area.mean() == pytest.approx(0.225, abs=0.01)
    assert aspect.min() >= 3 / 4 - 1e-4 and aspect.max() <= 4 / 3 + 1e-4
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 64 + 1e-4).all()
    # the whole image at its own size is the image itself; its left half at twice the width is a bilinear zoom
    whole = aug.crop(x, 16, None, None, boxes=torch.tensor([[0.0, 0.0, 16.0, 16.0]] * 3))
    torch.testing.assert_close(whole, x, atol=1e-5, rtol=0)
    half = aug.crop(x, 16, None, None, boxes=torch.tensor([[0.0, 0.0, 8.0, 16.0]] * 3))
    want = torch.nn.functional.interpolate(x[:, :, :, :8], size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(half[..., 1:-1], want[..., 1:-1], atol=1e-5, rtol=0)  # edges: roi_align clamps
    # blur: a per-sample Gaussian of sigma = radius, as torchvision's gaussian_blur (reflect padding)
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    got = aug.blur(x, 1.0, 1.0, gen)
    gen.set_state(state)
    _ = torch.rand(3, generator=gen)  # the on/off draw
    sigmas = 0.1 + 1.9 * torch.rand(3, generator=gen)
    for i, sg in enumerate(sigmas.tolist()):
        k = 2 * max(1, int(np.ceil(3 * float(sigmas.max())))) + 1
        want = TF.gaussian_blur(x[i], [k, k], [sg, sg])
        torch.testing.assert_close(got[i], want, atol=1e-5, rtol=0)
    sol = aug.solarize(x, 1.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(sol, torch.where(x >= 128 / 255, 1 - x, x))


def test_multicrop_output_and_determinism():
    aug = TensorMultiCrop(32, 16, (0.4, 1.0), (0.05, 0.4), 3, relative_blur=True)
    imgs = torch.randint(0, 256, (5, 3, 36, 36), dtype=torch.uint8)
    a = aug(imgs, torch.Generator().manual_seed(7))
    b = aug(imgs, torch.Generator().manual_seed(7))
    c = aug(imgs, torch.Generator().manual_seed(8))
    assert [t.shape for t in a] == [(5, 3, 32, 32)] * 2 + [(5, 3, 16, 16)] * 3
    assert all(torch.equal(p, q) for p, q in zip(a, b)) and not torch.equal(a[0], c[0])
    assert all(0 <= float(t.min()) and float(t.max()) <= 255 for t in a)
    assert aug.global_blur == pytest.approx(32 / 224) and aug.local_blur == pytest.approx(16 / 96)


def test_a_tensor_augment_run_from_a_pack_resumes_exactly(pack, tmp_path):
    out, _ = pack
    straight, paused = tmp_path / "straight", tmp_path / "paused"
    common = ["--augment", "tensor", "--log-every", "1", "--epochs", "2", "--warmup-epochs", "0"]
    r = train("dino", out, straight, *common)
    assert r.returncode == 0, r.stderr[-2000:]
    r = train("dino", out, paused, *common, "--max-steps", "3")
    assert r.returncode == 0 and "stopped at step 3 of 12 (max-steps)" in r.stderr, r.stderr[-2000:]
    assert events(paused)[-1]["event"] == "paused"
    r = train("dino", out, paused, "--resume", "--log-every", "1", "--epochs", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert [e["loss"] for e in events(straight, "step")] == [e["loss"] for e in events(paused, "step")]


def test_max_minutes_stops_with_a_checkpoint(real_photos, tmp_path):
    r = train("dino", real_photos, tmp_path / "run", "--epochs", "50", "--max-minutes", "0.05")
    assert r.returncode == 0 and "(max-minutes)" in r.stderr, r.stderr[-2000:]
    ck = torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=True)
    assert 0 < ck["global_step"] < 50 * 6
