"""Real image files of every kind furrytag meets, good and bad, written by the tests."""

import io
from pathlib import Path

import numpy as np
from PIL import Image


def _pixels(seed: int, h: int = 48, w: int = 64, c: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, c)) * 255).astype(np.uint8)


def write_good_images(folder: Path) -> dict[str, Path]:
    """One image of each supported kind; returns name → path."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}

    def save(name, image, **kw):
        files[name] = folder / name
        image.save(files[name], **kw)

    save("photo.jpg", Image.fromarray(_pixels(1)), quality=92)
    save("alpha.png", Image.fromarray(_pixels(2, c=4), "RGBA"))
    save("gray.png", Image.fromarray(_pixels(3)[..., 0], "L"))
    save("cmyk.jpg", Image.fromarray(_pixels(4)).convert("CMYK"))
    save("deep16.png", Image.fromarray(_pixels(5)[..., 0].astype(np.uint16) * 257))
    palette = Image.fromarray(_pixels(6)).convert("P")
    save("palette.png", palette, transparency=0)
    save(
        "anim.gif",
        Image.fromarray(_pixels(7)),
        save_all=True,
        append_images=[Image.fromarray(_pixels(8))],
        duration=50,
    )
    save("still.webp", Image.fromarray(_pixels(9)))
    save("bitmap.bmp", Image.fromarray(_pixels(10)))
    exif = Image.Exif()
    exif[0x0112] = 6
    save("rotated.jpg", Image.fromarray(_pixels(11)), exif=exif.tobytes())
    return files


def write_bad_images(folder: Path) -> dict[str, Path]:
    """Files that must be reported and skipped; returns name → path."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(_pixels(20)).save(buffer, "JPEG")
    jpeg = buffer.getvalue()
    buffer = io.BytesIO()
    Image.fromarray(_pixels(21)).save(buffer, "PNG")
    png = buffer.getvalue()
    files = {
        "empty.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "truncated.png": png[: len(png) // 2],
        "notes.png": b"this is a text file, not a picture\n",
        "huge.png": _huge_png_header(),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths


def _huge_png_header() -> bytes:
    """A valid PNG header claiming 30000×30000 pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
