"""Box conventions and square crops shared by the tracker and the training-pair sampler.

Conventions (the one place they are defined):

* A box is ``[x, y, w, h]`` in 0-based continuous pixel coordinates: it covers ``[x, x + w)``, so
  pixel ``i`` spans ``[i, i + 1)`` and its centre is at ``i + 0.5``. The box centre is
  ``(x + w / 2, y + h / 2)``.
* Images are RGB ``uint8`` ``(H, W, 3)`` numpy arrays; BGR exists only inside OpenCV I/O
  (``siamtrack.io``) and the OpenCV baselines.
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np


def box_to_center(box: Sequence[float]) -> np.ndarray:
    """``[x, y, w, h]`` -> ``[cx, cy, w, h]``."""
    x, y, w, h = (float(v) for v in box)
    return np.array([x + w / 2.0, y + h / 2.0, w, h], dtype=np.float64)


def center_to_box(cbox: Sequence[float]) -> np.ndarray:
    """``[cx, cy, w, h]`` -> ``[x, y, w, h]``."""
    cx, cy, w, h = (float(v) for v in cbox)
    return np.array([cx - w / 2.0, cy - h / 2.0, w, h], dtype=np.float64)


def context_size(w: float, h: float, context: float = 0.5) -> float:
    """Side of SiamFC's square exemplar region: ``sqrt((w + p)(h + p))`` with ``p = context (w + h)``."""
    p = context * (w + h)
    return math.sqrt((w + p) * (h + p))


def crop_square(image: np.ndarray, center: Sequence[float], size: float, out_size: int,
                border_value: Sequence[float] | None = None,
                interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Cut the square of side ``size`` centred at ``center = (cx, cy)`` and resize it to ``out_size``.

    One ``cv2.warpAffine``: pixels outside the image take ``border_value`` (SiamFC pads with the
    image's mean colour). Returns ``(out_size, out_size, C)`` with the image's dtype.
    """
    if size <= 0 or not math.isfinite(size):
        raise ValueError(f"crop size must be positive and finite, got {size}")
    scale = size / out_size
    # destination pixel u (centre u + 0.5) maps to source coordinate cx + (u + 0.5 - out/2) * scale;
    # warpAffine indexes pixel centres at integers, hence the -0.5 on both sides.
    tx = center[0] - 0.5 + (0.5 - out_size / 2.0) * scale
    ty = center[1] - 0.5 + (0.5 - out_size / 2.0) * scale
    matrix = np.array([[scale, 0.0, tx], [0.0, scale, ty]], dtype=np.float64)
    if border_value is None:
        border_value = image.reshape(-1, image.shape[2] if image.ndim == 3 else 1).mean(0)
    border = tuple(float(v) for v in np.atleast_1d(border_value))
    return cv2.warpAffine(image, matrix, (out_size, out_size),
                          flags=interpolation | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border)


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
