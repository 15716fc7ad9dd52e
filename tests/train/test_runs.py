"""Whole training runs as a user starts them: real processes on real photos."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from highlighter.core.formats import load_checkpoint

from .conftest import DINO_TINY, MAE_TINY

CAT = Path(__file__).resolve().parents[2] / "assets" / "chelsea_cat.jpg"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def train(kind, data, out, *extra, timeout=300, **kw):
    cmd = [sys.executable, "-m", "highlighter", "train", kind, "--data", str(data), "--out", str(out),
           *(DINO_TINY if kind == "dino" else MAE_TINY), *map(str, extra)]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout, **kw)


def start(kind, data, out, *extra):
    cmd = [sys.executable, "-m", "highlighter", "train", kind, "--data", str(data), "--out", str(out),
           *(DINO_TINY if kind == "dino" else MAE_TINY), *map(str, extra)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def events(run: Path, kind: str | None = None) -> list[dict]:
    lines = (run / "log.jsonl").read_text().splitlines() if (run / "log.jsonl").exists() else []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return [e for e in out if kind is None or e["event"] == kind]


def wait_for_step(proc, run: Path, step: int, timeout=120):
    t = time.time()
    while time.time() - t < timeout:
        if any(e["step"] >= step for e in events(run, "step")):
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the run")


def test_dino_run_end_to_end(real_photos, tmp_path, cli):
    run = tmp_path / "run"
    r = train("dino", real_photos, run, "--events", "--log-every", "1", "--preview-every", "6",
              "--preview-images", CAT)
    assert r.returncode == 0, r.stderr[-3000:]
    printed = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    logged = events(run)
    assert [e["event"] for e in printed] == [e["event"] for e in logged]  # --events mirrors log.jsonl
    steps = events(run, "step")
    assert [e["step"] for e in steps] == list(range(18))  # 24 photos / batch 4 = 6 steps x 3 epochs
    for key in ("loss", "lr", "wd", "momentum", "teacher_temp", "img_s", "eta_s", "teacher_entropy",
                "teacher_kl_uniform", "center_norm"):
        assert all(np.isfinite(e[key]) for e in steps), key
    assert all(0 <= e["teacher_kl_uniform"] <= np.log(64) + 1e-6 for e in steps)
    assert sorted(p.name for p in (run / "previews").glob("step_*.png")) == [
        "step_00000006.png", "step_00000012.png", "step_00000018.png"]
    assert Image.open(run / "previews" / "latest.png").width > 3 * 64
    # the run's checkpoint is a model for `highlighter attention`, and loads with weights_only=True
    torch.load(run / "checkpoint.pth", weights_only=True)
    code, out, err = cli("attention", CAT, "--checkpoint", run / "checkpoint.pth", "--image-size", 64,
                         "--out", tmp_path / "a")
    assert code == 0, err
    # the export in DINO's backbone-only layout loads back to the same teacher
    code, _, err = cli("export", "--checkpoint", run / "checkpoint.pth", "--format", "dino", "--out",
                       tmp_path / "backbone.pth")
    assert code == 0, err
    bare = torch.load(tmp_path / "backbone.pth", weights_only=True)
    assert "cls_token" in bare and not any(k.startswith(("head", "backbone.", "module.")) for k in bare)
    teacher = torch.load(run / "checkpoint.pth", weights_only=True)["teacher"]
    for k, v in bare.items():
        assert torch.equal(v, teacher[f"backbone.{k}"])
    a = np.load(tmp_path / "a" / "chelsea_cat.npz")["attention"]
    cli("attention", CAT, "--checkpoint", tmp_path / "backbone.pth", "--image-size", 64, "--out", tmp_path / "b")
    assert np.array_equal(a, np.load(tmp_path / "b" / "chelsea_cat.npz")["attention"])


def test_mae_run_end_to_end(real_photos, tmp_path, cli):
    run = tmp_path / "run"
    r = train("mae", real_photos, run, "--log-every", "1", "--norm-pix-loss", "--preview-images", CAT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(events(run, "step")) == 18 and (run / "previews" / "latest.png").exists()
    ck = load_checkpoint(run / "checkpoint.pth")
    assert ck.decoder.norm_pix_loss and ck.decoder.num_heads == 2 and ck.vit.pos_grid == 4
    code, out, err = cli("mae", CAT, "--checkpoint", run / "checkpoint.pth", "--out", tmp_path / "m")
    assert code == 0 and "nearest visible patches" in out, err
    code, _, err = cli("export", "--checkpoint", run / "checkpoint.pth", "--format", "mae", "--out",
                       tmp_path / "mae.pth")
    assert code == 0 and "--decoder-num-heads 2" in err, err  # the layout cannot hold it: say so
    import argparse

    with torch.serialization.safe_globals([argparse.Namespace]):
        official = torch.load(tmp_path / "mae.pth", weights_only=True)
    assert set(official) == {"model", "args"} and "decoder_pred.weight" in official["model"]
    assert official["args"].norm_pix_loss is True
    code, _, err = cli("mae", CAT, "--checkpoint", tmp_path / "mae.pth", "--decoder-num-heads", 2,
                       "--out", tmp_path / "n")
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "m" / "chelsea_cat.npz")["pred"],
                                  np.load(tmp_path / "n" / "chelsea_cat.npz")["pred"])
    # the shipping path: fp16 safetensors with the decoder, whose header says how the weights were made
    code, _, err = cli("export", "--checkpoint", run / "checkpoint.pth", "--half", "--with-decoder", "--out",
                       tmp_path / "mae.safetensors")
    assert code == 0, err
    from safetensors import safe_open

    with safe_open(tmp_path / "mae.safetensors", "pt") as f:
        header = json.loads(f.metadata()["highlighter"])
        assert f.get_tensor("decoder_pred.weight").dtype == torch.float16
    trained = header["trained"]
    assert header["kind"] == "mae" and trained["task"] == "mae" and trained["epochs_done"] == 3
    assert trained["steps"] == 18 and trained["images_seen"] == 72 and trained["recipe"]["norm_pix_loss"] is True
    shipped = load_checkpoint(tmp_path / "mae.safetensors")
    assert shipped.decoder.norm_pix_loss and shipped.decoder.num_heads == 2  # kept in the header, no flag needed


@pytest.mark.parametrize("kind", ["dino", "mae"])
def test_resume_after_sigkill_is_bit_exact(real_photos, tmp_path, kind):
    straight = tmp_path / "straight"
    r = train(kind, real_photos, straight, "--log-every", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    killed = tmp_path / "killed"
    proc = start(kind, real_photos, killed, "--log-every", "1", "--save-every-steps", "1")
    wait_for_step(proc, killed, 8)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "checkpoint.pth").exists()
    r = train(kind, real_photos, killed, "--resume", "--log-every", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    want = [(e["step"], e["loss"]) for e in events(straight, "step")]
    got = [(e["step"], e["loss"]) for e in events(killed, "step")]
    assert got == want  # the same loss at every step, bit for bit, and no step logged twice
    r = train(kind, real_photos, killed, "--resume")  # a finished run: nothing to do, nothing changed
    assert r.returncode == 0 and "already finished" in r.stderr
    a = torch.load(straight / "checkpoint.pth", weights_only=True)
    b = torch.load(killed / "checkpoint.pth", weights_only=True)
    key = "teacher" if kind == "dino" else "model"
    assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])


def test_sigint_saves_and_exits_cleanly_then_resumes(real_photos, tmp_path):
    run = tmp_path / "run"
    proc = start("dino", real_photos, run, "--log-every", "1", "--epochs", "50")
    wait_for_step(proc, run, 2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "checkpoint saved" in err
    ck = torch.load(run / "checkpoint.pth", weights_only=True)
    last = events(run, "step")[-1]["step"]
    assert ck["global_step"] == last + 1 and events(run)[-1]["event"] == "stopped"
    r = train("dino", real_photos, run, "--resume", "--max-steps", "2", "--log-every", "1")
    assert r.returncode == 0 and events(run, "step")[-1]["step"] == last + 2


def test_sigterm_to_the_whole_process_group_with_workers(real_photos, tmp_path):
    """SIGTERM to the whole process group (pkill, kill -- -PGID) reaches the data workers too: the run still
    saves and exits cleanly instead of crashing in the middle of the save."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "highlighter", "train", "dino", "--data", str(real_photos), "--out", str(run),
           *DINO_TINY, "--num-workers", "2", "--log-every", "1", "--epochs", "50"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    wait_for_step(proc, run, 2)
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "checkpoint saved" in err and "Traceback" not in err
    assert torch.load(run / "checkpoint.pth", weights_only=True)["global_step"] >= 3


def test_corrupt_files_are_skipped_counted_and_reported(real_photos, tmp_path):
    data = tmp_path / "data"
    for p in sorted(real_photos.rglob("*.JPEG"))[:8]:
        (data / p.parent.name).mkdir(parents=True, exist_ok=True)
        (data / p.parent.name / p.name).write_bytes(p.read_bytes())
    (data / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (data / "empty.png").write_bytes(b"")
    r = train("dino", data, tmp_path / "run", "--epochs", "2", "--batch-size", "5")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count("broken.jpg") >= 1 and "empty.png" in r.stderr
    assert "skipped 2 unreadable file(s)" in r.stderr
    assert [e["unreadable"] for e in events(tmp_path / "run", "epoch_end")] == [2, 2]


def test_bad_folders_fail_before_anything_starts(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    r = train("dino", tmp_path / "empty", tmp_path / "run")
    assert r.returncode == 2 and "no images found" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()
    r = train("mae", tmp_path / "missing", tmp_path / "run")
    assert r.returncode == 2 and "no such folder" in r.stderr


def test_existing_run_is_never_overwritten(real_photos, tmp_path):
    r = train("dino", real_photos, tmp_path / "run", "--max-steps", "1")
    assert r.returncode == 0
    r = train("dino", real_photos, tmp_path / "run")
    assert r.returncode == 2 and "pass --resume" in r.stderr
    r = train("dino", real_photos, tmp_path / "other", "--resume")
    assert r.returncode == 2 and "no " in r.stderr and "to continue" in r.stderr
    r = train("mae", real_photos, tmp_path / "run", "--resume")
    assert r.returncode == 2 and "holds a dino run" in r.stderr


@pytest.mark.parametrize("when", ["after_a_step", "at_the_first_step"])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(real_photos, tmp_path, when):
    """lr 1e38: the first update is finite and huge, the next loss is NaN; the checkpoint saved after every
    step holds the state before the bad one. Teacher temperature 0: the very first loss is NaN, nothing was
    saved, and the message must not point at a checkpoint that does not exist."""
    run = tmp_path / "run"
    why = (["--lr", "1e38", "--warmup-epochs", "0", "--clip-grad", "0"] if when == "after_a_step"
           else ["--teacher-temp", "0", "--warmup-teacher-temp", "0"])
    r = train("dino", real_photos, run, *why, "--save-every-steps", "1", "--log-every", "1")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    bad_step = events(run, "error")[0]["step"]
    said = re.search(r"error: the loss is (nan|-?inf) at epoch 0, step (\d+): the run stopped; ", r.stderr)
    assert said and int(said.group(2)) == bad_step, r.stderr[-2000:]
    assert [e["step"] for e in events(run, "step")] == list(range(bad_step))  # every good step was logged
    if when == "at_the_first_step":
        assert bad_step == 0 and not (run / "checkpoint.pth").exists() and not events(run, "checkpoint")
        assert "no checkpoint had been saved yet" in r.stderr and "checkpoint.pth" not in r.stderr
        return
    assert bad_step >= 1
    assert f"{run / 'checkpoint.pth'} keeps the last good state" in r.stderr
    ck = torch.load(run / "checkpoint.pth", weights_only=True)
    assert ck["global_step"] == bad_step  # saved after the last good step, before the bad one
    assert events(run, "checkpoint")[-1]["step"] == bad_step
    for key in ("student", "teacher"):
        assert all(torch.isfinite(v).all() for v in ck[key].values() if v.is_floating_point()), key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process(real_photos, tmp_path):
    common = ["--precision", "fp32", "--drop-path-rate", "0", "--max-steps", "3"]
    one = train("dino", real_photos, tmp_path / "one", "--batch-size", "4", *common)
    assert one.returncode == 0, one.stderr[-2000:]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "--master_addr=127.0.0.1", "-m", "highlighter", "train", "dino", "--data", str(real_photos),
           "--out", str(tmp_path / "two"), *DINO_TINY, "--batch-size", "2", *common]
    two = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a = torch.load(tmp_path / "one" / "checkpoint.pth", weights_only=True)
    b = torch.load(tmp_path / "two" / "checkpoint.pth", weights_only=True)
    assert b["highlighter"]["world_size"] == 2 and a["global_step"] == b["global_step"] == 3
    for key in ("student", "teacher"):
        for k in a[key]:
            torch.testing.assert_close(b[key][k], a[key][k], rtol=1e-4, atol=1e-5, msg=f"{key}.{k}")
    torch.testing.assert_close(b["dino_loss"]["center"], a["dino_loss"]["center"], rtol=1e-4, atol=1e-6)
    # ... and both really trained. The seed-0 initial student, rebuilt here from the saved config, is where
    # both started: the head's last layer, frozen in the first epoch, is still exactly there, and every
    # other tensor has moved away from it, in the student and (by the EMA) in the teacher's head
    from highlighter.config import DinoCfg
    from highlighter.train.dist import Dist
    from highlighter.train.steps import DinoTask

    init = DinoTask(DinoCfg.from_dict(a["highlighter"]["train"]), Dist(), niter_per_epoch=6).student_plain.state_dict()
    frozen = {"head.last_layer.weight_v", "head.last_layer.weight_g"}
    for name, ck in (("one process", a), ("two processes", b)):
        assert set(ck["student"]) == set(init), name
        unmoved = {k for k, v in init.items() if torch.equal(ck["student"][k], v)}
        assert unmoved == frozen, (name, sorted(unmoved))
        assert all(not torch.equal(ck["teacher"][k], init[k]) for k in init if k.startswith("head.mlp")), name


def test_resume_logs_how_the_last_process_ended_and_keeps_its_flags(real_photos, tmp_path, cli):
    """--resume deleted the log lines after the checkpoint, so log.jsonl never said the run was killed and where;
    and --log-every (and the other run flags) of the first run were lost."""
    run = tmp_path / "run"
    code, _, err = cli("train", "dino", "--data", real_photos, "--out", run, *DINO_TINY, "--log-every", "2",
                       "--max-steps", "2")
    assert code == 0, err
    assert torch.load(run / "checkpoint.pth", weights_only=True)["global_step"] == 2
    step = events(run, "step")[-1]  # then the process runs on past its checkpoint, and is killed after step 3
    with open(run / "log.jsonl", "a") as f:
        f.writelines(json.dumps({**step, "step": s}) + "\n" for s in (2, 3))

    code, _, err = cli("train", "dino", "--data", real_photos, "--out", run, *DINO_TINY, "--resume",
                       "--max-steps", "3")
    assert code == 0, err
    assert "--resume keeps the first run's --log-every 2" in err
    (resumed,) = events(run, "resumed")
    assert resumed["step"] == 2 and resumed["previous_end"] == "killed" and resumed["steps_done_logged"] == 4
    assert resumed["steps_lost"] == 2 and resumed["events_dropped"] == 2 and "killed or crashed" in resumed["message"]
    assert [e["step"] for e in events(run, "step")] == [0, 2, 4]  # every 2nd step, none twice

    code, _, err = cli("train", "dino", "--data", real_photos, "--out", run, *DINO_TINY, "--resume",
                       "--max-steps", "1", "--log-every", "1")  # given again: it wins
    assert code == 0, err
    last = events(run, "resumed")[-1]
    assert last["step"] == 5 and last["previous_end"] == "paused" and last["steps_lost"] == 0
    assert [e["step"] for e in events(run, "step")] == [0, 2, 4, 5]
