"""Frame sources and the per-frame pipeline (numpy / OpenCV). No Qt."""
