"""Looking at image files before decoding them, and decoding them with or without TensorFlow.

``inspect`` reads only the header: it rejects non-images, empty files and decompression
bombs, and picks the decoder. TensorFlow decodes plain JPEGs and PNGs (the fast path);
Pillow decodes the rest (CMYK JPEG, GIF, WebP, BMP, EXIF-rotated JPEG for native
bundles), always taking the first frame of animations.

``model_input`` does the same without TensorFlow (tagging on a CPU): plain JPEGs are
decoded by libjpeg-turbo through simplejpeg with TensorFlow's settings (fast integer
DCT, fancy upsampling), which gives the very pixels ``tf.io.decode_jpeg`` gives, at the
same reduced scales; PNGs by Pillow (lossless, so the same pixels, 16-bit samples
reduced to their high byte as TensorFlow does).

For native bundles (antialiased resizing) a JPEG at least twice the input size on its
short side per halving is decoded at 1/2, 1/4 or 1/8 scale by libjpeg's scaled IDCT,
which costs a fraction of a full decode and of the antialiased resize after it; the
input then differs from a full-size decode by about 0.2/255 on average. Legacy models
always get the original's full decode.
"""

import math
import stat
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image, ImageFile, ImageOps

from furrytag_cli.core.errors import ImageError
from furrytag_cli.model.preprocess import PreprocessSpec, preprocess_array
from furrytag_cli.model.resize import resize

ROUTE_TF = 0  # TensorFlow decodes it: a JPEG, or a PNG without transparency
ROUTE_TF_ALPHA = 1  # a PNG with transparency, composited on white by the pipeline
ROUTE_PILLOW = 2
JPEG_SCALES = (1, 2, 4, 8)
MAX_PIXELS = 100_000_000
FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP"})

# furrytag checks sizes itself, from the header, with a clearer message.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False
_EXIF_ORIENTATION = 0x0112


def inspect(path: Path, spec: PreprocessSpec, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Check ``path``'s header; return the decoder route and the JPEG scale index (into
    ``JPEG_SCALES``; 0 for full size). Raises ImageError with the reason."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"not a regular file (a {_kind(info.st_mode)})")
    if info.st_size == 0:
        raise ImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                fmt, mode, (width, height) = image.format, image.mode, image.size
                transparent = mode in ("RGBA", "LA", "PA") or "transparency" in image.info
                orientation = image.getexif().get(_EXIF_ORIENTATION, 1) if fmt == "JPEG" else 1
    except OSError as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise ImageError(f"cannot read: {exc.strerror}") from None
        raise ImageError("not a supported image (unrecognised or corrupt header)") from None
    except Exception as exc:
        raise ImageError(f"corrupt image header: {exc}") from None
    if fmt not in FORMATS:
        raise ImageError(f"unsupported image format {fmt}; supported: JPEG, PNG, GIF, WebP, BMP")
    if width * height > max_pixels:
        raise ImageError(
            f"image is {width}×{height} = {width * height / 1e6:.0f} Mpx, over the "
            f"{max_pixels / 1e6:.0f} Mpx limit (decompression bomb?)"
        )
    if fmt == "PNG":
        return (ROUTE_TF_ALPHA if transparent and spec.alpha == "white" else ROUTE_TF), 0
    if fmt == "JPEG" and mode in ("RGB", "L") and (not spec.exif or orientation == 1):
        return ROUTE_TF, jpeg_scale(width, height, spec)
    return ROUTE_PILLOW, 0


def jpeg_scale(width: int, height: int, spec: PreprocessSpec) -> int:
    """The index in ``JPEG_SCALES`` of the smallest decode that keeps the short side at
    least twice the input size (0, full size, for legacy models and plain bilinear)."""
    if spec.decoder == "legacy" or not spec.antialias:
        return 0
    fits = [i for i, scale in enumerate(JPEG_SCALES) if min(width, height) >= 2 * scale * spec.size]
    return fits[-1] if fits else 0


def decode_with_pillow(path: Path, spec: PreprocessSpec) -> np.ndarray:
    """Decode the first frame of ``path`` to uint8 RGB (H, W, 3) per ``spec``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image.seek(0)
                if spec.exif:
                    image = ImageOps.exif_transpose(image)
                image.load()
                return to_rgb(image, spec.alpha)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"cannot decode: {exc}") from None


def to_rgb(image: Image.Image, alpha: str) -> np.ndarray:
    """Convert any Pillow image to uint8 RGB; alpha dropped or composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Scale 16-bit samples down instead of clipping them at 255.
        wide = np.asarray(image, dtype=np.uint32)
        image = Image.fromarray((wide >> 8).clip(0, 255).astype(np.uint8), "L")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha and alpha == "white":
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        image = canvas
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _kind(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "special file")


def model_input(path: Path, spec: PreprocessSpec, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The model input of one file without TensorFlow: float32 (S, S, 3), the same values
    as the tf.data pipeline gives. Raises ImageError with the reason it cannot be read."""
    route, scale = inspect(path, spec, max_pixels)
    if route == ROUTE_PILLOW:
        return preprocess_array(decode_with_pillow(path, spec), spec)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror}") from None
    if data[:2] == b"\xff\xd8":
        try:
            image = decode_jpeg(data, JPEG_SCALES[scale])
        except ValueError:
            # libjpeg refused it (e.g. truncated): Pillow either reads it or tells why.
            image = decode_with_pillow(path, spec)
        return preprocess_array(image, spec)
    if route == ROUTE_TF_ALPHA:
        return preprocess_array(composite_on_white(_decode_rgba(path), spec), spec)
    # An opaque PNG (or any PNG for legacy models, alpha dropped); TensorFlow ignores EXIF there.
    return preprocess_array(decode_with_pillow(path, replace(spec, exif=False, alpha="drop")), spec)


def decode_jpeg(data: bytes, scale: int = 1) -> np.ndarray:
    """uint8 RGB pixels of a JPEG as ``tf.io.decode_jpeg(data, channels=3, ratio=scale)``
    gives them. Raises ValueError when libjpeg cannot decode it."""
    if scale == 1:
        return simplejpeg.decode_jpeg(data, "RGB", fastdct=True, fastupsample=False)
    height, width = simplejpeg.decode_jpeg_header(data)[:2]
    return simplejpeg.decode_jpeg(
        data,
        "RGB",
        fastdct=True,
        fastupsample=False,
        min_height=math.ceil(height / scale),
        min_width=math.ceil(width / scale),
        min_factor=scale,
    )


def _decode_rgba(path: Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                return np.asarray(image.convert("RGBA"), dtype=np.uint8)
    except Exception as exc:
        raise ImageError(f"cannot decode: {exc}") from None


def composite_on_white(rgba: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 RGBA (H, W, 4) → float32 (S, S, 3) in 0..255, composited on white after the
    resize, as the tf.data pipeline does: the premultiplied colour and the alpha are
    resized (linear, so this equals compositing first), then composited."""
    pixels = rgba.astype(np.float32)
    alpha = pixels[..., 3:] / np.float32(255.0)
    small = resize(
        np.concatenate([pixels[..., :3] * alpha, alpha], axis=-1),
        spec.size,
        antialias=spec.antialias,
    )
    return small[..., :3] + np.float32(255.0) * (np.float32(1.0) - small[..., 3:])
