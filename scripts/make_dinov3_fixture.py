"""Write a tiny DINOv3 ViT with random weights, built by the official code, and what the official model computes.

The model comes from the official builder (``dinov3.hub.backbones._make_dinov3_vit``, the function behind
``dinov3_vits16`` and the other hub entry points) with the released models' settings (RoPE base 100, separate
coordinate normalisation, rescale augmentation 2 (training only), LayerNorm eps 1e-5, 4 storage tokens, masked key
bias, layer scale) at a tiny size; every parameter is then redrawn so that no block is close to the identity (the
official layer-scale init is 1e-5), and the RoPE periods are stored in bfloat16, as the released files hold them
(loaded back, so that the official outputs are computed with those values). Writes

- ``--weights``: the state dict, saved with ``torch.save`` as the official ``.pth`` files are (official key layout:
  ``storage_tokens``, ``rope_embed.periods``, ``blocks.N.attn.qkv.bias_mask``, ``mask_token`` ...);
- ``--reference``: an ``.npz`` with, for each input size HxW, the input image (``image_HxW``, (1, 3, H, W)), the
  last block's class-token attention per head over all tokens (``attention_HxW``, (heads, 1 + R + h*w), the
  softmax of the official q . k^T / sqrt(d), q and k as the official attention has them after its RoPE), and the
  official ``x_norm_clstoken`` and ``x_norm_patchtokens`` (``cls_HxW``, ``patch_HxW``); plus ``n_prefix``.

With ``--load FILE`` no random model is made: FILE (an official-layout DINOv3 state dict, a released one or one that
``highlighter export --format dino`` wrote) is loaded strictly into the official model of the size ``--embed-dim``,
``--depth``, ``--heads`` and ``--ffn`` give, and only ``--reference`` is written.

The official code is not part of this repository: ``--dinov3`` is a checkout of facebookresearch/dinov3 (a folder
holding the ``dinov3`` package) or its bare git directory (its HEAD is extracted to a temporary folder). Run it in a
process of its own: importing the official code changes torch._dynamo settings.

    python scripts/make_dinov3_fixture.py --dinov3 ~/src/dinov3 \\
        --weights tests/data/dinov3_tiny.pth --reference tests/data/dinov3_tiny_reference.npz
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def official_package(src: Path, scratch: Path) -> Path:
    """A folder with the ``dinov3`` package: ``src`` itself, or ``src``'s HEAD extracted into ``scratch``."""
    if (src / "dinov3" / "models" / "vision_transformer.py").is_file():
        return src
    archive = subprocess.run(["git", "-C", str(src), "archive", "HEAD", "dinov3"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(scratch)], input=archive.stdout, check=True)
    return scratch


def build(seed: int, embed_dim: int, depth: int, num_heads: int, ffn: str):
    from dinov3.hub.backbones import _make_dinov3_vit

    torch.manual_seed(seed)
    model = _make_dinov3_vit(
        pretrained=False, img_size=224, patch_size=16, pos_embed_rope_base=100,
        pos_embed_rope_normalize_coords="separate", pos_embed_rope_rescale_coords=2, pos_embed_rope_dtype="fp32",
        embed_dim=embed_dim, depth=depth, num_heads=num_heads, ffn_ratio=4 if ffn == "mlp" else 6, qkv_bias=True,
        layerscale_init=1.0e-05, norm_layer="layernormbf16", ffn_layer=ffn, ffn_bias=True, proj_bias=True,
        n_storage_tokens=4, mask_k_bias=True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm1.weight", "norm2.weight", "norm.weight", "ls1.gamma", "ls2.gamma")):
                p.copy_(0.5 + torch.rand_like(p))
            else:
                p.copy_(torch.randn_like(p) * (0.5 if p.ndim == 1 or "token" in name else p.shape[-1] ** -0.5 * 1.5))
    return model.eval()


def official_outputs(model, image: torch.Tensor) -> dict[str, np.ndarray]:
    """Run the official forward and catch the last attention's q and k where the official code hands them to SDPA."""
    import torch.nn.functional as F

    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        seen.append((q.detach().double(), k.detach().double()))
        return sdpa(q, k, v, *args, **kwargs)

    F.scaled_dot_product_attention = spy
    try:
        with torch.no_grad():
            out = model.forward_features(image)
    finally:
        F.scaled_dot_product_attention = sdpa
    assert len(seen) == len(model.blocks), "one attention per block"
    q, k = seen[-1]
    attn = ((q[:, :, :1] @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(dim=-1)[0, :, 0]  # (heads, N)
    return {"attention": attn.float().numpy(), "cls": out["x_norm_clstoken"][0].numpy(),
            "patch": out["x_norm_patchtokens"][0].numpy()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dinov3", type=Path, required=True, help="facebookresearch/dinov3: a checkout or its git dir")
    ap.add_argument("--weights", type=Path, help="where the official-layout .pth goes")
    ap.add_argument("--load", type=Path, help="an official-layout file to load strictly instead of random weights")
    ap.add_argument("--reference", type=Path, required=True, help="where the official outputs (.npz) go")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--embed-dim", type=int, default=32, help="width (default 32)")
    ap.add_argument("--depth", type=int, default=2, help="blocks (default 2)")
    ap.add_argument("--heads", type=int, default=2, help="attention heads (default 2)")
    ap.add_argument("--ffn", default="mlp", choices=["mlp", "swiglu"], help="MLP kind (default mlp; swiglu: the "
                    "'plus' models)")
    ap.add_argument("--sizes", default="32x48,64x32", help="input sizes HxW, multiples of 16 (default 32x48,64x32)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        sys.path.insert(0, str(official_package(args.dinov3.expanduser(), Path(scratch))))
        model = build(args.seed, args.embed_dim, args.depth, args.heads, args.ffn)
    if args.load:
        state = torch.load(args.load, map_location="cpu", weights_only=True)
    else:
        if args.weights is None:
            ap.error("--weights is needed unless --load gives the weights")
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        state["rope_embed.periods"] = state["rope_embed.periods"].to(torch.bfloat16)  # as in the released files
    model.load_state_dict(state, strict=True)  # the official model computes with the rounded periods
    ref: dict[str, np.ndarray] = {"n_prefix": np.array(1 + model.n_storage_tokens)}
    gen = torch.Generator().manual_seed(args.seed + 1)
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.lower().split("x"))
        image = torch.randn(1, 3, h, w, generator=gen)
        ref[f"image_{h}x{w}"] = image.numpy()
        for name, value in official_outputs(model, image).items():
            ref[f"{name}_{h}x{w}"] = value
    args.reference.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.reference, **ref)
    if not args.load:
        args.weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, args.weights)
        print(f"wrote {args.weights} ({args.weights.stat().st_size} bytes)")
    print(f"wrote {args.reference} ({args.reference.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
