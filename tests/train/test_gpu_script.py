"""scripts/train_on_gpu.sh on the CPU: pack, time, train for a few seconds, bring back a small model."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import torch
from PIL import Image

from highlighter.core.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def test_pack_and_train_for_minutes_on_the_cpu(real_photos, tmp_path):
    shared = tmp_path / "shared"
    for name in ("tinyimagenet/train", "imagenet-sample", "davis-train-frames"):
        shutil.copytree(next(real_photos.iterdir()), shared / name)
    env = {**os.environ, "SHARED": str(shared), "PACK": str(tmp_path / "pack" / "train.zip"), "DEVICE": "cpu",
           "OUT": str(tmp_path / "out"), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "TIMING_STEPS": "3",
           "RECIPE": "--arch vit_tiny --patch-size 16 --global-crop-size 32 --local-crop-size 16 "
                     "--local-crops-number 2 --out-dim 64 --head-hidden-dim 64 --head-bottleneck-dim 32 "
                     "--batch-size 4"}
    script = str(ROOT / "scripts" / "train_on_gpu.sh")
    r = subprocess.run(["bash", script, "pack"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "pack" / "train.zip").stat().st_size < 60 * 2**20
    assert "wrote" in r.stdout and "18 photos" in r.stdout  # 3 copies of one 6-photo folder
    with zipfile.ZipFile(tmp_path / "pack" / "train.zip") as z:  # the pack itself holds them, each decodable
        names = [n for n in z.namelist() if not n.endswith("/")]
        assert len(names) == 18 and all(Image.open(io.BytesIO(z.read(n))).size for n in names)
    r = subprocess.run(["bash", script, "train", "0.1"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "img/s:" in r.stderr and "epochs of 18 photos fit in 0.1 minutes" in r.stderr
    model = tmp_path / "out" / "dino_gpu.safetensors"
    assert model.stat().st_size < 16 * 2**20 and (tmp_path / "out" / "log.jsonl").exists()
    ck = load_checkpoint(model)
    assert ck.vit.patch_size == 16 and ck.meta["trained"]["recipe"]["augment"] == "tensor"
    # steps ran: the log's start, steps and end agree with each other and with the exported header
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    start, end = next(e for e in log if e["event"] == "start"), log[-1]
    epochs = int(re.search(r"(\d+) epochs of 18 photos", r.stderr).group(1))
    assert start["images"] == 18 and start["epochs"] == epochs and start["total_steps"] == epochs * start[
        "steps_per_epoch"] > 0
    assert end["event"] in ("done", "paused") and end["step"] > 0  # paused: --max-minutes came first
    if end["event"] == "done":
        assert end["step"] == start["total_steps"]
    assert [e["step"] for e in log if e["event"] == "step"] == list(range(0, end["step"], 10))  # --log-every 10
    trained = ck.meta["trained"]
    assert trained["steps"] == end["step"] and trained["images_seen"] == end["step"] * 4  # batch 4, one process
    assert trained["epochs_done"] == end["step"] // start["steps_per_epoch"] and trained["recipe"]["epochs"] == epochs
    assert all(v.dtype == torch.float32 for v in ck.state.values())  # loaded as fp32 from the fp16 file
    r = subprocess.run(["bash", script, "train", "1"], env={**env, "PACK": str(tmp_path / "none.zip")},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "run 'scripts/train_on_gpu.sh pack' first" in r.stderr
