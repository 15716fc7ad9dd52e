"""The training loop, shaped like MAE's engine_pretrain.py: ``train_one_epoch`` runs the steps of one epoch, and a
``Policy`` decides, step by step, when to log, preview, probe, checkpoint and stop.

What those moments do (write the log, draw the progress bar, save, preview, probe) is the run's business: the loop
calls a ``Hooks`` object that pretrain.py, the wiring, provides. One step of each recipe is in steps.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from highlighter.errors import HighlighterError
from highlighter.train.steps import NonFiniteLoss


@dataclass(frozen=True)
class Policy:
    """The moments of a run, from the flags of `highlighter train`. Each method is one decision taken from numbers
    the loop already holds (steps, seconds), so it can be tested without training anything."""

    log_every: int = 10  # a 'step' event (with the monitoring figures, which cost a little) every N steps
    preview_every: int = 200  # previews every N steps; 0: only at the end of the run
    probe_every_minutes: float = 0.0  # the objectness probe every M minutes; 0: no probe
    save_every_minutes: float = 5.0  # a checkpoint every M minutes, besides every epoch's end
    save_every_steps: int = 0  # also a checkpoint every N steps; 0: off
    max_steps: int = 0  # stop (with a checkpoint) after N steps of this process; 0: no limit
    max_minutes: float = 0.0  # stop (with a checkpoint) after M minutes of this process; 0: no limit
    keep_teachers: int = 0  # keep the teacher at each K-th of the run (e.g. 4: at 25, 50, 75 and 100%); 0: off

    def __post_init__(self):
        """Numbers that would crash the run later (a division by zero at step 0) or mean nothing are refused
        now, named by their flag."""
        if self.log_every < 1:
            raise HighlighterError(f"--log-every {self.log_every}: give a number of steps, 1 or more")
        for flag, value in (("--preview-every", self.preview_every), ("--probe-every-minutes",
                            self.probe_every_minutes), ("--save-every-minutes", self.save_every_minutes),
                            ("--save-every-steps", self.save_every_steps), ("--max-steps", self.max_steps),
                            ("--max-minutes", self.max_minutes), ("--keep-teachers", self.keep_teachers)):
            if value < 0:
                raise HighlighterError(f"{flag} {value:g}: give 0 (off) or more")

    def log_step(self, it: int) -> bool:
        """Step ``it`` (0-based, counted over the whole run) is logged and monitored."""
        return it % self.log_every == 0

    def preview_at(self, step: int) -> bool:
        """Previews once ``step`` steps are done."""
        return bool(self.preview_every) and step % self.preview_every == 0

    def probe_now(self, since_probe_s: float) -> bool:
        """A probe, ``since_probe_s`` seconds after the last one."""
        return bool(self.probe_every_minutes) and since_probe_s > self.probe_every_minutes * 60

    def probe_at_end(self, since_probe_s: float) -> bool:
        """A last probe when the run ends, unless the previous one is at most a minute old."""
        return bool(self.probe_every_minutes) and since_probe_s > 60

    def save_at(self, step: int, since_save_s: float, epoch_done: bool) -> bool:
        """A periodic checkpoint once ``step`` steps are done; never at an epoch's last step (the end of an
        epoch saves anyway)."""
        if epoch_done:
            return False
        return bool(self.save_every_steps and step % self.save_every_steps == 0) or \
            since_save_s > self.save_every_minutes * 60

    def keep_at(self, step: int, total_steps: int) -> int:
        """The percentage of the run at which the teacher is kept once ``step`` steps are done, else 0."""
        for i in range(self.keep_teachers, 0, -1):  # the latest when several land on one step (a short run)
            if step == max(1, round(total_steps * i / self.keep_teachers)):
                return round(100 * i / self.keep_teachers)
        return 0

    def limit(self, steps_done: int, running_s: float) -> str:
        """'max_steps' or 'max_minutes' once this process has reached one of them, else ''."""
        if self.max_steps and steps_done >= self.max_steps:
            return "max_steps"
        if self.max_minutes and running_s > self.max_minutes * 60:
            return "max_minutes"
        return ""


@dataclass
class Progress:
    """Where a run stands; the loop moves it on, step by step and epoch by epoch."""

    step: int  # steps done over the whole run: the global index of the next one
    total_steps: int
    steps_per_epoch: int
    world: int = 1  # processes; each step takes a batch in each of them
    seen: int = 0  # images trained on, all processes, since the run began
    elapsed_before: float = 0.0  # seconds trained before this process (a resumed run)
    started: float = 0.0  # clock when this process began (its --max-minutes count from here)
    last_save: float = 0.0  # clock at the last checkpoint
    last_probe: float = 0.0  # clock at the end of the last probe
    steps_done: int = 0  # steps of this process (--max-steps)
    rate_t: float = 0.0  # clock and images since the last logged step: the img/s figure
    rate_n: int = 0
    stopped_by: int | None = None  # the signal that stopped the run
    limit: str = ""  # or the limit that paused it ('max_steps', 'max_minutes')

    @property
    def stopping(self) -> bool:
        return self.stopped_by is not None or bool(self.limit)

    def elapsed(self, now: float) -> float:
        """Seconds trained over the whole run."""
        return self.elapsed_before + now - self.started


class Hooks(Protocol):
    """What the loop calls at the moments the policy picks. In a distributed run only the main process writes."""

    def log(self, event: str, **fields) -> None:
        """One event of the run's log (log.jsonl)."""

    def say(self, message: str) -> None:
        """One line for the user (stderr, above the progress bar)."""

    def stepped(self, epoch: int, metrics: dict, img_s: float) -> None:
        """A step is done (the progress bar)."""

    def save(self, epoch: int, in_epoch: int, reason: str) -> None:
        """A checkpoint that resumes at step ``in_epoch`` of ``epoch``."""

    def preview(self, step: int, epoch: int) -> None: ...

    def probe(self, step: int, epoch: int) -> None: ...

    def keep(self, step: int, epoch: int, percent: int) -> None:
        """Keep the teacher as it is at ``percent`` of the run (a file of its own)."""

    def stop_signal(self) -> int | None:
        """The signal (SIGINT, SIGTERM) that asks the run to save and leave, if one came."""


def train_mode(task) -> None:
    """The trained model back in training mode (drop path on), e.g. after a preview or a probe."""
    (task.student if task.kind == "dino" else task.model).train()


def train_one_epoch(task, batches: Iterable[dict], hooks: Hooks, policy: Policy, progress: Progress, epoch: int,
                    first: int = 0, clock: Callable[[], float] = time.time) -> dict:
    """The steps of ``epoch`` from its step ``first`` (a resumed run starts inside an epoch). ``batches`` yields
    the loader's dicts ({"data", "n", "errors"}). On a signal or a limit it saves (unless at the epoch's last step)
    and returns early with ``progress.stopping`` set. -> {"finished": whether the epoch's last step is done,
    "unreadable": how many different files could not be read}. A NaN or infinite loss is logged and raised
    (NonFiniteLoss) before the step changes anything."""
    niter = progress.steps_per_epoch
    unreadable: dict[str, None] = {}
    train_mode(task)
    in_epoch = first - 1
    for in_epoch, batch in enumerate(batches, start=first):
        for msg in batch["errors"]:
            if msg not in unreadable:
                hooks.say(f"warning: skipped {msg}")
            unreadable[msg] = None
        it = epoch * niter + in_epoch
        if batch["n"] == 0:
            continue
        monitor = policy.log_step(it)
        try:
            metrics = task.step(batch["data"], it, epoch, in_epoch, monitor=monitor)
        except NonFiniteLoss as e:
            hooks.log("error", step=it, epoch=epoch, message=str(e))
            raise
        images = batch["n"] * progress.world
        progress.seen += images
        progress.rate_n += images
        progress.steps_done += 1
        progress.step = it + 1
        now = clock()
        img_s = progress.rate_n / max(now - progress.rate_t, 1e-9)
        eta = (progress.total_steps - progress.step) * images / max(img_s, 1e-9)
        hooks.stepped(epoch, metrics, img_s)
        if monitor:
            hooks.log("step", step=it, epoch=epoch, **metrics, img_s=round(img_s, 2), eta_s=round(eta, 1),
                      images_seen=progress.seen)
            progress.rate_t, progress.rate_n = now, 0
        if policy.preview_at(progress.step):
            hooks.preview(progress.step, epoch)
        if policy.probe_now(clock() - progress.last_probe):
            hooks.probe(progress.step, epoch)
            progress.last_probe = clock()
        percent = policy.keep_at(progress.step, progress.total_steps)
        if percent:
            hooks.keep(progress.step, epoch, percent)
        done_epoch = in_epoch + 1 == niter
        if policy.save_at(progress.step, now - progress.last_save, done_epoch):
            hooks.save(epoch, in_epoch + 1, "periodic")
            progress.last_save = clock()
        progress.limit = policy.limit(progress.steps_done, now - progress.started)
        progress.stopped_by = hooks.stop_signal()
        if progress.stopping:
            if not done_epoch:
                hooks.save(epoch, in_epoch + 1, "signal" if progress.stopped_by is not None else progress.limit)
            break
    return {"finished": in_epoch + 1 == niter, "unreadable": len(unreadable)}
