"""A model's card in its file header: what it is and how well it does, in a line a user reads first.

``highlighter export --card FILE.json`` stores an object like
``{"status": "early", "summary": "CPU-trained default, 2.9 h", "iou": {"davis-stills": 0.05, "horses": 0.14},
"baselines": {"davis-stills": 0.26, "horses": 0.43}, "see": "models/README.md"}`` under the header's ``card``.
``status`` is ``good``, ``early`` or ``weak``: the last two make :func:`card_line` a warning.
"""

from __future__ import annotations

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
