"""Hub names (``hf-hub:owner/name``) resolve through huggingface_hub against a loopback stand-in of the hub's file
routes (tests/hub_server.py), never the internet: the cache, offline mode, HF_ENDPOINT and tokens are the library's;
what arrives goes through our checkpoint checks; every failure is one line."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_server import HubServer
from safetensors.torch import save_file

from highlighter.core.formats import load_checkpoint
from highlighter.errors import CheckpointError
from highlighter.weights import resolve

import official_files as off
from weights_server import block_internet

ROOT = Path(__file__).resolve().parents[1]
DINO = "timm/vit_tiny_patch16_224.dino_loopback"
GATED = "facebook/gated_vit_loopback"
TOKEN = "hf_loopback_test_token"


class WritesMarker:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hubfiles")
    ref = off.dino_backbone(d / "ref.pth", depth=2)  # a small ViT-Ti/16 in the official (and timm) layout
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(d / "model.safetensors"))
    save_file({"weight": torch.zeros(3, 3)}, str(d / "not_a_vit.safetensors"))
    marker = d / "PWNED"
    (d / "evil.bin").write_bytes(pickle.dumps({"model": WritesMarker(marker)}))
    return {"vit": d / "model.safetensors", "ref": ref, "not_a_vit": d / "not_a_vit.safetensors",
            "evil": d / "evil.bin", "marker": marker}


@pytest.fixture
def hub(files, tmp_path, monkeypatch):
    """The loopback hub, and huggingface_hub pointed at it (its constants are read from HF_ENDPOINT and the others at
    import, so they are set here; the subprocess test below sets HF_ENDPOINT itself), with an empty cache, no token,
    and the internet blocked."""
    from huggingface_hub import constants

    off.dino_backbone(tmp_path / "b.pth", depth=2)  # torch.save'd, as timm's older hub files
    repos = {DINO: {"model.safetensors": files["vit"]},
             "someone/bin_only": {"pytorch_model.bin": tmp_path / "b.pth"},
             GATED: {"model.safetensors": files["vit"]},
             "someone/no_weights": {"README.md": b"nothing here"},
             "someone/not_a_vit": {"model.safetensors": files["not_a_vit"]},
             "someone/evil": {"pytorch_model.bin": files["evil"]}}
    asked = block_internet(monkeypatch)
    with HubServer(repos, gated={GATED}, token=TOKEN) as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        server.asked = asked
        yield server


def test_a_hub_name_resolves_into_the_hub_cache_and_loads(hub, files, tmp_path):
    path = Path(resolve(f"hf-hub:{DINO}"))
    assert path.is_file() and str(tmp_path / "hub-cache") in str(path)  # huggingface_hub's cache layout
    assert path.name == "model.safetensors" and "models--timm--vit_tiny_patch16_224.dino_loopback" in str(path)
    ck = load_checkpoint(path)
    assert ck.vit.describe().startswith("vit_tiny/16")
    ref_sd = files["ref"].state_dict()
    torch.testing.assert_close(ck.state["blocks.1.attn.qkv.weight"], ref_sd["blocks.1.attn.qkv.weight"])
    # in the cache now: the hub is not asked again
    n = len(hub.log)
    assert Path(resolve(f"hf-hub:{DINO}")) == path and len(hub.log) == n
    assert all(a[0] in ("127.0.0.1", "::1", "localhost") for a in hub.asked if isinstance(a, tuple))
    # pytorch_model.bin when there is no model.safetensors (timm's order), read without running code
    assert Path(resolve("hf-hub:someone/bin_only")).name == "pytorch_model.bin"


def test_every_command_takes_hub_names(hub, cli, tmp_path, cat_path):
    code, out, err = cli("attention", cat_path, "--checkpoint", f"hf-hub:{DINO}", "--image-size", "64", "--out",
                         tmp_path / "o", "--device", "cpu")
    assert code == 0, err
    assert (tmp_path / "o" / f"{cat_path.stem}.npz").is_file()


def test_offline_mode_uses_the_cache_and_says_when_the_file_is_not_there(hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="not in the hub cache.*offline mode is on"):
        resolve(f"hf-hub:{DINO}")
    assert not hub.log  # offline: nothing asked
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    path = resolve(f"hf-hub:{DINO}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve(f"hf-hub:{DINO}") == path


def test_a_gated_model_needs_a_token(hub, cli, tmp_path, cat_path, monkeypatch):
    code, _, err = cli("attention", cat_path, "--checkpoint", f"hf-hub:{GATED}", "--out", tmp_path / "o")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "is gated" in err and "HF_TOKEN" in err and f"{hub.url}/{GATED}" in err
    assert not (tmp_path / "o").exists()
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # huggingface_hub reads the token itself
    assert Path(resolve(f"hf-hub:{GATED}")).is_file()


@pytest.mark.parametrize("name, says", [
    ("someone/does_not_exist", "no such model on http://127.0.0.1"),
    ("someone/no_weights", "has no model.safetensors or pytorch_model.bin"),
    (f"{DINO}@v9", "has no revision 'v9'"),
    ("not a name", "a hub name is hf-hub:OWNER/NAME"),
    ("someone/not_a_vit", "refused the file from the hub"),
    ("someone/evil", "refused the file from the hub"),
])
def test_bad_hub_names_give_one_line(hub, cli, files, tmp_path, cat_path, name, says):
    code, _, err = cli("attention", cat_path, "--checkpoint", f"hf-hub:{name}", "--out", tmp_path / "o")
    assert code == 2, err
    assert says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() and not files["marker"].exists()
    # no weights kept: a refused file is taken out of the hub cache again (its refs and tags are the library's)
    cache = tmp_path / "hub-cache"
    assert not [p for p in cache.rglob("*") if p.is_file() and {"blobs", "snapshots"} & set(p.parts)]


def test_hf_endpoint_from_the_environment(files, tmp_path):
    """The real road, in a fresh process: HF_ENDPOINT and HF_HOME from the environment, read by huggingface_hub."""
    with HubServer({DINO: {"model.safetensors": files["vit"]}}) as server:
        env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0",
               "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(ROOT), "NO_PROXY": "127.0.0.1",
               "no_proxy": "127.0.0.1"}
        env.pop("HF_TOKEN", None)
        code = ("from highlighter.weights import resolve; import sys; "
                f"print(resolve('hf-hub:{DINO}'))")
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        got = Path(run.stdout.strip())
        assert got.is_file() and str(tmp_path / "hf" / "hub") in str(got)
        assert [e["method"] for e in server.log] == ["HEAD", "GET"]
    np.testing.assert_array_equal(np.frombuffer(got.read_bytes(), np.uint8),
                                  np.frombuffer(files["vit"].read_bytes(), np.uint8))
