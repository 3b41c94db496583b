"""Atomic writes: the target holds its old content or the new, never half, never a leftover."""

import os
import stat

import pytest

from furrytag_cli.core.atomic import AtomicFile, write_bytes, write_text


def test_write_replaces_the_file_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "out.yaml"
    target.write_text("old")
    write_text(target, "new: 1\n")
    assert target.read_text() == "new: 1\n"
    write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["out.yaml"]


def test_an_error_while_writing_keeps_the_old_content(tmp_path):
    target = tmp_path / "scores.npz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), AtomicFile(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("the writer failed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.npz"]


def test_the_temporary_file_is_hidden_beside_the_target_until_committed(tmp_path):
    target = tmp_path / "out.json"
    staged = AtomicFile(target, "w", encoding="utf-8")
    staged.file.write("[]")
    assert staged.path.parent == tmp_path and staged.path.name.startswith(".out.json.")
    assert not target.exists()
    assert staged.commit() == target and target.read_text() == "[]"
    assert not staged.path.exists()


def test_new_files_get_the_permissions_of_a_plain_open(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "plain.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o644


def test_a_missing_folder_is_an_os_error_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_text(tmp_path / "missing" / "x.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_remove_stale_takes_only_old_temporary_files_of_the_suffix(tmp_path):
    import os
    import time

    from furrytag_cli.core.atomic import remove_stale

    names = [".a.txt.0123abcd.tmp", ".b.txt.89abcdef.tmp", ".a.json.0123abcd.tmp", "a.txt"]
    names += [".a.txt.0123abcd.tmp.keep", ".a.txt.xyz.tmp"]
    for name in names:
        (tmp_path / name).write_text("x")
    old = time.time() - 60
    for name in names[1:]:
        os.utime(tmp_path / name, (old, old))
    assert remove_stale(tmp_path, ".txt", before=time.time() - 30) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[:1] + names[2:])
    assert remove_stale(tmp_path / "missing", ".txt", before=time.time()) == 0
