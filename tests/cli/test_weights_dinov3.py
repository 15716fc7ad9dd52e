"""The gated DINOv3 entries of the weights catalogue: listed with their licence and access page, never downloaded,
`weights get NAME` saying how to get one, and `weights get NAME --file PATH` checking and keeping a file the user
downloaded, after which --checkpoint NAME works. No network: every socket is blocked."""

import dataclasses
import hashlib
import json

import pytest
from dinov3_files import WEIGHTS as FIXTURE
from dinov3_files import tiny_official_file

from highlighter.catalogue import CATALOGUE, DINOV3_ACCESS, DINOV3_LICENCE
from highlighter.errors import CheckpointError
from highlighter.weights import DownloadError, download, resolve

from weights_server import block_internet

DINOV3 = ["dinov3_vits16", "dinov3_vits16plus", "dinov3_vitb16", "dinov3_vitl16", "dinov3_vith16plus"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.delenv("HIGHLIGHTER_CACHE", raising=False)
    return tmp_path / "cache"


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_entries_name_the_licence_the_access_page_and_the_published_hash(cli, cache, monkeypatch):
    asked = block_internet(monkeypatch, loopback=False)
    code, out, err = cli("weights", "list", "--json", "--cache", cache)
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    for name in DINOV3:
        r = rows[name]
        assert r["family"] == "dinov3" and r["registers"] == 4 and r["gated"] == DINOV3_ACCESS
        assert r["licence"] == DINOV3_LICENCE and r["hub"].startswith("hf-hub:timm/") and "dinov3" in r["hub"]
        # torch.hub's convention: the 8 hex digits in the file name are the start of its sha256
        assert r["url"].endswith(f"-{r['checksum']['sha256']}.pth") and r["url"].startswith(
            f"https://dl.fbaipublicfiles.com/dinov3/{name}/{name}_pretrain_lvd1689m-")
        assert r["params_published"] and "dinov3/hub/backbones.py" in r["source"]
    code, out, err = cli("weights", "list", "--cache", cache)
    assert code == 0 and "gated" in out and DINOV3_LICENCE in out
    assert asked == [] and not cache.exists()


def test_get_without_a_file_says_how_and_touches_nothing(cli, cache, monkeypatch):
    asked = block_internet(monkeypatch, loopback=False)
    code, _, err = cli("weights", "get", "dinov3_vits16", "--cache", cache)
    line = one_error_line(err)
    assert code == 2
    for part in (DINOV3_LICENCE, DINOV3_ACCESS, "dinov3_vits16_pretrain_lvd1689m-08c60483.pth",
                 "weights get dinov3_vits16 --file PATH", "--checkpoint PATH",
                 "hf-hub:timm/vit_small_patch16_dinov3_qkvb.lvd1689m"):
        assert part in line, part
    assert asked == [] and not cache.exists()
    with pytest.raises(DownloadError, match="DINOv3 License"):  # the app's download button takes this road
        download(CATALOGUE["dinov3_vitb16"], cache=cache)
    assert asked == [] and not cache.exists()


def test_a_name_not_kept_yet_says_how_to_get_it(cli, cache, cat_path, tmp_path, monkeypatch):
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(cache))
    code, _, err = cli("attention", cat_path, "--checkpoint", "dinov3_vitl16", "--out", tmp_path / "o")
    line = one_error_line(err)
    assert code == 2 and "DINOv3 License" in line and "--file PATH" in line and str(cache) in line
    with pytest.raises(CheckpointError, match="must be accepted"):
        resolve("dinov3_vitl16")


@pytest.fixture
def tiny_entry(tmp_path, monkeypatch):
    (tmp_path / "downloads").mkdir()
    path = tiny_official_file(tmp_path / "downloads" / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth")
    entry = dataclasses.replace(CATALOGUE["dinov3_vits16"], arch="vit_tiny/16", depth=1,
                                checksum=("sha256", sha256(path)[:8]))
    monkeypatch.setitem(CATALOGUE, "dinov3_vits16", entry)
    return entry, path


def test_get_file_checks_and_keeps_it_then_the_name_works(cli, cache, cat_path, tmp_path, tiny_entry, monkeypatch):
    entry, path = tiny_entry
    asked = block_internet(monkeypatch, loopback=False)
    code, out, err = cli("weights", "get", "dinov3_vits16", "--file", path, "--cache", cache)
    assert code == 0, err
    kept = cache / "weights" / entry.filename
    assert kept.read_bytes() == path.read_bytes() and path.is_file()
    assert "official DINOv3 backbone" in out and f"sha256 matches the published {entry.checksum[1]}" in out
    assert not list((cache / "weights").glob("*.partial"))
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(cache))
    code, _, err = cli("attention", cat_path, "--checkpoint", "dinov3_vits16", "--image-size", 64,
                       "--out", tmp_path / "o")
    assert code == 0, err
    code, out, err = cli("weights", "get", "dinov3_vits16")  # kept: says so, nothing to do
    assert code == 0 and "already downloaded" in out, err
    assert asked == []


def test_get_file_refuses_another_file_and_keeps_nothing(cli, cache, tmp_path, tiny_entry, monkeypatch):
    entry, path = tiny_entry
    other = tiny_official_file(tmp_path / "other.pth", seed=1)  # the same architecture, other bytes
    code, _, err = cli("weights", "get", "dinov3_vits16", "--file", other, "--cache", cache)
    line = one_error_line(err)
    assert code == 2 and "is not the released" in line and f"the published {entry.checksum[1]}" in line
    # another architecture (the DINOv3 test fixture, dim 32), with the checksum out of the way
    monkeypatch.setitem(CATALOGUE, "dinov3_vits16", dataclasses.replace(entry, checksum=None))
    code, _, err = cli("weights", "get", "dinov3_vits16", "--file", FIXTURE, "--cache", cache)
    line = one_error_line(err)
    assert code == 2 and "refused" in line and "not the DINOv3 (RoPE) vit_tiny/16" in line
    code, _, err = cli("weights", "get", "dinov3_vits16", "--file", tmp_path / "missing.pth", "--cache", cache)
    assert code == 2 and "is not a file" in one_error_line(err)
    assert not (cache / "weights").exists() or not any((cache / "weights").iterdir())
    assert FIXTURE.is_file() and other.is_file()


def test_get_file_keeps_nothing_when_the_copy_differs(cli, cache, tiny_entry, monkeypatch):
    """A copy cut short (a full disk that did not raise) is checked against the source and never renamed into
    place: one error line, no file under the final name, no partial file left."""
    import shutil

    entry, path = tiny_entry
    real = shutil.copyfile

    def short_copy(src, dst, *a, **k):
        real(src, dst, *a, **k)
        with open(dst, "r+b") as f:
            f.truncate(f.seek(0, 2) - 100)
        return dst

    monkeypatch.setattr(shutil, "copyfile", short_copy)
    code, _, err = cli("weights", "get", "dinov3_vits16", "--file", path, "--cache", cache)
    line = one_error_line(err)
    assert code == 2 and "differs from" in line and "nothing kept" in line
    assert not (cache / "weights" / entry.filename).exists()
    assert not list((cache / "weights").glob("*.partial")) and path.is_file()
