"""``highlighter gui``: open the desktop app."""

from __future__ import annotations

from highlighter.errors import HighlighterError


def launched_at() -> float:
    """time.monotonic() at the moment this process started (Linux: from /proc; elsewhere: now)."""
    import os
    import time

    now = time.monotonic()
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, after the command's name
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return now - max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return now


def run(args) -> int:
    import os
    import sys

    launched = launched_at()
    if args.quit_after is not None and args.quit_after < 1:
        raise HighlighterError(f"--quit-after {args.quit_after}: give a number of frames, 1 or more")

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                                 or os.environ.get("QT_QPA_PLATFORM")):
        raise HighlighterError("no display to open the window on: run it on a desktop, or under a virtual one "
                               "(xvfb-run highlighter gui); `make demo` runs the attention maps headless")
    try:
        from highlighter.gui.app import main
    except ImportError as e:
        raise HighlighterError(f"the app needs PySide6 ({e}); install it with the `gui` extra") from None
    checkpoint = None
    if args.checkpoint:  # the same names as every command: 'default', an official name (its file), random:..., a path
        from highlighter.commands.common import resolve_checkpoint

        checkpoint = resolve_checkpoint(args.checkpoint, "attention")
    return main(checkpoint, args.source, autostart=not args.no_start, quit_after=args.quit_after, launched=launched)
