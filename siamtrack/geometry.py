"""Box conventions and square crops shared by the tracker and the training-pair sampler.

Conventions (the one place they are defined):

* A box is ``[x, y, w, h]`` in 0-based continuous pixel coordinates: it covers ``[x, x + w)``, so
  pixel ``i`` spans ``[i, i + 1)`` and its centre is at ``i + 0.5``. The box centre is
  ``(x + w / 2, y + h / 2)``.
* Images are RGB ``uint8`` ``(H, W, 3)`` numpy arrays; BGR exists only inside OpenCV I/O
  (``siamtrack.io``) and the OpenCV baselines.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import cv2
import numpy as np

from .config import CONTEXT


def box_to_center(box: Sequence[float]) -> np.ndarray:
    """``[x, y, w, h]`` -> ``[cx, cy, w, h]``."""
    x, y, w, h = (float(v) for v in box)
    return np.array([x + w / 2.0, y + h / 2.0, w, h], dtype=np.float64)


def context_size(w: float, h: float, context: float = CONTEXT) -> float:
    """Side of SiamFC's square exemplar region: ``sqrt((w + p)(h + p))`` with ``p = context (w + h)``."""
    p = context * (w + h)
    return math.sqrt((w + p) * (h + p))


def square_crop_matrix(center: Sequence[float], size: float, out_size: int,
                       origin: Sequence[float] = (0.0, 0.0)) -> np.ndarray:
    """``cv2.warpAffine``'s inverse map (``WARP_INVERSE_MAP``) for the square of side ``size`` centred
    at ``center``, resized to ``out_size``, in the coordinates of an image whose top-left pixel is
    ``origin`` of the full frame (a region cut out of it)."""
    if size <= 0 or not math.isfinite(size):
        raise ValueError(f"crop size must be positive and finite, got {size}")
    scale = size / out_size
    # destination pixel u (centre u + 0.5) maps to source coordinate cx + (u + 0.5 - out/2) * scale;
    # warpAffine indexes pixel centres at integers, hence the -0.5 on both sides.
    tx = center[0] - 0.5 + (0.5 - out_size / 2.0) * scale - origin[0]
    ty = center[1] - 0.5 + (0.5 - out_size / 2.0) * scale - origin[1]
    return np.array([[scale, 0.0, tx], [0.0, scale, ty]], dtype=np.float64)


def crop_square(image: np.ndarray, center: Sequence[float], size: float, out_size: int,
                border_value: Sequence[float] | None = None,
                interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Cut the square of side ``size`` centred at ``center = (cx, cy)`` and resize it to ``out_size``.

    One ``cv2.warpAffine``: pixels outside the image take ``border_value`` (SiamFC pads with the
    image's mean colour). Returns ``(out_size, out_size, C)`` with the image's dtype.
    """
    matrix = square_crop_matrix(center, size, out_size)
    if border_value is None:
        border_value = image.reshape(-1, image.shape[2] if image.ndim == 3 else 1).mean(0)
    border = tuple(float(v) for v in np.atleast_1d(border_value))
    return cv2.warpAffine(image, matrix, (out_size, out_size),
                          flags=interpolation | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border)


def crop_squares(image: np.ndarray, center: Sequence[float], sizes: Sequence[float], out_size: int,
                 border_value: Sequence[float] | None = None) -> np.ndarray:
    """The squares of sides ``sizes`` centred at ``center``, resized to ``out_size``, as one planar
    ``(len(sizes), 3, out_size, out_size)`` uint8 batch: the networks' input layout.

    Per size, the same pixels as :func:`crop_square` (a grey level apart where OpenCV's fixed-point
    source coordinates round the other way), made faster for the per-frame search: OpenCV's
    bilinear ``warpAffine`` has vector code for 4-channel images, not for 3, so the region all crops
    read is converted to RGBA once and every crop warped from it (measured on 2 cores, 3 crops of
    255: 1.38 ms as 3-channel warps, 0.97 ms like this), and ``cv2.split`` writes the planes
    straight into the batch, so no transpose is left for the network. ``image`` is RGB ``uint8``
    ``(H, W, 3)``.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    sizes = [float(s) for s in sizes]
    if not sizes or min(sizes) <= 0 or not all(math.isfinite(s) for s in sizes):
        raise ValueError(f"crop sizes must be positive and finite, got {sizes}")
    height, width = image.shape[:2]
    # every source pixel a crop can read, plus one for bilinear taps: outside it the crops read the
    # border colour, exactly as when warping the whole frame
    half = max(sizes) / 2.0
    x0 = min(width - 1, max(0, math.floor(center[0] - half) - 1))
    y0 = min(height - 1, max(0, math.floor(center[1] - half) - 1))
    x1 = max(x0 + 1, min(width, math.ceil(center[0] + half) + 2))
    y1 = max(y0 + 1, min(height, math.ceil(center[1] + half) + 2))
    region = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2RGBA)
    if border_value is None:
        border_value = image.reshape(-1, 3).mean(0)
    border = tuple(float(v) for v in np.asarray(border_value, dtype=np.float64).reshape(3)) + (0.0,)
    batch = np.empty((len(sizes), 3, out_size, out_size), dtype=np.uint8)
    rgba = np.empty((out_size, out_size, 4), dtype=np.uint8)
    alpha = np.empty((out_size, out_size), dtype=np.uint8)
    for k, size in enumerate(sizes):
        cv2.warpAffine(region, square_crop_matrix(center, size, out_size, origin=(x0, y0)),
                       (out_size, out_size), dst=rgba,
                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=border)
        cv2.split(rgba, [batch[k, 0], batch[k, 1], batch[k, 2], alpha])
    return batch


def cell_offsets(size: int, stride: int, offset: float) -> np.ndarray:
    """Search-crop pixel position (either axis) of each response cell's centre, relative to the crop
    centre: ``(i - (size - 1) / 2) * stride + offset`` (stride and offset: ``siamtrack.models.geometry``).
    The box head's training targets and its tracking loop both map cells to pixels with this."""
    return (np.arange(size, dtype=np.float64) - (size - 1) / 2.0) * stride + offset


def peak_displacement(row: int, col: int, side: int, stride: int, response_up: int, offset: float,
                      crop_px: float, instance_sz: int) -> np.ndarray:
    """Frame-pixel ``(dx, dy)`` of an upsampled response peak at ``(row, col)`` of a ``side`` map
    from its crop's centre, for a crop covering ``crop_px`` frame pixels; ``offset`` is the
    network's half-cell shift (``siamtrack.models.geometry``). The one formula for the tracking
    step and re-detection, so the two cannot disagree on where a peak is."""
    disp = np.array([col, row], dtype=np.float64) - (side - 1) / 2.0
    return (disp * stride / response_up + offset) * crop_px / instance_sz


def response_cell(displacement: np.ndarray, side: int, stride: int, offset: float, crop_px: float,
                  instance_sz: int) -> tuple[float, float]:
    """``(row, col)`` position, in cells of a ``side`` x ``side`` response map (not upsampled), of a
    point ``displacement`` frame pixels ``(dx, dy)`` from the crop's centre, clipped into the map:
    :func:`peak_displacement` run backwards (fractional: a box between two cells is read between
    them), so the appearance term reads the search features at the very place the tracker moved to."""
    centre, last = (side - 1) / 2.0, side - 1.0

    def to_cell(pixels: float) -> float:  # plain floats: two numbers a frame, numpy would cost ~30 us
        cell = (pixels * instance_sz / crop_px - offset) / stride + centre
        return centre if math.isnan(cell) else min(max(cell, 0.0), last)

    dx, dy = (float(d) for d in displacement)
    return to_cell(dy), to_cell(dx)


@functools.lru_cache(maxsize=16)
def _cubic_rows(size: int, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """``(U, U.T)``: OpenCV's ``INTER_CUBIC`` resize of ``size`` samples to ``size * factor`` as a
    ``(size * factor, size)`` float32 matrix (the resize of the identity: the resize is linear)."""
    rows = cv2.resize(np.eye(size, dtype=np.float32), (size, size * factor), interpolation=cv2.INTER_CUBIC)
    rows.setflags(write=False)
    cols = np.ascontiguousarray(rows.T)
    cols.setflags(write=False)
    return rows, cols


def upsample_response(response: np.ndarray, factor: int) -> np.ndarray:
    """A square ``(r, r)`` response map upsampled ``factor`` times, bicubic, as float32: the values of
    ``cv2.resize(response, (r * factor,) * 2, interpolation=cv2.INTER_CUBIC)`` (to float rounding,
    ~5e-7 on maps of height 3), computed as ``U @ response @ U.T`` with a cached ``U``, because the
    per-frame resize of a 21x21 map to 168x168 took ~45 us (~80 us right after the network, with
    cold caches), the two small matrix products ~15 us. The tracking step and re-detection both
    upsample with this, so they cannot disagree on where a peak is."""
    response = np.asarray(response, dtype=np.float32)
    if response.ndim != 2 or response.shape[0] != response.shape[1]:
        raise ValueError(f"expected a square (r, r) response map, got shape {response.shape}")
    rows, cols = _cubic_rows(response.shape[0], int(factor))
    return rows @ (response @ cols)


def hann_window(size: int) -> np.ndarray:
    """Normalised 2-D cosine window (sums to 1)."""
    h = np.hanning(size)
    window = np.outer(h, h)
    return window / window.sum()


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of ``[x, y, w, h]`` boxes, ``(N, 4)`` each."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, 0], b[:, 0])
    y1 = np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
