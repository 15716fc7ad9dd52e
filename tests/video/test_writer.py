"""The writer behind `highlighter video` and the Live tab's Record and Snapshot: files written in order on its
own thread, RGB turned into BGR only there, a full queue dropping instead of waiting, errors kept."""

import threading
import time

import cv2
import numpy as np

from highlighter.video.writer import Recorder, Writer, snapshot_paths, write_snapshot


def test_snapshot_files_hold_the_frame_its_mask_and_the_overlay(tmp_path):
    frame = np.zeros((32, 48, 3), np.uint8)
    frame[..., 0] = 200  # red, in RGB
    mask = np.zeros((2, 3), bool)
    mask[0, 0] = True
    overlay = frame.copy()
    writer = Writer()
    paths = snapshot_paths(tmp_path / "snaps", 7)
    writer.submit(write_snapshot, paths, frame, mask, overlay)
    writer.close()
    assert [p.name.split("_")[-1] for p in paths] == ["frame.png", "mask.png", "overlay.png"]
    back = cv2.imread(str(paths[0]))  # BGR on disk
    assert back[0, 0].tolist() == [0, 0, 200]
    m = cv2.imread(str(paths[1]), cv2.IMREAD_GRAYSCALE)
    assert m.shape == (32, 48) and m[:16, :16].min() == 255 and m[16:].max() == 0 and m[:, 16:].max() == 0


def test_recorder_writes_every_frame_at_one_size(tmp_path):
    rec = Recorder(tmp_path / "r.mp4", fps=10).open((64, 48))
    for i in range(6):
        rec.write(np.full((48 if i % 2 else 96, 64 if i % 2 else 128, 3), 40 * i, np.uint8))  # resized to 64x48
    rec.close()
    cap = cv2.VideoCapture(str(tmp_path / "r.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6 and rec.frames == 6
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (64, 48)


def test_writes_run_in_order_off_the_callers_thread():
    writer, order, threads = Writer(), [], set()

    def job(i):
        time.sleep(0.01)
        order.append(i)
        threads.add(threading.current_thread().name)

    t = time.perf_counter()
    for i in range(5):
        writer.submit(job, i)
    assert time.perf_counter() - t < 0.04  # submitting did not wait for the writes
    writer.close()
    assert order == [0, 1, 2, 3, 4] and threads == {"writer"}


def test_a_full_queue_drops_without_waiting_and_errors_are_kept():
    gate, messages = threading.Event(), []
    writer = Writer(max_pending=2, on_error=messages.append)
    writer.submit(gate.wait)  # the thread is busy with this one
    time.sleep(0.05)
    assert writer.submit(lambda: None, block=False) and writer.submit(lambda: None, block=False)
    t = time.perf_counter()
    assert not writer.submit(lambda: None, block=False)  # the queue is full: dropped at once
    assert time.perf_counter() - t < 0.05 and writer.dropped == 1
    gate.set()
    writer.submit(lambda: 1 / 0)
    writer.close()
    assert writer.error == "ZeroDivisionError: division by zero" and messages == [writer.error]
