import shutil
from pathlib import Path

import pytest
from needs import shared_data

TINY_ARGS = ["--arch", "vit_tiny", "--patch-size", "16", "--num-workers", "0", "--preview-every", "0"]
DINO_TINY = [*TINY_ARGS, "--global-crop-size", "32", "--local-crop-size", "16", "--local-crops-number", "2",
             "--out-dim", "64", "--head-hidden-dim", "64", "--head-bottleneck-dim", "32", "--batch-size", "4",
             "--epochs", "3", "--warmup-epochs", "1"]
MAE_TINY = [*TINY_ARGS, "--input-size", "64", "--decoder-embed-dim", "32", "--decoder-depth", "1",
            "--decoder-num-heads", "2", "--batch-size", "4", "--epochs", "3", "--warmup-epochs", "1"]


@pytest.fixture(scope="session")
def real_photos(tmp_path_factory) -> Path:
    """A few dozen real photos from shared/data/train, nested in sub-folders as users' folders are."""
    src = shared_data("train", "tinyimagenet", "train")
    dst = tmp_path_factory.mktemp("photos")
    for k, wnid in enumerate(sorted(p.name for p in src.iterdir())[:4]):
        sub = dst / f"group{k}" / "nested"
        sub.mkdir(parents=True)
        for f in sorted((src / wnid).rglob("*.JPEG"))[:6]:
            shutil.copy(f, sub / f.name)
    return dst
