"""Checkpoints, split by job; this module re-exports the names that other code imports from here.

- ``core.safe_read``: reading files without running code from them;
- ``core.formats``: recognising the format and the architecture (``load_checkpoint``, ``LoadedCheckpoint``);
- ``core.build``: building models with strictly loaded weights;
- ``core.save``: writing our format and the official layouts;
- ``highlighter.fileio.atomic_write``: the atomic write they use.
"""

from highlighter.core.build import build_attention_model, build_mae_model
from highlighter.core.formats import (
    LoadedCheckpoint,
    encoder_state,
    load_checkpoint,
    random_checkpoint,
    random_mae_checkpoint,
)
from highlighter.core.safe_read import pickle_imports, read_checkpoint_file
from highlighter.core.save import FORMAT_VERSION, make_meta, save_model
from highlighter.fileio import atomic_write

__all__ = ["FORMAT_VERSION", "LoadedCheckpoint", "atomic_write", "build_attention_model", "build_mae_model",
           "encoder_state", "load_checkpoint", "make_meta", "pickle_imports", "random_checkpoint",
           "random_mae_checkpoint", "read_checkpoint_file", "save_model"]
