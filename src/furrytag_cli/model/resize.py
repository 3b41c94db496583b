"""``tf.image.resize`` restated in numpy, so that tagging on a CPU needs no TensorFlow.

Two methods, each matching TensorFlow's float32 results to rounding:

- ``bilinear`` (``antialias=False``): TensorFlow's ``ResizeBilinear`` with half-pixel
  centres: each output pixel interpolates the two nearest source rows and columns,
  columns first, in float32, exactly as its kernel does (the original project's resize).
- antialiased bilinear (``antialias=True``): TensorFlow's ``ScaleAndTranslate`` with the
  triangle kernel stretched by the downscaling factor. Pillow's resampling of float
  ("F") images computes the same spans and normalised weights (in double precision),
  horizontal pass first as TensorFlow does, and releases the GIL while it works.
"""

import numpy as np
from PIL import Image


def resize(image: np.ndarray, size: int, *, antialias: bool) -> np.ndarray:
    """``image`` (H, W, C), any numeric dtype → float32 (size, size, C), like
    ``tf.image.resize(image, [size, size], antialias=antialias)``."""
    if antialias:
        return resize_antialiased(image, size)
    return resize_bilinear(image, size)


def _taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower and upper source indices and the float32 weight of the upper one."""
    scale = np.float32(in_size) / np.float32(out_size)
    centres = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(centres)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(centres).astype(np.int64), in_size - 1)
    return lower, upper, (centres - floor).astype(np.float32)


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear with half-pixel centres and no antialiasing (TensorFlow's ResizeBilinear)."""
    height, width = image.shape[:2]
    y0, y1, ylerp = _taps(height, size)
    x0, x1, xlerp = _taps(width, size)
    xlerp = xlerp[None, :, None]
    top, bottom = image[y0], image[y1]
    top_left = top[:, x0].astype(np.float32)
    top = top_left + (top[:, x1].astype(np.float32) - top_left) * xlerp
    bottom_left = bottom[:, x0].astype(np.float32)
    bottom = bottom_left + (bottom[:, x1].astype(np.float32) - bottom_left) * xlerp
    return top + (bottom - top) * ylerp[:, None, None]


def resize_antialiased(image: np.ndarray, size: int) -> np.ndarray:
    """Antialiased bilinear (TensorFlow's ScaleAndTranslate, triangle kernel)."""
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32), "F").resize(
                (size, size), Image.Resampling.BILINEAR
            ),
            dtype=np.float32,
        )
        for c in range(image.shape[2])
    ]
    return np.stack(planes, axis=-1)
