"""A run's log and its stop signal: RUNDIR/log.jsonl (one JSON event per line; cut back to the last checkpoint on
resume) and Ctrl-C / SIGTERM turned into a flag the loop reads between steps (the run saves, then stops)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from highlighter.fileio import atomic_write


class RunLog:
    """RUNDIR/log.jsonl (one JSON event per line) and, with --events, the same lines on stdout."""

    def __init__(self, run_dir: Path, events: bool, enabled: bool):
        self.path, self.events, self.enabled = run_dir / "log.jsonl", events, enabled

    def truncate_after(self, step: int) -> dict:
        """On resume: drop the events of steps that the checkpoint does not contain (the resumed run logs those
        steps again). Returns what the log said before: ``previous_end``, the last event of the process that ran
        before ('stopped', 'paused' or 'done' when it ended in order, else 'killed': it ended without a word),
        ``steps_done_logged`` (the steps done by its last event) and ``events_dropped``, for the 'resumed' event."""
        if not self.path.exists():
            return {"previous_end": "killed", "steps_done_logged": None, "events_dropped": 0}
        keep, dropped, last = [], 0, None
        for line in self.path.read_text().splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash
            last = ev
            if ev.get("step", -1) < step or (ev.get("event") != "step" and ev.get("step", -1) <= step):
                keep.append(line)
            else:
                dropped += 1
        atomic_write(self.path, lambda tmp: Path(tmp).write_text("".join(k + "\n" for k in keep)))
        last = last or {}
        done = last.get("step")
        if isinstance(done, int) and last.get("event") == "step":
            done += 1  # a 'step' event names the step (0-based) it finished; the others, the steps done
        return {"previous_end": last.get("event") if last.get("event") in ("stopped", "paused", "done") else "killed",
                "steps_done_logged": done if isinstance(done, int) else None, "events_dropped": dropped}

    def __call__(self, event: str, **fields) -> None:
        if not self.enabled:
            return
        line = json.dumps({"event": event, "time": round(time.time(), 3), **fields})
        with open(self.path, "a") as f:
            f.write(line + "\n")
        if self.events:
            print(line, flush=True)


def logged(run_dir: Path, event: str) -> list[dict]:
    path = run_dir / "log.jsonl"
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == event:
            out.append(ev)
    return out


class StopFlag:
    """SIGINT / SIGTERM ask the loop to save a checkpoint and leave at the next step."""

    def __init__(self):
        self.signal: int | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        if self.signal is not None and signum == signal.SIGINT:  # a second Ctrl-C: leave now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
