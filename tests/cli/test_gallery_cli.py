"""furrytag gallery on the command line, and tag --gallery."""

import json
import subprocess
import sys

import yaml

from tests.clirunner import invoke
from tests.gallery.conftest import write_results


def test_gallery_command_writes_the_page_and_reuses_thumbnails(tmp_path, capsys, monkeypatch):
    results = write_results(tmp_path, 6)
    monkeypatch.chdir(tmp_path)
    thresholds = tmp_path / "t.yaml"
    thresholds.write_text(yaml.safe_dump({"global": 0.4, "per_tag": {"species": {"wolf": 0.7}}}))
    first = invoke(capsys, monkeypatch, "gallery", results, "-o", "out", "--thresholds", thresholds)
    assert first.code == 0, first.stderr
    assert (
        "Gallery of 6 images (4 thumbnails made, 0 reused; 1 missing, 1 unreadable" in first.stderr
    )
    assert (tmp_path / "out" / "index.html").is_file()
    meta = (tmp_path / "out" / "data" / "meta.js").read_text()
    assert f"from {thresholds}" in meta and "700" in meta and "400" in meta
    again = invoke(capsys, monkeypatch, "gallery", results, "-o", "out", "-q")
    assert again.code == 0 and again.stderr == ""
    third = invoke(capsys, monkeypatch, "gallery", results, "-o", "out")
    assert "(0 thumbnails made, 4 reused" in third.stderr


def test_gallery_command_errors(tmp_path, capsys, monkeypatch):
    csv_file = tmp_path / "tags.csv"
    csv_file.write_text("path,species,rating\na.png,wolf,safe\n")
    bad = invoke(capsys, monkeypatch, "gallery", csv_file, "-o", tmp_path / "g")
    assert bad.code == 1 and bad.stderr.startswith("Error: ") and "CSV output" in bad.stderr
    results = write_results(tmp_path, 2)
    both = invoke(
        capsys,
        monkeypatch,
        "gallery",
        results,
        "-o",
        tmp_path / "g",
        "--threshold",
        "0.4",
        "--thresholds",
        tmp_path / "t.yaml",
    )
    assert both.code == 2 and "give one" in both.stderr
    out_of_range = invoke(
        capsys, monkeypatch, "gallery", results, "-o", tmp_path / "g", "--threshold", "2"
    )
    assert out_of_range.code == 2 and "between 0 and 1" in out_of_range.stderr
    (tmp_path / "file").write_text("")
    onto_file = invoke(capsys, monkeypatch, "gallery", results, "-o", tmp_path / "file")
    assert onto_file.code == 1 and "is a file" in onto_file.stderr
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<p>my home page</p>")
    onto_site = invoke(capsys, monkeypatch, "gallery", results, "-o", tmp_path / "site")
    assert onto_site.code == 1 and "not a furrytag gallery" in onto_site.stderr
    assert (tmp_path / "site" / "index.html").read_text() == "<p>my home page</p>"


def test_gallery_never_imports_tensorflow(tmp_path):
    results = write_results(tmp_path, 3)
    code = (
        "import sys\n"
        "from furrytag_cli.cli.app import main\n"
        f"sys.argv = ['furrytag', 'gallery', {str(results)!r}, '-o', {str(tmp_path / 'g')!r}, '-q']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "g" / "index.html").is_file()


def test_tag_gallery_needs_a_results_file(tmp_path, capsys, monkeypatch):
    write_results(tmp_path, 2)
    refused = invoke(
        capsys,
        monkeypatch,
        "tag",
        tmp_path / "imgs",
        "-f",
        "csv",
        "-o",
        tmp_path / "t.csv",
        "--gallery",
        tmp_path / "g",
    )
    assert refused.code == 2 and "--gallery shows the results written to a file" in refused.stderr
    assert not (tmp_path / "t.csv").exists()


def test_gallery_of_a_caption_folder_with_its_naming(tmp_path, capsys, monkeypatch):
    write_results(tmp_path, 1)
    (tmp_path / "imgs" / "img000.caption").write_text("wolf; anthro")
    args = ("gallery", tmp_path / "imgs", "-o", tmp_path / "g", "--caption-ext", ".caption")
    done = invoke(capsys, monkeypatch, *args, "--separator", "; ")
    assert done.code == 0, done.stderr
    meta = json.loads((tmp_path / "g" / "data" / "meta.js").read_text()[len("FT.setMeta(") : -3])
    chunk = (tmp_path / "g" / "data" / "chunk-00000.js").read_text()
    rows = json.loads(chunk[len("FT.addChunk(") : -3])
    captioned = next(row for row in rows if row[0].endswith("img000.png"))
    assert sorted(meta["tags"][t] for t in captioned[4]) == ["anthro", "wolf"]
    unknown = invoke(capsys, monkeypatch, *args[:-1], ".md")
    assert unknown.code == 2 and ".caption" in unknown.stderr
