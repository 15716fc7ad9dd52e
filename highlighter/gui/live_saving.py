"""The Live tab's snapshots and recordings, written on the writer's thread. A mixin of ``LiveTab``."""

from __future__ import annotations

import time
from pathlib import Path

from highlighter.video.writer import Recorder, snapshot_paths, write_snapshot

RECORD_FPS = 25.0  # the most a recording is written at; a slower stream is written at its own rate,
RECORD_MIN_FPS = 5.0  # but not below this (a frame is then repeated to keep time): players handle it


class SavingMixin:
    # ------------------------------------------------------------------ saving, on the writer's thread
    def _folder(self) -> Path:
        return Path(self.main.settings_value("snapshot_dir", str(Path.home() / "highlighter-snapshots"), str))

    def snapshot(self) -> list[Path]:
        """Save the frame, the mask and the overlay as PNGs; returns the paths they are being written to."""
        res = self.latest
        if res is None:
            return []
        paths = snapshot_paths(self._folder(), res.index)
        if not self.writer.submit(write_snapshot, paths, res.frame, res.shown_mask, res.overlay, block=False,
                                  on_done=lambda p: self.relay.status.emit(
                                      f"saved {p[2].name} and its frame and mask in {p[2].parent}")):
            self.status.setText("still writing the previous files; snapshot skipped")
            return []
        return paths

    def _record(self, on: bool) -> None:
        """A toggle: Record / Stop recording. The file is written at the stream's measured rate, and each frame
        is placed by the time it was shown (repeated or skipped to keep time), so it plays at real speed."""
        if on and self.latest is not None:
            path = self._folder() / (time.strftime("%Y%m%d-%H%M%S") + "_overlay.mp4")
            h, w = self.latest.overlay.shape[:2]
            dt = time.perf_counter() - self.t_start
            measured = self.frames_shown / dt if dt > 0 and self.frames_shown else RECORD_FPS
            self.recorder = Recorder(path, min(RECORD_FPS, max(RECORD_MIN_FPS, round(measured))), (w, h))
            self.record_t0 = time.perf_counter()  # the file's time 0: a frame shown t s later goes at t
            self.writer.submit(self.recorder.open)
            self.record.setText("Stop recording")
            self.status.setText(f"recording to {path} at {self.recorder.fps:g} fps")
        elif on:
            self.record.setChecked(False)
            self.status.setText("start the stream before recording")
        elif self.recorder is not None:
            recorder, self.recorder = self.recorder, None
            if self.latest is not None:  # the file lasts until Stop was pressed: its last slot ends then
                t_end = time.perf_counter() - self.record_t0 - 1.0 / recorder.fps
                self.writer.submit(recorder.write, self.latest.overlay, max(0.0, t_end))
            self.record.setText("Record")
            self.status.setText(f"finishing {recorder.path}…")
            self.writer.submit(recorder.close, on_done=lambda _: self.relay.status.emit(
                f"recording saved: {recorder.path} ({recorder.frames} frames, {recorder.duration:.1f} s at "
                f"{recorder.fps:g} fps)"))
        else:
            self.record.setText("Record")
