"""Which colour cue, if any, should the confidence take? Collects, per frame of the training roots
and val, the confidence's features (the last is its colour term) and two more candidate colour
cues, and writes both and ``confidence_fit.py``'s cache (the features alone).

The cues, each against the first frame's box: the confidence's own term (``confidence.colour_histogram``
/ ``colour_similarity``: hue / saturation histograms, Bhattacharyya), the Bhattacharyya coefficient of
4-level RGB histograms (64 bins), and a DAT-style likelihood, the box pixels' mean P(target | RGB bin)
with the surround (the 2x region minus the box) as the background::

    PYTHONPATH=. python experiments/colour_cues.py --weights student --output runs/dev5/student_colour.npz \
        --fit-cache runs/dev5/student_fit_cache.npz
    python experiments/confidence_fit.py --weights student --cache runs/dev5/student_fit_cache.npz \
        --roots got10k/train,got10k-extra/train,$PWD/../data/sources-v3/train

(weights/MODEL_CARD.md has the tables: student 8 minutes, teacher 27, at 1 thread.)
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np
from cue_study import collect_parts, save_parts

from siamtrack.tracking.confidence import colour_similarity
from siamtrack.tracking.tracker import SiamFCTracker

CUES = ("bc_rgb", "dat")  # the columns of ``cue``; the hue / saturation one is the last feature


def region(img: np.ndarray, center: np.ndarray, size: np.ndarray, scale: float = 1.0, n: int = 24):
    """The box (times ``scale``) clipped to the frame, read with a stride of ``side // n``."""
    w, h = size[0] * scale, size[1] * scale
    height, width = img.shape[:2]
    x0, x1 = int(max(0, center[0] - w / 2)), int(min(width, math.ceil(center[0] + w / 2)))
    y0, y1 = int(max(0, center[1] - h / 2)), int(min(height, math.ceil(center[1] + h / 2)))
    if x1 <= x0 or y1 <= y0:
        return None
    return img[y0:y1:max(1, (y1 - y0) // n), x0:x1:max(1, (x1 - x0) // n)]


def bins_rgb(p: np.ndarray) -> np.ndarray:
    q = (p >> 6).astype(np.int32)
    return (q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).ravel()


def hist(b: np.ndarray, n: int) -> np.ndarray:
    c = np.bincount(b, minlength=n).astype(np.float64)
    return c / max(c.sum(), 1)


class Cues:
    """The two cues besides the confidence's own colour term, for the tracked box against the first
    frame's (a ``calibrate.collect`` cue): RGB Bhattacharyya, DAT-style likelihood."""

    def start(self, img: np.ndarray, tracker: SiamFCTracker) -> None:
        center, size = tracker.center, tracker.target_sz
        self.h_rgb = hist(bins_rgb(region(img, center, size)), 64)
        surround = np.maximum(hist(bins_rgb(region(img, center, size, 2.0, 48)), 64) * 4 - self.h_rgb, 0)
        surround /= max(surround.sum(), 1e-9)
        self.p_obj = self.h_rgb / (self.h_rgb + surround + 1e-3)

    def __call__(self, img: np.ndarray, tracker: SiamFCTracker) -> list[float]:
        p = region(img, tracker.center, tracker.target_sz)
        if p is None or p.size == 0:
            return [0.0, 0.0]
        b = bins_rgb(p)
        return [colour_similarity(hist(b, 64), self.h_rgb), float(self.p_obj[b].mean())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--output", required=True, help="npz: features, cue (bc_rgb, dat), iou, absent, seq")
    parser.add_argument("--fit-cache", help="npz for confidence_fit.py --cache (the same without the cues)")
    args = parser.parse_args(argv)
    data = collect_parts(args.weights, Cues())
    save_parts(args.output, data)
    if args.fit_cache:  # the package's features (the colour term among them), without the other cues
        save_parts(args.fit_cache, data, drop=("cue",))
    print("wrote", args.output, args.fit_cache or "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
