"""``furrytag export``: ONNX in furrytag's layout (parity with Keras, furrytag runs it),
the wd14 layout as the ComfyUI node and kohya's script load it, the model card, errors."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install -e '.[onnx]'")
pytest.importorskip("tf2onnx", reason="needs the onnx extra: pip install -e '.[onnx]'")
import yaml
from PIL import Image

from furrytag_cli.engines.choose import load_engine
from furrytag_cli.engines.keras import KerasEngine
from furrytag_cli.export.folder import export_model
from furrytag_cli.model.bundle import write_metadata
from furrytag_cli.model.categories import CategorySet, RatingSpec
from furrytag_cli.model.loading import load_bundle
from furrytag_cli.tagging.predict import TagOptions
from furrytag_cli.tagging.tagger import Tagger
from tests.clirunner import invoke
from tests.export.consumers import comfyui_tags, kohya_tags

# "legacy-bn": the original's format with batch normalisation in its TF-Hub feature
# layer, as its EfficientNet B3 has.
KINDS = ("native", "legacy", "legacy-bn")


@pytest.fixture(scope="module")
def sources(native_bundle_dir, legacy_dir, tmp_path_factory):
    from tests.modelfactory import LEGACY_NAME, make_legacy_saved_model

    batchnorm = make_legacy_saved_model(
        tmp_path_factory.mktemp("legacy-bn") / LEGACY_NAME, batchnorm=True
    )
    return {"native": native_bundle_dir, "legacy": legacy_dir, "legacy-bn": batchnorm}


@pytest.fixture(scope="module")
def onnx_exports(sources, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx-exports")
    return {k: export_model(load_bundle(p), root / k).folder for k, p in sources.items()}


@pytest.fixture(scope="module")
def wd14_exports(sources, tmp_path_factory):
    root = tmp_path_factory.mktemp("wd14-exports")
    return {
        k: export_model(load_bundle(p), root / k, layout="wd14").folder for k, p in sources.items()
    }


def _inputs(bundle, count=6, seed=0):
    """Preprocessed batches as furrytag's pipeline makes them, from images of mixed sizes."""
    import tensorflow as tf

    from furrytag_cli.model.preprocess import preprocess_image

    rng = np.random.default_rng(seed)
    images = [
        rng.integers(0, 256, (int(rng.integers(20, 90)), int(rng.integers(20, 90)), 3), np.uint8)
        for _ in range(count)
    ]
    return np.stack([preprocess_image(tf.constant(i), bundle.preprocess).numpy() for i in images])


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_engine_on_the_export_matches_keras(kind, sources, onnx_exports):
    source, exported = load_bundle(sources[kind]), load_bundle(onnx_exports[kind])
    assert {p.name for p in onnx_exports[kind].iterdir()} == {
        "model.onnx",
        "furrytag.yaml",
        "README.md",
    }
    assert exported.weights == "model.onnx"
    assert onnx_exports[kind].stat().st_mode & 0o755 == 0o755
    assert exported.preprocess == source.preprocess
    assert exported.categories == source.categories
    batch = _inputs(source)
    want = KerasEngine(source, embeddings=True)(batch)
    engine = load_engine(exported, engine="auto", embeddings=True, notify=None)
    assert engine.name == "onnx"
    got = engine(batch)
    diffs = [np.abs(got.heads[h] - want.heads[h]).max() for h in source.categories.head_names]
    diffs += [np.abs(got.rating - want.rating).max(), np.abs(got.embedding - want.embedding).max()]
    assert max(diffs) <= 1e-5
    assert np.ptp(want.rating) > 0 or len(batch) == 1  # real, varying outputs


def test_normalization_constants_stay_inside_the_graph(tmp_path):
    from tests.modelfactory import make_normalizing_bundle

    source = load_bundle(make_normalizing_bundle(tmp_path / "bundle"))
    exported = load_bundle(export_model(source, tmp_path / "onnx").folder)
    batch = _inputs(source)
    want = KerasEngine(source)(batch)
    got = load_engine(exported, engine="onnx")(batch)
    assert max(np.abs(got.heads[h] - want.heads[h]).max() for h in want.heads) <= 1e-5


def test_the_export_has_one_input_and_named_outputs(onnx_exports):
    import onnx

    model = onnx.load(str(onnx_exports["native"] / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["image"]
    assert {o.name for o in model.graph.output} == {
        "action",
        "body",
        "clothing",
        "identity",
        "species",
        "rating",
        "embedding",
    }


@pytest.mark.parametrize("kind", KINDS)
def test_furrytag_tags_with_the_export_as_with_the_model(
    kind, sources, onnx_exports, tmp_path, capsys, monkeypatch
):
    from tests.imagefactory import write_good_images

    images = write_good_images(tmp_path / "art")
    runs = {}
    for label, model, engine in (
        ("keras", sources[kind], "keras"),
        ("onnx", onnx_exports[kind], "auto"),
    ):
        out = tmp_path / f"{label}.jsonl"
        run = invoke(
            capsys,
            monkeypatch,
            "tag",
            tmp_path / "art",
            "--model",
            model,
            "--engine",
            engine,
            "--threshold",
            "0.5",
            "-o",
            out,
        )
        assert run.code == 0, run.stderr
        runs[label] = {
            Path(r["path"]).name: (r["tags"], r["rating"])
            for r in map(json.loads, out.read_text().splitlines())
        }
    assert "onnx engine" in run.stderr
    assert len(runs["onnx"]) == len(images)
    for path, (tags, rating) in runs["keras"].items():
        onnx_tags, onnx_rating = runs["onnx"][path]
        assert onnx_rating == rating
        assert {h: sorted(t) for h, t in onnx_tags.items()} == {
            h: sorted(t) for h, t in tags.items()
        }
        for head, scored in tags.items():
            for tag, score in scored.items():
                assert abs(onnx_tags[head][tag] - score) <= 2e-4


def _prepared_image(path: Path, seed: int = 3) -> Path:
    """A 448 x 448 RGB image with structure (upscaled random blocks): what both tools and
    furrytag receive unchanged, so all three see the same pixels."""
    rng = np.random.default_rng(seed)
    blocks = Image.fromarray(rng.integers(0, 256, (14, 14, 3), np.uint8))
    blocks.resize((448, 448), Image.BILINEAR).save(path)
    return path


def _gap_threshold(scores: np.ndarray) -> float:
    """A threshold in the widest gap between scores around their median: tags on either
    side stay there under tiny numeric differences."""
    values = np.sort(scores)
    middle = len(values) // 2
    window = values[middle - 40 : middle + 40]
    i = int(np.argmax(np.diff(window)))
    return float((window[i] + window[i + 1]) / 2)


@pytest.mark.parametrize("kind", KINDS)
def test_wd14_tools_get_furrytag_tags(kind, sources, wd14_exports, tmp_path):
    image_path = _prepared_image(tmp_path / "square.png")
    bundle = load_bundle(sources[kind])
    tagger = Tagger(bundle, engine="keras", options=TagOptions(all_scores=True), notify=None)
    (item,) = list(tagger.tag([image_path]))
    scores = np.concatenate([list(s.values()) for s in item.tagging.scores.values()])
    threshold = _gap_threshold(scores)
    furrytag = Tagger(bundle, engine="keras", options=TagOptions(threshold=threshold), notify=None)
    (item,) = list(furrytag.tag([image_path]))
    want = sorted(t for pairs in item.tagging.tags.values() for t, _ in pairs)
    assert 20 < len(want) < len(scores) - 20

    comfy = tmp_path / "ComfyUI" / "custom_nodes" / "ComfyUI-WD14-Tagger" / "models"
    comfy.mkdir(parents=True)
    shutil.copy(wd14_exports[kind] / "model.onnx", comfy / "furry-b3.onnx")
    shutil.copy(wd14_exports[kind] / "selected_tags.csv", comfy / "furry-b3.csv")
    assert comfyui_tags(comfy, "furry-b3", Image.open(image_path), threshold) == want

    models = tmp_path / "wd14_models"
    shutil.copytree(wd14_exports[kind], models / "someone_furry-b3")
    [(rating, general)] = kohya_tags(
        models, "someone/furry-b3", [Image.open(image_path)], threshold
    )
    assert general == want
    assert rating == item.tagging.rating


@pytest.mark.parametrize("cuts", [(0.05, 0.1), (0.1, 0.95), (0.9, 0.95)])
def test_the_rating_rows_argmax_is_furrytags_label(cuts, native_bundle_dir, tmp_path):
    source = tmp_path / "bundle"
    shutil.copytree(native_bundle_dir, source)
    bundle = load_bundle(source)
    categories = CategorySet(heads=bundle.categories.heads, rating=RatingSpec(cuts=cuts))
    write_metadata(dataclasses.replace(bundle, categories=categories))
    bundle = load_bundle(source)
    export_model(bundle, tmp_path / "models" / "me_cuts", layout="wd14")
    images = [Image.open(_prepared_image(tmp_path / f"{s}.png", seed=s)) for s in range(3)]
    got = kohya_tags(tmp_path / "models", "me/cuts", images, 0.5)
    tagger = Tagger(bundle, engine="keras", notify=None)
    want = [i.tagging.rating for i in tagger.tag([tmp_path / f"{s}.png" for s in range(3)])]
    assert [rating for rating, _ in got] == want


def test_wd14_files_follow_the_contract(wd14_exports):
    import csv

    import onnx

    folder = wd14_exports["native"]
    assert {p.name for p in folder.iterdir()} == {"model.onnx", "selected_tags.csv", "README.md"}
    with open(folder / "selected_tags.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["tag_id", "name", "category", "count"]
    assert [r[1:3] for r in rows[1:5]] == [
        ["explicit", "9"],
        ["questionable", "9"],
        ["safe", "9"],
        ["rating_score", "9"],
    ]
    assert {r[2] for r in rows[5:]} == {"0"} and len(rows) - 5 == CategorySet.load().num_tags
    model = onnx.load(str(folder / "model.onnx"))
    (inp,) = model.graph.input
    dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 448, 448, 3]
    (out,) = model.graph.output
    assert [d.dim_value or d.dim_param for d in out.type.tensor_type.shape.dim] == [
        "batch",
        len(rows) - 1,
    ]


def test_the_model_card_is_ready_for_the_hub(sources, tmp_path, capsys, monkeypatch):
    run = invoke(
        capsys,
        monkeypatch,
        "export",
        sources["legacy"],
        "-o",
        tmp_path / "out",
        "--layout",
        "wd14",
        "--license",
        "mit",
        "--size",
        "384",
    )
    assert run.code == 0, run.stderr
    card = (tmp_path / "out" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "mit" and "wd14-tagger" in front["tags"]
    for needle in (
        "## Metrics",
        "| F1 | 0.5 |",
        "(x − 0.5) / 0.225",
        "antialias",
        "BGR",
        "rating_score",
        "age_difference",
        "--general_threshold",
        "448",
    ):
        assert needle in card, needle
    assert "selected_tags.csv" in run.stdout and "MB" in run.stdout
    again = invoke(
        capsys,
        monkeypatch,
        "export",
        sources["legacy"],
        "-o",
        tmp_path / "out",
        "--overwrite",
        "--json",
        "-q",
    )
    summary = json.loads(again.stdout)
    assert summary["layout"] == "furrytag" and set(summary["files"]) == {
        "model.onnx",
        "furrytag.yaml",
        "README.md",
    }


def test_export_refuses_what_it_cannot_make(sources, tmp_path, capsys, monkeypatch):
    def error(*args):
        run = invoke(capsys, monkeypatch, "export", *args)
        assert run.code != 0
        return run.stderr

    out = tmp_path / "out"
    assert "the wd14 layout is ONNX only" in error(
        sources["native"], "-o", out, "--layout", "wd14", "--format", "tflite"
    )
    assert "cannot be saved as a Keras 3 model" in error(
        sources["legacy"], "-o", out, "--format", "keras"
    )
    usage = invoke(capsys, monkeypatch, "export", sources["native"], "-o", out, "--format", "pt")
    assert usage.code == 2 and "'pt' is not one of" in usage.stderr
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert "not empty; pass --overwrite" in error(sources["native"], "-o", out)
    assert (out / "keep.txt").exists()
    assert not list(tmp_path.glob(".out~export-*"))


def test_a_model_unstable_in_itself_is_refused_with_the_reason(tmp_path, capsys, monkeypatch):
    from tests.modelfactory import LEGACY_NAME, make_legacy_saved_model

    source = make_legacy_saved_model(tmp_path / LEGACY_NAME, batchnorm=True, unstable=True)
    run = invoke(capsys, monkeypatch, "export", source, "-o", tmp_path / "out")
    assert run.code == 1
    assert "the model itself is unstable" in run.stderr
    assert "when the batch changes by one float32 rounding step" in run.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_tflite_and_keras_exports_run_in_furrytag(sources, tmp_path):
    source = load_bundle(sources["native"])
    batch = _inputs(source)
    want = KerasEngine(source)(batch)
    for fmt, engine in (("tflite", "lite"), ("keras", "keras")):
        exported = load_bundle(export_model(source, tmp_path / fmt, fmt=fmt).folder)
        assert exported.weights == f"model.{fmt}"
        got = load_engine(exported, engine=engine, notify=None)
        scores = got(batch)
        assert np.abs(scores.rating - want.rating).max() <= 1e-4
