"""The options ``tag`` and ``retag`` share, declared once (``shared_options`` gives them to
both): how scores become tags, the output, the caption rules, and ``--profile`` files
holding any of them (flags given on the command line win)."""

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from furrytag_cli.cli.conventions import caption_options, split_commas
from furrytag_cli.core.errors import UsageError

Format = Literal["jsonl", "json", "csv", "txt"]

Profile = Annotated[
    Path | None,
    typer.Option(
        help="YAML file of any of these options (e.g. prefix, exclude_tags, replace, "
        "threshold); options given here on the command line win over it.",
    ),
]
Fmt = Annotated[
    Format | None,
    typer.Option(
        "--format",
        "-f",
        help="Output format. Default: from the -o name (.json, .csv), else jsonl "
        "(txt writes a caption beside each image).",
    ),
]
# Read as text: a path, or (for tag --ray) an object-store URI, whose "//" a Path would merge.
Output = Annotated[
    str | None, typer.Option("--output", "-o", help="Output file (default or '-': stdout).")
]
OutputDir = Annotated[
    Path | None, typer.Option(help="txt: write captions here, mirroring the input tree.")
]
AllScores = Annotated[
    bool, typer.Option("--all-scores", help="JSON/JSONL: include every tag's score.")
]
Long = Annotated[bool, typer.Option("--long", help="CSV: one row per (image, tag, score).")]
Underscores = Annotated[bool, typer.Option(help="txt: keep underscores in tags.")]
EscapeParens = Annotated[bool, typer.Option("--escape-parens", help=r"txt: write ( ) as \( \).")]
Prefix = Annotated[
    list[str], typer.Option(help="txt: tags put first, e.g. a trigger word (repeatable or a,b).")
]
Suffix = Annotated[list[str], typer.Option(help="txt: tags put last (repeatable or a,b).")]
Order = Annotated[
    Literal["score", "head"], typer.Option(help="txt: order tags by score or by head.")
]
Replace = Annotated[
    list[str],
    typer.Option(
        help="txt: write tag OLD as NEW, OLD=NEW (repeatable or a=b,c=d); an empty NEW drops "
        "OLD. Case and space vs underscore do not matter."
    ),
]
First = Annotated[
    list[str], typer.Option(help="txt: these tags first when present (repeatable or a,b).")
]
RatingTag = Annotated[
    str | None,
    typer.Option(
        help="txt: add the rating as a tag; {} stands for safe/questionable/explicit: '{}', "
        "'rating:{}'."
    ),
]
RatingAt = Annotated[Literal["start", "end"], typer.Option(help="txt: where the rating tag goes.")]
CaptionExt, Separator = caption_options("txt")
Implied = Annotated[
    Literal["drop", "add"] | None,
    typer.Option(
        help="txt: drop a tag another kept tag implies (pantherine drops feline), or add the "
        "implied tags; needs the model's implication table or --implications."
    ),
]
Implications = Annotated[
    Path | None,
    typer.Option(
        help="e621's tag_implications export (.csv or .csv.gz) for --implied, for models "
        "without an implication table."
    ),
]
ExcludeTags = Annotated[
    list[str],
    typer.Option(help="Tags never to output (repeatable or a,b; any case, spaces or _)."),
]
Threshold = Annotated[
    float | None, typer.Option(help="Keep tags scoring above this (overrides tuned thresholds).")
]
HeadThreshold = Annotated[
    list[str], typer.Option(help="Per-head threshold, HEAD=VALUE (repeatable or a=1,b=2).")
]
TunedThresholds = Annotated[
    bool, typer.Option(help="Use the bundle's tuned per-tag thresholds when present.")
]
Thresholds = Annotated[
    Path | None,
    typer.Option(
        help="Tuned thresholds from this YAML/JSON file (as evaluate --save-thresholds "
        "writes); used instead of the bundle's."
    ),
]
TopK = Annotated[int | None, typer.Option(help="Keep at most K tags per head.")]
MaxTags = Annotated[
    int | None,
    typer.Option(help="Keep at most N tags per image (after --top-k), the highest scores."),
]
RatingCuts = Annotated[
    str | None, typer.Option(help="Rating cut points LOW,HIGH (default 1/3,2/3).")
]
Heads = Annotated[list[str], typer.Option(help="Only these heads (repeatable or species,body).")]
SkipExisting = Annotated[bool, typer.Option(help="txt: skip images that already have a caption.")]
Overwrite = Annotated[
    bool, typer.Option(help="Replace an existing output, embeddings or caption files.")
]
AsJson = Annotated[
    bool,
    typer.Option(
        "--json", help="Print the run's summary as JSON on stdout (with -o FILE or -f txt)."
    ),
]


def _shared(
    fmt: Fmt = None,
    output: Output = None,
    output_dir: OutputDir = None,
    all_scores: AllScores = False,
    long: Long = False,
    underscores: Underscores = True,
    escape_parens: EscapeParens = False,
    prefix: Prefix = [],
    suffix: Suffix = [],
    order: Order = "score",
    replace: Replace = [],
    first: First = [],
    rating_tag: RatingTag = None,
    rating_at: RatingAt = "start",
    separator: Separator = ", ",
    caption_ext: CaptionExt = ".txt",
    implied: Implied = None,
    implications: Implications = None,
    exclude_tags: ExcludeTags = [],
    threshold: Threshold = None,
    head_threshold: HeadThreshold = [],
    tuned_thresholds: TunedThresholds = True,
    thresholds: Thresholds = None,
    top_k: TopK = None,
    max_tags: MaxTags = None,
    rating_cuts: RatingCuts = None,
    heads: Heads = [],
) -> None:
    """The options of ``tag`` and ``retag`` that ``shared_options`` gives them, in the order
    their --help lists them."""


def shared_options(after: str) -> Callable[[Callable], Callable]:
    """Give a command the options of ``_shared`` after its parameter ``after``; the command
    takes them as ``**shared``."""

    def give(command: Callable) -> Callable:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        at = [p.name for p in own].index(after) + 1
        shared = list(inspect.signature(_shared).parameters.values())
        command.__signature__ = signature.replace(parameters=own[:at] + shared + own[at:])
        return command

    return give


# What a profile may hold, and how its values read: the options above by parameter name
# (not --overwrite: replacing files takes the flag on the command line).
_KINDS = {
    "format": "str",
    "output_dir": "path",
    "all_scores": "bool",
    "long": "bool",
    "underscores": "bool",
    "escape_parens": "bool",
    "prefix": "list",
    "suffix": "list",
    "order": "str",
    "replace": "pairs",
    "first": "list",
    "rating_tag": "str",
    "rating_at": "str",
    "separator": "str",
    "caption_ext": "str",
    "implied": "str",
    "implications": "path",
    "exclude_tags": "list",
    "threshold": "float",
    "head_threshold": "pairs",
    "tuned_thresholds": "bool",
    "thresholds": "path",
    "top_k": "int",
    "max_tags": "int",
    "rating_cuts": "str",
    "heads": "list",
    "skip_existing": "bool",
}
_PARAMETER = {"format": "fmt"}


def with_profile(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (a command's parameters) with those left at their default taken from
    ``values["profile"]``, when given."""
    path = values.get("profile")
    if path is None:
        return values
    merged = dict(values)
    for key, value in read_profile(Path(path)).items():
        name = _PARAMETER.get(key, key)
        source = ctx.get_parameter_source(name)
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            merged[name] = value
    return merged


def read_profile(path: Path) -> dict[str, Any]:
    """A profile's options, each read as the command line would (paths relative to it)."""
    from furrytag_cli.core.errors import ConfigError
    from furrytag_cli.core.schema import check_keys, read_yaml

    data = read_yaml(path, "profile", error=UsageError)
    if data is None:
        return {}
    if isinstance(data, dict):
        data = {str(k).replace("-", "_"): v for k, v in data.items()}
    try:
        check_keys(data, allowed=_KINDS, where=f"profile {path}")
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return {key: _value(key, value, path) for key, value in data.items()}


def _value(key: str, value: Any, path: Path) -> Any:
    kind = _KINDS[key]
    where = f"profile {path}: {key}"
    if kind == "bool":
        if not isinstance(value, bool):
            raise UsageError(f"{where} must be true or false; received {value!r}")
        return value
    if kind in ("int", "float"):
        ok = isinstance(value, int) if kind == "int" else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            raise UsageError(f"{where} must be a number; received {value!r}")
        return float(value) if kind == "float" else value
    if kind == "pairs" and isinstance(value, dict):
        return [f"{k}={'' if v is None else v}" for k, v in value.items()]
    if kind in ("list", "pairs"):
        items = [value] if isinstance(value, (str, int, float)) else value
        if not isinstance(items, list) or not all(isinstance(i, (str, int, float)) for i in items):
            raise UsageError(
                f"{where} must be a list or a comma-separated text; received {value!r}"
            )
        return [str(i) for i in items]
    if isinstance(value, (dict, list)) or value is None:
        raise UsageError(f"{where} must be a text; received {value!r}")
    text = str(value)
    # A profile names its files relative to itself, so it can live beside the dataset.
    return path.parent / text if kind == "path" else text


def parse_replacements(items: list[str]) -> dict[str, str]:
    """``OLD=NEW`` items (also comma-separated) as {OLD: NEW}; NEW may be empty."""
    pairs = {}
    for item in split_commas(items):
        old, sep, new = item.partition("=")
        if not sep or not old.strip():
            raise UsageError(
                f"--replace takes OLD=NEW like 'domestic cat=cat' (NEW empty drops OLD); "
                f"received {item!r}"
            )
        pairs[old.strip()] = new.strip()
    return pairs


def selection(values: dict[str, Any]):
    """The ``TagOptions`` of the selection options in ``values``."""
    from furrytag_cli.model.categories import RatingSpec
    from furrytag_cli.model.thresholds import load_thresholds
    from furrytag_cli.tagging.predict import TagOptions, parse_head_thresholds

    cuts = values["rating_cuts"]
    return TagOptions(
        threshold=values["threshold"],
        head_thresholds=parse_head_thresholds(split_commas(values["head_threshold"])),
        tuned=values["tuned_thresholds"],
        thresholds=load_thresholds(values["thresholds"]) if values["thresholds"] else None,
        top_k=values["top_k"],
        max_tags=values["max_tags"],
        heads=split_commas(values["heads"]) or None,
        rating_cuts=RatingSpec.parse_cuts(cuts).cuts if cuts else None,
        exclude_tags=frozenset(split_commas(values["exclude_tags"])),
        all_scores=values["all_scores"],
    )


def caption_style(values: dict[str, Any]):
    """The ``CaptionStyle`` of the caption options in ``values`` (tag names not yet checked)."""
    from furrytag_cli.captions.style import CaptionStyle

    implications = values["implications"]
    if implications is not None and not Path(implications).is_file():
        raise UsageError(
            f"--implications {implications} does not exist; give e621's tag_implications "
            "export (tag_implications-DATE.csv or .csv.gz)"
        )
    return CaptionStyle(
        underscores=values["underscores"],
        escape_parens=values["escape_parens"],
        prefix=split_commas(values["prefix"]),
        suffix=split_commas(values["suffix"]),
        order=values["order"],
        replace=parse_replacements(values["replace"]),
        first=split_commas(values["first"]),
        rating_tag=values["rating_tag"],
        rating_at=values["rating_at"],
        separator=values["separator"],
        extension=values["caption_ext"],
        implied=values["implied"],
    )


def output_spec(values: dict[str, Any], **more):
    """The ``OutputSpec`` of the output options in ``values`` (``more``: a command's own)."""
    from furrytag_cli.distributed.sources import is_uri
    from furrytag_cli.tagging.job import OutputSpec, check_output, format_for

    if values["output"] is not None and is_uri(str(values["output"])):
        raise UsageError(
            f"-o {values['output']}: only tag --ray writes to an object store (its shards); "
            "give a local file, or '-' for standard output"
        )
    output = None if values["output"] in (None, "-") else Path(values["output"])
    spec = OutputSpec(
        fmt=values["fmt"] or format_for(output),
        output=output,
        output_dir=values["output_dir"],
        caption=caption_style(values),
        long=values["long"],
        skip_existing=values["skip_existing"],
        overwrite=values["overwrite"],
        **more,
    )
    check_output(spec)
    return spec


def fit_to_model(spec, values: dict[str, Any], bundle):
    """``spec`` with its caption rules checked against ``bundle``'s tags and given its
    implication table (``--implications`` or the bundle's)."""
    from dataclasses import replace

    if spec.fmt != "txt":
        return spec
    table = bundle.implications
    style = spec.caption
    if values["implications"] is not None and style.implied is not None:
        from furrytag_cli.dataset.implications import read_implications

        table = read_implications(Path(values["implications"]), bundle.categories)
    tags = [tag for head in bundle.categories.head_names for tag in bundle.categories.tags(head)]
    return replace(spec, caption=style.check(tags, table))
