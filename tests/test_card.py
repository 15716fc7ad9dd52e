"""A model's card: written by `export --card`, read back as the line the app shows."""

import json

import pytest

from highlighter.card import card_line
from highlighter.core.formats import load_checkpoint


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


def _card_file(tmp_path, cli, status):
    card = tmp_path / f"{status}.json"
    card.write_text(json.dumps({"status": status, "summary": f"a {status} test model", "iou": {"horses": 0.1}}))
    out = tmp_path / f"{status}.safetensors"
    code, _, err = cli("export", "--checkpoint", "random:vit_tiny/16", "--card", card, "--out", out)
    assert code == 0, err
    return out


@pytest.mark.parametrize("status", ["weak", "early", "good"])
def test_the_cli_warns_once_on_stderr_when_the_card_says_weak_or_early(tmp_path, cli, cat_path, status):
    """attention, video and eval on a model whose card says weak or early printed no warning (the app shows one)."""
    import shutil

    from PIL import Image

    model = _card_file(tmp_path, cli, status)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "masks").mkdir()
    shutil.copy(cat_path, tmp_path / "imgs")
    w, h = Image.open(cat_path).size
    Image.new("L", (w, h), 255).save(tmp_path / "masks" / f"{cat_path.stem}.png")
    line = f"warning: {status} model, its maps are unreliable: a {status} test model; mask IoU horses 0.10"
    for command in (["attention", cat_path, "--image-size", 64, "--out", tmp_path / "a"],
                    ["video", cat_path, "--image-size", 64, "--backend", "torch-fp32", "--out", tmp_path / "v"],
                    ["eval", "--images", tmp_path / "imgs", "--masks", tmp_path / "masks", "--image-size", 64]):
        code, out, err = cli(*command, "--checkpoint", model)
        assert code == 0, err
        if status == "good":
            assert "unreliable" not in err and "warning" not in err, (command[0], err)
        else:
            assert err.count("unreliable") == 1 and line in err.splitlines(), (command[0], err)
