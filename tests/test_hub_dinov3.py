"""A timm DINOv3 copy on a gated hub repository (the loopback stand-in of tests/hub_server.py): one line saying where
to accept the terms without a token; with one, the file arrives, is recognised as timm's DINOv3 layout and gives the
official model's attention."""

import numpy as np
import pytest
import torch
from dinov3_files import REFERENCE, WEIGHTS, timm_layout
from hub_server import HubServer
from safetensors.torch import save_file

from highlighter.core.build import build_attention_model
from highlighter.core.formats import load_checkpoint
from highlighter.weights import resolve

from weights_server import block_internet

REPO = "timm/vit_tiny_patch16_dinov3_qkvb.loopback"
TOKEN = "hf_loopback_test_token"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    _, state = timm_layout(torch.load(WEIGHTS, weights_only=True), 32, 2, 2)
    save_file(state, str(tmp_path / "model.safetensors"))
    asked = block_internet(monkeypatch)
    with HubServer({REPO: {"model.safetensors": tmp_path / "model.safetensors"}}, gated={REPO}, token=TOKEN) as s:
        monkeypatch.setattr(constants, "ENDPOINT", s.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            s.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        s.asked = asked
        yield s


def test_gated_timm_dinov3_copy_needs_the_terms_then_matches_the_official_model(hub, cli, tmp_path, cat_path,
                                                                                  monkeypatch):
    code, _, err = cli("attention", cat_path, "--checkpoint", f"hf-hub:{REPO}", "--out", tmp_path / "o")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "is gated" in err and f"{hub.url}/{REPO}" in err
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    ck = load_checkpoint(resolve(f"hf-hub:{REPO}"), num_heads=2)
    assert ck.source == "timm DINOv3 state dict (safetensors)" and ck.vit.rope
    model = build_attention_model(ck)
    ref = np.load(REFERENCE)
    with torch.no_grad():
        attn = model(torch.from_numpy(ref["image_64x32"]))
    assert np.abs(attn[0].reshape(2, -1).numpy() - ref["attention_64x32"][:, 5:]).max() <= 1e-5
    assert all(a[0] in ("127.0.0.1", "::1", "localhost") for a in hub.asked if isinstance(a, tuple))
