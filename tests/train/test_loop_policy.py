"""The loop's decisions (train/loop.py), without training: the Policy's methods on numbers, and train_one_epoch
driven by a fake task, fake hooks and a fake clock."""

import signal

import pytest

from highlighter.errors import HighlighterError
from highlighter.train.loop import Policy, Progress, train_one_epoch
from highlighter.train.steps import NonFiniteLoss


def test_log_every_n_steps_counts_from_step_zero():
    p = Policy(log_every=10)
    assert [it for it in range(35) if p.log_step(it)] == [0, 10, 20, 30]
    assert all(Policy(log_every=1).log_step(it) for it in range(5))


@pytest.mark.parametrize("kw,flag", [({"log_every": 0}, "--log-every 0"),
                                     ({"save_every_steps": -1}, "--save-every-steps"),
                                     ({"max_minutes": -2.5}, "--max-minutes -2.5")])
def test_numbers_that_would_crash_the_run_are_refused_naming_their_flag(kw, flag):
    from highlighter.errors import HighlighterError

    with pytest.raises(HighlighterError, match=flag):
        Policy(**kw)


def test_previews_every_n_steps_done_or_only_at_the_end():
    p = Policy(preview_every=6)
    assert [s for s in range(1, 19) if p.preview_at(s)] == [6, 12, 18]
    assert not any(Policy(preview_every=0).preview_at(s) for s in range(1, 100))


def test_probe_every_m_minutes_and_once_more_at_the_end():
    p = Policy(probe_every_minutes=2)
    assert not p.probe_now(120) and p.probe_now(120.5)  # strictly more than M minutes since the last
    assert not p.probe_at_end(60) and p.probe_at_end(61)  # unless the last one is at most a minute old
    off = Policy(probe_every_minutes=0)
    assert not off.probe_now(1e9) and not off.probe_at_end(1e9)


def test_periodic_checkpoints_by_steps_or_minutes_but_never_at_an_epochs_end():
    by_steps = Policy(save_every_steps=3, save_every_minutes=5)
    assert [s for s in range(1, 10) if by_steps.save_at(s, since_save_s=1, epoch_done=False)] == [3, 6, 9]
    assert not by_steps.save_at(6, since_save_s=1, epoch_done=True)  # the epoch's end saves anyway
    by_time = Policy(save_every_minutes=5)
    assert not by_time.save_at(7, since_save_s=300, epoch_done=False)
    assert by_time.save_at(7, since_save_s=301, epoch_done=False)
    assert not by_time.save_at(7, since_save_s=1e9, epoch_done=True)


def test_limits_max_steps_first_then_max_minutes():
    assert Policy().limit(10**9, 1e9) == ""
    p = Policy(max_steps=5, max_minutes=1)
    assert p.limit(4, 60) == "" and p.limit(5, 0) == "max_steps" and p.limit(4, 61) == "max_minutes"
    assert p.limit(5, 61) == "max_steps"


def test_teachers_kept_at_each_kth_of_the_run():
    p = Policy(keep_teachers=4)
    assert [(s, p.keep_at(s, 23450)) for s in range(23451) if p.keep_at(s, 23450)] == \
        [(5862, 25), (11725, 50), (17588, 75), (23450, 100)]
    assert Policy().keep_at(100, 100) == 0 and Policy(keep_teachers=2).keep_at(1, 1) == 100  # a one-step run
    with pytest.raises(HighlighterError, match="--keep-teachers"):
        Policy(keep_teachers=-1)


class FakeTask:
    kind = "mae"

    def __init__(self, bad_at=None):
        self.model = self
        self.calls, self.bad_at, self.training = [], bad_at, False

    def train(self):
        self.training = True

    def step(self, data, it, epoch, in_epoch, monitor=False):
        if it == self.bad_at:
            raise NonFiniteLoss(f"the loss is nan at epoch {epoch}, step {it}")
        self.calls.append((it, in_epoch, monitor))
        return {"loss": 1.0 / (it + 1)}


class FakeHooks:
    def __init__(self, stop_at_step=None, progress=None):
        self.events, self.said, self.stop_at_step, self.progress = [], [], stop_at_step, progress

    def log(self, event, **fields):
        self.events.append((event, fields))

    def say(self, message):
        self.said.append(message)

    def stepped(self, epoch, metrics, img_s):
        self.events.append(("stepped", {"epoch": epoch}))

    def save(self, epoch, in_epoch, reason):
        self.events.append(("save", {"epoch": epoch, "in_epoch": in_epoch, "reason": reason}))

    def preview(self, step, epoch):
        self.events.append(("preview", {"step": step}))

    def probe(self, step, epoch):
        self.events.append(("probe", {"step": step}))

    def keep(self, step, epoch, percent):
        self.events.append(("keep", {"step": step, "percent": percent}))

    def stop_signal(self):
        if self.stop_at_step is not None and self.progress.step >= self.stop_at_step:
            return signal.SIGTERM
        return None

    def of(self, kind):
        return [f for e, f in self.events if e == kind]


class Clock:
    """Ten seconds a call."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 10.0
        return self.t


def batches(n, errors=None):
    return [{"data": None, "n": 4, "errors": (errors or {}).get(k, [])} for k in range(n)]


def progress(niter=6, epochs=3, step=0):
    return Progress(step=step, total_steps=niter * epochs, steps_per_epoch=niter)


def test_an_epoch_logs_previews_saves_and_counts_as_the_policy_says():
    task, hooks, prog = FakeTask(), FakeHooks(), progress()
    policy = Policy(log_every=2, preview_every=3, save_every_steps=4, save_every_minutes=1e9)
    end = train_one_epoch(task, batches(6), hooks, policy, prog, epoch=1, clock=Clock())
    assert end == {"finished": True, "unreadable": 0} and task.training
    assert [c[0] for c in task.calls] == list(range(6, 12))  # the global step index of epoch 1
    assert [c[2] for c in task.calls] == [it % 2 == 0 for it in range(6, 12)]  # monitored when logged
    assert [f["step"] for f in hooks.of("step")] == [6, 8, 10]
    assert [f["images_seen"] for f in hooks.of("step")] == [4, 12, 20]
    assert [f["step"] for f in hooks.of("preview")] == [9, 12]  # steps done: 7..12
    assert hooks.of("save") == [{"epoch": 1, "in_epoch": 2, "reason": "periodic"}]  # step 8; 12 ends the epoch
    assert prog.step == 12 and prog.steps_done == 6 and prog.seen == 24 and not prog.stopping
    assert not hooks.of("probe")  # probe_every_minutes 0: none
    # kept teachers: the loop asks the policy after every step (18 steps in all: 25% is step 4.5 -> 4, 50% 9)
    hooks = FakeHooks()
    train_one_epoch(FakeTask(), batches(6), hooks, Policy(keep_teachers=4), progress(), epoch=1, clock=Clock())
    assert hooks.of("keep") == [{"step": 9, "percent": 50}]


def test_a_resumed_epoch_starts_inside_it_and_a_limit_saves_where_it_stops():
    task, hooks, prog = FakeTask(), FakeHooks(), progress(step=8)
    end = train_one_epoch(task, batches(4), hooks, Policy(max_steps=2, save_every_minutes=1e9), prog, epoch=1,
                          first=2, clock=Clock())
    assert [(c[0], c[1]) for c in task.calls] == [(8, 2), (9, 3)]
    assert end["finished"] is False and prog.limit == "max_steps" and prog.stopped_by is None
    assert hooks.of("save") == [{"epoch": 1, "in_epoch": 4, "reason": "max_steps"}]


def test_a_limit_at_an_epochs_last_step_leaves_the_save_to_the_epochs_end():
    task, hooks, prog = FakeTask(), FakeHooks(), progress()
    end = train_one_epoch(task, batches(6), hooks, Policy(max_steps=6, save_every_minutes=1e9), prog, epoch=0,
                          clock=Clock())
    assert end["finished"] and prog.limit == "max_steps" and not hooks.of("save")


def test_a_signal_stops_after_the_step_with_a_checkpoint():
    prog = progress()
    hooks = FakeHooks(stop_at_step=3, progress=prog)
    end = train_one_epoch(FakeTask(), batches(6), hooks, Policy(save_every_minutes=1e9), prog, epoch=0,
                          clock=Clock())
    assert not end["finished"] and prog.stopped_by == signal.SIGTERM and prog.stopping
    assert hooks.of("save") == [{"epoch": 0, "in_epoch": 3, "reason": "signal"}]


def test_minutes_decide_checkpoints_probes_and_the_max_minutes_pause():
    clock = Clock()  # every call advances 10 s; the loop reads it a few times a step
    task, hooks, prog = FakeTask(), FakeHooks(), progress(niter=100, epochs=1)
    policy = Policy(probe_every_minutes=1, save_every_minutes=1, max_minutes=3)
    train_one_epoch(task, batches(100), hooks, policy, prog, epoch=0, clock=clock)
    assert prog.limit == "max_minutes" and 3 <= prog.steps_done < 100
    assert hooks.of("save")[-1]["reason"] == "max_minutes"
    assert [f["reason"] for f in hooks.of("save")[:-1]] == ["periodic"] * (len(hooks.of("save")) - 1) != []
    assert hooks.of("probe")


def test_unreadable_files_are_said_once_and_counted_and_an_empty_batch_is_no_step():
    task, hooks, prog = FakeTask(), FakeHooks(), progress()
    data = batches(6, {0: ["a.jpg: broken"], 3: ["a.jpg: broken", "b.png: empty"]})
    data[5]["n"] = 0  # every photo of the batch was unreadable
    end = train_one_epoch(task, data, hooks, Policy(save_every_minutes=1e9), prog, epoch=0, clock=Clock())
    assert hooks.said == ["warning: skipped a.jpg: broken", "warning: skipped b.png: empty"]
    assert end == {"finished": True, "unreadable": 2} and prog.steps_done == 5 and prog.step == 5


def test_a_non_finite_loss_is_logged_and_raised_before_the_step_counts():
    task, hooks, prog = FakeTask(bad_at=2), FakeHooks(), progress()
    with pytest.raises(NonFiniteLoss):
        train_one_epoch(task, batches(6), hooks, Policy(log_every=1), prog, epoch=0, clock=Clock())
    assert hooks.of("error") == [{"step": 2, "epoch": 0, "message": "the loss is nan at epoch 0, step 2"}]
    assert [f["step"] for f in hooks.of("step")] == [0, 1] and prog.step == 2
