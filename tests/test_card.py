"""A model's card: written by `export --card`, read back as the line the app shows."""

import json

import pytest

from highlighter.card import card_line
from highlighter.core.checkpoint import load_checkpoint


def test_export_card_round_trips_into_the_model_line(tmp_path, cli):
    card = {"status": "early", "summary": "CPU-trained default, 2.9 h", "iou": {"davis-stills": 0.049, "horses": 0.137},
            "baselines": {"davis-stills": 0.259, "horses": 0.429}, "see": "models/README.md"}
    (tmp_path / "card.json").write_text(json.dumps(card))
    code, _, err = cli("export", "--checkpoint", "random:vit_tiny/16", "--out", tmp_path / "m.safetensors",
                       "--card", tmp_path / "card.json")
    assert code == 0, err
    ck = load_checkpoint(tmp_path / "m.safetensors")
    assert ck.meta["card"] == card
    line = card_line(ck.meta)
    assert line == ("early model, its maps are unreliable: CPU-trained default, 2.9 h; mask IoU davis-stills 0.05 "
                    "(centred ellipse 0.26), horses 0.14 (centred ellipse 0.43) (see models/README.md)")
    assert card_line({"card": {"status": "good", "iou": {"horses": 0.6}}}) == "mask IoU horses 0.60"
    assert card_line({}) is None and card_line(None) is None


@pytest.mark.parametrize("content", ["not json", json.dumps({"iou": {}}), json.dumps({"status": "great"})])
def test_a_bad_card_is_refused(tmp_path, cli, content):
    (tmp_path / "card.json").write_text(content)
    code, _, err = cli("export", "--checkpoint", "random:vit_tiny/16", "--out", tmp_path / "m.safetensors",
                       "--card", tmp_path / "card.json")
    assert code == 2 and "--card" in err and not (tmp_path / "m.safetensors").exists()
