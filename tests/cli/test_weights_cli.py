"""`highlighter weights list|get` end to end against a loopback server on 127.0.0.1 serving random-weight
files at the official paths (weights_server.py); then `--checkpoint NAME` in the commands."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from highlighter.catalogue import CATALOGUE

from reference import visualize_attention
from weights_server import WeightsServer, block_internet, files_in, official_path

REQUIRED = ["dino_vits16", "dino_vits8", "dino_vitb16", "dino_vitb8", "dinov2_vits14", "dinov2_vits14_reg",
            "dinov2_vitb14", "dinov2_vitb14_reg", "mae_visualize_vit_base", "mae_visualize_vit_large"]


@pytest.fixture
def server(official_tree, monkeypatch):
    block_internet(monkeypatch)
    with WeightsServer(official_tree["root"]) as s:
        yield s


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.delenv("HIGHLIGHTER_CACHE", raising=False)
    return tmp_path / "cache"


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_list_json_names_every_entry_without_touching_the_network(cli, cache, monkeypatch):
    asked = block_internet(monkeypatch, loopback=False)
    code, out, err = cli("weights", "list", "--json", "--cache", cache)
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(REQUIRED) <= set(rows)
    for r in rows.values():
        assert r["url"].startswith("https://dl.fbaipublicfiles.com/") and r["url"] == CATALOGUE[r["name"]].url
        assert r["size"] is None and r["downloaded"] is False and r["approx_size"] > 50e6 and r["source"]
    assert rows["dino_vits8"]["arch"] == "vit_small/8" and rows["dinov2_vitb14_reg"]["registers"] == 4
    assert rows["mae_visualize_vit_large"]["decoder"] is True and rows["mae_pretrain_vit_base"]["decoder"] is False
    assert rows["mae_pretrain_vit_base"]["checksum"] == {"md5": "8cad7c"}
    assert rows["dino_vits16"]["checksum"] is None  # the DINO and DINOv2 sources publish none
    code, out, _ = cli("weights", "list", "--cache", cache)
    assert code == 0 and all(name in out for name in REQUIRED)
    assert asked == [] and not cache.exists()  # nothing contacted, nothing written


def test_get_verifies_keeps_and_the_name_then_works_as_a_checkpoint(cli, server, cache, official_tree, cat_path,
                                                                    tmp_path, monkeypatch):
    code, out, err = cli("weights", "get", "dino_vits16", "--mirror", server.url, "--cache", cache)
    assert code == 0, err
    path = cache / "weights" / "dino_deitsmall16_pretrain.pth"
    assert files_in(cache) == ["weights/dino_deitsmall16_pretrain.pth"]  # no partial left behind
    assert path.read_bytes() == official_tree["good"].read_bytes()
    assert server.log[0]["path"] == official_path(CATALOGUE["dino_vits16"].url)  # the official path, kept
    assert "verified: vit_small/16" in out
    rows = {r["name"]: r for r in json.loads(cli("weights", "list", "--json", "--cache", cache)[1])}
    assert rows["dino_vits16"]["downloaded"] and rows["dino_vits16"]["size"] == path.stat().st_size
    assert rows["dino_vits16"]["path"] == str(path)

    # a second get uses the cache, not the server
    code, out, _ = cli("weights", "get", "dino_vits16", "--mirror", server.url, "--cache", cache)
    assert code == 0 and "already downloaded" in out and len(server.log) == 1

    # --cache DIR is HIGHLIGHTER_CACHE=DIR: with it, the name is a checkpoint, and the maps are the official ones
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(cache))
    out_dir = tmp_path / "out"
    code, out, err = cli("attention", cat_path, "--checkpoint", "dino_vits16", "--image-size", 96, 96,
                         "--device", "cpu", "--out", out_dir)
    assert code == 0, err
    assert "vit_small/16" in out and "dino_deitsmall16_pretrain.pth" in out
    got = np.load(out_dir / "chelsea_cat.npz")
    want, _ = visualize_attention(official_tree["ref"], Image.open(cat_path).convert("RGB"), (96, 96), 16)
    np.testing.assert_allclose(got["attention"], want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("command", [
    ["attention", "IMG", "--out", "OUT"], ["mae", "IMG", "--out", "OUT"], ["video", "IMG", "--out", "OUT"],
    ["eval", "--images", "OUT", "--masks", "OUT"], ["export", "--out", "OUT/x.pth"],
    ["bench", "live", "--source", "IMG"]])
def test_every_command_resolves_names_and_says_how_to_get_them(cli, cache, command, cat_path, tmp_path,
                                                               monkeypatch):
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(cache))
    argv = [str(cat_path) if a == "IMG" else a.replace("OUT", str(tmp_path)) for a in command]
    code, _, err = cli(*argv, "--checkpoint", "dinov2_vits14_reg")
    line = one_error_line(err)
    assert code != 0
    assert "dinov2_vits14_reg" in line and "not downloaded" in line and "highlighter weights get" in line


def test_truncated_file_is_refused_and_nothing_is_kept(cli, server, cache):
    code, _, err = cli("weights", "get", "dino_vits8", "--mirror", server.url, "--cache", cache)
    line = one_error_line(err)
    assert code != 0 and "truncated" in line and "nothing was kept" in line
    assert server.log[0]["status"] == 200  # the HTTP answer was complete: the file itself is short
    assert not cache.exists()


def test_wrong_architecture_is_refused_and_nothing_is_kept(cli, server, cache):
    code, _, err = cli("weights", "get", "dino_vitb16", "--mirror", server.url, "--cache", cache)
    line = one_error_line(err)
    assert code != 0 and "vit_tiny/16" in line and "vit_base/16" in line and "nothing was kept" in line
    assert not cache.exists()


def test_404_is_one_line_and_leaves_nothing(cli, server, cache):
    code, _, err = cli("weights", "get", "dino_vitb8", "--mirror", server.url, "--cache", cache)
    line = one_error_line(err)
    assert code != 0 and "404" in line and "nothing was downloaded" in line
    assert not cache.exists()


def test_unreachable_host_is_one_line_and_leaves_nothing(cli, server, cache):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = cli("weights", "get", "dino_vits16", "--mirror", f"http://127.0.0.1:{port}", "--cache", cache)
    line = one_error_line(err)
    assert code != 0 and "cannot reach 127.0.0.1" in line
    assert not cache.exists()


def test_unknown_name_and_bad_mirror(cli, cache):
    code, _, err = cli("weights", "get", "dino_vitz99", "--cache", cache)
    assert code != 0 and "weights list" in one_error_line(err)
    code, _, err = cli("weights", "get", "dino_vits16", "--mirror", "ftp://x", "--cache", cache)
    assert code != 0 and "--mirror" in one_error_line(err)
    assert not cache.exists()


def test_dropped_connection_keeps_a_partial_and_the_same_command_resumes(cli, server, cache, official_tree,
                                                                         monkeypatch):
    data = official_tree["good"].read_bytes()
    path = official_path(CATALOGUE["dino_vits16"].url)
    cut = len(data) * 2 // 5
    server.drop_after[path] = cut
    code, _, err = cli("weights", "get", "dino_vits16", "--mirror", server.url, "--cache", cache)
    line = one_error_line(err)
    assert code != 0 and "broke off" in line and "resumes" in line
    part = cache / "weights" / "dino_deitsmall16_pretrain.pth.partial"
    assert files_in(cache) == ["weights/dino_deitsmall16_pretrain.pth.partial",
                               "weights/dino_deitsmall16_pretrain.pth.partial.json"]
    assert part.read_bytes() == data[:cut]
    # the partial is never used as a checkpoint
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(cache))
    code, _, err = cli("attention", "x.jpg", "--checkpoint", "dino_vits16", "--out", cache / "o")
    assert code != 0 and "not downloaded" in one_error_line(err)

    code, out, err = cli("weights", "get", "dino_vits16", "--mirror", server.url, "--cache", cache)
    assert code == 0, err
    second = server.log[-1]
    assert second["range"] == f"bytes={cut}-" and second["status"] == 206 and second["sent"] == len(data) - cut
    assert "resumed after" in out
    assert files_in(cache) == ["weights/dino_deitsmall16_pretrain.pth"]
    assert (cache / "weights" / "dino_deitsmall16_pretrain.pth").read_bytes() == data


def test_a_server_that_ignores_range_gets_a_clean_restart(cli, server, cache, official_tree):
    data = official_tree["good"].read_bytes()
    path = official_path(CATALOGUE["dino_vits16"].url)
    server.drop_after[path] = len(data) // 3
    assert cli("weights", "get", "dino_vits16", "--mirror", server.url, "--cache", cache)[0] != 0
    server.ignore_range.add(path)
    code, out, err = cli("weights", "get", "dino_vits16", "--mirror", server.url, "--cache", cache)
    assert code == 0, err
    assert server.log[-1]["range"] is not None and server.log[-1]["status"] == 200  # asked, got the whole file
    assert "resumed" not in out
    assert (cache / "weights" / "dino_deitsmall16_pretrain.pth").read_bytes() == data  # not the partial + all


def test_the_real_entry_point_prints_one_line_without_a_traceback(server, cache):
    r = subprocess.run([sys.executable, "-m", "highlighter", "weights", "get", "dino_vitb8", "--mirror",
                        server.url, "--cache", str(cache)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: dino_vitb8: ")
    assert "404" in r.stderr and not cache.exists()
