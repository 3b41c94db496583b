"""One-line notices on stderr, the way every part of furrytag speaks outside progress bars."""

import os
import sys


def notice(message: str) -> None:
    """Print a one-line notice on stderr (the default ``notify`` of engines)."""
    print(f"furrytag: {message}", file=sys.stderr, flush=True)


def printable(text: os.PathLike | str) -> str:
    """``text`` (a path or message) on one printable line, for stderr and report rows.

    Bytes that are not UTF-8 read as ``\\xff`` (as paths in JSON output do); line breaks,
    tabs and other invisible characters as ``\\n``, ``\\t``, ``\\x1b``, ``\\u2028``.
    """
    decoded = os.fsencode(text).decode("utf-8", "backslashreplace")
    if decoded.isprintable():
        return decoded
    return "".join(c if c.isprintable() else _escape(c) for c in decoded)


def _escape(char: str) -> str:
    named = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char)
    if named:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
