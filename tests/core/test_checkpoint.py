"""Every bad file fails with one line that names the problem; hostile pickles run nothing."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from highlighter.config import ViTConfig
from highlighter.core.build import build_attention_model
from highlighter.core.formats import load_checkpoint
from highlighter.core.save import save_model

import official_files as off


class WritesMarker:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvalsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').write('x')",))


@pytest.mark.parametrize("payload", [WritesMarker, EvalsCode])
@pytest.mark.parametrize("how", ["torch.save", "pickle", "nested"])
def test_hostile_pickle_is_refused_without_side_effect(tmp_path, cli, cat_path, payload, how):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    evil = payload(marker)
    if how == "torch.save":
        torch.save({"model": evil}, path)
    elif how == "pickle":
        path.write_bytes(pickle.dumps(evil))
    else:  # a real-looking checkpoint with the payload hidden in its args
        torch.save({"model": {"cls_token": torch.zeros(1, 1, 8)}, "args": evil}, path)
    assert not marker.exists()
    code, _, err = cli("attention", cat_path, "--checkpoint", path, "--out", tmp_path / "o")
    assert code == 2
    assert "refused to load" in err and "Python code" in err
    assert len(err.strip().splitlines()) == 1
    assert not marker.exists()


def save_tiny(path, **kw):
    return off.dino_backbone(path, depth=2, **kw)


def bad_files(tmp_path, photos):
    good = tmp_path / "good.pth"
    save_tiny(good)
    data = good.read_bytes()
    sd = torch.load(good, weights_only=True)
    cases = {}

    def case(name, message, writer):
        p = tmp_path / name
        writer(p)
        cases[name] = (p, message)

    case("empty.pth", "the file is empty", lambda p: p.write_bytes(b""))
    case("truncated.pth", "truncated or corrupt", lambda p: p.write_bytes(data[: len(data) // 2]))
    case("photo.pth", "not a PyTorch or safetensors checkpoint", lambda p: p.write_bytes(photos[0].read_bytes()))
    case("notes.pth", "not a PyTorch or safetensors checkpoint", lambda p: p.write_text("hello, world\n" * 10))
    case("resnet.pth", "not a ViT checkpoint",
         lambda p: torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "layer1.0.conv1.weight": torch.zeros(1)}, p))
    case("list.pth", "not a model checkpoint", lambda p: torch.save([torch.zeros(3)], p))
    case("nothing.pth", "no tensors found", lambda p: torch.save({"epoch": 3, "note": "x"}, p))
    case("missing_key.pth", "lacks blocks.1.norm2.weight",
         lambda p: torch.save({k: v for k, v in sd.items() if k != "blocks.1.norm2.weight"}, p))
    case("missing_block.pth", "blocks.0 is missing",
         lambda p: torch.save({k: v for k, v in sd.items() if not k.startswith("blocks.0.")}, p))
    case("mixed_sizes.pth", "has shape",
         lambda p: torch.save({**sd, "blocks.1.attn.qkv.weight": torch.zeros(3 * 384, 384)}, p))
    case("half.safetensors", "not a valid safetensors file", lambda p: _half_safetensors(p, sd))
    case("dir.pth", "is a folder", lambda p: p.mkdir())
    cases["absent.pth"] = (tmp_path / "absent.pth", "checkpoint not found")
    return cases


def _half_safetensors(path, sd):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    path.write_bytes(path.read_bytes()[:-1000])


def test_each_bad_file_gives_one_line_naming_the_problem(tmp_path, cli, cat_path, photos):
    for name, (path, message) in bad_files(tmp_path, photos).items():
        code, out, err = cli("attention", cat_path, "--checkpoint", path, "--out", tmp_path / "o")
        assert code == 2, name
        assert message in err, (name, err)
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, (name, err)
        assert "Traceback" not in err + out


def test_a_real_process_prints_no_traceback(tmp_path, cat_path, photos):
    cases = bad_files(tmp_path, photos)
    marker = tmp_path / "PWNED"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(WritesMarker(marker)))
    cases["evil.pkl"] = (tmp_path / "evil.pkl", "refused to load")
    for name in ("truncated.pth", "resnet.pth", "evil.pkl"):
        r = subprocess.run([sys.executable, "-m", "highlighter", "attention", str(cat_path), "--checkpoint",
                            str(cases[name][0]), "--out", str(tmp_path / "o")], capture_output=True, text=True)
        assert r.returncode == 2
        assert "Traceback" not in r.stderr and cases[name][1] in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not marker.exists()


def test_wrong_size_and_bad_head_count(tmp_path, cli, cat_path):
    save_tiny(tmp_path / "tiny.pth")
    code, _, err = cli("attention", cat_path, "--checkpoint", tmp_path / "tiny.pth", "--arch", "vit_small",
                       "--out", tmp_path / "o")
    assert code == 2 and "holds a vit_tiny/16" in err and "not a vit_small" in err
    code, _, err = cli("attention", cat_path, "--checkpoint", tmp_path / "tiny.pth", "--arch", "vit_tiny/8",
                       "--out", tmp_path / "o")
    assert code == 2 and "not a vit_tiny/8" in err
    code, _, err = cli("attention", cat_path, "--checkpoint", tmp_path / "tiny.pth", "--num-heads", 5,
                       "--out", tmp_path / "o")
    assert code == 2 and "5 heads do not divide the embedding dim 192" in err


def test_missing_student_key(tmp_path, cli, cat_path):
    teacher, _ = off.dino_full(tmp_path / "full.pth", depth=2)
    ck = torch.load(tmp_path / "full.pth", weights_only=False)
    del ck["student"]
    torch.save(ck, tmp_path / "teacher_only.pth")
    code, _, err = cli("attention", cat_path, "--checkpoint", tmp_path / "teacher_only.pth", "--checkpoint-key",
                       "student", "--out", tmp_path / "o")
    assert code == 2 and "no 'student' weights" in err


def test_unexpected_keys_are_reported(tmp_path, cli, cat_path):
    sd = off.dino_backbone(tmp_path / "x.pth", depth=2).state_dict()
    torch.save({**sd, "extra.adapter.weight": torch.zeros(4)}, tmp_path / "x.pth")
    code, _, err = cli("attention", cat_path, "--checkpoint", tmp_path / "x.pth", "--image-size", 64,
                       "--out", tmp_path / "o")
    assert code == 0 and "ignored 1 unexpected keys" in err and "extra.adapter.weight" in err


def test_float16_file_loads(tmp_path):
    ref = off.dino_backbone(tmp_path / "fp32.pth", depth=2)
    torch.save({k: v.half() for k, v in ref.state_dict().items()}, tmp_path / "fp16.pth")
    ck = load_checkpoint(tmp_path / "fp16.pth")
    assert all(v.dtype == torch.float32 for v in ck.state.values())
    torch.testing.assert_close(ck.state["blocks.1.mlp.fc1.weight"], ref.blocks[1].mlp.fc1.weight.half().float())


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_own_format_round_trip_keeps_the_architecture(tmp_path, suffix):
    cfg = ViTConfig(embed_dim=96, depth=3, num_heads=4, patch_size=8, pos_grid=7, mlp_hidden=200)
    torch.manual_seed(0)
    from highlighter.core.backbone import build_vit

    vit = build_vit(cfg)
    path = save_model(tmp_path / f"model{suffix}", "dino", cfg, vit.state_dict(), note="test")
    ck = load_checkpoint(path)
    assert ck.vit == cfg  # 4 heads kept, although dim/64 would give 1
    assert ck.source.startswith("highlighter checkpoint")
    model = build_attention_model(ck)
    img = torch.randn(1, 3, 64, 40)
    from highlighter.core.attention import AttentionViT

    with torch.no_grad():
        torch.testing.assert_close(model(img), AttentionViT(vit, cfg).eval()(img), rtol=0, atol=0)
    # our checkpoints load with weights_only=True and no allow-list
    if suffix == ".pth":
        assert torch.load(path, weights_only=True)["highlighter"]["vit"]["num_heads"] == 4
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left nothing behind


def test_official_heads_table_and_dim64_fallback(tmp_path):
    off.dino_backbone(tmp_path / "tiny.pth", depth=2)  # (192, 2) is not an official architecture: 192/64
    assert load_checkpoint(tmp_path / "tiny.pth").vit.num_heads == 3
    ref = off.dino_backbone(tmp_path / "vit_h.pth", dim=64, heads=1, depth=1)
    assert load_checkpoint(tmp_path / "vit_h.pth").vit.num_heads == 1
    assert load_checkpoint(tmp_path / "vit_h.pth", num_heads=4).vit.num_heads == 4
    del ref


def test_mae_full_checkpoint_reads_norm_pix_from_args(tmp_path):
    off.mae_official(tmp_path / "a.pth", norm_pix_loss=True, dec_dim=64, dec_depth=1, dec_heads=2, depth=1)
    ck = load_checkpoint(tmp_path / "a.pth")
    assert ck.decoder.norm_pix_loss is True and ck.norm_pix_known
    assert ck.decoder.num_heads == 1  # 64 / 64: not an official decoder, so dim/64 unless told
    assert load_checkpoint(tmp_path / "a.pth", decoder_num_heads=2).decoder.num_heads == 2
    off.mae_official(tmp_path / "b.pth", with_args=False, dec_dim=512, dec_depth=8, depth=1)
    ck = load_checkpoint(tmp_path / "b.pth")
    assert ck.decoder.num_heads == 16 and not ck.norm_pix_known  # the official decoder's 16 heads
    assert np.isclose(ck.vit.mlp_hidden / ck.vit.embed_dim, 4)


@pytest.mark.parametrize("command", [
    ["attention", "IMG", "--out", "OUT"], ["mae", "IMG", "--out", "OUT"], ["video", "IMG", "--out", "OUT"],
    ["eval", "--images", "PHOTOS", "--masks", "PHOTOS"], ["export", "--out", "OUT/x.pth"]])
def test_content_that_is_not_what_the_name_says_is_refused_before_any_loader(tmp_path, cli, cat_path, command,
                                                                              monkeypatch):
    """Random bytes named .safetensors went to torch.load, which handed them to safetensors: a traceback."""
    import safetensors

    def no_loader(*a, **k):
        raise AssertionError("a loader saw a file the doctor should have refused")

    rng = np.random.default_rng(0)
    random_bytes = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    (tmp_path / "r.safetensors").write_bytes(random_bytes)
    (tmp_path / "r.pth").write_bytes(random_bytes)
    save_tiny(tmp_path / "pickle.pth")
    (tmp_path / "pickle.safetensors").write_bytes((tmp_path / "pickle.pth").read_bytes())
    monkeypatch.setattr(torch, "load", no_loader)
    monkeypatch.setattr(safetensors, "safe_open", no_loader)
    photos = tmp_path / "photos"  # eval checks its folders first: give it real ones, so the checkpoint is next
    photos.mkdir()
    (photos / cat_path.name).write_bytes(cat_path.read_bytes())
    argv = [str(cat_path) if a == "IMG" else str(photos) if a == "PHOTOS" else a.replace("OUT", str(tmp_path / "o"))
            for a in command]
    for name, message in [("r.safetensors", "not a valid safetensors file"),
                          ("r.pth", "not a PyTorch or safetensors checkpoint"),
                          ("pickle.safetensors", "the content is a PyTorch zip file: name it .pth")]:
        code, out, err = cli(*argv, "--checkpoint", tmp_path / name)
        assert code == 2, (name, err)
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, (name, err)
        assert "Traceback" not in out + err
