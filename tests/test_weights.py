"""highlighter/weights.py: the catalogue, the cache, and the download's verification, resume and cancel paths,
against a loopback server (weights_server.py) with small files under test entries."""

import dataclasses
import hashlib
import os

import pytest
import torch

from highlighter.catalogue import CATALOGUE
from highlighter.config import ViTConfig
from highlighter.core.formats import LoadedCheckpoint
from highlighter.errors import CheckpointError, HighlighterError
from highlighter.weights import DownloadError, cache_root, check_architecture, download, mirror_url, resolve

import official_files as off
from reference import RefMAE, RefViT
from weights_server import WeightsServer, block_internet, files_in, official_path

# test entries: the real URLs and code paths, with small architectures so that the files are small
TINY_DINO = dataclasses.replace(CATALOGUE["dino_vits16"], arch="vit_tiny/16", depth=2)
TINY_MAE = dataclasses.replace(CATALOGUE["mae_visualize_vit_base"], arch="vit_tiny/16", depth=2)
TINY_MAE_PRETRAIN = dataclasses.replace(CATALOGUE["mae_pretrain_vit_base"], arch="vit_tiny/16", depth=2,
                                        checksum=None)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-official")

    def at(entry):
        p = root / official_path(entry.url).lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    off.dino_backbone(at(TINY_DINO), depth=2)
    off.mae_official(at(TINY_MAE), with_args=False, depth=2, dec_dim=128, dec_depth=1, dec_heads=4)
    off.mae_official(at(TINY_MAE_PRETRAIN), encoder_only=True, with_args=False, depth=2)
    return root


@pytest.fixture
def server(tiny_root, monkeypatch):
    block_internet(monkeypatch)
    with WeightsServer(tiny_root) as s:
        yield s


def served(server, entry) -> bytes:
    return (server.root / official_path(entry.url).lstrip("/")).read_bytes()


def test_mirror_replaces_scheme_and_host_and_keeps_the_path():
    url = CATALOGUE["dinov2_vits14_reg"].url
    assert url == "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth"
    assert mirror_url(url, "http://127.0.0.1:8123") == "http://127.0.0.1:8123/dinov2/dinov2_vits14/" \
                                                       "dinov2_vits14_reg4_pretrain.pth"
    assert mirror_url(url, "https://m.example.org/fb/") == "https://m.example.org/fb/dinov2/dinov2_vits14/" \
                                                           "dinov2_vits14_reg4_pretrain.pth"
    assert mirror_url(url, None) == url
    for bad in ("127.0.0.1:8000", "ftp://host", "http://"):
        with pytest.raises(HighlighterError, match="--mirror"):
            mirror_url(url, bad)


def test_size_estimates_count_the_real_parameters_and_match_the_published_counts():
    from highlighter.catalogue import mae_decoder_params, vit_params

    ref = RefViT(dim=64, depth=3, heads=2, patch=8, grid=5, n_reg=4, layerscale=True)
    assert vit_params(64, 3, 8, 5, registers=4, layerscale=True) == sum(p.numel() for p in ref.parameters())
    mae = RefMAE(dim=64, depth=2, heads=2, patch=8, grid=4, dec_dim=32, dec_depth=3, dec_heads=2)
    assert vit_params(64, 2, 8, 4) + mae_decoder_params(64, 8, 4, 32, 3) == sum(p.numel() for p in mae.parameters())
    # "21M", "85M", "300M": the READMEs' rounded counts (DINOv2's "21 M" for ViT-S/14 is 22.1M with the
    # 37 x 37 position embeddings of its 518-pixel files); a wrong width or depth would be off by 2x or more
    for e in CATALOGUE.values():
        if e.params:
            assert abs(e.estimated_params() / (float(e.params[:-1]) * 1e6) - 1) < 0.08, e.name


def test_every_entry_is_an_official_url_with_its_source():
    files = [e.filename for e in CATALOGUE.values()]
    assert len(set(files)) == len(files)
    for e in CATALOGUE.values():
        assert e.url.startswith(f"https://dl.fbaipublicfiles.com/{e.family}/") and e.url.endswith(".pth")
        assert e.source.startswith("facebookresearch/" + e.family)
        assert e.decoder == ("/visualize/" in e.url)  # only the 'visualize' MAE files have a decoder


def test_cache_root_is_the_onnx_cache_root(tmp_path, monkeypatch):
    from highlighter.runtime.predictor import cache_dir

    monkeypatch.delenv("HIGHLIGHTER_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == cache_dir() == tmp_path / "xdg" / "highlighter"
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(tmp_path / "hc"))
    assert cache_root() == cache_dir() == tmp_path / "hc"
    assert cache_root(tmp_path / "flag") == tmp_path / "flag"  # --cache DIR


def test_resolve_names_paths_and_other_specs(tmp_path, monkeypatch):
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(tmp_path / "c"))
    assert resolve("random:vit_small/16") == "random:vit_small/16"
    assert resolve("some/file.pth") == "some/file.pth"
    with pytest.raises(CheckpointError, match="weights get dino_vits8"):
        resolve("dino_vits8")
    file = tmp_path / "c" / "weights" / "dino_deitsmall8_pretrain.pth"
    file.parent.mkdir(parents=True)
    file.write_bytes(b"x")
    assert resolve("dino_vits8") == str(file)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dino_vits8").write_bytes(b"a local file of that name")
    assert resolve("dino_vits8") == "dino_vits8"  # an existing path wins


def fake(vit: ViTConfig, decoder=None) -> LoadedCheckpoint:
    return LoadedCheckpoint(path="x.pth", source="test", vit=vit, state={}, decoder=decoder)


def test_check_architecture_names_what_differs():
    s14 = dict(embed_dim=384, depth=12, num_heads=6, patch_size=14, pos_grid=37, mlp_hidden=1536)
    check_architecture(CATALOGUE["dinov2_vits14_reg"], fake(ViTConfig(**s14, layerscale=True,
                                                                       num_register_tokens=4)))
    with pytest.raises(CheckpointError, match="dinov2_vits14_reg"):  # no registers
        check_architecture(CATALOGUE["dinov2_vits14_reg"], fake(ViTConfig(**s14, layerscale=True)))
    with pytest.raises(CheckpointError, match="DINOv2"):  # a DINO-style ViT-S/14 has no layer scale
        check_architecture(CATALOGUE["dinov2_vits14"], fake(ViTConfig(**s14)))
    b16 = ViTConfig(embed_dim=768, depth=12, num_heads=12, patch_size=16, pos_grid=14, mlp_hidden=3072)
    with pytest.raises(CheckpointError, match="without an MAE decoder"):
        check_architecture(CATALOGUE["mae_visualize_vit_base"], fake(b16))
    with pytest.raises(CheckpointError, match="vit_base/16"):  # patch 8 promised
        check_architecture(CATALOGUE["dino_vitb8"], fake(b16))


def test_mae_visualize_entry_needs_the_decoder(server, tmp_path):
    res = download(TINY_MAE, mirror=server.url, cache=tmp_path)
    assert res.checkpoint.decoder is not None and res.path.name == "mae_visualize_vit_base.pth"
    # the encoder-only 'pretrain' file where a 'visualize' file is promised: refused (mae #12, #156)
    server.root.joinpath(official_path(TINY_MAE.url).lstrip("/")).write_bytes(served(server, TINY_MAE_PRETRAIN))
    try:
        with pytest.raises(DownloadError, match="without an MAE decoder.*nothing was kept"):
            download(TINY_MAE, mirror=server.url, cache=tmp_path / "other")
    finally:
        off.mae_official(server.root / official_path(TINY_MAE.url).lstrip("/"), with_args=False, depth=2,
                         dec_dim=128, dec_depth=1, dec_heads=4)
    assert not (tmp_path / "other").exists()
    assert download(TINY_MAE_PRETRAIN, mirror=server.url, cache=tmp_path).checkpoint.decoder is None


def test_published_checksum_is_checked_before_the_file_is_kept(server, tmp_path):
    data = served(server, TINY_DINO)
    good = dataclasses.replace(TINY_DINO, checksum=("md5", hashlib.md5(data).hexdigest()[:6]))
    assert download(good, mirror=server.url, cache=tmp_path / "a").path.read_bytes() == data
    digest = hashlib.sha256(data).hexdigest()
    wrong = "0" * 6 if not digest.startswith("000000") else "1" * 6
    bad = dataclasses.replace(TINY_DINO, checksum=("sha256", wrong))
    with pytest.raises(DownloadError, match=f"sha256 {digest[:12]}.*published {wrong}.*nothing was kept"):
        download(bad, mirror=server.url, cache=tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_a_random_file_fails_the_real_mae_md5(server, tmp_path):
    """The real mae_pretrain_vit_base entry (md5 8cad7c, from the MAE README) refuses other bytes."""
    entry = CATALOGUE["mae_pretrain_vit_base"]  # the test file at its path is a small encoder-only MAE
    assert official_path(entry.url) == official_path(TINY_MAE_PRETRAIN.url)
    assert not hashlib.md5(served(server, entry)).hexdigest().startswith("8cad7c")
    with pytest.raises(DownloadError, match="md5 .* published 8cad7c"):
        download(entry, mirror=server.url, cache=tmp_path)
    assert not tmp_path.joinpath("weights").exists()


def test_progress_cancel_and_resume(server, tmp_path):
    data = served(server, TINY_DINO)
    seen, calls = [], {"n": 0}

    def stop_after_two_chunks():
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(DownloadError, match="cancelled at .*resumes"):
        download(TINY_DINO, mirror=server.url, cache=tmp_path, should_stop=stop_after_two_chunks)
    part = tmp_path / "weights" / (TINY_DINO.filename + ".partial")
    have = part.stat().st_size
    assert 0 < have < len(data) and part.read_bytes() == data[:have]
    res = download(TINY_DINO, mirror=server.url, cache=tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert res.resumed_from == have and res.fetched == len(data) - have
    assert seen[0] == (have, len(data)) and seen[-1] == (len(data), len(data))
    assert all(a[0] < b[0] for a, b in zip(seen, seen[1:]))  # it only moves forward
    assert files_in(tmp_path) == ["weights/" + TINY_DINO.filename] and res.path.read_bytes() == data


def test_a_complete_partial_is_verified_without_a_request(server, tmp_path):
    """A get interrupted during the verification resumes with the verification."""
    data = served(server, TINY_DINO)
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / (TINY_DINO.filename + ".partial")).write_bytes(data)
    url = mirror_url(TINY_DINO.url, server.url)
    (folder / (TINY_DINO.filename + ".partial.json")).write_text(f'{{"url": "{url}", "total": {len(data)}}}')
    res = download(TINY_DINO, mirror=server.url, cache=tmp_path)
    assert server.log == [] and res.path.read_bytes() == data and files_in(tmp_path) == ["weights/"
                                                                                          + TINY_DINO.filename]


def test_a_partial_from_another_url_is_not_mixed_in(server, tmp_path):
    data = served(server, TINY_DINO)
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / (TINY_DINO.filename + ".partial")).write_bytes(b"\0" * 1000)
    (folder / (TINY_DINO.filename + ".partial.json")).write_text('{"url": "https://elsewhere.example/x.pth"}')
    res = download(TINY_DINO, mirror=server.url, cache=tmp_path)
    assert server.log[0]["range"] is None and res.path.read_bytes() == data


def test_an_interrupted_partial_survives_a_later_404(server, tmp_path):
    """A server error on the resume keeps what a dropped connection had left, and says so."""
    data = served(server, TINY_DINO)
    server.drop_after[official_path(TINY_DINO.url)] = 5000
    with pytest.raises(DownloadError, match="broke off"):
        download(TINY_DINO, mirror=server.url, cache=tmp_path)
    file = server.root / official_path(TINY_DINO.url).lstrip("/")
    os.rename(file, file.with_suffix(".away"))
    try:
        with pytest.raises(DownloadError, match="404.*kept in .*resumes"):
            download(TINY_DINO, mirror=server.url, cache=tmp_path)
    finally:
        os.rename(file.with_suffix(".away"), file)
    assert (tmp_path / "weights" / (TINY_DINO.filename + ".partial")).read_bytes() == data[:5000]
    assert torch.equal(download(TINY_DINO, mirror=server.url, cache=tmp_path).checkpoint.state["cls_token"],
                       torch.load(file, weights_only=True)["cls_token"])
