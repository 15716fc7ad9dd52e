"""The files a photo's results are written to: what `highlighter attention` and `highlighter mae` write, and
what the Photos tab's "Save all" writes (the same files)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from highlighter.postprocess import upsample
from highlighter.preprocess import to_display
from highlighter.render import heatmap, label, overlay, save_png, side_by_side


class OutputNames:
    """Unique output stems: a second ``cat.jpg`` from another folder becomes ``cat-2`` (``on_rename`` is told)."""

    def __init__(self, on_rename: Callable[[Path, str], None] | None = None) -> None:
        self.used: set[str] = set()
        self.on_rename = on_rename

    def stem(self, path: Path) -> str:
        stem, n = path.stem, 1
        while stem in self.used:
            n += 1
            stem = f"{path.stem}-{n}"
        if n > 1 and self.on_rename:
            self.on_rename(path, stem)
        self.used.add(stem)
        return stem


def write_attention(out: Path, stem: str, res, rule: str = "mass", threshold: float | None = None,
                    heads=None, pca: np.ndarray | None = None) -> dict:
    """``<stem>.npz`` (attention, mask, fused_attention, fused_mask, and ``pca`` when given), one heatmap PNG per
    head, the fused heatmap, the mask overlay on the whole photo (and ``<stem>_pca.png``), for one
    ``video.pipeline.FrameResult``. Returns a few numbers about it, and ``box``: the fused mask's largest component
    in the photo's pixels."""
    masks = res.masks(rule, threshold)
    fused = res.fused_map(heads)
    fused_mask = res.fused_mask(rule, threshold, heads)
    arrays = dict(attention=res.attention.astype(np.float32), mask=masks.astype(np.uint8),
                  fused_attention=fused.astype(np.float32), fused_mask=fused_mask.astype(np.uint8))
    p = res.patch_size
    if pca is not None:
        arrays["pca"] = np.asarray(pca, np.float32)
        save_png(out / f"{stem}_pca.png", pca_picture(pca, p))
    np.savez_compressed(out / f"{stem}.npz", **arrays)
    for h in range(res.attention.shape[0]):
        save_png(out / f"{stem}_attn_head{h}.png", heatmap(res.attention[h], p))
    save_png(out / f"{stem}_attn_fused.png", heatmap(fused, p))
    save_png(out / f"{stem}_mask_overlay.png", overlay("mask", res.image, fused, fused_mask))
    return {"fused_fraction": float(fused_mask.mean()), "box": res.box_of(fused_mask)}


def pca_picture(pca: np.ndarray, patch: int) -> np.ndarray:
    """PCA colours (h, w, 3) in [0, 1] as an RGB uint8 picture, each patch a patch x patch block."""
    return upsample((np.clip(pca, 0, 1) * 255 + 0.5).astype(np.uint8), patch)


def write_boxes(out: Path, boxes: dict) -> Path:
    """``DIR/boxes.json``: each stem -> [x0, y0, x1, y1] in the original picture's pixels (x1, y1 exclusive), or
    null when the mask is empty."""
    path = Path(out) / "boxes.json"
    tmp = path.with_suffix(".json.tmp")
    lines = [f" {json.dumps(stem)}: {json.dumps(box)}" for stem, box in boxes.items()]  # one photo a line
    tmp.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    tmp.replace(path)
    return path


def mae_panels(res) -> np.ndarray:
    """The four panels of the MAE notebook side by side, captioned, with the note on what they show."""
    v = res.views
    picture = side_by_side(
        [to_display(v.original), to_display(v.masked), to_display(v.reconstruction), to_display(v.paste)],
        ["original", f"masked ({res.mask.mean():.0%} hidden)", "reconstruction", "reconstruction + visible"])
    return label(picture, v.note)


def write_mae(out: Path, stem: str, res) -> Path:
    """``<stem>.npz`` (mask, pred, paste, original) and ``<stem>.png`` (the panels) for one ``MAEResult``."""
    np.savez_compressed(out / f"{stem}.npz", mask=res.mask, pred=res.pred.astype(np.float32),
                        paste=res.views.paste.astype(np.float32), original=res.views.original.astype(np.float32))
    return save_png(out / f"{stem}.png", mae_panels(res))
