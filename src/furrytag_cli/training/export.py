"""Export the best weights of a run as a native bundle, with thresholds tuned on validation.

The bundle's global threshold is where micro precision equals micro recall on the
validation split; its tuned thresholds (``--tuned`` at tag time) are best-F1 per head and,
for tags seen often enough, per tag, shrunk toward their head's. The validation metrics
at 0.5 and at the tuned thresholds go into the metadata.
"""

from pathlib import Path

import numpy as np

from furrytag_cli.core.tfruntime import tensorflow
from furrytag_cli.evaluation.metrics import evaluate_scores
from furrytag_cli.evaluation.scoreset import ScoreSet
from furrytag_cli.evaluation.tuning import break_even_threshold, tune_thresholds
from furrytag_cli.model.bundle import Bundle, save_bundle
from furrytag_cli.model.categories import RATING_HEAD
from furrytag_cli.model.network import build_model
from furrytag_cli.model.preprocess import PreprocessSpec
from furrytag_cli.training.config import TrainConfig
from furrytag_cli.training.data import DataSource, eval_dataset

BUNDLE = "bundle"


def inference_model(config: TrainConfig, source: DataSource, weights: list[np.ndarray]):
    """A float32 model (whatever policy trained it) holding ``weights``."""
    tensorflow()
    import keras

    keras.mixed_precision.set_global_policy("float32")
    model = build_model(
        config.model.backbone,
        config.model.input_size,
        source.categories,
        weights=None,
        hidden_units=config.model.hidden_units,
        dropout=config.model.dropout,
    )
    model.set_weights(weights)
    return model


def score_split(
    model, source: DataSource, split: str, spec: PreprocessSpec, batch_size: int
) -> ScoreSet:
    """The model's scores and the true labels of one split."""
    heads = source.categories.head_names
    y_true = {h: [] for h in heads}
    scores = {h: [] for h in heads}
    rating_true, rating_score = [], []
    predict = tensorflow().function(lambda x: model(x, training=False))
    for images, targets in eval_dataset(source, split, spec, batch_size=batch_size):
        outputs = predict(images)
        for head in heads:
            y_true[head].append(targets[head].numpy())
            scores[head].append(outputs[head].numpy())
        rating_true.append(targets[RATING_HEAD].numpy()[:, 0])
        rating_score.append(outputs[RATING_HEAD].numpy()[:, 0])
    return ScoreSet(
        tags=source.categories.heads,
        y_true={h: np.concatenate(y_true[h]) for h in heads},
        scores={h: np.concatenate(scores[h]) for h in heads},
        rating_true=np.concatenate(rating_true),
        rating_score=np.concatenate(rating_score),
        meta={"split": split},
    )


def _summary(evaluation, split: str) -> dict:
    """The few numbers worth keeping in the metadata."""
    summary = {"split": split, "images": evaluation.images}
    for name, metrics in evaluation.settings.items():
        summary[name] = {
            "micro": {k: round(v, 4) for k, v in vars(metrics.overall.micro).items()},
            "macro_f1": round(metrics.overall.macro.f1, 4),
            "heads_micro_f1": {h: round(g.micro.f1, 4) for h, g in metrics.heads.items()},
        }
    if evaluation.rating is not None:
        summary["rating_accuracy"] = round(evaluation.rating.accuracy, 4)
        summary["rating_best_cuts"] = [round(c, 4) for c in evaluation.rating.best_cuts]
    return summary


def export_bundle(
    config: TrainConfig,
    source: DataSource,
    weights: list[np.ndarray],
    run_dir: Path,
    *,
    batch_size: int,
    provenance: dict,
) -> Bundle:
    """Write ``RUN_DIR/bundle`` from ``weights``; tune thresholds on the validation split."""
    model = inference_model(config, source, weights)
    spec = PreprocessSpec(size=config.model.input_size)
    threshold, thresholds, metrics = 0.5, None, {}
    split = config.data.val_split
    if split and config.export.tune_thresholds:
        scores = score_split(model, source, split, spec, batch_size)
        tuned = tune_thresholds(
            scores, min_support=config.export.min_support, shrinkage=config.export.shrinkage
        )
        threshold = round(break_even_threshold(scores), 6)
        thresholds = tuned.to_dict()
        evaluation = evaluate_scores(
            scores, {"at_0.5": 0.5, "tuned": tuned}, rating_cuts=source.categories.rating.cuts
        )
        metrics = _summary(evaluation, split)
    bundle = Bundle(
        path=Path(run_dir) / BUNDLE,
        kind="native",
        name=config.name,
        backbone=config.model.backbone,
        categories=source.categories,
        preprocess=spec,
        threshold=threshold,
        thresholds=thresholds,
        metrics=metrics,
        provenance=provenance,
        implications=source.implications,
    )
    return save_bundle(model, Path(run_dir) / BUNDLE, bundle)
