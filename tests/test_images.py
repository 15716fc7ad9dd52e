"""Photo decoding: modes, EXIF orientation, and clear errors."""

import numpy as np
import pytest
from PIL import Image

from highlighter.errors import ImageError
from highlighter.images import expand_inputs, load_rgb


def test_modes_convert_to_rgb(tmp_path, cat_path):
    cat = Image.open(cat_path)
    cat.convert("L").save(tmp_path / "gray.png")
    cat.convert("RGBA").save(tmp_path / "rgba.png")
    cat.convert("CMYK").save(tmp_path / "cmyk.jpg")
    cat.convert("P").save(tmp_path / "palette.png")
    arr16 = (np.asarray(cat.convert("L"), np.uint16) * 257)
    Image.fromarray(arr16).save(tmp_path / "gray16.png")
    for name in ["gray.png", "rgba.png", "cmyk.jpg", "palette.png", "gray16.png"]:
        img = load_rgb(tmp_path / name)
        assert img.mode == "RGB" and img.size == cat.size, name
    # 16-bit values are scaled, not clipped to white
    g16 = np.asarray(load_rgb(tmp_path / "gray16.png"))[..., 0].astype(int)
    g8 = np.asarray(cat.convert("L")).astype(int)
    assert np.abs(g16 - g8).max() <= 1


# EXIF orientation -> how the stored pixels s (rows, cols, 3) are shown, from the tag's definition: where
# the stored row 0 and column 0 end up (1: top/left; 6: row 0 on the right, so rotate 90 degrees clockwise)
SHOWN = {
    1: lambda s: s,
    2: lambda s: s[:, ::-1],  # mirrored left-right
    3: lambda s: s[::-1, ::-1],  # rotated 180
    4: lambda s: s[::-1],  # mirrored top-bottom
    5: lambda s: s.transpose(1, 0, 2),  # mirrored along the main diagonal
    6: lambda s: np.rot90(s, -1),  # 90 clockwise
    7: lambda s: s.transpose(1, 0, 2)[::-1, ::-1],  # mirrored along the other diagonal
    8: lambda s: np.rot90(s, 1),  # 90 counter-clockwise
}


@pytest.mark.parametrize("orientation", sorted(SHOWN))
def test_exif_orientation_is_applied(tmp_path, cat_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.open(cat_path).save(tmp_path / "tagged.jpg", exif=exif)
    stored = np.asarray(Image.open(tmp_path / "tagged.jpg").convert("RGB"))  # the pixels as decoded, untagged
    got = np.asarray(load_rgb(tmp_path / "tagged.jpg"))
    np.testing.assert_array_equal(got, SHOWN[orientation](stored))  # the pixels, not only the size
    if orientation in (6, 8):  # the same size, opposite turns: only the pixels tell them apart
        other = SHOWN[14 - orientation](stored)
        assert got.shape == other.shape and not np.array_equal(got, other)


@pytest.mark.parametrize("content,message", [
    (b"", r"empty file \(0 bytes\)"), (b"plain text, not pixels", "not an image")])
def test_unreadable_files(tmp_path, content, message):
    (tmp_path / "x.jpg").write_bytes(content)
    with pytest.raises(ImageError, match=message):
        load_rgb(tmp_path / "x.jpg")


def test_truncated_jpeg(tmp_path, cat_path):
    (tmp_path / "t.jpg").write_bytes(cat_path.read_bytes()[:2000])
    with pytest.raises(ImageError, match="cannot decode"):
        load_rgb(tmp_path / "t.jpg")


def test_expand_inputs(tmp_path, cat_path):
    (tmp_path / "b.PNG").write_bytes(b"x")
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "c.txt").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    files, problems = expand_inputs([tmp_path, cat_path, tmp_path / "nope.jpg", tmp_path / "empty"])
    assert [f.name for f in files] == ["a.jpg", "b.PNG", cat_path.name]
    assert any("nope.jpg" in p for p in problems) and any("no images" in p for p in problems)
