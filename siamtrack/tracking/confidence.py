"""A tracking confidence that separates on-target from lost frames, and the ROC AUC that checks it.

Why not the sigmoid of the peak logit (the old ``tracker.score``): the raw peak's height depends on
the scene's texture far more than on whether the exemplar is there, so on real video it reads ~0.5
on empty pavement and ~0.95 on a wrong object. What does change when the target leaves is the
*shape* of the response: a match is one sharp peak standing far above the rest of the map, a
mismatch a flat or many-peaked map. So the statistics are relative to the map itself:

* ``peak``: the raw peak logit (kept as a feature: very low peaks do mean "nothing here");
* ``psr``: peak-to-sidelobe ratio, ``(peak - mean(sidelobe)) / std(sidelobe)``, the sidelobe being
  the map outside a ``(2 * PSR_EXCLUDE + 1)`` square around the peak (Bolme et al., MOSSE, 2010);
* ``zscore``: ``(peak - mean(map)) / std(map)``, the peak against the whole map.

Response statistics alone fail when a network's maps are weak everywhere (the student scores
~0.1 on every frame of the dog clip, on the dog or not) or confidently wrong (the teacher's map
peaks sharply on lumber after losing a person). So the score adds signals that do not come from
the map's shape (:data:`FEATURES`):

* ``peak_rel``: the peak minus this target's own first-frame peak (per target, not per network);
* ``appearance``: cosine similarity of the exemplar embedding with the embedding of the box the
  tracker just chose, read from the search features the engine returns with the response (the
  window the chosen response cell correlated, :func:`feature_window`: no extra backbone pass; a
  wrong object looks different even when the map is sharp); ``appearance_core``: the
  same on the central half of the maps, the target without its context (on val, ROC AUC of the
  feature alone 0.85 against 0.70 for the whole window with the teacher, 0.88 against 0.91 with
  the student, so both go in and the fit weighs them per network);
* ``jump`` and ``resize``: the centre's move in target sizes and ``|log|`` of the area change (a
  lost SiamFC box jumps between distractors and shrinks or grows);
* ``colour``: the Bhattacharyya coefficient of the box's hue / saturation histogram with the
  first frame's (:func:`colour_histogram`), a cue that owes nothing to the network, so it can speak
  when the embedding finds a wrong object as similar as the target (student v5: val ROC AUC 0.933
  -> 0.963 with it; it does not tell the teacher's kerb on ``OTB_Human3`` from the person, nor the
  student's tool cabinet on the README's person clip); one strided read of 24 to 47 box pixels a side;
* ``bg_shift``, ``box_vs_bg`` and ``box_change`` (:mod:`.scene`): the background's motion around the
  box, the box's move against it and the change inside the box once that motion is undone: a box
  stuck to a piece of background moves with it and nothing in it changes, however target-like it looks;
* ``surround`` and ``lookalike`` (:mod:`.surround`): the box's window scored by a discriminant of
  this target against its own surroundings, refitted on confident frames, and its likeness to the
  closest of those surroundings: a kerb that the network finds as target-like as the target still
  looks more like the rest of the scene, and most like itself where it lay beside the target.

The features are smoothed over frames (an exponential moving average, weight ``conf_smoothing`` on
the past: losing a target is a state that lasts, one odd frame is not), then
``score = sigmoid(w . [1, smoothed features])``, a logistic regression fitted per weights and out of sample
(:mod:`.calibrate`, ``experiments/confidence_fit.py``); the weights live in ``TrackerConfig`` so
they travel with the checkpoint. Every head gets this one scale (the box head's classification
map gives its statistics). Tracking-time cost: ~0.6 ms a frame (appearance ~40 us, colour ~35 us,
scene terms ~220 us, surround terms 150-250 us in the loop).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .scene import TERMS as SCENE_TERMS
from .surround import TERMS as SURROUND_TERMS

#: Half-side, in response cells, of the square around the peak left out of the sidelobe.
PSR_EXCLUDE = 2

#: Names of the columns :func:`response_stats` returns, in order.
STAT_NAMES = ("peak", "psr", "zscore")

#: The confidence's inputs, in the order of ``TrackerConfig.conf_weights[1:]`` (see the module doc).
FEATURES = (STAT_NAMES + ("peak_rel", "appearance", "appearance_core", "jump", "resize", "colour") + SCENE_TERMS
            + SURROUND_TERMS)
#: Where the scene terms sit in :data:`FEATURES` (re-detection keeps the target's own at its anchor).
SCENE_COLUMNS = slice(FEATURES.index(SCENE_TERMS[0]), FEATURES.index(SCENE_TERMS[-1]) + 1)

#: Bins of :func:`colour_histogram`: 12 hues x 3 saturation levels, 4 grey levels, one dark bin.
COLOUR_BINS = 41
#: The box is read on a grid of about this many pixels a side (a stride of ``side // COLOUR_GRID``).
COLOUR_GRID = 24


def response_stats(maps: np.ndarray) -> np.ndarray:
    """``(N, 3)`` float64 ``[peak, psr, zscore]`` of ``(N, r, r)`` raw response maps (logits).

    Non-finite maps give zeros for psr / zscore and ``-inf`` peaks are clipped to ``-50`` so the
    calibrated score stays finite (the tracker's invariant: ``score`` in [0, 1], never NaN).
    """
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"expected (N, r, r) response maps, got shape {maps.shape}")
    return np.array([map_stats(m) for m in maps], dtype=np.float64).reshape(len(maps), len(STAT_NAMES))


def map_stats(response: np.ndarray) -> tuple[float, float, float]:
    """``(peak, psr, zscore)`` of one ``(r, r)`` map: :func:`response_stats` for the one map a frame has.

    Written as a handful of whole-map reductions and Python floats because it runs once per frame
    right after the network, when the caches are cold: the vectorised ``(N, ...)`` form took ~100 us
    a frame there (31 us in a warm micro-benchmark), this one ~35 us. The sidelobe (everything
    outside a square around the peak) is the whole map minus that window, so no mask is built.
    """
    grid = np.asarray(response, dtype=np.float64)
    rows, cols = grid.shape
    flat = grid.ravel()
    total, total_sq = float(flat.sum()), float(np.dot(flat, flat))
    if not (math.isfinite(total) and math.isfinite(total_sq)):  # a NaN / inf anywhere shows here
        grid = np.nan_to_num(grid, nan=-50.0, posinf=50.0, neginf=-50.0)
        flat = grid.ravel()
        total, total_sq = float(flat.sum()), float(np.dot(flat, flat))
    arg = int(flat.argmax())
    peak = float(flat[arg])
    pr, pc = divmod(arg, cols)
    size = rows * cols
    mean = total / size
    std = math.sqrt(max(total_sq / size - mean * mean, 0.0))
    window = grid[max(pr - PSR_EXCLUDE, 0):pr + PSR_EXCLUDE + 1, max(pc - PSR_EXCLUDE, 0):pc + PSR_EXCLUDE + 1]
    count = max(size - window.size, 1)
    s_mean = (total - float(window.sum())) / count
    s_var = max((total_sq - float(np.vdot(window, window))) / count - s_mean * s_mean, 0.0)
    return (min(max(peak, -50.0), 50.0), (peak - s_mean) / (math.sqrt(s_var) + 1e-6),
            (peak - mean) / (std + 1e-6))


def classification_maps(out: np.ndarray) -> np.ndarray:
    """``(S, r, r)`` response maps of an engine's output: the xcorr response itself, or the box
    head's classification channel of its ``(S, 6, r, r)``."""
    out = np.asarray(out)
    return out[:, 0] if out.ndim == 4 else out


def frame_features(stats: np.ndarray, ref_peak: float, appearance: tuple[float, float],
                   jump: float, resize: float, colour: float, scene: "tuple[float, ...] | np.ndarray",
                   surround: "tuple[float, ...] | np.ndarray") -> np.ndarray:
    """``(N, len(FEATURES))`` rows from :func:`response_stats` rows and the per-frame signals
    (``appearance``: :func:`appearance_terms`, ``colour``: :func:`colour_similarity`, ``scene``:
    :meth:`.scene.SceneProbe.step`, ``surround``: :meth:`.surround.SurroundModel.terms`); non-finite
    inputs become 0, so the score is defined."""
    stats = np.atleast_2d(np.asarray(stats, dtype=np.float64))
    ref = ref_peak if np.isfinite(ref_peak) else stats[:, 0]
    out = np.empty((len(stats), len(FEATURES)))
    out[:, :3] = stats
    out[:, 3] = stats[:, 0] - ref
    out[:, 4:] = (*appearance, jump, resize, colour, *scene, *surround)
    return out if np.isfinite(out).all() else np.nan_to_num(out, nan=0.0, posinf=50.0, neginf=-50.0)


def calibrated_score(features: np.ndarray, weights: "list[float] | np.ndarray") -> np.ndarray:
    """``(N,)`` confidences in [0, 1]: ``sigmoid(weights[0] + features @ weights[1:])``."""
    w = np.asarray(weights, dtype=np.float64)
    x = np.atleast_2d(np.asarray(features, dtype=np.float64))
    if len(w) != x.shape[1] + 1:
        raise ValueError(f"conf_weights has {len(w)} values; expected 1 + {x.shape[1]} ({', '.join(FEATURES)})")
    return sigmoid(w[0] + x @ w[1:])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two flattened embeddings (0 when either is all zeros or non-finite)."""
    a, b = np.ravel(a), np.ravel(b)
    value = float(np.dot(a, b)) / (math.sqrt(float(np.dot(a, a))) * math.sqrt(float(np.dot(b, b))) + 1e-12)
    return value if math.isfinite(value) else 0.0


def appearance_terms(embedding: np.ndarray, kernel: np.ndarray) -> tuple[float, float]:
    """``(appearance, appearance_core)``: :func:`cosine` of two ``(..., C, H, W)`` embeddings, whole
    and on their central half (the whole map when it is smaller than 4 cells)."""
    e, k = np.asarray(embedding), np.asarray(kernel)
    if e.shape != k.shape or e.ndim < 3:
        return cosine(e, k), cosine(e, k)
    h, w = e.shape[-2:]
    qh, qw = (h // 4, w // 4) if min(h, w) >= 4 else (0, 0)
    core = (..., slice(qh, h - qh), slice(qw, w - qw))
    return cosine(e, k), cosine(e[core], k[core])


def feature_window(features: np.ndarray, shape: tuple[int, int], cell: tuple[float, float]) -> np.ndarray:
    """The ``shape`` (kernel-sized) window of the search embedding ``features`` ``(C, H, W)`` that
    response cell ``cell`` (row, col) correlates with. A fractional cell blends the four windows
    around it bilinearly (the box moves in sub-cell steps; a window snapped to the nearest cell made
    the appearance term jitter by up to half a cell from frame to frame). Cells outside the map are
    clipped into it."""
    k_h, k_w = int(shape[0]), int(shape[1])
    last_row, last_col = max(features.shape[-2] - k_h, 0), max(features.shape[-1] - k_w, 0)
    row = min(max(float(cell[0]), 0.0), float(last_row))
    col = min(max(float(cell[1]), 0.0), float(last_col))
    r0, c0 = int(row), int(col)
    fr, fc = row - r0, col - c0
    r1, c1 = min(r0 + 1, last_row), min(c0 + 1, last_col)

    def at(r: int, c: int) -> np.ndarray:
        return features[..., r:r + k_h, c:c + k_w]

    return at(r0, c0) if fr == 0.0 and fc == 0.0 else (
        (1 - fr) * ((1 - fc) * at(r0, c0) + fc * at(r0, c1)) + fr * ((1 - fc) * at(r1, c0) + fc * at(r1, c1)))


def colour_histogram(image: np.ndarray, center: "np.ndarray | tuple[float, float]",
                     size: "np.ndarray | tuple[float, float]") -> np.ndarray | None:
    """Normalised ``(COLOUR_BINS,)`` hue / saturation histogram of the box at ``center`` (``cx, cy``)
    of ``size`` (``w, h``) in an RGB ``uint8`` frame, the part inside the frame read with a stride of
    ``side // COLOUR_GRID`` pixels; ``None`` when no pixel of the box is in the frame.

    OpenCV's 8-bit HSV: pixels darker than V 40 share one bin (their hue is noise), pixels of
    saturation below 64 fall in 4 grey bins by V, the rest in 12 hues x 3 saturation levels."""
    height, width = image.shape[:2]
    x0, x1 = int(max(0.0, center[0] - size[0] / 2.0)), int(min(width, math.ceil(center[0] + size[0] / 2.0)))
    y0, y1 = int(max(0.0, center[1] - size[1] / 2.0)), int(min(height, math.ceil(center[1] + size[1] / 2.0)))
    if x1 <= x0 or y1 <= y0:
        return None
    patch = image[y0:y1:max(1, (y1 - y0) // COLOUR_GRID), x0:x1:max(1, (x1 - x0) // COLOUR_GRID)]
    hsv = cv2.cvtColor(np.ascontiguousarray(patch), cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.int32)
    hue, sat, val = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    chromatic = (hue * 12 // 180) * 3 + sat // 64 - 1
    bins = np.where(val < 40, 40, np.where(sat < 64, 36 + np.minimum(val // 64, 3), chromatic))
    counts = np.bincount(bins, minlength=COLOUR_BINS)
    return counts / counts.sum()


def colour_similarity(histogram: np.ndarray | None, reference: np.ndarray | None) -> float:
    """Bhattacharyya coefficient of two :func:`colour_histogram` results: 1 for the same colours,
    0 for none shared, or when either is missing (a box outside the frame)."""
    if histogram is None or reference is None:
        return 0.0
    return float(np.sqrt(histogram * reference).sum())


def smooth(previous: np.ndarray | None, features: np.ndarray, weight: float) -> np.ndarray:
    """One step of the features' moving average: ``weight * previous + (1 - weight) * features``
    (``features`` itself on the first frame, ``previous is None``)."""
    return features if previous is None or weight <= 0 else weight * previous + (1.0 - weight) * features


def motion(prev_center: np.ndarray, prev_size: np.ndarray, center: np.ndarray,
           size: np.ndarray) -> tuple[float, float]:
    """``(jump, resize)``: the centre's move in units of the previous size (``sqrt(w * h)``) and
    ``|log|`` of the area ratio."""
    prev_area = max(float(prev_size[0]) * float(prev_size[1]), 1e-6)
    area = max(float(size[0]) * float(size[1]), 1e-6)
    jump = math.hypot(float(center[0]) - float(prev_center[0]), float(center[1]) - float(prev_center[1]))
    return jump / math.sqrt(prev_area), abs(math.log(area / prev_area))


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function, clipped so that extreme logits neither overflow nor give exact 0 / 1."""
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for telling ``positive`` from the rest (rank-based,
    the Mann-Whitney U statistic; ties count one half). ``None`` when either class is empty."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positive = np.asarray(positive, dtype=bool).ravel()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties: the first and last position of every distinct value
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def separation_labels(ious: np.ndarray, absent: np.ndarray | None = None,
                      on: float = 0.5, off: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """``(used, positive)`` masks for the on-target vs lost separation: on-target is IoU >= ``on``,
    lost is IoU < ``off`` or the target absent; frames in between (and without truth) are not used."""
    ious = np.asarray(ious, dtype=np.float64)
    absent = np.zeros(len(ious), dtype=bool) if absent is None else np.asarray(absent, dtype=bool)
    finite = np.isfinite(ious)
    positive = finite & (ious >= on) & ~absent
    negative = (finite & (ious < off)) | absent
    return positive | negative, positive
