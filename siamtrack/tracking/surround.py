"""The confidence's surround terms: does the chosen box look like this target, or like its surroundings?

Why: the appearance terms ask how much the box looks like the exemplar, on a scale the network sets
for every target alike, so a piece of background that the network finds target-like matches as well
as the target: the kerb beside ``OTB_Human3``'s walker (the teacher holds it from frame 10 with a
sharp map), the dark tool cabinet beside the README's dark-clad person. A linear discriminant fitted
on *this* target against *its own* surroundings asks the relative question, and those surroundings
are in the search features every frame already computes (long-term and discriminative trackers,
ATOM / DiMP, learn such a model online at their core; here it is only a confidence input).

How (:class:`SurroundModel`): in a search crop's features, the kernel-sized windows whose box
overlaps the target's by IoU :data:`POSITIVE_IOU` or more are the target, those overlapping by
:data:`BACKGROUND_IOU` or less its surroundings; each window's central half (``appearance_core``'s
part) is averaged down to :data:`POOL` x :data:`POOL` cells and normalised. A class-balanced ridge
regression of +1 on the target's windows and -1 on the surroundings', over the first frame's crop and
the last :data:`KEEP` crops of frames scored as found (one every :data:`EVERY` frames), gives weights
``w``; ``surround`` is ``w . v`` for the chosen box's window ``v``: about +1 on the target, -1 on
its surroundings. ``lookalike`` is the mean cosine of ``v`` with its :data:`LOOKALIKES` closest
surroundings windows: high when the box holds something that was beside the target (the teacher's
kerb), whatever the discriminant makes of it. Refitting on recent confident frames keeps up with a
target that changes its looks and with background that comes into view (the lawn the README's dog
runs off).

Cost: a refit adds one crop's windows to the running sums (``D x D`` with ``D`` = channels x 4) and
solves one ``D x D`` system, every :data:`EVERY` frames (student 0.5 ms, teacher 9 ms, 1 thread);
per frame the terms are one dot product and one product with the kept surroundings (up to 5 crops
of a few hundred windows, 70 us). In the loop: 0.15-0.25 ms a frame for student v5 on onnxruntime
(2 threads, medians, interleaved with the terms switched off).
Chosen on the training roots out of sample (``experiments/distractor_cue.py``; weights/MODEL_CARD.md).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: Names of :meth:`SurroundModel.terms`, the last of ``confidence.FEATURES``.
TERMS = ("surround", "lookalike")
#: Windows overlapping the box by at least this IoU are the target's.
POSITIVE_IOU = 0.7
#: Windows overlapping the box by at most this IoU are its surroundings'.
BACKGROUND_IOU = 0.1
#: A window's central half is averaged down to ``POOL x POOL`` cells (cost: ``D = channels * POOL**2``).
POOL = 2
#: Frames between refits (made on frames scored as found).
EVERY = 10
#: How many refit crops the model keeps besides the first frame's.
KEEP = 4
#: The ridge regression's L2 weight (on unit vectors).
RIDGE = 0.5
#: The look-alike term averages the cosines of this many closest surroundings windows.
LOOKALIKES = 5


def core_vectors(windows: np.ndarray, pool: int = POOL) -> np.ndarray:
    """``(N, C * pool**2)`` unit vectors of ``(N, C, k, k)`` windows: their central half (the
    ``k // 4`` border cut off, as ``appearance_core``) averaged down to ``pool x pool`` cells
    (``pool`` 0: the central half as it is, ``C * (k - 2 * (k // 4))**2`` values)."""
    k = windows.shape[-1]
    q = k // 4 if k >= 4 else 0
    core = np.asarray(windows[..., q:k - q, q:k - q], dtype=np.float64)
    n, c, h, w = core.shape
    if pool and h >= pool and w >= pool:
        core = core[..., :h - h % pool, :w - w % pool]
        core = core.reshape(n, c, pool, h // pool, pool, w // pool).mean(axis=(3, 5))
    elif pool:  # a map smaller than the pooled grid: one cell per channel, repeated
        core = np.repeat(core.mean(axis=(2, 3))[:, :, None], pool * pool, axis=2)
    core = core.reshape(n, int(np.prod(core.shape[1:])))
    return core / (np.linalg.norm(core, axis=1, keepdims=True) + 1e-12)


def cell_core_vectors(features: np.ndarray, kernel_side: int, pool: int = POOL) -> np.ndarray:
    """``(side, side, D)``: :func:`core_vectors` of the window at every response cell of search
    features ``(C, H, W)`` (``side = W - kernel_side + 1``), from one box mean of the features over
    the pooled cells' blocks instead of one window at a time (a refit reads every cell)."""
    k = kernel_side
    q = k // 4 if k >= 4 else 0
    block = (k - 2 * q) // pool if pool else 0
    side = features.shape[-1] - k + 1
    if block < 1:  # no pooling, or a core smaller than the grid: one window at a time
        windows = np.stack([features[:, r:r + k, c:c + k] for r in range(side) for c in range(side)])
        return core_vectors(windows, pool).reshape(side, side, -1)
    x = np.asarray(features, dtype=np.float32)
    rows, cols = x.shape[1] - block + 1, x.shape[2] - block + 1
    means = sum(x[:, i:i + rows, j:j + cols] for i in range(block) for j in range(block)) / (block * block)
    cells = [means[:, q + i * block:q + i * block + side, q + j * block:q + j * block + side]
             for i in range(pool) for j in range(pool)]
    vectors = np.stack(cells, axis=1).reshape(len(x) * pool * pool, side, side).transpose(1, 2, 0)
    return (vectors / (np.linalg.norm(vectors, axis=2, keepdims=True) + 1e-12)).astype(np.float64)


def window_boxes_iou(side: int, stride: float, offset: float, crop_center: np.ndarray, crop_px: float,
                     instance_sz: int, center: np.ndarray, size: np.ndarray) -> np.ndarray:
    """``(side, side)`` IoU with the box (``center``, ``size``) of a same-sized box at each response
    cell of a search crop (``crop_px`` frame pixels around ``crop_center``): ``response_cell`` backwards."""
    disp = ((np.arange(side) - (side - 1) / 2.0) * stride + offset) * crop_px / instance_sz
    sx = crop_center[0] + disp[None, :] - center[0]
    sy = crop_center[1] + disp[:, None] - center[1]
    w, h = float(size[0]), float(size[1])
    overlap = np.clip(w - np.abs(sx), 0, None) * np.clip(h - np.abs(sy), 0, None)
    return overlap / (2 * w * h - overlap)


class CropStats(NamedTuple):
    """One search crop's windows as the model keeps them: sums for the discriminant, and the
    surroundings' vectors for the look-alike term."""

    pos_gram: np.ndarray      # X^T X of the target's windows
    pos_sum: np.ndarray       # X^T 1
    pos_count: float
    neg_gram: np.ndarray      # the same for the surroundings' windows
    neg_sum: np.ndarray
    neg_count: float
    background: np.ndarray    # (N, D) the surroundings' unit vectors


class SurroundModel:
    """This target against its surroundings (reset by :meth:`start` at ``init``).

    Each kept crop is its sums (``X^T X`` and ``X^T 1`` of its target and surroundings windows), so a
    refit costs one crop's windows and one ``D x D`` solve whatever :data:`KEEP` is, and its
    surroundings' vectors, which the look-alike term reads."""

    def __init__(self) -> None:
        self.weights: np.ndarray | None = None
        self.background = np.zeros((0, 0))
        self.first: CropStats | None = None
        self.recent: list[CropStats] = []
        self.frames = 0
        self._grid: tuple[int, float, float, int] = (1, 1.0, 0.0, 1)  # kernel side, stride, offset, instance_sz

    def _crop(self, features: np.ndarray, crop: tuple[np.ndarray, float], box: tuple[np.ndarray, np.ndarray]) -> CropStats:
        """One search crop's :class:`CropStats`: ``features`` ``(C, H, W)``, ``crop`` its centre and
        side in frame pixels, ``box`` the target's centre and size."""
        kernel_side, stride, offset, instance_sz = self._grid
        vectors = cell_core_vectors(np.asarray(features), kernel_side)
        iou = window_boxes_iou(len(vectors), stride, offset, crop[0], crop[1], instance_sz, box[0], box[1])
        pos, neg = vectors[iou >= POSITIVE_IOU], vectors[iou <= BACKGROUND_IOU]
        return CropStats(pos.T @ pos, pos.sum(axis=0), float(len(pos)), neg.T @ neg, neg.sum(axis=0),
                         float(len(neg)), neg.astype(np.float32))

    def _refit(self) -> None:
        parts = [self.first, *self.recent]
        self.background = np.concatenate([p.background for p in parts])
        pos_n, neg_n = sum(p.pos_count for p in parts), sum(p.neg_count for p in parts)
        if pos_n == 0 or neg_n == 0:  # nothing to tell apart (a box as large as the crop): no term
            self.weights = None
            return
        balance = neg_n / pos_n  # each class weighs as much in total
        a = sum(balance * p.pos_gram + p.neg_gram for p in parts) + RIDGE * np.eye(len(parts[0].pos_sum))
        self.weights = np.linalg.solve(a, sum(balance * p.pos_sum - p.neg_sum for p in parts))

    def start(self, features: np.ndarray, kernel_side: int, stride: float, offset: float, instance_sz: int,
              crop: tuple[np.ndarray, float], box: tuple[np.ndarray, np.ndarray]) -> None:
        """The first frame: ``features`` ``(C, H, W)`` of its search crop (``crop``: centre and side
        in frame pixels), the network's kernel side, stride and offset and the crops' ``instance_sz``
        (kept for every later crop), ``box``: the target's centre and size."""
        self._grid = (int(kernel_side), float(stride), float(offset), int(instance_sz))
        self.first = self._crop(features, crop, box)
        self.recent, self.frames = [], 0
        self._refit()

    def terms(self, window: np.ndarray) -> tuple[float, float]:
        """:data:`TERMS` for the chosen box's ``(C, k, k)`` window: ``(w . v``, the mean cosine of
        ``v`` with its :data:`LOOKALIKES` closest surroundings windows); zeros before :meth:`start`."""
        v = core_vectors(np.asarray(window)[None])[0]
        if self.weights is None or len(v) != len(self.weights):
            return 0.0, 0.0
        similar = self.background @ v.astype(np.float32)
        if len(similar) > LOOKALIKES:
            similar = np.partition(similar, len(similar) - LOOKALIKES)[-LOOKALIKES:]
        return float(self.weights @ v), float(similar.mean())

    def observe(self, found: bool, features: np.ndarray, crop: tuple[np.ndarray, float],
                box: tuple[np.ndarray, np.ndarray]) -> None:
        """After a frame's score: every :data:`EVERY` frames, when the frame was scored as found,
        add its crop (``features``, ``crop`` as :meth:`start`'s) and refit."""
        self.frames += 1
        if self.first is None or self.frames % EVERY or not found:
            return
        self.recent = (self.recent + [self._crop(features, crop, box)])[-KEEP:]
        self._refit()
