"""Safe unpacking: hostile members refuse the whole archive; bombs stop while streaming."""

import io
import os
import stat
import tarfile
import zipfile

import pytest

from furrytag_cli.core.errors import ArchiveError
from furrytag_cli.store.archive import Limits, archive_kind, extract
from tests.archivefactory import (
    SAVED_MODEL_FILES,
    model_tar_gz,
    model_zip,
    tar_with_member,
    zip_with_member,
)


def _only_the_archive_left(folder, archive):
    assert sorted(p.name for p in folder.iterdir()) == [archive.name]


@pytest.mark.parametrize("make", [model_zip, model_tar_gz], ids=["zip", "tar.gz"])
def test_extracts_every_file_of_a_model_in_a_top_folder(tmp_path, make):
    archive = make(tmp_path / "model.archive")
    dest = extract(archive, tmp_path / "out")
    for name, data in SAVED_MODEL_FILES.items():
        assert (dest / "tiny_model" / name).read_bytes() == data


@pytest.mark.parametrize(
    "member",
    [
        "../evil.txt",
        "tiny_model/../../evil.txt",
        "/etc/evil.txt",
        "C:/evil.txt",
        "..\\evil.txt",
        "tiny_model/a\x00b.txt",
    ],
)
def test_zip_with_a_hostile_name_is_refused_whole(tmp_path, member):
    info = zipfile.ZipInfo("placeholder")
    info.filename = member  # the constructor would cut the name at a NUL byte
    archive = zip_with_member(tmp_path / "bad.zip", info)
    with pytest.raises(ArchiveError, match="refusing the archive"):
        extract(archive, tmp_path / "out")
    _only_the_archive_left(tmp_path, archive)


def test_zip_symlink_member_is_refused(tmp_path):
    info = zipfile.ZipInfo("tiny_model/link")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = zip_with_member(tmp_path / "link.zip", info, b"/etc/passwd")
    with pytest.raises(ArchiveError, match="symlink"):
        extract(archive, tmp_path / "out")
    _only_the_archive_left(tmp_path, archive)


def _tar_info(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    "info, why",
    [
        (_tar_info("tiny_model/link", tarfile.SYMTYPE, "/etc/passwd"), "symlink"),
        (_tar_info("tiny_model/hard", tarfile.LNKTYPE, "tiny_model/saved_model.pb"), "hard link"),
        (_tar_info("tiny_model/dev", tarfile.CHRTYPE), "device"),
        (_tar_info("tiny_model/fifo", tarfile.FIFOTYPE), "FIFO"),
        (_tar_info("../evil.txt", tarfile.REGTYPE), r"\.\."),
        (_tar_info("/tmp/evil.txt", tarfile.REGTYPE), "absolute"),
    ],
)
def test_tar_with_a_hostile_member_is_refused_whole(tmp_path, info, why):
    archive = tar_with_member(tmp_path / "bad.tar.gz", info, b"evil")
    with pytest.raises(ArchiveError, match=why):
        extract(archive, tmp_path / "out")
    _only_the_archive_left(tmp_path, archive)
    assert not (tmp_path.parent / "evil.txt").exists()


def test_zip_ratio_bomb_is_refused(tmp_path):
    archive = model_zip(tmp_path / "bomb.zip", files={"saved_model.pb": bytes(8 << 20)})
    with pytest.raises(ArchiveError, match="zip bomb"):
        extract(archive, tmp_path / "out", limits=Limits(ratio_floor=1 << 20))
    _only_the_archive_left(tmp_path, archive)


def test_zip_member_bomb_hidden_by_incompressible_padding_is_stopped_while_streaming(tmp_path):
    files = {"saved_model.pb": bytes(4 << 20), "padding.bin": os.urandom(1 << 20)}
    archive = model_zip(tmp_path / "bomb.zip", files=files)
    with pytest.raises(ArchiveError, match="'tiny_model/saved_model.pb' expands past"):
        extract(archive, tmp_path / "out", limits=Limits(ratio_floor=1 << 20))
    _only_the_archive_left(tmp_path, archive)


def test_tar_gz_ratio_bomb_is_stopped_while_streaming(tmp_path):
    archive = model_tar_gz(tmp_path / "bomb.tar.gz", files={"saved_model.pb": bytes(8 << 20)})
    with pytest.raises(ArchiveError, match="zip bomb"):
        extract(archive, tmp_path / "out", limits=Limits(ratio_floor=1 << 20))
    _only_the_archive_left(tmp_path, archive)


def test_total_size_and_member_count_caps(tmp_path):
    archive = model_zip(tmp_path / "model.zip")
    with pytest.raises(ArchiveError, match="expands past|declare"):
        extract(archive, tmp_path / "a", limits=Limits(max_bytes=100_000, ratio_floor=0))
    with pytest.raises(ArchiveError, match="more than 3 members"):
        extract(archive, tmp_path / "b", limits=Limits(max_members=3))
    _only_the_archive_left(tmp_path, archive)


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_duplicate_member_is_refused(tmp_path):
    archive = zip_with_member(tmp_path / "dup.zip", "tiny_model/saved_model.pb")
    with pytest.raises(ArchiveError, match="twice"):
        extract(archive, tmp_path / "out")


def test_truncated_zip_is_refused_and_leaves_nothing(tmp_path):
    whole = model_zip(tmp_path / "whole.zip").read_bytes()
    archive = tmp_path / "cut.zip"
    archive.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ArchiveError, match="not a valid zip"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out*"))


def test_html_page_is_not_an_archive(tmp_path):
    page = tmp_path / "model.zip"
    page.write_bytes(b"<!DOCTYPE html><html><body>Sign in</body></html>")
    with pytest.raises(ArchiveError, match="HTML page"):
        archive_kind(page)
    page.write_bytes(b"")
    with pytest.raises(ArchiveError, match="is not a zip or tar.gz archive: it is empty"):
        archive_kind(page)


def test_tar_gz_with_dot_root_entry_is_fine(tmp_path):
    archive = tmp_path / "dot.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.addfile(_tar_info("./", tarfile.DIRTYPE))
        data = b"pb"
        info = tarfile.TarInfo("./saved_model.pb")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    dest = extract(archive, tmp_path / "out")
    assert (dest / "saved_model.pb").read_bytes() == b"pb"
