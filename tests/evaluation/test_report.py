"""The report folder: valid JSON, CSV and PNG files."""

import csv
import json
import subprocess
import sys

import pytest
from PIL import Image

from furrytag_cli.core.errors import OutputError
from furrytag_cli.evaluation.metrics import evaluate_scores
from furrytag_cli.evaluation.report import write_report
from furrytag_cli.evaluation.tuning import tune_thresholds

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def evaluated(make_scoreset):
    data = make_scoreset(seed=7)
    tuned = tune_thresholds(make_scoreset(seed=8), min_support=5)
    return data, evaluate_scores(data, {"0.5": 0.5, "tuned": tuned})


def test_report_folder_holds_json_csv_and_pngs(evaluated, tmp_path):
    data, evaluation = evaluated
    written = write_report(tmp_path / "report", evaluation, data)
    assert sorted(p.name for p in written) == sorted(
        [
            "metrics.json",
            "per_tag.csv",
            "pr_curves.png",
            "f1_vs_threshold.png",
            "tag_f1_vs_support.png",
            "rating_confusion.png",
        ]
    )
    for path in written:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_SIGNATURE
            with Image.open(path) as image:
                image.load()
                assert image.format == "PNG" and min(image.size) >= 200

    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(evaluation.to_dict()))
    assert metrics["images"] == data.images and set(metrics["settings"]) == {"0.5", "tuned"}
    tuned = metrics["settings"]["tuned"]
    assert set(tuned["heads"]) == set(data.heads) and set(tuned["slices"]) == {"frequent", "rare"}
    assert tuned["thresholds"] == evaluation.settings["tuned"].thresholds.to_dict()
    assert metrics["rating"]["confusion"] == [list(r) for r in evaluation.rating.confusion]

    with open(tmp_path / "report" / "per_tag.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    tags = sum(len(t) for t in data.tags.values())
    assert len(rows) == 2 * tags
    first = evaluation.settings["0.5"].rows[0]
    assert rows[0]["setting"] == "0.5" and rows[0]["tag"] == first.tag
    assert float(rows[0]["f1"]) == first.f1 and int(rows[0]["support"]) == first.support


def test_report_without_rating_leaves_out_its_plot(make_scoreset, tmp_path):
    data = make_scoreset(rating=False)
    written = write_report(tmp_path, evaluate_scores(data, {"0.5": 0.5}), data)
    assert "rating_confusion.png" not in {p.name for p in written}
    assert json.loads((tmp_path / "metrics.json").read_text())["rating"] is None


def test_unwritable_report_folder(evaluated, tmp_path):
    data, evaluation = evaluated
    (tmp_path / "taken").write_text("")
    with pytest.raises(OutputError, match="cannot create report folder .*taken"):
        write_report(tmp_path / "taken", evaluation, data)


def test_evaluation_modules_import_neither_tensorflow_nor_matplotlib():
    code = (
        "import sys, furrytag_cli.evaluation.report, furrytag_cli.evaluation.tables, furrytag_cli.model.thresholds;"
        "print(sorted(m for m in ('tensorflow', 'keras', 'matplotlib', 'sklearn') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
