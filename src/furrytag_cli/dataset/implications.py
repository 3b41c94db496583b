"""Which of a model's tags imply which: e621's active implications, closed transitively and
kept among the model's tags (``pantherine`` implies ``feline`` through ``felid``).

``dataset build`` writes the table into the dataset folder (``implications.json``),
``train`` copies it into the bundle's metadata, and captions use it to drop or add the
tags an image's other tags imply.
"""

import json
from collections.abc import Mapping
from pathlib import Path

from furrytag_cli.core.errors import DatasetError
from furrytag_cli.dataset.export_tables import read_relations
from furrytag_cli.dataset.tag_rules import TagResolver
from furrytag_cli.model.categories import CategorySet

IMPLICATIONS = "implications.json"

Table = dict[str, list[str]]


def implication_table(resolver: TagResolver) -> Table:
    """{tag: the other model tags it implies} for the model tags that imply any."""
    order = {tag: i for i, (_, tag) in enumerate(resolver.slots)}
    table = {}
    for tag in order:
        implied = (resolver.closure(tag) & order.keys()) - {tag}
        if implied:
            table[tag] = sorted(implied, key=order.__getitem__)
    return table


def read_implications(path: Path, categories: CategorySet) -> Table:
    """The table of ``categories`` from e621's ``tag_implications`` export (.csv or .csv.gz)."""
    return implication_table(TagResolver(categories, {}, read_relations(Path(path))))


def write_table(folder: Path, table: Mapping[str, list[str]]) -> Path:
    """Write ``table`` as ``folder/implications.json``."""
    target = Path(folder) / IMPLICATIONS
    target.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return target


def read_table(folder: Path, categories: CategorySet) -> Table | None:
    """The table a dataset folder holds, kept to ``categories``'s tags (None: it has none)."""
    path = Path(folder) / IMPLICATIONS
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read the implication table {path}: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(t, str) for t in v) for v in data.values()
    ):
        raise DatasetError(
            f"{path} is not an implication table ({{tag: [implied tags]}}); "
            "build the dataset again to rewrite it"
        )
    known = {tag for tags in categories.heads.values() for tag in tags}
    table = {
        tag: [t for t in implied if t in known] for tag, implied in data.items() if tag in known
    }
    return {tag: implied for tag, implied in table.items() if implied}
