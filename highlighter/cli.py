"""``highlighter`` command line: argument parsing only; each subcommand's job is imported lazily."""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from highlighter import __version__
from highlighter.errors import HighlighterError


def _image_size(values: list[int]) -> int | tuple[int, int]:
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise argparse.ArgumentTypeError("--image-size takes H W or a single S")


def _heads(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--heads takes comma-separated head indices, got {text!r}") from None


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", metavar="PATH",
                   help="a DINO, DINOv2, MAE, timm (.pth/.safetensors) or highlighter file; 'default' (the "
                        "default) is the model shipped in models/; random:vit_small/16 gives untrained weights")
    p.add_argument("--checkpoint-key", default="teacher", choices=["teacher", "student"],
                   help="which weights of a full DINO training checkpoint (default: teacher)")
    p.add_argument("--num-heads", type=int, metavar="N",
                   help="attention heads (default: from the file's config, the official architecture, else dim/64)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="highlighter", description="Label-free object highlighting with "
                                     "self-supervised Vision Transformers (DINO, MAE).")
    parser.add_argument("--version", action="version", version=f"highlighter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("attention", help="class-token attention maps and DINO masks for photos",
                       description="Write DIR/<stem>.npz (attention float32 (heads,h,w), mask uint8 (heads,h,w), "
                                   "fused_attention, fused_mask) and PNG heatmaps and overlays for each photo.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photos or folders of photos")
    _add_model_args(p)
    p.add_argument("--arch", help="refuse the checkpoint unless it is this ViT (e.g. vit_small or vit_small/8)")
    p.add_argument("--image-size", nargs="+", type=int, default=[480, 480], metavar="N",
                   help="H W, or one int for the shorter side (default: 480 480, as visualize_attention.py)")
    p.add_argument("--mask-rule", default="mass", choices=["mass", "percentile", "absolute"],
                   help="mass: DINO's rule, keep the top patches holding THRESHOLD of the attention (default); "
                        "percentile: keep patches at or above the THRESHOLD-th percentile; absolute: "
                        "keep patches whose attention is at least THRESHOLD")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="the rule's parameter (defaults: mass 0.6, percentile 80, absolute 0.01)")
    p.add_argument("--heads", type=_heads, metavar="I,J",
                   help="heads averaged into the fused map and mask (default: all)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(job="attention")

    p = sub.add_parser("mae", help="masked-autoencoder reconstructions",
                       description="Write DIR/<stem>.npz (mask uint8 (L,), 1 = hidden; pred float32 (L, p*p*3); "
                                   "paste float32 (H,W,3) normalised) and DIR/<stem>.png with four panels.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photos or folders of photos")
    _add_model_args(p)
    p.add_argument("--decoder-num-heads", type=int, metavar="N",
                   help="decoder heads (default: from the file, 16 for the official 512-d decoder, else dim/64)")
    p.add_argument("--mask-ratio", type=float, default=0.75, metavar="R", help="fraction hidden (default 0.75)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random-mask seed (default 0)")
    p.add_argument("--mask", metavar="FILE.npy", help="explicit mask: L zeros and ones, 1 = hidden")
    p.add_argument("--norm-pix", default="auto", choices=["auto", "yes", "no"],
                   help="whether the checkpoint predicts per-patch normalised pixels (default: read it from the "
                        "file, else assume no)")
    p.add_argument("--denorm", default="neighbours", choices=["neighbours", "oracle"],
                   help="for norm-pix checkpoints: de-normalise hidden patches with the statistics of the nearest "
                        "visible patches (default) or with their own (oracle: uses hidden pixels)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(job="mae")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    if hasattr(args, "image_size"):
        try:
            args.image_size = _image_size(args.image_size)
        except argparse.ArgumentTypeError as e:
            parser.error(str(e))
    try:
        return import_module(f"highlighter.commands.{args.job}").run(args) or 0
    except HighlighterError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
