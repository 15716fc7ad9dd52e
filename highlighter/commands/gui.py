"""``highlighter gui``: open the desktop app."""

from __future__ import annotations

from highlighter.errors import HighlighterError


def run(args) -> int:
    import os
    import sys

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                                 or os.environ.get("QT_QPA_PLATFORM")):
        raise HighlighterError("no display to open the window on: run it on a desktop, or under a virtual one "
                               "(xvfb-run highlighter gui); `make demo` runs the attention maps headless")
    try:
        from highlighter.gui.app import main
    except ImportError as e:
        raise HighlighterError(f"the app needs PySide6 ({e}); install it with the `gui` extra") from None
    from highlighter.weights import resolve

    checkpoint = resolve(args.checkpoint) if args.checkpoint else None  # an official name -> its file
    return main(checkpoint, args.source, autostart=not args.no_start)
