"""Mask quality against ground truth, its baselines, and DINO's k-NN evaluation (pure numpy / torch)."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from highlighter.defaults import IMAGE_SIZE
from highlighter.postprocess import grid_to_pixels
from highlighter.preprocess import fit_size


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Jaccard index of two boolean masks; 1.0 when both are empty."""
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def _boundary(mask: np.ndarray) -> np.ndarray:
    """DAVIS's ``_seg2bmap``: pixels whose right, lower or lower-right neighbour differs (1 pixel wide, offset half a
    pixel towards the origin), with the last row and column compared along themselves only."""
    seg = np.asarray(mask, dtype=bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1], s[:-1, :], se[:-1, :-1] = seg[:, 1:], seg[1:, :], seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """The DAVIS boundary F-measure (davis2017-evaluation's ``f_measure``): boundary pixels of each mask match
    when the other's boundary, dilated by a disk of ceil(bound_th x the image diagonal) pixels, covers them;
    F = 2PR / (P + R). Both boundaries empty: 1; one empty: 0."""
    import cv2

    r = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*pred.shape[:2]))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disk = ((xx ** 2 + yy ** 2) <= r ** 2).astype(np.uint8)  # skimage.morphology.disk(r)
    fb, gb = _boundary(pred), _boundary(gt)
    n_fg, n_gt = int(fb.sum()), int(gb.sum())
    if n_fg == 0 or n_gt == 0:
        return 1.0 if n_fg == n_gt else 0.0
    precision = float((fb & cv2.dilate(gb.view(np.uint8), disk).astype(bool)).sum()) / n_fg
    recall = float((gb & cv2.dilate(fb.view(np.uint8), disk).astype(bool)).sum()) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def centred_ellipse(shape: tuple[int, int], fraction: float) -> np.ndarray:
    """A centred ellipse with the image's aspect ratio covering ``fraction`` of its area (clipped to the frame)."""
    H, W = shape
    s = min(1.0, math.sqrt(4 * fraction / math.pi))  # pi (sW/2)(sH/2) = f H W
    yy, xx = np.mgrid[0:H, 0:W]
    cy, cx = (H - 1) / 2, (W - 1) / 2
    a, b = max(s * W / 2, 0.5), max(s * H / 2, 0.5)
    return ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1.0


def sequence_of(stem: str) -> str | None:
    """DAVIS-style names `<seq>_<frame>` -> seq; None when the name does not end in _<digits>."""
    seq, _, frame = stem.rpartition("_")
    return seq if seq and frame.isdigit() else None


def summarise(rows: list[dict], key: str) -> dict:
    """Mean of ``key`` over rows, and per DAVIS sequence when names have that form."""
    out = {"mean": float(np.mean([r[key] for r in rows])) if rows else float("nan")}
    groups = defaultdict(list)
    for r in rows:
        seq = sequence_of(r["name"])
        if seq is not None:
            groups[seq].append(r[key])
    if groups:
        out["per_sequence"] = {s: float(np.mean(v)) for s, v in sorted(groups.items())}
    return out


def grid_to_image(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A patch-grid mask at the image's (H, W), as bool (``postprocess.grid_to_pixels``)."""
    return grid_to_pixels(np.asarray(mask).astype(bool), shape)


model_size = fit_size  # the photo's shorter side at S, aspect kept, on the patch grid (highlighter.preprocess)


def knn_classify(train_feats, train_labels, test_feats, k: int = 20, temperature: float = 0.07,
                 num_classes: int | None = None, chunk: int = 256):
    """DINO's eval_knn: cosine similarity on L2-normalised features, the k nearest training samples vote
    with weight exp(sim / T). Tensors in, predicted labels out. (torch is imported here, so that the IoU
    above serves the torch-free live path too.)"""
    import torch

    num_classes = num_classes or int(train_labels.max()) + 1
    train = torch.nn.functional.normalize(train_feats, dim=1)
    test = torch.nn.functional.normalize(test_feats, dim=1)
    preds = []
    for i in range(0, len(test), chunk):  # no autograd: features are plain tensors
        sim = test[i:i + chunk] @ train.T  # (b, N)
        top, idx = sim.topk(min(k, train.shape[0]), dim=1)
        votes = torch.zeros(len(top), num_classes)
        votes.scatter_add_(1, train_labels[idx], (top / temperature).exp())
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def hidden_pixels(mask: np.ndarray, grid: tuple[int, int], patch: int) -> np.ndarray:
    """Patch mask (L,), 1 = hidden, row-major over ``grid`` (h, w) -> boolean pixel mask (h*p, w*p)."""
    h, w = grid
    return grid_to_pixels(np.asarray(mask, dtype=bool).reshape(h, w), (h * patch, w * patch))


def mean_fill(img: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """The MAE baseline: every hidden pixel gets the per-channel mean of the visible pixels. img (H, W, C)."""
    out = np.array(img, dtype=np.float64, copy=True)
    out[hidden] = out[~hidden].mean(axis=0)
    return out


def masked_mse(pred: np.ndarray, target: np.ndarray, hidden: np.ndarray) -> float:
    """Mean squared error over the hidden pixels (all channels)."""
    diff = np.asarray(pred, dtype=np.float64)[hidden] - np.asarray(target, dtype=np.float64)[hidden]
    return float(np.mean(diff**2))


# ============================================================================= the evaluation runs
# Engines come in as arguments (``core.inference``), so this module imports neither torch nor the engines.
def _image_files(folder) -> list:
    from pathlib import Path

    from highlighter.images import IMAGE_EXTENSIONS

    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def _quiet(message: str) -> None:
    pass


def _progress(items, desc: str):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="img", disable=None)


def evaluate_masks(road, images, masks, warn=_quiet) -> dict:
    """IoU per image between the predicted foreground and the ground truth (PNG, 255 = object), with the
    centred-ellipse and all-foreground baselines. ``road``: the photos' ``FramePipeline`` (``video.session.
    photo_road``): its settings' rule on the fused heads, each photo at its predictor's size.
    ``images``/``masks``: folders; masks share the stems."""
    from pathlib import Path

    from highlighter.errors import HighlighterError, ImageError
    from highlighter.images import load_rgb

    pairs = [(p, Path(masks) / f"{p.stem}.png") for p in _image_files(images)]
    missing = [p.name for p, m in pairs if not m.exists()]
    if missing:
        warn(f"{len(missing)} image(s) without a mask are skipped, e.g. {missing[0]}")
    pairs = [(p, m) for p, m in pairs if m.exists()]
    if not pairs:
        raise HighlighterError(f"no image in {images} has a mask in {masks}")
    gts, preds, names = [], [], []
    for img_path, mask_path in _progress(pairs, "eval"):
        try:
            img = load_rgb(img_path)
        except ImageError as e:
            warn(f"skipped {e}")
            continue
        gt = np.asarray(load_rgb(mask_path).convert("L")) >= 128  # 255 = object
        if gt.shape != (img.height, img.width):
            warn(f"skipped {img_path.name}: mask {gt.shape} and image {(img.height, img.width)} differ")
            continue
        res = road.process(np.asarray(img), name=img_path.name)
        preds.append(grid_to_image(res.mask, gt.shape))
        gts.append(gt)
        names.append(img_path.stem)
    fraction = float(np.mean([g.mean() for g in gts]))
    rows = [{"name": name, "iou": iou(pred, gt), "ellipse": iou(centred_ellipse(gt.shape, fraction), gt),
             "all_foreground": iou(np.ones_like(gt), gt), "predicted_fraction": float(pred.mean()),
             "true_fraction": float(gt.mean())} for name, gt, pred in zip(names, gts, preds)]
    settings, predictor = road.settings, road.predictor
    return {"images": len(rows), "mask_rule": settings.rule, "threshold": settings.threshold,
            "image_size": predictor.image_size or predictor.short, "preprocessing": predictor.preprocessing,
            "mean_foreground_fraction": fraction, "iou": summarise(rows, "iou"),
            "baseline_ellipse": summarise(rows, "ellipse"),
            "baseline_all_foreground": summarise(rows, "all_foreground"), "per_image": rows}


def class_token_features(engine, paths, size: int):
    """The final-norm class token of each photo at size x size: (N, D) tensor."""
    import torch

    from highlighter.images import load_rgb
    from highlighter.preprocess import PREPROCESSING

    p = engine.patch_size
    side = max(p, size - size % p)
    feats = []
    for path in _progress(paths, "features"):
        x = PREPROCESSING[engine.preprocessing](np.asarray(load_rgb(path)), (side, side))
        with torch.no_grad():
            _, f = engine.model(torch.from_numpy(x).to(engine.device), with_features=True)
        feats.append(f[0].float().cpu())
    return torch.stack(feats)


def evaluate_knn(engine, train, val, labels, size: int = IMAGE_SIZE, k: int = 20, stride: int = 1) -> dict:
    """DINO's k-NN accuracy of the class-token features: ``train`` has one sub-folder per class, ``labels`` is
    a 'file<TAB>class' file for the photos in ``val``; every ``stride``-th training photo is used."""
    from pathlib import Path

    import torch

    from highlighter.errors import HighlighterError
    from highlighter.images import IMAGE_EXTENSIONS

    train_root = Path(train)
    classes = sorted(d.name for d in train_root.iterdir() if d.is_dir())
    index = {c: i for i, c in enumerate(classes)}
    train_set = [(p, index[c]) for c in classes for p in sorted((train_root / c).rglob("*"))
                 if p.suffix.lower() in IMAGE_EXTENSIONS][:: max(1, stride)]
    table = dict(line.split("\t")[:2] for line in Path(labels).read_text().splitlines() if "\t" in line)
    val_set = [(Path(val) / f, index[w.strip()]) for f, w in table.items() if w.strip() in index]
    val_set = [(p, y) for p, y in val_set if p.exists()]
    if not train_set or not val_set:
        raise HighlighterError("no training or validation images found for the k-NN evaluation")
    ftr = class_token_features(engine, [p for p, _ in train_set], size)
    fva = class_token_features(engine, [p for p, _ in val_set], size)
    pred = knn_classify(ftr, torch.tensor([y for _, y in train_set]), fva, k=k, temperature=0.07,
                        num_classes=len(classes))
    acc = float((pred == torch.tensor([y for _, y in val_set])).float().mean())
    return {"knn_top1": acc, "k": k, "temperature": 0.07, "train_images": len(train_set),
            "val_images": len(val_set), "classes": len(classes)}


def evaluate_mae(engine, images, mask_ratio: float = 0.75, seeds: int = 3, warn=_quiet) -> dict:
    """An MAE's masked-patch MSE in pixel space (RGB in [0, 1] at the model's input size, the reconstruction
    clipped as the MAE tab shows it), against filling every hidden patch with the mean of the visible pixels;
    the same ``seeds`` random masks per photo for both."""
    from highlighter.errors import HighlighterError, ImageError
    from highlighter.images import load_rgb
    from highlighter.preprocess import unnormalise

    if not engine.model.has_decoder:
        raise HighlighterError("eval --mae needs a checkpoint with the MAE decoder (this one is an encoder only)")
    paths = _image_files(images)
    if not paths:
        raise HighlighterError(f"no images in {images}")
    p = engine.ck.vit.patch_size
    grid = (engine.model.input_size // p,) * 2
    rows = []
    for i, path in enumerate(_progress(paths, "mae eval")):
        try:
            img = load_rgb(path)
        except ImageError as e:
            warn(f"skipped {e}")
            continue
        model, base = [], []
        for s in range(seeds):
            res = engine.run(img, mask_ratio, seed=1000 * i + s)
            hidden = hidden_pixels(res.mask, grid, p)
            original = unnormalise(res.views.original)
            model.append(masked_mse(unnormalise(res.views.reconstruction), original, hidden))
            base.append(masked_mse(mean_fill(original, hidden), original, hidden))
        rows.append({"name": path.stem, "mse": float(np.mean(model)), "mean_fill_mse": float(np.mean(base))})
    mse, fill = summarise(rows, "mse"), summarise(rows, "mean_fill_mse")
    return {"images": len(rows), "mask_ratio": mask_ratio, "masks_per_image": seeds,
            "input_size": engine.model.input_size, "space": "RGB in [0, 1], clipped", "mse": mse,
            "baseline_mean_fill": fill, "reduction_vs_mean_fill": 1.0 - mse["mean"] / fill["mean"],
            "per_image": rows}
