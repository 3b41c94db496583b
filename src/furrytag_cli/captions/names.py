"""Tag names as people write them: ``Domestic Cat``, ``domestic cat`` and ``domestic_cat``
are one tag. Options that name tags (exclusions, replacements, tags put first) and caption
files read back as labels are matched to the model's tags this way."""

from collections.abc import Iterable, Mapping, Sequence

from furrytag_cli.core.errors import UsageError
from furrytag_cli.core.schema import did_you_mean


def tag_key(name: str) -> str:
    """The form two names of one tag share: lowercase, underscores for spaces, no escapes."""
    name = name.strip().replace("\\(", "(").replace("\\)", ")")
    return "_".join(name.lower().split())


class TagNames:
    """A model's tag vocabulary, looked up by any spelling of a tag."""

    def __init__(self, tags: Iterable[str]):
        self.tags = list(dict.fromkeys(tags))
        self.by_key: Mapping[str, str] = {tag_key(t): t for t in self.tags}

    def get(self, name: str) -> str | None:
        """The model's tag ``name`` stands for, or None."""
        return self.by_key.get(tag_key(name))

    def resolve(self, names: Sequence[str], option: str) -> list[str]:
        """The model's tags ``names`` (given with ``option``) stand for; unknown names are
        a usage error with the closest tag."""
        resolved = []
        for name in names:
            tag = self.get(name)
            if tag is None:
                raise UsageError(
                    f"{option} names unknown tag {name!r}"
                    f"{did_you_mean(tag_key(name), self.tags)}; give one of the model's tags"
                )
            resolved.append(tag)
        return resolved
