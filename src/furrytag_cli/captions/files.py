"""Caption files read back: where an image's caption is and how it splits into tags."""

from dataclasses import dataclass
from pathlib import Path

from furrytag_cli.core.errors import UsageError


@dataclass(frozen=True)
class CaptionFiles:
    """How caption files are found beside their images and split into tags."""

    extension: str = ".txt"
    separator: str = ", "

    def __post_init__(self) -> None:
        if not self.separator:
            raise UsageError("--separator must not be empty; the default is ', '")

    def split(self, text: str) -> list[str]:
        mark = self.separator.strip() or self.separator
        return [word.strip() for word in text.strip().split(mark) if word.strip()]

    def read(self, image: Path) -> str | None:
        """The caption of ``image`` (``a.png.txt``, else ``a.txt``), None when it has none."""
        for candidate in (
            image.parent / f"{image.name}{self.extension}",
            image.with_suffix(self.extension),
        ):
            try:
                return candidate.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
        return None
