"""The training run, wired as main_pretrain.py wires MAE's: the configuration (resume, --epochs extend, --init),
the processes, the data, the task, the run folder and its log, and what the loop's moments write (RunHooks). The
loop itself, and the policy that picks those moments, are in loop.py. `highlighter train` (cli.py) calls ``run``;
so does torchrun (``torchrun ... -m highlighter train ...``)."""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from highlighter.config import ARCH_DIMS, DinoCfg, MaeCfg, ViTConfig
from highlighter.core.attention import AttentionViT
from highlighter.core.save import make_meta, save_model
from highlighter.errors import CheckpointError, HighlighterError
from highlighter.fileio import atomic_write
from highlighter.paths import RUN_BEST, RUN_CHECKPOINT, assets_dir
from highlighter.train import preview
from highlighter.train.augment import DinoMultiCrop, MaeCrop
from highlighter.train.data import EpochBatches, TrainImages, make_loader
from highlighter.train.dist import Dist, init_distributed, shutdown
from highlighter.train.loop import Policy, Progress, train_mode, train_one_epoch
from highlighter.train.packed import ImageBank, TensorMultiCrop, find_training_images, load_source
from highlighter.train.runlog import RunLog, StopFlag, logged
from highlighter.train.steps import DinoTask, MaeTask, NonFiniteLoss


def _preview_images(files: list[Path], explicit: list[str] | None) -> tuple[list, list[Path]]:
    """Fixed photos for previews: the given ones, else the bundled demo photos, else 4 taken out of the data."""
    if explicit:
        paths = [Path(p) for p in explicit]
    elif sorted(assets_dir().glob("*.jpg")):
        paths = sorted(assets_dir().glob("*.jpg"))[:4]
    else:
        paths = files[-4:]
        files = files[:-4]
    return [load_source(p) for p in paths], files


# how a run logs, saves, previews and probes: given to its first process, kept in its checkpoint, carried over by
# --resume unless given again (the limits, --max-steps and --max-minutes, are each process's own)
RUN_FLAGS = {"log_every": 10, "save_every_minutes": 5.0, "save_every_steps": 0, "preview_every": 200,
             "preview_images": None, "probe_every_minutes": 0.0, "probe_data": None, "probe_sizes": None,
             "probe_knn": None, "keep_teachers": 0}


def run(kind: str, cfg: DinoCfg | MaeCfg, data: list[str], out: str, device: str = "auto", resume: bool = False,
        events: bool = False, log_every: int | None = None, save_every_minutes: float | None = None,
        save_every_steps: int | None = None, preview_every: int | None = None,
        preview_images: list[str] | None = None, max_steps: int = 0, source: str = "cli",
        probe_every_minutes: float | None = None, probe_data: list[str] | None = None,
        probe_sizes: list[int] | None = None, probe_knn: str | None = None, epochs: int | None = None,
        init: str | None = None, explicit_arch: dict | None = None, max_minutes: float = 0.0,
        keep_teachers: int | None = None) -> int:
    """One training run. With ``resume``, the run's stored configuration is used, except ``epochs``: a larger
    number extends the run (finished or not) and every schedule is recomputed over the new length, as
    main_dino.py does when restarted with a larger --epochs; the run flags (``RUN_FLAGS``) left None are the
    first process's. ``init`` starts the backbone(s) from any supported checkpoint (the architecture comes from
    the file; ``explicit_arch`` holds the --arch / --patch-size the user typed, which must agree with it)."""
    given = {k: v for k, v in dict(log_every=log_every, save_every_minutes=save_every_minutes,
                                   save_every_steps=save_every_steps, preview_every=preview_every,
                                   preview_images=preview_images, probe_every_minutes=probe_every_minutes,
                                   probe_data=probe_data, probe_sizes=probe_sizes, probe_knn=probe_knn,
                                   keep_teachers=keep_teachers).items() if v is not None}
    run_dir = Path(out)
    ckpt_path = run_dir / RUN_CHECKPOINT
    if resume and not ckpt_path.exists():
        raise HighlighterError(f"--resume: there is no {ckpt_path} to continue")
    if not resume and ckpt_path.exists():
        raise HighlighterError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --out")
    state = None
    if resume:
        try:
            state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is reported the same way
            raise CheckpointError(f"{ckpt_path}: cannot be resumed ({type(e).__name__}: {str(e)[:100]})") from None
        stored_kind = state.get("highlighter", {}).get("kind")
        if stored_kind != kind:
            raise HighlighterError(f"{run_dir} holds a {stored_kind} run, not {kind}: use `highlighter train "
                                   f"{stored_kind} --resume`")
        stored = dict(state["highlighter"]["train"])
        if init:
            raise HighlighterError("--init starts a new run; --resume continues one: use one of them")
        if epochs is not None and epochs != stored["epochs"]:
            if epochs < state["epoch"] or (epochs < stored["epochs"] and state["epoch"] >= epochs):
                raise HighlighterError(f"--epochs {epochs}: the run has already trained {state['epoch']} epochs")
            print(f"{run_dir}: --epochs {epochs} (was {stored['epochs']}): the schedules are recomputed over "
                  f"{epochs} epochs", file=sys.stderr, flush=True)
            extended_from = stored["epochs"]
            stored["epochs"] = epochs
        else:
            extended_from = None
        if state["epoch"] >= stored["epochs"]:
            print(f"{run_dir}: this run already finished its {state['epoch']} epochs; nothing to resume (pass a "
                  "larger --epochs to extend it)", file=sys.stderr)
            return 0
        cfg = type(cfg).from_dict({k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})
        state["extended_from"] = extended_from
    kept = {k: v for k, v in (state or {}).get("run_flags", {}).items() if k in RUN_FLAGS and k not in given}
    flags = {**RUN_FLAGS, **kept, **given}
    if kept and flags != {**RUN_FLAGS, **given}:
        carried = ", ".join(f"--{k.replace('_', '-')} {v if not isinstance(v, list) else ' '.join(map(str, v))}"
                            for k, v in kept.items() if v != RUN_FLAGS[k])
        print(f"{run_dir}: --resume keeps the first run's {carried} (give a flag again to change it)",
              file=sys.stderr, flush=True)
    vit_cfg, init_state, init_from = None, None, None
    if state is not None and state["highlighter"].get("vit"):
        vit_cfg = ViTConfig.from_dict(state["highlighter"]["vit"])
        init_from = state["highlighter"].get("init_from")
    elif init:
        vit_cfg, init_state, cfg = _init_backbone(kind, cfg, init, explicit_arch or {})
        init_from = init
    try:
        dist = init_distributed(device)
    except ValueError as e:
        raise HighlighterError(str(e)) from None
    try:
        probe = None
        if flags["probe_every_minutes"] and kind == "dino" and dist.is_main:
            probe = make_probe(cfg, flags["probe_data"], flags["probe_sizes"])
            if flags["probe_knn"]:
                from highlighter.probe import KnnProbe

                probe.knn = KnnProbe(flags["probe_knn"], size=cfg.global_crop_size)
                print(probe.knn.describe(), file=sys.stderr, flush=True)
        policy = Policy(log_every=flags["log_every"], preview_every=flags["preview_every"],
                        probe_every_minutes=flags["probe_every_minutes"] if probe is not None else 0.0,
                        save_every_minutes=flags["save_every_minutes"], save_every_steps=flags["save_every_steps"],
                        max_steps=max_steps, max_minutes=max_minutes, keep_teachers=flags["keep_teachers"])
        return _run(kind, cfg, data, run_dir, dist, state, events=events, policy=policy,
                    preview_images=flags["preview_images"], probe=probe, backbone=(vit_cfg, init_state, init_from),
                    flags=flags)
    finally:
        shutdown(dist)


def _init_backbone(kind: str, cfg, path: str, explicit: dict):
    """--init: (the file's ViTConfig, its encoder weights, cfg with arch/patch set from the file)."""
    from dataclasses import replace

    from highlighter.core.formats import load_checkpoint

    ck = load_checkpoint(path)
    vit = ck.vit
    if vit.rope:
        raise HighlighterError(f"--init {path}: a DINOv3 (RoPE) backbone; training starts from DINO, DINOv2 and MAE "
                               "files only")
    names = {v: k for k, v in ARCH_DIMS.items()}
    arch = names.get(vit.embed_dim)
    want_arch, want_patch = explicit.get("arch"), explicit.get("patch_size")
    if want_arch and want_arch != arch:
        raise HighlighterError(f"--arch {want_arch} conflicts with --init {path}, which holds a {vit.describe()}")
    if want_patch and want_patch != vit.patch_size:
        raise HighlighterError(f"--patch-size {want_patch} conflicts with --init {path} (patch {vit.patch_size})")
    size = cfg.global_crop_size if kind == "dino" else cfg.input_size
    if size % vit.patch_size:
        raise HighlighterError(f"crop size {size} is not a multiple of {path}'s patch size {vit.patch_size}")
    if kind == "mae" and vit.pos_grid != size // vit.patch_size:
        raise HighlighterError(f"--init for MAE needs --input-size {vit.pos_grid * vit.patch_size} (the file's "
                               f"position grid is {vit.pos_grid}x{vit.pos_grid}; MAE does not interpolate it)")
    fields = dict(arch=arch or cfg.arch, patch_size=vit.patch_size)
    if kind == "dino":
        fields.update(depth=vit.depth, num_heads=vit.num_heads, mlp_ratio=vit.mlp_hidden / vit.embed_dim,
                      num_registers=vit.num_register_tokens)
    print(f"--init: starting from {ck.name} ({ck.source}): {vit.describe()}; the DINO head starts fresh"
          if kind == "dino" else f"--init: the encoder starts from {ck.name} ({vit.describe()}); the decoder "
          "starts fresh", file=sys.stderr, flush=True)
    return vit, ck.state, replace(cfg, **fields)


def make_probe(cfg, folders: list[str] | None, sizes: list[int] | None):
    """The objectness probe for a DINO run: the given folders (images/ + masks/), else the development eval
    sets; sizes: the global crop size and 1.5 times it (multiples of the patch), unless given."""
    from highlighter.probe import Probe, default_probe_folders

    folders = [Path(f) for f in folders] if folders else default_probe_folders()
    if not folders:
        raise HighlighterError("--probe-every-minutes needs --probe-data DIR (folders with images/ and masks/, "
                               "PNG, 255 = object)")
    p = cfg.patch_size
    sizes = sizes or [cfg.global_crop_size, max(p, round(cfg.global_crop_size * 1.5 / p) * p)]
    return Probe(folders, p, sizes, split="selection")


def _data(kind: str, cfg, data: list[str], dist: Dist, preview_images: list[str] | None):
    """-> (the training files, the preview photos, the batch sampler, a function that makes the loader: the run
    makes it once the task is built, in the order a run always had)."""
    files = find_training_images(data)
    previews, files = _preview_images(files, preview_images)
    bank = None
    if kind == "dino" and cfg.augment == "tensor":
        # decoded once onto the device; the crops are cut there, batch by batch (see train/packed.py)
        bank = ImageBank(files, round(cfg.global_crop_size * 1.125), dist.device)
        transform = TensorMultiCrop(cfg.global_crop_size, cfg.local_crop_size, cfg.global_crops_scale,
                                    cfg.local_crops_scale, cfg.local_crops_number, cfg.relative_blur)
        if bank.skipped and dist.is_main:
            print(f"warning: skipped {bank.skipped} unreadable file(s)", file=sys.stderr)
    elif kind == "dino":
        if cfg.augment != "pil":
            raise HighlighterError(f"--augment {cfg.augment}: choose pil or tensor")
        transform = DinoMultiCrop(cfg.global_crop_size, cfg.local_crop_size, cfg.global_crops_scale,
                                  cfg.local_crops_scale, cfg.local_crops_number, cfg.relative_blur)
    else:
        transform = MaeCrop(cfg.input_size, cfg.crop_scale, (cfg.input_size // cfg.patch_size) ** 2)
    batches = EpochBatches(len(bank) if bank is not None else len(files), cfg.batch_size, cfg.seed, dist.rank,
                           dist.world)
    if batches.steps_per_epoch == 0:
        raise HighlighterError(f"{len(files)} images are fewer than one global batch ({cfg.batch_size} x "
                               f"{dist.world} processes): lower --batch-size")

    def loader():
        if bank is None:
            return make_loader(TrainImages(files, transform, cfg.seed), batches, cfg.num_workers,
                               pin_memory=dist.device.type == "cuda")
        return _BankBatches(bank, batches, transform, cfg.seed)

    return files, previews, batches, loader


@dataclass
class RunHooks:
    """What the loop's moments do in a run (see loop.Hooks): the log, the progress bar, the checkpoint, the
    previews and the probe (with probe_best.safetensors). Only the main process writes."""

    kind: str
    cfg: DinoCfg | MaeCfg
    data: list[str]
    images: int  # training images
    task: DinoTask | MaeTask
    dist: Dist
    run_dir: Path
    run_log: RunLog
    progress: Progress
    previews: list
    probe_set: object | None = None  # a highlighter.probe.Probe, on the main process of a probing DINO run
    init_from: str | None = None
    best_probe: float = float("-inf")  # the best probe score so far, from the run's log on a resume
    flags: dict = field(default_factory=dict)  # the run flags (RUN_FLAGS), kept in the checkpoint for --resume
    stop: StopFlag | None = None
    bar: tqdm | None = None

    @property
    def main(self) -> bool:
        return self.dist.is_main

    def log(self, event: str, **fields) -> None:
        self.run_log(event, **fields)

    def say(self, message: str) -> None:
        if self.main:
            tqdm.write(message, file=sys.stderr)

    def stepped(self, epoch: int, metrics: dict, img_s: float) -> None:
        self.bar.update(1)
        self.bar.set_postfix_str(f"epoch {epoch + 1}/{self.cfg.epochs} loss {metrics['loss']:.4f} {img_s:.1f} img/s",
                                 refresh=False)

    def stop_signal(self) -> int | None:
        return self.stop.signal if self.stop is not None else None

    def save(self, epoch: int, in_epoch: int, reason: str) -> None:
        if not self.main:
            return
        task, niter, path = self.task, self.progress.steps_per_epoch, self.run_dir / RUN_CHECKPOINT
        meta = make_meta(self.kind, task.vit_cfg, task.decoder_cfg, train=self.cfg.to_dict(),
                         data=[str(d) for d in self.data], images=self.images, world_size=self.dist.world,
                         init_from=self.init_from)
        payload = {"highlighter": meta, **task.state_dict(), "epoch": epoch, "in_epoch": in_epoch,
                   "global_step": epoch * niter + in_epoch, "images_seen": self.progress.seen,
                   "elapsed_s": self.progress.elapsed(time.time()),
                   "run_flags": {k: list(v) if isinstance(v, tuple) else v for k, v in self.flags.items()},
                   "rng": {"torch": torch.get_rng_state(),
                           "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}}
        atomic_write(path, lambda tmp: torch.save(payload, tmp))
        self.log("checkpoint", step=epoch * niter + in_epoch, epoch=epoch, reason=reason, path=str(path))

    def preview(self, step: int, epoch: int) -> None:
        if not self.main or not self.previews:
            return
        task, device = self.task, self.dist.device
        if self.kind == "dino":
            pic = preview.dino_preview(task.attention_model(), self.previews, self.cfg.global_crop_size * 2, device)
        else:
            pic = preview.mae_preview(task.model_plain.eval(), self.previews, device, self.cfg.mask_ratio)
            task.model_plain.train()
        path = preview.write_preview(self.run_dir, pic, step, epoch)
        self.log("preview", step=step, epoch=epoch, path=str(path))

    def keep(self, step: int, epoch: int, percent: int) -> None:
        if not self.main or self.kind != "dino":
            return
        task, path = self.task, self.run_dir / f"teacher_{percent:03d}.safetensors"
        save_model(path, "dino", task.vit_cfg, task.backbone_state(), dtype=torch.float16,
                   source=f"the teacher at step {step} ({percent}% of the run)",
                   trained={"task": "dino", "weights": "teacher", "recipe": self.cfg.to_dict(),
                            "data": [str(d) for d in self.data], "steps": step, "images_seen": self.progress.seen})
        self.log("kept", step=step, epoch=epoch, percent=percent, images_seen=self.progress.seen, path=str(path))

    def probe(self, step: int, epoch: int) -> None:
        probe, task = self.probe_set, self.task
        if probe is None:
            return
        figures = probe(task.attention_model(), self.dist.device)
        # the student too: the teacher is an average of it, and the two part when the run goes wrong
        student = probe(AttentionViT(task.student_plain.backbone, task.vit_cfg), self.dist.device)
        figures["student"] = {k: v for k, v in student.items() if k not in ("flat", "seconds")}
        knn = getattr(probe, "knn", None)
        if knn is not None:
            figures["knn"] = knn(task.attention_model(), self.dist.device)
        train_mode(task)
        ratios = {name: v[str(probe.sizes[0])]["in_out"] for name, v in figures.items() if name != "flat"
                  and isinstance(v, dict) and str(probe.sizes[0]) in v}
        score = sum(ratios.values()) / max(len(ratios), 1)
        # keep the teacher of the best probe so far (mean in/out over the folders): a run's best moment is
        # not always its last, and checkpoint.pth only holds the last
        best = self.run_dir / RUN_BEST
        kept = score > self.best_probe
        seen = self.progress.seen
        if kept:
            self.best_probe = score
            save_model(best, "dino", task.vit_cfg, task.backbone_state(), dtype=torch.float16,
                       source=f"the teacher at step {step} (best objectness probe so far)",
                       trained={"task": "dino", "weights": "teacher", "recipe": self.cfg.to_dict(),
                                "data": [str(d) for d in self.data], "steps": step, "images_seen": seen,
                                "probe_in_out": ratios})
        self.log("probe", step=step, epoch=epoch, images_seen=seen, source=probe.describe(), score=score,
                 kept=str(best) if kept else None, **figures)
        heads = {name: v[str(probe.sizes[0])].get("heads_in_out", []) for name, v in figures.items()
                 if name in ratios}
        tqdm.write("probe at step {}: in/out {} (heads {}){}{}".format(
            step, ", ".join(f"{n} {r:.3f}" for n, r in ratios.items()),
            "; ".join(f"{n} " + " ".join(f"{h:.2f}" for h in hs) for n, hs in heads.items()),
            f"; k-NN {100 * figures['knn']['top1']:.2f}% (pixels {100 * figures['knn']['pixels_top1']:.2f}%)"
            if "knn" in figures else "", f"; best so far, kept in {RUN_BEST}" if kept else ""), file=sys.stderr)


def _run(kind, cfg, data, run_dir: Path, dist: Dist, state: dict | None, *, events: bool, policy: Policy,
         preview_images: list[str] | None, probe=None, backbone=(None, None, None), flags: dict | None = None) -> int:
    """The run once its configuration is settled (main_pretrain.py's main): data, task, the resumed state, then
    the epochs (loop.train_one_epoch), then the run's last preview, probe and word."""
    vit_cfg, init_state, init_from = backbone
    files, previews, batches, make_batches = _data(kind, cfg, data, dist, preview_images)
    niter = batches.steps_per_epoch
    task = (DinoTask if kind == "dino" else MaeTask)(cfg, dist, niter, vit_cfg=vit_cfg, init_state=init_state)
    loader = make_batches()
    main = dist.is_main
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(run_dir, events, main)
    start_epoch, start_in_epoch = 0, 0
    progress = Progress(step=0, total_steps=cfg.epochs * niter, steps_per_epoch=niter,
                        world=dist.world)
    if state is not None:
        task.load_state_dict(state)
        start_epoch, start_in_epoch = state["epoch"], state["in_epoch"]
        progress.seen, progress.elapsed_before = state.get("images_seen", 0), state.get("elapsed_s", 0.0)
        torch.set_rng_state(state["rng"]["torch"])
        if torch.cuda.is_available() and state["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        if main:
            before = log.truncate_after(start_epoch * niter + start_in_epoch)
    progress.step = start_epoch * niter + start_in_epoch
    best = max((e.get("score", float("-inf")) for e in logged(run_dir, "probe")), default=float("-inf"))
    hooks = RunHooks(kind, cfg, data, len(files), task, dist, run_dir, log, progress, previews, probe_set=probe,
                     init_from=init_from, best_probe=best, flags=flags or {})
    progress.started = time.time()
    if main:
        if state is not None:  # the trace of how the last process ended, and what the resume lost
            log("resumed", step=progress.step, **before, **_lost(before, progress.step))
        if state is not None and state.get("extended_from"):
            log("extended", step=progress.step, epochs_before=state["extended_from"], epochs=cfg.epochs,
                message=f"extended from {state['extended_from']} to {cfg.epochs} epochs; the learning-rate, "
                        "weight-decay, momentum and teacher-temperature schedules are recomputed over the new length")
        log("start", kind=kind, resumed=state is not None, step=progress.step, total_steps=progress.total_steps,
            epochs=cfg.epochs, steps_per_epoch=niter, images=len(files), world_size=dist.world,
            distributed=dist.backend, device=str(dist.device), precision=task.precision_name, config=cfg.to_dict())
        print(f"{kind}: {len(files)} images, {task.vit_cfg.describe()}, {cfg.epochs} epochs x {niter} steps, "
              f"batch {cfg.batch_size} x {dist.world}, {dist.device} {task.precision_name}"
              + (f", resumed at epoch {start_epoch} step {start_in_epoch}" if state is not None else ""),
              file=sys.stderr, flush=True)
    progress.last_save = progress.rate_t = time.time()
    if probe is not None:
        tqdm.write(probe.describe(), file=sys.stderr)
        hooks.probe(progress.step, start_epoch)
    progress.last_probe = time.time()
    epoch = start_epoch
    with StopFlag() as stop:
        hooks.stop = stop
        hooks.bar = tqdm(total=progress.total_steps, initial=progress.step, unit="step", disable=not main or None,
                         dynamic_ncols=True)
        try:
            for epoch in range(start_epoch, cfg.epochs):
                first = start_in_epoch if epoch == start_epoch else 0
                batches.set_epoch(epoch, first)
                try:
                    end = train_one_epoch(task, loader, hooks, policy, progress, epoch, first)
                except NonFiniteLoss as e:
                    raise HighlighterError(f"{e}: the run stopped; {_after_bad_loss(run_dir)}") from None
                if end["finished"]:
                    hooks.save(epoch + 1, 0, "epoch")
                    progress.last_save = time.time()
                    if end["unreadable"]:
                        hooks.say(f"epoch {epoch + 1}: skipped {end['unreadable']} unreadable file(s)")
                    log("epoch_end", step=progress.step, epoch=epoch, unreadable=end["unreadable"])
                if progress.stopping:
                    break
        finally:
            hooks.bar.close()
    if main:
        _finish(kind, hooks, policy, min(epoch, cfg.epochs - 1))
    return 0


def _lost(before: dict, step: int) -> dict:
    """The 'resumed' event's steps_lost and message: the steps done after the checkpoint, done again now."""
    done = before["steps_done_logged"]
    lost = max(0, done - step) if isinstance(done, int) and before["previous_end"] == "killed" else 0
    if before["previous_end"] != "killed":
        message = f"resumed at step {step}; the previous process ended in order ({before['previous_end']})"
    elif lost:
        message = (f"resumed at step {step}, the last checkpoint: the previous process was killed or crashed with "
                   f"{done} steps logged as done; {lost} step(s) after the checkpoint were lost and are run again")
    else:
        message = f"resumed at step {step}: the previous process was killed or crashed at its last checkpoint"
    return {"steps_lost": lost, "message": message}


def _after_bad_loss(run_dir: Path) -> str:
    if (run_dir / RUN_CHECKPOINT).exists():
        return f"{run_dir / RUN_CHECKPOINT} keeps the last good state (lower --lr or raise --warmup-epochs, then " \
               "--resume)"
    # e.g. the very first step: claim no checkpoint that is not there
    return "no checkpoint had been saved yet (lower --lr or raise --warmup-epochs, then start it again)"


def _finish(kind: str, hooks: RunHooks, policy: Policy, epoch: int) -> None:
    """The run's last preview and probe, and its last event: stopped (a signal), paused (a limit) or done."""
    progress, log, checkpoint = hooks.progress, hooks.log, hooks.run_dir / RUN_CHECKPOINT
    step = progress.step
    hooks.preview(step, epoch)
    if policy.probe_at_end(time.time() - progress.last_probe):
        hooks.probe(step, epoch)
    if progress.stopped_by is not None:
        name = signal.Signals(progress.stopped_by).name
        log("stopped", step=step, signal=name)
        print(f"stopped by {name}: checkpoint saved in {checkpoint}; continue with --resume", file=sys.stderr,
              flush=True)
    elif progress.limit and step < progress.total_steps:
        log("paused", step=step, reason=progress.limit, images_seen=progress.seen,
            elapsed_s=round(progress.elapsed(time.time()), 1))
        print(f"stopped at step {step} of {progress.total_steps} ({progress.limit.replace('_', '-')}): checkpoint "
              f"saved in {checkpoint}; continue with --resume", file=sys.stderr, flush=True)
    else:
        log("done", step=step, images_seen=progress.seen, elapsed_s=round(progress.elapsed(time.time()), 1))
        print(f"done: {checkpoint} (use it with `highlighter {'attention' if kind == 'dino' else 'mae'} "
              "--checkpoint`)", file=sys.stderr, flush=True)


class _BankBatches:
    """The loader of the tensor path: index batches of the sampler, cut into crops on the device. Each step's
    randomness comes from a generator seeded by (seed, epoch, batch), so a resumed run repeats it."""

    def __init__(self, bank: ImageBank, batches: EpochBatches, transform: TensorMultiCrop, seed: int):
        self.bank, self.batches, self.transform, self.seed = bank, batches, transform, seed

    def __iter__(self):
        for b, keys in enumerate(self.batches, start=self.batches.start):
            epoch = keys[0][0]
            idx = torch.tensor([i for _, i in keys], device=self.bank.images.device)
            gen = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 1_000_003 + b)
            yield {"data": self.transform(self.bank.images[idx], gen), "n": len(keys), "errors": []}
