"""scripts/train_on_gpu.sh rehearsed on the CPU (DEVICE=cpu): the same `pack` and `all MINUTES` that a borrowed GPU
runs, on a few real photos, with a tiny recipe. What comes back is read as a user of the GPU call would."""

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import torch
from needs import shared_data
from PIL import Image

from highlighter.core.formats import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TINY = ("--arch vit_tiny --patch-size 16 --global-crop-size 32 --local-crop-size 16 --local-crops-number 2 "
        "--out-dim 64 --head-hidden-dim 64 --head-bottleneck-dim 32 --batch-size 4 --num-workers 0")


def _eval_subset(dst: Path, name: str, n: int = 3) -> None:
    src = shared_data("eval", name)
    for p in sorted((src / "images").iterdir())[:n]:
        for sub, f in (("images", p), ("masks", src / "masks" / f"{p.stem}.png")):
            (dst / name / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dst / name / sub / f.name)


def test_pack_then_the_whole_gpu_command_rehearsed_on_the_cpu(real_photos, tmp_path):
    shared = tmp_path / "shared"
    for name in ("train/tinyimagenet/train", "train/imagenet-sample", "train/davis-train-frames"):
        shutil.copytree(next(real_photos.iterdir()), shared / name)
    for name in ("horses", "davis-stills"):
        _eval_subset(shared / "eval", name)
    pack, out = tmp_path / "pack", tmp_path / "out"
    env = {**os.environ, "SHARED": str(shared), "GPU_PACK": str(pack), "DEVICE": "cpu", "OUT": str(out),
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "TIMM_WHEEL": "0", "RECIPE": TINY,
           "TIMING_MINUTES": "0.05", "CHECK_MINUTES": "0.3", "BENCH_MODELS": "default", "BENCH_FRAMES": "3",
           "MAE_BATCH": "4"}
    script = str(ROOT / "scripts" / "train_on_gpu.sh")
    r = subprocess.run(["bash", script, "pack"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    with zipfile.ZipFile(pack / "train.zip") as z:  # 3 copies of one 6-photo folder, each decodable
        names = [n for n in z.namelist() if not n.endswith("/")]
        assert len(names) == 18 and all(Image.open(io.BytesIO(z.read(n))).size for n in names)
    for name in ("horses", "davis-stills"):  # the probe photos travel with their masks, at most 256 px
        imgs = sorted((pack / "probe" / name / "images").iterdir())
        assert len(imgs) == 3 and all(max(Image.open(p).size) <= 256 for p in imgs)
        assert all(Image.open(pack / "probe" / name / "masks" / f"{p.stem}.png").size == Image.open(p).size
                   for p in imgs)
    assert len(list((pack / "frames").glob("*.jpg"))) == 60 and "MiB of the 64 MiB that travel" in r.stdout

    r = subprocess.run(["bash", script, "all", "0.8"], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all((out / f).stat().st_size < 16 * 2**20 for f in files), files
    report = json.loads((out / "report.json").read_text())
    assert report["versions"]["device"] == "cpu" and report["versions"]["torch"] == torch.__version__

    # the training: its log agrees with itself, and the kept teachers with the log
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    start, end = next(e for e in log if e["event"] == "start"), log[-1]
    assert start["images"] == 18 and start["total_steps"] == start["epochs"] * start["steps_per_epoch"] > 0
    assert end["event"] in ("done", "paused") and end["step"] > 0
    assert [e["step"] for e in log if e["event"] == "step"] == list(range(0, end["step"], 20))  # --log-every 20
    kept = [e for e in log if e["event"] == "kept"]
    assert [e["percent"] for e in kept] == [25, 50, 75, 100][:len(kept)]
    for e in kept:
        assert e["step"] == max(1, round(start["total_steps"] * e["percent"] / 100))
        ck = load_checkpoint(out / f"teacher_{e['percent']:03d}.safetensors")
        assert ck.meta["trained"]["steps"] == e["step"] and ck.meta["trained"]["images_seen"] == 4 * e["step"]
    teachers = [f for f in files if f.startswith("teacher_")]
    assert teachers and ("teacher_100.safetensors" in teachers) == (end["event"] == "done")
    for t in teachers:  # each probed per head on the carried photos
        probe = report[f"probe_{t.removesuffix('.safetensors')}"]
        for name in ("horses", "davis-stills"):
            assert len(probe[name]["64"]["heads_in_out"]) == 3  # ViT-Ti: 3 heads

    # the CUDA checks, here on the CPU
    mae, tr = report["check_mae"], report["check_torchrun"]
    assert mae["ok"] and mae["steps"] == 20 and mae["last_step"] == 19
    assert tr["ok"] and tr["distributed"] == "gloo" and tr["world_size"] == 1 and tr["steps"] == 10
    bench = report["bench_default_torch-fp32"]
    assert bench["fps"] > 0 and bench["backend"].startswith("torch-fp32") and bench["image_size"] == [224, 224]
    assert "bench_default_torch-bf16" in report  # a result, or the reason it failed

    r = subprocess.run(["bash", script, "train", "1"], env={**env, "PACK": str(tmp_path / "none.zip")},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "run 'scripts/train_on_gpu.sh pack' first" in r.stderr
