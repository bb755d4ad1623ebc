"""Does the box move with the background? A tracker that has lost its target usually sits on a piece
of the background (the teacher on ``OTB_Human3``'s kerb, the student on the README person clip's
tool cabinet), and then its box moves exactly as the background does, a thing neither the response
map nor the box's looks can tell. Per frame of the training roots and val (re-detection off) this
collects the confidence's features and the raw motion of the box and of the background around it:
the background's shift is the phase correlation (``cv2.phaseCorrelate``, Hann window) of two small
grey crops of the *same* frame square, the previous frame's search region, in the previous frame
and in this one. ``--analyse`` fits the confidence without and with motion terms built from them
(grouped 5-fold by sequence, the shipped rules) and prints ROC AUC and flag rates::

    PYTHONPATH=. python experiments/motion_cue.py --weights student --output runs/dev6/student_motion.npz
    PYTHONPATH=. python experiments/motion_cue.py --analyse runs/dev6/student_motion.npz
"""
from __future__ import annotations

import argparse
import math
import sys

import cv2
import numpy as np
from cue_study import collect_parts, fit_line, load_parts, save_parts

from siamtrack.geometry import crop_squares
from siamtrack.tracking.scene import box_slices, shift_square
from siamtrack.tracking.tracker import SiamFCTracker

#: Side of the grey crops the shift is measured on.
SIDE = 64
#: The columns of ``cue``: background shift and box move (frame pixels), the previous size
#: ``sqrt(w * h)``, the phase correlation's peak, and after shifting the previous crop by the
#: background's shift, the mean absolute grey difference inside the previous box, over the whole
#: crop, and the grey standard deviation inside the previous box.
RAW = ("gx", "gy", "bx", "by", "size", "response", "box_diff", "all_diff", "box_std")


def grey_crop(img: np.ndarray, center: np.ndarray, side: float, fill: np.ndarray) -> np.ndarray:
    """``(SIDE, SIDE)`` float32 grey square of ``side`` frame pixels at ``center``."""
    planes = crop_squares(img, center, [side], SIDE, fill)[0].astype(np.float32)
    return 0.299 * planes[0] + 0.587 * planes[1] + 0.114 * planes[2]


class BackgroundMotion:
    """The raw motion columns :data:`RAW` (a ``calibrate.collect`` cue)."""

    window = cv2.createHanningWindow((SIDE, SIDE), cv2.CV_32F)

    def start(self, img: np.ndarray, tracker: SiamFCTracker) -> None:
        self._remember(img, tracker)

    def _remember(self, img: np.ndarray, tracker: SiamFCTracker) -> None:
        self.center, self.size = tracker.center.copy(), tracker.target_sz.copy()
        self.side = tracker._search_side()
        self.patch = grey_crop(img, self.center, self.side, tracker.avg_color)

    def __call__(self, img: np.ndarray, tracker: SiamFCTracker) -> list[float]:
        now = grey_crop(img, self.center, self.side, tracker.avg_color)
        (dx, dy), response = cv2.phaseCorrelate(self.patch, now, self.window)
        scale = self.side / SIDE
        move = tracker.center - self.center
        diff = np.abs(now - shift_square(self.patch, dx, dy))
        inside = box_slices(self.size, self.side, SIDE)
        row = [dx * scale, dy * scale, float(move[0]), float(move[1]),
               math.sqrt(float(self.size[0] * self.size[1])), float(response),
               float(diff[inside].mean()), float(diff.mean()), float(self.patch[inside].std())]
        self._remember(img, tracker)
        return row


def terms(cue: np.ndarray, cap: float = 1.0) -> dict[str, np.ndarray]:
    """Candidate inputs from the raw columns: in target sizes, ``bg`` the background's shift and
    ``rel`` the box's move against it (both capped at ``cap``), ``lock`` = bg / (bg + rel + 0.02);
    ``change`` the grey change inside the box once the background's shift is undone (capped at 30
    grey levels, over 30), ``change_rel`` the same over the whole crop's (+1), ``change_std`` over
    the box's own grey spread (+5)."""
    g, b, s = cue[:, 0:2], cue[:, 2:4], np.maximum(cue[:, 4], 1.0)
    bg = np.minimum(np.hypot(*g.T) / s, cap)
    rel = np.minimum(np.hypot(*(b - g).T) / s, cap)
    box_diff, all_diff, box_std = cue[:, 6], cue[:, 7], cue[:, 8]
    return {"bg": bg, "rel": rel, "lock": bg / (bg + rel + 0.02), "response": cue[:, 5],
            "change": np.minimum(box_diff, 30.0) / 30.0, "change_rel": np.minimum(box_diff / (all_diff + 1.0), 5.0),
            "change_std": np.minimum(box_diff / (box_std + 5.0), 3.0),
            "log_change": np.log1p(box_diff)}


VARIANTS = (("confidence features", []), ("+ bg, rel", ["bg", "rel"]), ("+ lock", ["lock"]),
            ("+ change", ["change"]), ("+ log_change", ["log_change"]), ("+ change_rel", ["change_rel"]),
            ("+ change_std", ["change_std"]), ("+ bg, rel, change", ["bg", "rel", "change"]),
            ("+ bg, rel, log_change", ["bg", "rel", "log_change"]))


def analyse(path: str) -> None:
    parts = load_parts(path)
    for label, names in VARIANTS:
        extra = {p: np.stack([terms(d["cue"])[n] for n in names], 1) if names else None for p, d in parts.items()}
        print(fit_line(label, parts["train"], parts["val"], extra["train"], extra["val"]), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="student")
    parser.add_argument("--output")
    parser.add_argument("--analyse", metavar="NPZ")
    args = parser.parse_args(argv)
    if args.analyse:
        analyse(args.analyse)
        return 0
    if not args.output:
        parser.error("give --output (or --analyse NPZ)")
    save_parts(args.output, collect_parts(args.weights, BackgroundMotion()))
    print("wrote", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
