"""The confidence's scene terms: does the box move with the background, and does anything change in it?

Why: a tracker that has lost its target usually sits on a piece of background (the teacher on
``OTB_Human3``'s kerb, the student on the empty lawn after the README's dog has run out of view).
Its map can be sharp and its box can look like the exemplar, but the box then moves exactly as the
background does, and nothing inside it changes once the background's own motion is undone. Neither
the response map nor the box's looks can tell that; two small grey squares of consecutive frames can.

Per frame, with the *previous* frame's search region (a square of the search side at the previous
centre) cut from the previous frame and from this one at :data:`SIDE` pixels a side:

* the background's shift ``g`` is their phase correlation (``cv2.phaseCorrelate``, Hann window):
  the search region is ~16 target areas, so its dominant motion is the background's;
* ``bg_shift``: ``|g|`` in target sizes (``sqrt(w * h)``), the camera's motion around the target;
* ``box_vs_bg``: the box's move minus ``g``, in target sizes: ~0 for a box stuck to the background
  (both capped at 1: one jump is the ``jump`` term's business);
* ``box_change``: ``min(d, 30) / 30``, ``d`` the mean absolute grey difference inside the previous
  box once the previous square is shifted by ``g``: a moving or deforming target changes its
  pixels, a patch of static background does not (the dog clip's empty lawn: d 0.0-0.4 against 13-16 on
  the dog). Capped because past ~30 grey levels it measures the texture, not the motion.

Chosen on the training roots out of sample among other forms (``experiments/motion_cue.py``:
``log(1 + d)``, ``d`` over the whole square's change or over the box's grey spread, the ratio
``bg / (bg + rel)``); the fit weighs them per network (weights/MODEL_CARD.md has the table).

Cost: two 64-pixel warps, one 64-pixel phase correlation and a shift: 0.11 ms alone, 0.22 ms a
frame in the tracking loop (student v5 on onnxruntime, 1.81 against 1.58 ms per update, interleaved).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..geometry import square_crop_matrix

#: Side in pixels of the grey squares the terms are measured on.
SIDE = 64
#: Names of :meth:`SceneProbe.step`'s terms, in order (the tail of ``confidence.FEATURES``).
TERMS = ("bg_shift", "box_vs_bg", "box_change")
#: Cap, in target sizes, on the two motion terms.
MOTION_CAP = 1.0
#: Cap, in grey levels, on the change inside the box (``box_change`` is the change over it).
CHANGE_CAP = 30.0


def grey_square(image: np.ndarray, center: np.ndarray, side: float, fill: np.ndarray,
                out: int = SIDE) -> np.ndarray:
    """``(out, out)`` float32 grey square of ``side`` frame pixels at ``center`` of an RGB ``uint8``
    frame (bilinear; outside the frame ``fill``, the tracker's mean colour, as in its search crops)."""
    border = tuple(float(v) for v in np.asarray(fill, dtype=np.float64).reshape(3))
    patch = cv2.warpAffine(image, square_crop_matrix(center, side, out), (out, out),
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=border)
    return cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY).astype(np.float32)


def box_slices(size: np.ndarray, side: float, out: int = SIDE) -> tuple[slice, slice]:
    """``(rows, cols)`` of a box of ``size`` (``w, h``) frame pixels at the centre of a square of
    ``side`` frame pixels sampled at ``out`` pixels a side (at least one pixel each way)."""
    scale, mid = side / out, out / 2.0
    half_w, half_h = float(size[0]) / scale / 2.0, float(size[1]) / scale / 2.0
    return (slice(max(int(mid - half_h), 0), max(int(math.ceil(mid + half_h)), 1)),
            slice(max(int(mid - half_w), 0), max(int(math.ceil(mid + half_w)), 1)))


def shift_square(square: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``square`` moved by ``(dx, dy)`` pixels (bilinear, edges repeated): the previous square with
    the background's shift undone."""
    n = square.shape[0]
    return cv2.warpAffine(square, np.float32([[1, 0, dx], [0, 1, dy]]), (n, n), borderMode=cv2.BORDER_REPLICATE)


class SceneProbe:
    """The scene terms of consecutive frames: :meth:`remember` a frame's state, then :meth:`step`
    with the next frame gives :data:`TERMS` and remembers that frame in turn."""

    _window = cv2.createHanningWindow((SIDE, SIDE), cv2.CV_32F)

    def __init__(self) -> None:
        self._patch: np.ndarray | None = None
        self._center = np.zeros(2)
        self._size = np.ones(2)
        self._side = 1.0

    def remember(self, image: np.ndarray, center: np.ndarray, size: np.ndarray, side: float,
                 fill: np.ndarray) -> None:
        """Keep this frame's square of ``side`` at ``center`` and the box (``center``, ``size``)."""
        self._center, self._size = np.array(center, dtype=np.float64), np.array(size, dtype=np.float64)
        self._side = side
        self._patch = grey_square(image, self._center, side, fill)

    def step(self, image: np.ndarray, center: np.ndarray, size: np.ndarray, side: float,
             fill: np.ndarray) -> tuple[float, float, float]:
        """:data:`TERMS` for the box (``center``, ``size``) the tracker chose in ``image``, against the
        remembered frame; then remembers this frame with the search ``side`` of the next one.
        Without a remembered frame, a still scene: ``(0, 0, 0)``."""
        if self._patch is None:
            self.remember(image, center, size, side, fill)
            return 0.0, 0.0, 0.0
        now = grey_square(image, self._center, self._side, fill)
        (dx, dy), _ = cv2.phaseCorrelate(self._patch, now, self._window)
        if not (math.isfinite(dx) and math.isfinite(dy)):
            dx = dy = 0.0
        scale = self._side / SIDE                      # frame pixels per square pixel
        target = math.sqrt(max(float(self._size[0]) * float(self._size[1]), 1.0))
        gx, gy = dx * scale, dy * scale
        bx, by = float(center[0]) - float(self._center[0]), float(center[1]) - float(self._center[1])
        box = box_slices(self._size, self._side)
        change = float(cv2.absdiff(now[box], shift_square(self._patch, dx, dy)[box]).mean())
        terms = (min(math.hypot(gx, gy) / target, MOTION_CAP),
                 min(math.hypot(bx - gx, by - gy) / target, MOTION_CAP),
                 min(change, CHANGE_CAP) / CHANGE_CAP)
        self.remember(image, center, size, side, fill)
        return terms
