"""``highlighter gui``: open the desktop app."""

from __future__ import annotations

from highlighter.errors import HighlighterError


def run(args) -> int:
    try:
        from highlighter.gui.app import main
    except ImportError as e:
        raise HighlighterError(f"the app needs PySide6 ({e}); install it with the `gui` extra") from None
    return main(args.checkpoint, args.source, autostart=not args.no_start)
