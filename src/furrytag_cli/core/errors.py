"""The one exception family of furrytag.

Every error a user can cause or fix is a ``FurrytagError``; its message says what was
wrong and what to do. The CLI prints it as ``Error: <message>`` and exits 1 (2 for a
``UsageError``: an option or its value is wrong).
"""


class FurrytagError(Exception):
    """Base class of every error furrytag reports to users."""


class ConfigError(FurrytagError):
    """A config or metadata file is malformed or holds unknown keys or bad values."""


class UsageError(ConfigError):
    """A command-line option, or a profile holding options, is wrong (exit code 2)."""


class CategoryError(FurrytagError):
    """A category (tag list) file is malformed."""


class BundleError(FurrytagError):
    """A model bundle is missing, malformed, or disagrees with its weights."""


class DownloadError(FurrytagError):
    """A model could not be fetched, verified or unpacked."""


class IntegrityError(DownloadError):
    """A file's sha256 differs from the pinned or recorded one."""


class ArchiveError(DownloadError):
    """An archive is corrupt or holds unsafe members."""


class ExportError(FurrytagError):
    """A model cannot be exported, or its export is not what furrytag expects."""


class ImageError(FurrytagError):
    """An image file cannot be read or decoded."""


class OutputError(FurrytagError):
    """An output file or folder cannot be written."""


class DatasetError(FurrytagError):
    """A dataset (export, manifest, shards) is missing or malformed."""


class Interrupted(FurrytagError):
    """Long work stopped by Ctrl-C; the message says how to continue it (exit code 130)."""
