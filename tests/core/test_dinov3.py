"""DINOv3 ViT files: RoPE, 4 storage tokens, layer scale, masked key bias; official and timm layouts.

The committed fixture (``tests/data/dinov3_tiny.pth`` and ``dinov3_tiny_reference.npz``) holds random weights in the
official layout and what the official model computed from them, both written by ``scripts/make_dinov3_fixture.py``
running the official builder (facebookresearch/dinov3); every run checks against it. Where the official code is on
this machine (``DINOV3_REPO``: a checkout or its git directory) a fresh model is built and compared too; without it
that test skips, also under CI: the fixture is what CI checks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from dinov3_files import REFERENCE, WEIGHTS, need_timm_dinov3, timm_layout

from highlighter.core.attention import last_blocks
from highlighter.core.build import build_attention_model
from highlighter.core.formats import load_checkpoint
from highlighter.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[2]
FETCHED = ROOT.parent / ".mirror" / "facebookresearch+dinov3" / "repo"  # a fetched git dir beside the repository
TOL = 1e-5


def sizes(ref) -> list[str]:
    return sorted(k[len("image_"):] for k in ref.files if k.startswith("image_"))


def compare(weights: Path, reference: Path, num_heads: int | None = None) -> dict[str, float]:
    """Our attention, class features and patch tokens against the official ones; returns the attention's max
    abs difference per size."""
    ck = load_checkpoint(weights, num_heads=num_heads)
    assert ck.vit.rope and ck.vit.layerscale and ck.vit.num_register_tokens == 4 and ck.vit.norm_eps == 1e-5
    assert ck.unexpected == []
    model = build_attention_model(ck)
    ref = np.load(reference)
    n_prefix = int(ref["n_prefix"])
    assert n_prefix == 1 + ck.vit.num_register_tokens
    diffs = {}
    for size in sizes(ref):
        image = torch.from_numpy(ref[f"image_{size}"])
        tokens: list = []
        with torch.no_grad():
            attn, cls = model(image, with_features=True, tokens=tokens)
        official = ref[f"attention_{size}"]  # (heads, 1 + R + h*w): softmax over every token, registers included
        h, w = (int(v) // ck.vit.patch_size for v in size.split("x"))
        assert attn.shape == (1, ck.vit.num_heads, h, w)
        # the patch columns of that softmax, kept as they are: not renormalised over the patches
        got = attn[0].reshape(ck.vit.num_heads, -1).numpy()
        np.testing.assert_allclose(official.sum(-1), 1, atol=1e-5)
        assert official[:, n_prefix:].sum(-1).min() < 0.999  # the class token and registers take a share
        diffs[size] = float(np.abs(got - official[:, n_prefix:]).max())
        assert diffs[size] <= TOL, (size, diffs[size])
        np.testing.assert_allclose(cls[0].numpy(), ref[f"cls_{size}"], rtol=0, atol=TOL)
        np.testing.assert_allclose(tokens[0][0].numpy(), ref[f"patch_{size}"], rtol=0, atol=TOL)
    return diffs


def test_fixture_attention_equals_the_official_models():
    diffs = compare(WEIGHTS, REFERENCE)
    assert set(diffs) == {"32x48", "64x32"}


def test_fixture_is_small_and_exercises_rope():
    assert WEIGHTS.stat().st_size + REFERENCE.stat().st_size < 300_000
    ck = load_checkpoint(WEIGHTS)
    model = build_attention_model(ck)
    ref = np.load(REFERENCE)
    image = torch.from_numpy(ref["image_32x48"])
    with torch.no_grad():
        without = last_blocks(model.vit.blocks, model.vit.norm, model.prepare_tokens(image), 5, (2, 3))
    assert np.abs(without[0].reshape(2, -1).numpy() - ref["attention_32x48"][:, 5:]).max() > 1e-3


def official_repo() -> Path | None:
    env = os.environ.get("DINOV3_REPO")
    if env:
        return Path(env).expanduser()
    return FETCHED if FETCHED.exists() else None


@pytest.mark.parametrize("ffn,dims,sizes_", [("mlp", (32, 2, 2), "32x48,64x32,80x208"),
                                             ("swiglu", (48, 3, 3), "48x16,112x96")])
def test_official_builder_random_weights(tmp_path, ffn, dims, sizes_):
    repo = official_repo()
    if repo is None:  # not needs.missing: CI has no official code by design, and checks the committed fixture
        pytest.skip("the official DINOv3 code is not here (set DINOV3_REPO to a facebookresearch/dinov3 checkout "
                    "or git dir)")
    dim, depth, heads = dims
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_dinov3_fixture.py"), "--dinov3", str(repo),
                        "--weights", str(tmp_path / "w.pth"), "--reference", str(tmp_path / "r.npz"), "--seed", "7",
                        "--embed-dim", str(dim), "--depth", str(depth), "--heads", str(heads), "--ffn", ffn,
                        "--sizes", sizes_], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    ck = load_checkpoint(tmp_path / "w.pth")
    assert ck.vit.swiglu == (ffn == "swiglu") and ck.vit.num_heads == heads and ck.vit.depth == depth
    diffs = compare(tmp_path / "w.pth", tmp_path / "r.npz")
    assert set(diffs) == set(sizes_.split(","))


def test_timm_layout_of_the_fixture_equals_the_official_model(tmp_path):
    """timm drops the periods (it recomputes them, base 100), the bias mask (splitting q and v biases) and renames
    the registers and layer scales: the same model, loaded from timm's layout, still matches the official one."""
    from safetensors.torch import save_file

    state = torch.load(WEIGHTS, weights_only=True)
    _, timm_state = timm_layout(state, 32, 2, 2)
    assert "reg_token" in timm_state and "rope_embed.periods" not in timm_state
    save_file(timm_state, str(tmp_path / "timm.safetensors"))
    ck = load_checkpoint(tmp_path / "timm.safetensors")  # timm's file does not say: dim / 64 heads, at least 1
    assert ck.source.startswith("timm DINOv3") and ck.vit.num_heads == 1
    ck = load_checkpoint(tmp_path / "timm.safetensors", num_heads=2)
    assert state["rope_embed.periods"].dtype == torch.bfloat16  # as in the released files
    torch.testing.assert_close(ck.state["rope_embed.periods"], state["rope_embed.periods"].float(), rtol=0, atol=0)
    diffs = compare(tmp_path / "timm.safetensors", REFERENCE, num_heads=2)
    assert max(diffs.values()) <= TOL


def test_timm_random_model_loads_and_matches_timms_own_forward(tmp_path):
    """A random-weight timm DINOv3 model's state dict (timm's layout as timm saves it) loads strictly, and our final-
    norm patch tokens and class token equal timm's forward_features once timm's periods are rounded to bfloat16 as
    the released official files hold them (timm's model cards give that line to match the original outputs)."""
    import timm
    from safetensors.torch import save_file

    need_timm_dinov3()
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_dinov3", pretrained=False, embed_dim=64, depth=2, num_heads=1,
                              num_classes=0).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("gamma_1", "gamma_2")):
                p.copy_(0.5 + torch.rand_like(p))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors"))
    ck = load_checkpoint(tmp_path / "m.safetensors", num_heads=1)
    assert not ck.vit.qkv_bias and ck.vit.num_heads == 1 and ck.unexpected == []
    ours = build_attention_model(ck)
    image = torch.randn(1, 3, 48, 80)
    tokens: list = []
    model.rope.periods = model.rope.periods.to(torch.bfloat16).to(torch.float32)
    with torch.no_grad():
        _, cls = ours(image, with_features=True, tokens=tokens)
        theirs = model.forward_features(image)
    # 1e-6: timm's float32 periods would be 2e-6 off here
    torch.testing.assert_close(tokens[0], theirs[:, 5:], rtol=0, atol=1e-6)
    torch.testing.assert_close(cls, theirs[:, 0], rtol=0, atol=1e-6)


def test_heads_come_from_the_periods():
    ck = load_checkpoint(WEIGHTS)
    assert ck.vit.num_heads == 2 and ck.state["rope_embed.periods"].shape == (4,)
    with pytest.raises(CheckpointError, match="contradicts the file's RoPE periods"):
        load_checkpoint(WEIGHTS, num_heads=4)


def broken(tmp_path: Path, name: str, edit) -> Path:
    state = torch.load(WEIGHTS, weights_only=True)
    edit(state)
    torch.save(state, tmp_path / name)
    return tmp_path / name


BAD = {
    "no_periods.pth": (lambda s: s.pop("rope_embed.periods"), "without rope_embed.periods"),
    "periods_2d.pth": (lambda s: s.__setitem__("rope_embed.periods", torch.ones(2, 2)),
                       "rope_embed.periods of shape (2, 2) does not fit a ViT of dim 32"),
    "periods_5.pth": (lambda s: s.__setitem__("rope_embed.periods", torch.ones(5)),
                      "rope_embed.periods of shape (5,) does not fit"),
    "periods_nan.pth": (lambda s: s["rope_embed.periods"].__setitem__(0, float("nan")), "not positive finite"),
    "storage_wide.pth": (lambda s: s.__setitem__("storage_tokens", torch.zeros(1, 4, 48)),
                         "register_tokens has shape (1, 4, 48) in the checkpoint, the model expects (1, 4, 32)"),
    "qkv_narrow.pth": (lambda s: s.__setitem__("blocks.1.attn.qkv.weight", torch.zeros(96, 16)),
                       "blocks.1.attn.qkv.weight has shape (96, 16)"),
    "mask_short.pth": (lambda s: s.__setitem__("blocks.0.attn.qkv.bias_mask", torch.ones(3)),
                       "bias_mask has shape (3,)"),
    "with_pos_embed.pth": (lambda s: s.__setitem__("pos_embed", torch.zeros(1, 197, 32)), "with a pos_embed"),
    "untied_cls_norm.pth": (lambda s: s.update({"cls_norm.weight": torch.ones(32), "cls_norm.bias": torch.zeros(32)}),
                            "untied class-token norm (cls_norm)"),
    "no_mlp_w2.pth": (lambda s: s.update({"blocks.0.mlp.w1.weight": torch.zeros(64, 32)}), "no blocks.0.mlp.w2.weight"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_dinov3_file_gives_one_line(tmp_path, cli, cat_path, name):
    edit, message = BAD[name]
    path = broken(tmp_path, name, edit)
    code, out, err = cli("attention", cat_path, "--checkpoint", path, "--image-size", 64, "--out", tmp_path / "o")
    assert code == 2, (name, err)
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, (name, err)
    assert "Traceback" not in out + err


def test_attention_cli_runs_on_a_dinov3_file(tmp_path, cli, cat_path):
    code, out, err = cli("attention", cat_path, "--checkpoint", WEIGHTS, "--image-size", 96, "--out", tmp_path / "o")
    assert code == 0, err
    assert any((tmp_path / "o").iterdir())


def test_live_graph_torch_and_onnx_equal_the_official_attention(tmp_path):
    """The live model (pixels in, normalised by the model; RoPE's sin and cos fixed for its grid) and its ONNX
    export."""
    import onnxruntime as ort

    from highlighter.preprocess import IMAGENET_MEAN, IMAGENET_STD
    from highlighter.runtime.export import export_onnx, live_model

    ck = load_checkpoint(WEIGHTS)
    ref = np.load(REFERENCE)
    image = torch.from_numpy(ref["image_32x48"])
    raw = (image * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]) * 255
    live = live_model(build_attention_model(ck).vit, ck.vit, (32, 48))
    official = ref["attention_32x48"][:, 5:]
    with torch.no_grad():
        attn, cls = live(raw, with_features=True)
    assert np.abs(attn[0].reshape(2, -1).numpy() - official).max() <= TOL
    np.testing.assert_allclose(cls[0].numpy(), ref["cls_32x48"], rtol=0, atol=1e-4)
    path = export_onnx(live, tmp_path / "g.onnx", with_features=True)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": raw.numpy()})
    assert np.abs(got[0][0].reshape(2, -1) - official).max() <= TOL
    np.testing.assert_allclose(got[1][0], ref["cls_32x48"], rtol=0, atol=1e-4)


def test_similarity_pca_and_tracking_run_on_the_official_patch_tokens(cat_path):
    """What PCA, similarity and tracking read is the final-norm patch tokens (checked above against the official
    x_norm_patchtokens); here the photo road and the tracker hand them over at other sizes and aspect ratios."""
    from PIL import Image

    from highlighter.features import cosine_similarity_map, pca_rgb
    from highlighter.video.pipeline import Settings
    from highlighter.video.session import photo_road
    from highlighter.video.track import FirstMask, Tracker

    ck = load_checkpoint(WEIGHTS)
    road = photo_road(ck, "cpu", (96, 160), settings=Settings(keep_features=True))
    result = road.process(np.asarray(Image.open(cat_path).convert("RGB")))
    assert result.attention.shape == (2, 6, 10)
    assert result.tokens.shape == (60, 32) and result.keys.shape == (60, 32)
    assert pca_rgb(result.tokens, (6, 10)).shape == (6, 10, 3)
    sim = cosine_similarity_map(result.tokens, 13, (6, 10))
    assert sim.shape == (6, 10) and abs(float(sim.reshape(-1)[13]) - 1) < 1e-5
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(3)]
    labels = np.zeros((64, 96), np.uint8)
    labels[16:48, 32:64] = 1
    tracker = Tracker(ck, device="cpu")
    tracker.start(frames[0], FirstMask(labels, [0, 255]))
    for frame in frames[1:]:
        assert tracker.step(frame).shape == (64, 96)


@pytest.mark.parametrize("fmt,suffix", [("dino", ".pth"), ("safetensors", ".safetensors")])
def test_export_round_trip_keeps_the_model(tmp_path, cli, fmt, suffix):
    """`export --format dino` writes the official DINOv3 layout (the fixture's very keys and shapes); our safetensors
    keeps the architecture; both load back to the same attention."""
    out = tmp_path / f"x{suffix}"
    code, _, err = cli("export", "--checkpoint", WEIGHTS, "--format", fmt, "--out", out)
    assert code == 0, err
    if fmt == "dino":
        official = torch.load(WEIGHTS, weights_only=True)
        written = torch.load(out, weights_only=True)
        assert {k: tuple(v.shape) for k, v in written.items()} == {k: tuple(v.shape) for k, v in official.items()}
        for k, v in official.items():
            if k != "blocks.0.attn.qkv.bias" and k != "blocks.1.attn.qkv.bias" and k != "mask_token":
                torch.testing.assert_close(written[k].float(), v.float(), rtol=0, atol=0, msg=k)
    diffs = compare(out, REFERENCE)
    assert max(diffs.values()) <= TOL


def test_export_of_the_fixture_loads_strictly_into_the_official_model(tmp_path, cli):
    repo = official_repo()
    if repo is None:
        pytest.skip("the official DINOv3 code is not here (set DINOV3_REPO)")
    code, _, err = cli("export", "--checkpoint", WEIGHTS, "--format", "dino", "--out", tmp_path / "x.pth")
    assert code == 0, err
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_dinov3_fixture.py"), "--dinov3", str(repo),
                        "--load", str(tmp_path / "x.pth"), "--reference", str(tmp_path / "r.npz")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    again, ref = np.load(tmp_path / "r.npz"), np.load(REFERENCE)
    for k in ref.files:
        np.testing.assert_allclose(again[k], ref[k], rtol=0, atol=1e-6, err_msg=k)


def test_training_and_mae_refuse_a_dinov3_file(cli, cat_path, tmp_path):
    from highlighter.config import DinoCfg
    from highlighter.errors import HighlighterError
    from highlighter.train.pretrain import _init_backbone

    with pytest.raises(HighlighterError, match="DINOv3"):
        _init_backbone("dino", DinoCfg(), str(WEIGHTS), {})
    code, out, err = cli("mae", cat_path, "--checkpoint", WEIGHTS, "--out", tmp_path / "o")
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


def test_rope_stays_float32_in_a_bfloat16_model():
    """The official attention rotates q and k in float32 whatever the model runs in; so do ours, in AttentionViT
    (the periods of a released file are bfloat16 values already) and in the live model (its sines and cosines)."""
    from highlighter.runtime.export import live_model

    ck = load_checkpoint(WEIGHTS)
    ref = np.load(REFERENCE)
    live = live_model(build_attention_model(ck).vit, ck.vit, (64, 32)).to(torch.bfloat16)
    assert live.rope_sin.dtype == torch.float32 and live.rope_cos.dtype == torch.float32
    assert live.mean.dtype == torch.float32  # the photo is normalised in float32, then meets the weights
    assert live.vit.patch_embed.proj.weight.dtype == torch.bfloat16
    model = build_attention_model(ck).to(torch.bfloat16)
    image = torch.from_numpy(ref["image_64x32"]).to(torch.bfloat16)
    with torch.no_grad():
        attn = model(image).float()
    assert np.abs(attn[0].reshape(2, -1).numpy() - ref["attention_64x32"][:, 5:]).max() < 0.05  # bfloat16 weights
