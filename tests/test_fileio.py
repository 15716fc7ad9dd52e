"""atomic_write: the whole file or the old one, never half; and a plain file's mode, not mkstemp's 0600."""

import os
import stat

import pytest

from highlighter.fileio import atomic_write


def test_the_written_file_has_a_plain_files_mode(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives under the process's umask
    atomic_write(tmp_path / "a.txt", lambda p: open(p, "w").write("hello"))
    assert (tmp_path / "a.txt").read_text() == "hello"
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode) and mode & 0o044  # readable by others, as files are


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "b.txt"
    target.write_text("old")

    def fail(p):
        open(p, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["b.txt"]


def test_a_writer_that_replaces_the_temporary_still_gives_a_plain_files_mode(tmp_path):
    """safetensors' save_file writes a new 0600 file over the temporary: exported .safetensors were mode 600."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")

    def replace_with_private_file(p):
        private = tmp_path / "private"
        fd = os.open(private, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"data")
        os.close(fd)
        os.replace(private, p)

    atomic_write(tmp_path / "c.bin", replace_with_private_file)
    assert stat.S_IMODE((tmp_path / "c.bin").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_exported_safetensors_and_pth_have_the_same_mode(tmp_path, cli):
    for name in ("m.safetensors", "m.pth"):
        code, _, err = cli("export", "--checkpoint", "random:vit_tiny/16", "--out",
                           tmp_path / name)
        assert code == 0, err
    modes = {name: stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("m.safetensors", "m.pth")}
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert set(modes.values()) == {stat.S_IMODE(plain.stat().st_mode)}, modes
