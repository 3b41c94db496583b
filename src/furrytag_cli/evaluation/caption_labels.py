"""A folder of reviewed captions as labels: the tags in each image's caption file are its
true tags, so thresholds can be tuned to what one person keeps and removes.

Tags are matched to the model's ignoring case, spaces vs underscores and ``\\(`` escapes;
words that are no model tag (trigger words, a rating tag) are counted and ignored.
"""

from pathlib import Path

from furrytag_cli.captions.files import CaptionFiles
from furrytag_cli.captions.names import TagNames, tag_key
from furrytag_cli.core.errors import DatasetError
from furrytag_cli.evaluation.scoring import LabelledImages, labelled_images
from furrytag_cli.model.categories import CategorySet
from furrytag_cli.tagging.discovery import discover


def read_caption_labels(
    folder: Path, categories: CategorySet, files: CaptionFiles = CaptionFiles()
) -> LabelledImages:
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
        text = files.read(image)
        if text is None:
            continue
        tags = [names.get(word) or tag_key(word) for word in files.split(text)]
        rows.append((image, tags, None, image))
    if not rows:
        raise DatasetError(
            f"no image in {folder} has a caption file beside it (image{files.extension}); "
            "caption them with furrytag tag -f txt and review them first (--caption-ext and "
            "--separator say how they are written)"
        )
    return labelled_images(folder, rows, categories)
