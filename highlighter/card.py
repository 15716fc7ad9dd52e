"""A model's card in its file header: what it is and how well it does, in a line a user reads first.

``highlighter export --card FILE.json`` stores an object like
``{"status": "early", "summary": "CPU-trained default, 2.9 h", "iou": {"davis-stills": 0.05, "horses": 0.14},
"baselines": {"davis-stills": 0.26, "horses": 0.43}, "see": "models/README.md"}`` under the header's ``card``.
``status`` is ``good``, ``early`` or ``weak``: the last two make :func:`card_line` a warning.

A file without a card in its header can have one beside it, ``<stem>.card.json``, naming the file's sha256 (so a
retrained file does not inherit an old card): the shipped default's measured figures (models/README.md) live
there. :func:`model_note` is what the app shows: the card, else what the ``trained`` header says.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from highlighter.errors import HighlighterError

STATUSES = ("good", "early", "weak")


def read_card(path: str | Path) -> dict:
    try:
        card = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise HighlighterError(f"--card {path}: cannot read a JSON object ({e})") from None
    if not isinstance(card, dict) or card.get("status") not in STATUSES:
        raise HighlighterError(f"--card {path}: needs a 'status' of {', '.join(STATUSES)}")
    for key in ("iou", "baselines"):
        if not isinstance(card.get(key, {}), dict):
            raise HighlighterError(f"--card {path}: '{key}' must map set names to numbers")
    return card


def card_line(meta: dict | None) -> str | None:
    """One line for the model's label, or None when the file carries no card."""
    card = (meta or {}).get("card")
    if not isinstance(card, dict):
        return None
    parts = []
    if card.get("summary"):
        parts.append(str(card["summary"]))
    iou, base = card.get("iou") or {}, card.get("baselines") or {}
    if iou:
        figures = ", ".join(f"{name} {v:.2f}" + (f" (centred ellipse {base[name]:.2f})" if name in base else "")
                            for name, v in iou.items())
        parts.append(f"mask IoU {figures}")
    text = "; ".join(parts)
    if card.get("status") in ("early", "weak"):
        text = f"{card['status']} model, its maps are unreliable: {text}" if text else f"{card['status']} model"
    if card.get("see"):
        text += f" (see {card['see']})"
    return text


def sidecar_card(path: str | Path) -> dict | None:
    """``<stem>.card.json`` beside the file when its ``sha256`` is the file's, else None."""
    side = Path(path).with_suffix(".card.json")
    try:
        card = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(card, dict) or card.get("status") not in STATUSES:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return card if card.get("sha256") == h.hexdigest() else None


def provenance_line(meta: dict | None) -> str | None:
    """From the ``trained`` header alone: a run stopped before its planned epochs is an early model."""
    trained = (meta or {}).get("trained")
    if not isinstance(trained, dict):
        return None
    done, planned = trained.get("epochs_done"), (trained.get("recipe") or {}).get("epochs")
    hours = f", {trained['hours']:g} h" if isinstance(trained.get("hours"), (int, float)) else ""
    if isinstance(done, (int, float)) and isinstance(planned, (int, float)) and done < planned:
        return (f"early model: trained {done:g} of {planned:g} epochs{hours}; no measured IoU in its file, its "
                "maps may be unreliable")
    return None


def model_warning(path: str | Path | None, meta: dict | None) -> str | None:
    """The note when it says the model is weak or early (the CLI prints it as a warning), else None."""
    note = model_note(path, meta)
    return note if note and note.startswith(("weak model", "early model")) else None


def model_note(path: str | Path | None, meta: dict | None) -> str | None:
    """The line the app adds to the model's name: its card (header, else beside it), else its provenance."""
    line = card_line(meta)
    if line is None and path:
        side = sidecar_card(path)
        line = card_line({"card": side}) if side else None
    return line or provenance_line(meta)
