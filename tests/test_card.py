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


def test_re_exporting_our_file_keeps_how_it_was_made(tmp_path, cli):
    """A run's probe_best (or any exported file) exported again, e.g. with a card: the `trained` header stays."""
    from highlighter.core.save import save_model

    ck = load_checkpoint("random:vit_tiny/16")
    trained = {"task": "dino", "weights": "teacher", "steps": 83, "images_seen": 5312, "recipe": {"lr": 0.00025}}
    save_model(tmp_path / "best.safetensors", "dino", ck.vit, ck.state, None, trained=trained)
    (tmp_path / "card.json").write_text(json.dumps({"status": "weak", "iou": {"horses": 0.25}}))
    code, _, err = cli("export", "--checkpoint", tmp_path / "best.safetensors", "--half", "--card",
                       tmp_path / "card.json", "--out", tmp_path / "m.safetensors")
    assert code == 0, err
    meta = load_checkpoint(tmp_path / "m.safetensors").meta
    assert meta["trained"] == trained and meta["card"]["status"] == "weak"
