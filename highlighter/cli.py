"""``highlighter`` command line: argument parsing only; each subcommand's job is imported lazily."""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

from highlighter import __version__
from highlighter import defaults as D
from highlighter.errors import HighlighterError


def _image_size(values: list[int]) -> int | tuple[int, int]:
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise argparse.ArgumentTypeError("--image-size takes H W or a single S")


DEVICE_HELP = "auto (default: cuda when there is a GPU, else the CPU), cpu, cuda or cuda:N"
KEY_HELP = "which weights of a full DINO training checkpoint (default: teacher)"
IMAGE_SIZE_HELP = ("S: the shorter side at S, aspect kept, both sides rounded to the patch; H W: exactly H x W, "
                   "rounded down to the patch; the whole picture is resized, never cropped")


def _add_image_size(p: argparse.ArgumentParser, default: str, exact_only: bool = False) -> None:
    """``--image-size`` means the same in every command; ``default`` says what the command feeds without it."""
    if exact_only:
        p.add_argument("--image-size", nargs=2, type=int, default=[D.IMAGE_SIZE, D.IMAGE_SIZE], metavar=("H", "W"),
                       help=f"exactly H x W (a graph has one input size; default {D.IMAGE_SIZE} {D.IMAGE_SIZE})")
    else:
        p.add_argument("--image-size", nargs="+", type=int, metavar="S", help=f"{IMAGE_SIZE_HELP}; default: {default}")


def _add_preprocessing(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--preprocessing", default=default, choices=list(D.PREPROCESSINGS),
                   help="how a picture is resized to the model's input: official (visualize_attention.py's PIL "
                        "bilinear) or fast (one OpenCV pass); the model normalises it the same way either way "
                        f"(default: {default})")


def _add_heads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--heads", type=_heads, metavar="I,J",
                   help="the heads averaged into the fused map and mask (one index: that head; default: all)")


def _heads(text: str) -> list[int]:
    try:
        heads = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        heads = [-1]
    if not heads or min(heads) < 0:
        raise argparse.ArgumentTypeError(f"--heads takes comma-separated head indices from 0, got {text!r}")
    return heads


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", metavar="PATH",
                   help="a DINO, DINOv2, MAE, timm (.pth/.safetensors) or highlighter file, the name of "
                        "downloaded official weights (`highlighter weights list`), or a hub name such as "
                        "hf-hub:timm/vit_small_patch16_224.dino; 'default' (the default) is the "
                        "model shipped in models/; random:vit_small/16 gives untrained weights")
    p.add_argument("--checkpoint-key", default="teacher", choices=["teacher", "student"], help=KEY_HELP)
    p.add_argument("--num-heads", type=int, metavar="N",
                   help="attention heads (default: from the file's config, the official architecture, else dim/64)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


SHORTER_SIDE_ONLY = ("evaluate", "track")  # their pictures differ in shape: only the shorter side applies


def check_args(args: argparse.Namespace) -> None:
    """What can be checked before any model loads: raises ``HighlighterError`` with one line naming the flag."""
    device = getattr(args, "device", None)
    if device not in (None, "auto", "cpu"):  # cuda (or a typo) on a machine without it: refused by every command
        from highlighter.core.device import resolve_device

        resolve_device(device)
    backend = getattr(args, "backend", None)
    if backend is not None:
        from highlighter.runtime.predictor import BACKENDS  # no torch

        if backend not in ("auto", *BACKENDS):
            raise HighlighterError(f"--backend {backend}: choose from auto, {', '.join(BACKENDS)}")
    size = getattr(args, "image_size", None)
    sizes = list(size) if isinstance(size, (list, tuple)) else [] if size is None else [size]
    if any(int(v) < 1 for v in sizes):
        raise HighlighterError(f"--image-size: sizes are pixels, at least 1, got {' '.join(map(str, sizes))}")
    if getattr(args, "job", None) in SHORTER_SIDE_ONLY and isinstance(getattr(args, "image_size", None), tuple):
        raise HighlighterError(f"--image-size: {args.command} takes one S (the shorter side; the aspect ratio is "
                               f"each picture's own), not H W")
    ratio = getattr(args, "mask_ratio", None)
    if ratio is not None and not 0.0 <= ratio < 1.0:
        raise HighlighterError(f"--mask-ratio: the fraction of patches hidden, from 0 up to (not including) 1; "
                               f"got {ratio:g}")
    threshold = getattr(args, "threshold", None)
    if threshold is not None:
        from highlighter.postprocess import check_threshold

        rule = getattr(args, "mask_rule", "mass")  # video's threshold is the mass rule's
        if rule == "tokencut":
            raise HighlighterError("--threshold does not apply to --mask-rule tokencut (a normalised cut has no "
                                   "threshold)")
        try:
            check_threshold(rule, threshold)
        except ValueError as e:
            raise HighlighterError(f"--threshold: {e}") from None


def _add_propagation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-last", type=int, default=D.TRACK_N_LAST, metavar="N",
                   help=f"context: the first frame and the last N frames (default {D.TRACK_N_LAST})")
    p.add_argument("--neighbourhood", type=int, default=D.TRACK_NEIGHBOURHOOD, metavar="R",
                   help=f"only source patches within R patches of the target count (default {D.TRACK_NEIGHBOURHOOD}; "
                        "0: all)")
    p.add_argument("--topk", type=int, default=D.TRACK_TOPK, metavar="K",
                   help=f"labels from the K most similar patches (default {D.TRACK_TOPK})")
    p.add_argument("--temperature", type=float, default=D.TRACK_TEMPERATURE, metavar="T",
                   help=f"affinity exp(cos / T) (default {D.TRACK_TEMPERATURE:g}, the value in "
                        "eval_video_segmentation.py)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="highlighter", description="Label-free object highlighting with "
                                     "self-supervised Vision Transformers (DINO, MAE).")
    parser.add_argument("--version", action="version", version=f"highlighter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("gui", help="the desktop app (also: `highlighter` with no arguments)")
    p.add_argument("--source", help="camera index, video file, image folder or pattern (default: a camera, else "
                   "the bundled clip)")
    p.add_argument("--checkpoint", metavar="PATH", help="the model for Live and Photos: a file, an official name, "
                   "random:vit_small/16 or 'default' (the shipped one; without the flag: the model used last)")
    p.add_argument("--no-start", action="store_true", help="do not start the Live stream at once")
    p.add_argument("--quit-after", type=int, metavar="N", help="quit after N overlaid frames and print one JSON "
                   "line on stdout: first_frame_s (from launch), frames, fps, backend (for start-up benchmarks)")
    p.set_defaults(job="gui")

    p = sub.add_parser("attention", help="class-token attention maps and DINO masks for photos",
                       description="Write DIR/<stem>.npz (attention float32 (heads,h,w), mask uint8 (heads,h,w), "
                                   "fused_attention, fused_mask; pca with --pca) and PNG heatmaps and overlays for "
                                   "each photo, and DIR/boxes.json: each stem's box [x0, y0, x1, y1] in the photo's "
                                   "pixels (the fused mask's largest connected component), or null.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photos or folders of photos")
    _add_model_args(p)
    p.add_argument("--arch", help="refuse the checkpoint unless it is this ViT (e.g. vit_small or vit_small/8)")
    _add_image_size(p, f"the shorter side at {D.IMAGE_SIZE}, as every road (visualize_attention.py's own is 480 480)")
    _add_preprocessing(p, D.PHOTO_PREPROCESSING)
    p.add_argument("--mask-rule", default=D.MASK_RULE, choices=list(D.MASK_RULES),
                   help="mass: DINO's rule, keep the top patches holding THRESHOLD of the attention (default); "
                        "percentile: keep patches at or above the THRESHOLD-th percentile; absolute: "
                        "keep patches whose attention is at least THRESHOLD")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="the rule's parameter (defaults: " + ", ".join(f"{r} {v:g}" for r, v in D.THRESHOLDS.items())
                   + ")")
    _add_heads(p)
    p.add_argument("--pca", action="store_true",
                   help="also the DINOv2-style PCA picture: the last block's output patch tokens on their first "
                        "three principal components as RGB; adds pca (h,w,3) to the npz, writes <stem>_pca.png")
    p.add_argument("--pca-joint", action="store_true",
                   help="one PCA over all the given photos, so that a colour means the same part in every photo "
                        "(implies --pca)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (also boxes.json: each stem's box)")
    p.set_defaults(job="attention")

    p = sub.add_parser("mae", help="masked-autoencoder reconstructions",
                       description="Write DIR/<stem>.npz (mask uint8 (L,), 1 = hidden; pred float32 (L, p*p*3); "
                                   "paste float32 (H,W,3) normalised) and DIR/<stem>.png with four panels.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photos or folders of photos")
    _add_model_args(p)
    p.add_argument("--decoder-num-heads", type=int, metavar="N",
                   help="decoder heads (default: from the file, 16 for the official 512-d decoder, else dim/64)")
    p.add_argument("--mask-ratio", type=float, default=D.MAE_MASK_RATIO, metavar="R",
                   help=f"fraction hidden (default {D.MAE_MASK_RATIO:g})")
    p.add_argument("--seed", type=int, default=D.MAE_SEED, metavar="S", help=f"random-mask seed (default {D.MAE_SEED})")
    p.add_argument("--mask", metavar="FILE.npy", help="explicit mask: L zeros and ones, 1 = hidden")
    p.add_argument("--norm-pix", default="auto", choices=["auto", "yes", "no"],
                   help="whether the checkpoint predicts per-patch normalised pixels (default: read it from the "
                        "file, else assume no)")
    p.add_argument("--denorm", default="neighbours", choices=["neighbours", "oracle"],
                   help="for norm-pix checkpoints: de-normalise hidden patches with the statistics of the nearest "
                        "visible patches (default) or with their own (oracle: uses hidden pixels)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(job="mae")

    from highlighter.commands.train import add_config_flags  # light: dataclasses only
    from highlighter.config import PRESETS, DinoCfg, MaeCfg

    t = sub.add_parser("train", help="pretrain a DINO or MAE backbone on folders of unlabeled images")
    tsub = t.add_subparsers(dest="kind", metavar="dino|mae", required=True)
    for kind, cls in (("dino", DinoCfg), ("mae", MaeCfg)):
        p = tsub.add_parser(kind, help=f"the full {kind.upper()} recipe",
                            description=f"Pretrain with the full {kind.upper()} recipe. Runs under torchrun too: "
                                        f"torchrun --nproc_per_node=G -m highlighter train {kind} ...")
        p.add_argument("--data", nargs="+", required=True, metavar="DIR", help="folders of images (any depth)")
        p.add_argument("--out", required=True, metavar="RUNDIR",
                       help="run folder: checkpoint.pth, log.jsonl, previews/")
        p.add_argument("--preset", choices=sorted(PRESETS[kind]),
                       help="laptop (DINO: ViT-Ti/8 at 64 px, 2 local crops, K 1024, 70 epochs), cpu-small, "
                            "gpu (the paper) or small-data")
        p.add_argument("--config", metavar="FILE", help="JSON object of hyperparameters")
        p.add_argument("--device", default="auto", help=DEVICE_HELP)
        p.add_argument("--resume", action="store_true", help="continue RUNDIR's run from its last checkpoint; with "
                       "a larger --epochs, extend it (finished or not; the schedules follow the new length)")
        p.add_argument("--init", metavar="CHECKPOINT",
                       help="start the backbone from any supported file (official DINO/DINOv2/MAE, timm, ours, or "
                            "'default'); the architecture comes from the file, the head starts fresh")
        p.add_argument("--events", action="store_true", help="also print each log event as JSON on stdout")
        # the run flags: None means the default, or on --resume the first run's (train.pretrain.RUN_FLAGS)
        p.add_argument("--log-every", type=int, metavar="N", help="log every N steps (default 10; with --resume: "
                       "the run's, as the other flags up to --preview-images and the --probe ones)")
        p.add_argument("--save-every-minutes", type=float, metavar="M",
                       help="checkpoint every M minutes, besides every epoch (default 5)")
        p.add_argument("--save-every-steps", type=int, metavar="N", help="also checkpoint every N steps")
        p.add_argument("--preview-every", type=int, metavar="N",
                       help="write previews every N steps (0: only at the end; default 200)")
        p.add_argument("--preview-images", nargs="+", metavar="IMG", help="photos for previews (default: assets/)")
        p.add_argument("--max-steps", type=int, default=0, metavar="N", help="stop (with a checkpoint) after N steps")
        p.add_argument("--max-minutes", type=float, default=0.0, metavar="M",
                       help="stop (with a checkpoint) after M minutes of training")
        if kind == "dino":
            p.add_argument("--probe-every-minutes", type=float, metavar="M",
                           help="score the teacher's objectness every M minutes into log.jsonl (default 0: off)")
            p.add_argument("--probe-data", nargs="+", metavar="DIR",
                           help="probe folders with images/ and masks/ (PNG, 255 = object); every 3rd photo is "
                                "used (default: the development eval sets, if present)")
            p.add_argument("--probe-sizes", nargs="+", type=int, metavar="S",
                           help="shorter sides fed to the probe (default: the global crop size and 1.5x it)")
            p.add_argument("--probe-knn", metavar="DIR",
                           help="with the probe, also the teacher's 20-NN accuracy against raw pixels on DIR (Tiny "
                                "ImageNet's layout: train/<class>/, val/images/, val/labels.tsv; every 4th training "
                                "photo, at the global crop size)")
            p.add_argument("--keep-teachers", type=int, metavar="K",
                           help="keep the teacher (fp16, RUNDIR/teacher_PCT.safetensors) at each K-th of the run, "
                                "e.g. 4: at 25, 50, 75 and 100%% (default 0: off)")
        add_config_flags(p, cls)
        p.set_defaults(job="train")

    p = sub.add_parser("pack", help="pack training photos into one small zip (to carry them to a GPU machine)",
                       description="Write every photo under the folders into one uncompressed zip of JPEGs, each "
                                   "resized so its longer side is at most --max-side (smaller JPEGs keep their "
                                   "bytes). `highlighter train --data FILE.zip` reads it in place.")
    p.add_argument("folders", nargs="+", metavar="DIR")
    p.add_argument("--out", required=True, metavar="FILE.zip")
    p.add_argument("--max-side", type=int, default=128, metavar="N", help="longest side kept (default 128)")
    p.add_argument("--quality", type=int, default=90, help="quality of re-encoded photos (default 90)")
    p.add_argument("--format", default="jpeg", choices=["jpeg", "webp"],
                   help="jpeg: small JPEGs keep their bytes (default); webp: re-encode every photo (smaller)")
    p.set_defaults(job="pack")

    p = sub.add_parser("video", help="masks and an overlay video for a video file, an image folder or a pattern",
                       description="Write DIR/masks/<frame-stem>.png (0/255, at each frame's size) and "
                                   "DIR/overlay.mp4. The headless twin of the app's Live tab.")
    p.add_argument("input", metavar="INPUT", help="a video file, a folder of images, a pattern ('frames/*.jpg') "
                   "or a camera index")
    p.add_argument("--checkpoint", metavar="PATH", help="any supported file; 'default' (the default) is models/'s")
    p.add_argument("--num-heads", type=int, metavar="N")
    p.add_argument("--backend", default="auto", help="auto (default: the fastest that agrees with fp32), "
                   "torch-fp32, torch-bf16, ort-fp32 or ort-int8")
    _add_image_size(p, f"the shorter side at {D.IMAGE_SIZE}, as the app's Live tab")
    _add_preprocessing(p, D.LIVE_PREPROCESSING)
    p.add_argument("--threshold", type=float, default=D.MASS, metavar="T",
                   help=f"the attention mass kept (default {D.MASS:g})")
    _add_heads(p)
    p.add_argument("--overlay", default=D.OVERLAY, choices=["heatmap", "mask", "contour", "cutout", "side", "pca"],
                   help=f"default {D.OVERLAY}; pca: the patch features' PCA colours, the basis fitted on the first 5 "
                        "frames and kept "
                        "(torch backends only: with auto it runs on torch fp32)")
    p.add_argument("--box", action="store_true", help="draw each frame's box (boxes.json is always written)")
    p.add_argument("--smooth", action="store_true", help="temporal smoothing (EMA + hysteresis) against flicker")
    p.add_argument("--fps", type=float, default=D.FPS, help=f"overlay frame rate for image folders (default {D.FPS:g})")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(job="video")

    p = sub.add_parser("track", help="follow the objects of the first frame's mask through a video (DINO's label "
                       "propagation)",
                       description="Propagate the first frame's mask through the frames as DINO's "
                                   "eval_video_segmentation.py does: each frame's last-block patch tokens "
                                   "(L2-normalised) take the labels of their top-k most similar patches, within a "
                                   "spatial neighbourhood, in the first frame and the last N frames. Writes "
                                   "DIR/masks/<frame-stem>.png (L, at each frame's size: 0/255 for one object, the "
                                   "mask's label values for several) and DIR/overlay.mp4; nothing when it fails.")
    p.add_argument("input", metavar="FRAMES_OR_VIDEO", help="a folder of frames (numbered names must not have gaps), "
                   "a pattern ('frames/*.jpg') or a video file")
    p.add_argument("--first-mask", required=True, metavar="MASK.png",
                   help="the first frame's objects, at its size: 255 inside (one object), or label values 1, 2, ... "
                        "(several; L or palette PNG), 0 elsewhere")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--checkpoint", metavar="PATH", help="any supported file or name; 'default' (the default) is "
                   "models/'s")
    p.add_argument("--num-heads", type=int, metavar="N")
    _add_image_size(p, "the frames' own (the longer side rounded down to a multiple of 64, as the script's 480p input)")
    _add_propagation_args(p)
    p.add_argument("--fps", type=float, default=D.FPS, help=f"overlay frame rate for frame folders (default {D.FPS:g})")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(job="track")

    p = sub.add_parser("eval", help="mask IoU against ground truth (with baselines), or k-NN accuracy",
                       description="Mask mode: IoU per image between the predicted foreground (the DINO rule on the "
                                   "fused heads, resized to the image) and the ground truth (PNG, 255 = object), "
                                   "with a centred-ellipse and an all-foreground baseline. --knn: DINO's 20-NN "
                                   "accuracy of the class-token features (cosine, T = 0.07). --mae: an MAE's "
                                   "masked-patch MSE against filling hidden patches with the visible pixels' mean.")
    p.add_argument("--checkpoint", metavar="PATH", help="a file, or 'default' (the default)")
    p.add_argument("--num-heads", type=int, metavar="N")
    p.add_argument("--images", metavar="DIR")
    p.add_argument("--masks", metavar="DIR")
    p.add_argument("--mask-rule", default=D.MASK_RULE, choices=[*D.MASK_RULES, "tokencut"],
                   help="mass: DINO's rule on the fused heads (default); tokencut: a normalised cut over the "
                        "last block's patch keys, the side with more attention")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="the rule's parameter (defaults: " + ", ".join(f"{r} {v:g}" for r, v in D.THRESHOLDS.items())
                   + ")")
    _add_image_size(p, f"the shorter side at {D.IMAGE_SIZE}; with --track, the frames' own (the longer side "
                       "rounded down to a multiple of 64, as the script's 480p input)")
    _add_preprocessing(p, D.PHOTO_PREPROCESSING)
    p.add_argument("--knn", action="store_true")
    p.add_argument("--train", metavar="DIR", help="k-NN: training images in one sub-folder per class")
    p.add_argument("--val", metavar="DIR", help="k-NN: validation images")
    p.add_argument("--labels", metavar="FILE", help="k-NN: validation labels, 'file<TAB>class' per line")
    p.add_argument("--k", type=int, default=D.KNN_K, help=f"k-NN: neighbours (default {D.KNN_K})")
    p.add_argument("--mae", action="store_true",
                   help="MAE mode: masked-patch MSE in pixel space against a mean-of-visible-pixels fill")
    p.add_argument("--mask-ratio", type=float, default=D.MAE_MASK_RATIO,
                   help=f"MAE mode: fraction hidden (default {D.MAE_MASK_RATIO:g})")
    p.add_argument("--seeds", type=int, default=3, metavar="N", help="MAE mode: random masks per image (default 3)")
    p.add_argument("--knn-stride", type=int, default=1, metavar="N",
                   help="k-NN: use every N-th training image (default 1: all)")
    p.add_argument("--track", nargs="+", metavar="SEQ",
                   help="tracking mode: DAVIS-style sequences (folders with frames/ and masks/, or a folder of them); "
                        "J (region IoU) and F (boundary F-measure) per sequence, as the DAVIS evaluation scores them "
                        "(every frame but the first and the last), for the model, an untrained model of its "
                        "architecture, and the first mask copied to every frame")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    _add_propagation_args(p)
    p.add_argument("--json", metavar="FILE")
    p.set_defaults(job="evaluate")

    p = sub.add_parser("probe", help="a one-minute objectness score of a DINO checkpoint (where its class token looks)",
                       description="For each folder (images/ + masks/, PNG, 255 = object) and input size: the mean "
                                   "attention inside the object over outside it (in/out), the share on the border "
                                   "ring over its share of the area, each mask rule's IoU; and the flatness of the "
                                   "map on a constant image. The selection subset is every 3rd photo, the report "
                                   "subset the others.")
    p.add_argument("--checkpoint", metavar="PATH", help="a file, a training run's checkpoint.pth, or 'default'")
    p.add_argument("--checkpoint-key", default="teacher", choices=["teacher", "student"], help=KEY_HELP)
    p.add_argument("--num-heads", type=int, metavar="N")
    p.add_argument("--data", nargs="+", metavar="DIR", help="probe folders (default: the development eval sets)")
    p.add_argument("--split", default="selection", choices=["selection", "report", "all"],
                   help="which photos of each folder: every 3rd (selection, the default), the others, or all")
    p.add_argument("--sizes", nargs="+", type=int, metavar="S",
                   help="shorter sides fed to the model (default: the training crop size and 1.5x it, else 64 96)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--json", metavar="FILE")
    p.set_defaults(job="probe")

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", metavar="live", required=True)
    p = bsub.add_parser("live", help="the live pipeline end to end, against the reference pipeline")
    p.add_argument("--source", required=True, metavar="PATH", help="a folder of frames or an image")
    p.add_argument("--checkpoint", metavar="PATH", help="default: random weights of --arch/--patch-size")
    p.add_argument("--arch", default="vit_small", help="without --checkpoint: random weights of this ViT (default "
                   "vit_small)")
    p.add_argument("--patch-size", type=int, default=16, help="without --checkpoint: its patch size (default 16)")
    _add_image_size(p, f"the shorter side at {D.IMAGE_SIZE}, as the app's Live tab")
    p.add_argument("--backend", default="auto", help="auto (default: the fastest that agrees with fp32), "
                   "torch-fp32, torch-bf16, ort-fp32 or ort-int8")
    p.add_argument("--frames", type=int, default=100, help="frames timed (default 100)")
    p.add_argument("--json", metavar="FILE")
    p.set_defaults(job="bench")

    p = sub.add_parser("export", help="write a checkpoint in the official DINO / MAE layout or as safetensors")
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="a training run's checkpoint.pth, any "
                   "supported file, an official name, random:vit_small/16, or 'default' (models/'s DINO; its MAE "
                   "with --format mae)")
    p.add_argument("--checkpoint-key", default="teacher", choices=["teacher", "student"], help=KEY_HELP)
    p.add_argument("--format", default="auto", choices=["auto", "dino", "mae", "safetensors", "onnx"],
                   help="dino: bare backbone state dict; mae: {'model': ...}; safetensors: our small format; "
                        "onnx: the live graph (default auto: by the output suffix, else mae when there is a decoder, "
                        "else dino)")
    _add_image_size(p, "", exact_only=True)
    p.add_argument("--int8", action="store_true", help="onnx: dynamic int8 quantisation (ONNX Runtime)")
    p.add_argument("--features", action="store_true", help="onnx: also output the class-token features")
    p.add_argument("--half", action="store_true", help="safetensors in float16")
    p.add_argument("--with-decoder", action="store_true", help="safetensors: keep the MAE decoder")
    p.add_argument("--card", metavar="FILE.json",
                   help="safetensors: what the model is, for people (JSON: status, iou {set: value}, baselines, "
                        "see); the app shows it beside the model's name")
    p.add_argument("--out", required=True, metavar="FILE")
    p.set_defaults(job="export")

    w = sub.add_parser("weights", help="the official DINO, DINOv2, DINOv3 and MAE weights by name: list, download",
                       description="Official weights by their torch hub names. `get` downloads one into the cache "
                                   "(resuming a broken download), checks it loads as the promised architecture "
                                   "(and its published checksum, where there is one), and only then keeps it; "
                                   "--checkpoint NAME then works in every command. The DINOv3 files are gated "
                                   "(their licence must be accepted first): `get NAME` says where, and "
                                   "`get NAME --file PATH` checks and keeps the file you downloaded.")
    wsub = w.add_subparsers(dest="action", metavar="list|get", required=True)
    cache_help = ("cache root (default: $HIGHLIGHTER_CACHE, else ~/.cache/highlighter); the same as "
                  "HIGHLIGHTER_CACHE=DIR")
    p = wsub.add_parser("list", help="the names, URLs, architectures and sizes, and which are downloaded")
    p.add_argument("--json", action="store_true", help="a JSON list (name, url, arch, size, ...)")
    p.add_argument("--cache", metavar="DIR", help=cache_help)
    p.set_defaults(job="weights")
    p = wsub.add_parser("get", help="download, verify and keep one official file")
    p.add_argument("name", metavar="NAME", help="e.g. dino_vits16, dinov2_vits14_reg, dinov3_vits16, "
                                                "mae_visualize_vit_base")
    p.add_argument("--mirror", metavar="URL", help="take the file from this scheme and host, keeping the official path")
    p.add_argument("--file", metavar="PATH", help="no download: check this file you downloaded (the published "
                                                  "checksum, the architecture) and keep a copy in the cache under "
                                                  "NAME (how the gated DINOv3 files get there)")
    p.add_argument("--cache", metavar="DIR", help=cache_help)
    p.set_defaults(job="weights")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:  # no arguments: the app
        args = parser.parse_args(["gui"])
    if isinstance(getattr(args, "image_size", None), list):
        try:
            args.image_size = _image_size(args.image_size)
        except argparse.ArgumentTypeError as e:
            parser.error(str(e))
    try:
        check_args(args)
        return import_module(f"highlighter.commands.{args.job}").run(args) or 0
    except HighlighterError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `highlighter ... | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
