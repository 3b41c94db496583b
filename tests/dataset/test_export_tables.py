"""Reading e621 export files: finding them by name, rows with huge and multi-line fields."""

import gzip

import pytest

from furrytag_cli.core.errors import DatasetError
from furrytag_cli.dataset.export_tables import ExportFiles, ExportTable, read_relations
from tests.datasetfactory import FIXTURE_EXPORT

POSTS = FIXTURE_EXPORT / "posts-2024-01-15.csv"


def test_files_are_found_by_kind_and_the_newest_date_wins(tmp_path):
    files = ExportFiles.find([FIXTURE_EXPORT])
    assert (files.posts.name, files.aliases.name, files.implications.name) == (
        "posts-2024-01-15.csv",
        "tag_aliases-2024-01-15.csv",
        "tag_implications-2024-01-15.csv",
    )
    (tmp_path / "tag_aliases-2023-01-01.csv.gz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    files = ExportFiles.find([POSTS, tmp_path, FIXTURE_EXPORT / "tag_implications-2024-01-15.csv"])
    assert files.aliases == tmp_path / "tag_aliases-2023-01-01.csv.gz"
    with pytest.raises(DatasetError, match=r"has no tag_implications-\*\.csv\[\.gz\]"):
        ExportFiles.find([POSTS, tmp_path])


@pytest.mark.parametrize("compress", [False, True])
def test_rows_keep_huge_and_multi_line_fields(tmp_path, compress):
    path = POSTS
    if compress:
        path = tmp_path / "posts-2024-01-15.csv.gz"
        path.write_bytes(gzip.compress(POSTS.read_bytes()))
    with ExportTable(path, ("id", "description", "source")) as table:
        rows = {row[table.columns["id"]]: row for row in table}
    assert len(rows) == 35 and table.malformed == 0
    assert rows["101"][table.columns["source"]].count("\n") == 1
    assert rows["118"][table.columns["description"]].startswith('Line one, with a comma.\n"Quoted"')
    assert len(rows["119"][table.columns["description"]]) > 128 * 1024


def test_progress_goes_to_stderr_and_ends_at_the_file_size(capsys):
    with ExportTable(POSTS, ("id",), progress=True) as table:
        assert sum(1 for _ in table) == 35
    err = capsys.readouterr().err
    assert err.startswith("posts-2024-01-15.csv") and "100%" in err.splitlines()[-1]


def test_relations_are_the_active_rows_only():
    aliases = read_relations(FIXTURE_EXPORT / "tag_aliases-2024-01-15.csv")
    assert (
        aliases["kitty"] == ["domestic_cat"]
        and "old_fox" not in aliases
        and "pending_wolf" not in aliases
    )
    implications = read_relations(FIXTURE_EXPORT / "tag_implications-2024-01-15.csv")
    assert (
        implications["selfie"] == ["selfie", "looking_at_viewer"] and "fennec" not in implications
    )
