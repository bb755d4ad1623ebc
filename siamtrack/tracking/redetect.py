"""The lost flag and a local-to-global re-detection for :class:`~.tracker.SiamFCTracker`.

Why: SiamFC only searches a crop ~2x the target's context around its last position, so once the
target leaves that crop (occlusion, leaving the view, a fast jump) nothing brings it back, and the
box drifts onto whatever looks most alike. DaSiamRPN's long-term mode answers this by widening the
search while the score is low; here the search stays at the target's scale (a Siamese net only
matches at the scale it was trained on) and the wider region is covered by *tiles*: ordinary
``instance_sz`` search crops on a grid whose spacing is half a search crop, so the tiles' response
maps (each covering +-64 of 255 crop pixels) leave no gaps.

State machine (per frame, all numbers from :class:`~siamtrack.config.TrackerConfig`):

* tracking: the normal SiamFC step; the confidence is below ``lost_threshold`` for ``lost_frames``
  frames in a row -> ``lost``; the flag clears after ``found_frames`` frames in a row at
  ``found_threshold`` or more (hysteresis: a score hovering at one threshold does not make the
  flag flicker). The box keeps following its best local match whether lost or not.
* lost (``redetect`` on): besides the normal step, each frame searches ``redetect_tiles`` tiles at
  the last confident box's size: its centre (the anchor), then the next tiles of a region around it
  whose side grows by ``redetect_growth`` each time all of its tiles were searched, up to the whole
  frame (then the sweep starts again). The tiles run as one batch through the engine, so any
  network and either backend works. The tile with the highest raw peak that passes the peak guard
  (below) is verified like a tracked box: its appearance and surround terms (the window of the
  tile's search features) and response statistics give the same calibrated confidence as the
  tracking step (motion terms neutral: a re-detection is a jump by design; the scene terms, which
  need the candidate's previous frame, are the target's own when it was last scored as found). The box jumps there
  when that confidence is ``redetect_found`` or more *and* above the local match's; the flag then
  clears. Why not freeze the box while lost (the first design): a false alarm then cost the
  target the local step was still holding (val AO 0.562 against 0.581 without re-detection).

The reference peak is the exemplar's response on its own first frame (one search crop at ``init``).
Why both tests: the calibrated confidence is fitted across sequences, so on a smooth background a
tile can score as "found" with no target in it (the first version did exactly that); the raw peak
relative to this target's own first-frame peak is per target. Measured on generated clips with
the student and the teacher: the target again at 0.84-0.92 of the reference, the best background
tile at 0.27 or less (most below 0). The guard is ``peak >= ref - (1 - ratio) * |ref|``, which is
``ratio * ref`` for a positive reference and stays a guard when it is <= 0 (the student's is 0.23
on one val sequence and below 0 on others; the old ``ratio * ref`` test was switched off there).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .confidence import calibrated_score, classification_maps, frame_features, response_stats
from .scene import TERMS as SCENE_TERMS
from .surround import TERMS as SURROUND_TERMS
from ..geometry import crop_squares, peak_displacement, upsample_response


def tile_centres(anchor: np.ndarray, x_sz: float, side: float, width: int, height: int) -> np.ndarray:
    """``(T, 2)`` centres of search tiles covering a square of ``side`` around ``anchor`` (clipped to
    the frame, duplicates dropped), nearest to the anchor first: a target that reappears near where
    it vanished is found in the first lost frames."""
    step = 0.5 * x_sz
    # cover the region's intersection with the frame; the tile centre must lie in the frame
    x0, x1 = max(0.0, anchor[0] - side / 2), min(float(width), anchor[0] + side / 2)
    y0, y1 = max(0.0, anchor[1] - side / 2), min(float(height), anchor[1] + side / 2)
    nx, ny = max(1, math.ceil((x1 - x0) / step)), max(1, math.ceil((y1 - y0) / step))
    xs = np.linspace(x0, x1, nx + 1) if nx > 1 else np.array([anchor[0]])
    ys = np.linspace(y0, y1, ny + 1) if ny > 1 else np.array([anchor[1]])
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    grid = np.unique(np.round(grid, 1), axis=0)
    order = np.argsort(((grid - anchor) ** 2).sum(axis=1), kind="stable")
    return grid[order]


class LostSearch:
    """Lost-flag bookkeeping and the widening tile search (one per tracker, reset at ``init``)."""

    def __init__(self) -> None:
        self.reset(np.zeros(2), np.ones(2))

    def reset(self, center: np.ndarray, target_sz: np.ndarray) -> None:
        self.low = 0                      # frames in a row below the lost threshold
        self.high = 0                     # frames in a row at the found threshold or more, while lost
        self.lost = False
        self.anchor = (np.array(center, dtype=np.float64), np.array(target_sz, dtype=np.float64))
        self.anchor_scene = np.zeros(len(SCENE_TERMS))  # the smoothed scene terms at the anchor
        self.level = 0                    # region side = x_sz * growth ** level
        self.cursor = 0                   # next tile of the current region

    def observe(self, score: float, center: np.ndarray, target_sz: np.ndarray, cfg: Any,
                scene: np.ndarray | None = None) -> bool:
        """The flag's hysteresis; returns True on the frame the target becomes lost. ``scene``: the
        tracker's smoothed scene terms, kept with the anchor for re-detected candidates."""
        if self.lost:
            self.high = self.high + 1 if score >= cfg.found_threshold else 0
            if self.high >= cfg.found_frames:
                self.lost, self.low, self.high = False, 0, 0
            return False
        if score >= cfg.found_threshold:  # the box to return to: the last one scored as found
            self.anchor = (center.copy(), target_sz.copy())
            if scene is not None:
                self.anchor_scene = np.array(scene, dtype=np.float64)
        self.low = self.low + 1 if score < cfg.lost_threshold else 0
        if self.low >= cfg.lost_frames:
            self.lost, self.high, self.level, self.cursor = True, 0, 0, 0
            return True
        return False

    def search(self, img: np.ndarray, engine: Any, kernel: Any, x_sz: float, cfg: Any,
               avg_color: np.ndarray, stride: int, offset: float, ref_peak: float,
               appearance_at: Callable[[np.ndarray, np.ndarray, np.ndarray],
                                       tuple[tuple[float, float], tuple[float, float]]],
               colour_at: Callable[[np.ndarray], float]) -> tuple[float, np.ndarray | None]:
        """One lost frame: search the next tiles; returns ``(confidence, new centre or None)``.

        The candidate is the guarded tile's response peak (its raw map upsampled like the normal
        path's, no cosine window: the target may be anywhere in the region);
        ``appearance_at(tile features, tile centre, candidate centre)`` gives its appearance terms
        and its surround terms (two pairs),
        ``colour_at(candidate centre)`` its colour term (at the last confident box's size)."""
        height, width = img.shape[:2]
        anchor = self.anchor[0]
        full = math.hypot(width, height) * 2.0  # a side that covers the frame from any anchor
        side = min(x_sz * cfg.redetect_growth ** self.level, full)
        tiles = tile_centres(anchor, x_sz, side, width, height)
        if self.cursor >= len(tiles):  # this region is done: widen it (or sweep the frame again)
            self.level = 0 if side >= full else self.level + 1
            self.cursor = 0
            side = min(x_sz * cfg.redetect_growth ** self.level, full)
            tiles = tile_centres(anchor, x_sz, side, width, height)
        chunk = tiles[self.cursor:self.cursor + max(1, cfg.redetect_tiles - 1)]
        self.cursor += len(chunk)
        centres = np.concatenate([anchor[None], chunk])  # the last confident centre every frame
        crops = np.concatenate([crop_squares(img, c, [x_sz], cfg.instance_sz, avg_color) for c in centres])
        out, tile_features = engine.respond_features(kernel, crops)
        maps = classification_maps(out)
        stats = response_stats(maps)
        peaks = stats[:, 0]
        like_target = peaks >= peak_guard(ref_peak, cfg.redetect_peak_ratio)
        if not like_target.any():
            features = frame_features(stats, ref_peak, (0.0, 0.0), 0.0, 0.0, 0.0, self.anchor_scene,
                                      (0.0,) * len(SURROUND_TERMS))
            return float(calibrated_score(features, cfg.conf_weights).max()), None
        best = int(np.where(like_target, peaks, -np.inf).argmax())
        up = maps.shape[-1] * cfg.response_up
        r = upsample_response(maps[best], cfg.response_up)
        row, col = divmod(int(r.argmax()), up)
        centre = centres[best] + peak_displacement(row, col, up, stride, cfg.response_up, offset,
                                                   x_sz, cfg.instance_sz)
        appearance, surround = appearance_at(tile_features[best], centres[best], centre)
        features = frame_features(stats[best], ref_peak, appearance, 0.0, 0.0, colour_at(centre), self.anchor_scene,
                                  surround)
        score = float(calibrated_score(features, cfg.conf_weights)[0])
        return score, (centre if score >= cfg.redetect_found else None)

    def recover(self) -> None:
        """The caller took a re-detected box: tracking again, the flag cleared."""
        self.low, self.high, self.lost = 0, 0, False


def peak_guard(ref_peak: float, ratio: float) -> float:
    """The lowest raw peak a re-detected tile may have: ``ref - (1 - ratio) * |ref|`` (``ratio *
    ref`` for a positive reference, still a bound when the reference is <= 0; none when unknown)."""
    if not math.isfinite(ref_peak):
        return -math.inf
    return ref_peak - (1.0 - ratio) * abs(ref_peak)
