"""Errors that the CLI turns into a one-line message and a non-zero exit code.

Imports nothing from highlighter, so every layer may raise them.
"""


class HighlighterError(Exception):
    """A problem the user can fix: the message is shown as-is, without a traceback."""

    exit_code = 2


class CheckpointError(HighlighterError):
    """A checkpoint file is missing, corrupt, hostile, or not a ViT we can run."""


class ImageError(HighlighterError):
    """An image file cannot be read or decoded."""


class DeviceError(HighlighterError, ValueError):
    """A ``--device`` that this machine does not have (CUDA without a GPU, an unknown name)."""


class Cancelled(HighlighterError):
    """Work that was asked to stop (a backend choice whose stream stopped): a state, not a failure to show."""
