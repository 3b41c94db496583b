"""A folder of reviewed captions as labels: the tags in each image's caption file are its
true tags, so thresholds can be tuned to what one person keeps and removes.

Tags are matched to the model's ignoring case, spaces vs underscores and ``\\(`` escapes;
words that are no model tag (trigger words, a rating tag) are counted and ignored.
"""

from pathlib import Path

from furrytag_cli.captions.names import TagNames, tag_key
from furrytag_cli.captions.style import EXTENSIONS
from furrytag_cli.core.errors import DatasetError
from furrytag_cli.evaluation.scoring import LabelledImages, labelled_images
from furrytag_cli.model.categories import CategorySet
from furrytag_cli.tagging.discovery import discover


def caption_file(image: Path) -> Path | None:
    """The caption of ``image`` (``a.txt``, ``a.png.txt``, or ``.caption``), if any."""
    for extension in EXTENSIONS:
        for candidate in (image.parent / f"{image.name}{extension}", image.with_suffix(extension)):
            if candidate.is_file():
                return candidate
    return None


def read_caption_labels(folder: Path, categories: CategorySet) -> LabelledImages:
    """The images of ``folder`` (recursively) that have a caption file, labelled by it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(
            f"--labels-from-captions {folder} is not a folder; give the folder of images "
            "and their caption files"
        )
    names = TagNames(tag for head in categories.head_names for tag in categories.tags(head))
    rows = []
    for image in discover([str(folder)]).files:
        caption = caption_file(image)
        if caption is None:
            continue
        try:
            text = caption.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"cannot read caption {caption}: {exc}") from None
        words = [word for word in text.replace("\n", ",").split(",") if word.strip()]
        tags = [names.get(word) or tag_key(word) for word in words]
        rows.append((image, tags, None, caption))
    if not rows:
        raise DatasetError(
            f"no image in {folder} has a caption file beside it (image.txt or image.caption); "
            "caption them with furrytag tag -f txt and review them first"
        )
    return labelled_images(folder, rows, categories)
