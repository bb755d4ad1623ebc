"""The box head's per-frame post-processing (SiamFC++, Xu et al. 2020), kept apart from the tracker
class so it is a pure function of the head's output and testable on hand-made maps.

One search crop, centred on the last position, gives per response cell a classification logit, a
quality logit and the distances to the four box edges (``siamtrack.models.heads.BOX_OUTPUTS``).
Each cell's box is penalised for changing the target's size and aspect ratio, the score
``cls * quality * penalty`` is blended with a cosine window, and the best cell's box is the
answer. The tracker then moves the centre there and damps the size change (:func:`damped_size`).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ..geometry import cell_offsets, hann_window
from .confidence import sigmoid


class BoxPick(NamedTuple):
    """The chosen cell's box in search-crop pixels, relative to the crop centre, and its scores."""

    dx: float           # box centre offset from the crop centre
    dy: float
    w: float            # box size
    h: float
    score: float        # sigmoid(cls) * sigmoid(quality) at the chosen cell, in [0, 1]
    penalty: float      # the size/ratio change penalty at the chosen cell, in (0, 1]
    cell: int           # flat index of the chosen cell


def _change(r: np.ndarray) -> np.ndarray:
    return np.maximum(r, 1.0 / r)


def _padded_size(w: np.ndarray | float, h: np.ndarray | float) -> np.ndarray:
    """SiamFC++'s size measure: the side of the square of the context-padded box."""
    pad = (w + h) * 0.5
    return np.sqrt((w + pad) * (h + pad))


@functools.lru_cache(maxsize=8)
def peak_window(side: int) -> np.ndarray:
    """SiamFC++'s cosine window, peak 1 (SiamFC's :func:`~siamtrack.geometry.hann_window` sums to 1);
    cached per side, read-only."""
    window = hann_window(side)
    window = (window / window.max()).astype(np.float32)
    window.setflags(write=False)
    return window


def pick_box(out: np.ndarray, target_wh: tuple[float, float], stride: int, offset: float,
             window: np.ndarray, penalty_k: float, window_influence: float) -> BoxPick:
    """Choose the box of one ``(6, r, r)`` box-head output.

    ``target_wh`` is the current target size in search-crop pixels; ``window`` an ``(r, r)`` cosine
    window (peak 1). Non-finite network outputs score 0 and keep the previous box (``dx = dy = 0``).
    """
    out = np.asarray(out, dtype=np.float64)
    r = out.shape[-1]
    score = sigmoid(out[0]) * sigmoid(out[1])
    left, top, right, bottom = out[2], out[3], out[4], out[5]
    grid = cell_offsets(r, stride, offset)
    cx = grid[None, :] + (right - left) / 2.0
    cy = grid[:, None] + (bottom - top) / 2.0
    w = np.maximum(left + right, 1e-3)
    h = np.maximum(top + bottom, 1e-3)
    tw, th = max(float(target_wh[0]), 1e-3), max(float(target_wh[1]), 1e-3)
    size_change = _change(_padded_size(w, h) / _padded_size(tw, th))
    ratio_change = _change((tw / th) / (w / h))
    penalty = np.exp(-(ratio_change * size_change - 1.0) * penalty_k)
    pscore = penalty * score * (1.0 - window_influence) + window * window_influence
    pscore = np.nan_to_num(pscore, nan=-np.inf)
    best = int(pscore.argmax())
    values = [float(v.flat[best]) for v in (cx, cy, w, h, score, penalty)]
    if not all(np.isfinite(values)):
        return BoxPick(0.0, 0.0, tw, th, 0.0, 1.0, best)
    return BoxPick(*values, cell=best)


def damped_size(current: np.ndarray, picked: np.ndarray, pick: BoxPick, lr: float) -> np.ndarray:
    """SiamFC++'s size update: move towards the picked size by ``lr * penalty * score``, so an
    unsure or implausible box changes the size little."""
    rate = lr * pick.penalty * pick.score
    return current * (1.0 - rate) + picked * rate
