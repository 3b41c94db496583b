"""How a caption line is written from an image's kept tags: the comma-separated form LoRA
trainers read, with the rules dataset makers use.

In order: tags by score (or by head); ``implied`` drops a tag another kept tag implies
(``pantherine`` drops ``feline``) or adds the tags they imply; ``first`` tags move to the front;
``replace`` renames (or, to "", drops) tags; then ``prefix`` tags, the rating (``rating_tag``
at the start or end), the tags and ``suffix`` tags are joined with ``separator``, spaces
for underscores with ``underscores=False`` and ``\\(`` ``\\)`` with ``escape_parens``.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from furrytag_cli.captions.names import TagNames, tag_key
from furrytag_cli.core.errors import UsageError

ORDERS = ("score", "head")
RATING_PLACES = ("start", "end")
IMPLIED = ("drop", "add")
EXTENSIONS = (".txt", ".caption")


@dataclass(frozen=True)
class CaptionStyle:
    """The caption rules; ``check`` fits the tag names they mention to a model."""

    underscores: bool = True
    escape_parens: bool = False
    prefix: Sequence[str] = ()
    suffix: Sequence[str] = ()
    order: str = "score"
    replace: Mapping[str, str] = field(default_factory=dict)
    first: Sequence[str] = ()
    rating_tag: str | None = None
    rating_at: str = "start"
    separator: str = ", "
    extension: str = ".txt"
    implied: str | None = None
    implications: Mapping[str, Sequence[str]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # Any sequence of tags compares like the defaults (tuples).
        object.__setattr__(self, "prefix", tuple(self.prefix))
        object.__setattr__(self, "suffix", tuple(self.suffix))
        object.__setattr__(self, "first", tuple(self.first))
        object.__setattr__(self, "replace", {tag_key(k): v for k, v in self.replace.items()})
        extension = self.extension if self.extension.startswith(".") else f".{self.extension}"
        object.__setattr__(self, "extension", extension)
        choices = [
            ("--order", self.order, ORDERS),
            ("--rating-at", self.rating_at, RATING_PLACES),
            ("--caption-ext", self.extension, EXTENSIONS),
            ("--implied", self.implied, (None, *IMPLIED)),
        ]
        for option, value, allowed in choices:
            if value not in allowed:
                shown = ", ".join(a for a in allowed if a is not None)
                raise UsageError(f"{option} must be one of {shown}; received {value!r}")
        if self.rating_tag is not None and "{}" not in self.rating_tag:
            raise UsageError(
                "--rating-tag is a format where {} stands for the rating, e.g. '{}' "
                f"(safe, questionable, explicit) or 'rating:{{}}'; received {self.rating_tag!r}"
            )
        if not self.separator:
            raise UsageError("--separator must not be empty; the default is ', '")

    def check(
        self, tags: Sequence[str], implications: Mapping[str, Sequence[str]] | None
    ) -> "CaptionStyle":
        """This style for a model with ``tags``: the tags it names are the model's (any
        spelling), and ``implied`` has the model's ``implications`` ({tag: implied tags})."""
        names = TagNames(tags)
        first = names.resolve(self.first, "--first")
        olds = names.resolve(list(self.replace), "--replace")
        if self.implied is not None and not implications:
            raise UsageError(
                f"--implied {self.implied} needs an implication table, and this model has none: "
                "give e621's tag_implications export with --implications FILE"
            )
        return replace(
            self,
            first=first,
            replace=dict(zip(olds, self.replace.values())),
            implications=implications or {},
        )

    def format(self, tags: Mapping[str, Sequence[tuple[str, float]]], rating: str) -> str:
        """The caption of an image whose kept ``tags`` are {head: [(tag, score)], best first}."""
        rows = [pair for pairs in tags.values() for pair in pairs]
        if self.order == "score":
            rows.sort(key=lambda pair: -pair[1])
        names = [tag for tag, _ in rows]
        if self.implied == "drop":
            names = self._without_implied(names)
        elif self.implied == "add":
            names = self._with_implied(names)
        if self.first:
            present = set(names)
            front = [tag for tag in self.first if tag in present]
            names = front + [tag for tag in names if tag not in front]
        if self.replace:
            names = [self.replace.get(tag, tag) for tag in names]
            names = [tag for tag in names if tag]
        rated = [self.rating_tag.replace("{}", rating)] if self.rating_tag is not None else []
        before, after = (rated, []) if self.rating_at == "start" else ([], rated)
        words = [*self.prefix, *before, *names, *after, *self.suffix]
        if not self.underscores:
            words = [w.replace("_", " ") for w in words]
        if self.escape_parens:
            words = [w.replace("(", "\\(").replace(")", "\\)") for w in words]
        return self.separator.join(dict.fromkeys(words))

    def _without_implied(self, names: list[str]) -> list[str]:
        implications = self.implications
        implied = set()
        for tag in names:
            for parent in implications.get(tag, ()):
                # Two tags implying each other (a cycle) are kept both.
                if tag not in implications.get(parent, ()):
                    implied.add(parent)
        return [tag for tag in names if tag not in implied]

    def _with_implied(self, names: list[str]) -> list[str]:
        added = [parent for tag in names for parent in self.implications.get(tag, ())]
        return list(dict.fromkeys([*names, *added]))
